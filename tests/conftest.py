"""Shared fixtures: one local Spark session per test run, a fresh lake per test, and one Trino server (with a lake
it serves) for the tests that ask for it."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time as clock
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.aggregate import aggregate
from lakehouse.config import Settings, load_settings
from lakehouse.ingest import ingest
from lakehouse.publish import publish
from lakehouse.session import spark_session
from lakehouse.trino_server import start, stop
from tests.lake import event_line, land
from tests.oracle import audit

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf" / "local.yaml"
SERVED_START = date(2024, 3, 1)
# The days the served lake's events fall on: two in a row, and others at the edges of February to May (leap 2024),
# so that ranges of whole months and of days at their edges both hold events.
SERVED_DAYS = (date(2024, 2, 29), SERVED_START, SERVED_START + timedelta(days=1), date(2024, 4, 1), date(2024, 5, 31))


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
        "LAKEHOUSE__TRINO__HOME": str(REPO / ".cache" / "trino"),
        "LAKEHOUSE__TRINO__STATE_DIR": str(lake_root.parent / "trino"),
        "LAKEHOUSE__TRINO__HEAP": "2G",
    }


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


@pytest.fixture(scope="session")
def trino_starting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Future]]:
    """Settings for a Trino server on a free port, serving a lake of its own, and the server's start, under way in
    the background (so a fixture can build the lake meanwhile); the server stops at the end of the session."""
    root = tmp_path_factory.mktemp("served") / "lake"
    settings = load_settings(CONF, {**test_environ(root), "LAKEHOUSE__TRINO__PORT": str(free_port())})
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield settings, pool.submit(start, settings)
    stop(settings)


@pytest.fixture(scope="session")
def trino_settings(trino_starting: tuple[Settings, Future]) -> Settings:
    """Settings whose Trino server runs (for the rest of the session)."""
    settings, started = trino_starting
    started.result()
    return settings


@pytest.fixture(scope="session")
def served(trino_starting: tuple[Settings, Future], spark: SparkSession) -> tuple[Settings, dict]:
    """The served lake after ingest, aggregate and publish (of `served_lines`), with the summary of that publish."""
    settings, started = trino_starting
    land(Path(settings.lake.root) / "landing", "events.jsonl", served_lines(2_000, random.Random(7)))
    ingest(settings)
    aggregate(settings)
    started.result()
    return settings, publish(settings)


# The users a test forgot on the served lake (tests/jobs/test_forget.py), which `served_events` then leaves out.
SERVED_FORGOTTEN: set[str] = set()


@pytest.fixture(scope="session")
def served_written(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """What `served` landed, as the oracle reads it (its first-seen valid events): one dict per event with the
    `events` columns the served tables derive from (event_ts as epoch milliseconds)."""
    folder = tmp_path_factory.mktemp("served-oracle")
    land(folder, "events.jsonl", served_lines(2_000, random.Random(7)))
    rows = []
    for _, event in audit([str(folder / "events.jsonl")]).events:
        attributes, millis = event["data"]["attributes"], event["meta"]["created_at"]
        rows.append({"event_id": event["data"]["id"], "event_type": event["data"]["type"], "event_ts": millis,
                     "event_date": datetime.fromtimestamp(millis / 1000, UTC).date(),
                     "user_id": attributes.get("user_id"), "country": attributes.get("country")})  # fmt: skip
    return rows


@pytest.fixture
def served_events(served_written: list[dict]) -> list[dict]:
    """The events the served lake holds now: those landed, less the events of the users forgotten since."""
    return [event for event in served_written if event["user_id"] not in SERVED_FORGOTTEN]


def served_lines(count: int, rng: random.Random) -> list[str]:
    """`count` events over SERVED_DAYS (a few hours each, so few partitions): 4 types, 4 countries (of the quality
    settings' set: ingest's checks pass, so publish serves it) or none, 150 users and a tenth anonymous; then a
    re-sent event and a broken line."""
    lines = []
    for number in range(count):
        hour = datetime.combine(rng.choice(SERVED_DAYS), time(rng.choice((8, 13, 21))))
        user = None if rng.random() < 0.1 else f"user-{rng.randrange(150)}"
        country = rng.choice(("DE", "FR", "US", "GB", None))
        event_type = rng.choice(("login", "page_viewed", "purchase", "share"))
        created = hour + timedelta(seconds=rng.randrange(3600))
        lines.append(event_line(f"event-{number}", created, user=user, country=country, event_type=event_type))
    return [*lines, lines[0], '{"data": ']


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a free port, in a process of its own (so Spark and Trino reach it as they would reach
    S3), for the tests of a lake on S3."""
    port = free_port()
    with (tmp_path_factory.mktemp("moto") / "moto.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_for_server(port, server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_server(port: int, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = clock.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert server.poll() is None, "moto's server exited while starting"
        assert clock.monotonic() < deadline, f"moto's server did not listen on port {port} within {timeout} s"
        clock.sleep(0.2)
