"""`lakehouse ingest` end to end on real Spark and Delta: results reconciled with an independent oracle of the
contract, exactly-once across re-runs, late events, and a second reader (delta-rs)."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from deltalake import DeltaTable as RustTable
from pyspark.sql import SparkSession

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.generate import GenerateSummary, generate
from lakehouse.ingest import ingest
from tests.lake import event_line, land, table, version
from tests.oracle import Audit, audit

START = date(2024, 3, 1)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerateSummary]:
    """Two days of generated events with bad and re-sent lines in a lake's landing folder: the lake's root and the
    generator's record of what it wrote."""
    root = tmp_path_factory.mktemp("generated") / "lake"
    return root, generate(root / "landing", events=12_000, days=2, start=START, users=300, types=20, bad_rate=0.04,
                          dup_rate=0.05, seed=11, compress=True)  # fmt: skip


@pytest.fixture(scope="module")
def generated(made: tuple[Path, GenerateSummary], make_settings, spark: SparkSession):
    """The lake of `made` after one ingest, plus the oracle's view of its landing files."""
    root, written = made
    settings = make_settings(root)
    return settings, ingest(settings), audit(written.files)


def _day(event: dict) -> date:
    """The event's UTC date, from its `meta.created_at`."""
    return datetime.fromtimestamp(event["meta"]["created_at"] / 1000, UTC).date()


def _user(event: dict) -> str | None:
    """The contract's `user_id`: `data.attributes.user_id`, else `meta.user_id` (conf/local.yaml's paths)."""
    for holder in (event["data"]["attributes"], event["meta"]):
        if holder.get("user_id") is not None:
            return holder["user_id"]
    return None


def test_summary_reconciles_with_the_oracle(
    generated: tuple[Settings, list[dict], Audit], made: tuple[Path, GenerateSummary]
) -> None:
    """Each figure against the generator's record and the oracle's count, never against the others (ingest derives
    `duplicates` from them, so their sum always adds up)."""
    _, summaries, oracle = generated
    _, written = made
    [summary] = summaries
    assert summary["lines_read"] == written.lines == oracle.lines == 12_000
    assert summary["valid"] == written.valid == len(oracle.first_seen)
    assert summary["quarantined"] == sum(written.bad.values()) == sum(oracle.reasons.values())
    assert summary["duplicates"] == written.duplicates == oracle.duplicates
    assert summary["reasons"] == written.bad == dict(oracle.reasons)
    assert summary["files"] == len(written.files) == 48


def test_events_are_exactly_the_first_copies(generated, spark: SparkSession) -> None:
    settings, _, oracle = generated
    rows = table(spark, settings, tables.EVENTS).collect()
    expected = {
        event["data"]["id"]: (event["data"]["type"], event["meta"]["created_at"], file.split("landing/")[1])
        for file, event in oracle.events
    }
    assert len(rows) == len(expected)
    found = {r["event_id"]: (r["event_type"], int(r["event_ts"].timestamp() * 1000), r["source_file"]) for r in rows}
    assert found == expected
    assert all(r["event_date"] == r["event_ts"].date() and r["event_hour"] == r["event_ts"].hour for r in rows)


def test_quarantine_holds_every_rejected_line_with_its_reason(generated, spark: SparkSession) -> None:
    settings, [summary], oracle = generated
    quarantine = table(spark, settings, tables.QUARANTINE)
    assert Counter(r["reason"] for r in quarantine.select("reason").collect()) == oracle.reasons
    located = quarantine.where("source_file is null or line_number < 1 or raw is null").count()
    assert located == 0
    assert {r["ingest_date"].isoformat() for r in quarantine.select("ingest_date").distinct().collect()} == {
        summary["started_at"][:10]
    }


def test_ingest_runs_records_the_batch(generated, made: tuple[Path, GenerateSummary], spark: SparkSession) -> None:
    """The run's figures, files and event dates as the oracle and the generator have them."""
    settings, [summary], oracle = generated
    root, written = made
    [run] = table(spark, settings, tables.INGEST_RUNS).collect()
    assert run["run_id"] == summary["run_id"]
    assert (run["lines_read"], run["valid"], run["quarantined"], run["duplicates"]) == (
        oracle.lines, len(oracle.first_seen), sum(oracle.reasons.values()), oracle.duplicates
    )  # fmt: skip
    assert len(run["files"]) == 48 and all(not f.startswith("file:") for f in run["files"])
    assert sorted(run["files"]) == sorted(str(Path(f).relative_to(root / "landing")) for f in written.files)
    days = sorted({_day(event) for _, event in oracle.events})
    assert list(run["event_dates"]) == days
    assert summary["event_dates"] == [day.isoformat() for day in days]
    # Late events reach back before the first generated day.
    assert min(run["event_dates"]) < START


