"""Calendar helpers: months of days, days of a month (to the calendar's last day), ranges."""

from __future__ import annotations

from datetime import date

import pytest

from lakehouse.dates import day_range, month_days, months_of
from lakehouse.errors import LakehouseError


def test_month_days_cover_the_month_to_its_last_day() -> None:
    assert (len(month_days(date(2024, 2, 1))), month_days(date(2024, 2, 1))[-1]) == (29, date(2024, 2, 29))
    assert month_days(date(2023, 12, 1))[-1] == date(2023, 12, 31)
    # The calendar's last month: there is no next month to count back from.
    assert month_days(date(9999, 12, 1))[-1] == date(9999, 12, 31)


def test_months_of_days_and_ranges() -> None:
    assert months_of([date(2024, 3, 5), date(2024, 2, 29), date(2024, 3, 1)]) == [date(2024, 2, 1), date(2024, 3, 1)]
    assert day_range(date(2024, 2, 28), date(2024, 3, 1)) == [date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1)]
    with pytest.raises(LakehouseError, match="before --from"):
        day_range(date(2024, 3, 2), date(2024, 3, 1))
