"""`make bench`: runs every benchmark of benchmarks/ on generated data, each in its own process, and writes
benchmarks/RESULTS.md: the machine, the input sizes, and per figure the median (min–max) of its runs next to its
reference measured in the same run, its target and a verdict. Usage: .venv/bin/python benchmarks/suite.py
[--only NAME ...] [--results PATH] [size options]; every size option can also be set by an environment variable
BENCH_<OPTION> (e.g. BENCH_QUESTION_EVENTS=100000000). Exits 1 when a benchmark failed to run; a missed target is a
result, not a failure."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from common import OUT, REPO, machine_facts, spread

RESULTS = REPO / "benchmarks" / "RESULTS.md"
FULL_SIZE = {"question-events": 100_000_000, "memory-events": 10_000_000}
# Defaults for a 2-core machine: the suite takes ~20 min (ingest 8, freshness 4.5; see RESULTS.md). Every ingest run
# pays a per-file cost that does not shrink with the batch (~7.5k type x hour files a day).
SIZES = {
    "ingest-events": (100_000, "lines per ingest batch: throughput, GX validation share, memory (smaller batch)"),
    "memory-events": (300_000, "lines of the larger batch for the memory figure (target size 10000000)"),
    "freshness-events": (100_000, "lines per drop landed for the freshness figure"),
    "question-events": (3_000_000, "events of history for the BI question (target size 100000000)"),
    "question-types": (3, "event types of that history (each a file per hour and day)"),
    "question-users": (1_000_000, "distinct users of that history"),
    "aggregate-events-per-day": (100_000, "events per day in the aggregate-cost lakes"),
    "aggregate-types": (3, "event types of those lakes"),
    "serve-events": (50_000, "events of the Trino vs DuckDB serving lake"),
    "serve-days": (3, "days those events spread over"),
    "repeat": (3, "timed runs of each measurement (at least 3)"),
}


@dataclass(frozen=True)
class Benchmark:
    """One script of benchmarks/ and its arguments at the suite's sizes."""

    name: str
    arguments: Callable[[dict[str, int]], list[str]]
    what: str


BENCHMARKS = (
    Benchmark("ingest", lambda s: ["--events", s["ingest-events"], "--memory-events", s["memory-events"],
                                   "--repeat", s["repeat"]],
              "ingest throughput vs DuckDB; GX validation share; peak memory at two batch sizes"),
    Benchmark("freshness", lambda s: ["--events", s["freshness-events"], "--repeat", s["repeat"]],
              "landed → queryable through Trino"),
    Benchmark("question", lambda s: ["--events", s["question-events"], "--types", s["question-types"],
                                     "--users", s["question-users"], "--repeat", max(s["repeat"], 5)],
              "typical BI question: Trino on the aggregates vs on events"),
    Benchmark("aggregate", lambda s: ["--events-per-day", s["aggregate-events-per-day"],
                                      "--types", s["aggregate-types"], "--repeat", s["repeat"]],
              "aggregate one day at 10 vs 100 days of history"),
    Benchmark("serve", lambda s: ["--events", s["serve-events"], "--days", s["serve-days"],
                                  "--repeat", max(s["repeat"], 10)],
              "Trino vs DuckDB on the bi views"),
)  # fmt: skip


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    names = [b.name for b in BENCHMARKS]
    parser.add_argument("--only", nargs="+", choices=names, default=names, help="run only these benchmarks")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"where to write (default {RESULTS})")
    parser.add_argument("--keep", action="store_true", help="keep each benchmark's work folder under benchmarks/out/")
    for option, (default, help_text) in SIZES.items():
        variable = "BENCH_" + option.upper().replace("-", "_")
        parser.add_argument(f"--{option}", type=int, default=int(os.environ.get(variable, default)),
                            help=f"{help_text} (default {default}; env {variable})")  # fmt: skip
    args = parser.parse_args()
    if args.repeat < 3 or min(getattr(args, o.replace("-", "_")) for o in SIZES) < 1:
        parser.error("sizes must be at least 1, --repeat at least 3")
    return args


