"""Ingest: the real `lakehouse ingest` (JVM start, validation, dedup, GX checks and Delta commits included) against
the plain Spark job on the same files (benchmarks/plain_spark.py: same session builder and layout, none of the
contract; the target), and DuckDB writing the same partitioned layout (and one Parquet file, for scale); the GX
checks of the batch (ingest runs both suites over the rows it holds, `check_seconds`) as a share of the ingest, and
the gate after it (`lakehouse validate events`, which takes those checks over); the peak memory of the ingest's
process tree (PSS of driver and JVM) at two batch sizes; the cost of the dedup window (a day's batch into a lake of
14 earlier days, `ingest.dedup_window_days` 7 against 0).
Usage: .venv/bin/python benchmarks/ingest.py [--events N] [--memory-events M] [--days D] [--repeat R] [--work DIR]
[--keep] [--json PATH]; prints a table, then all figures as one JSON line."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
from common import (
    BenchmarkError,
    add_output_arguments,
    figure,
    lake_env,
    lakehouse,
    link_or_copy,
    machine,
    median,
    memory_gib,
    plain_spark,
    reconciliation_errors,
    run_in_work_folder,
    spread,
)

from lakehouse.generate import GenerateSummary, generate

START = date(2024, 3, 1)
MB = 1_000_000
MIB = 1024**2
MAX_VALIDATION_SHARE = 0.25  # GX validation of a batch may take a quarter of its ingest time
MAX_MEMORY_GROWTH = 1.25  # peak memory at the larger batch: at most 25% above the smaller one
INGEST, BATCH, VALIDATE = "lakehouse ingest (wall)", "lakehouse ingest (batch seconds)", "validate events (wall)"
CHECKS = "GX checks in ingest (check seconds)"
MEMORY = "memory"
REFERENCE, PARTITIONED = "DuckDB -> 1 Parquet file", "DuckDB -> Parquet, partitioned"
PLAIN = "plain Spark job (wall)"
MAX_IDLE_SECONDS = 3  # a command with nothing to do (issue 24)
MIN_SHARE_OF_PLAIN = 1.0  # ingest must be at least as fast as the plain Spark job (issue 24)
# The dedup window's measurement: the days of events already in the lake, and the windows compared.
HISTORY_DAYS, WINDOW, NO_WINDOW = 14, 7, 0
# The `events` columns DuckDB can derive without the contract's checks, so that both write comparable rows.
EVENT_COLUMNS_SQL = """
    data->>'$.id' AS event_id,
    data->>'$.type' AS event_type,
    make_timestamp_ms(TRY_CAST(meta->>'$.created_at' AS BIGINT)) AS event_ts,
    event_ts::DATE AS event_date,
    hour(event_ts) AS event_hour,
    coalesce(data->>'$.attributes.user_id', meta->>'$.user_id') AS user_id,
    coalesce(data->>'$.attributes.country', meta->>'$.country') AS country,
    meta->>'$.service' AS service,
    (data->'$.attributes')::VARCHAR AS attributes,
    meta::VARCHAR AS meta,
    filename AS source_file
"""


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--events", type=int, default=2_000_000, help="lines to generate (default 2000000)")
    add("--memory-events", type=int, default=0, help="a second, larger batch for the memory figure (0: none)")
    add("--days", type=int, default=1, help="days of events (default 1)")
    add("--repeat", type=int, default=3, help="runs per batch size, each on a fresh lake (default 3)")
    add("--work", type=Path, help="work folder, kept (default: a temp folder under benchmarks/out/)")
    add_output_arguments(parser, "keep the default temp work folder")
    args = parser.parse_args()
    if min(args.events, args.days, args.repeat) < 1 or 0 < args.memory_events <= args.events:
        parser.error("--events, --days and --repeat must be at least 1; --memory-events 0 or above --events")
    return args


def generated(input_dir: Path, events: int, days: int) -> tuple[GenerateSummary, float]:
    """The generator's summary and its seconds."""
    started = time.perf_counter()
    try:
        summary = generate(input_dir, events, days=days, start=START, bad_rate=0.01, dup_rate=0.02, seed=7)
    except (ValueError, FileExistsError) as exc:
        raise BenchmarkError(str(exc)) from None
    return summary, time.perf_counter() - started


def input_bytes(files: list[str]) -> int:
    return sum(Path(f).stat().st_size for f in files)


