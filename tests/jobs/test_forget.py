"""`lakehouse forget-user`: the line predicate and the line blanking on exact inputs, then a lake with every place a
user's data can sit (valid events in both user-id paths, a re-sent event, broken lines, a gzip file, a second batch
in the same partitions), forgotten once: nothing of the user is left in any table, landing line or file on disk,
everything else is unchanged, the request is recorded without personal data, and Trino no longer answers with it."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from deltalake import DeltaTable as RustTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.aggregate import aggregate
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.forget import NOTHING, TAG, blank_lines, checked_user_id, forget, owned_by
from lakehouse.ingest import ingest
from lakehouse.records import ForgetPlan, IngestPlan
from lakehouse.storage import USER_METADATA, append_records, session_conf
from lakehouse.trino_client import ANALYST, QueryError, query
from tests.conftest import SERVED_FORGOTTEN
from tests.jobs.test_cli import lakehouse
from tests.lake import copied_lake, event_line, land, table, version

USER = "5db24a33-5c3e-4f5e-9a8e-0d4c2f1b7a21"
# Delta's file statistics keep 32-character prefixes of strings: what a scan for leftovers must look for.
TRACE = USER[:32]
DAY_1, DAY_2, DAY_3 = date(2024, 5, 1), date(2024, 5, 2), date(2024, 5, 3)
PATHS = ("data.attributes.user_id", "meta.user_id")


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 5, day, hour, minute)


def _in_meta(event_id: str, created: datetime, user: str) -> str:
    """A valid event whose user id sits in `meta.user_id` (the second configured path)."""
    event = json.loads(event_line(event_id, created, user=None))
    event["meta"]["user_id"] = user
    return json.dumps(event)


def _about(event_id: str, created: datetime, viewer: str, viewed: str) -> str:
    """`viewer`'s event that names `viewed` in its attributes: the viewer's, not the viewed user's."""
    event = json.loads(event_line(event_id, created, user=viewer, event_type="profile_viewed"))
    event["data"]["attributes"]["profile_id"] = viewed
    return json.dumps(event)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, make_settings, spark: SparkSession) -> Settings:
    """Two batches and aggregates. The user has events on days 1 and 2 (one of them re-sent), a broken line, an event
    without an id, a line that is not UTF-8, and a line with a byte-order mark; day 3 holds only the user's events."""
    root = tmp_path_factory.mktemp("forget") / "lake"
    landing = root / "landing"
    land(landing, "a/day1.jsonl", [
        event_line("u-1", _at(1, 8), USER), event_line("o-1", _at(1, 8), "other-1"),
        event_line("o-2", _at(1, 9), "other-2", "FR", "purchase"), event_line("n-1", _at(1, 9), None),
        _about("o-3", _at(1, 9, 30), "other-1", USER), event_line("u-2", _at(1, 9, 45), USER, "FR", "purchase"),
        '{"data": {"id": "u-broken", "attributes": {"user_id": "' + USER + '"',
        '{"data": {"id": "o-broken", "attributes": {"user_id": "other-1"',
    ])  # fmt: skip
    day2 = [_in_meta("u-3", _at(2, 10), USER), event_line("o-4", _at(2, 10), "other-2"),
            event_line("u-1", _at(1, 8), USER), event_line("o-5", _at(2, 11), "other-1", None),
            json.dumps({"data": {"type": "login", "attributes": {"user_id": USER}}, "meta": {"created_at": 1}}),
            event_line("u-4", _at(3, 7), USER)]  # fmt: skip
    (landing / "b").mkdir()
    not_utf8 = b'{"data": {"id": "\xff", "attributes": {"user_id": "' + USER.encode() + b'"}}}'
    text = "\r\n".join(day2).encode() + b"\r\n" + not_utf8 + b"\r\n"
    (landing / "b" / "day2.jsonl.gz").write_bytes(gzip.compress(text))
    settings = make_settings(root)
    ingest(settings)
    land(landing, "c/late.jsonl", ["\ufeff" + event_line("u-5", _at(1, 8, 30), USER),
                                   event_line("o-6", _at(1, 8, 40), "other-3"), "",
                                   event_line("o-7", _at(2, 10, 5), "other-1")])  # fmt: skip
    ingest(settings)
    aggregate(settings)
    return settings


