"""`lakehouse publish` against a real Trino server: the tables and views it creates, their answers checked against
the oracle's reading of the landed lines (tests/conftest.py `served_events`), partition pruning, and tables Spark
writes again after registration."""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.publish import publish
from lakehouse.questions import usage_query
from lakehouse.tables import PUBLISHED
from lakehouse.trino_client import ANALYST, connect, query
from tests.conftest import REPO, SERVED_DAYS, SERVED_START
from tests.lake import table

pytestmark = pytest.mark.slow
DAY_1, DAY_2 = SERVED_START, SERVED_START + timedelta(days=1)
VIEWS = ["daily_event_usage", "event_usage", "monthly_event_usage", "user_daily_activity", "user_event_history"]
TYPICAL = (
    "SELECT sum(events) AS events, count(DISTINCT user_id) AS users FROM bi.event_usage "
    "WHERE event_type = ? AND country = ? AND event_date BETWEEN ? AND ?"
)


def test_first_publish_registers_every_table_and_creates_every_view(served: tuple[Settings, dict]) -> None:
    _, summary = served
    assert summary == {"registered": list(PUBLISHED), "already_registered": [], "views": VIEWS,
                       "views_waiting_for_tables": {}, "views_dropped": []}  # fmt: skip


def test_publish_again_changes_nothing(served: tuple[Settings, dict]) -> None:
    settings, _ = served
    assert publish(settings) == {"registered": [], "already_registered": sorted(PUBLISHED), "views": VIEWS,
                                 "views_waiting_for_tables": {}, "views_dropped": []}  # fmt: skip
    assert sorted(query(settings, "SHOW TABLES FROM lake").rows) == [(name,) for name in sorted(PUBLISHED)]


def test_every_view_runs_with_the_invokers_rights(served: tuple[Settings, dict]) -> None:
    settings, _ = served
    for view in VIEWS:
        [(statement,)] = query(settings, f"SHOW CREATE VIEW bi.{view}").rows
        assert "SECURITY INVOKER" in statement


def test_typical_question_matches_the_oracle(served: tuple[Settings, dict], served_events: list[dict]) -> None:
    """The DESIGN §5 query, through the stock DB-API client with parameters, as `analyst`, for the busiest type and
    country over one day, both days and a range without data, against the oracle's events."""
    settings, _ = served
    located = _grouped((e for e in served_events if e["country"] is not None), "event_type", "country")
    (event_type, country), _ = min(located.items(), key=lambda item: (-len(item[1]), item[0]))
    cursor = connect(settings, ANALYST).cursor()
    for first, last in ((DAY_1, DAY_1), (DAY_1, DAY_2), (DAY_2 + timedelta(days=30), DAY_2 + timedelta(days=40))):
        cursor.execute(TYPICAL, [event_type, country, first, last])
        chosen = [e for e in located[(event_type, country)] if first <= e["event_date"] <= last]
        assert cursor.fetchall() == [[len(chosen) or None, len(_users(chosen))]]


def test_the_question_over_any_range_matches_the_oracle(
    served: tuple[Settings, dict], served_events: list[dict]
) -> None:
    """`questions.usage_query` as `analyst`, for the busiest type and country (and for events without a country),
    over whole months, from mid-month to mid-month, within one month, across the year and over days without data:
    the oracle's events and exact distinct users of those days."""
    settings, _ = served
    located = _grouped(served_events, "event_type", "country")
    (event_type, country), _ = min(((key, rows) for key, rows in located.items() if key[1] is not None),
                                   key=lambda item: (-len(item[1]), item[0]))  # fmt: skip
    ranges = [(date(2024, 3, 1), date(2024, 4, 30)), (date(2024, 2, 29), date(2024, 4, 1)),
              (date(2024, 3, 2), date(2024, 5, 31)), (date(2024, 3, 2), date(2024, 3, 31)),
              (date(2023, 12, 20), date(2024, 6, 5)), (date(2024, 6, 1), date(2024, 6, 30))]  # fmt: skip
    for kind, where in ((event_type, country), (event_type, None)):
        for first, last in ranges:
            chosen = [e for e in located[(kind, where)] if first <= e["event_date"] <= last]
            rows = query(settings, usage_query(kind, where, first, last), ANALYST).rows
            assert rows == [(len(chosen), len(_users(chosen)))], (kind, where, first, last)
    for where in (country, None):  # the data covers every kind of range: each served day has events of both
        assert {e["event_date"] for e in located[(event_type, where)]} == set(SERVED_DAYS)


