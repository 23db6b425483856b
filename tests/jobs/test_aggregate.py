"""The gold tables: the transforms on exact small inputs, and `lakehouse aggregate` end to end, compared row
for row with a plain-Python computation over the raw files (parsed and deduplicated by tests/oracle.py)."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable as RustTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.aggregate import aggregate
from lakehouse.config import AggregateSettings, Settings
from lakehouse.gold import activity, event_stats, monthly_activity, passes, user_activity
from lakehouse.ingest import ingest
from lakehouse.quality import validate
from lakehouse.session import spark_conf
from lakehouse.state import unaggregated_batches
from lakehouse.storage import rows_by_partition
from tests.lake import aggregated_lake, copied_lake, event_line, land, table, version
from tests.oracle import audit

START = date(2024, 7, 1)
EVENTS_SCHEMA = "event_date date, user_id string, event_type string, country string, event_ts timestamp"


def _ts(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 7, day, hour, minute)


def test_gold_rows_from_a_handful_of_events(spark: SparkSession) -> None:
    d1, d2 = date(2024, 7, 1), date(2024, 7, 2)
    events = spark.createDataFrame(
        [(d1, "u1", "login", "DE", _ts(1, 9)), (d1, "u1", "login", "DE", _ts(1, 17, 30)),
         (d1, "u2", "login", "DE", _ts(1, 12)), (d1, None, "login", "DE", _ts(1, 13)),
         (d1, "u1", "login", None, _ts(1, 8)), (d1, None, "login", None, _ts(1, 8)),
         (d2, "u1", "login", "DE", _ts(2, 0)), (d2, None, "search", "FR", _ts(2, 1))],
        EVENTS_SCHEMA,
    )  # fmt: skip
    rows = activity(events)
    assert_df_equality(
        user_activity(rows),
        spark.createDataFrame(
            [(d1, "u1", "login", "DE", 2, _ts(1, 9), _ts(1, 17, 30)),
             (d1, "u2", "login", "DE", 1, _ts(1, 12), _ts(1, 12)),
             (d1, "u1", "login", None, 1, _ts(1, 8), _ts(1, 8)),
             (d2, "u1", "login", "DE", 1, _ts(2, 0), _ts(2, 0))],
            "event_date date, user_id string, event_type string, country string, events long, "
            "first_seen timestamp, last_seen timestamp",
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )  # fmt: skip
    assert_df_equality(
        event_stats(rows),
        spark.createDataFrame(
            [(d1, "login", "DE", 4, 2, 1), (d1, "login", None, 2, 1, 1),
             (d2, "login", "DE", 1, 1, 0), (d2, "search", "FR", 1, 0, 1)],
            "event_date date, event_type string, country string, events long, unique_users long, anonymous_events long",
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )  # fmt: skip


def test_monthly_rows_from_a_handful_of_daily_rows(spark: SparkSession) -> None:
    """Users summed per month (a user on two days of July: one row, two active days); a month's anonymous events in
    one row with a NULL user per type and country; a day without anonymous events adds none."""
    j1, j2, a1 = date(2024, 7, 1), date(2024, 7, 31), date(2024, 8, 1)
    users = spark.createDataFrame(
        [(j1, "u1", "login", "DE", 2), (j2, "u1", "login", "DE", 3), (j2, "u2", "login", "DE", 1),
         (j1, "u1", "login", None, 1), (a1, "u1", "login", "DE", 4)],
        "event_date date, user_id string, event_type string, country string, events long",
    )  # fmt: skip
    stats = spark.createDataFrame(
        [(j1, "login", "DE", 3, 1, 1), (j2, "login", "DE", 6, 2, 2), (j1, "login", None, 1, 1, 0),
         (a1, "login", "DE", 4, 1, 0), (a1, "search", "FR", 7, 0, 7)],
        "event_date date, event_type string, country string, events long, unique_users long, anonymous_events long",
    )  # fmt: skip
    assert_df_equality(
        monthly_activity(users, stats),
        spark.createDataFrame(
            [(j1, "login", "DE", "u1", 5, 2), (j1, "login", "DE", "u2", 1, 1), (j1, "login", None, "u1", 1, 1),
             (a1, "login", "DE", "u1", 4, 1), (j1, "login", "DE", None, 3, 2), (a1, "search", "FR", None, 7, 1)],
            "event_month date, event_type string, country string, user_id string, events long, active_days long",
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )  # fmt: skip


# --- end to end against the oracle ---------------------------------------------------------------------------------


def expected_gold(files: list[str]) -> tuple[dict, dict]:
    """Both gold tables computed in plain Python from the raw files: keyed rows of (events, first, last) in epoch
    micros, and (events, unique users, anonymous events)."""
    users: dict[tuple, list[int]] = defaultdict(list)
    stats_events: Counter = Counter()
    anonymous: Counter = Counter()
    stats_users: dict[tuple, set] = defaultdict(set)
    for _, event in audit(files).events:
        millis = event["meta"]["created_at"]
        day = datetime.fromtimestamp(millis / 1000, UTC).date()
        user, country = _first(event, "user_id"), _first(event, "country")
        key = (day, event["data"]["type"], country)
        stats_events[key] += 1
        if user is not None:
            users[(day, user, event["data"]["type"], country)].append(millis * 1000)
            stats_users[key].add(user)
        else:
            anonymous[key] += 1
    user_rows = {key: (len(times), min(times), max(times)) for key, times in users.items()}
    stats_rows = {key: (n, len(stats_users[key]), anonymous[key]) for key, n in stats_events.items()}
    return user_rows, stats_rows


def _first(event: dict, name: str) -> str | None:
    """The contract's derived column: `data.attributes.<name>`, else `meta.<name>` (defaults of conf/local.yaml)."""
    for holder in (event["data"]["attributes"], event["meta"]):
        if holder.get(name) is not None:
            assert isinstance(holder[name], str), f"the oracle handles string {name}s only: {holder[name]!r}"
            return holder[name]
    return None


