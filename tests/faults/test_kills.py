"""`lakehouse ingest`, `aggregate`, `maintain` and `forget-user` (`replay` does not exist yet) as processes, their
process group killed with SIGKILL right after a commit (seen from outside, in the tables' `_delta_log/` folders and
the landing files) or at a random moment, then run again: every table equals an uninterrupted run on the same input,
and `ingest_runs` accounts for every line the generator wrote. CI runs a few trials (`benchmarks/faults.py` runs
hundreds); FAULTS_SEED repeats a run's draws, printed with every result."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lakehouse import tables
from lakehouse.forget import TAG
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


# maintain (after a random one of its 18 commits) is killed by benchmarks/faults.py only: the suite's time on 2 cores.
@pytest.mark.parametrize(("name", "moments", "marks"), [("aggregate", 1, 0)])
def test_killed_at_random(name: str, moments: int, marks: int, lakes: trials.Lakes, seed: int, tmp_path: Path) -> None:
    """At a moment drawn at random over its run."""
    ref = reference(lakes, name, tmp_path)
    kills = trials.planned_kills(ref, random.Random(f"{seed}-{name}"), False, moments, marks)
    killed(lakes, ref, tmp_path, seed, kills)


def test_forget_user_killed_after_deleting_the_users_events(lakes: trials.Lakes, seed: int, tmp_path: Path) -> None:
    """Right after the `events` commit of its DELETE: the re-run finishes the request from its plan, so no table
    holds the user and its record counts the whole request (`rows_removed` of `events` as planned, all its landing
    lines), as `state.forgotten_events` and the reconciliation `lakehouse run` ends with need. It failed while the
    re-run recorded only what it removed itself."""
    ref = reference(lakes, "forget-user", tmp_path)
    deleted = next(n for n, mark in enumerate(ref.marks, 1)
                   if mark.table == tables.EVENTS and (mark.tag or "").startswith(TAG))  # fmt: skip
    killed(lakes, ref, tmp_path, seed, [{"after_marks": deleted}])
