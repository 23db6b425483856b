"""The catalogue of tables against the lake the jobs write: every table it lists has the columns, types and
partitions it says, and its lists (gold, published, analyst-readable, purged) are the ones DESIGN §2, §5, §6 name."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from lakehouse import tables
from lakehouse.config import Settings


def test_written_tables_have_the_catalogues_schema_and_partitions(
    served: tuple[Settings, dict], spark: SparkSession
) -> None:
    settings, _ = served
    written = {}
    for entry in tables.CATALOGUE:
        path = tables.table_path(settings, entry.name)
        if DeltaTable.isDeltaTable(spark, path):
            stored = spark.read.format("delta").load(path)
            partitions = DeltaTable.forPath(spark, path).detail().first()["partitionColumns"]
            written[entry.name] = ([(f.name, f.dataType.simpleString()) for f in stored.schema], tuple(partitions))
    # What ingest, aggregate and the checks of a served lake write: all but forget-user's plans and requests (there
    # once a test forgot a user on it).
    assert set(written) >= {entry.name for entry in tables.CATALOGUE} - {tables.FORGET_REQUESTS, tables.FORGET_PLANS}
    for name, (columns, partitions) in written.items():
        entry = tables.table(name)
        declared = spark.createDataFrame([], entry.schema).schema
        assert columns == [(f.name, f.dataType.simpleString()) for f in declared], name
        assert partitions == entry.partitions, name


def test_the_lists_of_tables_are_the_specs() -> None:
    assert tables.GOLD == ("daily_user_activity", "daily_event_stats", "monthly_user_activity")
    assert tables.ANALYST_TABLES == tables.GOLD
    assert tables.PUBLISHED == ("events", "quarantine", "ingest_runs", *tables.GOLD)
    assert set(tables.PURGED) == {"events", "_state/event_ids", "quarantine", *tables.GOLD}
    assert tables.table(tables.EVENTS).partitions == ("event_type", "event_date", "event_hour")
    assert tables.table(tables.QUARANTINE).partitions == ("ingest_date",)
