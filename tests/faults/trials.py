"""Fault trials that tests/faults and benchmarks/faults.py share: real `lakehouse` processes killed (SIGKILL to their
process group) at a random moment or right after their k-th commit, as seen from outside by watching the tables'
`_delta_log/` folders and the landing files; a clean re-run; the lake then compared with an uninterrupted reference
run and with the generator's own counts. Also pairs of commands run at once, with proof that they overlapped."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path

from lakehouse import state, tables
from lakehouse.aggregate import aggregate
from lakehouse.config import Settings, load_settings
from lakehouse.forget import TAG, forget
from lakehouse.generate import generate
from lakehouse.ingest import ingest
from lakehouse.maintain import maintain
from lakehouse.storage import peek
from tests.conftest import CONF, REPO, test_environ
from tests.jobs.test_maintain import _interleaved, _tagged
from tests.jobs.test_s3 import COMPARED
from tests.oracle import audit

# The commands killed. `lakehouse replay` (DESIGN §7) does not exist yet: it joins them once it does.
COMMANDS = ("ingest", "aggregate", "maintain", "forget-user")
SEED_VARIABLE = "FAULTS_SEED"
LAKEHOUSE = Path(sys.executable).parent / "lakehouse"
START = date(2024, 6, 1)
POLL_SECONDS = 0.01
PROCESS_TIMEOUT = 900
# A random kill falls between this share of the reference's time to its first commit and the reference's end: the
# JVM's start before that writes nothing.
RANDOM_FROM = 0.8
# The state tables compared by what they mean rather than row by row (their rows hold run ids and times).
STATE_COLUMNS = {
    tables.EVENT_IDS: ["event_date", "event_id", "user_id", "batch"],
    tables.INGEST_BATCHES: ["batch", "files"],
    # All but the request's id and times: what it removed and purged, counts only.
    # Empty once every request is finished: a plan left holds a user id.
    tables.FORGET_PLANS: ["user_id"],
    tables.FORGET_REQUESTS: [
        "requested_by",
        "rows_removed",
        "days_rebuilt",
        "landing_files_rewritten",
        "landing_lines_removed",
        "tables_purged",
        "files_purged",
    ],
}
_COMMIT = re.compile(r"^(\d{20})\.json$")
# The one-line refusal of forget-user while an ingest batch is open (forget._refuse_while_ingesting).
REFUSAL = re.compile(r"^lakehouse: error: ingest batch \d+ is not finished: let the running `lakehouse ingest` end")


@cache
def seed_from_environment() -> int:
    """The seed of FAULTS_SEED, else a fresh one, the same for the whole process (printed by the callers, so any run
    can be repeated)."""
    given = os.environ.get(SEED_VARIABLE)
    return int(given) if given else random.SystemRandom().randrange(2**31)


def settings_for(root: Path) -> Settings:
    """The test settings of a lake at `root` (tests/conftest.py's environment, sized for two cores)."""
    return load_settings(CONF, test_environ(root))


def environment(root: Path, tag: str | None = None) -> dict[str, str]:
    """The environment of a `lakehouse` process on the lake at `root`; with `tag`, its every commit carries it."""
    env = {**os.environ, **test_environ(root)}
    return _tagged(env, tag) if tag else env


# --- the lakes --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    """How much each of the three generated landing sets (a, b, c) holds."""

    events: int = 300
    users: int = 20
    days: int = 1


# What CI's trials run on: each command a few seconds of work.
CI_SIZE = Size(events=150, users=15)


@dataclass(frozen=True)
class Base:
    """A lake a command starts from: its root, the landing sets ingested into it and those only landed."""

    root: Path
    ingested: tuple[str, ...]
    landed: tuple[str, ...]


# The base lakes, each made from the one before it: the sets it has ingested, those it has only landed, and what
# makes it from the one before. `aggregate` holds two batches in the same `events` partitions (what maintain
# compacts); `gold` is that aggregated (what forget-user rebuilds).
BASES = {
    "ingest": ((), ("a",), ("land a",)),
    "aggregate": (("a", "b"), (), ("ingest", "land b", "ingest")),
    "gold": (("a", "b"), (), ("aggregate",)),
    "landed_c": (("a", "b"), ("c",), ("land c",)),
    "pending_c": (("a", "b", "c"), (), ("ingest",)),
}
# The base lake each killed command starts from.
KILL_BASES = {"ingest": "ingest", "aggregate": "aggregate", "maintain": "aggregate", "forget-user": "gold"}


class Lakes:
    """The generated landing sets a, b and c (the same days, so the same partitions; the generator's own summaries),
    the user forget-user forgets (a's most active), and the base lakes, each built in this process when first asked
    for."""

    def __init__(self, folder: Path, size: Size, seed: int) -> None:
        self.folder, self.sets = folder, folder / "sets"
        self.generated = {
            name: generate(self.sets / name, size.events, days=size.days, start=START, users=size.users, types=8,
                           bad_rate=0.03, dup_rate=0.05, seed=seed + number)
            for number, name in enumerate("abc")
        }  # fmt: skip
        events = audit(self.generated["a"].files).events
        counted = Counter(event["data"]["attributes"].get("user_id") for _, event in events)
        self.user = next(found for found, _ in counted.most_common(2) if found)
        self._bases: dict[str, Base] = {}

    def base(self, name: str) -> Base:
        """The base lake `name` (see BASES), built on first use."""
        if name not in self._bases:
            ingested, landed, steps = BASES[name]
            root = self.folder / name / "lake"
            names = list(BASES)
            before = names.index(name)
            if before:
                shutil.copytree(self.base(names[before - 1]).root, root)
            else:
                (root / tables.LANDING).mkdir(parents=True)
            for step in steps:
                if step.startswith("land "):
                    shutil.copytree(self.sets / step[5:], root / tables.LANDING / step[5:])
                else:
                    command(step, self.user).job(settings_for(root))
            self._bases[name] = Base(root, ingested, landed)
        return self._bases[name]

    def expected(self, base: Base) -> dict[str, int | dict]:
        """What ingest must account for in a lake made from `base`: the generator's counts of every set landed,
        summed."""
        made = [self.generated[name] for name in (*base.ingested, *base.landed)]
        bad = sum((Counter(summary.bad) for summary in made), Counter())
        return {"lines_read": sum(s.lines for s in made), "valid": sum(s.valid for s in made),
                "quarantined": sum(bad.values()), "duplicates": sum(s.duplicates for s in made),
                "reasons": dict(bad)}  # fmt: skip


@cache
def shared_lakes(folder: Path, size: Size, seed: int) -> Lakes:
    """One Lakes per folder, size and seed in this process: the test modules share theirs."""
    return Lakes(folder, size, seed)


def copy_lake(base: Path, root: Path) -> Path:
    """A copy of the lake `base` at `root` (its parent holds the copy's Spark log)."""
    shutil.rmtree(root.parent, ignore_errors=True)
    root.parent.mkdir(parents=True)
    shutil.copytree(base, root)
    return root


# --- watching a running command from outside ---------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """A commit (a new `_delta_log/NNN.json` of `table`) or a landing file replaced (`table` "landing"), as seen."""

    table: str
    name: str
    written_ns: int
    timestamp_ms: int | None = None
    tag: str | None = None

    def label(self) -> str:
        return self.table if self.table == tables.LANDING else f"{self.table}@{int(self.name[:20])}"


class Watcher:
    """Polls the lake's `_delta_log/` folders (and, with `landing`, the landing files) every POLL_SECONDS while a
    command runs; keeps every new commit it sees, read at once (forget-user's purge deletes old log entries), runs
    `at_count(n)` each time n marks have been seen, and `at_begun()` once table `begun`'s first write has begun: its
    `_delta_log/` is there (Delta makes it before writing any data file), without a commit yet."""

    def __init__(self, root: Path, landing: bool, at_count: Callable[[int], None] | None = None,
                 begun: str | None = None, at_begun: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.root, self.landing, self.at_count = root, landing, at_count
        self.begun, self.at_begun = begun, at_begun
        self.logs = {name: root / name / "_delta_log" for name in (table.name for table in tables.CATALOGUE)}
        self.seen: set[tuple[str, str]] = set(self._commits())
        self.files = self._landing() if landing else {}
        self.marks: list[Mark] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join()
        self.poll()

    def _run(self) -> None:
        while not self.stopped.wait(POLL_SECONDS):
            self.poll()

    def poll(self) -> None:
        before = len(self.marks)
        for table, name in self._commits():
            if (table, name) not in self.seen:
                self.seen.add((table, name))
                self.marks.append(_commit_mark(self.logs[table] / name, table))
        if self.landing:
            now = self._landing()
            for path, identity in now.items():
                if path in self.files and self.files[path][0] != identity[0]:
                    self.marks.append(Mark(tables.LANDING, path, identity[1]))
            self.files = now
        if self.at_count and len(self.marks) > before:
            self.at_count(len(self.marks))
        if self.begun and self.at_begun and self.logs[self.begun].is_dir():
            if not any(table == self.begun for table, _ in self.seen):
                self.at_begun()
                self.at_begun = None

    def _commits(self) -> list[tuple[str, str]]:
        found = []
        for table, log in self.logs.items():
            try:
                found += [(table, entry.name) for entry in os.scandir(log) if _COMMIT.match(entry.name)]
            except FileNotFoundError:
                continue
        return found

    def _landing(self) -> dict[str, tuple[int, int]]:
        """Each visible landing file's inode and modification time (a rewrite replaces the inode)."""
        found = {}
        for folder, _, names in os.walk(self.root / tables.LANDING):
            for name in names:
                if not name.startswith("."):
                    stat = os.stat(os.path.join(folder, name))
                    found[os.path.join(folder, name)] = (stat.st_ino, stat.st_mtime_ns)
        return found

    def ordered(self) -> list[Mark]:
        """The marks in the order they were written."""
        return sorted(self.marks, key=lambda mark: mark.written_ns)


def _commit_mark(path: Path, table: str) -> Mark:
    written = path.stat().st_mtime_ns
    info = next((action["commitInfo"] for action in map(json.loads, path.read_text().splitlines())
                 if "commitInfo" in action), {})  # fmt: skip
    return Mark(table, path.name, written, info.get("timestamp"), info.get("userMetadata"))


# --- one command, killed or not ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A `lakehouse` command line and its job, run in this process for the clean re-run."""

    name: str
    args: tuple[str, ...]
    job: Callable[[Settings], object]


def command(name: str, user: str) -> Command:
    """`name` as a Command (forget-user forgets `user`)."""
    jobs: dict[str, tuple[tuple[str, ...], Callable[[Settings], object]]] = {
        "ingest": ((), ingest),
        "aggregate": ((), aggregate),
        "maintain": ((), maintain),
        "forget-user": ((user,), lambda settings: forget(settings, user)),
    }
    args, job = jobs[name]
    return Command(name, (name, *args), job)


@dataclass
class Ran:
    """A `lakehouse` process as it ran: exit code (negative: the signal), output, seconds, and what it wrote."""

    returncode: int
    stdout: str
    stderr: str
    started: float
    ended: float
    marks: list[Mark]
    killed: bool = False

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def start(cmd: Command, root: Path, tag: str | None = None) -> subprocess.Popen:
    """The command as a process of its own process group (killed as a whole: the driver, its JVM, Python workers)."""
    return subprocess.Popen([str(LAKEHOUSE), *cmd.args], cwd=REPO, env=environment(root, tag), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILLs the process's group, reaps the process and waits until nothing of the group is left."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise RuntimeError(f"process group {process.pid} still alive 30 s after SIGKILL")


def run(cmd: Command, root: Path, after_marks: int | None = None, after_first: float | None = None,
        tag: str | None = None, begun: str | None = None) -> Ran:  # fmt: skip
    """Runs `cmd` as a process on the lake at `root`, killing its process group right after its `after_marks`-th
    mark, `after_first` seconds after its first, or once the first write of table `begun` has begun (none of them:
    uninterrupted)."""
    running: list[subprocess.Popen] = []
    fired, first = threading.Event(), threading.Event()

    def at_count(count: int) -> None:
        first.set()
        if after_marks is not None and count >= after_marks and not fired.is_set() and running[0].poll() is None:
            fired.set()
            kill_group(running[0])

    def at_begun() -> None:
        if running and running[0].poll() is None:
            kill_group(running[0])

    with Watcher(root, cmd.name == "forget-user", at_count, begun, at_begun) as watcher:
        started = time.time()
        process = start(cmd, root, tag)
        running.append(process)
        if after_first is not None:
            while not first.wait(0.05) and process.poll() is None:
                pass
            try:
                process.wait(timeout=after_first)
            except subprocess.TimeoutExpired:
                kill_group(process)
        stdout, stderr = process.communicate(timeout=PROCESS_TIMEOUT)
        ended = time.time()
    killed = process.returncode == -signal.SIGKILL
    return Ran(process.returncode, stdout, stderr, started, ended, watcher.ordered(), killed)


# --- what a lake holds ------------------------------------------------------------------------------------------


def contents(root: Path) -> dict[str, list]:
    """What must be the same in two lakes made from the same input: the rows of every table but their run-stamped
    columns (tests/jobs/test_s3.py's COMPARED), the state tables by what they mean, and the landing files' bytes
    (their SHA-256)."""
    settings = settings_for(root)
    found = {}
    for table, columns in {**COMPARED, **STATE_COLUMNS}.items():
        rows = peek(settings, table, columns)
        if table == tables.INGEST_BATCHES and rows:
            rows = [{"batch": row["batch"], "files": sorted(f["path"] for f in row["files"])} for row in rows]
        found[table] = sorted(json.dumps(row, sort_keys=True, default=str) for row in rows or [])
    runs = peek(settings, tables.AGGREGATE_RUNS, ["batches"]) or []
    found["aggregated batches"] = sorted({batch for row in runs for batch in row["batches"]})
    landing = root / tables.LANDING
    found[tables.LANDING] = sorted(
        f"{path.relative_to(landing)} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        for path in landing.rglob("*")
        if path.is_file() and not _hidden(path, landing)
    )
    return found


def leftovers(root: Path) -> list[str]:
    """Hidden files under the landing folder (a rewrite's temporary file a kill left behind)."""
    landing = root / tables.LANDING
    return sorted(str(path.relative_to(landing)) for path in landing.rglob("*") if _hidden(path, landing))


def _hidden(path: Path, landing: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(landing).parts)


def event_ids(found: dict[str, list]) -> Counter:
    return Counter(json.loads(row)["event_id"] for row in found[tables.EVENTS])


def differences(found: dict[str, list], reference: dict[str, list]) -> list[str]:
    """Each part of `found` that is not as in `reference`: how many rows each has, and the first row of either
    alone."""
    lines = []
    for part, rows in reference.items():
        if found.get(part) != rows:
            mine, theirs = Counter(map(str, found.get(part) or [])), Counter(map(str, rows))
            alone = [f"only here: {row}" for row in mine - theirs][:1] + [f"only in reference: {row}"
                                                                         for row in theirs - mine][:1]  # fmt: skip
            lines.append(f"{part}: {sum(mine.values())} rows, reference {sum(theirs.values())}; {'; '.join(alone)}")
    return lines


def accounting_errors(root: Path, expected: dict[str, int | dict]) -> list[str]:
    """How `ingest_runs` of the lake at `root` fails to account for what the generator wrote (`expected`: its own
    counts, summed), and whether valid events less those forget-user recorded removing equal the rows in `events`."""
    settings = settings_for(root)
    runs = peek(settings, tables.INGEST_RUNS, ["lines_read", "valid", "quarantined", "duplicates", "reasons"]) or []
    totals: dict[str, int | dict] = {name: sum(run[name] for run in runs) for name in expected if name != "reasons"}
    totals["reasons"] = dict(sum((Counter(dict(run["reasons"])) for run in runs), Counter()))
    errors = [f"ingest_runs {name}: {totals[name]}, the generator wrote {value}"
              for name, value in expected.items() if totals[name] != value]  # fmt: skip
    rows = len(peek(settings, tables.EVENTS, ["event_id"]) or [])
    forgotten = state.forgotten_events(settings)
    if totals["valid"] - forgotten != rows:
        errors.append(f"{totals['valid']} valid - {forgotten} recorded as forgotten != {rows} rows in events")
    return errors


# --- kill trials ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """An uninterrupted run of a command on a copy of its base lake, in this process: what it wrote (its marks, in
    order), the seconds from its first mark to its end, and the lake's contents after it."""

    command: Command
    base: Base
    marks: list[Mark]
    span: float
    contents: dict[str, list]


def reference(cmd: Command, base: Base, work: Path) -> Reference:
    root = copy_lake(base.root, work / "lake")
    with Watcher(root, cmd.name == "forget-user") as watcher:
        cmd.job(settings_for(root))
        ended = time.time()
    marks = watcher.ordered()
    span = ended - marks[0].written_ns / 1e9 if marks else 0.0
    return Reference(cmd, base, marks, span, contents(root))


@dataclass
class Trial:
    """One kill and its clean re-run: where the kill was aimed, the marks written when the process died and the last
    of them, whether the signal found it running, what the lake lost or holds twice against the reference, every
    other difference, the re-run's seconds, and hidden files left in landing."""

    command: str
    aim: str
    reached: int
    point: str
    killed: bool
    lost: int
    duplicated: int
    problems: list[str]
    rerun_seconds: float
    leftovers: list[str] = field(default_factory=list)


def kill_trial(ref: Reference, work: Path, expected: dict, after_marks: int | None = None,
               after_first: float | None = None, begun: str | None = None) -> Trial:  # fmt: skip
    """Kills the command on a fresh copy of its base lake (right after mark `after_marks`, `after_first` seconds
    after its first mark, or once table `begun`'s first write has begun), re-runs it in this process, and compares
    the lake with the reference."""
    root = copy_lake(ref.base.root, work / "lake")
    ran = run(ref.command, root, after_marks, after_first, begun=begun)
    problems = [] if ran.killed or ran.returncode == 0 else [f"exited {ran.returncode}: {ran.stderr[-600:]}"]
    clock = time.monotonic()
    try:
        ref.command.job(settings_for(root))
    except Exception as exc:  # the finding itself: a re-run that cannot finish what the kill left
        problems.append(f"re-run failed: {type(exc).__name__}: {str(exc)[:600]}")
    rerun = time.monotonic() - clock
    found = contents(root)
    ids, wanted = event_ids(found), event_ids(ref.contents)
    problems += differences(found, ref.contents) + accounting_errors(root, expected)
    aim = (f"after mark {after_marks}" if after_marks is not None else f"as {begun}'s first write began" if begun
           else f"{after_first:.2f} s after its first mark")  # fmt: skip
    point = ran.marks[-1].label() if ran.marks else "before any commit"
    return Trial(ref.command.name, aim, len(ran.marks), point, ran.killed, sum((wanted - ids).values()),
                 sum((ids - wanted).values()), problems, rerun, leftovers(root))  # fmt: skip


def created(ref: Reference) -> list[str]:
    """The tables the reference run created (their first commit is its)."""
    return [mark.table for mark in ref.marks if mark.table != tables.LANDING and int(mark.name[:20]) == 0]


def planned_kills(ref: Reference, rng: random.Random, every_mark: bool, random_moments: int,
                  random_marks: int = 0) -> list[dict]:  # fmt: skip
    """The kills of one command's trials: after each of the reference's marks and during the first write of each
    table it creates (`every_mark`), after `random_marks` of them drawn at random, and `random_moments` at a moment
    drawn uniformly over the reference's span from its first mark to its end (timed from the killed run's own first
    mark: JVM start times vary too much with load)."""
    count = len(ref.marks)
    kills = [{"after_marks": k} for k in range(1, count + 1)] if every_mark else []
    kills += [{"begun": table} for table in created(ref)] if every_mark else []
    kills += [{"after_marks": rng.randint(1, count)} for _ in range(random_marks)]
    kills += [{"after_first": rng.uniform(0, ref.span)} for _ in range(random_moments)]
    return kills


def tally(done: list[Trial]) -> dict:
    """One command's trials in figures: how many, the distinct kill points reached (marks written, and the last),
    how many found the process still running, events lost and duplicated, and the re-runs' seconds."""
    return {
        "trials": len(done),
        "points": sorted({(trial.reached, trial.point) for trial in done}),
        "killed": sum(trial.killed for trial in done),
        "lost": sum(trial.lost for trial in done),
        "duplicated": sum(trial.duplicated for trial in done),
        "failed": sum(bool(trial.problems) for trial in done),
        "rerun_seconds": [round(trial.rerun_seconds, 2) for trial in done],
    }


# --- two commands at once ---------------------------------------------------------------------------------------

# The concurrency matrix, each pair with the base lake it starts from.
PAIRS = {
    ("ingest", "ingest"): "landed_c",
    ("ingest", "maintain"): "landed_c",
    ("ingest", "forget-user"): "landed_c",
    ("aggregate", "maintain"): "pending_c",
    ("forget-user", "aggregate"): "pending_c",
}
PAIR_ATTEMPTS = 3
# Per attempt, how many seconds the first and the second process wait before they start.
PAIR_DELAYS = ((0.0, 0.0), (0.0, 3.0), (3.0, 0.0))


@dataclass
class Cell:
    """One pair run at once: the attempts it took to overlap, how long both processes lived at once, whether the
    later one committed (or refused) before the other's last commit and whether their commits interleaved, the exit
    codes, a refusal, and what went wrong against the sequential references and the generator."""

    pair: tuple[str, str]
    attempts: int
    overlap_seconds: float
    meanwhile: bool
    interleaved: bool
    exits: tuple[int, int]
    refused: str | None
    lost: int
    duplicated: int
    problems: list[str]

    @property
    def verdict(self) -> str:
        return "ok" if self.meanwhile and not self.problems else "FAILED"


def sequential(lakes: Lakes, pair: tuple[str, str], work: Path) -> list[dict[str, list]]:
    """The contents after the pair run one after the other, in this process: in both orders (one for a pair of the
    same command)."""
    orders = [pair] if pair[0] == pair[1] else [pair, pair[::-1]]
    found = []
    for number, order in enumerate(orders):
        root = copy_lake(lakes.base(PAIRS[pair]).root, work / f"order-{number}" / "lake")
        for name in order:
            command(name, lakes.user).job(settings_for(root))
        found.append(contents(root))
    return found


def run_pair(lakes: Lakes, pair: tuple[str, str], work: Path, attempts: int = PAIR_ATTEMPTS) -> Cell:
    """Runs the pair at once on a fresh copy of its base lake until the overlap is proven (at most `attempts`
    times, starting one of them a little later on a retry), then judges the lake against the sequential
    references."""
    base = lakes.base(PAIRS[pair])
    for attempt in range(1, attempts + 1):
        root = copy_lake(base.root, work / f"attempt-{attempt}" / "lake")
        runs = _at_once([command(name, lakes.user) for name in pair], root, PAIR_DELAYS[(attempt - 1) % 3], attempt)
        overlap, meanwhile, interleaved = _overlap(runs, pair)
        if meanwhile:
            break
    cell = Cell(pair, attempt, overlap, meanwhile, interleaved, (runs[0].returncode, runs[1].returncode), None, 0, 0,
                [] if meanwhile else [f"never overlapped in {attempts} attempts"])  # fmt: skip
    for name, ran in zip(pair, runs, strict=True):
        lines = ran.stderr.strip().splitlines()
        if ran.returncode == 2 and name == "forget-user" and len(lines) == 1 and REFUSAL.match(lines[0]):
            cell.refused = f"{name}: {lines[0]}"
            command(name, lakes.user).job(settings_for(root))
        elif ran.returncode != 0:
            cell.problems.append(f"{name} exited {ran.returncode}: {ran.stderr[-800:]}")
    found = contents(root)
    references = sequential(lakes, pair, work)
    closest = next((ref for ref in references if ref == found), references[0])
    ids, wanted = event_ids(found), event_ids(closest)
    cell.lost, cell.duplicated = sum((wanted - ids).values()), sum((ids - wanted).values())
    cell.problems += differences(found, closest) + accounting_errors(root, lakes.expected(base))
    return cell


def _at_once(cmds: list[Command], root: Path, delays: tuple[float, float], attempt: int) -> list[Ran]:
    """Both commands as processes on the lake at `root`, each started after its delay, each commit tagged with its
    process; their runs once both ended, each holding its own commits."""
    tags = [f"faults-{attempt}-{number}-{cmd.name}" for number, cmd in enumerate(cmds)]
    runs: list[Ran | None] = [None, None]

    def one(number: int) -> None:
        time.sleep(delays[number])
        started = time.time()
        process = start(cmds[number], root, tags[number])
        stdout, stderr = process.communicate(timeout=PROCESS_TIMEOUT)
        runs[number] = Ran(process.returncode, stdout, stderr, started, time.time(), [])

    with Watcher(root, landing=False) as watcher:
        threads = [threading.Thread(target=one, args=(number,)) for number in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for number, ran in enumerate(runs):
        forgets = cmds[number].name == "forget-user"
        ran.marks = [mark for mark in watcher.ordered()
                     if mark.tag == tags[number] or (forgets and (mark.tag or "").startswith(TAG))]  # fmt: skip
    return runs


def _overlap(runs: list[Ran], pair: tuple[str, str]) -> tuple[float, bool, bool]:
    """How long both processes lived at once; whether the one that committed (or refused) later did so before the
    other's last commit; whether their commits interleaved."""
    overlap = min(ran.ended for ran in runs) - max(ran.started for ran in runs)
    points = [[mark.timestamp_ms / 1000 for mark in ran.marks] or ([ran.ended] if ran.returncode == 2 else [])
              for ran in runs]  # fmt: skip
    if overlap <= 0 or not all(points):
        return overlap, False, False
    early, late = sorted(points, key=lambda times: times[0])
    millis = [[int(t * 1000) for t in times] for times in points]
    return overlap, late[0] < early[-1], _interleaved(*millis)
