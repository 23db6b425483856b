"""DESIGN §5's typical question — the events and exact unique users of one event type in one country over any range of
days — as one Trino query over the `bi` views: the whole calendar months of the range from the monthly rollup
(`bi.monthly_event_usage`: one row per user and month), the days at either edge from the daily aggregates
(`bi.event_usage`: one row per user and day), one distinct count over both."""

from __future__ import annotations

from datetime import date, timedelta

from lakehouse.dates import month_days


def whole_months(first: date, last: date) -> tuple[date, date] | None:
    """The first days of the first and the last whole calendar month from `first` to `last`; None without one."""
    start = first if first.day == 1 else month_days(first.replace(day=1))[-1] + timedelta(days=1)
    end = last if last == month_days(last.replace(day=1))[-1] else last.replace(day=1) - timedelta(days=1)
    return (start, end.replace(day=1)) if start <= end else None


def literal(value: str | None) -> str:
    """`value` as a Trino string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def usage_query(event_type: str, country: str | None, first: date, last: date) -> str:
    """The query answering `events`, `users` for `event_type` in `country` (None: events without one) from `first` to
    `last`, both included: as `SELECT sum(events), count(DISTINCT user_id) FROM bi.event_usage WHERE ... event_date
    BETWEEN first AND last`, reading the monthly rollup for the whole months in between."""
    where = f"event_type = {literal(event_type)} AND " + (
        f"country = {literal(country)}" if country is not None else "country IS NULL"
    )
    parts, edges = [], [(first, last)]
    if months := whole_months(first, last):
        start, end = months
        parts.append(f"SELECT user_id, events FROM bi.monthly_event_usage\n"
                     f"    WHERE {where} AND event_month BETWEEN DATE '{start}' AND DATE '{end}'")  # fmt: skip
        edges = [(first, start - timedelta(days=1)), (month_days(end)[-1] + timedelta(days=1), last)]
    days = " OR ".join(f"event_date BETWEEN DATE '{a}' AND DATE '{b}'" for a, b in edges if a <= b)
    if days:
        parts.append(f"SELECT user_id, events FROM bi.event_usage\n    WHERE {where} AND ({days})")
    union = "\n    UNION ALL\n    ".join(parts)
    asked = "SELECT coalesce(sum(events), 0) AS events, count(DISTINCT user_id) AS users"
    return f"{asked}\nFROM (\n    {union}\n) AS usage"
