"""`lakehouse ingest --watch` as a real process: it ingests files landed while it runs, exactly once beside a one-shot
ingest, stops between batches on SIGTERM, and loses nothing to a SIGKILL mid-batch (the next run finishes the batch).
Every count is checked against the generator's own record of what it wrote."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.generate import GenerateSummary, generate
from lakehouse.ingest import ingest
from lakehouse.storage import peek
from tests.conftest import REPO
from tests.conftest import test_environ as environment_for

pytestmark = pytest.mark.slow
WAIT_SECONDS = 300


class Watcher:
    """`lakehouse ingest --watch --interval 1` on the lake at `root`, in a process group of its own; its stdout and
    stderr lines as they come."""

    def __init__(self, root: Path) -> None:
        env = {**os.environ, **environment_for(root), "LAKEHOUSE__INGEST__SETTLE_SECONDS": "0"}
        self.process = subprocess.Popen([sys.executable, "-m", "lakehouse.cli", "ingest", "--watch", "--interval", "1"],
                                        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)  # fmt: skip
        self.out: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._pump, args=(self.process.stdout, self.out.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.process.stderr, self.err.append), daemon=True).start()

    @staticmethod
    def _pump(stream, put) -> None:
        for line in stream:
            put(line.rstrip("\n"))

    def summary(self) -> dict:
        """The next batch summary it prints."""
        try:
            return json.loads(self.out.get(timeout=WAIT_SECONDS))
        except queue.Empty:
            raise AssertionError(f"no batch within {WAIT_SECONDS} s; stderr: {self.err[-5:]}") from None

    def wait_for_stderr(self, text: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not any(text in line for line in self.err):
            assert self.process.poll() is None, f"exited {self.process.returncode}: {self.err[-5:]}"
            assert time.monotonic() < deadline, f"no {text!r} on stderr: {self.err[-5:]}"
            time.sleep(0.2)


def landed(settings: Settings, name: str, seed: int) -> GenerateSummary:
    """A generated set of files moved into landing/`name`/ (generated beside it first, so the watcher never sees a
    file half written)."""
    root = Path(settings.lake.root)
    made = generate(root.parent / "generated" / name, 300, days=1, start=date(2024, 6, 1), users=20, bad_rate=0.05,
                    dup_rate=0.05, seed=seed)  # fmt: skip
    shutil.move(root.parent / "generated" / name, root / "landing" / name)
    return made


def _lines_read(settings: Settings) -> int:
    return sum(run["lines_read"] for run in peek(settings, tables.INGEST_RUNS, ["lines_read"]) or [])


def accounted(settings: Settings, made: list[GenerateSummary]) -> None:
    """`ingest_runs` accounts for every line the generator wrote, each file taken once; `events` holds the valid."""
    runs = peek(settings, tables.INGEST_RUNS, None) or []
    taken = Counter(path for run in runs for path in run["files"])
    assert set(taken.values()) == {1} and len(taken) == sum(len(m.files) for m in made), taken
    for column, name in (("lines_read", "lines"), ("valid", "valid"), ("duplicates", "duplicates")):
        assert sum(run[column] for run in runs) == sum(getattr(m, name) for m in made), column
    bad = sum((Counter(m.bad) for m in made), Counter())
    assert dict(sum((Counter(dict(run["reasons"])) for run in runs), Counter())) == dict(bad)
    assert len(peek(settings, tables.EVENTS, ["event_id"]) or []) == sum(m.valid for m in made)


def test_watches_landing_beside_a_one_shot_ingest_and_stops_on_sigterm(settings: Settings) -> None:
    watcher = Watcher(Path(settings.lake.root))
    try:
        watcher.wait_for_stderr("idle")  # its session is up and it has looked once
        first = landed(settings, "a", 1)
        assert watcher.summary()["lines_read"] == first.lines
        # Landed while it runs, with a one-shot ingest at the same time: each file is taken by one of them.
        second = landed(settings, "b", 2)
        ingest(settings)
        deadline = time.monotonic() + WAIT_SECONDS
        while _lines_read(settings) < first.lines + second.lines:
            assert time.monotonic() < deadline and watcher.process.poll() is None, watcher.err[-5:]
            time.sleep(0.5)
        accounted(settings, [first, second])
        watcher.process.send_signal(signal.SIGTERM)
        assert watcher.process.wait(timeout=WAIT_SECONDS) == 0, watcher.err[-5:]
        time.sleep(0.5)
        assert "stopped watching" in watcher.err[-1]
    finally:
        if watcher.process.poll() is None:
            os.killpg(watcher.process.pid, signal.SIGKILL)


def test_a_watcher_killed_mid_batch_loses_nothing(settings: Settings) -> None:
    """SIGKILL to its whole process group once the batch is planned (its first commit): the next run finishes it."""
    watcher = Watcher(Path(settings.lake.root))
    log = Path(settings.lake.root) / tables.INGEST_BATCHES / "_delta_log"
    try:
        watcher.wait_for_stderr("idle")
        made = landed(settings, "a", 3)
        deadline = time.monotonic() + WAIT_SECONDS
        while not list(log.glob("*.json")):
            assert time.monotonic() < deadline and watcher.process.poll() is None, watcher.err[-5:]
            time.sleep(0.01)
        os.killpg(watcher.process.pid, signal.SIGKILL)
        watcher.process.wait(timeout=60)
        assert watcher.process.returncode == -signal.SIGKILL
        assert peek(settings, tables.INGEST_RUNS, None) is None, "killed before its batch was recorded"
    finally:
        if watcher.process.poll() is None:
            os.killpg(watcher.process.pid, signal.SIGKILL)
    [finished] = ingest(settings)
    assert finished["batch"] == 1
    accounted(settings, [made])
