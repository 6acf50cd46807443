"""The row path's per-row cost of the contract pipeline (rename, filter, set, drop), by hand.

    python bench/transforms.py [-n 100000] [--repeat 5]

Compiles the README's pipeline once and applies it to N in-memory rows, best of ``--repeat``, and
prints µs per row (CPU time of the process, so that a loaded machine shows less noise than wall time).
It was a test's assert (``< 2 µs/row``, ~0.5 µs on the project machine) until issue 10.7: speed is
measured here, not asserted in the suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activedataflow.model import TransformStep
from activedataflow.runner.transforms import compile_transforms

from tests.flows import CONTRACT_STEPS, ORDERS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="rows")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    pipeline = compile_transforms([TransformStep.model_validate(s) for s in CONTRACT_STEPS], ORDERS)
    rows = [(i, i % 100, (i % 1000) / 10 - 5, "paid", "t") for i in range(args.n)]
    times = []
    for _ in range(args.repeat):
        start = time.process_time()
        pipeline.apply(rows)
        times.append(time.process_time() - start)
    print(f"contract pipeline, {args.n} rows: best {min(times) / args.n * 1e6:.2f} µs/row "
          f"(of {args.repeat}: {', '.join(f'{t / args.n * 1e6:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
