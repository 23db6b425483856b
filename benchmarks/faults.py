"""Fault tolerance: `lakehouse ingest`, `aggregate`, `maintain` and `forget-user` killed (SIGKILL to the process
group) right after each of their commits and at random moments and commits, each then run again and compared with an
uninterrupted run; then the concurrency matrix, each pair of commands run at once and compared with the pair run one
after the other. The trials are tests/faults/trials.py's, which tests/faults runs at CI size.
Usage: .venv/bin/python benchmarks/faults.py [--trials N] [--seed S] [--events E] [--users U] [--days D]
[--commands C ...] [--pair-repeat R] [--work DIR] [--trials-file F] [--keep] [--json PATH]; prints a table per
part, then all figures as one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

from common import REPO, add_output_arguments, machine, run_in_work_folder, spread

# The trials live beside the tests that run them at CI size: one implementation for both.
sys.path.insert(0, str(REPO))
from tests.faults import trials  # noqa: E402


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--trials", type=int, default=200, help="kill trials over all commands (default 200): first a kill after "
        "each commit of each command, then random moments and random commits, shared evenly")  # fmt: skip
    add("--seed", type=int, help=f"seed of every draw (default ${trials.SEED_VARIABLE}, else a fresh one)")
    add("--events", type=int, default=1_000, help="lines per landing set, of the three (default 1000)")
    add("--users", type=int, default=50, help="users per landing set (default 50)")
    add("--days", type=int, default=1, help="days per landing set (default 1)")
    add("--commands", nargs="+", choices=trials.COMMANDS, default=list(trials.COMMANDS), help="the commands killed")
    add("--pair-repeat", type=int, default=1, help="runs of each cell of the concurrency matrix (default 1; 0: none)")
    add("--work", type=Path, help="work folder, kept (default: a temp folder under benchmarks/out/)")
    add(
        "--trials-file",
        type=Path,
        help="JSON lines of the trials done: each trial is added as it ends, and those "
        "the file already holds for the same seed, sizes and commits are not run again (a long run resumed)",
    )
    add_output_arguments(parser, "keep the default temp work folder")
    args = parser.parse_args()
    if min(args.trials, args.events, args.users, args.days) < 1 or args.pair_repeat < 0:
        parser.error("--trials, --events, --users and --days must be at least 1, --pair-repeat at least 0")
    return args


def planned(refs: dict[str, trials.Reference], total: int, rng: random.Random) -> dict[str, list[dict]]:
    """`total` kills: after each commit of each command and during the first write of each table it creates, when
    they fit, the rest shared evenly among the commands,
    alternately at a random moment and after a random commit."""
    every = sum(len(ref.marks) + len(trials.created(ref)) for ref in refs.values()) <= total
    kills = {name: trials.planned_kills(ref, rng, every, 0) for name, ref in refs.items()}
    left = total - sum(map(len, kills.values()))
    for number in range(left):
        name = list(refs)[number % len(refs)]
        moment = number // len(refs) % 2 == 0
        kills[name] += trials.planned_kills(refs[name], rng, False, int(moment), int(not moment))
    return kills


def kill_rows(done: dict[str, list[trials.Trial]], refs: dict[str, trials.Reference]) -> list[str]:
    lines = [f"{'command':12} {'trials':>6} {'points reached':>15} {'killed':>6} {'lost':>5} {'duplicated':>10} "
             f"{'failed':>6} {'re-run seconds':>22}"]  # fmt: skip
    for name, runs in done.items():
        figures = trials.tally(runs)
        reached = f"{len(figures['points'])} of {len(refs[name].marks) + 1}"
        lines.append(f"{name:12} {figures['trials']:>6} {reached:>15} {figures['killed']:>6} {figures['lost']:>5} "
                     f"{figures['duplicated']:>10} {figures['failed']:>6} "
                     f"{spread(figures['rerun_seconds']):>22}")  # fmt: skip
    return lines


def cell_rows(cells: list[trials.Cell]) -> list[str]:
    if not cells:
        return []
    lines = [f"{'pair':26} {'attempts':>8} {'overlap s':>9} {'meanwhile':>9} {'interleaved':>11} {'exits':>7} "
             f"{'lost':>5} {'duplicated':>10}  verdict"]  # fmt: skip
    for cell in cells:
        exits, refused = "/".join(map(str, cell.exits)), f" ({cell.refused})" if cell.refused else ""
        lines.append(f"{' × '.join(cell.pair):26} {cell.attempts:>8} {cell.overlap_seconds:>9.1f} "
                     f"{str(cell.meanwhile):>9} {str(cell.interleaved):>11} {exits:>7} {cell.lost:>5} "
                     f"{cell.duplicated:>10}  {cell.verdict}{refused}")  # fmt: skip
    return lines


class Kept:
    """The trials file: what each trial found, keyed by command and number in the plan, for one seed, size, total and
    reference (its commits per command: the plan depends on them)."""

    def __init__(self, path: Path | None, run: dict) -> None:
        self.path, self.run = path, run
        self.found: dict[tuple[str, int], trials.Trial] = {}
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # the last line of a run stopped while writing it
                    continue
                if entry["run"] == run:
                    self.found[(entry["command"], entry["number"])] = trials.Trial(**entry["trial"])
            print(f"{path}: {len(self.found)} trials of this plan done before, not run again", flush=True)

    def trial(self, name: str, number: int) -> trials.Trial | None:
        return self.found.get((name, number))

    def add(self, name: str, number: int, trial: trials.Trial) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as out:
                out.write(json.dumps({"run": self.run, "command": name, "number": number, "trial": vars(trial)}) + "\n")


def benchmark(args: argparse.Namespace, work: Path) -> dict:
    """The references, the kill trials, the matrix; prints and returns the figures."""
    seed = trials.seed_from_environment() if args.seed is None else args.seed
    size = trials.Size(args.events, args.users, args.days)
    print(f"{machine()} | {trials.SEED_VARIABLE}={seed} | {size}", flush=True)
    started = time.monotonic()
    lakes = trials.Lakes(work / "lakes", size, seed)
    refs = {name: trials.reference(trials.command(name, lakes.user), lakes.base(trials.KILL_BASES[name]),
                                   work / "reference" / name) for name in args.commands}  # fmt: skip
    print(f"lakes and references: {time.monotonic() - started:.0f} s; marks: "
          + ", ".join(f"{name} {len(ref.marks)}" for name, ref in refs.items()), flush=True)  # fmt: skip
    kills = planned(refs, args.trials, random.Random(seed))
    done: dict[str, list[trials.Trial]] = {name: [] for name in refs}
    kept = Kept(args.trials_file, {"seed": seed, "size": vars(size), "total": args.trials,
                                   "marks": {name: len(ref.marks) for name, ref in refs.items()}})  # fmt: skip
    for name, planned_kills in kills.items():
        for number, kill in enumerate(planned_kills):
            if (trial := kept.trial(name, number)) is not None:
                done[name].append(trial)
                continue
            clock = time.monotonic()
            # A folder per trial: the re-runs share one Spark session, which keeps each path's Delta log cached; a
            # table rebuilt under the same path would be taken for the one the trial before built there.
            folder = work / "trials" / f"{name}-{number}"
            trial = trials.kill_trial(refs[name], folder, lakes.expected(refs[name].base), **kill)
            if not (trial.problems or trial.lost or trial.duplicated):
                shutil.rmtree(folder)
            done[name].append(trial)
            kept.add(name, number, trial)
            print(f"{name} {number + 1}/{len(planned_kills)}: {trial.aim}, reached {trial.reached} ({trial.point}), "
                  f"killed {trial.killed}, lost {trial.lost}, duplicated {trial.duplicated}, re-run "
                  f"{trial.rerun_seconds:.1f} s, trial {time.monotonic() - clock:.0f} s"
                  + "".join(f"\n  {problem}" for problem in trial.problems), flush=True)  # fmt: skip
    cells = [trials.run_pair(lakes, pair, work / "pair" / f"{'-'.join(pair)}-{repeat}")
             for pair in trials.PAIRS for repeat in range(args.pair_repeat)]  # fmt: skip
    notes = (
        kill_rows(done, refs)
        + cell_rows(cells)
        + [
            "(points reached: distinct (commits written, last one), of an uninterrupted run's marks and before any; "
            "killed: trials the signal found running; re-run: the clean re-run in one warm Spark session, median "
            "(min–max); overlap: seconds both processes lived; meanwhile: the later one committed or refused "
            "before the other's last commit)",
        ]
    )
    print("\n".join(notes))
    return {"benchmark": "faults", "cores": os.cpu_count() or 1, "seed": seed, "size": vars(args) | {"seed": seed},
            "kills": {name: trials.tally(runs) for name, runs in done.items()},
            "problems": {name: [t.problems for t in runs if t.problems] for name, runs in done.items()},
            "cells": [vars(cell) | {"verdict": cell.verdict} for cell in cells],
            "seconds": round(time.monotonic() - started, 1), "notes": notes}  # fmt: skip


def main() -> int:
    args = parsed_args()
    return run_in_work_folder("faults", benchmark, args, args.work)


if __name__ == "__main__":
    sys.exit(main())