def stored_gold(spark: SparkSession, settings: Settings) -> tuple[dict, dict]:
    users = table(spark, settings, tables.DAILY_USER_ACTIVITY).select(
        "event_date", "user_id", "event_type", "country", "events",
        F.unix_micros("first_seen").alias("first"), F.unix_micros("last_seen").alias("last"),
    )  # fmt: skip
    stats = table(spark, settings, tables.DAILY_EVENT_STATS)
    user_rows = {(r[0], r[1], r[2], r[3]): (r[4], r[5], r[6]) for r in users.collect()}
    stats_rows = {(r["event_date"], r["event_type"], r["country"]): (r["events"], r["unique_users"],
                                                                     r["anonymous_events"])
                  for r in stats.collect()}  # fmt: skip
    return user_rows, stats_rows


def expected_monthly(users: dict, stats: dict) -> dict:
    """`monthly_user_activity` from the oracle's daily rows: (month, type, country, user or None) -> (events, days)."""
    monthly: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for (day, user, event_type, country), (events, *_) in users.items():
        monthly[(day.replace(day=1), event_type, country, user)][0] += events
        monthly[(day.replace(day=1), event_type, country, user)][1] += 1
    for (day, event_type, country), (*_, anonymous) in stats.items():
        if anonymous:
            monthly[(day.replace(day=1), event_type, country, None)][0] += anonymous
            monthly[(day.replace(day=1), event_type, country, None)][1] += 1
    return {key: tuple(value) for key, value in monthly.items()}


def stored_monthly(spark: SparkSession, settings: Settings) -> dict:
    rows = table(spark, settings, tables.MONTHLY_USER_ACTIVITY).collect()
    return {(r["event_month"], r["event_type"], r["country"], r["user_id"]): (r["events"], r["active_days"])
            for r in rows}  # fmt: skip


def landed(settings: Settings) -> list[str]:
    return sorted(str(p) for p in (Path(settings.lake.root) / "landing").rglob("*.jsonl*"))


def _day(event: dict) -> date:
    return datetime.fromtimestamp(event["meta"]["created_at"] / 1000, UTC).date()


