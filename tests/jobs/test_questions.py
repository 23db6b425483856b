"""The typical question over any range: which whole months it reads from the rollup and which days at the edges from
the daily aggregates (the answers themselves: tests/jobs/test_publish.py, through Trino against the oracle)."""

from datetime import date

from lakehouse.questions import usage_query, whole_months


def test_six_months_from_january_are_whole_already() -> None:
    assert whole_months(date(2024, 1, 1), date(2024, 6, 30)) == (date(2024, 1, 1), date(2024, 6, 1))


def test_partial_months_at_either_end_are_left_out() -> None:
    assert whole_months(date(2024, 1, 2), date(2024, 6, 29)) == (date(2024, 2, 1), date(2024, 5, 1))
    assert whole_months(date(2023, 12, 15), date(2024, 2, 29)) == (date(2024, 1, 1), date(2024, 2, 1))
    assert whole_months(date(2024, 2, 1), date(2024, 2, 29)) == (date(2024, 2, 1), date(2024, 2, 1))


def test_a_range_without_a_whole_month_has_none() -> None:
    assert whole_months(date(2024, 1, 2), date(2024, 2, 28)) is None
    assert whole_months(date(2024, 3, 5), date(2024, 3, 9)) is None


def test_a_mid_month_range_reads_the_months_between_and_the_edge_days() -> None:
    sql = usage_query("login", "DE", date(2024, 7, 15), date(2024, 12, 10))
    assert "event_month BETWEEN DATE '2024-08-01' AND DATE '2024-11-01'" in sql
    assert ("(event_date BETWEEN DATE '2024-07-15' AND DATE '2024-07-31' OR "
            "event_date BETWEEN DATE '2024-12-01' AND DATE '2024-12-10')") in sql  # fmt: skip


def test_whole_months_only_read_no_day_and_no_whole_month_reads_no_month() -> None:
    assert "bi.event_usage" not in usage_query("login", "DE", date(2024, 3, 1), date(2024, 4, 30))
    assert "bi.monthly_event_usage" not in usage_query("login", "DE", date(2024, 3, 2), date(2024, 3, 31))


def test_values_are_quoted_and_no_country_means_events_without_one() -> None:
    sql = usage_query("it's", None, date(2024, 3, 2), date(2024, 3, 3))
    assert "event_type = 'it''s' AND country IS NULL" in sql
