"""The lake's writer lock against a real S3-compatible server (moto's, a process of its own) and a local file system:
one holder at a time, a dead holder's lock taken over after a lease, a live one never, a holder that lost its lock
stopped, and a writer kept waiting too long told who holds the lake."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient

from lakehouse.cli import main
from lakehouse.config import Settings, load_settings
from lakehouse.errors import LakehouseError
from lakehouse.writer_lock import LOCK_PATH, LOST_LOCK_EXIT, enabled, writer_lock
from tests.conftest import CONF, REPO

BUCKET = "lakehouse-locks"
LEASE = 2


def s3_environ(endpoint: str, prefix: str, **lake: str) -> dict[str, str]:
    """A lake at s3a://BUCKET/prefix on `endpoint`, with `lake:` settings overridden."""
    return {
        "LAKEHOUSE__LAKE__ROOT": f"s3a://{BUCKET}/{prefix}",
        "LAKEHOUSE__S3__ENDPOINT": endpoint,
        "LAKEHOUSE__S3__PATH_STYLE_ACCESS": "true",
        "LAKEHOUSE__S3__ACCESS_KEY": "testing",
        "LAKEHOUSE__S3__SECRET_KEY": "testing",
        "LAKEHOUSE__LAKE__LOCK_LEASE_SECONDS": str(LEASE),
        **{f"LAKEHOUSE__LAKE__{key.upper()}": value for key, value in lake.items()},
    }


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> BaseClient:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    return s3


@pytest.fixture
def lake_environ(s3_endpoint: str, bucket: BaseClient, tmp_path: Path) -> Callable[..., dict[str, str]]:
    """The environment of a fresh lake on S3 (`where="s3"`) or on the local disk, its `lake:` settings overridden."""
    prefix = f"lake-{uuid.uuid4().hex[:8]}"

    def make(where: str = "s3", **lake: str) -> dict[str, str]:
        environ = s3_environ(s3_endpoint, prefix, **lake)
        if where == "local":
            environ["LAKEHOUSE__LAKE__ROOT"] = str(tmp_path / "lake")
        return environ

    return make


@pytest.fixture
def make_lake(lake_environ: Callable[..., dict[str, str]]) -> Callable[..., Settings]:
    """Settings of a fresh lake (see `lake_environ`)."""
    return lambda where="s3", **lake: load_settings(CONF, lake_environ(where, **lake))


def lock_key(settings: Settings) -> str:
    return f"{settings.lake.root.removeprefix(f's3a://{BUCKET}/')}/{LOCK_PATH}"


class Journal:
    """What the writers did, in order, and the moment a second writer said it waits."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.waiting = threading.Event()
        self._guard = threading.Lock()

    def write(self, entry: str) -> None:
        with self._guard:
            self.entries.append(entry)
        if entry.startswith("warning: waiting"):
            self.waiting.set()

    def warn(self, line: str) -> None:
        self.write(f"warning: {line}")


@pytest.mark.parametrize("where", ["s3", "local"])
def test_a_second_writer_waits_until_the_first_is_done(make_lake: Callable[..., Settings], where: str) -> None:
    """The first writer holds the lock for two leases after the second started waiting (so that it renews it, and
    the second sees it alive and never takes it over); the second gets it only once the first released it."""
    settings = make_lake(where, writer_lock="true")
    journal = Journal()
    first_in = threading.Event()

    def first() -> None:
        with writer_lock(settings, "first", journal.warn):
            journal.write("first in")
            first_in.set()
            assert journal.waiting.wait(60), "the second writer never waited"
            threading.Event().wait(2 * LEASE)
            journal.write("first out")

    def second() -> None:
        with writer_lock(settings, "second", journal.warn):
            journal.write("second in")

    holder = threading.Thread(target=first)
    holder.start()
    assert first_in.wait(60)
    waiter = threading.Thread(target=second)
    waiter.start()
    holder.join(120)
    waiter.join(120)
    assert len(journal.entries) == 4, journal.entries
    assert journal.entries[0] == "first in" and journal.entries[2:] == ["first out", "second in"]
    assert journal.entries[1].startswith("warning: waiting for the lake's writer lock, held by first (pid ")


def test_a_local_lake_takes_no_lock_by_default(make_lake: Callable[..., Settings]) -> None:
    """auto: Delta's local log store refuses a second commit of a version by itself, so two writers may overlap."""
    settings = make_lake("local")
    assert not enabled(settings) and enabled(make_lake("s3"))
    with writer_lock(settings, "first"), writer_lock(settings, "second"):
        assert not (Path(settings.lake.root) / LOCK_PATH).exists()