def _replaced_days(settings: Settings, name: str, since: int) -> list[list[date]]:
    """The days each commit of `name` after version `since` replaced, from the `event_date IN (…)` predicate its
    Delta log entry records."""
    log = Path(settings.lake.root) / name / "_delta_log"
    replaced = []
    for entry in sorted(log.glob("*.json")):
        if int(entry.stem) > since:
            [info] = [action["commitInfo"] for action in map(json.loads, entry.read_text().splitlines())
                      if "commitInfo" in action]  # fmt: skip
            days = re.findall(r"DATE'(\d{4}-\d{2}-\d{2})'", info["operationParameters"]["predicate"])
            assert days, f"version {entry.stem} of {name} replaced no day: {info}"
            replaced.append([date.fromisoformat(day) for day in days])
    return replaced


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, make_settings, spark: SparkSession) -> Settings:
    """A lake that ingested three days of generated events (late ones, anonymous ones, bad lines, re-sent events)
    and then aggregated them once."""
    return aggregated_lake(tmp_path_factory.mktemp("gold") / "lake", make_settings, events=9_000, days=3,
                           start=START, users=200, types=12, bad_rate=0.02, dup_rate=0.05, seed=5)  # fmt: skip


def test_gold_tables_equal_the_oracle(lake: Settings, spark: SparkSession) -> None:
    users, stats = stored_gold(spark, lake)
    expected_users, expected_stats = expected_gold(landed(lake))
    assert users == expected_users
    assert stats == expected_stats
    monthly = stored_monthly(spark, lake)
    assert monthly == expected_monthly(expected_users, expected_stats)
    assert len({key[0] for key in monthly}) == 2 and len(monthly) < len(users)  # late June, July; fewer rows
    # The inputs cover what the tables must get right: anonymous events, events without a country, late days.
    assert any(n_users < n_events for n_events, n_users, _ in stats.values())
    assert any(n_anonymous for *_, n_anonymous in stats.values())
    assert min(day for day, *_ in stats) < START


def test_rerun_with_nothing_new_changes_nothing(lake: Settings) -> None:
    versions = [version(lake, name) for name in tables.GOLD]
    summary = aggregate(lake)
    assert (summary["days"], summary["batches"], summary["user_activity_rows"], summary["months"]) == ([], [], 0, [])
    assert unaggregated_batches(lake) == []
    assert [version(lake, name) for name in tables.GOLD] == versions


def test_late_batch_rebuilds_exactly_the_days_it_touched(
    lake: Settings, tmp_path: Path, make_settings, spark: SparkSession
) -> None:
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    root = Path(settings.lake.root)
    late_day, new_day = START + timedelta(days=1), START + timedelta(days=5)
    land(root / "landing", "late.jsonl", [
        event_line("late-1", datetime(2024, 7, 2, 10, 0), "late-user"),
        event_line("late-2", datetime(2024, 7, 2, 23, 59), None),
        event_line("new-1", datetime(2024, 7, 6, 8, 0), "late-user", None),
    ])  # fmt: skip
    [batch] = ingest(settings)
    before_users, before_stats = stored_gold(spark, settings)
    assert unaggregated_batches(settings) == [batch["batch"]]

    summary = aggregate(settings)

    assert summary["batches"] == [batch["batch"]]
    assert unaggregated_batches(settings) == []
    assert summary["days"] == [late_day.isoformat(), new_day.isoformat()] and summary["months"] == ["2024-07"]
    users, stats = stored_gold(spark, settings)
    expected_users, expected_stats = expected_gold(landed(settings))
    assert (users, stats) == (expected_users, expected_stats)
    assert stored_monthly(spark, settings) == expected_monthly(expected_users, expected_stats)
    untouched = {key: row for key, row in before_stats.items() if key[0] != late_day}
    assert {key: row for key, row in stats.items() if key[0] not in (late_day, new_day)} == untouched
    assert users[(new_day, "late-user", "login", None)][0] == 1
    new_keys = {(late_day, "late-user", "login", "DE"), (new_day, "late-user", "login", None)}
    assert set(users) - set(before_users) == new_keys


