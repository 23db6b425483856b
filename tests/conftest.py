"""Shared fixtures: one local Spark session per test run, and a fresh lake per test."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.config import Settings, load_settings
from lakehouse.session import spark_session

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf" / "local.yaml"


def test_environ(lake_root: Path) -> dict[str, str]:
    """Environment overrides that point the default config at a test lake, sized for a 2-core machine."""
    return {
        "LAKEHOUSE__LAKE__ROOT": str(lake_root),
        "LAKEHOUSE__SPARK__MASTER": "local[2]",
        "LAKEHOUSE__SPARK__SHUFFLE_PARTITIONS": "2",
        "LAKEHOUSE__SPARK__DRIVER_MEMORY": "2g",
        "LAKEHOUSE__SPARK__IVY_CACHE": str(REPO / ".cache" / "ivy"),
        "LAKEHOUSE__SPARK__LOG_FILE": str(lake_root.parent / "spark.log"),
        "LAKEHOUSE__SPARK__CONF": "{spark.ui.enabled: 'false'}",
    }


@pytest.fixture(scope="session")
def make_settings() -> Callable[[Path], Settings]:
    return lambda lake_root: load_settings(CONF, test_environ(lake_root))


@pytest.fixture(scope="session")
def spark(make_settings: Callable[[Path], Settings], tmp_path_factory: pytest.TempPathFactory) -> SparkSession:
    return spark_session(make_settings(tmp_path_factory.mktemp("session") / "lake"))


@pytest.fixture
def settings(make_settings: Callable[[Path], Settings], tmp_path: Path, spark: SparkSession) -> Settings:
    """Settings for a fresh lake under this test's temp dir, with an empty landing folder."""
    (tmp_path / "lake" / "landing").mkdir(parents=True)
    return make_settings(tmp_path / "lake")


@pytest.fixture
def landing(settings: Settings) -> Path:
    return Path(settings.lake.root) / "landing"


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment for running the `lakehouse` command against this test's lake."""
    return {**os.environ, **test_environ(tmp_path / "lake")}