def test_rerun_adds_nothing(generated, spark: SparkSession) -> None:
    settings, _, _ = generated
    written = (tables.EVENTS, tables.QUARANTINE, tables.EVENT_IDS, tables.INGEST_RUNS, tables.INGEST_BATCHES)
    versions = {name: version(settings, name) for name in written}
    assert ingest(settings) == [
        {"run_id": None, "batch": None, "files": 0, "bytes": 0, "lines_read": 0, "valid": 0, "quarantined": 0,
         "duplicates": 0, "reasons": {}, "event_dates": []}
    ]  # fmt: skip
    assert {name: version(settings, name) for name in versions} == versions


def test_event_ids_hold_each_event_once_with_its_batch(generated, spark: SparkSession) -> None:
    """Every first copy the oracle found, with its event date and user (as the contract derives them) and batch 1."""
    settings, _, oracle = generated
    ids = table(spark, settings, tables.EVENT_IDS)
    expected = [(_day(event), event["data"]["id"], _user(event), 1) for _, event in oracle.events]
    assert sorted(map(tuple, ids.collect())) == sorted(expected)
    assert RustTable(tables.table_path(settings, tables.EVENT_IDS)).metadata().partition_columns == ["event_date"]


def test_delta_rs_reads_the_tables_with_their_partitions(generated) -> None:
    settings, _, oracle = generated
    events = RustTable(tables.table_path(settings, tables.EVENTS))
    assert events.metadata().partition_columns == ["event_type", "event_date", "event_hour"]
    assert events.to_pyarrow_table().num_rows == len(oracle.first_seen)
    quarantine = RustTable(tables.table_path(settings, tables.QUARANTINE))
    assert quarantine.metadata().partition_columns == ["ingest_date"]
    assert quarantine.to_pyarrow_table().num_rows == sum(oracle.reasons.values())
    assert RustTable(tables.table_path(settings, tables.INGEST_RUNS)).to_pyarrow_table().num_rows == 1


def test_resent_file_in_a_later_batch_is_all_duplicates(generated, tmp_path: Path, make_settings) -> None:
    settings, _, oracle = generated
    lake = tmp_path / "lake"
    shutil.copytree(Path(settings.lake.root), lake)
    source = sorted((lake / "landing").rglob("*.jsonl.gz"))[5]
    shutil.copy(source, lake / "landing" / "resent.jsonl.gz")
    again = audit([str(source)])
    [summary] = ingest(make_settings(lake))
    assert (summary["batch"], summary["files"], summary["valid"]) == (2, 1, 0)
    assert (summary["lines_read"], summary["quarantined"]) == (again.lines, sum(again.reasons.values()))
    assert summary["duplicates"] == again.lines - sum(again.reasons.values()) > 0
    assert summary["reasons"] == dict(again.reasons)


def test_a_lake_from_before_the_id_index_gets_it_from_events(
    generated, tmp_path: Path, make_settings, spark: SparkSession
) -> None:
    """`events` without `_state/event_ids` (a lake written by an earlier version): the next batch indexes `events`
    as batch 0 first, so a re-sent file is still all duplicates, and a new event is indexed with its batch."""
    settings, _, oracle = generated
    lake = tmp_path / "lake"
    shutil.copytree(Path(settings.lake.root), lake)
    shutil.rmtree(lake / tables.EVENT_IDS)
    source = sorted((lake / "landing").rglob("*.jsonl.gz"))[3]
    shutil.copy(source, lake / "landing" / "resent.jsonl.gz")
    land(lake / "landing", "new.json", [event_line("brand-new", datetime(2024, 3, 1, 9))])
    again = audit([str(source)])
    copied = make_settings(lake)
    [summary] = ingest(copied)
    assert (summary["batch"], summary["valid"]) == (2, 1)
    assert (summary["lines_read"], summary["quarantined"]) == (again.lines + 1, sum(again.reasons.values()))
    assert summary["duplicates"] == again.lines - sum(again.reasons.values())
    batches = Counter(row["batch"] for row in table(spark, copied, tables.EVENT_IDS).select("batch").collect())
    assert batches == {0: len(oracle.first_seen), 2: 1}


