"""Landing files that cannot be read, change after planning or are still being written: each is set aside with a
reason or waited for, the rest of the batch is ingested, and no line is lost or counted twice."""

from __future__ import annotations

import gzip
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse import state, tables
from lakehouse.config import Settings
from lakehouse.ingest import ingest
from lakehouse.landing import changed, list_landing, unsettled
from lakehouse.records import IngestPlan, LandingFile
from lakehouse.session import spark_session
from lakehouse.storage import append_records
from tests.lake import event_line, land, table

DAY = datetime(2024, 3, 1, 10)


def lines(prefix: str, count: int) -> list[str]:
    return [event_line(f"{prefix}-{n}", DAY.replace(minute=n % 60)) for n in range(count)]


def plan_batch(settings: Settings, spark: SparkSession) -> IngestPlan:
    """Plans batch 1 over what landing holds now, as an ingest killed right after planning leaves it."""
    files = list_landing(spark, tables.table_path(settings, tables.LANDING), settings.ingest.extensions)
    plan = IngestPlan(1, "run-1", datetime.now(UTC).replace(microsecond=0), -1, tuple(files))
    append_records(spark, settings, tables.INGEST_BATCHES, [plan])
    return plan


def test_unreadable_files_are_set_aside_and_the_rest_ingested(settings: Settings, spark: SparkSession) -> None:
    landing = Path(settings.lake.root) / "landing"
    land(landing, "good.jsonl", lines("good", 3))
    packed = gzip.compress("".join(f"{text}\n" for text in lines("cut", 1000)).encode())
    (landing / "truncated.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    (landing / "not-gzip.jsonl.gz").write_bytes(b"plain text, not gzip\n")
    [summary] = ingest(settings)
    assert (summary["files"], summary["lines_read"], summary["valid"], summary["duplicates"]) == (3, 5, 3, 0)
    assert summary["reasons"] == {"unreadable_file": 2}
    assert set(summary["set_aside"]) == {"truncated.jsonl.gz", "not-gzip.jsonl.gz"}
    assert "Unexpected end of input stream" in summary["set_aside"]["truncated.jsonl.gz"]
    assert "not a gzip file" in summary["set_aside"]["not-gzip.jsonl.gz"]
    rows = table(spark, settings, tables.QUARANTINE).collect()
    assert {(r["source_file"], r["reason"], r["line_number"]) for r in rows} == {
        ("truncated.jsonl.gz", "unreadable_file", None), ("not-gzip.jsonl.gz", "unreadable_file", None)
    }  # fmt: skip
    assert {r["event_id"] for r in table(spark, settings, tables.EVENTS).collect()} == {"good-0", "good-1", "good-2"}
    assert state.unfinished_batches(settings) == []
    assert ingest(settings)[0]["batch"] is None, "nothing blocks the next run"


def test_a_file_deleted_after_its_batch_was_planned_is_set_aside(settings: Settings, spark: SparkSession) -> None:
    landing = Path(settings.lake.root) / "landing"
    land(landing, "a.jsonl", lines("a", 2))
    land(landing, "b.jsonl", lines("b", 2))
    plan_batch(settings, spark_session(settings))
    (landing / "b.jsonl").unlink()
    [summary] = ingest(settings)
    assert (summary["batch"], summary["lines_read"], summary["valid"], summary["reasons"]) == (
        1, 3, 2, {"unreadable_file": 1}
    )  # fmt: skip
    assert "does not exist" in summary["set_aside"]["b.jsonl"]
    assert state.unfinished_batches(settings) == []


def test_a_file_changed_after_planning_is_left_for_the_next_batch(settings: Settings, spark: SparkSession) -> None:
    landing = Path(settings.lake.root) / "landing"
    land(landing, "a.jsonl", lines("a", 2))
    plan_batch(settings, spark)
    with open(landing / "a.jsonl", "a") as growing:
        growing.write("".join(f"{text}\n" for text in lines("later", 2)))
    first, second = ingest(settings)
    assert (first["batch"], first["lines_read"], first["deferred"]) == (1, 0, ["a.jsonl"])
    assert (second["batch"], second["files"], second["lines_read"], second["valid"]) == (2, 1, 4, 4)
    assert table(spark, settings, tables.EVENTS).count() == 4


def test_a_file_still_being_written_waits_until_it_settles(settings: Settings, spark: SparkSession) -> None:
    """A producer appending a line every 0.2 s: ingest leaves the file alone while it grows; once the producer
    stopped and the file settled, every line it wrote is ingested, once."""
    spark_session(settings)  # the JVM is up before the producer starts
    path = Path(settings.lake.root) / "landing" / "growing.jsonl"
    written, stop = [], threading.Event()

    def produce() -> None:
        with open(path, "a") as out:
            while not stop.is_set():
                text = event_line(f"g-{len(written)}", DAY)
                out.write(text + "\n")
                out.flush()
                written.append(text)
                time.sleep(0.2)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(0.5)
        during = ingest(settings)
        assert producer.is_alive(), "the producer wrote throughout the first run"
    finally:
        stop.set()
        producer.join()
    assert during[0]["batch"] is None
    [after] = ingest(settings)
    assert (after["lines_read"], after["valid"]) == (len(written), len(written))


def test_settling_decisions() -> None:
    old, young = LandingFile("a", "la", "ua", 10, 1_000), LandingFile("b", "lb", "ub", 10, 9_500)
    unknown = LandingFile("c", "lc", "uc", 10, None)
    assert unsettled([old, young, unknown], now_ms=10_000, settle_ms=2_000) == [young]
    grown = LandingFile("b", "lb", "ub", 12, 9_900)
    touched = LandingFile("a", "la", "ua", 10, 1_001)
    assert changed([old, young], [old, grown]) == [young]
    assert changed([old, young], [touched]) == [old]
    assert changed([unknown], [LandingFile("c", "lc", "uc", 10, 5)]) == []
    assert changed([old], []) == []
