"""The lake from a notebook: the jobs' Spark session with every published table as a view, for the data scientists'
own queries (README, "Who works with it how"); read-only by convention."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse import tables
from lakehouse.config import DEFAULT_CONF, load_settings
from lakehouse.session import spark_session
from lakehouse.storage import read


def open_lake(conf: str | Path = DEFAULT_CONF) -> SparkSession:
    """The Spark session of the settings in `conf` (plus environment overrides), with a temporary view per lake
    table that exists (`events`, `quarantine`, `ingest_runs` and the gold tables: `daily_user_activity`,
    `daily_event_stats`, `monthly_user_activity`), each reading the table's latest version at query time."""
    settings = load_settings(conf)
    spark = spark_session(settings)
    for name in tables.PUBLISHED:
        table = read(spark, settings, name)
        if table is not None:
            table.createOrReplaceTempView(name)
    return spark
