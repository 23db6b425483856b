"""The application spark-submit runs for the DAGs in dags/: the `lakehouse` command, with the arguments given."""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    """Runs `lakehouse ARGS...` in the driver spark-submit started; its exit code."""
    # Python puts a script's own folder first on sys.path: here jobs/, whose modules would then shadow libraries
    # of the same name (jobs/trino.py the `trino` client). They are meant to be imported as `lakehouse.*` only.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [entry for entry in sys.path if str(Path(entry or ".").resolve()) != here]
    from lakehouse.cli import main as lakehouse

    return lakehouse(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
