"""Cron expressions read as sets of open minutes: when a `warm_schedule` window is open.

Below every layer: the spec validates a window's expression at deploy with the same parser the
scheduler uses to open it (`control/warmth.py`). Parsing and matching are cronsim's; only the
error text is ours.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cronsim import CronSim, CronSimError

# The five fields, for error messages: (name, lowest, highest, names allowed).
_FIELDS: tuple[tuple[str, int, int, frozenset[str]], ...] = (
    ("minute", 0, 59, frozenset()),
    ("hour", 0, 23, frozenset()),
    ("day of month", 1, 31, frozenset()),
    (
        "month",
        1,
        12,
        frozenset(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        ),
    ),
    ("day of week", 0, 7, frozenset(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])),
)
# cronsim's name for each field in its errors ("Bad day-of-week"), in `_FIELDS` order.
_CRONSIM_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_MINUTE = timedelta(minutes=1)


def _explain(expression: str, error: CronSimError) -> str:
    """cronsim says which field is bad ("Bad hour"); say why, with the range and the value."""
    parts = expression.split()
    reason = str(error).lower()
    for index, name in enumerate(_CRONSIM_FIELDS):
        if reason.endswith(name):
            what, low, high, names = _FIELDS[index]
            text = parts[index]
            tokens = [t for t in re.split(r"[,/-]", text) if t and t != "*"]
            if any(not t.isdigit() and t.lower() not in names for t in tokens):
                return f"{text!r} is not a number or name in the {what} field"
            return (
                f"{text!r} is outside {low}-{high} in the {what} field "
                "(or a range runs backwards, or a step is 0)"
            )
    return f"cron expression {expression!r} is not valid: {error}"


@dataclass(frozen=True)
class CronWindow:
    """A cron expression read as a set of minutes: the window is open in every minute it matches.

    `* 8-17 * * mon-fri` is open 08:00-17:59 on weekdays. Day of week 0 and 7 are Sunday; a
    restricted day of month and day of week match when either does (Vixie cron). Parsing and
    matching are cronsim's (a small, dependency-free, strict parser; croniter accepts `9-8`
    silently and pulls in python-dateutil); only the error text is ours.
    """

    expression: str

    @classmethod
    def parse(cls, expression: str) -> CronWindow:
        """Check `expression` (5 fields, each in range) and keep it; checked once per text."""
        _check(expression)
        return cls(expression)

    def open_at(self, moment: datetime) -> bool:
        """Whether the minute holding `moment` matches (in `moment`'s own timezone)."""
        minute = moment.replace(second=0, microsecond=0)
        # cronsim yields the first match after its start: start just before this minute.
        return next(CronSim(self.expression, minute - _MINUTE), None) == minute


@functools.lru_cache(maxsize=256)  # the scheduler asks on every tick for the same few windows
def _check(expression: str) -> None:
    if len(expression.split()) != 5:
        raise ValueError(
            f"cron expression {expression!r} needs 5 fields (minute hour day month weekday), "
            "e.g. '* 8-17 * * mon-fri'"
        )
    try:
        CronSim(expression, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(_explain(expression, exc)) from None
