"""The BI question benchmark's range: the whole months of its history, which the monthly view answers."""

from datetime import date

import pytest
from common import BenchmarkError
from question import whole_months


def test_six_months_from_january_are_whole_already() -> None:
    assert whole_months(date(2024, 1, 1), date(2024, 6, 30)) == (date(2024, 1, 1), date(2024, 6, 30))


def test_partial_months_at_either_end_are_left_out() -> None:
    assert whole_months(date(2024, 1, 2), date(2024, 6, 29)) == (date(2024, 2, 1), date(2024, 5, 31))
    assert whole_months(date(2023, 12, 15), date(2024, 2, 29)) == (date(2024, 1, 1), date(2024, 2, 29))


def test_a_range_without_a_whole_month_is_refused() -> None:
    with pytest.raises(BenchmarkError, match="no whole month from 2024-01-02 to 2024-02-28"):
        whole_months(date(2024, 1, 2), date(2024, 2, 28))
