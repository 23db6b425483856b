"""Calendar helpers on UTC dates: the months of days, the days of a month, a range of days."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from lakehouse.errors import LakehouseError

MAX_DAYS = 3_660


def months_of(days: Iterable[date]) -> list[date]:
    """The first day of each month `days` fall in, sorted."""
    return sorted({day.replace(day=1) for day in days})


def month_days(month: date) -> list[date]:
    """Every day of the month starting on `month`."""
    last = date(month.year, 12, 31) if month.month == 12 else date(month.year, month.month + 1, 1) - timedelta(days=1)
    return day_range(month, last)


def day_range(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, both included."""
    if last < first:
        raise LakehouseError(f"--to {last} is before --from {first}")
    count = (last - first).days + 1
    if count > MAX_DAYS:
        raise LakehouseError(f"{count} days asked for; at most {MAX_DAYS} per run")
    return [first + timedelta(days=offset) for offset in range(count)]