def test_duplicates_within_and_across_batches(settings: Settings, landing: Path, spark: SparkSession) -> None:
    noon = datetime(2024, 3, 1, 12)
    land(landing, "a.json", [event_line("e1", noon), event_line("e2", noon), event_line("e1", noon)])
    land(landing, "b.json", [event_line("e2", noon), event_line("e3", noon)])
    [first] = ingest(settings)
    assert (first["lines_read"], first["valid"], first["duplicates"]) == (5, 3, 2)
    land(landing, "c.json", [event_line("e3", noon), event_line("e4", noon), event_line("e4", noon)])
    [second] = ingest(settings)
    assert (second["lines_read"], second["valid"], second["duplicates"]) == (3, 1, 2)
    files = {r["event_id"]: r["source_file"] for r in table(spark, settings, tables.EVENTS).collect()}
    assert files == {"e1": "a.json", "e2": "a.json", "e3": "b.json", "e4": "c.json"}


def test_late_event_lands_in_its_own_day_and_hour(settings: Settings, landing: Path, spark: SparkSession) -> None:
    land(landing, "now.json", [event_line("n1", datetime(2024, 3, 5, 10, 30))])
    ingest(settings)
    land(landing, "late.json", [event_line("l1", datetime(2024, 3, 2, 23, 59)),
                                event_line("l2", datetime(2024, 3, 5, 11), user=None)])  # fmt: skip
    [summary] = ingest(settings)
    assert summary["event_dates"] == ["2024-03-02", "2024-03-05"]
    rows = table(spark, settings, tables.EVENTS).where("event_id in ('l1', 'l2')").collect()
    placed = {r["event_id"]: (r["event_date"].isoformat(), r["event_hour"], r["user_id"]) for r in rows}
    assert placed == {"l1": ("2024-03-02", 23, "u1"), "l2": ("2024-03-05", 11, None)}


def test_empty_and_whitespace_files_are_taken_once(settings: Settings, landing: Path, spark: SparkSession) -> None:
    land(landing, "empty.json", [])
    land(landing, "blank.jsonl", ["", "  ", "\t"])
    [summary] = ingest(settings)
    assert (summary["files"], summary["lines_read"], summary["valid"]) == (2, 0, 0)
    assert table(spark, settings, tables.EVENTS).count() == 0
    assert ingest(settings)[0]["files"] == 0


def test_lines_end_as_the_reader_ends_them_and_each_holds_one_value(settings: Settings) -> None:
    """A lone \\r ends a line, the last line needs no line break, and two events written on one line are one
    malformed line (never one event and a silent loss): the counts are those written, and the oracle's."""
    first, second, third = (event_line(f"e{n}", datetime(2024, 3, 1, 10, n)) for n in range(3))
    path = Path(settings.lake.root) / "landing" / "edges.jsonl"
    path.write_bytes(f"{first}\r{second}{third}\n{third} x\n{third}".encode())
    [summary] = ingest(settings)
    assert (summary["lines_read"], summary["valid"], summary["quarantined"], summary["duplicates"]) == (4, 2, 2, 0)
    assert summary["reasons"] == {"malformed_json": 2}
    oracle = audit([str(path)])
    assert (oracle.lines, len(oracle.first_seen), dict(oracle.reasons)) == (4, 2, {"malformed_json": 2})


def test_a_copy_is_a_duplicate_within_the_dedup_window_only(settings: Settings, spark: SparkSession) -> None:
    """DESIGN §3: an id already ingested is a duplicate when the two copies' event dates lie within
    `ingest.dedup_window_days` (7) of each other: re-sent 1 and 7 days later it is dropped, 8 days later it is new."""
    landing = Path(settings.lake.root) / "landing"
    day = datetime(2024, 3, 1, 10)
    land(landing, "a.jsonl", [event_line(name, day) for name in ("one-day", "seven-days", "eight-days")])
    ingest(settings)
    later = {"one-day": 1, "seven-days": 7, "eight-days": 8}
    land(landing, "b.jsonl", [event_line(name, day.replace(day=1 + shift)) for name, shift in later.items()])
    [summary] = ingest(settings)
    assert (summary["lines_read"], summary["valid"], summary["duplicates"]) == (3, 1, 2)
    stored = Counter(row["event_id"] for row in table(spark, settings, tables.EVENTS).collect())
    assert stored == {"one-day": 1, "seven-days": 1, "eight-days": 2}