@pytest.fixture(scope="module")
def forgotten(lake: Settings, tmp_path_factory: pytest.TempPathFactory, make_settings, spark: SparkSession):
    """A copy of the lake before and after forgetting the user: the settings, the tables before (collected), and
    the summary."""
    settings = copied_lake(lake, tmp_path_factory.mktemp("forgotten") / "lake", make_settings)
    before = {name: spark.createDataFrame(table(spark, settings, name).collect(), table(spark, settings, name).schema)
              for name in (tables.EVENTS, tables.QUARANTINE, tables.INGEST_RUNS, *tables.GOLD)}  # fmt: skip
    return settings, before, forget(settings, USER, "dpo@example.org")


# --- on exact inputs -----------------------------------------------------------------------------------------------


def test_owned_by_reads_the_user_id_as_ingest_derives_it(spark: SparkSession) -> None:
    escaped = "".join(f"\\u{ord(char):04x}" for char in USER)
    lines = {
        event_line("a", _at(1, 8), USER): True,
        _in_meta("b", _at(1, 8), USER): True,
        "\ufeff" + event_line("c", _at(1, 8), USER): True,
        event_line("d", _at(1, 8), None).replace('"country"', '"user_id": "' + escaped + '", "country"'): True,
        '{"data": {"id": "e", "attributes": {"user_id": "' + USER + '"': True,
        _about("f", _at(1, 8), "other-1", USER): False,
        event_line("g", _at(1, 8), USER + "-2"): False,
        event_line("h", _at(1, 8), None): False,
        '{"data": {"id": "i", "attributes": {"user_id": "other-1"': False,
        "": False,
    }  # fmt: skip
    frame = spark.createDataFrame([(line,) for line in lines], "value string")
    found = frame.select(owned_by(F.col("value").cast("binary"), USER, PATHS).alias("owned")).collect()
    assert [row["owned"] for row in found] == list(lines.values())


def test_blank_lines_keeps_every_other_line_and_its_number() -> None:
    data = b"keep 1\r\ngone 2\rkeep 3\ngone 4"
    digests = {2: hashlib.sha256(b"gone 2").hexdigest(), 4: hashlib.sha256(b"gone 4").hexdigest()}
    assert blank_lines(data, digests) == b"keep 1\r\n\rkeep 3\n"
    bom = "\ufeff".encode()
    assert blank_lines(bom + b"gone 1\nkeep 2", {1: hashlib.sha256(b"gone 1").hexdigest()}) == b"\nkeep 2"
    with pytest.raises(LakehouseError, match="line 3 changed since it was read"):
        blank_lines(data, {3: hashlib.sha256(b"something else").hexdigest()})


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "must not be empty"), ("  ", "must not be empty"), ("u1\n", "control characters"), ("u\x001", "control")],
)
def test_user_id_must_be_a_printable_value(text: str, message: str) -> None:
    with pytest.raises(LakehouseError, match=message):
        checked_user_id(text)


# --- one forget-user run over the lake ------------------------------------------------------------------------------


def test_summary_counts_what_was_removed(forgotten) -> None:
    _, before, summary = forgotten
    users = before[tables.EVENTS].where(F.col("user_id") == USER).count()
    assert users == 5
    assert summary["rows_removed"] == {tables.EVENTS: 5, tables.QUARANTINE: 3, tables.DAILY_USER_ACTIVITY: 4}
    # Valid lines of the user (5), the re-sent one, the broken one, the one without an id, the one not UTF-8.
    assert summary["landing_lines_removed"] == 9 and summary["landing_files_rewritten"] == 3
    assert summary["days_rebuilt"] == 3
    assert summary["tables_purged"] == sorted((tables.EVENTS, tables.EVENT_IDS, tables.QUARANTINE, *tables.GOLD))


def test_no_table_holds_the_user_any_more(forgotten, spark: SparkSession) -> None:
    settings, before, _ = forgotten
    for name in (tables.DAILY_USER_ACTIVITY, tables.MONTHLY_USER_ACTIVITY):
        assert before[name].where(F.col("user_id") == USER).count() > 0
    for name in (tables.EVENTS, tables.EVENT_IDS, tables.DAILY_USER_ACTIVITY, tables.MONTHLY_USER_ACTIVITY):
        assert table(spark, settings, name).where(F.col("user_id") == USER).count() == 0
    quarantine = table(spark, settings, tables.QUARANTINE).collect()
    assert not [row for row in quarantine if USER.encode() in _raw_bytes(row)]
    assert any(b"other-1" in _raw_bytes(row) for row in quarantine)


