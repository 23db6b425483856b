"""Bad input at volume: the real `lakehouse ingest` of a million lines each breaking a contract rule, one line of
1 GiB, 10^5 tiny files and a gzip bomb, each on a fresh lake; per case its lines, seconds, lines/s and the peak RSS of
the Python driver and of its JVM, after checking the accounting against what the benchmark wrote.
Usage: .venv/bin/python benchmarks/faults_input.py [--rule-lines N] [--long-line-bytes B] [--files F] [--bomb-gib G]
[--only CASE ...] [--work DIR] [--keep] [--json PATH]; prints a table, then all figures as one JSON line."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import psutil
from common import REPO, VENV_BIN, BenchmarkError, add_output_arguments, lake_env, machine, run_in_work_folder

sys.path.insert(0, str(REPO))
from tests.faults.test_bad_input import DAY, MAX_LINE_BYTES, long_line, rule_file  # noqa: E402
from tests.lake import event_line  # noqa: E402

GIB = 1024**3
CASES = ("rules", "long_line", "files", "bomb")
SAMPLE_SECONDS = 0.5


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--rule-lines", type=int, default=1_000_000, help="lines of the rule file (default 1000000)")
    add("--long-line-bytes", type=int, default=GIB, help="bytes of the long line (default 1 GiB)")
    add("--files", type=int, default=100_000, help="tiny files (default 100000)")
    add("--bomb-gib", type=float, default=20.0, help="GiB the bomb expands to (default 20, over the 16 GiB limit)")
    add("--only", nargs="+", choices=CASES, default=list(CASES), help="run these cases only")
    add("--work", type=Path, help="work folder, kept (default: a temp folder under benchmarks/out/)")
    add_output_arguments(parser, "keep the default temp work folder")
    return parser.parse_args()


def ingest(env: dict[str, str]) -> tuple[list[dict], float, float, float]:
    """`lakehouse ingest` with `env`: its batch summaries, seconds, and the peak RSS (MiB) of the Python driver and of
    the rest of its process tree (the JVM, and any Python workers it starts), sampled every SAMPLE_SECONDS."""
    started = time.perf_counter()
    process = subprocess.Popen([str(VENV_BIN / "lakehouse"), "ingest"], cwd=REPO, env={**os.environ, **env},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    peaks, done = [0, 0], threading.Event()

    def sample() -> None:
        root = psutil.Process(process.pid)
        while not done.wait(SAMPLE_SECONDS):
            try:
                children = sum(child.memory_info().rss for child in root.children(recursive=True))
                peaks[:] = [max(peaks[0], root.memory_info().rss), max(peaks[1], children)]
            except psutil.Error:
                pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise BenchmarkError(f"`lakehouse ingest` exited {process.returncode}: {stderr.strip()[-2000:]}")
    summaries = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return summaries, time.perf_counter() - started, peaks[0] / 1024**2, peaks[1] / 1024**2


def check(summaries: list[dict], lines: int, valid: int, duplicates: int, reasons: dict[str, int]) -> None:
    """Raises unless the batches add up (lines read = valid + quarantined + duplicates) to what was written."""
    totals = Counter()
    for summary in summaries:
        if summary["lines_read"] != summary["valid"] + summary["quarantined"] + summary["duplicates"]:
            raise BenchmarkError(f"batch {summary['batch']} does not add up: {summary}")
        totals.update({key: summary[key] for key in ("lines_read", "valid", "duplicates")})
        totals.update({f"reason {key}": n for key, n in summary["reasons"].items()})
    wanted = Counter({"lines_read": lines, "valid": valid, "duplicates": duplicates})
    wanted.update({f"reason {key}": n for key, n in reasons.items()})
    if +totals != +wanted:
        raise BenchmarkError(f"ingest says {dict(totals)}, the benchmark wrote {dict(wanted)}")


def rules_case(landing: Path, args: argparse.Namespace) -> tuple[dict[str, str], tuple]:
    expected = Counter(rule_file(landing / "rules.jsonl.gz", args.rule_lines).values())
    reasons = {r: n for r, n in expected.items() if r not in ("valid", "duplicate", "blank")}
    lines = args.rule_lines - expected["blank"]
    return {"MAX_LINE_BYTES": str(MAX_LINE_BYTES)}, (lines, expected["valid"], expected["duplicate"], reasons)


def long_line_case(landing: Path, args: argparse.Namespace) -> tuple[dict[str, str], tuple]:
    with open(landing / "long.jsonl", "wb") as out:
        out.write(event_line("before", DAY).encode() + b"\n")
        out.write(long_line(args.long_line_bytes) + b"\n")
        out.write(event_line("after", DAY).encode() + b"\n")
    return {"MAX_LINE_BYTES": str(MAX_LINE_BYTES)}, (3, 2, 0, {"too_large": 1})


def files_case(landing: Path, args: argparse.Namespace) -> tuple[dict[str, str], tuple]:
    for number in range(args.files):
        folder = landing / f"{number // 1000:04}"
        folder.mkdir(exist_ok=True)
        (folder / f"{number:07}.jsonl").write_text(event_line(f"f{number}", DAY) + "\n")
    return {}, (args.files, args.files, 0, {})


def bomb_case(landing: Path, args: argparse.Namespace) -> tuple[dict[str, str], tuple]:
    packer, zeros = zlib.compressobj(9, zlib.DEFLATED, 31), b"0" * (64 * 1024**2)
    with open(landing / "bomb.jsonl.gz", "wb") as out:
        for _ in range(int(args.bomb_gib * GIB) // len(zeros)):
            out.write(packer.compress(zeros))
        out.write(packer.flush())
    (landing / "ok.jsonl.gz").write_bytes(gzip.compress((event_line("ok", DAY) + "\n").encode()))
    return {}, (2, 1, 0, {"unreadable_file": 1})


def run_case(work: Path, name: str, args: argparse.Namespace) -> dict:
    """Writes the case's input into a fresh lake, ingests it, checks the accounting; its figures."""
    landing = work / name / "lake" / "landing"
    landing.mkdir(parents=True)
    started = time.perf_counter()
    ingest_env, expected = globals()[f"{name}_case"](landing, args)
    written = time.perf_counter() - started
    env = lake_env(work / name) | {f"LAKEHOUSE__INGEST__{key}": value for key, value in ingest_env.items()}
    env["LAKEHOUSE__INGEST__SETTLE_SECONDS"] = "0"
    summaries, seconds, driver_mib, jvm_mib = ingest(env)
    check(summaries, *expected)
    lines = expected[0]
    batch_seconds = sum(s["seconds"] for s in summaries)
    check_seconds = sum(s.get("check_seconds", 0) for s in summaries)
    figures = {"case": name, "lines": lines, "batches": len(summaries), "seconds": round(seconds, 1),
               "batch_seconds": round(batch_seconds, 1), "check_seconds": round(check_seconds, 1),
               "lines_per_second": round(lines / seconds, 1), "driver_rss_mib": round(driver_mib),
               "jvm_rss_mib": round(jvm_mib), "input_seconds": round(written, 1),
               "set_aside": {k: v for s in summaries for k, v in s.get("set_aside", {}).items()}}  # fmt: skip
    print(f"{name:10} {lines:>10,} lines {len(summaries):>3} batches {seconds:>8.1f} s (batches {batch_seconds:.1f} s, "
          f"GX checks {check_seconds:.1f} s) {lines / seconds:>10,.0f} lines/s  driver {driver_mib:>6,.0f} MiB  "
          f"JVM {jvm_mib:>6,.0f} MiB", flush=True)  # fmt: skip
    return figures


def benchmark(args: argparse.Namespace, work: Path) -> dict:
    print(machine(), flush=True)
    cases = [run_case(work, name, args) for name in CASES if name in args.only]
    note = ("(seconds: the `lakehouse ingest` command, JVM start, Delta commits and GX checks included; batches: "
            "ingest's own timing of its batches, the scan of landing files included; RSS peaks sampled every "
            f"{SAMPLE_SECONDS} s: the driver process, and its JVM with the JVM's children)")  # fmt: skip
    print(note)
    return {"benchmark": "faults_input", "cores": os.cpu_count(), "cases": cases, "notes": [note],
            "sizes": {"rule_lines": args.rule_lines, "long_line_bytes": args.long_line_bytes, "files": args.files,
                      "bomb_gib": args.bomb_gib}}  # fmt: skip


def main() -> int:
    args = parsed_args()
    return run_in_work_folder("faults_input", benchmark, args, args.work)


if __name__ == "__main__":
    sys.exit(main())
