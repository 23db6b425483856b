# Everything a fresh clone needs: `make run` and `make test` set up the venv (pinned by constraints.txt) first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.py constraints.txt | sha1sum | cut -c1-12)

.PHONY: setup run test lint bench trino airflow clean

setup: $(STAMP)

$(STAMP): setup.py constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt --editable '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: setup
	$(BIN)/lakehouse run

# Trino (DESIGN §5) on 127.0.0.1: fetched through Maven into .cache/trino on first use, state under state/trino.
trino: setup
	$(BIN)/lakehouse trino start
	$(BIN)/lakehouse publish

# Airflow standalone (DESIGN §8) on 127.0.0.1:8080 with the DAGs of dags/; home, SQLite DB, logs and the generated
# admin password under state/airflow (see conf/local.yaml `airflow:`).
airflow: setup
	$(BIN)/lakehouse airflow

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

# Every benchmark of benchmarks/ on generated data (~20 min on 2 cores): benchmarks/RESULTS.md.
# Sizes: make bench BENCH_ARGS="--question-events 100000000" (all options: .venv/bin/python benchmarks/suite.py -h).
bench: setup
	$(BIN)/python benchmarks/suite.py $(BENCH_ARGS)

clean:
	[ ! -x $(BIN)/lakehouse ] || $(BIN)/lakehouse trino stop
	rm -rf lake state .cache/ivy/jars benchmarks/out