def test_no_landing_line_and_no_file_on_disk_holds_the_user(forgotten) -> None:
    """Every file under the lake root, read as what it is (Parquet as rows, gzip unpacked): the tables' current and
    old data files, their Delta logs and checkpoints, the landing files, the state tables. The one mention left is
    another user's event naming them (`profile_id`), which stays that user's."""
    settings, _, _ = forgotten
    root = Path(settings.lake.root)
    assert _files_mentioning(root, "other-1"), "the scan sees what is there"
    mentions = [path.split("/part-")[0] for path in _files_mentioning(root, TRACE)]
    assert mentions == ["events/event_type=profile_viewed/event_date=2024-05-01/event_hour=9", "landing/a/day1.jsonl"]
    landed = (root / "landing" / "a" / "day1.jsonl").read_text().splitlines()
    assert [number for number, line in enumerate(landed, 1) if not line] == [1, 6, 7]
    assert [line for line in landed if USER in line] == [_about("o-3", _at(1, 9, 30), "other-1", USER)]


def test_other_users_rows_are_unchanged(forgotten, spark: SparkSession) -> None:
    settings, before, _ = forgotten
    for name in (tables.EVENTS, tables.DAILY_USER_ACTIVITY, tables.MONTHLY_USER_ACTIVITY):
        others = before[name].where(F.col("user_id").isNull() | (F.col("user_id") != USER))
        assert_df_equality(table(spark, settings, name), others, ignore_row_order=True, ignore_nullable=True)
    quarantine = before[tables.QUARANTINE]
    kept = spark.createDataFrame([row for row in quarantine.collect() if USER.encode() not in _raw_bytes(row)],
                                 quarantine.schema)  # fmt: skip
    assert_df_equality(table(spark, settings, tables.QUARANTINE), kept, ignore_row_order=True, ignore_nullable=True)


def test_daily_event_stats_are_recomputed_for_the_touched_days(forgotten, spark: SparkSession) -> None:
    settings, before, _ = forgotten
    stats = table(spark, settings, tables.DAILY_EVENT_STATS)
    # By hand from the lake's lines, the user's gone: day 1 o-1, n-1 (anonymous), o-6 login DE, o-2 purchase FR,
    # o-3 profile_viewed DE; day 2 o-4, o-7 login DE, o-5 login without country; day 3 nothing.
    columns = ["event_date", "event_type", "country", "events", "unique_users", "anonymous_events"]
    assert sorted(map(tuple, stats.select(*columns).collect()), key=str) == sorted([
        (DAY_1, "login", "DE", 3, 2, 1), (DAY_1, "purchase", "FR", 1, 1, 0), (DAY_1, "profile_viewed", "DE", 1, 1, 0),
        (DAY_2, "login", "DE", 2, 2, 0), (DAY_2, "login", None, 1, 1, 0),
    ], key=str)  # fmt: skip
    assert stats.where(F.col("event_date") == DAY_3).count() == 0, "a day of the user only ends up empty"
    day_2 = {(row["event_type"], row["country"]): (row["events"], row["unique_users"])
             for row in stats.where(F.col("event_date") == DAY_2).collect()}  # fmt: skip
    assert day_2 == {("login", "DE"): (2, 2), ("login", None): (1, 1)}
    assert _rows(before[tables.DAILY_EVENT_STATS], DAY_2) != _rows(stats, DAY_2)


def test_request_is_recorded_with_counts_only(forgotten, spark: SparkSession) -> None:
    settings, _, summary = forgotten
    [row] = table(spark, settings, tables.FORGET_REQUESTS).collect()
    assert row["request_id"] == summary["request_id"] and row["requested_by"] == "dpo@example.org"
    assert row["requested_at"] <= row["finished_at"]
    # What the lake held of the user (test_summary_counts_what_was_removed).
    assert row["rows_removed"] == summary["rows_removed"] == {tables.EVENTS: 5, tables.QUARANTINE: 3,
                                                              tables.DAILY_USER_ACTIVITY: 4}  # fmt: skip
    assert (row["days_rebuilt"], row["landing_files_rewritten"], row["landing_lines_removed"]) == (3, 3, 9)
    assert row["tables_purged"] == summary["tables_purged"] == sorted((tables.EVENTS, tables.EVENT_IDS,
                                                                       tables.QUARANTINE, *tables.GOLD))  # fmt: skip
    assert row["files_purged"] == summary["files_purged"] > 0
    assert TRACE not in str(row.asDict()) and hashlib.sha256(USER.encode()).hexdigest() not in str(row.asDict())


