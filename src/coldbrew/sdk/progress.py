"""A map's progress on stderr: on a terminal, a rich progress bar redrawn in place; elsewhere
(a log file, CI) one plain line every few seconds, in the shape tqdm made familiar: percent, bar,
done/total, [elapsed<ETA, rate], then failures and jobs in flight.

rich draws the terminal bar (it handles the terminal's width, cursor and Ctrl-C cleanly) and is
imported on the first draw on a terminal, never at start-up; a log gets `render()`'s lines,
because a live display has nothing to redraw in a file.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from coldbrew.sdk.bulk import MapProgress

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

#: Redraws per second at most on a terminal; elsewhere (a log file, CI) one line per interval.
TTY_INTERVAL_S, LOG_INTERVAL_S = 0.1, 5.0


def render(progress: MapProgress, width: int = 24) -> str:
    """One log line, e.g. `toy  61% [##############----------] 123/200 [00:03<00:02, 40.2/s]
    3 failed, 64 in flight`."""
    fraction = progress.done / progress.total if progress.total else 1.0
    filled = int(fraction * width)
    bar = "#" * filled + "-" * (width - filled)
    count = f"{progress.done}/{progress.total}"
    line = f"{progress.endpoint} {fraction:4.0%} [{bar}] {count} [{_timing(progress)}]"
    extra = _extra(progress)
    return line + (" " + extra if extra else "")


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    text = f"{rest // 60:02d}:{rest % 60:02d}"
    return f"{hours}:{text}" if hours else text


def _timing(progress: MapProgress) -> str:
    """`00:03<00:02, 40.2/s` while running, `00:05, 40.0/s` once finished."""
    if progress.finished:
        return f"{_clock(progress.elapsed_s)}, {progress.rate_per_s:.1f}/s"
    eta = progress.eta_s
    left = _clock(eta) if eta is not None else "?"
    return f"{_clock(progress.elapsed_s)}<{left}, {progress.rate_per_s:.1f}/s"


def _extra(progress: MapProgress) -> str:
    parts = []
    if progress.failed:
        parts.append(f"{progress.failed} failed")
    if progress.in_flight:
        parts.append(f"{progress.in_flight} in flight")
    if progress.resumed:
        parts.append(f"{progress.resumed} from the journal")
    return ", ".join(parts)


class ProgressBar:
    """A `MapProgress` callback that draws on a stream (stderr by default): a rich bar redrawn
    in place on a terminal, a plain line every few seconds elsewhere; always the final state."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval_s = TTY_INTERVAL_S if self._tty else LOG_INTERVAL_S
        self._drawn_at: float | None = None
        self._live: tuple[Progress, TaskID] | None = None

    def __call__(self, progress: MapProgress) -> None:
        due = self._drawn_at is None or progress.elapsed_s - self._drawn_at >= self._interval_s
        if not (due or progress.finished):
            return
        self._drawn_at = progress.elapsed_s
        if self._tty:
            self._draw(progress)
        else:
            self._stream.write(render(progress) + "\n")
            self._stream.flush()

    def _draw(self, progress: MapProgress) -> None:
        fresh = self._live is None
        if self._live is None:
            self._live = self._create(progress)
        bar, task = self._live
        bar.update(
            task,
            completed=progress.done,
            total=progress.total or 1,
            timing=_timing(progress),
            extra=_extra(progress),
        )
        if fresh:
            bar.start()  # draws the first frame, with this state
        else:
            bar.refresh()
        if progress.finished:
            self.close()

    def _create(self, progress: MapProgress) -> tuple[Progress, TaskID]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
        )

        bar = Progress(
            TextColumn("{task.description}"),
            TaskProgressColumn(),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[{task.fields[timing]}]"),
            TextColumn("{task.fields[extra]}"),
            console=Console(file=self._stream),
            auto_refresh=False,  # redrawn by `__call__`, at most every TTY_INTERVAL_S
        )
        task = bar.add_task(progress.endpoint, total=progress.total or 1, timing="", extra="")
        return bar, task

    def close(self) -> None:
        """Stop the live bar, leaving its last state on its own line, so what is printed next
        starts fresh (after a finish or an interruption alike)."""
        if self._live is not None:
            self._live[0].stop()
            self._live = None
