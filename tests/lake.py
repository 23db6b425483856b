"""Small helpers the tests share: hand-written event lines, landing them, and reading the lake's tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from deltalake import DeltaTable as RustTable
from pyspark.sql import DataFrame, SparkSession

from lakehouse import tables
from lakehouse.config import Settings


def event_line(
    event_id: str, created: datetime, user: str | None = "u1", country: str | None = "DE", event_type: str = "login"
) -> str:
    """One valid event as a JSON line; `user` and `country` left out when None."""
    attributes = {key: value for key, value in (("user_id", user), ("country", country)) if value is not None}
    millis = int(created.replace(tzinfo=UTC).timestamp() * 1000)
    return json.dumps({"data": {"id": event_id, "type": event_type, "attributes": attributes},
                       "meta": {"created_at": millis}})  # fmt: skip


def land(landing: Path, name: str, lines: list[str]) -> None:
    """Writes `lines` as the landing file `name`."""
    path = landing / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{text}\n" for text in lines))


def table(spark: SparkSession, settings: Settings, name: str) -> DataFrame:
    return spark.read.format("delta").load(tables.table_path(settings, name))


def version(settings: Settings, name: str) -> int:
    """The table's latest version, as a second reader (delta-rs) sees it."""
    return RustTable(tables.table_path(settings, name)).version()
