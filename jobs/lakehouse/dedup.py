"""Duplicate events: the first copy of an id in a batch wins, and ids already stored within the dedup window are
dropped."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def first_copies(events: DataFrame, order: tuple[str, ...] = ("source_file", "line_number")) -> DataFrame:
    """One row per `event_id`: the first by `order` (where it was read), so the winner never depends on Spark."""
    first = Window.partitionBy("event_id").orderBy(*order)
    return events.withColumn("_copy", F.row_number().over(first)).where(F.col("_copy") == 1).drop("_copy")


def unseen(events: DataFrame, existing_ids: DataFrame, window_days: int) -> DataFrame:
    """The rows of `events` whose `event_id` is not among `existing_ids` with an `event_date` within `window_days`
    of the row's own (DESIGN §3: copies further apart are different events)."""
    stored = existing_ids.select(F.col("event_id").alias("_id"), F.col("event_date").alias("_date"))
    near = (F.col("event_id") == F.col("_id")) & (F.abs(F.datediff("event_date", "_date")) <= window_days)
    return events.join(stored, near, "left_anti")
