"""Ingest throughput: the real `lakehouse ingest` CLI (JVM start included) against DuckDB turning the same JSON-lines
files into Parquet, on one generated input. Usage: .venv/bin/python benchmarks/ingest.py [--events N] [--days D]
[--repeat R] [--work DIR] [--keep]; prints a table, then all figures as one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

import duckdb
from common import link_or_copy, memory_gib, spread

from lakehouse.generate import GenerateSummary, generate

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
START = date(2024, 3, 1)
MB = 1_000_000
REFERENCE = "DuckDB -> 1 Parquet file"
SUMMARY_FIELDS = ("lines_read", "valid", "quarantined", "duplicates")
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


class BenchmarkError(Exception):
    """A run that failed or did not reconcile: the benchmark's figures would mean nothing."""


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="lines to generate (default 2000000)")
    parser.add_argument("--days", type=int, default=1, help="days of events (default 1)")
    parser.add_argument("--repeat", type=int, default=1, help="ingest runs, each on a fresh lake (default 1)")
    parser.add_argument("--work", type=Path, help="work folder, kept (default: a temp folder under benchmarks/out/)")
    parser.add_argument("--keep", action="store_true", help="keep the default temp work folder")
    return parser.parse_args()


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


def landed_lake(input_dir: Path, lake: Path) -> Path:
    """A fresh lake whose landing folder holds hard links to (or copies of) the input files."""
    for source in sorted(input_dir.rglob("*")):
        if source.is_file():
            target = lake / "landing" / source.relative_to(input_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(source, target)
    return lake


def ingest_summaries(lake: Path, log_file: Path) -> tuple[list[dict], float]:
    """The JSON summaries `lakehouse ingest` printed for `lake`, and the command's wall-clock seconds."""
    env = {
        **os.environ,
        "LAKEHOUSE__LAKE__ROOT": str(lake),
        "LAKEHOUSE__SPARK__IVY_CACHE": str(REPO / ".cache" / "ivy"),
        # One Spark log per run, next to its lake, rather than appended to the repository's state/logs/.
        "LAKEHOUSE__SPARK__LOG_FILE": str(log_file),
    }
    command = [str(VENV_BIN / "lakehouse"), "ingest", "--conf", "conf/local.yaml"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchmarkError(
            f"`{' '.join(command)}` exited {done.returncode}:\n{done.stderr.strip()}\n(Spark log: {log_file})"
        )
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if not summaries:
        raise BenchmarkError(f"`lakehouse ingest` printed no JSON summary; stdout was:\n{done.stdout}")
    return summaries, seconds


def reconciliation_errors(summaries: list[dict], expected: GenerateSummary) -> list[str]:
    """Every way the ingest summaries disagree with themselves or with what the generator wrote."""
    errors = [
        f"batch {s['batch']}: lines_read {s['lines_read']} != valid + quarantined + duplicates "
        f"({s['valid']} + {s['quarantined']} + {s['duplicates']})"
        for s in summaries
        if s["lines_read"] != s["valid"] + s["quarantined"] + s["duplicates"]
    ]
    totals = {name: sum(s[name] for s in summaries) for name in SUMMARY_FIELDS}
    reasons = sum((Counter(s["reasons"]) for s in summaries), Counter())
    wanted = {
        "lines_read": expected.lines,
        "valid": expected.valid,
        "quarantined": sum(expected.bad.values()),
        "duplicates": expected.duplicates,
    }
    errors += [
        f"{name}: ingest says {totals[name]}, generator wrote {n}" for name, n in wanted.items() if totals[name] != n
    ]
    if dict(reasons) != expected.bad:
        wrong = sorted(r for r in reasons.keys() | expected.bad.keys() if reasons[r] != expected.bad.get(r, 0))
        errors += [f"reason {r}: ingest says {reasons[r]}, generator wrote {expected.bad.get(r, 0)}" for r in wrong]
    return errors


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


def rates(timings: dict[str, list[float]], events: int, mb: float, cores: int, reference: str) -> dict[str, dict]:
    """Per measurement: its seconds, their median and the throughput and ratio to `reference` at the median."""
    baseline = statistics.median(timings[reference])
    result = {}
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        result[name] = {
            "seconds": [round(s, 3) for s in seconds],
            "median_seconds": round(median, 3),
            "events_per_s": round(events / median),
            "events_per_s_per_core": round(events / median / cores),
            "mb_per_s_per_core": round(mb / median / cores, 3),
            "x_duckdb": round(median / baseline, 2),
        }
    return result


def table(figures: dict[str, dict]) -> str:
    header = f"{'':32} {'seconds':>20} {'events/s':>10} {'ev/s/core':>10} {'MB/s/core':>10} {'x DuckDB':>9}"
    rows = [header]
    for name, f in figures.items():
        rows.append(
            f"{name:32} {spread(f['seconds']):>20} {f['events_per_s']:>10,} {f['events_per_s_per_core']:>10,} "
            f"{f['mb_per_s_per_core']:>10.2f} {f['x_duckdb']:>9.2f}"
        )
    return "\n".join(rows)


def benchmark(args: argparse.Namespace, work: Path) -> dict:
    """Generates once, then per repeat ingests a fresh lake and runs DuckDB on the same files; prints and returns
    the figures."""
    cores, input_dir, load = os.cpu_count() or 1, work / "input", os.getloadavg()[0]
    expected, generate_seconds = generated(input_dir, args.events, args.days)
    mb = input_bytes(expected.files) / MB
    print(
        f"machine: {cores} cores, {memory_gib():.1f} GiB, load {load:.1f} | events {args.events:,}, "
        f"{len(expected.files)} files, {mb:.1f} MB | generate: {generate_seconds:.1f} s, "
        f"{args.events / generate_seconds:,.0f} events/s, {mb / generate_seconds:.1f} MB/s (1 thread)",
        flush=True,
    )
    timings: dict[str, list[float]] = {
        "lakehouse ingest (wall)": [],
        "lakehouse ingest (batch seconds)": [],
        REFERENCE: [],
        "DuckDB -> Parquet, partitioned": [],
    }
    duckdb_rows = 0
    for run in range(1, args.repeat + 1):
        lake = landed_lake(input_dir, work / f"lake-{run}")
        summaries, wall = ingest_summaries(lake, work / f"spark-{run}.log")
        if errors := reconciliation_errors(summaries, expected):
            raise BenchmarkError("ingest summary does not reconcile:\n  " + "\n  ".join(errors))
        timings["lakehouse ingest (wall)"].append(wall)
        timings["lakehouse ingest (batch seconds)"].append(sum(s["seconds"] for s in summaries))
        for name, partitioned in ((REFERENCE, False), ("DuckDB -> Parquet, partitioned", True)):
            target = work / f"duckdb-{run}" / ("events" if partitioned else "events.parquet")
            target.parent.mkdir(exist_ok=True)
            seconds, duckdb_rows = duckdb_run(input_dir, target, cores, partitioned)
            timings[name].append(seconds)
        print(f"run {run}: " + ", ".join(f"{name} {t[-1]:.1f} s" for name, t in timings.items()), flush=True)
    print(f"DuckDB read {mb:.1f} MB and wrote {duckdb_rows:,} rows (lines it could parse; no validation or dedup)")
    figures = rates(timings, args.events, mb, cores, reference=REFERENCE)
    print(table(figures))
    print(f"(median, min–max over runs; MB = 10^6 bytes of input on disk; x DuckDB = seconds / {REFERENCE!r} seconds)")
    return {
        "benchmark": "ingest",
        "cores": cores,
        "memory_gib": round(memory_gib(), 1),
        "events": args.events,
        "days": args.days,
        "repeat": args.repeat,
        "input_mb": round(mb, 1),
        "generate_seconds": round(generate_seconds, 3),
        "duckdb_rows": duckdb_rows,
        "load_1min": round(load, 1),
        "results": figures,
    }


def main() -> int:
    args = parsed_args()
    if min(args.events, args.days, args.repeat) < 1:
        print("ingest benchmark: --events, --days and --repeat must be at least 1", file=sys.stderr)
        return 2
    out = REPO / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="ingest-", dir=out))
    try:
        figures = benchmark(args, work.resolve())
    except BenchmarkError as exc:
        print(f"ingest benchmark failed: {exc}\n(work folder kept: {work})", file=sys.stderr)
        return 1
    print(json.dumps(figures))
    if not (args.work or args.keep):
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