def test_tables_keep_their_protocol_and_delta_rs_reads_them(forgotten, spark: SparkSession) -> None:
    """No DELETE turned on deletion vectors or any other table feature Trino or delta-rs might not read."""
    settings, _, _ = forgotten
    for name in (tables.EVENTS, tables.EVENT_IDS, tables.QUARANTINE, *tables.GOLD, tables.FORGET_REQUESTS):
        path = tables.table_path(settings, name)
        [detail] = DeltaTable.forPath(spark, path).detail().collect()
        assert (detail["minReaderVersion"], detail["minWriterVersion"], detail["properties"]) == (1, 2, {})
        assert RustTable(path).to_pyarrow_table().num_rows == table(spark, settings, name).count()


def test_a_later_ingest_takes_nothing_from_the_rewritten_files(forgotten, spark: SparkSession) -> None:
    settings, before, _ = forgotten
    assert ingest(settings)[0]["files"] == 0
    runs = {row["batch"]: row.asDict() for row in table(spark, settings, tables.INGEST_RUNS).collect()}
    assert runs == {row["batch"]: row.asDict() for row in before[tables.INGEST_RUNS].collect()} and len(runs) == 2


def test_forgetting_again_or_an_unknown_user_changes_nothing(forgotten, cli_env, tmp_path: Path) -> None:
    settings, _, _ = forgotten
    names = (tables.EVENTS, tables.EVENT_IDS, tables.QUARANTINE, *tables.GOLD, tables.FORGET_REQUESTS)
    versions = {name: version(settings, name) for name in names}
    again = forget(settings, USER)
    assert (again["request_id"], again["message"], again["rows_removed"][tables.EVENTS]) == (None, NOTHING, 0)
    done = lakehouse("forget-user", "nobody-at-all", env={**cli_env, "LAKEHOUSE__LAKE__ROOT": settings.lake.root})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["message"] == NOTHING
    assert {name: version(settings, name) for name in names} == versions


def test_a_run_interrupted_before_its_purge_is_finished_by_the_next(
    lake: Settings, tmp_path: Path, make_settings, spark: SparkSession
) -> None:
    """The user's `events` rows deleted by a run that died right after: the next run finds the rest, rebuilds the
    gold days from `daily_user_activity`, and purges `events` too, whose old files still hold the user."""
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    with session_conf(spark, {USER_METADATA: TAG + "interrupted"}):
        DeltaTable.forPath(spark, tables.table_path(settings, tables.EVENTS)).delete(F.col("user_id") == USER)
    summary = forget(settings, USER)
    assert summary["rows_removed"] == {tables.EVENTS: 0, tables.QUARANTINE: 3, tables.DAILY_USER_ACTIVITY: 4}
    assert tables.EVENTS in summary["tables_purged"]
    assert len(_files_mentioning(Path(settings.lake.root), TRACE)) == 2, "the other user's event naming them only"


def test_a_plan_left_by_a_run_that_died_is_carried_out_by_the_next_run_with_its_counts(
    lake: Settings, tmp_path: Path, make_settings, spark: SparkSession
) -> None:
    """A run that died right after planning (its plan counts what the lake then held of the user, by hand below), and
    after deleting the user's `events` rows: the next forget-user run, for another user, finishes that request first
    and records it with the planned counts, so the rows gone from `events` are all accounted for; no plan is left."""
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    counts = {tables.EVENTS: 5, tables.QUARANTINE: 3, tables.DAILY_USER_ACTIVITY: 4}
    plan = ForgetPlan("died", datetime(2024, 6, 1, tzinfo=UTC), "dpo@example.org", USER, counts, 3, 3, 9)
    append_records(spark, settings, tables.FORGET_PLANS, [plan])
    with session_conf(spark, {USER_METADATA: TAG + "died"}):
        DeltaTable.forPath(spark, tables.table_path(settings, tables.EVENTS)).delete(F.col("user_id") == USER)
    other = forget(settings, "other-2")
    [died] = [row for row in table(spark, settings, tables.FORGET_REQUESTS).collect() if row["request_id"] == "died"]
    assert (died["rows_removed"], died["days_rebuilt"], died["landing_files_rewritten"]) == (counts, 3, 3)
    assert (died["landing_lines_removed"], died["requested_by"]) == (9, "dpo@example.org")
    assert other["request_id"] != "died" and other["rows_removed"][tables.EVENTS] == 2  # o-2 and o-4
    assert table(spark, settings, tables.EVENTS).where(F.col("user_id").isin(USER, "other-2")).count() == 0
    assert table(spark, settings, tables.FORGET_PLANS).count() == 0
    assert len(_files_mentioning(Path(settings.lake.root), TRACE)) == 2, "the other user's event naming them only"