def test_a_lock_its_holder_stopped_renewing_is_taken_over_after_a_lease(
    make_lake: Callable[..., Settings], bucket: BaseClient
) -> None:
    settings = make_lake(writer_lock="true")
    dead = {"owner": "lakehouse ingest (pid 4242 on gone-host)", "token": "t", "renewals": 7, "at": "2026-01-01"}
    bucket.put_object(Bucket=BUCKET, Key=lock_key(settings), Body=json.dumps(dead).encode())
    journal = Journal()
    with writer_lock(settings, "lakehouse aggregate", journal.warn):
        held = json.loads(bucket.get_object(Bucket=BUCKET, Key=lock_key(settings))["Body"].read())
    assert held["owner"].startswith("lakehouse aggregate (pid ")
    assert journal.entries[-1] == (f"warning: took the lake's writer lock over from {dead['owner']}: not renewed for "
                                   f"{LEASE} s (lake.lock_lease_seconds)")  # fmt: skip
    assert bucket.list_objects_v2(Bucket=BUCKET, Prefix=lock_key(settings))["KeyCount"] == 0


def test_a_writer_kept_waiting_too_long_is_told_who_holds_the_lake_in_one_line(
    lake_environ: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    environ = lake_environ(writer_lock="true", lock_wait_seconds="3")
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    with writer_lock(load_settings(CONF, environ), "lakehouse maintain"):
        assert main(["ingest", "--conf", str(CONF)]) == 2
    error = capsys.readouterr().err.splitlines()
    assert error[0].startswith("lakehouse: warning: waiting for the lake's writer lock, held by lakehouse maintain")
    assert error[1].startswith("lakehouse: error: the lake is being written by lakehouse maintain (pid ")
    assert error[1].endswith(": waited 3 s for its writer lock (lake.lock_wait_seconds)")
    assert len(error) == 2


def test_a_holder_that_lost_its_lock_stops_at_once(
    lake_environ: Callable[..., dict[str, str]], bucket: BaseClient
) -> None:
    """Another writer took the lock over (here: replaced the object): the holder's next renewal finds it and the
    holder exits rather than write on without it."""
    environ = lake_environ(writer_lock="true")
    settings = load_settings(CONF, environ)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom lakehouse.config import load_settings\n"
         "from lakehouse.writer_lock import writer_lock\n"
         f"with writer_lock(load_settings({str(CONF)!r}), 'lakehouse forget-user'):\n"
         "    print('held', flush=True)\n    time.sleep(120)\n"],
        env={**environ, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        thief = {"owner": "another writer", "token": "x", "renewals": 0, "at": "now"}
        bucket.put_object(Bucket=BUCKET, Key=lock_key(settings), Body=json.dumps(thief).encode())
        assert holder.wait(60) == LOST_LOCK_EXIT
    finally:
        holder.kill()
    assert holder.stderr.read().strip().splitlines()[-1] == (
        f"lakehouse: error: lakehouse forget-user (pid {holder.pid} on {socket.gethostname()}) lost the lake's "
        "writer lock (another command took it over): stopped"
    )


def test_a_lock_setting_outside_its_range_is_refused_in_one_line() -> None:
    with pytest.raises(LakehouseError, match=r"lake\.lock_lease_seconds: .*greater than or equal to 2"):
        load_settings(CONF, {"LAKEHOUSE__LAKE__LOCK_LEASE_SECONDS": "1"})
    with pytest.raises(LakehouseError, match=r"lake\.writer_lock: .*must be auto, true or false, got .sometimes."):
        load_settings(CONF, {"LAKEHOUSE__LAKE__WRITER_LOCK": "sometimes"})
