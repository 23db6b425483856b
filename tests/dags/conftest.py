"""Airflow for the DAG tests: its home and SQLite metadata DB in a temp folder, set here before anything imports
Airflow, with the environment `lakehouse airflow` gives it (the DAGs of dags/, the Spark connection on local[2])."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse.airflow_local import airflow_environ, set_writer_pool
from lakehouse.config import load_settings
from tests.conftest import CONF, REPO, test_environ

DAGS = REPO / "dags"
HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
_SETTINGS = load_settings(CONF, {**test_environ(HOME / "lake"), "LAKEHOUSE__AIRFLOW__HOME": str(HOME),
                                 "LAKEHOUSE__AIRFLOW__DAGS_FOLDER": str(DAGS)})  # fmt: skip
os.environ.update(airflow_environ(_SETTINGS, str(CONF)))


@pytest.fixture(scope="session", autouse=True)
def _airflow_home() -> Iterator[Path]:
    """The temp Airflow home, removed after the session."""
    yield HOME
    shutil.rmtree(HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A fresh metadata DB, as `airflow db migrate` makes it (from the ORM: seconds, not minutes of migrations),
    with the writers' pool `lakehouse airflow` sets."""
    from airflow.utils.db import initdb

    initdb()
    set_writer_pool(dict(os.environ))
