"""Freshness: seconds from a drop of new events (one day's hourly files) landing to all of its events being counted
through Trino in `lake.events`: ingested by the one-shot `lakehouse ingest` run at the drop (cold: JVM start
included), and by `lakehouse ingest --watch` kept running (warm: its second and later batches, after an untimed
drop), at two drop sizes (default 10k and 100k).
Usage: .venv/bin/python benchmarks/freshness.py [--events N] [--small-events N] [--history-events N] [--repeat R]
[--keep] [--json PATH]; prints a table, then all figures as one JSON line.

The lake already holds one day of events (written straight into Delta by benchmarks/history.py) and is published
once beforehand, with Trino running and warmed up by the drops' count over the history. Each run moves a freshly
generated drop (its own seed, so no event repeats an earlier one; events of the history's day, so dedup reads that
day's partitions) into landing/ in one rename, runs `lakehouse ingest` (or lets the watcher find it) and, as soon as
the batch's `events` commit is in the Delta log (while ingest still writes its bookkeeping and runs its checks), asks
Trino until the drop's rows in `lake.events` are exactly the valid events the generator wrote."""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from common import (
    REPO,
    VENV_BIN,
    BenchmarkError,
    add_output_arguments,
    figure,
    lake_env,
    lakehouse,
    machine,
    median,
    published,
    reconciliation_errors,
    run_in_work_folder,
    settings_for,
    spread,
    steps,
)
from history import History, write_history

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.generate import generate
from lakehouse.session import spark_session
from lakehouse.storage import peek_version
from lakehouse.trino_client import query

DAY = date(2024, 3, 1)
MAX_SECONDS = 60  # landed -> queryable through Trino, locally, by the one-shot command
WATCH_MAX_SECONDS = (10, 20)  # the same with the watcher running: the small drop, the large one (issue 24)
WATCH_INTERVAL = 1  # seconds between the watcher's looks at landing
WARMUP_DROP_EVENTS = 1_000  # the untimed drop the watcher ingests first
ONE_SHOT, WATCH = "one-shot", "watch"
WAYS = (ONE_SHOT, WATCH)
COMMIT_POLL_SECONDS = 0.1  # between looks for the drop's commit in the Delta log
POLL_SECONDS = 0.5  # between Trino counts once it is there
GIVE_UP_SECONDS = 900
# The drops' count, asked first over the history: a BI server runs long before a drop lands, and a fresh one's JIT
# takes ~3 of these counts to settle (the same count over ~7,500 small files: ~14 s on its first run, ~5 s warm).
WARMUP_COUNTS = 3


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--events", type=int, default=100_000, help="lines per large drop (default 100000)")
    add("--small-events", type=int, default=10_000, help="lines per small drop, ingested by the watcher and the "
        "one-shot command like the large ones (default 10000)")  # fmt: skip
    add("--history-events", type=int, default=100_000, help="events the lake holds beforehand (default 100000)")
    add("--repeat", type=int, default=3, help="drops landed, one run each (default 3)")
    add_output_arguments(parser)
    args = parser.parse_args()
    if min(args.events, args.small_events, args.history_events, args.repeat) < 1:
        parser.error("--events, --small-events, --history-events and --repeat must be at least 1")
    return args


def history_lake(settings: Settings, events: int) -> None:
    """One day of `events` in `events`, straight into Delta; the Spark session is stopped afterwards so that it
    takes no memory from the runs."""
    spark = spark_session(settings)
    try:
        write_history(spark, settings, History(DAY, 1, events))
    finally:
        spark.stop()


