"""Aggregate cost: `aggregate(settings, days)` on one day and on all days of a small lake (10 days of 1M events), and
on the same day of a large lake that holds the same days plus 90 days of older history, to show that a day costs
the same however much history the lake holds. Usage: .venv/bin/python benchmarks/aggregate.py [--events-per-day N]
[--other-events-per-day N] [--days-small D] [--days-large D] [--types T] [--repeat R] [--repeat-all R] [--out DIR]
[--keep] [--json PATH]; prints a table, then all figures as one JSON line.

Both lakes are written straight into Delta by benchmarks/history.py. The large lake's events table is the small
one's (hard links: the measured day holds the very same rows and files) plus the older days; those may hold fewer
events per day, since a one-day run reads none of their data, only their entries in the Delta log, and those are
one per file whatever the rows per file. Every day of the large lake is aggregated beforehand (the small lake's by
its all-days run), so both lakes' gold tables hold the measured day's month-to-date, which its run rolls up into
`monthly_user_activity`, and the large lake's hold history as well. Each timed run starts with Delta's log cache
cleared, as a new `lakehouse aggregate` process would."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from common import (
    OUT,
    REPO,
    BenchmarkError,
    add_output_arguments,
    figure,
    lake_env,
    link_or_copy,
    machine,
    memory_gib,
    spread,
    write_result,
)
from delta.tables import DeltaTable
from history import History, write_history
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.aggregate import aggregate
from lakehouse.config import Settings, load_settings
from lakehouse.session import spark_session
from lakehouse.storage import read, version

START = date(2024, 3, 1)  # the small lake's first day; the large lake's older history ends the day before
MASTER = "local[2]"
FLAT = 0.20  # a day may cost at most 20% more (or less) in the large lake
PLANNING = ", planning only"
BUILD_FORMAT = 2  # bump when the built lakes change (history.py, the gold history built first), so --keep rebuilds


@dataclass(frozen=True)
class Lake:
    """One benchmark lake: its name in the output, its settings, and the event days it holds."""

    name: str
    settings: Settings
    days: list[date]

    @property
    def root(self) -> Path:
        return Path(self.settings.lake.root)


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--events-per-day", type=int, default=1_000_000, help="events per day of the small lake (default 1000000)")
    add("--other-events-per-day", type=int, default=20_000, help="per older day of the large lake (default 20000)")
    add("--days-small", type=int, default=10, help="days in the small lake (default 10)")
    add("--days-large", type=int, default=100, help="days in the large lake (default 100)")
    add("--types", type=int, default=20, help="event types: each day has types x 24 files (default 20)")
    add("--repeat", type=int, default=3, help="timed one-day runs per lake (default 3)")
    add("--repeat-all", type=int, default=1, help="timed all-days runs of the small lake (default 1)")
    add("--out", type=Path, default=OUT / "aggregate", help="lakes and Spark log go here")
    add_output_arguments(parser, "keep the lakes, and reuse them if already built with the same sizes")
    return parser.parse_args()


def argument_errors(args: argparse.Namespace) -> list[str]:
    """What is wrong with the arguments."""
    return [
        message
        for bad, message in (
            (min(args.events_per_day, args.other_events_per_day) < 1, "events per day must be >= 1"),
            (min(args.days_small, args.repeat, args.repeat_all) < 1, "--days-small and repeats must be >= 1"),
            (args.days_large <= args.days_small, "--days-large must exceed --days-small"),
            (not 1 <= args.types <= 1000, "--types must be 1-1000"),
        )
        if bad
    ]


def lake_settings(root: Path, out: Path) -> Settings:
    """conf/local.yaml with the lake at `root`, Spark on two cores and its log in `out`."""
    env = {**os.environ, **lake_env(out, MASTER), "LAKEHOUSE__LAKE__ROOT": str(root)}
    return load_settings(REPO / "conf" / "local.yaml", env)


def lakes(args: argparse.Namespace, out: Path) -> tuple[Lake, Lake]:
    """The small lake and the large one (not built yet)."""
    older = args.days_large - args.days_small
    small_days = [START + timedelta(days=n) for n in range(args.days_small)]
    large_days = [START - timedelta(days=n) for n in range(older, 0, -1)] + small_days
    return (
        Lake(f"{args.days_small}-day lake", lake_settings(out / f"lake-{args.days_small}d", out), small_days),
        Lake(f"{args.days_large}-day lake", lake_settings(out / f"lake-{args.days_large}d", out), large_days),
    )


def build_key(args: argparse.Namespace) -> dict:
    """What the built lakes depend on: --keep reuses them only when this matches."""
    keys = ("events_per_day", "other_events_per_day", "days_small", "days_large", "types")
    return {"format": BUILD_FORMAT, **{key: getattr(args, key) for key in keys}}


def built(spark: SparkSession, args: argparse.Namespace, small: Lake, large: Lake) -> dict[str, float]:
    """Writes both lakes (or with --keep, reuses them when built alike); the seconds of each step, empty if reused."""
    marker = small.root.parent / "build.json"
    if args.keep and marker.exists() and json.loads(marker.read_text()) == build_key(args):
        return {}
    for lake in (small, large):
        shutil.rmtree(lake.root, ignore_errors=True)
    marker.unlink(missing_ok=True)
    small_history = History(START, args.days_small, args.events_per_day, args.types)
    seconds = {"small lake events": write_history(spark, small.settings, small_history).seconds}
    started = time.perf_counter()
    shutil.copytree(small.root / tables.EVENTS, large.root / tables.EVENTS, copy_function=link_or_copy)
    older = History(large.days[0], len(large.days) - len(small.days), args.other_events_per_day, args.types)
    write_history(spark, large.settings, older)
    seconds["large lake events"] = time.perf_counter() - started
    # The gold tables get their history too: every day of the large lake here, the small lake's by its all-days
    # runs. Both then hold the measured day's month-to-date, which its run rolls up into `monthly_user_activity`.
    seconds["large lake gold history"] = timed_aggregate(spark, large, large.days)
    marker.write_text(json.dumps(build_key(args)))
    return seconds


def timed_aggregate(spark: SparkSession, lake: Lake, days: list[date]) -> float:
    """Seconds `aggregate` takes to rebuild `days` of `lake`, from a cold Delta log cache."""
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    started = time.perf_counter()
    summary = aggregate(lake.settings, days)
    seconds = time.perf_counter() - started
    if summary["days"] != [day.isoformat() for day in days]:
        raise BenchmarkError(f"{lake.name}: aggregate rebuilt {summary['days']}, not the {len(days)} days asked for")
    return seconds


def planning(spark: SparkSession, lake: Lake, day: date) -> float:
    """Seconds to find the `events` files of `day` from a cold Delta log cache: the log replay and partition
    pruning every run starts with."""
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    started = time.perf_counter()
    read(spark, lake.settings, tables.EVENTS).where(F.col("event_date") == day).inputFiles()
    return time.perf_counter() - started


def log_facts(spark: SparkSession, lake: Lake) -> dict:
    """The size of `lake`'s events table and of its Delta log."""
    path = tables.table_path(lake.settings, tables.EVENTS)
    detail = DeltaTable.forPath(spark, path).detail().select("numFiles", "sizeInBytes").first()
    log_dir = lake.root / tables.EVENTS / "_delta_log"
    log = [entry for entry in log_dir.iterdir() if entry.is_file() and not entry.name.startswith(".")]
    return {
        "events": read(spark, lake.settings, tables.EVENTS).count(),
        "files": detail["numFiles"],
        "data_mb": round(detail["sizeInBytes"] / 1e6, 1),
        "commits": version(spark, lake.settings, tables.EVENTS) + 1,
        "checkpoints": sum(entry.name.endswith(".checkpoint.parquet") for entry in log),
        "log_mb": round(sum(entry.stat().st_size for entry in log) / 1e6, 1),
    }


