"""Freshness: seconds from a drop of new events (default 100k, one day's hourly files) landing to all of its events
being counted through Trino in `lake.events`, next to `lakehouse ingest` alone. Usage: .venv/bin/python
benchmarks/freshness.py [--events N] [--history-events N] [--repeat R] [--keep] [--json PATH]; prints a table, then
all figures as one JSON line.

The lake already holds one day of events (written straight into Delta by benchmarks/history.py) and is published
once beforehand, with Trino running and warmed up by the drops' count over the history. Each run moves a freshly
generated drop (its own seed, so no event repeats an earlier one; events of the history's day, so dedup reads that
day's partitions) into landing/ in one rename, runs `lakehouse ingest` and, as soon as the batch's `events` commit is
in the Delta log (while ingest still writes its bookkeeping and runs its checks), asks Trino until the drop's rows in
`lake.events` are exactly the valid events the generator wrote."""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from common import (
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
MAX_SECONDS = 60  # landed -> queryable through Trino, locally
COMMIT_POLL_SECONDS = 0.1  # between looks for the drop's commit in the Delta log
POLL_SECONDS = 0.5  # between Trino counts once it is there
GIVE_UP_SECONDS = 900
# The drops' count, asked first over the history: a BI server runs long before a drop lands, and a fresh one's JIT
# takes ~3 of these counts to settle (the same count over ~7,500 small files: ~14 s on its first run, ~5 s warm).
WARMUP_COUNTS = 3


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--events", type=int, default=100_000, help="lines per landed drop (default 100000)")
    add("--history-events", type=int, default=100_000, help="events the lake holds beforehand (default 100000)")
    add("--repeat", type=int, default=3, help="drops landed, one run each (default 3)")
    add_output_arguments(parser)
    args = parser.parse_args()
    if min(args.events, args.history_events, args.repeat) < 1:
        parser.error("--events, --history-events and --repeat must be at least 1")
    return args


def history_lake(settings: Settings, events: int) -> None:
    """One day of `events` in `events`, straight into Delta; the Spark session is stopped afterwards so that it
    takes no memory from the runs."""
    spark = spark_session(settings)
    try:
        write_history(spark, settings, History(DAY, 1, events))
    finally:
        spark.stop()


def fresh_run(env: dict[str, str], work: Path, run: int, events: int) -> dict[str, float]:
    """One drop: generated aside, landed in one rename and ingested; once the batch's `events` commit is in the
    Delta log (its events are then queryable, while ingest still writes its bookkeeping and runs its checks), Trino
    is asked until it counts every valid event of the drop. The ingest summary must reconcile with the generator.
    The seconds from landing to that count, and of the ingest command."""
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
        ingesting = pool.submit(lakehouse, env, "ingest")
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
        ingested = ingesting.result()
    if errors := reconciliation_errors(ingested.json_lines(), expected):
        raise BenchmarkError(f"{name}: ingest summary does not reconcile:\n  " + "\n  ".join(errors))
    return {"queryable": queryable, "ingest": ingested.seconds}


def trino_count(env: dict[str, str], sql: str) -> int:
    """The one number `sql` returns, through Trino as the pipeline's user."""
    [(count,)] = query(settings_for(env), sql).rows
    return count


def benchmark(args: argparse.Namespace, work: Path) -> dict:
    """Builds and publishes the lake, then lands and times each drop."""
    env = lake_env(work)
    print(f"{machine()} | drops of {args.events:,} events on a lake of {args.history_events:,}", flush=True)
    (work / "lake" / "landing").mkdir(parents=True)
    started = time.perf_counter()
    history_lake(settings_for(env), args.history_events)
    setup = {"history": time.perf_counter() - started}
    runs: dict[str, list[float]] = {"queryable": [], "ingest": []}
    with published(env, setup):
        if (rows := trino_count(env, "SELECT count(*) FROM lake.events")) != args.history_events:
            raise BenchmarkError(f"Trino counts {rows:,} events in the lake, history wrote {args.history_events:,}")
        started = time.perf_counter()
        for _ in range(WARMUP_COUNTS):
            if trino_count(env, "SELECT count(*) FROM lake.events WHERE source_file LIKE 'history/%'") != rows:
                raise BenchmarkError("Trino's count of the history's rows changed while nothing was written")
        setup["trino warm-up"] = time.perf_counter() - started
        for run in range(1, args.repeat + 1):
            for name, seconds in fresh_run(env, work, run, args.events).items():
                runs[name].append(seconds)
            print(f"run {run}: queryable after {runs['queryable'][-1]:.1f} s, ingest {runs['ingest'][-1]:.1f} s",
                  flush=True)  # fmt: skip
    notes = [
        f"landed -> counted in lake.events through Trino: {spread(runs['queryable'])} s; `lakehouse ingest` alone: "
        f"{spread(runs['ingest'])} s (JVM start included); setup: {steps(setup)}"
    ]
    print(notes[0])
    ratio = median(runs["queryable"]) / median(runs["ingest"])
    row = figure(f"freshness: {args.events:,}-event drop landed → counted through Trino", "s", runs["queryable"],
                 "`lakehouse ingest` alone", runs["ingest"], f"≤ {MAX_SECONDS} s",
                 median(runs["queryable"]) <= MAX_SECONDS, ratio)  # fmt: skip
    return {"benchmark": "freshness", "events": args.events, "history_events": args.history_events,
            "repeat": args.repeat, "setup_seconds": {step: round(s, 1) for step, s in setup.items()},
            "runs": runs, "figures": [row], "notes": notes}  # fmt: skip


def main() -> int:
    args = parsed_args()
    return run_in_work_folder("freshness", benchmark, args, None)


if __name__ == "__main__":
    sys.exit(main())
