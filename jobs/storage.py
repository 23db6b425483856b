"""The thin I/O edge of the jobs: reading and writing the lake's Delta tables, and retrying on write conflicts."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import TypeVar

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError

CONCURRENT_WRITES = (
    ConcurrentAppendException, ConcurrentDeleteDeleteException, ConcurrentDeleteReadException,
    ConcurrentTransactionException, ConcurrentWriteException, MetadataChangedException, ProtocolChangedException,
)  # fmt: skip
MAX_CONFLICTS = 10
T = TypeVar("T")


def read(spark: SparkSession, settings: Settings, table: str, version: int | None = None) -> DataFrame | None:
    """Table `table` of the lake (as of `version` if given), or None before its first write."""
    path = tables.table_path(settings, table)
    if not DeltaTable.isDeltaTable(spark, path):
        return None
    reader = spark.read.format("delta")
    return (reader if version is None else reader.option("versionAsOf", version)).load(path)


def version(spark: SparkSession, settings: Settings, table: str) -> int:
    """The latest version of `table`, -1 before its first write."""
    path = tables.table_path(settings, table)
    if not DeltaTable.isDeltaTable(spark, path):
        return -1
    return DeltaTable.forPath(spark, path).history(1).select("version").first()["version"]


def append(
    frame: DataFrame,
    settings: Settings,
    table: str,
    partitions: tuple[str, ...] = (),
    txn: tuple[str, int] | None = None,
) -> None:
    """Appends `frame` to `table`; with `txn` = (writer, version), at most once: Delta skips a write it already has."""
    writer = frame.write.format("delta").mode("append").partitionBy(*partitions)
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
    writer.save(tables.table_path(settings, table))


def replace_days(frame: DataFrame, settings: Settings, table: str, days: Iterable[date]) -> None:
    """Replaces the `days` of `table` (partitioned by `event_date`) with `frame` in one commit: readers see the old
    days or the new ones, and a day `frame` has no rows for ends up empty."""
    listed = ", ".join(f"DATE'{day.isoformat()}'" for day in sorted(set(days)))
    (
        frame.write.format("delta")
        .mode("overwrite")
        .partitionBy("event_date")
        .option("replaceWhere", f"event_date IN ({listed})")
        .save(tables.table_path(settings, table))
    )


def peek(settings: Settings, table: str, columns: list[str]) -> list[dict] | None:
    """`columns` of a small table, read through delta-rs rather than Spark: for the checks that must not start a
    JVM (the DAGs' gates). None before the table's first write."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        found = DeltaTable(tables.table_path(settings, table))
    except TableNotFoundError:
        return None
    return found.to_pyarrow_table(columns=columns).to_pylist()


def utc_from_micros(micros: int) -> datetime:
    """A timestamp read as epoch micros (`F.unix_micros`) as a UTC datetime: PySpark would turn a timestamp it
    collects into the local time of this process."""
    return datetime.fromtimestamp(micros / 1e6, UTC)


def retry_on_conflict(work: Callable[[], T], attempts: int = MAX_CONFLICTS) -> T:
    """`work()`, run again (after a growing random pause) while another writer's commit makes Delta refuse ours;
    `work` must re-read what it depends on, so each attempt starts from the table as it now is."""
    attempt = 1
    while True:
        try:
            return work()
        except CONCURRENT_WRITES as exc:
            if attempt >= attempts:
                message = f"gave up after {attempt} concurrent-write conflicts: {exc.getMessage()}"
                raise LakehouseError(message) from None
            time.sleep(random.uniform(0.5, 2.0) * attempt)
            attempt += 1
