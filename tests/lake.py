"""Small helpers the tests share: hand-written event lines, landing them, and reading the lake's tables."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deltalake import DeltaTable as RustTable
from pyspark.sql import DataFrame, SparkSession

from lakehouse import tables
from lakehouse.aggregate import aggregate
from lakehouse.config import Settings
from lakehouse.generate import generate
from lakehouse.ingest import ingest


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


def aggregated_lake(root: Path, make_settings: Callable[[Path], Settings], **generated: Any) -> Settings:
    """A lake at `root` that ingested generated events (`generated`: the generator's arguments) and aggregated them."""
    generate(root / "landing" / "generated", **generated)
    settings = make_settings(root)
    ingest(settings)
    aggregate(settings)
    return settings


def copied_lake(settings: Settings, root: Path, make_settings: Callable[[Path], Settings]) -> Settings:
    """A copy of the lake of `settings` at `root`, for a test that changes it."""
    shutil.copytree(Path(settings.lake.root), root)
    return make_settings(root)
