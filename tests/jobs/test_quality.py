"""The quality gate: each table's suite from expectations/ passes on clean rows, names every expectation a row was
built to break (and flags exactly those rows), records its results and writes Data Docs; `lakehouse validate` exits 1
naming what failed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.aggregate import aggregate
from lakehouse.config import Settings
from lakehouse.errors import QualityGateFailed
from lakehouse.gx_suites import Scope, check, parameters
from lakehouse.ingest import ingest
from lakehouse.publish import publish
from lakehouse.quality import validate
from lakehouse.state import failed_tables
from tests.conftest import REPO
from tests.jobs.test_aggregate import expected_gold, expected_monthly, landed
from tests.lake import aggregated_lake, event_line, land, table
from tests.oracle import audit

INGESTED = datetime(2024, 7, 10, 12, tzinfo=UTC)
DAY = date(2024, 7, 9)
EVENTS_SCHEMA = (
    "event_id string, event_type string, event_ts timestamp, event_date date, event_hour int, user_id string, "
    "country string, service string, attributes string, meta string, source_file string, ingested_at timestamp"
)
CLEAN_ROWS = 40


def _events(spark: SparkSession, broken: dict[str, dict]) -> DataFrame:
    """Forty clean events of DAY, plus one row per entry of `broken` (its key is the row's source_file)."""

    def row(i: int, source: str, **change: object) -> dict:
        ts = datetime(2024, 7, 9, i % 24, 30, tzinfo=UTC)
        clean = {"event_id": f"e{i}", "event_type": "login", "event_ts": ts, "event_date": DAY, "event_hour": ts.hour,
                 "user_id": f"u{i % 7}", "country": "DE", "service": "web", "attributes": "{}", "meta": "{}",
                 "source_file": source, "ingested_at": INGESTED}  # fmt: skip
        return {**clean, **change}

    rows = [row(i, "clean.json") for i in range(CLEAN_ROWS)]
    rows += [row(100 + n, source, **change) for n, (source, change) in enumerate(broken.items())]
    columns = [c.split()[0] for c in EVENTS_SCHEMA.split(", ")]
    return spark.createDataFrame([tuple(r[c] for c in columns) for r in rows], EVENTS_SCHEMA)


def _flagged(record: dict) -> dict[str, set]:
    """Each failed expectation with the source_file of the sample rows it flagged."""
    return {c["name"]: {r["source_file"] for r in c["rows"]} for c in record["checks"] if not c["success"]}


def test_clean_events_pass(settings: Settings, spark: SparkSession) -> None:
    record = check(settings, tables.EVENTS, Scope("clean", _events(spark, {}), parameters(settings, INGESTED)))
    assert record["success"] and record["failed"] == [] and record["rows"] == CLEAN_ROWS


def test_each_broken_event_rule_is_named_with_its_rows(settings: Settings, spark: SparkSession) -> None:
    broken = {
        "null-id": {"event_id": None},
        "repeated-id": {"event_id": "e1"},
        "bad-type": {"event_type": "not a type!"},
        "too-early": {"event_ts": datetime(1999, 12, 31, 23, tzinfo=UTC), "event_date": date(1999, 12, 31),
                      "event_hour": 23},
        "too-late": {"event_ts": datetime(2024, 7, 11, 13, tzinfo=UTC), "event_date": date(2024, 7, 11),
                     "event_hour": 13},
        "wrong-day": {"event_date": date(2024, 7, 8)},
        "wrong-hour": {"event_hour": 5},
        "no-source": {"source_file": None},
        "not-ingested": {"ingested_at": None},
    }  # fmt: skip
    # Countries: 3 of 52 rows outside the set break `mostly` 0.95 (2 would not).
    broken |= {f"country-{n}": {"country": "XX"} for n in range(3)}
    record = check(settings, tables.EVENTS, Scope("broken", _events(spark, broken), parameters(settings, INGESTED)))

    assert not record["success"]
    flagged = _flagged(record)
    assert flagged == {
        "expect_column_values_to_not_be_null(event_id)": {"null-id"},
        "expect_column_values_to_be_unique(event_id)": {"clean.json", "repeated-id"},
        "expect_column_values_to_match_regex(event_type)": {"bad-type"},
        "expect_column_values_to_be_between(event_ts)": {"too-early", "too-late"},
        "expect_column_pair_values_to_be_equal(event_date, _date_of_event_ts)": {"wrong-day"},
        "expect_column_pair_values_to_be_equal(event_hour, _hour_of_event_ts)": {"wrong-hour"},
        "expect_column_values_to_be_in_set(country)": {"country-0", "country-1", "country-2"},
        "expect_column_values_to_not_be_null(source_file)": {None},
        "expect_column_values_to_not_be_null(ingested_at)": {"not-ingested"},
    }
    assert sorted(flagged) == record["failed"]


def test_each_broken_aggregate_rule_is_named(settings: Settings, spark: SparkSession) -> None:
    seen = datetime(2024, 7, 9, 10, tzinfo=UTC)
    users = spark.createDataFrame(
        [(DAY, "u1", "login", "DE", 3, seen, seen), (DAY, None, "login", "DE", 1, seen, seen),
         (DAY, "u2", "login", "DE", 1, seen, seen), (DAY, "u2", "login", "DE", 2, seen, seen),
         (DAY, "u3", "login", "DE", 0, seen, seen),
         (DAY, "u4", "login", "FR", 2, seen, datetime(2024, 7, 9, 9, tzinfo=UTC)),
         (DAY, "u5", "login", "FR", 1, datetime(2024, 7, 8, 23, tzinfo=UTC), seen),
         (DAY, "u6", "log in", "FR", 1, seen, datetime(2024, 7, 10, 1, tzinfo=UTC))],
        "event_date date, user_id string, event_type string, country string, events long, first_seen timestamp, "
        "last_seen timestamp",
    )  # fmt: skip
    stats = spark.createDataFrame(
        [(DAY, "login", "DE", 5, 2, 1), (DAY, "login", "DE", 1, 1, 0), (DAY, "search", "DE", 0, 0, 0),
         (DAY, "search", "FR", 2, -1, 0), (DAY, "order", "FR", 2, 3, 0), (DAY, "bad type", "FR", 1, 1, 0),
         (DAY, "login", "XX", 1, 1, 0), (DAY, "signup", "DE", 1, 0, 2), (DAY, "logout", "DE", 1, 1, -1)],
        "event_date date, event_type string, country string, events long, unique_users long, anonymous_events long",
    )  # fmt: skip
    given = parameters(settings, INGESTED) | {"country_mostly": 0.9}
    user_record = check(settings, tables.DAILY_USER_ACTIVITY, Scope("broken", users, given))
    stats_record = check(settings, tables.DAILY_EVENT_STATS, Scope("broken", stats, given))
    assert user_record["failed"] == [
        "expect_column_pair_values_a_to_be_greater_than_b(last_seen, first_seen)",
        "expect_column_pair_values_to_be_equal(event_date, _date_of_first_seen)",
        "expect_column_pair_values_to_be_equal(event_date, _date_of_last_seen)",
        "expect_column_values_to_be_between(events)",
        "expect_column_values_to_match_regex(event_type)",
        "expect_column_values_to_not_be_null(user_id)",
        "expect_compound_columns_to_be_unique(event_date, user_id, event_type, country)",
    ]
    assert stats_record["failed"] == [
        "expect_column_pair_values_a_to_be_greater_than_b(events, anonymous_events)",
        "expect_column_pair_values_a_to_be_greater_than_b(events, unique_users)",
        "expect_column_values_to_be_between(anonymous_events)",
        "expect_column_values_to_be_between(events)",
        "expect_column_values_to_be_between(unique_users)",
        "expect_column_values_to_be_in_set(country)",
        "expect_column_values_to_match_regex(event_type)",
        "expect_compound_columns_to_be_unique(event_date, event_type, country)",
    ]


def test_each_broken_monthly_rule_is_named(settings: Settings, spark: SparkSession) -> None:
    month = date(2024, 7, 1)
    rows = spark.createDataFrame(
        [(month, "login", "DE", "u1", 5, 2), (month, "login", "DE", "u1", 1, 1), (month, "login", "DE", None, 3, 3),
         (month, "login", "DE", None, 2, 1), (date(2024, 7, 2), "login", "FR", "u2", 1, 1),
         (month, "search", "DE", "u3", 0, 0), (month, "search", "FR", "u4", 40, 32), (month, "order", "FR", "u5", 1, 2),
         (month, "bad type", "FR", "u6", 1, 1)],
        "event_month date, event_type string, country string, user_id string, events long, active_days long",
    )  # fmt: skip
    record = check(settings, tables.MONTHLY_USER_ACTIVITY, Scope("broken", rows, parameters(settings, INGESTED)))
    # Every rule of the suite is broken by some row, and named.
    suite = json.loads((REPO / "expectations" / "monthly_user_activity.json").read_text())
    assert len(record["checks"]) == len(suite["expectations"]) == 6
    assert record["failed"] == sorted(check["name"] for check in record["checks"])
    assert "expect_compound_columns_to_be_unique(event_month, event_type, country, user_id)" in record["failed"]


def test_each_broken_quarantine_rule_is_named(settings: Settings, spark: SparkSession) -> None:
    at, day = datetime(2024, 7, 10, 12, tzinfo=UTC), date(2024, 7, 10)
    rows = spark.createDataFrame(
        [("{x", "malformed_json", "a.json", 1, at, day), ("[]", "not_an_object", "a.json", 2, at, day),
         ("{}", "oops", "a.json", 3, at, day), ("{}", None, "a.json", 4, at, day),
         (None, "too_large", "a.json", 5, at, day),
         ("{}", "missing:data", None, 6, at, day), ("{}", "missing:data", "a.json", 0, at, day),
         ("{}", "missing:meta", "a.json", 8, at, date(2024, 7, 9))],
        "raw string, reason string, source_file string, line_number long, ingested_at timestamp, ingest_date date",
    ).withColumn("_quarantine_share", F.lit(0.01))  # fmt: skip
    record = check(settings, tables.QUARANTINE, Scope("broken", rows, parameters(settings, INGESTED)))
    assert record["failed"] == [
        "expect_column_pair_values_to_be_equal(ingest_date, _date_of_ingested_at)",
        "expect_column_values_to_be_between(line_number)",
        "expect_column_values_to_match_regex(reason)",
        "expect_column_values_to_not_be_null(raw)",
        "expect_column_values_to_not_be_null(reason)",
        "expect_column_values_to_not_be_null(source_file)",
    ]


# --- the gate over a real lake ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, make_settings, spark: SparkSession) -> Settings:
    return aggregated_lake(tmp_path_factory.mktemp("quality") / "lake", make_settings, events=3_000, days=2,
                           start=DAY, users=100, types=8, bad_rate=0.01, dup_rate=0.02, seed=3)  # fmt: skip


def test_clean_lake_passes_records_results_and_writes_data_docs(lake: Settings, spark: SparkSession) -> None:
    results = {name: validate(lake, name) for name in
               (tables.EVENTS, tables.QUARANTINE, *tables.GOLD)}  # fmt: skip
    assert all(result["success"] for result in results.values())
    # The rows each suite checked: every row of the lake's one batch and one aggregate run, as the oracle has them.
    files = landed(lake)
    found, (users, stats) = audit(files), expected_gold(files)
    expected = {tables.EVENTS: len(found.first_seen), tables.QUARANTINE: sum(found.reasons.values()),
                tables.DAILY_USER_ACTIVITY: len(users), tables.DAILY_EVENT_STATS: len(stats),
                tables.MONTHLY_USER_ACTIVITY: len(expected_monthly(users, stats))}  # fmt: skip
    assert {name: result["rows"] for name, result in results.items()} == expected
    assert results[tables.EVENTS]["scope"] == "batch 1" and expected[tables.QUARANTINE] > 0
    recorded = table(spark, lake, tables.VALIDATIONS).collect()
    assert {(r["table_name"], r["success"], r["rows"]) for r in recorded} == {
        (name, True, rows) for name, rows in expected.items()
    }
    index = Path(lake.lake.root) / "_quality" / "docs" / "index.html"
    assert results[tables.EVENTS]["docs"] == index.as_uri()
    html = index.read_text()
    assert all(name in html for name in results)
    assert failed_tables(spark, lake) == {}


def test_too_much_quarantine_fails_the_gate_blocks_publishing_and_is_recorded(
    settings: Settings, landing: Path, spark: SparkSession
) -> None:
    noon = datetime(2024, 7, 9, 12)
    land(landing, "mostly-bad.json", [event_line("ok-1", noon), event_line("ok-2", noon), "{not json", "[]"])
    [summary] = ingest(settings)
    assert summary["checks"] == {tables.EVENTS: "passed", tables.QUARANTINE: "failed"}
    assert validate(settings, tables.EVENTS)["success"]

    with pytest.raises(QualityGateFailed, match=r"quarantine \(batch 1\) failed .*_quarantine_share"):
        validate(settings, tables.QUARANTINE)

    assert failed_tables(spark, settings) == {
        tables.QUARANTINE: "batch 1: expect_column_values_to_be_between(_quarantine_share)"
    }
    by_validate = (F.col("checked_by") == "validate") & ~F.col("success")
    [recorded] = table(spark, settings, tables.VALIDATIONS).where(by_validate).collect()
    [share] = [c for c in json.loads(recorded["result"]) if not c["success"]]
    assert set(share["sample"]) == {0.5} and share["unexpected_count"] == 2
    # The gate: publish refuses before it contacts Trino (none runs for this lake), so nothing is published.
    with pytest.raises(QualityGateFailed, match=r"not publishing: the latest validation failed for quarantine"):
        publish(settings)


def test_a_backlog_ingested_as_several_batches_is_validated_whole(
    settings: Settings, landing: Path, spark: SparkSession
) -> None:
    """One file per batch (max_batch_bytes 1): the bad countries of the first batch fail the gate of the run."""
    noon = datetime(2024, 7, 9, 12)
    land(landing, "a-bad-country.json", [event_line(f"x{i}", noon, country="XX") for i in range(3)])
    land(landing, "b-clean.json", [event_line(f"ok{i}", noon + timedelta(days=1)) for i in range(3)])
    one_file_each = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"max_batch_bytes": 1})})
    assert [summary["batch"] for summary in ingest(one_file_each)] == [1, 2]

    # Ingest's own check of batch 1 failed: batch 2 passing its own does not hide that from the publish gate.
    assert failed_tables(spark, one_file_each) == {tables.EVENTS: "batch 1: expect_column_values_to_be_in_set(country)"}
    with pytest.raises(QualityGateFailed, match=r"events \(batches 1–2\) failed expect_column_values_to_be_in_set"):
        validate(one_file_each, tables.EVENTS)

    aggregate(one_file_each)
    assert validate(one_file_each, tables.EVENTS)["scope"] == "batch 2", "once aggregated, the latest batch"