def test_refuses_while_an_ingest_batch_is_unfinished(
    lake: Settings, tmp_path: Path, make_settings, spark: SparkSession
) -> None:
    """A batch planned and not recorded (an ingest running, or killed): it may have read the lines forget-user would
    blank, so nothing is changed."""
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    plan = IngestPlan(3, "run-3", datetime(2024, 5, 4), version(settings, tables.EVENTS), ())
    append_records(spark, settings, tables.INGEST_BATCHES, [plan])
    landed = {path: path.read_bytes() for path in (Path(settings.lake.root) / "landing").rglob("*.json*")}
    with pytest.raises(LakehouseError, match=r"ingest batch 3 is not finished: let the running `lakehouse ingest`"):
        forget(settings, USER)
    assert {path: path.read_bytes() for path in landed} == landed
    assert table(spark, settings, tables.EVENTS).where(F.col("user_id") == USER).count() == 5


@pytest.mark.slow
def test_trino_no_longer_returns_the_user(served: tuple[Settings, dict], served_written: list[dict]) -> None:
    """On the lake the session's Trino serves (its later tests expect the oracle's events less the user's, as
    `served_events` gives them once the user is in SERVED_FORGOTTEN)."""
    settings, _ = served
    user = "user-3"
    asked = {
        "lake.events": f"SELECT count(*) FROM lake.events WHERE user_id = '{user}'",
        "lake.daily_user_activity": f"SELECT count(*) FROM lake.daily_user_activity WHERE user_id = '{user}'",
        "bi.event_usage": f"SELECT count(*) FROM bi.event_usage WHERE user_id = '{user}'",
        "bi.monthly_event_usage": f"SELECT count(*) FROM bi.monthly_event_usage WHERE user_id = '{user}'",
        "lake.quarantine": f"SELECT count(*) FROM lake.quarantine WHERE strpos(raw, '\"{user}\"') > 0",
    }
    held = [event for event in served_written if event["user_id"] == user]
    assert query(settings, asked["lake.events"]).rows == [(len(held),)] and held
    [(before,)] = query(settings, 'SELECT max(version) FROM lake."daily_user_activity$history"').rows
    SERVED_FORGOTTEN.add(user)
    forget(settings, user)
    assert {name: query(settings, sql).rows[0][0] for name, sql in asked.items()} == dict.fromkeys(asked, 0)
    # Nor does the version before the purge, as the analyst could ask for it: its files and log entries are gone.
    travel = f"SELECT count(*) FROM lake.daily_user_activity FOR VERSION AS OF {before} WHERE user_id = '{user}'"
    try:
        travelled = query(settings, travel, ANALYST).rows
    except QueryError:
        travelled = [(0,)]  # refused: that version is gone
    assert travelled == [(0,)]
    totals = query(settings, "SELECT event_date, event_type, country, events, unique_users FROM lake.daily_event_stats")
    # Per day, type and country: the oracle's events but the forgotten users'.
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for event in served_written:
        if event["user_id"] not in SERVED_FORGOTTEN:
            groups[(event["event_date"], event["event_type"], event["country"])].append(event)
    expected = [(*key, len(rows), len({e["user_id"] for e in rows} - {None})) for key, rows in groups.items()]
    assert sorted(totals.rows, key=str) == sorted(expected, key=str)


def _raw_bytes(row) -> bytes:
    return base64.b64decode(row["raw"]) if row["reason"] == "not_utf8" else row["raw"].encode()


def _rows(frame: DataFrame, day: date) -> set[tuple]:
    return {tuple(row) for row in frame.where(F.col("event_date") == day).collect()}


def _files_mentioning(root: Path, text: str) -> list[str]:
    """The files under `root` (hidden ones too) whose content, read as what it is, holds `text`."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            content = str(pq.read_table(path).to_pylist()).encode()
        elif path.name.endswith(".gz"):
            content = gzip.decompress(path.read_bytes())
        else:
            content = path.read_bytes()
        if text.encode() in content:
            found.append(str(path.relative_to(root)))
    return found
