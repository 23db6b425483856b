"""The suite's RESULTS.md, rendered from fixed results, and the reconciliation every ingest run must pass (no
benchmark runs, no timings asserted)."""

from datetime import UTC, datetime

import suite
from common import figure, reconciliation_errors, spread

from lakehouse.generate import GenerateSummary

MACHINE = {"cores": 2, "cpu": "Test CPU", "memory_gib": 23.5, "available_gib": 20.0, "load": [0.5, 1.0, 1.5]}
FINISHED = datetime(2025, 1, 2, 3, 4, tzinfo=UTC)


def ran(name: str, figures: list[dict]) -> dict:
    return {"name": name, "what": f"what {name} measures", "arguments": ["--events", "10"], "load_at_start": 0.5,
            "seconds": 90.0, "result": {"figures": figures, "notes": [f"{name} note"]}}  # fmt: skip


RUNS = [
    ran("ingest", [figure("ingest throughput", "events/s per core", [4000, 3000, 5000], "DuckDB", [9000, 8000, 10000],
                          "≥ 0.5× reference", False, 4000 / 9000)]),
    ran("question", [figure("BI question", "ms", [120.0, 110.0, 130.0], "events", [2500.0, 2400.0, 2600.0],
                            "≤ 1000 ms", True, 2500 / 120)]),
    ran("serve", [figure("serve", "ms", [5.0, 6.0, 7.0], "DuckDB", [1.0, 1.0, 1.0], "", None)]),
    {"name": "freshness", "what": "landed → queryable", "arguments": [], "load_at_start": 3.0, "seconds": 12.0,
     "error": "exited 1: Trino counts 5 of its rows"},
]  # fmt: skip


def test_each_figure_is_a_row_with_its_reference_target_and_verdict() -> None:
    text = suite.render(RUNS, MACHINE, FINISHED, "abc1234", 1234.0)

    assert (
        "| ingest throughput | events/s per core | 4,000 (3,000–5,000) | DuckDB | 9,000 (8,000–10,000) | 0.444× "
        "| ≥ 0.5× reference | **FAIL** |" in text
    )
    assert "| BI question | ms | 120 (110–130) | events | 2,500 (2,400–2,600) | 20.8× | ≤ 1000 ms | pass |" in text
    assert "| serve | ms | 6.00 (5.00–7.00) | DuckDB | 1.00 (1.00–1.00) |  |  | — |" in text
    assert "| freshness: landed → queryable | | | | | | | **ERROR** (see below) |" in text
    assert "Targets missed: ingest throughput. Benchmarks that failed to run: freshness." in text


def test_the_header_names_the_machine_sizes_and_run() -> None:
    text = suite.render(RUNS, MACHINE, FINISHED, "abc1234", 1234.0)

    assert "at 2025-01-02 03:04 UTC on commit abc1234; the whole suite took 20.6 min" in text
    assert "2 cores (Test CPU), 23.5 GiB memory (20.0 GiB available at the start); load average (1/5/15 min) " \
           "0.5/1.0/1.5" in text  # fmt: skip
    assert "| ingest | what ingest measures | `--events 10` | 0.5 | 1.5 |" in text
    assert "### freshness\nFailed: exited 1: Trino counts 5 of its rows" in text
    assert "```text\nquestion note\n```" in text


def test_spread_is_the_median_then_min_and_max() -> None:
    assert spread([3.0, 1.0, 2.0]) == "2.00 (1.00–3.00)"
    assert spread([12.345]) == "12.3"
    assert spread([]) == "—"


def test_an_ingest_that_loses_or_invents_lines_does_not_reconcile() -> None:
    expected = GenerateSummary(files=["a"], lines=10, valid=7, duplicates=1, bad={"malformed_json": 2})
    summary = {"batch": 1, "lines_read": 10, "valid": 7, "quarantined": 2, "duplicates": 1,
               "reasons": {"malformed_json": 2}}  # fmt: skip

    assert reconciliation_errors([summary], expected) == []
    assert reconciliation_errors([summary | {"valid": 6, "duplicates": 2}], expected) == [
        "valid: ingest says 6, generator wrote 7",
        "duplicates: ingest says 2, generator wrote 1",
    ]
    assert reconciliation_errors([summary | {"lines_read": 11}], expected)[0].startswith("batch 1: lines_read 11 !=")
