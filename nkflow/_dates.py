"""Timepoints written as dates: their calendar order, when the sheet's writing gives one.

``2024-03-12`` (ISO) says which number is the month; ``12.03.2024`` and ``12/03/2024`` do
not: day first (most of the world) or month first (the USA). When every timepoint is a
date and only one reading is a valid date for all of them, or both readings give the same
order, that is the calendar order; when both are valid and disagree, nkflow cannot tell,
and the sheet's order stands (said in the Methods).
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["AMBIGUOUS", "CALENDAR", "date_order"]

#: why dates were sorted, and why they were not
CALENDAR = "dates, in calendar order"
AMBIGUOUS = (
    "sheet order: the dates read day first and month first give different orders, so "
    "nkflow cannot tell which is earlier (write them as 2024-03-12 or configure the order)"
)
_ISO = re.compile(r"^(\d{4})([./-])(\d{1,2})\2(\d{1,2})$")
_LOCAL = re.compile(r"^(\d{1,2})([./-])(\d{1,2})\2(\d{4}|\d{2})$")


def _date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year + 2000 if year < 100 else year, month, day)
    except ValueError:
        return None


def _readings(value: str) -> tuple[dt.date | None, dt.date | None] | None:
    """The date ``value`` is read day first and month first; None when it is no date."""
    if match := _ISO.match(value.strip()):
        date = _date(int(match[1]), int(match[3]), int(match[4]))
        return date, date
    if match := _LOCAL.match(value.strip()):
        first, second, year = int(match[1]), int(match[3]), int(match[4])
        return _date(year, second, first), _date(year, first, second)
    return None


def date_order(timepoints: list[str]) -> tuple[list[str], str] | None:
    """``timepoints`` in calendar order and why, or None when one of them is not a date.

    Parameters
    ----------
    timepoints
        Distinct timepoints in the sheet's order.

    Returns
    -------
    tuple of (list of str, str) or None
        The order and :data:`CALENDAR`; or the sheet's order and :data:`AMBIGUOUS` when
        day-first and month-first readings are both valid dates and order them otherwise
        (or neither reading is valid for every value).
    """
    readings = [_readings(t) for t in timepoints]
    if not timepoints or any(r is None for r in readings):
        return None
    orders = []
    for k in (0, 1):  # day first, month first
        dates = [r[k] for r in readings if r is not None]
        if all(d is not None for d in dates):
            keyed = dict(zip(timepoints, dates, strict=True))
            orders.append(sorted(timepoints, key=keyed.__getitem__))
    if orders and all(o == orders[0] for o in orders):
        return orders[0], CALENDAR
    return list(timepoints), AMBIGUOUS
