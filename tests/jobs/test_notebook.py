"""The notebook helper: the lake's tables as views of the jobs' Spark session, as a data scientist opens them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.notebook import open_lake
from tests.conftest import CONF
from tests.conftest import test_environ as environment_for
from tests.lake import aggregated_lake
from tests.oracle import audit


def test_open_lake_shows_every_table_as_a_view(
    tmp_path: Path, make_settings: Callable[[Path], Settings], spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = aggregated_lake(tmp_path / "lake", make_settings, events=400, start=date(2024, 6, 1), users=20,
                               types=8, bad_rate=0.05, dup_rate=0.05, seed=3)  # fmt: skip
    for name, value in environment_for(tmp_path / "lake").items():
        monkeypatch.setenv(name, value)
    opened = open_lake(CONF)
    assert opened is spark
    found = audit(sorted(str(path) for path in (tmp_path / "lake" / "landing").rglob("*.jsonl*")))
    valid, quarantined = len(found.first_seen), sum(found.reasons.values())
    [runs] = opened.sql("SELECT sum(valid) AS valid, sum(quarantined) AS quarantined FROM ingest_runs").collect()
    assert opened.table(tables.EVENTS).count() == runs["valid"] == valid > 0
    assert opened.table(tables.QUARANTINE).count() == runs["quarantined"] == quarantined > 0
    [(total,)] = opened.sql("SELECT sum(events) FROM daily_event_stats").collect()
    assert total == valid
    direct = spark.read.format("delta").load(tables.table_path(settings, tables.DAILY_USER_ACTIVITY))
    assert opened.table(tables.DAILY_USER_ACTIVITY).exceptAll(direct).isEmpty()
    assert opened.table(tables.DAILY_USER_ACTIVITY).count() == direct.count() > 0