def test_ingest_checks_each_batch_and_validate_takes_its_outcome(
    settings: Settings, landing: Path, spark: SparkSession
) -> None:
    """Ingest runs both suites over the batch it holds in memory and records them; `validate` then reports those
    outcomes without reading the rows again, and records its own verdict, the one publish reads."""
    noon = datetime(2024, 7, 9, 12)
    land(landing, "day.json", [event_line(f"d{i}", noon + timedelta(minutes=i)) for i in range(30)] + ["{broken"])
    [summary] = ingest(settings)
    assert summary["checks"] == {tables.EVENTS: "passed", tables.QUARANTINE: "passed"}
    assert isinstance(summary["check_seconds"], float)  # reported; how long it took is not this test's business
    by_ingest = table(spark, settings, tables.VALIDATIONS).where(F.col("checked_by") == "ingest").collect()
    assert {(r["table_name"], r["scope"], r["success"], r["rows"]) for r in by_ingest} == {
        (tables.EVENTS, "batch 1", True, 30), (tables.QUARANTINE, "batch 1", True, 1)
    }  # fmt: skip
    result = validate(settings, tables.EVENTS)
    assert (result["checked_at_ingest"], result["scope"], result["rows"]) == (True, "batch 1", 30) and result["success"]
    [by_validate] = table(spark, settings, tables.VALIDATIONS).where(F.col("checked_by") == "validate").collect()
    assert (by_validate["table_name"], by_validate["rows"], by_validate["success"]) == (tables.EVENTS, 30, True)