def test_day_with_only_anonymous_events(settings: Settings, landing: Path, spark: SparkSession) -> None:
    land(landing, "anon.json", [event_line(f"a{i}", datetime(2024, 8, 1, i), None, "NL") for i in range(5)])
    ingest(settings)
    aggregate(settings)
    assert table(spark, settings, tables.DAILY_USER_ACTIVITY).count() == 0
    [row] = table(spark, settings, tables.DAILY_EVENT_STATS).collect()
    assert (row["event_date"], row["event_type"], row["country"], row["events"], row["unique_users"]) == (
        date(2024, 8, 1), "login", "NL", 5, 0
    )  # fmt: skip
    assert row["anonymous_events"] == 5


def test_explicit_days_are_replaced_not_added(
    lake: Settings, tmp_path: Path, make_settings, spark: SparkSession
) -> None:
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    before = stored_gold(spark, settings)
    day = START + timedelta(days=1)

    first, second = aggregate(settings, [day]), aggregate(settings, [day])

    assert first["days"] == second["days"] == [day.isoformat()] and first["batches"] == []
    expected_users, _ = expected_gold(landed(settings))
    assert first["user_activity_rows"] == second["user_activity_rows"] == sum(k[0] == day for k in expected_users)
    assert stored_gold(spark, settings) == before == expected_gold(landed(settings))


def test_months_missing_from_the_rollup_are_built_with_the_next_run(
    lake: Settings, tmp_path: Path, make_settings, spark: SparkSession
) -> None:
    """A lake aggregated before `monthly_user_activity` existed: the next run that rebuilds any day builds every
    month the daily tables hold, not only the day's; validating the last run checks every month it built."""
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    shutil.rmtree(tables.local_path(settings, tables.MONTHLY_USER_ACTIVITY, "the test"))
    day = START + timedelta(days=1)

    summary = aggregate(settings, [day])

    assert summary["days"] == [day.isoformat()] and summary["months"] == ["2024-06", "2024-07"]
    monthly = expected_monthly(*expected_gold(landed(settings)))
    assert stored_monthly(spark, settings) == monthly
    checked = validate(settings, tables.MONTHLY_USER_ACTIVITY)
    assert checked["success"] and checked["scope"] == f"aggregate run {summary['run_id']}"
    assert checked["rows"] == summary["monthly_activity_rows"] == len(monthly)


def test_runs_recorded_before_their_months_still_validate_and_take_the_new_column(
    lake: Settings, tmp_path: Path, make_settings, spark: SparkSession
) -> None:
    """`_state/aggregate_runs` of an older version has no `months`: the last run's rollup rows are then those of its
    days' months, and the next run adds the column (older runs read NULL)."""
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    path = tables.table_path(settings, tables.AGGREGATE_RUNS)
    old = table(spark, settings, tables.AGGREGATE_RUNS).drop("months").collect()
    spark.createDataFrame(old).write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)
    [last] = old
    # The months of the days the last run rebuilt (the fixture's one run: every day of the lake, late June too).
    months = {day.replace(day=1) for day in last["days"]}
    assert months == {date(2024, 6, 1), date(2024, 7, 1)}
    expected = [key for key in expected_monthly(*expected_gold(landed(settings))) if key[0] in months]

    checked = validate(settings, tables.MONTHLY_USER_ACTIVITY)

    assert checked["success"] and checked["rows"] == len(expected) > 0
    summary = aggregate(settings, [START])
    recorded = {run["run_id"]: run["months"] for run in table(spark, settings, tables.AGGREGATE_RUNS).collect()}
    assert recorded == {last["run_id"]: None, summary["run_id"]: [START.replace(day=1)]}


def test_a_run_that_dies_before_the_rollup_leaves_its_batch_pending(
    lake: Settings, tmp_path: Path, make_settings, spark: SparkSession
) -> None:
    """The rollup cannot be written (a plain file stands where its table goes): the run fails after the daily tables,
    its batch stays pending, and the next run rebuilds the same days and the months."""
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    rollup = tables.local_path(settings, tables.MONTHLY_USER_ACTIVITY, "the test")
    shutil.rmtree(rollup)
    rollup.write_text("in the way")
    late = [event_line("late-1", datetime(2024, 7, 2, 10), "late-user")]
    land(Path(settings.lake.root) / "landing", "late.jsonl", late)
    [batch] = ingest(settings)

    with pytest.raises(Exception, match="monthly_user_activity"):
        aggregate(settings)

    assert unaggregated_batches(settings) == [batch["batch"]]
    rollup.unlink()
    summary = aggregate(settings)
    assert summary["batches"] == [batch["batch"]] and summary["months"] == ["2024-06", "2024-07"]
    users, stats = expected_gold(landed(settings))
    assert stored_gold(spark, settings) == (users, stats)
    assert stored_monthly(spark, settings) == expected_monthly(users, stats)