def test_monthly_usage_matches_the_oracle(served: tuple[Settings, dict], served_events: list[dict]) -> None:
    """The monthly view, as `analyst`: per month, type and country (NULL country included), all events and exact
    distinct users as the oracle counts them; and over whole months, the daily view's answer."""
    settings, _ = served
    months = [{**e, "month": e["event_date"].replace(day=1)} for e in served_events]
    by_month = [(*key, len(rows), len(_users(rows))) for key, rows in
                _grouped(months, "month", "event_type", "country").items()]  # fmt: skip
    trino = query(settings, "SELECT event_month, event_type, country, sum(events), count(DISTINCT user_id) "
                            "FROM bi.monthly_event_usage GROUP BY 1, 2, 3", ANALYST)  # fmt: skip
    assert sorted(trino.rows, key=str) == sorted(by_month, key=str)
    first, last = min(e["month"] for e in months), max(e["event_date"] for e in months)
    where = f"WHERE event_date BETWEEN DATE '{first}' AND DATE '{last}'"
    daily = query(settings, f"SELECT sum(events), count(DISTINCT user_id) FROM bi.event_usage {where}", ANALYST)
    monthly = query(settings, "SELECT sum(events), count(DISTINCT user_id) FROM bi.monthly_event_usage", ANALYST)
    assert monthly.rows == daily.rows == [(len(served_events), len(_users(served_events)))]


def test_usage_of_every_type_and_country_matches_the_oracle(
    served: tuple[Settings, dict], served_events: list[dict]
) -> None:
    """Over the whole range, per type and country (NULL country included): all events, anonymous ones too, and
    exact distinct users; and the per-day view's figures."""
    settings, _ = served
    by_type_country = [(*key, len(rows), len(_users(rows))) for key, rows in
                       _grouped(served_events, "event_type", "country").items()]  # fmt: skip
    trino = query(settings, "SELECT event_type, country, sum(events), count(DISTINCT user_id) FROM bi.event_usage "
                            "GROUP BY 1, 2", ANALYST)  # fmt: skip
    assert sorted(trino.rows, key=str) == sorted(by_type_country, key=str)
    assert any(row[1] is None for row in trino.rows)
    per_day = [(*key, len(rows), len(_users(rows))) for key, rows in
               _grouped(served_events, "event_date", "event_type", "country").items()]  # fmt: skip
    daily = query(settings, "SELECT * FROM bi.daily_event_usage", ANALYST)
    assert daily.columns == ["event_date", "event_type", "country", "events", "unique_users"]
    assert sorted(daily.rows, key=str) == sorted(per_day, key=str)


def test_user_daily_activity_matches_the_oracle(served: tuple[Settings, dict], served_events: list[dict]) -> None:
    """Per user and day: events, types, first and last event, and the country of the last (the data has no two
    last events of a user's day at the same millisecond)."""
    settings, _ = served
    expected = []
    for (user, day), rows in _grouped((e for e in served_events if e["user_id"]), "user_id", "event_date").items():
        last = max(rows, key=lambda e: e["event_ts"])
        expected.append((user, day, len(rows), len({e["event_type"] for e in rows}),
                         min(e["event_ts"] for e in rows), last["event_ts"], last["country"]))  # fmt: skip
    trino = query(settings, "SELECT * FROM bi.user_daily_activity", ANALYST)
    assert trino.columns == ["user_id", "event_date", "events", "event_types", "first_seen", "last_seen", "country"]
    assert sorted(map(_millis, trino.rows), key=str) == sorted(expected, key=str)