class Watching:
    """`lakehouse ingest --watch` on the benchmark's lake, kept running over the drops: its batch summaries as they
    come, read from its stdout."""

    def __init__(self, env: dict[str, str]) -> None:
        command = [str(VENV_BIN / "lakehouse"), "ingest", "--watch", "--interval", str(WATCH_INTERVAL)]
        self.process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.summaries: queue.Queue[dict] = queue.Queue()
        self.errors: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=lambda: self.errors.extend(self.process.stderr), daemon=True).start()
        deadline = time.monotonic() + GIVE_UP_SECONDS
        while not any("idle" in line for line in self.errors):  # its session is up and it has looked once
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkError(f"`lakehouse ingest --watch` did not start: {''.join(self.errors[-5:])}")
            time.sleep(0.2)

    def _pump(self) -> None:
        for line in self.process.stdout:
            if line.startswith("{"):
                self.summaries.put(json.loads(line))

    def batches_of(self, lines: int) -> tuple[list[dict], float]:
        """The summaries of the batches that read `lines` lines, and when the last of them came (perf_counter)."""
        found: list[dict] = []
        while sum(summary["lines_read"] for summary in found) < lines:
            try:
                found.append(self.summaries.get(timeout=GIVE_UP_SECONDS))
            except queue.Empty:
                waited = f"the watcher ingested nothing in {GIVE_UP_SECONDS} s"
                raise BenchmarkError(f"{waited}: {''.join(self.errors[-5:])}") from None
        return found, time.perf_counter()

    def stop(self) -> None:
        """SIGTERM, then its exit between batches."""
        self.process.send_signal(signal.SIGTERM)
        if self.process.wait(timeout=GIVE_UP_SECONDS) != 0:
            raise BenchmarkError(f"the watcher exited {self.process.returncode}: {''.join(self.errors[-5:])}")


def fresh_run(env: dict[str, str], work: Path, run: int, events: int, watching: Watching | None) -> dict[str, float]:
    """One drop: generated aside, landed in one rename and ingested (by `lakehouse ingest`, or by the watcher when
    `watching`); once the batch's `events` commit is in the Delta log (its events are then queryable, while ingest
    still writes its bookkeeping and runs its checks), Trino is asked until it counts every valid event of the drop.
    The ingest summaries must reconcile with the generator. The seconds from landing to that count, and to the
    ingest's end (the command's, or the watcher's summary)."""
    name, staged = f"fresh-{run}", work / "staging" / f"fresh-{run}"
    expected = generate(staged, events, days=1, start=DAY, bad_rate=0.01, dup_rate=0.02, seed=100 + run)
    count = f"SELECT count(*) FROM lake.events WHERE source_file LIKE '{name}/%'"
    # The drop's commit is the next version of `events`, watched as a file: a Trino query at every poll would take
    # CPU from the ingest it waits for.
    version = peek_version(settings_for(env), tables.EVENTS) + 1
    commit = work / "lake" / tables.EVENTS / "_delta_log" / f"{version:020d}.json"
    started = time.perf_counter()
    staged.rename(work / "lake" / "landing" / name)
    with ThreadPoolExecutor(max_workers=1) as pool:
        if watching is None:
            ingesting = pool.submit(lambda: (lakehouse(env, "ingest").json_lines(), time.perf_counter()))
        else:
            ingesting = pool.submit(watching.batches_of, expected.lines)
        while not (commit.exists() or ingesting.done()):
            time.sleep(COMMIT_POLL_SECONDS)
        while (seen := trino_count(env, count)) != expected.valid:
            if seen > expected.valid or time.perf_counter() - started > GIVE_UP_SECONDS:
                raise BenchmarkError(f"{name}: Trino counts {seen:,} of its rows, the generator wrote "
                                     f"{expected.valid:,}")  # fmt: skip
            if ingesting.done() and ingesting.exception() is not None:
                break  # reported below, as the ingest's own error
            time.sleep(POLL_SECONDS)
        queryable = time.perf_counter() - started
        summaries, ended = ingesting.result()
    if errors := reconciliation_errors(summaries, expected):
        raise BenchmarkError(f"{name}: ingest summary does not reconcile:\n  " + "\n  ".join(errors))
    return {"queryable": queryable, "ingest": ended - started}


def trino_count(env: dict[str, str], sql: str) -> int:
    """The one number `sql` returns, through Trino as the pipeline's user."""
    [(count,)] = query(settings_for(env), sql).rows
    return count