def test_stats_written_before_anonymous_events_are_rebuilt_whole(
    lake: Settings, tmp_path: Path, make_settings, spark: SparkSession
) -> None:
    """`daily_event_stats` without `anonymous_events` (an older version's): the next run that rebuilds any day
    rebuilds every day of it, so `bi.event_usage` never reads a day without the column."""
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    path = tables.table_path(settings, tables.DAILY_EVENT_STATS)
    older = spark.read.format("delta").load(path).drop("anonymous_events").localCheckpoint()
    older.write.format("delta").mode("overwrite").option("overwriteSchema", "true").partitionBy("event_date").save(path)
    day = START + timedelta(days=1)

    summary = aggregate(settings, [day])

    all_days = sorted({key[0].isoformat() for key in expected_gold(landed(settings))[1]})
    assert summary["days"] == all_days and len(all_days) > 1
    assert stored_gold(spark, settings) == expected_gold(landed(settings))


def test_days_are_cut_into_passes_of_bounded_events() -> None:
    d = [START + timedelta(days=n) for n in range(6)]
    sizes = {d[0]: 40, d[1]: 50, d[2]: 120, d[3]: None, d[5]: 30}  # d[4] has no events
    assert passes(d, sizes, 100) == [[d[0], d[1]], [d[2]], [d[3], d[4]], [d[5]]]
    assert passes(d, sizes, 1_000) == [d[:3], [d[3], d[4]], [d[5]]]
    assert passes(d[:2], sizes, 90) == [d[:2]] and passes(d[:2], sizes, 89) == [[d[0]], [d[1]]]
    assert passes([], sizes, 100) == []


def test_a_rebuild_in_several_passes_equals_one_in_a_single_pass(
    lake: Settings, tmp_path: Path, make_settings, spark: SparkSession
) -> None:
    """Every day of the lake rebuilt with passes capped below a day's events: one commit per pass in each gold table,
    and the same rows as the single pass that built the lake."""
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    settings = settings.model_copy(update={"aggregate": AggregateSettings(max_events_per_pass=2_000)})
    days = sorted({key[0] for key in expected_gold(landed(settings))[1]})
    # Events per day as the oracle counts them.
    per_day = Counter(_day(event) for _, event in audit(landed(settings)).events)
    assert max(per_day.values()) > 2_000 and len(days) > 3  # a day bigger than a pass, and small late days
    assert rows_by_partition(settings, tables.EVENTS, "event_date") == per_day  # from the Delta log's counts
    daily = (tables.DAILY_USER_ACTIVITY, tables.DAILY_EVENT_STATS)
    versions = [version(settings, name) for name in daily]
    monthly_version = version(settings, tables.MONTHLY_USER_ACTIVITY)

    summary = aggregate(settings, days)

    # Each pass is one commit replacing its days (named in the commit's predicate), the same in both tables: every
    # day once and in order, consecutive days of at most 2,000 events (a bigger day alone), and no pass could have
    # taken the next day too.
    cut = [_replaced_days(settings, name, since) for name, since in zip(daily, versions, strict=True)]
    assert cut[0] == cut[1]
    sizes = [sum(per_day[day] for day in one_pass) for one_pass in cut[0]]
    assert [day for one_pass in cut[0] for day in one_pass] == days
    assert all(size <= 2_000 or len(one_pass) == 1 for one_pass, size in zip(cut[0], sizes, strict=True))
    assert all(size + per_day[following[0]] > 2_000 for size, following in zip(sizes, cut[0][1:], strict=False))
    assert 1 < len(cut[0]) < len(days)
    users, stats = expected_gold(landed(settings))
    assert stored_gold(spark, settings) == (users, stats)
    assert (summary["user_activity_rows"], summary["event_stats_rows"]) == (len(users), len(stats))
    monthly = expected_monthly(users, stats)
    assert stored_monthly(spark, settings) == monthly and summary["monthly_activity_rows"] == len(monthly)
    # Late June and July: more daily rows together than a pass holds, so a commit each.
    assert version(settings, tables.MONTHLY_USER_ACTIVITY) - monthly_version == 2


