"""`lakehouse maintain`: which partitions it rewrites, on exact inputs; then a lake ingested in three batches into the
same partitions, maintained: every table keeps exactly its rows, files shrink to one per partition, `events` files are
sorted by user, the vacuum keeps to the retention, other readers still read; and maintain next to a running ingest
loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from delta.tables import DeltaTable
from deltalake import DeltaTable as RustTable
from pyspark.sql import DataFrame, SparkSession

from lakehouse import tables
from lakehouse.aggregate import aggregate
from lakehouse.config import Settings
from lakehouse.ingest import ingest
from lakehouse.maintain import crowded_partitions, maintain, partition_predicate
from lakehouse.storage import live_files, retry_on_conflict, version
from lakehouse.tables import MAINTAINED
from tests.lake import copied_lake, event_line, land, table

BATCHES = 3
PARTITIONS = [(event_type, day, hour) for event_type in ("login", "purchase") for day in (1, 2) for hour in (8, 9)]
HOUR = 3600
UPDATES = 3


def batch_lines(batch: int) -> list[str]:
    """Per batch, four events in each of the eight partitions (one anonymous, users out of order), and a bad line."""
    lines = ['{"data": "broken"}']
    for event_type, day, hour in PARTITIONS:
        for n, user in enumerate(("user-9", None, "user-1", f"user-{batch}")):
            created = datetime(2024, 6, day, hour, 10 * n + batch)
            lines.append(event_line(f"{batch}-{event_type}-{day}-{hour}-{n}", created, user, event_type=event_type))
    return lines


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, make_settings, spark: SparkSession) -> Settings:
    """Three batches (one landing file each) into the same eight `events` partitions, then the aggregates."""
    root = tmp_path_factory.mktemp("maintain") / "lake"
    for batch in range(1, BATCHES + 1):
        land(root / "landing", f"batch-{batch}.jsonl", batch_lines(batch))
    settings = make_settings(root)
    one_file_each = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"max_batch_bytes": 1})})
    assert len(ingest(one_file_each)) == BATCHES
    aggregate(settings)
    return settings


@pytest.fixture(scope="module")
def maintained(lake: Settings, tmp_path_factory: pytest.TempPathFactory, make_settings, spark: SparkSession):
    """A copy of the lake maintained once, with an orphan file past the retention and one within it in `quarantine`:
    the settings, every table's rows and crowded partitions before, and the summary."""
    settings = copied_lake(lake, tmp_path_factory.mktemp("maintained") / "lake", make_settings)
    quarantine = Path(settings.lake.root) / "quarantine"
    for name, age_hours in (("old-orphan.parquet", 200), ("new-orphan.parquet", 100)):
        (quarantine / name).write_bytes(b"not referenced by any version")
        stamp = time.time() - age_hours * HOUR
        os.utime(quarantine / name, (stamp, stamp))
    before = {name: _rows(table(spark, settings, name)) for name in MAINTAINED if version(spark, settings, name) >= 0}
    crowded = {name: crowded_partitions(live_files(spark, settings, name)).count() for name in before}
    return settings, before, crowded, maintain(settings)


def test_crowded_partitions_are_those_with_several_files(spark: SparkSession) -> None:
    files = spark.createDataFrame(
        [("a", {"day": "1"}, 10), ("b", {"day": "1"}, 20), ("c", {"day": "2"}, 30), ("d", {"day": None}, 1),
         ("e", {"day": None}, 2)],
        "path string, partitionValues map<string, string>, size long",
    )  # fmt: skip
    found = {tuple(row["partitionValues"].items()): row["files"] for row in crowded_partitions(files).collect()}
    assert found == {(("day", "1"),): 2, (("day", None),): 2}


def test_partition_predicate_selects_exactly_one_partition() -> None:
    values = {"event_type": "it's", "event_date": "2024-06-01", "event_hour": None}
    expected = "`event_date` = '2024-06-01' AND `event_hour` IS NULL AND `event_type` = 'it\\'s'"
    assert partition_predicate(values) == expected


def test_every_table_keeps_exactly_its_rows(maintained, spark: SparkSession) -> None:
    settings, before, _, summary = maintained
    assert set(summary["tables"]) == set(before) == set(MAINTAINED) - {tables.FORGET_REQUESTS, tables.FORGET_PLANS}
    for name, rows in before.items():
        assert _rows(table(spark, settings, name)) == rows, name


