"""`lakehouse maintain` (DESIGN §6): compacts small files, clusters `events` by `user_id` within its partitions and
vacuums what no version within the retention needs, in every Delta table of the lake; plus the file-level operations
behind it that forget-user shares (listing a version's files, vacuum, purge).

The work follows what changed: ingest writes one file per partition and batch, already sorted by user, so only the
partitions that came to hold several files are rewritten (Z-ORDER would rewrite every file it is given, clustered or
not), `events` ones sorted by user again. A rewrite changes no row; an ingest appending meanwhile never conflicts with
it, and one that meets another writer's commit (aggregate replacing a day, forget-user deleting) is planned again
from the table as it then is.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.ingest import clustered
from lakehouse.session import spark_session
from lakehouse.storage import read, retry_on_conflict, version

MAINTAINED = (
    tables.EVENTS, tables.QUARANTINE, tables.INGEST_RUNS, tables.DAILY_USER_ACTIVITY, tables.DAILY_EVENT_STATS,
    tables.MONTHLY_USER_ACTIVITY, tables.INGEST_BATCHES, tables.EVENT_IDS, tables.AGGREGATE_RUNS, tables.VALIDATIONS,
    tables.FORGET_REQUESTS,
)  # fmt: skip
# Partitions rewritten per commit: its predicate names each one, and a very long predicate plans slowly.
PARTITIONS_PER_COMMIT = 200
# Delta 4 ignores VACUUM's retention argument (other than 0) unless told otherwise, in favour of a table property;
# setting that property would be a metadata commit every concurrent writer conflicts with.
_VACUUM_CONF = {
    "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled": "false",
    # Each vacuum leaves a commit: purge relies on one after the commits it erases.
    "spark.databricks.delta.vacuum.logging.enabled": "true",
}
_LOG_ENTRY = re.compile(r"^(\d{20})\.(json|crc|checkpoint(\.\d+\.\d+)?\.parquet)$")


def crowded_partitions(files: DataFrame) -> DataFrame:
    """The partitions (`partitionValues`, a map; empty for an unpartitioned table) of a version's files that hold more
    than one of them: the only ones compaction can shrink."""
    return files.groupBy("partitionValues").agg(F.count(F.lit(1)).alias("files")).where("files > 1")


def partition_predicate(values: dict[str, str | None]) -> str:
    """The SQL predicate selecting exactly the partition of `values` (as Delta's log spells them)."""
    return " AND ".join(
        f"`{column}` IS NULL" if value is None else f"`{column}` = '{_sql_text(value)}'"
        for column, value in sorted(values.items())
    )


def maintain(settings: Settings) -> dict:
    """Compacts and vacuums every table the lake holds; a summary with each table's files before and after."""
    spark = spark_session(settings)
    started = time.monotonic()
    report = {name: _maintain(spark, settings, name) for name in MAINTAINED if version(spark, settings, name) >= 0}
    return {
        "tables": report,
        "retention_hours": settings.maintenance.vacuum_retention_hours,
        "seconds": round(time.monotonic() - started, 3),
    }


def live_files(spark: SparkSession, settings: Settings, table: str) -> DataFrame:
    """The data files of the table's latest version (`path`, `partitionValues`, `size`), listed from its Delta log
    without reading any data."""
    snapshot = _snapshot(spark, settings, table)
    return DataFrame(snapshot.allFiles().toDF(), spark).select("path", "partitionValues", "size")


def vacuum(spark: SparkSession, settings: Settings, table: str, retention_hours: float) -> int:
    """Deletes the files `table` no longer references that are older than `retention_hours`; how many it deleted."""
    delta = DeltaTable.forPath(spark, tables.table_path(settings, table))
    # Vacuum lists the table's folders in as many tasks as file listing for partition discovery would use: 10,000
    # by default, which costs ~20 s even for a one-file table on two cores.
    listing = {"spark.sql.sources.parallelPartitionDiscovery.parallelism": str(settings.spark.shuffle_partitions)}
    with session_conf(spark, {**_VACUUM_CONF, **listing}), _console_to_log(spark):
        delta.vacuum(retention_hours)
    ended = delta.history(10).where("operation = 'VACUUM END'").first()
    return int(ended["operationMetrics"]["numDeletedFiles"]) if ended else 0


def purge(spark: SparkSession, settings: Settings, table: str) -> int:
    """Physically deletes what `table`'s latest version no longer holds; returns the data files deleted.

    - every file a commit removed that Delta still lists (its tombstones, whatever their age): exactly the files the
      log names, so a file a concurrent writer has not committed yet is never touched, as a zero-hour vacuum would;
    - what the regular vacuum deletes (unreferenced files older than the retention, whose tombstones expired);
    - the log entries before a checkpoint of the latest version: their file statistics hold min/max values (and
      32-character prefixes) of the removed rows, and a DELETE's commit its predicate with its literals.

    Readers still on an older version lose its files, and time travel ends at that checkpoint.
    """
    path = tables.table_path(settings, table)
    jvm = spark._jvm
    removed = DataFrame(_snapshot(spark, settings, table).tombstones().toDF(), spark).select("path").collect()
    base = jvm.org.apache.hadoop.fs.Path(path)
    file_system = base.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    deleted = 0
    for row in removed:
        # A tombstone's path is relative to the table and URI-encoded (or absolute): resolved as Delta resolves it.
        file = jvm.org.apache.spark.sql.delta.util.DeltaFileOperations.absolutePath(path, row["path"])
        deleted += bool(file_system.delete(file, False))
    deleted += vacuum(spark, settings, table, settings.maintenance.vacuum_retention_hours)
    _truncate_log(spark, settings, table)
    return deleted


@contextmanager
def session_conf(spark: SparkSession, values: dict[str, str]) -> Iterator[None]:
    """Spark SQL settings for the statements run meanwhile, restored afterwards."""
    saved = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _maintain(spark: SparkSession, settings: Settings, table: str) -> dict:
    before = _snapshot(spark, settings, table).numOfFiles()
    attempts = []

    def compact() -> int:
        attempts.append(1)
        return _compact(spark, settings, table)

    rewritten = retry_on_conflict(compact)
    vacuumed = vacuum(spark, settings, table, settings.maintenance.vacuum_retention_hours)
    return {
        "files_before": before,
        "files_after": _snapshot(spark, settings, table).numOfFiles(),
        "partitions_rewritten": rewritten,
        "conflicts_retried": len(attempts) - 1,
        "files_vacuumed": vacuumed,
    }


def _compact(spark: SparkSession, settings: Settings, table: str) -> int:
    """Rewrites the partitions of `table` holding several files, PARTITIONS_PER_COMMIT per commit; how many it
    rewrote."""
    crowded = [row["partitionValues"] for row in crowded_partitions(live_files(spark, settings, table)).collect()]
    for start in range(0, len(crowded), PARTITIONS_PER_COMMIT):
        chunk = crowded[start : start + PARTITIONS_PER_COMMIT]
        where = " OR ".join(f"({partition_predicate(values)})" for values in chunk if values)
        if table == tables.EVENTS:
            _cluster_events(spark, settings, where)
        else:
            optimize = DeltaTable.forPath(spark, tables.table_path(settings, table)).optimize()
            (optimize.where(where) if where else optimize).executeCompaction()
    return len(crowded)


def _cluster_events(spark: SparkSession, settings: Settings, where: str) -> None:
    """Rewrites the `events` partitions `where` selects as ingest writes them: one file each, sorted by user.

    Not OPTIMIZE ZORDER BY user_id: on one column, Z-ordering is range partitioning into files, and Delta writes each
    range unsorted, so a partition that fits in one file would lose the order ingest gave it. The rewrite is one
    commit with `dataChange` false (as OPTIMIZE's), so streaming readers skip it; it replaces the files it read,
    in the transaction's own snapshot, so rows an ingest appends meanwhile are neither lost nor doubled.
    """
    rows = read(spark, settings, tables.EVENTS).where(where)
    (
        clustered(rows)
        .write.format("delta")
        .mode("overwrite")
        .partitionBy(*tables.EVENT_PARTITIONS)
        .option("replaceWhere", where)
        .option("dataChange", "false")
        .save(tables.table_path(settings, tables.EVENTS))
    )


def _truncate_log(spark: SparkSession, settings: Settings, table: str) -> None:
    """Checkpoints the latest version, then deletes the log's commits, checksums and checkpoints before it (Delta's
    own clean-up keeps them for `delta.logRetentionDuration`, 30 days, and never those of the current day)."""
    jvm = spark._jvm
    log = _delta_log(spark, settings, table)
    snapshot = _latest(spark, log)
    log.checkpoint(snapshot, getattr(log, "checkpoint$default$2")())
    folder = jvm.org.apache.hadoop.fs.Path(tables.table_path(settings, table) + "/_delta_log")
    file_system = folder.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    for status in file_system.listStatus(folder):
        entry = _LOG_ENTRY.match(status.getPath().getName())
        if entry and int(entry[1]) < snapshot.version():
            file_system.delete(status.getPath(), False)


def _delta_log(spark: SparkSession, settings: Settings, table: str) -> Any:
    """Delta's own (JVM) handle on the table's log: what its public API does not expose (files, tombstones,
    checkpoints)."""
    return spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(
        spark._jsparkSession, tables.table_path(settings, table)
    )


def _snapshot(spark: SparkSession, settings: Settings, table: str) -> Any:
    return _latest(spark, _delta_log(spark, settings, table))


def _latest(spark: SparkSession, log: Any) -> Any:
    """The log's snapshot of the table's latest version (read from storage now, not the one cached)."""
    none = spark._jvm.scala.Option.empty()
    return log.update(False, none, none)


@contextmanager
def _console_to_log(spark: SparkSession) -> Iterator[None]:
    """Sends what the JVM prints with Scala's println (VACUUM's "Deleted N files…") to its stderr, Spark's log file,
    instead of this command's stdout, which holds the one summary line. Scala keeps that stream per thread."""
    console = getattr(spark._jvm.scala, "Console$").__getattr__("MODULE$")
    saved = console.out()
    console.setOutDirect(spark._jvm.System.err)
    try:
        yield
    finally:
        console.setOutDirect(saved)


def _sql_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
