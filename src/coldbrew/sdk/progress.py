"""A map's progress bar on stderr, in the shape tqdm made familiar (Ray's and Modal's bars too):
percent, bar, done/total, [elapsed<ETA, rate], then failures and jobs in flight."""

from __future__ import annotations

import sys
from typing import TextIO

from coldbrew.sdk.bulk import MapProgress

#: Redraws per second at most on a terminal; elsewhere (a log file, CI) one line per interval.
TTY_INTERVAL_S, LOG_INTERVAL_S = 0.1, 5.0


def render(progress: MapProgress, width: int = 24) -> str:
    """One line, e.g. `toy  61% [##############----------] 123/200 [00:03<00:02, 40.2/s]
    3 failed, 64 in flight`."""
    fraction = progress.done / progress.total if progress.total else 1.0
    filled = int(fraction * width)
    bar = "#" * filled + "-" * (width - filled)
    if progress.finished:
        timing = f"{_clock(progress.elapsed_s)}, {progress.rate_per_s:.1f}/s"
    else:
        eta = progress.eta_s
        left = _clock(eta) if eta is not None else "?"
        timing = f"{_clock(progress.elapsed_s)}<{left}, {progress.rate_per_s:.1f}/s"
    count = f"{progress.done}/{progress.total}"
    line = f"{progress.endpoint} {fraction:4.0%} [{bar}] {count} [{timing}]"
    extra = []
    if progress.failed:
        extra.append(f"{progress.failed} failed")
    if progress.in_flight:
        extra.append(f"{progress.in_flight} in flight")
    if progress.resumed:
        extra.append(f"{progress.resumed} from the journal")
    return line + (" " + ", ".join(extra) if extra else "")


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    text = f"{rest // 60:02d}:{rest % 60:02d}"
    return f"{hours}:{text}" if hours else text


class ProgressBar:
    """A `MapProgress` callback that draws on a stream (stderr by default): redrawn in place on a
    terminal, a plain line every few seconds elsewhere; always the final state."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval_s = TTY_INTERVAL_S if self._tty else LOG_INTERVAL_S
        self._drawn_at: float | None = None
        self._open_line = False

    def __call__(self, progress: MapProgress) -> None:
        due = self._drawn_at is None or progress.elapsed_s - self._drawn_at >= self._interval_s
        if not (due or progress.finished):
            return
        self._drawn_at = progress.elapsed_s
        text = render(progress)
        if self._tty:
            self._stream.write("\r" + text + "\x1b[K")
            self._open_line = not progress.finished
            if progress.finished:
                self._stream.write("\n")
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        """End a line left open by an interruption, so what is printed next starts fresh."""
        if self._open_line:
            self._stream.write("\n")
            self._stream.flush()
            self._open_line = False