def test_a_day_without_events_ends_up_empty(lake: Settings, tmp_path: Path, make_settings, spark: SparkSession) -> None:
    """What per-user deletion relies on: rebuilding a day from an `events` table that lost its rows clears it."""
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    day = START + timedelta(days=2)
    spark.sql(f"DELETE FROM delta.`{tables.table_path(settings, tables.EVENTS)}` WHERE event_date = DATE'{day}'")

    summary = aggregate(settings, [day])

    assert (summary["user_activity_rows"], summary["event_stats_rows"]) == (0, 0)
    for name in (tables.DAILY_USER_ACTIVITY, tables.DAILY_EVENT_STATS):
        assert table(spark, settings, name).where(F.col("event_date") == day).count() == 0
        assert table(spark, settings, name).where(F.col("event_date") != day).count() > 0
    # The other days as the oracle has them, and the months from those.
    users, stats = (
        {key: row for key, row in rows.items() if key[0] != day} for rows in expected_gold(landed(settings))
    )
    assert stored_gold(spark, settings) == (users, stats)
    assert stored_monthly(spark, settings) == expected_monthly(users, stats)


def page_rows(spark: SparkSession, file: str) -> dict[str, list[int]]:
    """Rows per page of each column of a Parquet file, from its offset index (what readers skip pages by), read with
    the Parquet library Spark writes with."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop_file = jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(jvm.org.apache.hadoop.fs.Path(file), conf)
    reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(hadoop_file)
    try:
        pages = defaultdict(list)
        for block in reader.getFooter().getBlocks():
            for chunk in block.getColumns():
                index = reader.readOffsetIndex(chunk)
                firsts = [index.getFirstRowIndex(n) for n in range(index.getPageCount())] + [block.getRowCount()]
                pages[chunk.getPath().toDotString()] += [b - a for a, b in pairwise(firsts)]
        return dict(pages)
    finally:
        reader.close()


def test_gold_files_have_pages_small_enough_to_skip(tmp_path: Path, make_settings, spark: SparkSession) -> None:
    """Pages hold at most the configured rows (conf: spark.hadoop.parquet.page.row.count.limit), so that a reader
    filtering on one type and country of a day, sorted together in its file, skips the other pages."""
    settings = make_settings(tmp_path / "lake")
    limit = int(spark_conf(settings)["spark.hadoop.parquet.page.row.count.limit"])
    day, rows = START, 3 * limit + 7
    frame = spark.range(rows).select(
        F.lit(day).alias("event_date"),
        F.format_string("user-%06d", "id").alias("user_id"),
        F.format_string("type_%d", F.col("id") % 4).alias("event_type"),
        F.lit("DE").alias("country"),
        F.lit(1).cast("long").alias("events"),
    )
    sorted_in_one_file = frame.coalesce(1).sortWithinPartitions("event_type", "user_id")
    sorted_in_one_file.write.format("delta").save(tables.table_path(settings, "pages"))

    [file] = table(spark, settings, "pages").inputFiles()
    pages = page_rows(spark, file)
    assert {"user_id", "event_type", "country", "events"} <= set(pages)
    for column, counts in pages.items():
        assert sum(counts) == rows, column
        assert max(counts) <= limit and len(counts) >= math.ceil(rows / limit), (column, counts)


def test_delta_rs_reads_the_gold_tables(lake: Settings) -> None:
    users, stats = expected_gold(landed(lake))
    monthly = expected_monthly(users, stats)
    for name, rows, by in ((tables.DAILY_USER_ACTIVITY, users, "event_date"),
                           (tables.DAILY_EVENT_STATS, stats, "event_date"),
                           (tables.MONTHLY_USER_ACTIVITY, monthly, "event_month")):  # fmt: skip
        gold = RustTable(tables.table_path(lake, name))
        assert gold.metadata().partition_columns == [by]
        assert gold.to_pyarrow_table().num_rows == len(rows)