def day_totals(spark: SparkSession, lake: Lake, day: date) -> tuple[int, int]:
    """`daily_event_stats` of `day`: events and the sum of unique users over its rows."""
    stats = read(spark, lake.settings, tables.DAILY_EVENT_STATS).where(F.col("event_date") == day)
    row = stats.agg(F.sum("events").alias("events"), F.sum("unique_users").alias("users")).first()
    return row["events"] or 0, row["users"] or 0


def reconcile(spark: SparkSession, small: Lake, large: Lake, day: date, events_per_day: int) -> None:
    """The measured day must come out the same in both lakes, with every one of its events."""
    totals = {lake.name: day_totals(spark, lake, day) for lake in (small, large)}
    if len(set(totals.values())) != 1 or totals[small.name][0] != events_per_day:
        raise BenchmarkError(f"{day}: (events, unique users) {totals}; expected {events_per_day:,} events in both")


def measure(spark: SparkSession, args: argparse.Namespace, small: Lake, large: Lake) -> dict[str, list[float]]:
    """Timed runs: all days of the small lake, then one day alternately in each lake (so that load on the machine
    hits both alike), with the planning step timed on its own."""
    day = small.days[-1]
    timings: dict[str, list[float]] = {name: [] for name in figure_names(small, large)}
    for _ in range(args.repeat_all):
        timings[f"{small.name}: {len(small.days)} days"].append(timed_aggregate(spark, small, small.days))
        print(f"{small.name}, all days: {timings[f'{small.name}: {len(small.days)} days'][-1]:.1f} s", flush=True)
    for lake in (small, large):  # untimed warm-up: JIT, and the day's gold partitions exist in both
        timed_aggregate(spark, lake, [day])
    for run in range(1, args.repeat + 1):
        for lake in (small, large):
            timings[f"{lake.name}: 1 day"].append(timed_aggregate(spark, lake, [day]))
            timings[f"{lake.name}: 1 day{PLANNING}"].append(planning(spark, lake, day))
        done = ", ".join(f"{name} {t[-1]:.1f} s" for name, t in timings.items() if ": 1 day" in name)
        print(f"run {run}: {done}", flush=True)
    reconcile(spark, small, large, day, args.events_per_day)
    return timings