def test_user_event_history_matches_the_oracle(served: tuple[Settings, dict], served_events: list[dict]) -> None:
    """The history of the most active user, and of a user also seen without a country."""
    settings, _ = served
    by_user = _grouped((e for e in served_events if e["user_id"]), "user_id")
    (top,), _ = min(by_user.items(), key=lambda item: (-len(item[1]), item[0]))
    somewhere_unknown = min(e["user_id"] for e in served_events if e["user_id"] and e["country"] is None)
    for user in (top, somewhere_unknown):
        expected = [
            (*key, len(rows), min(e["event_ts"] for e in rows), max(e["event_ts"] for e in rows))
            for key, rows in _grouped(by_user[(user,)], "event_date", "event_type", "country").items()
        ]
        sql = ("SELECT event_date, event_type, country, events, first_seen, last_seen FROM bi.user_event_history "
               f"WHERE user_id = '{user}'")  # fmt: skip
        rows = sorted(map(_millis, query(settings, sql, ANALYST).rows), key=str)
        assert rows == sorted(expected, key=str)
        assert rows


@pytest.mark.parametrize(
    ("sql", "partition_filters"),
    [
        ("SELECT sum(events), count(DISTINCT user_id) FROM bi.event_usage WHERE event_type = '{type}' "
         "AND country = 'DE' AND event_date BETWEEN DATE '{day}' AND DATE '{day}'", 2),
        ("SELECT count(*) FROM lake.events WHERE event_type = '{type}' AND event_date BETWEEN DATE '{day}' "
         "AND DATE '{day}'", 1),
    ],
)  # fmt: skip
def test_day_filters_prune_partitions(served: tuple[Settings, dict], sql: str, partition_filters: int) -> None:
    """Every table scan of the plan reads only the asked days' partitions (and the asked type's, for `events`)."""
    settings, _ = served
    [(plan,)] = query(settings, "EXPLAIN " + sql.format(type="login", day=DAY_2)).rows
    scans = re.findall(r"Scan\w*\[table = lakehouse:lake\.(\w+)", plan)
    # A scan's details continue below it, behind the plan tree's │ when another scan follows.
    pruned = re.findall(rf"event_date:date:PARTITION_KEY[\s│]+:: \[\[{DAY_2}\]\]", plan)
    assert len(scans) == len(pruned) == partition_filters, plan
    if scans == ["events"]:
        assert re.search(r"event_type:varchar:PARTITION_KEY\s+:: \[\[login\]\]", plan), plan


def test_table_written_again_by_spark_is_seen_without_registering(
    served: tuple[Settings, dict], spark: SparkSession
) -> None:
    """Spark appends a day to a registered table, rewrites it, then deletes it: Trino follows every new version."""
    settings, _ = served
    path = tables.table_path(settings, tables.DAILY_EVENT_STATS)
    schema = table(spark, settings, tables.DAILY_EVENT_STATS).schema
    day = date(2030, 1, 1)
    sql = f"SELECT events, unique_users FROM bi.daily_event_usage WHERE event_date = DATE '{day}'"
    try:
        for events in (7, 8):
            row = Row(event_date=day, event_type="probe", country="ZZ", events=events, unique_users=1,
                      anonymous_events=0)  # fmt: skip
            frame = spark.createDataFrame([row]).select(*schema.fieldNames())
            frame.write.format("delta").mode("overwrite").option("replaceWhere", f"event_date = '{day}'").save(path)
            assert query(settings, sql, ANALYST).rows == [(events, 1)]
    finally:
        DeltaTable.forPath(spark, path).delete(F.col("event_date") == F.lit(day))
    assert query(settings, sql, ANALYST).rows == []


