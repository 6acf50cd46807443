"""robfig/cron v3.0.1 as Kubernetes uses it, for the tests: the Go program beside this file.

:func:`oracle` builds it once (``go build``, modules from the proxy) into
``${ADF_CACHE:-~/.cache/activedataflow}/bin/robfig-oracle-<hash of its sources>``, the way
``scripts/build-control-plane.sh`` caches, and returns a :class:`Robfig` that asks it questions in
batches: one process per batch, however many questions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.services import missing

HERE = Path(__file__).parent
SOURCES = ("main.go", "go.mod", "go.sum")


@dataclass(frozen=True)
class Answer:
    valid: bool
    error: str
    ticks: list[datetime | None]  # None: Next's zero time (no tick within five years)


@dataclass(frozen=True)
class Robfig:
    binary: Path

    def ask(self, queries: list[dict[str, Any]]) -> list[Answer]:
        """Each query: ``schedule``, and optionally ``zone``, ``after`` (aware datetime), ``count``."""
        if not queries:
            return []
        lines = []
        for q in queries:
            after = q.get("after")
            lines.append(json.dumps({
                "schedule": q["schedule"], "zone": q.get("zone") or "",
                "after": after.astimezone(UTC).isoformat() if after is not None else "",
                "count": q.get("count", 1),
            }))
        done = subprocess.run(
            [str(self.binary)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True, timeout=120
        )
        answers = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(answers) == len(queries), done.stderr
        return [
            Answer(a["valid"], a.get("error", ""), [datetime.fromisoformat(t) if t else None for t in a["next"]])
            for a in answers
        ]


def oracle() -> Robfig:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    digest = hashlib.sha256(b"".join((HERE / name).read_bytes() for name in SOURCES)).hexdigest()[:16]
    cache = Path(os.environ.get("ADF_CACHE") or Path.home() / ".cache" / "activedataflow") / "bin"
    binary = cache / f"robfig-oracle-{digest}"
    if binary.exists():
        return Robfig(binary)
    if not Path(go).exists():
        missing("Go (/usr/local/go/bin/go)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false -mod=readonly"}
        subprocess.run([go, "build", "-o", f"{tmp}/oracle", "."], cwd=HERE, env=env, check=True, timeout=600)
        os.replace(f"{tmp}/oracle", binary)  # atomic: a concurrent build writes the same bytes
    return Robfig(binary)