def run(benchmark: Benchmark, sizes: dict[str, int], out: Path, keep: bool) -> dict:
    """Runs one benchmark script, its output shown as it goes and kept in out/<name>.log; its result with the
    suite's own record of the run (arguments, seconds, load, error)."""
    result_file, log_file = out / f"{benchmark.name}.json", out / f"{benchmark.name}.log"
    result_file.unlink(missing_ok=True)
    arguments = [str(value) for value in benchmark.arguments(sizes)]
    script = REPO / "benchmarks" / f"{benchmark.name}.py"
    command = [sys.executable, str(script), *arguments, "--json", str(result_file), *(["--keep"] if keep else [])]
    load, started = os.getloadavg()[0], time.perf_counter()
    print(f"== {benchmark.name}: {' '.join(arguments)} (load {load:.1f})", flush=True)
    with open(log_file, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            print(line, end="", flush=True)
            log.write(line)
        process.wait()
    record = {"name": benchmark.name, "what": benchmark.what, "arguments": arguments, "load_at_start": round(load, 2),
              "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    if process.returncode != 0 or not result_file.exists():
        tail = log_file.read_text().strip().splitlines()[-3:]
        return record | {"error": f"exited {process.returncode}: " + " / ".join(tail)}
    return record | {"result": json.loads(result_file.read_text())}


def verdict(passed: bool | None) -> str:
    return "—" if passed is None else "pass" if passed else "**FAIL**"


def figure_rows(runs: list[dict]) -> list[str]:
    """The figures table: one row per figure of every benchmark that ran, one per benchmark that failed."""
    rows = [
        "| figure | unit | measured: median (min–max) | reference, same run | reference: median (min–max) | ratio | "
        "target | verdict |",
        "|---|---|--:|---|--:|--:|---|---|",
    ]
    for record in runs:
        if "error" in record:
            rows.append(f"| {record['name']}: {record['what']} | | | | | | | **ERROR** (see below) |")
            continue
        for f in record["result"]["figures"]:
            ratio = "" if f["ratio"] is None else f"{f['ratio']:.3g}×"
            measured, reference = spread(f["runs"]), spread(f["reference_runs"])
            rows.append(f"| {f['name']} | {f['unit']} | {measured} | {f['reference']} | {reference} | {ratio} | "
                        f"{f['target']} | {verdict(f['passed'])} |")  # fmt: skip
    return rows


def sizes_rows(runs: list[dict]) -> list[str]:
    """One row per benchmark run: what it measures, its arguments (the input sizes), load and duration."""
    rows = []
    for r in runs:
        arguments = " ".join(r["arguments"])
        rows.append(
            f"| {r['name']} | {r['what']} | `{arguments}` | {r['load_at_start']:.1f} | {r['seconds'] / 60:.1f} |"
        )
    return rows


def render(runs: list[dict], machine: dict, finished: datetime, commit: str, seconds: float) -> str:
    """RESULTS.md for the benchmark runs `runs` of one suite run."""
    start_load = "/".join(f"{load:.1f}" for load in machine["load"])
    failed = list(dict.fromkeys(f["name"] for r in runs if "result" in r for f in r["result"]["figures"]
                                if f["passed"] is False))  # fmt: skip
    errors = [r for r in runs if "error" in r]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (benchmarks/suite.py) at {finished:%Y-%m-%d %H:%M} UTC on commit {commit}; the "
        f"whole suite took {seconds / 60:.1f} min. Every benchmark reconciles its counts with its input before it "
        "reports a time; each figure is the median (min–max) of its runs, next to its reference measured in the "
        "same benchmark run. Rerun with `make bench`; sizes in `benchmarks/suite.py --help`.",
        "",
        "## Machine",
        f"{machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB memory "
        f"({machine['available_gib']} GiB available at the start); load average (1/5/15 min) {start_load} at the "
        "start. The machine is shared: the load at the start of each benchmark is in the table below.",
        "",
        "## Benchmarks and input sizes",
        "| benchmark | what | arguments | load at start | minutes |",
        "|---|---|---|--:|--:|",
        *sizes_rows(runs),
        "",
        "## Figures",
        *figure_rows(runs),
        "",
        f"Targets missed: {', '.join(failed) if failed else 'none'}."
        + (f" Benchmarks that failed to run: {', '.join(r['name'] for r in errors)}." if errors else ""),
        "",
        "## Full sizes",
        "The sizes the targets are stated for (they take much longer on 2 cores):",
        "```sh",
        'make bench BENCH_ARGS="--only question --question-events 100000000 --question-types 20 \\',
        '                       --results benchmarks/RESULTS-100M.md"  # the BI question over 100M events',
        'make bench BENCH_ARGS="--only ingest --ingest-events 1000000 --memory-events 10000000 \\',
        '                       --results benchmarks/RESULTS-10M.md"   # ingest memory at 1M vs 10M events',
        "```",
        "",
        "## Details",
    ]
    for record in runs:
        lines += ["", f"### {record['name']}"]
        if "error" in record:
            lines.append(f"Failed: {record['error']}")
        else:
            lines += ["```text", *record["result"]["notes"], "```"]
    return "\n".join(lines) + "\n"


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main() -> int:
    args = parsed_args()
    sizes = {option: getattr(args, option.replace("-", "_")) for option in SIZES}
    out = OUT / "suite"
    out.mkdir(parents=True, exist_ok=True)
    machine, started = machine_facts(), time.perf_counter()
    runs = [run(b, sizes, out, args.keep) for b in BENCHMARKS if b.name in args.only]
    text = render(runs, machine, datetime.now(UTC), commit(), time.perf_counter() - started)
    args.results.write_text(text)
    print(f"wrote {args.results} in {(time.perf_counter() - started) / 60:.1f} min")
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