def test_crowded_partitions_end_up_as_one_file_each(maintained, spark: SparkSession) -> None:
    settings, _, crowded, summary = maintained
    assert crowded[tables.EVENTS] == len(PARTITIONS) and crowded[tables.QUARANTINE] == 1
    for name, report in summary["tables"].items():
        assert report["partitions_rewritten"] == crowded[name], name
        assert crowded_partitions(live_files(spark, settings, name)).count() == 0, name
    files = {name: (report["files_before"], report["files_after"]) for name, report in summary["tables"].items()}
    assert files[tables.EVENTS] == (BATCHES * len(PARTITIONS), len(PARTITIONS))
    for name in (tables.QUARANTINE, tables.INGEST_RUNS, tables.INGEST_BATCHES):
        assert files[name] == (BATCHES, 1), name
    assert all(after <= before for before, after in files.values())


def test_events_files_are_clustered_by_user(maintained, spark: SparkSession) -> None:
    settings, _, _, _ = maintained
    for row in live_files(spark, settings, tables.EVENTS).collect():
        users = pq.read_table(f"{settings.lake.root}/events/{row['path']}").column("user_id").to_pylist()
        known = [user for user in users if user is not None]
        assert known == sorted(known) and len(users) == BATCHES * 4


def test_vacuum_keeps_to_the_configured_retention(maintained) -> None:
    settings, _, _, summary = maintained
    quarantine = Path(settings.lake.root) / "quarantine"
    assert summary["retention_hours"] == settings.maintenance.vacuum_retention_hours == 168
    assert not (quarantine / "old-orphan.parquet").exists() and (quarantine / "new-orphan.parquet").exists()
    assert summary["tables"][tables.QUARANTINE]["files_vacuumed"] == 1
    # What compaction replaced stays for readers of the older versions until the retention has passed.
    assert summary["tables"][tables.EVENTS]["files_vacuumed"] == 0
    assert len(list((Path(settings.lake.root) / "events").rglob("*.parquet"))) == BATCHES * len(PARTITIONS) + 8


def test_tables_keep_their_protocol_and_delta_rs_reads_them(maintained, spark: SparkSession) -> None:
    settings, before, _, _ = maintained
    for name, rows in before.items():
        path = tables.table_path(settings, name)
        [detail] = DeltaTable.forPath(spark, path).detail().collect()
        assert (detail["minReaderVersion"], detail["minWriterVersion"], detail["properties"]) == (1, 2, {}), name
        assert RustTable(path).to_pyarrow_table().num_rows == len(rows), name


def test_maintaining_again_rewrites_nothing(maintained) -> None:
    settings, _, _, summary = maintained
    again = maintain(settings)
    for name, report in again["tables"].items():
        assert report["partitions_rewritten"] == 0, name
        assert report["files_before"] == report["files_after"] == summary["tables"][name]["files_after"], name


def test_rewrites_meeting_another_writers_commit_are_retried(
    lake: Settings, tmp_path: Path, make_settings, spark: SparkSession
) -> None:
    """Maintain in a thread while this one rewrites every `events` file a few times (an UPDATE that changes no value,
    as forget-user's DELETE or a day's rebuild would remove files): the rewrite that read removed files is refused by
    Delta and planned again, and the table ends with exactly its rows."""
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    before = _rows(table(spark, settings, tables.EVENTS))
    events = DeltaTable.forPath(spark, tables.table_path(settings, tables.EVENTS))
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(maintain, settings)
        for _ in range(UPDATES):
            retry_on_conflict(lambda: events.update("user_id = 'user-9'", {"country": "country"}))
        summary = running.result()
    assert summary["tables"][tables.EVENTS]["conflicts_retried"] >= 1
    assert summary["tables"][tables.EVENTS]["files_after"] == len(PARTITIONS)
    assert _rows(table(spark, settings, tables.EVENTS)) == before


