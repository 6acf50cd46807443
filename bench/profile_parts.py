"""Where the time of one `adf run` process goes, part by part, from a pyinstrument session (by hand).

    bench/.venv/bin/python bench/profile_parts.py FILE.pyisession [...]

``bench/run.py --profile`` runs each `adf run` case under pyinstrument and keeps its session
(``bench/results/<time>-<rows>-ours_cli-<pair>.pyisession``). Each sample's time goes to the part of
the innermost frame that names one (imports win over everything below them: a module executing at
import time is start-up), e.g. a psycopg ``execute`` called from the stream's COPY counts as COPY.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any

# (part, test on a frame's file path, function and class name), innermost match wins; order = precedence at one frame
RULES: list[tuple[str, Any]] = [
    ("imports", lambda f, fn, c: "importlib" in f or fn in ("_find_and_load", "_handle_fromlist")),
    ("reflecting tables", lambda f, fn, c: "sqlalchemy/engine/reflection.py" in f or fn == "_autoload"),
    ("connecting", lambda f, fn, c: ("psycopg/connection.py" in f and fn in ("connect", "_connect_gen"))
     or ("sqlalchemy/pool" in f and fn == "connect")),
    ("COPY (source COPY out -> sink COPY in)", lambda f, fn, c: f.endswith("fastpath/stream.py")
     and fn in ("stream_copy", "_forward", "_drain", "_wait_readable")),
    ("statements (count, cursor, staging table, merge)", lambda f, fn, c: f.endswith("runner/plan.py")
     and fn == "_execute" and c == "_Stream"),
    ("push-down statement", lambda f, fn, c: f.endswith("runner/plan.py") and fn == "_execute"),
    ("planning (probes, compile)", lambda f, fn, c: f.endswith("runner/plan.py")),
    ("row path (read, transform, write)", lambda f, fn, c: "runner/fastpath/" in f or "runner/connectors/" in f
     or f.endswith("runner/transforms.py")),
    ("store (open, claim, record the run)", lambda f, fn, c: "core/store/" in f),
    ("manifest (YAML, model)", lambda f, fn, c: f.endswith("core/model.py") or "/yaml/" in f),
    ("progress, cli", lambda f, fn, c: "runner/progress.py" in f or "cli/commands.py" in f),
]


def part_of(frame: Any, inherited: str) -> str:
    if inherited == "imports":
        return inherited
    path, fn = (frame.file_path or "").replace("\\", "/"), frame.function or ""
    for part, test in RULES:
        if test(path, fn, getattr(frame, "class_name", None)):
            return part
    return inherited


def attribute(frame: Any, inherited: str, parts: dict[str, float]) -> None:
    part = part_of(frame, inherited)
    children = list(frame.children)
    parts[part] += frame.time - sum(c.time for c in children)
    for child in children:
        attribute(child, part, parts)


def main() -> None:
    from pyinstrument.session import Session

    for path in sys.argv[1:]:
        session = Session.load(path)
        root = session.root_frame()
        parts: dict[str, float] = defaultdict(float)
        if root is not None:
            attribute(root, "other (interpreter, click, the executor's own code)", parts)
        print(f"\n{path}: {session.duration:.2f} s sampled, CPU {session.cpu_time:.2f} s")
        for part, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"  {seconds:6.2f} s  {100 * seconds / session.duration:4.0f}%  {part}")


if __name__ == "__main__":
    main()
