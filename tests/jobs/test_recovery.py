"""Crash safety: an ingest killed with SIGKILL mid-way, then run again, ends with exactly the right rows; two
ingests at once over the same files neither duplicate nor lose anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.generate import GenerateSummary, generate
from lakehouse.ingest import ingest

pytestmark = pytest.mark.slow


def landed(settings: Settings) -> GenerateSummary:
    return generate(Path(settings.lake.root) / "landing", events=12_000, start=date(2024, 6, 1), users=1_000,
                    types=12, bad_rate=0.02, dup_rate=0.03, seed=5)  # fmt: skip


def start_ingest(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lakehouse.cli", "ingest"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def events_files_written_not_committed(lake: Path) -> bool:
    return any((lake / "events").glob("event_type=*/*/*/*.parquet")) and not any(
        (lake / "events" / "_delta_log").glob("*.json")
    )


def _commit_time(table: Path, version: int) -> float:
    """When `version` of the Delta table at `table` was committed (epoch seconds), from its log."""
    for line in (table / "_delta_log" / f"{version:020d}.json").read_text().splitlines():
        if "commitInfo" in (action := json.loads(line)):
            return action["commitInfo"]["timestamp"] / 1000
    raise AssertionError(f"no commitInfo in version {version} of {table}")


def assert_exact(spark: SparkSession, settings: Settings, made: GenerateSummary) -> None:
    events = spark.read.format("delta").load(tables.table_path(settings, tables.EVENTS))
    assert events.count() == made.valid == events.select("event_id").distinct().count()
    quarantine = spark.read.format("delta").load(tables.table_path(settings, tables.QUARANTINE))
    assert quarantine.count() == sum(made.bad.values())
    ids = spark.read.format("delta").load(tables.table_path(settings, tables.EVENT_IDS)).collect()
    assert sorted(ids) == sorted((*row, 1) for row in events.select("event_date", "event_id", "user_id").collect())
    [run] = spark.read.format("delta").load(tables.table_path(settings, tables.INGEST_RUNS)).collect()
    assert (run["batch"], run["valid"], run["duplicates"]) == (1, made.valid, made.duplicates)
    # Whichever run wrote them, the batch's rows carry the start time it was planned with.
    stamps = events.select("ingested_at").union(quarantine.select("ingested_at")).distinct().collect()
    assert [row["ingested_at"] for row in stamps] == [run["started_at"]]


# A kill right after each of ingest's commits (events, the id index among them) is tests/faults/test_kills.py's; here
# the moment between a commit's files and its log entry, which no commit mark can aim at.
@pytest.mark.parametrize("moment", [events_files_written_not_committed])
def test_killed_mid_batch_then_rerun_is_exact(moment, settings: Settings, cli_env, spark: SparkSession) -> None:
    made = landed(settings)
    lake = Path(settings.lake.root)
    process = start_ingest(cli_env)
    while process.poll() is None and not moment(lake):
        time.sleep(0.02)
    assert process.poll() is None, f"ingest finished before {moment.__name__}: {process.stderr.read()[-500:]}"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    [summary] = ingest(settings)
    assert (summary["batch"], summary["valid"], summary["duplicates"]) == (1, made.valid, made.duplicates)
    assert summary["reasons"] == made.bad
    assert_exact(spark, settings, made)
    assert ingest(settings)[0]["files"] == 0


def test_two_runs_at_once_take_each_file_once(settings: Settings, cli_env, spark: SparkSession) -> None:
    """Both processes run through the whole batch, from its plan to its record (commit times from the Delta logs,
    each process's start and end as this test saw them); whichever took the files, every count is exact."""
    made = landed(settings)
    began = [time.time(), None]
    first = start_ingest(cli_env)
    began[1] = time.time()
    second = start_ingest(cli_env)

    def finish(process: subprocess.Popen) -> tuple[str, str, float]:
        """The process's output, once it ended, and when it did."""
        return (*process.communicate(timeout=900), time.time())

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(finish, (first, second)))
    outputs = [(stdout, stderr) for stdout, stderr, _ in done]
    assert [process.returncode for process in (first, second)] == [0, 0], [err[-800:] for _, err in outputs]
    # The batch was planned after both had started and recorded before either ended: they ran at once.
    lake = Path(settings.lake.root)
    planned, recorded = _commit_time(lake / tables.INGEST_BATCHES, 0), _commit_time(lake / tables.INGEST_RUNS, 0)
    lifetimes = [(start, end) for start, (*_, end) in zip(began, done, strict=True)]
    assert all(start < planned <= recorded < end for start, end in lifetimes), (planned, recorded, lifetimes)
    for stdout, _ in outputs:
        summary = json.loads(stdout.splitlines()[-1])
        assert summary["batch"] in (1, None)
        if summary["batch"]:
            assert (summary["valid"], summary["duplicates"]) == (made.valid, made.duplicates)
    assert_exact(spark, settings, made)