@pytest.mark.slow
def test_maintain_while_ingesting_loses_and_duplicates_nothing(
    lake: Settings, tmp_path: Path, make_settings, cli_env: dict[str, str], spark: SparkSession
) -> None:
    """`lakehouse maintain` and `lakehouse ingest` started together, the ingest appending to the very partitions the
    maintain rewrites: their commits interleave (each process tags its own), both succeed and every count reconciles
    exactly with the input."""
    settings = copied_lake(lake, tmp_path / "lake", make_settings)
    valid = len(PARTITIONS) * 4
    before = {name: table(spark, settings, name).count() for name in (tables.EVENTS, tables.QUARANTINE)}
    assert before == {tables.EVENTS: BATCHES * valid, tables.QUARANTINE: BATCHES}
    fresh = batch_lines(BATCHES + 1)
    land(Path(settings.lake.root) / "landing", "batch-4.jsonl", [*fresh, fresh[1]])
    started = [_lakehouse("maintain", _tagged(cli_env, "test-maintain")),
               _lakehouse("ingest", _tagged(cli_env, "test-ingest"))]  # fmt: skip
    (maintained, maintain_err), (ingested, ingest_err) = (process.communicate(timeout=900) for process in started)
    assert [process.returncode for process in started] == [0, 0], (maintain_err[-800:], ingest_err[-800:])
    commits = _commit_times(Path(settings.lake.root))
    assert _interleaved(commits.get("test-maintain", []), commits.get("test-ingest", [])), f"not at once: {commits}"
    assert len(maintained.splitlines()) == 1, maintained
    assert json.loads(maintained)["tables"][tables.EVENTS]["partitions_rewritten"] == len(PARTITIONS)
    [summary] = [json.loads(line) for line in ingested.splitlines()]
    assert (summary["batch"], summary["lines_read"], summary["valid"], summary["quarantined"], summary["duplicates"]) \
        == (BATCHES + 1, valid + 2, valid, 1, 1)  # fmt: skip
    events = table(spark, settings, tables.EVENTS)
    assert events.count() == events.select("event_id").distinct().count() == (BATCHES + 1) * valid
    assert table(spark, settings, tables.QUARANTINE).count() == BATCHES + 1
    runs = table(spark, settings, tables.INGEST_RUNS).collect()
    assert sorted(run["batch"] for run in runs) == list(range(1, BATCHES + 2))
    # Per batch, what its file holds (`batch_lines`): a bad line and `valid` events; the last also a re-sent one.
    figures = {run["batch"]: (run["lines_read"], run["valid"], run["quarantined"], run["duplicates"]) for run in runs}
    expected = {n: (valid + 1, valid, 1, 0) for n in range(1, BATCHES + 1)} | {BATCHES + 1: (valid + 2, valid, 1, 1)}
    assert figures == expected


def _lakehouse(command: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lakehouse.cli", command], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _tagged(env: dict[str, str], tag: str) -> dict[str, str]:
    """`env` for a `lakehouse` process whose every Delta commit carries `tag` (its commitInfo's `userMetadata`)."""
    conf = yaml.safe_load(env["LAKEHOUSE__SPARK__CONF"]) | {"spark.databricks.delta.commitInfo.userMetadata": tag}
    return {**env, "LAKEHOUSE__SPARK__CONF": json.dumps(conf)}


def _commit_times(root: Path) -> dict[str, list[int]]:
    """The timestamps (epoch ms) of the tagged commits in every Delta log under `root`, by tag."""
    times: dict[str, list[int]] = defaultdict(list)
    for log in root.rglob("_delta_log/*.json"):
        for line in log.read_text().splitlines():
            info = json.loads(line).get("commitInfo", {})
            if info.get("userMetadata"):
                times[info["userMetadata"]].append(info["timestamp"])
    return {tag: sorted(stamps) for tag, stamps in times.items()}


def _interleaved(one: list[int], other: list[int]) -> bool:
    """Whether two writers' sorted commit times overlap: a commit of either falls between two of the other's."""
    if not one or not other:
        return False
    return any(one[0] < t < one[-1] for t in other) or any(other[0] < t < other[-1] for t in one)


def _rows(frame: DataFrame) -> list[str]:
    """The rows, order aside, as comparable text (some tables hold maps, which Spark cannot sort)."""
    return sorted(json.dumps(row.asDict(recursive=True), sort_keys=True, default=str) for row in frame.collect())
