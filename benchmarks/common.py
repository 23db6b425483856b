"""Helpers the benchmarks share: the machine they ran on, their figures (with targets) and the JSON file the suite
reads them from, the `lakehouse` commands they run (with the peak memory of the process tree), a Trino server of
their own, cheap file copies."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from lakehouse.config import Settings, load_settings
from lakehouse.generate import GenerateSummary
from lakehouse.trino_client import connect

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
OUT = REPO / "benchmarks" / "out"
MEMORY_SAMPLE_SECONDS = 0.5  # a sample of a JVM of a few GiB reads its page tables: ~30 ms of CPU
SUMMARY_FIELDS = ("lines_read", "valid", "quarantined", "duplicates")


class BenchmarkError(Exception):
    """A run that failed or did not reconcile with its input: the benchmark's figures would mean nothing."""


def memory_gib() -> float:
    """The machine's total memory in GiB."""
    return psutil.virtual_memory().total / 1024**3


def machine() -> str:
    """Cores, memory and the 1-minute load average, for a benchmark's first line."""
    return f"machine: {os.cpu_count() or 1} cores, {memory_gib():.1f} GiB, load {os.getloadavg()[0]:.1f}"


def machine_facts() -> dict:
    """Cores, CPU model, memory (total and available) and load averages, as the suite records them."""
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown")
    return {
        "cores": os.cpu_count() or 1,
        "cpu": model,
        "memory_gib": round(memory_gib(), 1),
        "available_gib": round(psutil.virtual_memory().available / 1024**3, 1),
        "load": [round(load, 2) for load in os.getloadavg()],
    }


def number(value: float) -> str:
    """A measurement with as many digits as a benchmark's noise allows."""
    magnitude = abs(value)
    return f"{value:,.0f}" if magnitude >= 100 else f"{value:.1f}" if magnitude >= 10 else f"{value:.2f}"


def spread(values: list[float]) -> str:
    """The median, with min–max when there is more than one value."""
    if not values:
        return "—"
    middle = number(statistics.median(values))
    return middle if len(values) == 1 else f"{middle} ({number(min(values))}–{number(max(values))})"


def link_or_copy(source: str | Path, target: str | Path) -> None:
    """Hard-links `source` to `target` (a copy where links are not possible): the lake only ever adds files."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def figure(
    name: str,
    unit: str,
    runs: list[float],
    reference: str,
    reference_runs: list[float],
    target: str,
    passed: bool | None,
    ratio: float | None = None,
) -> dict:
    """One row of RESULTS.md: a measurement's runs next to its reference's, measured in the same benchmark run,
    the target and whether it was met (None: no target, shown for context)."""
    return {
        "name": name,
        "unit": unit,
        "runs": [round(value, 3) for value in runs],
        "reference": reference,
        "reference_runs": [round(value, 3) for value in reference_runs],
        "ratio": None if ratio is None else float(f"{ratio:.4g}"),
        "target": target,
        "passed": passed,
    }


def median(values: list[float]) -> float:
    return statistics.median(values)


def add_output_arguments(parser: argparse.ArgumentParser, keep: str = "keep the work folder (lake, logs)") -> None:
    """--keep (with its meaning for this benchmark) and --json, which the suite passes."""
    parser.add_argument("--keep", action="store_true", help=keep)
    parser.add_argument("--json", type=Path, help="also write the result (figures included) to this JSON file")


def write_result(result: dict, path: Path | None) -> None:
    """Prints the result as one JSON line, and writes it to `path` too when given (the suite reads it there)."""
    text = json.dumps(result, default=str)
    print(text)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lake_env(work: Path, master: str | None = None) -> dict[str, str]:
    """Settings overrides for a benchmark's own lake (`work`/lake), Spark log and Trino server (on a free port)."""
    env = {
        "LAKEHOUSE__LAKE__ROOT": str(work / "lake"),
        "LAKEHOUSE__SPARK__IVY_CACHE": str(REPO / ".cache" / "ivy"),
        # One Spark log per benchmark lake, rather than appended to the repository's state/logs/.
        "LAKEHOUSE__SPARK__LOG_FILE": str(work / "spark.log"),
        "LAKEHOUSE__TRINO__HOME": str(REPO / ".cache" / "trino"),
        "LAKEHOUSE__TRINO__STATE_DIR": str(work / "trino"),
        "LAKEHOUSE__TRINO__PORT": str(free_port()),
    }
    return env | ({"LAKEHOUSE__SPARK__MASTER": master} if master else {})


@dataclass(frozen=True)
class Ran:
    """What one `lakehouse` command printed, its wall-clock seconds and (when sampled) the peak memory of its process
    tree: the Python driver, the JVM it starts and the JVM's Python workers."""

    stdout: str
    seconds: float
    peak_memory_mib: float | None = None

    def json_lines(self) -> list[dict]:
        """The JSON objects the command printed, one per line."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


def lakehouse(env: dict[str, str], *args: str, sample_memory: bool = False) -> Ran:
    """Runs one `lakehouse` command (JVM start included) with the settings overrides `env`."""
    return run_process(env, [str(VENV_BIN / "lakehouse"), *args], f"lakehouse {' '.join(args)}", sample_memory)


def plain_spark(env: dict[str, str], input_dir: Path, target: Path) -> tuple[Ran, int]:
    """Runs benchmarks/plain_spark.py (the plain Spark job) on `input_dir` into the Delta table `target`; the rows it
    wrote."""
    command = [str(VENV_BIN / "python"), str(REPO / "benchmarks" / "plain_spark.py"), str(input_dir), str(target)]
    ran = run_process(env, command, "the plain Spark job")
    return ran, ran.json_lines()[-1]["rows"]


def run_process(env: dict[str, str], command: list[str], name: str, sample_memory: bool = False) -> Ran:
    """Runs `command` (`name` in errors) with the settings overrides `env`; a failure is a BenchmarkError."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    with _peak_memory(process.pid, enabled=sample_memory) as peak:
        stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        log = env.get("LAKEHOUSE__SPARK__LOG_FILE", "")
        raise BenchmarkError(f"`{name}` exited {process.returncode}: {stderr.strip()[-2000:]} (log {log})")
    return Ran(stdout, seconds, peak[0] / 1024**2 if sample_memory else None)


