"""The lake's writer lock: one lake-writing command at a time where Delta's log store does not itself refuse a second
writer's commit (its S3 log store is safe within one Spark driver only)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError

# The `lakehouse` commands that write the lake's tables: each holds the lock while it runs.
WRITERS = frozenset({"ingest", "aggregate", "validate", "run", "publish", "maintain", "forget-user"})
# Under the lake root, beside the pipeline's state tables.
LOCK_PATH = "_state/writer.lock"
# The exit code of a command that lost its lock while it ran (another writer may have taken it over).
LOST_LOCK_EXIT = 3
_POLL_SECONDS = 1.0
_REFUSED = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


def _warn(line: str) -> None:
    print(f"lakehouse: warning: {line}", file=sys.stderr, flush=True)


def enabled(settings: Settings) -> bool:
    """Whether lake writers take the lock: `lake.writer_lock` true, or auto and the lake on S3."""
    mode = settings.lake.writer_lock
    return mode is True or (mode == "auto" and _on_s3(settings))


@contextmanager
def writer_lock(settings: Settings, command: str, warn: Callable[[str], None] = _warn) -> Iterator[None]:
    """Holds the lake's writer lock while the block runs (when `enabled`): waits up to `lake.lock_wait_seconds` for
    it, then exits with a one-line error naming the holder."""
    if not enabled(settings):
        yield
        return
    owner = f"{command} (pid {os.getpid()} on {socket.gethostname()})"
    lock = _S3Lock(settings, owner, warn) if _on_s3(settings) else _FileLock(settings, owner, warn)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _on_s3(settings: Settings) -> bool:
    return urlparse(tables.lake_root(settings)).scheme == "s3a"


def _holder(owner: str, token: str, renewals: int = 0) -> dict[str, Any]:
    return {"owner": owner, "token": token, "renewals": renewals, "at": datetime.now(UTC).isoformat(timespec="seconds")}


def _busy(holder: dict[str, Any] | None, waited: int) -> LakehouseError:
    who = f"{holder['owner']} (lock renewed {holder['at']})" if holder else "another command"
    return LakehouseError(f"the lake is being written by {who}: waited {waited} s for its writer lock "
                          "(lake.lock_wait_seconds)")  # fmt: skip


class _FileLock:
    """A local lake's lock: an exclusive `flock` on a file under the root, released by the kernel when its holder
    ends, however it ends."""

    def __init__(self, settings: Settings, owner: str, warn: Callable[[str], None]) -> None:
        self.path = Path(urlparse(tables.lake_root(settings)).path) / LOCK_PATH
        self.owner, self.wait, self.warn = owner, settings.lake.lock_wait_seconds, warn
        self.file: Any = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a+")
        deadline = time.monotonic() + self.wait
        announced = False
        while True:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self._holder()
                if time.monotonic() >= deadline:
                    self.file.close()
                    raise _busy(holder, self.wait) from None
                if not announced:
                    self.warn(f"waiting for the lake's writer lock, held by {(holder or {}).get('owner')}")
                    announced = True
                time.sleep(_POLL_SECONDS)
        self.file.truncate(0)
        self.file.write(json.dumps(_holder(self.owner, str(uuid.uuid4()))))
        self.file.flush()

    def _holder(self) -> dict[str, Any] | None:
        self.file.seek(0)
        try:
            return json.loads(self.file.read())
        except ValueError:  # written by its holder a moment from now
            return None

    def release(self) -> None:
        self.file.truncate(0)
        self.file.close()


class _S3Lock:
    """A lake on S3's lock: an object created only if absent (a conditional PUT, `If-None-Match: *`) and renewed by
    its holder every quarter lease, each renewal conditional on the holder's own last version (`If-Match`). A waiter
    takes over a lock it saw unchanged for a whole lease by its own clock (its holder died), again conditionally, so
    that of two waiters one wins; no clocks are compared across hosts. A holder that cannot renew within half a lease
    stops at once (exit 3) rather than write on without the lock."""

    def __init__(self, settings: Settings, owner: str, warn: Callable[[str], None]) -> None:
        root = urlparse(tables.lake_root(settings))
        self.bucket, self.key = root.netloc, f"{root.path.strip('/')}/{LOCK_PATH}".lstrip("/")
        self.client = s3_client(settings)
        self.owner, self.token, self.warn = owner, str(uuid.uuid4()), warn
        self.lease, self.wait = settings.lake.lock_lease_seconds, settings.lake.lock_wait_seconds
        self.etag = ""
        self.renewals = 0
        self.stopped = threading.Event()
        self.renewer = threading.Thread(target=self._renew, name="writer-lock-renewal", daemon=True)

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        watched: tuple[str, float] | None = None
        announced = False
        while True:
            if self._put(IfNoneMatch="*"):
                break
            current = self._current()
            if current is None:
                continue
            etag, holder = current
            now = time.monotonic()
            if watched is None or watched[0] != etag:
                watched = (etag, now)
            elif now - watched[1] >= self.lease:
                if self._put(IfMatch=etag):
                    self.warn(f"took the lake's writer lock over from {holder.get('owner')}: not renewed for "
                              f"{self.lease} s (lake.lock_lease_seconds)")  # fmt: skip
                    break
                watched = None
                continue
            if now >= deadline:
                raise _busy(holder, self.wait)
            if not announced:
                self.warn(f"waiting for the lake's writer lock, held by {holder.get('owner')}")
                announced = True
            time.sleep(min(_POLL_SECONDS, self.lease / 4))
        self.renewer.start()

    def release(self) -> None:
        self.stopped.set()
        self.renewer.join()
        try:
            self._delete()
        except Exception as exc:  # noqa: BLE001 - the work is done: a lock left behind is taken over after a lease
            self.warn(f"{self.owner} could not release the lake's writer lock ({type(exc).__name__}: {exc}): the "
                      f"next writer takes it over after {self.lease} s")  # fmt: skip

    def _delete(self) -> None:
        """Deletes the lock if it is still this holder's: conditionally, or, where the store has no conditional
        delete, after reading that it is."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
            return
        except Exception as exc:  # noqa: BLE001 - botocore's errors by their code
            if _refused(exc):
                self.warn(f"the lake's writer lock was taken over before {self.owner} released it")
                return
            if _code(exc) not in ("NotImplemented", "InvalidArgument", "InvalidRequest"):
                raise
        current = self._current()
        if current is not None and current[0] == self.etag:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)

    def _put(self, **condition: str) -> bool:
        """Writes this holder's record if `condition` holds; False when the store refused it."""
        body = json.dumps(_holder(self.owner, self.token, self.renewals)).encode()
        try:
            written = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, **condition)
        except Exception as exc:  # noqa: BLE001 - botocore's errors by their code
            if _refused(exc):
                return False
            raise
        self.etag = written["ETag"]
        return True

    def _current(self) -> tuple[str, dict[str, Any]] | None:
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.client.exceptions.NoSuchKey:
            return None
        text = found["Body"].read()
        try:
            holder = json.loads(text)
        except ValueError:
            holder = {"owner": f"an unreadable lock record ({text[:80]!r})"}
        return found["ETag"], holder

    def _renew(self) -> None:
        renewed = time.monotonic()
        while not self.stopped.wait(self.lease / 4):
            self.renewals += 1
            try:
                if self._put(IfMatch=self.etag):
                    renewed = time.monotonic()
                    continue
                cause = "another command took it over"
            except Exception as exc:  # noqa: BLE001 - a store briefly unreachable: tried again until half a lease
                cause = f"{type(exc).__name__}: {exc}"
                if time.monotonic() - renewed < self.lease / 2:
                    continue
            print(f"lakehouse: error: {self.owner} lost the lake's writer lock ({cause}): stopped",
                  file=sys.stderr, flush=True)  # fmt: skip
            os._exit(LOST_LOCK_EXIT)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _refused(exc: Exception) -> bool:
    return _code(exc) in _REFUSED


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the `s3:` settings (without keys, boto3's default AWS credential chain)."""
    import boto3
    from botocore.config import Config

    s3 = settings.s3
    options = s3.as_properties("region_name", "endpoint_url", ("aws_access_key_id", "aws_secret_access_key"))
    addressing = {"addressing_style": "path" if s3.path_style_access else "auto"}
    return boto3.client("s3", config=Config(s3=addressing, retries={"max_attempts": 5, "mode": "standard"}), **options)
