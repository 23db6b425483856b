"""Duplicate events: the first copy of an id in a batch wins, and ids already in `events` are dropped."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def first_copies(events: DataFrame, order: tuple[str, ...] = ("source_file", "line_number")) -> DataFrame:
    """One row per `event_id`: the first by `order` (where it was read), so the winner never depends on Spark."""
    first = Window.partitionBy("event_id").orderBy(*order)
    return events.withColumn("_copy", F.row_number().over(first)).where(F.col("_copy") == 1).drop("_copy")


def unseen(events: DataFrame, existing_ids: DataFrame) -> DataFrame:
    """The rows of `events` whose `event_id` is not among `existing_ids`."""
    return events.join(existing_ids.select("event_id"), "event_id", "left_anti")