@contextmanager
def _peak_memory(pid: int, enabled: bool) -> Iterator[list[int]]:
    """Samples the memory of `pid` and all its descendants every MEMORY_SAMPLE_SECONDS while the block runs; yields
    a one-item list that holds the peak in bytes."""
    peak, done = [0], threading.Event()

    def sample() -> None:
        try:
            root = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        while not done.wait(MEMORY_SAMPLE_SECONDS):
            peak[0] = max(peak[0], _tree_memory(root))

    sampler = threading.Thread(target=sample, daemon=True)
    if enabled:
        sampler.start()
    try:
        yield peak
    finally:
        done.set()
        if enabled:
            sampler.join()


def _tree_memory(root: psutil.Process) -> int:
    """The summed PSS of `root` and its descendants. PSS, not RSS: a page shared by several processes counts once in
    the sum, so a child the JVM forks (sharing all of the JVM's pages until it execs) does not count the JVM twice."""
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return total


def settings_for(env: dict[str, str]) -> Settings:
    """conf/local.yaml with the benchmark's overrides `env` (see lake_env)."""
    return load_settings(REPO / "conf" / "local.yaml", {**os.environ, **env})


def steps(seconds: dict[str, float]) -> str:
    """Named steps and their seconds, in one line."""
    return ", ".join(f"{step} {s:.1f} s" for step, s in seconds.items())


@contextmanager
def published(env: dict[str, str], setup: dict[str, float]) -> Iterator[None]:
    """For the block: a Trino server of the benchmark's own (state and port from `env`) serving its lake, published
    once with `lakehouse publish`; the seconds of both go to `setup`, which is printed."""
    setup["trino start"] = lakehouse(env, "trino", "start").seconds
    try:
        setup["publish"] = lakehouse(env, "publish").seconds
        print(f"setup: {steps(setup)}", flush=True)
        yield
    finally:
        lakehouse(env, "trino", "stop")


def trino_rss_mib(state_dir: str | Path) -> float:
    """The RSS of the Trino server whose pid file is in `state_dir`."""
    pid = int((Path(state_dir) / "trino.pid").read_text().strip())
    return psutil.Process(pid).memory_info().rss / 1024**2


def trino_runner(settings: Settings, user: str | None = None) -> Callable[[str], list]:
    """A function that runs one query through Trino as `user` (default: the pipeline's) on one connection."""
    cursor = connect(settings, user).cursor()

    def rows(sql: str) -> list:
        cursor.execute(sql)
        return cursor.fetchall()

    return rows


def timed(run: Callable[[str], list], sql: str, repeat: int) -> tuple[list, list[float]]:
    """The rows of `sql` (after one warm-up run) and the milliseconds of `repeat` runs."""
    rows, millis = run(sql), []
    for _ in range(repeat):
        started = time.perf_counter()
        run(sql)
        millis.append((time.perf_counter() - started) * 1000)
    return rows, millis


@dataclass(frozen=True)
class Interleaved:
    """What `interleaved` measured, per query name: its rows, the milliseconds of its first (cold) run and of its
    timed runs."""

    rows: dict[str, list]
    cold_ms: dict[str, float]
    millis: dict[str, list[float]]


def interleaved(queries: dict[str, tuple[Callable[[str], list], str]], repeat: int, warmup: int) -> Interleaved:
    """Runs the queries in turns: one round whose times are kept as the cold ones, `warmup` untimed rounds (a
    server's JIT compiler and caches settle over its first queries, as a long-running one's have), then `repeat`
    timed rounds, each query once per round, so that every query meets the server in the same state."""
    rows, cold, millis = {}, {}, {name: [] for name in queries}
    for round_number in range(1 + warmup + repeat):
        for name, (run, sql) in queries.items():
            started = time.perf_counter()
            answer = run(sql)
            elapsed = (time.perf_counter() - started) * 1000
            if round_number == 0:
                rows[name], cold[name] = answer, elapsed
            elif round_number > warmup:
                millis[name].append(elapsed)
    return Interleaved(rows, cold, millis)


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


def run_in_work_folder(
    name: str, benchmark: Callable[[argparse.Namespace, Path], dict], args: argparse.Namespace, work: Path | None
) -> int:
    """A benchmark's `main`: runs `benchmark` in `work` (default: a new folder under benchmarks/out/, removed
    afterwards unless --keep), then prints (and with --json writes) its result; exit code 1, keeping the folder,
    when it failed."""
    OUT.mkdir(parents=True, exist_ok=True)
    folder = (work or Path(tempfile.mkdtemp(prefix=f"{name}-", dir=OUT))).resolve()
    try:
        result = benchmark(args, folder)
    except BenchmarkError as exc:
        print(f"{name} benchmark failed: {exc}\n(work folder kept: {folder})", file=sys.stderr)
        return 1
    write_result(result, args.json)
    if not (work or args.keep):
        shutil.rmtree(folder)
    return 0
