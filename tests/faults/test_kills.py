"""`lakehouse ingest` as a process, its process group killed with SIGKILL right after a commit (seen from outside, in
the tables' `_delta_log/` folders), then run again: every table equals an uninterrupted run on the same input, and
`ingest_runs` accounts for every line the generator wrote. CI runs these two trials for the suite's time on 2 cores;
`benchmarks/faults.py` runs the same trials for `ingest`, `aggregate`, `maintain` and `forget-user` (`replay` does not
exist yet): after every commit, during each table's first write, at random moments, hundreds of them. FAULTS_SEED
repeats a run's draws, printed with every result. (Deterministic tests of the same recoveries: an ingest killed
between its files and its commit, tests/jobs/test_recovery.py; an aggregate that dies before the rollup,
test_aggregate.py; a forget-user plan left by a run that died after its DELETE, test_forget.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse import tables
from tests.faults import trials

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seed() -> int:
    chosen = trials.seed_from_environment()
    print(f"\nfault trials: {trials.SEED_VARIABLE}={chosen}")
    return chosen


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory, spark, seed: int) -> trials.Lakes:
    return trials.shared_lakes(tmp_path_factory.getbasetemp() / "faults", trials.CI_SIZE, seed)


def reference(lakes: trials.Lakes, name: str, work: Path) -> trials.Reference:
    return trials.reference(trials.command(name, lakes.user), lakes.base(trials.KILL_BASES[name]), work / "reference")


def killed(lakes: trials.Lakes, ref: trials.Reference, work: Path, seed: int, kills: list[dict]) -> None:
    """Runs the kills and asserts every re-run lake equals the reference; prints the figures."""
    expected = lakes.expected(ref.base)
    done = [trials.kill_trial(ref, work / f"trial-{n}", expected, **kill) for n, kill in enumerate(kills)]
    print(f"{ref.command.name} ({trials.SEED_VARIABLE}={seed}, {len(ref.marks)} marks): {trials.tally(done)}")
    failed = [trial for trial in done if trial.problems or trial.lost or trial.duplicated]
    assert not failed, f"{trials.SEED_VARIABLE}={seed}: " + "\n".join(map(str, failed))


def test_ingest_killed_after_its_events_and_id_commits(lakes: trials.Lakes, seed: int, tmp_path: Path) -> None:
    ref = reference(lakes, "ingest", tmp_path)
    assert [mark.table for mark in ref.marks] == [
        tables.INGEST_BATCHES,
        tables.EVENTS,
        tables.QUARANTINE,
        tables.EVENT_IDS,
        tables.INGEST_RUNS,
        *[tables.VALIDATIONS] * 2,
    ]
    # In CI, right after the two commits a re-run must neither redo nor take for duplicates (the batch's events, its
    # ids); benchmarks/faults.py kills after every one.
    killed(lakes, ref, tmp_path, seed, [{"after_marks": 2}, {"after_marks": 4}])
