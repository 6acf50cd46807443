"""Progress of a run: a bar with rows/s on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

from ..model import DataFlow
from ..store.base import RunRecord

__all__ = ["LineProgress", "TerminalProgress", "progress_factory"]


class LineProgress:
    """One line on stderr every ``every`` seconds, and a final one."""

    def __init__(self, stream: IO[str], every: float = 5.0) -> None:
        self.stream, self.every = stream, every
        self.name = ""
        self.t0 = self.last = 0.0

    def started(self, flow: DataFlow, run: RunRecord) -> None:
        self.name = f"{flow.namespace}/{flow.name}"
        self.t0 = self.last = time.monotonic()
        print(f"{self.name}: run {run.run_name} started (attempt {run.attempt})", file=self.stream, flush=True)

    def advanced(self, read: int, written: int, failed: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = read / max(now - self.t0, 1e-9)
            print(
                f"{self.name}: {read} read, {written} written, {failed} failed ({rate:,.0f} rows/s)",
                file=self.stream,
                flush=True,
            )

    def finished(self, run: RunRecord) -> None:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        print(
            f"{self.name}: {run.status} — {run.records_read} read, {run.records_written} written, "
            f"{run.records_failed} failed in {elapsed:.2f}s ({run.records_read / elapsed:,.0f} rows/s)",
            file=self.stream,
            flush=True,
        )


class TerminalProgress:
    """A rich progress bar (rows read, written, rows/s) while the run goes."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console

        self.console = Console(file=stream)
        self.progress: Any = None
        self.task: Any = None
        self.t0 = 0.0

    def started(self, flow: DataFlow, run: RunRecord) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.t0 = time.monotonic()
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            TextColumn("{task.fields[read]:>10,} read  {task.fields[written]:>10,} written"),
            TextColumn("{task.fields[failed]} failed"),
            TextColumn("{task.fields[rate]:>10,.0f} rows/s"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task(f"{flow.namespace}/{flow.name}", read=0, written=0, failed=0, rate=0.0)

    def advanced(self, read: int, written: int, failed: int) -> None:
        rate = read / max(time.monotonic() - self.t0, 1e-9)
        self.progress.update(self.task, read=read, written=written, failed=failed, rate=rate)

    def finished(self, run: RunRecord) -> None:
        if self.progress is not None:
            self.progress.stop()
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        style = "green" if run.status == "success" else "red"
        self.console.print(
            f"[{style}]{run.status}[/] {run.run_name}: {run.records_read:,} read, {run.records_written:,} written, "
            f"{run.records_failed:,} failed in {elapsed:.2f}s ({run.records_read / elapsed:,.0f} rows/s)"
        )


def progress_factory(stream: IO[str] | None = None) -> Callable[[], Any]:
    out = stream or sys.stderr
    if out.isatty():
        return lambda: TerminalProgress(out)
    return lambda: LineProgress(out)