def test_views_follow_the_sql_folder(served: tuple[Settings, dict], tmp_path: Path) -> None:
    """A new file adds a view, a removed file drops its view, and a view whose table does not exist yet waits."""
    settings, _ = served
    for path in (REPO / "sql").glob("*.sql"):
        shutil.copy(path, tmp_path)
    (tmp_path / "extra.sql").write_text("CREATE OR REPLACE VIEW bi.extra SECURITY INVOKER AS SELECT 1 AS one")
    moved = _with_views_dir(settings, tmp_path)
    assert publish(moved)["views"] == sorted([*VIEWS, "extra"])
    (tmp_path / "extra.sql").unlink()
    (tmp_path / "later.sql").write_text("CREATE OR REPLACE VIEW bi.later SECURITY INVOKER AS SELECT * FROM lake.nope")
    summary = publish(moved)
    assert summary["views_dropped"] == ["extra"]
    assert "lakehouse.lake.nope' does not exist" in summary["views_waiting_for_tables"]["later"]
    assert publish(settings)["views"] == VIEWS
    assert sorted(query(settings, "SHOW TABLES FROM bi").rows) == [(view,) for view in VIEWS]


def test_publish_drops_every_view_sql_does_not_define(served: tuple[Settings, dict]) -> None:
    """A view made around publish (by hand, as the pipeline's user) in any schema is dropped by the next publish:
    only the views of sql/ are served."""
    settings, _ = served
    query(settings, "CREATE VIEW lake.sneaky SECURITY DEFINER AS SELECT * FROM lake.quarantine")
    query(settings, "CREATE VIEW bi.stray SECURITY INVOKER AS SELECT 1 AS one")
    assert sorted(publish(settings)["views_dropped"]) == ["lake.sneaky", "stray"]
    listed = query(settings, "SELECT table_schema, table_name FROM information_schema.views").rows
    assert sorted(listed) == sorted(("bi", view) for view in VIEWS)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("owner_rights", "CREATE OR REPLACE VIEW bi.owner_rights SECURITY DEFINER AS SELECT * FROM lake.quarantine"),
        ("no_rights", "CREATE OR REPLACE VIEW bi.no_rights AS SELECT * FROM lake.quarantine"),
        ("misnamed", "CREATE OR REPLACE VIEW bi.other SECURITY INVOKER AS SELECT 1 AS one"),
        ("elsewhere", "CREATE OR REPLACE VIEW lake.elsewhere SECURITY INVOKER AS SELECT 1 AS one"),
    ],
)
def test_view_files_must_replace_their_own_invoker_view(
    served: tuple[Settings, dict], tmp_path: Path, name: str, text: str
) -> None:
    settings, _ = served
    (tmp_path / f"{name}.sql").write_text(f"-- {name}\n{text}\n")
    with pytest.raises(LakehouseError, match=rf"{name}.sql: expected CREATE OR REPLACE VIEW bi.{name} "):
        publish(_with_views_dir(settings, tmp_path))
    assert sorted(query(settings, "SHOW TABLES FROM bi").rows) == [(view,) for view in VIEWS]


def _with_views_dir(settings: Settings, folder: Path) -> Settings:
    return settings.model_copy(update={"trino": settings.trino.model_copy(update={"views_dir": str(folder)})})


def _grouped(events: Iterable[dict], *keys: str) -> dict[tuple, list[dict]]:
    """The oracle's events grouped by the values of `keys`."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for event in events:
        groups[tuple(event[key] for key in keys)].append(event)
    return groups


def _users(events: list[dict]) -> set[str]:
    """The distinct users of `events` (anonymous ones left out, as count(DISTINCT user_id) leaves out NULL)."""
    return {event["user_id"] for event in events} - {None}


def _millis(row: tuple) -> tuple:
    """`row` with its timestamps as epoch milliseconds, as Spark's unix_millis gives them."""
    return tuple(round(value.timestamp() * 1000) if isinstance(value, datetime) else value for value in row)
