"""Live progress of a run: counters the runner updates, and a rich progress bar that shows them."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


@dataclass(slots=True)
class LiveCounters:
    """Counts of the measured phase so far."""

    sent: int = 0
    done: int = 0
    failed: int = 0

    @property
    def in_flight(self) -> int:
        return self.sent - self.done


class RichProgress:
    """A progress bar by requests (when the count is known) or by seconds (duration runs)."""

    def __init__(
        self, name: str, *, total_requests: int | None, duration: float | None, console: Console
    ) -> None:
        self._by_time = total_requests is None
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn() if not self._by_time else TextColumn("{task.completed:.0f}/{task.total:.0f}s"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        total = float(total_requests) if total_requests is not None else duration
        self._task: TaskID = self._progress.add_task(name, total=total, status="")

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, counters: LiveCounters, elapsed: float) -> None:
        """Redraw from the counters (`elapsed` drives the bar of duration runs)."""
        completed = elapsed if self._by_time else counters.done
        status = f"ok {counters.done - counters.failed}  err {counters.failed}  in flight {counters.in_flight}"
        self._progress.update(self._task, completed=completed, status=status)