def land(input_dir: Path, lake: Path) -> None:
    """Hard links to (or copies of) the input files in the landing folder of `lake`."""
    for source in sorted(input_dir.rglob("*")):
        if source.is_file():
            target = lake / "landing" / source.relative_to(input_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(source, target)


def duckdb_run(input_dir: Path, target: Path, cores: int, partitioned: bool) -> tuple[float, int]:
    """Seconds for DuckDB to write the input's lines as `events`-like Parquet (one file, or partitioned like
    `events`), and the rows it wrote. DuckDB only skips unparseable lines: no validation, no dedup."""
    con = duckdb.connect()
    con.execute(f"SET threads = {cores}")
    con.execute("SET enable_progress_bar = false")
    source = (
        f"read_json('{input_dir}/**/*.jsonl', format='newline_delimited', ignore_errors=true, "
        "columns={'data': 'JSON', 'meta': 'JSON'}, filename=true)"
    )
    options = "FORMAT parquet, PARTITION_BY (event_type, event_date, event_hour)" if partitioned else "FORMAT parquet"
    started = time.perf_counter()
    con.execute(f"COPY (SELECT {EVENT_COLUMNS_SQL} FROM {source}) TO '{target}' ({options})")
    seconds = time.perf_counter() - started
    written = f"'{target}/**/*.parquet', hive_partitioning = true" if partitioned else f"'{target}'"
    rows = con.sql(f"SELECT count(*) FROM read_parquet({written})").fetchall()[0][0]
    con.close()
    return seconds, rows


def ingest_run(work: Path, input_dir: Path, expected: GenerateSummary, validate: bool) -> dict[str, float]:
    """One run on a fresh lake: `lakehouse ingest` (its process tree's memory sampled), reconciled with the
    generator, then `lakehouse validate events` over the same batch, reconciled with the ingest."""
    shutil.rmtree(work / "lake", ignore_errors=True)
    land(input_dir, work / "lake")
    env = lake_env(work)
    ran = lakehouse(env, "ingest", sample_memory=True)
    summaries = ran.json_lines()
    if errors := reconciliation_errors(summaries, expected):
        raise BenchmarkError("ingest summary does not reconcile:\n  " + "\n  ".join(errors))
    seconds = {INGEST: ran.seconds, BATCH: sum(s["seconds"] for s in summaries), MEMORY: ran.peak_memory_mib}
    if validate:
        if any(set(s["checks"].values()) != {"passed"} for s in summaries):
            raise BenchmarkError(f"ingest's GX checks did not all pass: {[s['checks'] for s in summaries]}")
        checked = lakehouse(env, "validate", "events")
        [result] = checked.json_lines()
        if result["rows"] != expected.valid:
            raise BenchmarkError(f"validate events checked {result['rows']} rows, the batch holds {expected.valid}")
        seconds[CHECKS] = sum(s["check_seconds"] for s in summaries)
        seconds[VALIDATE] = checked.seconds
    return seconds


def size_runs(work: Path, events: int, args: argparse.Namespace, validate: bool) -> dict:
    """Generates `events` lines once, then per repeat ingests (and validates) a fresh lake and runs DuckDB on the
    same files; the runs of every measurement, with the input's size."""
    cores, input_dir = os.cpu_count() or 1, work / f"input-{events}"
    expected, generate_seconds = generated(input_dir, events, args.days)
    mb = input_bytes(expected.files) / MB
    print(f"{machine()} | events {events:,}, {len(expected.files)} files, {mb:.1f} MB | generate: "
          f"{generate_seconds:.1f} s, {events / generate_seconds:,.0f} events/s (1 thread)", flush=True)  # fmt: skip
    runs: dict[str, list[float]] = {INGEST: [], BATCH: [], MEMORY: [], PLAIN: [], REFERENCE: [], PARTITIONED: []}
    runs |= {CHECKS: [], VALIDATE: []} if validate else {}
    duckdb_rows = plain_rows = 0
    for run in range(1, args.repeat + 1):
        for name, value in ingest_run(work, input_dir, expected, validate).items():
            runs[name].append(value)
        shutil.rmtree(work / "plain", ignore_errors=True)
        ran, plain_rows = plain_spark(lake_env(work / "plain"), input_dir, work / "plain" / "lake" / "events")
        runs[PLAIN].append(ran.seconds)
        for name, partitioned in ((REFERENCE, False), (PARTITIONED, True)):
            target = work / "duckdb" / ("events" if partitioned else "events.parquet")
            shutil.rmtree(target.parent, ignore_errors=True)
            target.parent.mkdir(parents=True)
            seconds, duckdb_rows = duckdb_run(input_dir, target, cores, partitioned)
            runs[name].append(seconds)
        done = ", ".join(f"{name} {values[-1]:.1f} {'MiB' if name == MEMORY else 's'}" for name, values in runs.items())
        print(f"run {run}: {done}", flush=True)
    # Both references keep every line they can parse: all valid ones and their duplicates, and some of the
    # quarantined.
    for name, rows in (("DuckDB", duckdb_rows), ("the plain Spark job", plain_rows)):
        if not expected.valid + expected.duplicates <= rows <= expected.lines:
            raise BenchmarkError(f"{name} wrote {rows:,} rows from {expected.lines:,} lines, of which "
                                 f"{expected.valid + expected.duplicates:,} parse")  # fmt: skip
    shutil.rmtree(input_dir)
    return {"events": events, "files": len(expected.files), "input_mb": round(mb, 1), "valid": expected.valid,
            "generate_seconds": round(generate_seconds, 3), "duckdb_rows": duckdb_rows, "plain_rows": plain_rows,
            "runs": runs}  # fmt: skip


def dedup_window_runs(work: Path, events: int, repeat: int) -> dict[int, list[float]]:
    """A day's batch of `events` ingested into a lake already holding HISTORY_DAYS days before it (as many events
    again), with the dedup window at WINDOW days and at NO_WINDOW (the batch's own dates only), in turns on copies of
    the same lake: the batch's own seconds per window. Every run must find the day's events all new."""
    history, day, base = work / "dedup-history", work / "dedup-day", work / "dedup-base"
    generate(history, events, days=HISTORY_DAYS, start=START, seed=11)
    expected = generate(day, events, days=1, start=START + timedelta(days=HISTORY_DAYS), dup_rate=0.02, seed=12)
    land(history, base / "lake")
    lakehouse(lake_env(base), "ingest")
    runs: dict[int, list[float]] = {WINDOW: [], NO_WINDOW: []}
    for _ in range(repeat):
        for window in runs:
            run = work / "dedup-run"
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(base / "lake", run / "lake")
            land(day, run / "lake")
            env = lake_env(run) | {"LAKEHOUSE__INGEST__DEDUP_WINDOW_DAYS": str(window)}
            summaries = lakehouse(env, "ingest").json_lines()
            if errors := reconciliation_errors(summaries, expected):
                raise BenchmarkError(f"window {window}: the day's batch does not reconcile:\n  " + "\n  ".join(errors))
            runs[window].append(sum(s["seconds"] for s in summaries))
    print(f"dedup window: {WINDOW} days {spread(runs[WINDOW])} s, {NO_WINDOW} days {spread(runs[NO_WINDOW])} s "
          f"(batch seconds, {events:,} events into {HISTORY_DAYS} days of {events:,})", flush=True)  # fmt: skip
    for folder in (history, day, base, work / "dedup-run"):
        shutil.rmtree(folder, ignore_errors=True)
    return runs


def startup_runs(work: Path, repeat: int) -> dict[str, list[float]]:
    """`lakehouse ingest` with nothing landed, `repeat` times: what every command pays before any work (Python and
    JVM start, Spark session, Delta), in seconds and peak memory."""
    (work / "empty" / "lake" / "landing").mkdir(parents=True, exist_ok=True)
    env, runs = lake_env(work / "empty"), {"seconds": [], MEMORY: []}
    for _ in range(repeat):
        ran = lakehouse(env, "ingest", sample_memory=True)
        if [s["lines_read"] for s in ran.json_lines()] != [0]:
            raise BenchmarkError(f"`lakehouse ingest` of an empty landing folder printed {ran.stdout.strip()}")
        runs["seconds"].append(ran.seconds)
        runs[MEMORY].append(ran.peak_memory_mib)
    print(f"nothing to ingest: {spread(runs['seconds'])} s, peak PSS {spread(runs[MEMORY])} MiB", flush=True)
    return runs


def rates(size: dict, name: str, cores: int) -> tuple[list[float], list[float]]:
    """Events/s and MB/s per core of each run of measurement `name`."""
    seconds = size["runs"][name]
    return [size["events"] / s / cores for s in seconds], [size["input_mb"] / s / cores for s in seconds]


def figures(sizes: list[dict], cores: int, dedup: dict[int, list[float]]) -> list[dict]:
    """The RESULTS.md rows: throughput at each size, validation share, the dedup window's cost, memory growth from
    the first size to the second."""
    rows = []
    for size in sizes:
        ingest_events, ingest_mb = rates(size, INGEST, cores)
        plain_events, plain_mb = rates(size, PLAIN, cores)
        ratio = median(ingest_events) / median(plain_events)
        passed = ratio >= MIN_SHARE_OF_PLAIN
        target = f"≥ {MIN_SHARE_OF_PLAIN}× reference"
        reference = f"plain Spark job, same files and layout ({size['events']:,} lines, cold)"
        label = f"ingest throughput, {size['events']:,} events, one-shot cold"
        rows.append(figure(label, "events/s per core", ingest_events, reference, plain_events, target, passed, ratio))
        rows.append(figure(label, "MB/s per core", ingest_mb, reference, plain_mb, target, passed, ratio))
        duck_events, _ = rates(size, PARTITIONED, cores)
        rows.append(
            figure(
                label,
                "events/s per core",
                ingest_events,
                "DuckDB, same files and partitioned layout",
                duck_events,
                "reported (no target)",
                None,
                median(ingest_events) / median(duck_events),
            )
        )
    first = sizes[0]
    share = median(first["runs"][CHECKS]) / median(first["runs"][INGEST])
    rows.append(figure(f"GX validation of a {first['events']:,}-event batch (both suites, inside ingest)", "s",
                       first["runs"][CHECKS], "`lakehouse ingest` of the same batch", first["runs"][INGEST],
                       f"≤ {MAX_VALIDATION_SHARE:.0%} of reference", share <= MAX_VALIDATION_SHARE, share))  # fmt: skip
    if dedup:
        cost = median(dedup[WINDOW]) / median(dedup[NO_WINDOW])
        rows.append(figure(f"dedup window {WINDOW} days, a {first['events']:,}-event day into {HISTORY_DAYS} days",
                           "s (batch)", dedup[WINDOW], f"the same batch, window {NO_WINDOW} (its own dates)",
                           dedup[NO_WINDOW], "reported (no target)", None, cost))  # fmt: skip
    if len(sizes) > 1:
        growth = median(sizes[1]["runs"][MEMORY]) / median(first["runs"][MEMORY])
        rows.append(figure(f"ingest peak memory (PSS: driver + JVM), {sizes[1]['events']:,} events", "MiB",
                           sizes[1]["runs"][MEMORY], f"the same at {first['events']:,} events", first["runs"][MEMORY],
                           f"≤ {MAX_MEMORY_GROWTH}× reference", growth <= MAX_MEMORY_GROWTH, growth))  # fmt: skip
    return rows


def idle_figure(startup: dict[str, list[float]], size: dict) -> dict:
    """`lakehouse ingest` with nothing to ingest, next to the plain Spark job's wall time (what starting Spark for
    it would cost at least)."""
    seconds, plain = startup["seconds"], size["runs"][PLAIN]
    return figure("`lakehouse ingest` with nothing to ingest (an empty landing folder)", "s", seconds,
                  f"the plain Spark job's wall time ({size['events']:,} events)", plain, f"≤ {MAX_IDLE_SECONDS} s",
                  median(seconds) <= MAX_IDLE_SECONDS, median(plain) / median(seconds))  # fmt: skip


def table(sizes: list[dict], cores: int) -> list[str]:
    """Per size and measurement: seconds (or MiB), events/s and MB/s per core."""
    lines = [f"{'':46} {'seconds':>22} {'events/s/core':>14} {'MB/s/core':>10}"]
    for size in sizes:
        for name, values in size["runs"].items():
            label = f"{size['events']:,} events: {name}"
            if name == MEMORY:
                lines.append(f"{label + ' peak PSS (MiB)':46} {spread(values):>22}")
                continue
            events, mb = (median(r) for r in rates(size, name, cores))
            lines.append(f"{label:46} {spread(values):>22} {events:>14,.0f} {mb:>10.2f}")
    return lines


def benchmark(args: argparse.Namespace, work: Path) -> dict:
    """Every batch size's runs; prints and returns the figures."""
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    startup = startup_runs(work, args.repeat)
    sizes = [size_runs(work, args.events, args, validate=True)]
    dedup = dedup_window_runs(work, args.events, args.repeat)
    if args.memory_events:
        sizes.append(size_runs(work, args.memory_events, args, validate=False))
    notes = table(sizes, cores) + [
        f"nothing to ingest (an empty landing folder): {spread(startup['seconds'])} s, peak PSS "
        f"{spread(startup[MEMORY])} MiB: what every command pays before any work",
        "(median, min–max over runs; MB = 10^6 bytes of input on disk; wall = the command, JVM start included; batch "
        "seconds = ingest's own timing of its batches; PSS = peak summed proportional set size of the command's "
        "process tree (driver, JVM, the JVM's Python workers), sampled every 0.5 s)",
    ]
    print("\n".join(notes))
    return {"benchmark": "ingest", "cores": cores, "memory_gib": round(memory_gib(), 1), "load_1min": round(load, 1),
            "days": args.days, "repeat": args.repeat, "startup": startup, "sizes": sizes,
            "dedup_window": dedup, "figures": [*figures(sizes, cores, dedup), idle_figure(startup, sizes[0])],
            "notes": notes}  # fmt: skip


def main() -> int:
    args = parsed_args()
    return run_in_work_folder("ingest", benchmark, args, args.work)


if __name__ == "__main__":
    sys.exit(main())