def test_a_changed_setting_makes_validate_read_the_rows_again(settings: Settings, landing: Path) -> None:
    """A check is taken over only under the suite and parameters it ran with: with other countries allowed, the
    rows are read and checked again, and fail where ingest's check passed."""
    noon = datetime(2024, 7, 9, 12)
    land(landing, "de.json", [event_line(f"g{i}", noon, country="DE") for i in range(5)])
    [summary] = ingest(settings)
    assert summary["checks"][tables.EVENTS] == "passed"
    others = settings.model_copy(update={"quality": settings.quality.model_copy(update={"countries": ("FR",)})})
    with pytest.raises(QualityGateFailed, match=r"events \(batch 1\) failed expect_column_values_to_be_in_set"):
        validate(others, tables.EVENTS)
    assert validate(settings, tables.EVENTS)["checked_at_ingest"]


def test_cli_validate_exits_1_naming_the_failed_expectation(
    cli_env: dict[str, str], settings: Settings, landing: Path
) -> None:
    land(landing, "bad-country.json", [event_line(f"c{i}", datetime(2024, 7, 9, 12), country="XX") for i in range(3)])
    [summary] = ingest(settings)
    assert summary["checks"]["events"] == "failed"
    done = subprocess.run([sys.executable, "-m", "lakehouse.cli", "validate", "events"], env=cli_env, cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1, done.stderr
    expected = "lakehouse: error: events (batch 1) failed expect_column_values_to_be_in_set(country); report: file://"
    assert done.stderr.startswith(expected)
    assert len(done.stderr.strip().splitlines()) == 1