def figure_names(small: Lake, large: Lake) -> list[str]:
    """The measurements, in table order."""
    names = [f"{small.name}: {len(small.days)} days"]
    return names + [f"{lake.name}: 1 day{part}" for part in ("", PLANNING) for lake in (small, large)]


def figures(timings: dict[str, list[float]], events: dict[str, int]) -> dict[str, dict]:
    """Per measurement: its seconds, the median, and events aggregated per second at the median."""
    result = {}
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        result[name] = {
            "events": events[name],
            "seconds": [round(s, 3) for s in seconds],
            "median_seconds": round(median, 3),
            "events_per_s": None if name.endswith(PLANNING) else round(events[name] / median),
        }
    return result


def table(results: dict[str, dict]) -> str:
    rows = [f"{'':42} {'events':>12} {'seconds':>20} {'events/s':>11}"]
    for name, f in results.items():
        rate = f"{f['events_per_s']:,}" if f["events_per_s"] else ""
        rows.append(f"{name:42} {f['events']:>12,} {spread(f['seconds']):>20} {rate:>11}")
    return "\n".join(rows)


def lake_lines(facts: dict[str, dict]) -> list[str]:
    return [
        f"{name}: {f['events']:,} events, {f['files']:,} files, {f['data_mb']:,} MB; Delta log {f['commits']} commits, "
        f"{f['checkpoints']} checkpoint(s), {f['log_mb']} MB"
        for name, f in facts.items()
    ]


