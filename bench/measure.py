"""Time one approach in this process and print one JSON line (run by :mod:`bench.run`, one process per measurement).

    python bench/measure.py APPROACH SRC_URL DST_URL [--profile FILE.html]

``seconds`` runs from the approach's first connection to its last commit (imports are done before);
``rss_mb`` is the process's peak resident set, imports included; ``base_rss_mb`` the same
before the first row moves (interpreter, imports, an opened store). For an approach that is a
whole process of its own (``approaches.WHOLE_PROCESS``: ``adf run``, Sling, ``*_process``) the clock
runs from its spawn to its exit and ``rss_mb`` is that process's peak (``base_rss_mb`` 0).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any


def _preload(name: str, urls: tuple[str, str]) -> None:
    """Import what the approach imports, so that the clock measures moving rows, not importing.

    Only what the approach itself would load for these URLs: a SQLite-only case never loads psycopg.
    """
    if name.startswith("ours") or name in ("core", "orm", "dlt"):
        import sqlalchemy  # noqa: F401
    if name.startswith("ours"):
        import activedataflow.runner.executor
        import activedataflow.runner.plan
        import activedataflow.store
    if name == "dlt":
        import dlt  # noqa: F401
        from dlt.sources.sql_database import sql_table  # noqa: F401
    if any(u.startswith("postgresql") for u in urls):
        import psycopg  # noqa: F401

        if name.startswith("ours"):
            import activedataflow.runner.fastpath.pg  # noqa: F401


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss would include the parent's, inherited across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("approach")
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--profile", help="write a pyinstrument HTML profile here")
    args = ap.parse_args()
    import approaches  # a sibling module

    fn = approaches.APPROACHES[args.approach]
    whole = args.approach in approaches.WHOLE_PROCESS
    if not whole:  # a whole process imports what it needs on the clock
        _preload(args.approach, (args.src, args.dst))
    if args.approach.startswith("ours"):
        approaches.prepare_ours()
    approaches.CHILD_RSS_MB.clear()
    base_mb = peak_rss_mb()  # interpreter and imports, before any row moves
    profiler: Any = None
    if args.profile and whole:  # the approach profiles its own process (approaches.ours_cli)
        import os

        os.environ["ADF_BENCH_PROFILE"] = args.profile
    elif args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
    t0 = time.perf_counter()
    read, written = fn(args.src, args.dst)
    seconds = time.perf_counter() - t0
    if profiler is not None:
        profiler.stop()
        with open(args.profile, "w") as f:
            f.write(profiler.output_html())
        print(profiler.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)
    rss_mb = peak_rss_mb()
    if whole:  # the measured process's own peak, not this one's; no "after imports" figure
        rss_mb, base_mb = max(approaches.CHILD_RSS_MB), 0.0
    print(json.dumps({"seconds": seconds, "read": read, "written": written, "rss_mb": rss_mb,
                      "base_rss_mb": base_mb, "whole_process": whole}))


if __name__ == "__main__":
    main()
