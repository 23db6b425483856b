"""The application spark-submit runs for the DAGs in dags/: the `lakehouse` command, with the arguments given."""

from __future__ import annotations

import sys

from lakehouse.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
