"""`lakehouse maintain` (DESIGN §6): compacts the partitions of every table that came to hold several files (`events`
ones rewritten sorted by user again) and vacuums what no version within the retention needs."""

from __future__ import annotations

import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.session import spark_session
from lakehouse.storage import (
    exists,
    file_count,
    live_files,
    optimize,
    retry_on_conflict,
    rewrite_partitions,
    vacuum,
)

# Partitions rewritten per commit: its predicate names each one, and a very long predicate plans slowly.
PARTITIONS_PER_COMMIT = 200


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
    report = {name: _maintain(spark, settings, name) for name in tables.MAINTAINED if exists(spark, settings, name)}
    return {
        "tables": report,
        "retention_hours": settings.maintenance.vacuum_retention_hours,
        "seconds": round(time.monotonic() - started, 3),
    }


def _maintain(spark: SparkSession, settings: Settings, table: str) -> dict:
    before = file_count(spark, settings, table)
    attempts = []

    def compact() -> int:
        attempts.append(1)
        return _compact(spark, settings, table)

    rewritten = retry_on_conflict(compact)
    vacuumed = vacuum(spark, settings, table, settings.maintenance.vacuum_retention_hours)
    return {
        "files_before": before,
        "files_after": file_count(spark, settings, table),
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
        if tables.table(table).reclustered:
            rewrite_partitions(spark, settings, table, where)
        else:
            optimize(spark, settings, table, where)
    return len(crowded)


def _sql_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
