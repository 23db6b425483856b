"""Two real `lakehouse` processes at once on a local lake: their lifetimes overlap and one commits (or refuses) while
the other still has commits ahead, proven from the tagged commits each process left (a pair that did not overlap is
run again, a bounded number of times, and fails if it never does); both exit 0, or forget-user refuses with its one
line while an ingest batch is open (and is then run again, as it says); nothing is lost against the generator's own
counts, and the lake equals the pair run one after the other, in either order.

Cells of the matrix proven elsewhere: ingest × ingest (tests/jobs/test_recovery.py,
`test_two_runs_at_once_take_each_file_once`) and ingest × maintain (tests/jobs/test_maintain.py,
`test_maintain_while_ingesting_loses_and_duplicates_nothing`). Here, in CI, forget-user × aggregate (both rebuild gold
days); `benchmarks/faults.py` runs all five (README, "Fault tolerance, measured")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import trials

pytestmark = pytest.mark.slow

MISSING = [("forget-user", "aggregate")]


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory, spark) -> trials.Lakes:
    seed = trials.seed_from_environment()
    print(f"\nconcurrency lakes: {trials.SEED_VARIABLE}={seed}")
    return trials.shared_lakes(tmp_path_factory.getbasetemp() / "faults", trials.CI_SIZE, seed)


@pytest.mark.parametrize("pair", MISSING, ids=" x ".join)
def test_two_commands_at_once_equal_one_after_the_other(pair: tuple[str, str], lakes: trials.Lakes,
                                                        tmp_path: Path) -> None:  # fmt: skip
    cell = trials.run_pair(lakes, pair, tmp_path)
    print(f"{' × '.join(pair)}: {cell}")
    assert cell.meanwhile, f"no overlap in {cell.attempts} attempts: {cell}"
    assert not cell.problems and not cell.lost and not cell.duplicated, cell
