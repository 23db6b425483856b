"""Duplicates: the first copy in read order wins within a batch; ids already stored are dropped."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import SparkSession

from lakehouse.dedup import first_copies, unseen

SCHEMA = "event_id string, source_file string, line_number long, payload string"


def test_first_copy_in_read_order_wins(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [("a", "f2", 1, "a-late-file"), ("a", "f1", 9, "a-first"), ("b", "f1", 3, "b-second"),
         ("b", "f1", 2, "b-first"), ("c", "f3", 1, "c-only")],
        SCHEMA,
    )  # fmt: skip
    expected = spark.createDataFrame(
        [("a", "f1", 9, "a-first"), ("b", "f1", 2, "b-first"), ("c", "f3", 1, "c-only")], SCHEMA
    )
    assert_df_equality(first_copies(events), expected, ignore_row_order=True)


def test_stored_ids_are_dropped(spark: SparkSession) -> None:
    events = spark.createDataFrame([("a", "f", 1, "x"), ("b", "f", 2, "y"), ("c", "f", 3, "z")], SCHEMA)
    stored = spark.createDataFrame([("b",), ("zz",)], "event_id string")
    expected = spark.createDataFrame([("a", "f", 1, "x"), ("c", "f", 3, "z")], SCHEMA)
    assert_df_equality(unseen(events, stored), expected, ignore_row_order=True)