def verdict(results: dict[str, dict], small: Lake, large: Lake) -> tuple[float, bool, str]:
    """The one-day ratio large / small, whether it is flat within FLAT, and a sentence saying so."""
    ratio = results[f"{large.name}: 1 day"]["median_seconds"] / results[f"{small.name}: 1 day"]["median_seconds"]
    flat = abs(ratio - 1) <= FLAT
    target = f"target {1 - FLAT:.2f}–{1 + FLAT:.2f}: {'flat' if flat else 'NOT flat'}"
    return ratio, flat, f"one day, {large.name} / {small.name}: {ratio:.2f} ({target})"


def growth(results: dict[str, dict], facts: dict[str, dict], small: Lake, large: Lake) -> str:
    """How much longer planning takes per extra file in the large lake's log: the part of a day's cost that does
    grow with the history."""
    extra = results[f"{large.name}: 1 day{PLANNING}"]["median_seconds"]
    extra -= results[f"{small.name}: 1 day{PLANNING}"]["median_seconds"]
    files = facts[large.name]["files"] - facts[small.name]["files"]
    return f"planning: {extra:+.2f} s for {files:,} more files in the log ({extra / files * 1e6:+.0f} µs per file)"


def benchmark(args: argparse.Namespace, out: Path) -> dict:
    """Builds (or reuses) both lakes, times the runs; prints and returns the figures."""
    small, large = lakes(args, out)
    print(f"{machine()} | Spark {MASTER} | {args.types} event types, {args.types * 24} files per day", flush=True)
    spark = spark_session(small.settings)
    build = built(spark, args, small, large)
    print("build: " + (", ".join(f"{step} {s:.1f} s" for step, s in build.items()) or "reused (--keep)"), flush=True)
    facts = {lake.name: log_facts(spark, lake) for lake in (small, large)}
    print("\n".join(lake_lines(facts)), flush=True)
    timings = measure(spark, args, small, large)
    day_events = {name: args.events_per_day for name in timings}
    day_events[f"{small.name}: {len(small.days)} days"] = args.events_per_day * len(small.days)
    results = figures(timings, day_events)
    ratio, flat, sentence = verdict(results, small, large)
    notes = [
        *lake_lines(facts),
        table(results),
        "(median, min–max over runs, each from a cold Delta log cache; planning only = finding the day's events "
        "files: the Delta log replay and partition pruning each run starts with)",
        sentence,
        growth(results, facts, small, large),
    ]
    print("\n".join(notes[len(facts) :]))
    one_day = f"{args.events_per_day:,} events"
    row = figure(f"aggregate one day ({one_day}), {large.name}", "s", timings[f"{large.name}: 1 day"],
                 f"the same day in the {small.name}", timings[f"{small.name}: 1 day"],
                 f"{1 - FLAT:.2f}–{1 + FLAT:.2f}× reference", flat, ratio)  # fmt: skip
    return {"benchmark": "aggregate", "cores": os.cpu_count(), "memory_gib": round(memory_gib(), 1),
            "master": MASTER, **build_key(args), "repeat": args.repeat, "repeat_all": args.repeat_all,
            "build_seconds": build, "lakes": facts, "results": results, "one_day_ratio": round(ratio, 3),
            "flat": flat, "figures": [row], "notes": notes}  # fmt: skip


def main() -> int:
    args = parsed_args()
    if errors := argument_errors(args):
        print("aggregate benchmark: " + "; ".join(errors), file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        result = benchmark(args, out)
    except BenchmarkError as exc:
        print(f"aggregate benchmark failed: {exc}\n(lakes kept in {out})", file=sys.stderr)
        return 1
    print(f"wall time: {time.perf_counter() - started:.0f} s")
    write_result(result, args.json)
    if not args.keep:
        for lake in lakes(args, out):
            shutil.rmtree(lake.root, ignore_errors=True)
        (out / "build.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