def benchmark(args: argparse.Namespace, work: Path) -> dict:
    """Builds and publishes the lake, then lands and times each drop: per size, `repeat` drops ingested by the
    one-shot command, then as many by the watcher, started once and kept running."""
    env = lake_env(work)
    sizes = sorted({args.small_events, args.events})
    print(f"{machine()} | drops of {' and '.join(f'{n:,}' for n in sizes)} events on a lake of "
          f"{args.history_events:,}", flush=True)  # fmt: skip
    (work / "lake" / "landing").mkdir(parents=True)
    started = time.perf_counter()
    history_lake(settings_for(env), args.history_events)
    setup = {"history": time.perf_counter() - started}
    runs: dict[str, dict[int, dict[str, list[float]]]] = {
        way: {size: {"queryable": [], "ingest": []} for size in sizes} for way in WAYS
    }
    drops = iter(range(1, 1_000_000))
    with published(env, setup):
        if (rows := trino_count(env, "SELECT count(*) FROM lake.events")) != args.history_events:
            raise BenchmarkError(f"Trino counts {rows:,} events in the lake, history wrote {args.history_events:,}")
        started = time.perf_counter()
        for _ in range(WARMUP_COUNTS):
            if trino_count(env, "SELECT count(*) FROM lake.events WHERE source_file LIKE 'history/%'") != rows:
                raise BenchmarkError("Trino's count of the history's rows changed while nothing was written")
        setup["trino warm-up"] = time.perf_counter() - started
        for way in WAYS:
            watching = Watching(env) if way == WATCH else None
            try:
                if watching is not None:  # its first batch loads what later ones find loaded (GX, JIT-compiled code)
                    fresh_run(env, work, next(drops), WARMUP_DROP_EVENTS, watching)
                for size in sizes:
                    for _ in range(args.repeat):
                        for name, seconds in fresh_run(env, work, next(drops), size, watching).items():
                            runs[way][size][name].append(seconds)
                        print(f"{way}, {size:,} events: queryable after {runs[way][size]['queryable'][-1]:.1f} s, "
                              f"ingested after {runs[way][size]['ingest'][-1]:.1f} s", flush=True)  # fmt: skip
            finally:
                if watching is not None:
                    watching.stop()
    notes = [f"{way}, {size:,}-event drop: landed -> counted in lake.events through Trino "
             f"{spread(got['queryable'])} s; -> ingested {spread(got['ingest'])} s"
             for way in WAYS for size, got in runs[way].items()]  # fmt: skip
    notes += [f"(one-shot: `lakehouse ingest` run at the drop, JVM start included; watch: `lakehouse ingest --watch "
              f"--interval {WATCH_INTERVAL}` running warm; setup: {steps(setup)})"]  # fmt: skip
    print("\n".join(notes))
    rows = []
    for size in sizes:
        cold, warm = runs[ONE_SHOT][size]["queryable"], runs[WATCH][size]["queryable"]
        label = f"freshness: {size:,}-event drop landed → counted through Trino"
        if size == args.events:
            rows.append(figure(f"{label}, one-shot `lakehouse ingest`", "s", cold, "the same, `lakehouse ingest` alone",
                               runs[ONE_SHOT][size]["ingest"], f"≤ {MAX_SECONDS} s", median(cold) <= MAX_SECONDS,
                               median(cold) / median(runs[ONE_SHOT][size]["ingest"])))  # fmt: skip
        limit = WATCH_MAX_SECONDS[0] if size == sizes[0] and len(sizes) > 1 else WATCH_MAX_SECONDS[1]
        rows.append(figure(f"{label}, `--watch` running", "s", warm, "the same drop, one-shot `lakehouse ingest`",
                           cold, f"≤ {limit} s", median(warm) <= limit, median(cold) / median(warm)))  # fmt: skip
    return {"benchmark": "freshness", "events": args.events, "small_events": args.small_events,
            "history_events": args.history_events, "repeat": args.repeat,
            "setup_seconds": {step: round(s, 1) for step, s in setup.items()},
            "runs": {way: {str(size): got for size, got in by_size.items()} for way, by_size in runs.items()},
            "figures": rows, "notes": notes}  # fmt: skip


def main() -> int:
    args = parsed_args()
    return run_in_work_folder("freshness", benchmark, args, None)


if __name__ == "__main__":
    sys.exit(main())
