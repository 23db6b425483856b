"""Duplicates: the first copy in read order wins within a batch; ids already stored are dropped."""

from __future__ import annotations

from datetime import date

from chispa import assert_df_equality
from pyspark.sql import SparkSession

from lakehouse.dedup import first_copies, unseen

SCHEMA = "event_id string, source_file string, line_number long, payload string"
DATED = f"{SCHEMA}, event_date date"


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
    day = date(2024, 3, 1)
    rows = [("a", "f", 1, "x", day), ("b", "f", 2, "y", day), ("c", "f", 3, "z", day)]
    events = spark.createDataFrame(rows, DATED)
    stored = spark.createDataFrame([("b", day), ("zz", day)], "event_id string, event_date date")
    expected = spark.createDataFrame([rows[0], rows[2]], DATED)
    assert_df_equality(unseen(events, stored, 7), expected, ignore_row_order=True)


def test_stored_ids_count_within_the_window_only(spark: SparkSession) -> None:
    """A stored copy 7 days before or after is the same event (window 7); one 8 days off is not."""
    day = date(2024, 3, 10)
    rows = [("early", "f", 1, "x", day), ("late", "f", 2, "y", day), ("far", "f", 3, "z", day)]
    stored = spark.createDataFrame(
        [
            ("early", date(2024, 3, 3)),
            ("late", date(2024, 3, 17)),
            ("far", date(2024, 3, 2)),
            ("far", date(2024, 3, 18)),
        ],
        "event_id string, event_date date",
    )
    expected = spark.createDataFrame([rows[2]], DATED)
    assert_df_equality(unseen(spark.createDataFrame(rows, DATED), stored, 7), expected, ignore_row_order=True)
