"""A lake on S3: ingest, validate, aggregate and publish run unchanged on `s3a://` of a local S3-compatible server
(moto's, a process of its own), as a user runs them (the `lakehouse` command, whose JVM gets the S3A jars because
the lake is on s3a://), over landing files uploaded with boto3. The tables equal those the same files make on a
local lake, delta-rs reads them, and Trino reads them through its native S3 file system."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient
from pyspark.sql import SparkSession

from lakehouse import tables
from lakehouse.config import Settings, load_settings
from lakehouse.errors import LakehouseError
from lakehouse.gold import MONTHLY_KEYS, STATS_KEYS, USER_ACTIVITY_KEYS
from lakehouse.state import unaggregated_batches
from lakehouse.storage import peek
from lakehouse.tables import EVENT_COLUMNS, PUBLISHED
from lakehouse.trino_client import ANALYST, LAKE, query
from lakehouse.trino_server import METASTORE, start, stop
from tests.conftest import CONF, REPO, free_port
from tests.conftest import test_environ as environment_for
from tests.jobs.test_cli import lakehouse
from tests.lake import aggregated_lake
from tests.oracle import Audit, audit

BUCKET = "lakehouse-test"
GENERATED = {"events": 1_500, "start": date(2024, 5, 1), "users": 150, "types": 8, "bad_rate": 0.02,
             "dup_rate": 0.03, "seed": 17}  # fmt: skip
# What the two runs must agree on: every column but those a run stamps itself (run ids, times).
COMPARED = {
    tables.EVENTS: [column for column in EVENT_COLUMNS if column != "ingested_at"],
    tables.QUARANTINE: ["raw", "reason", "source_file", "line_number"],
    tables.INGEST_RUNS: ["batch", "files", "bytes", "lines_read", "valid", "quarantined", "duplicates", "reasons",
                         "event_dates"],
    tables.DAILY_USER_ACTIVITY: [*USER_ACTIVITY_KEYS, "events", "first_seen", "last_seen"],
    tables.DAILY_EVENT_STATS: [*STATS_KEYS, "events", "unique_users"],
    tables.MONTHLY_USER_ACTIVITY: [*MONTHLY_KEYS, "events", "active_days"],
}  # fmt: skip


@dataclass(frozen=True)
class S3Lake:
    """The lake on S3 after the pipeline ran (two ingests at once, then the other steps): its settings and
    environment, what each command printed, and the batches waiting for the aggregates just before `aggregate` ran."""

    settings: Settings
    environ: dict[str, str]
    printed: dict[str, dict]
    waiting_before_aggregate: list[int]
    # The two ingests started at once: each one's pid, summary and what it wrote on stderr.
    ingests: list[tuple[int, dict, str]]


def s3_environ(folder: Path, endpoint: str) -> dict[str, str]:
    """The test environment with the lake on s3a:// of `endpoint`, GX's files and Trino's state under `folder`."""
    return {
        **environment_for(folder / "lake"),
        "LAKEHOUSE__LAKE__ROOT": f"s3a://{BUCKET}/lake",
        "LAKEHOUSE__S3__ENDPOINT": endpoint,
        "LAKEHOUSE__S3__PATH_STYLE_ACCESS": "true",
        # moto takes any keys; given here as a deployment gives them, through the environment.
        "LAKEHOUSE__S3__ACCESS_KEY": "testing",
        "LAKEHOUSE__S3__SECRET_KEY": "testing",
        "LAKEHOUSE__QUALITY__DIR": str(folder / "quality"),
        "LAKEHOUSE__TRINO__PORT": str(free_port()),
    }


def client(settings: Settings) -> BaseClient:
    """A boto3 S3 client for the server and keys of `settings`."""
    s3 = settings.s3
    return boto3.client("s3", endpoint_url=s3.endpoint, region_name=s3.region,
                        aws_access_key_id=s3.access_key.get_secret_value(),
                        aws_secret_access_key=s3.secret_key.get_secret_value())  # fmt: skip


@pytest.fixture(scope="module")
def local_lake(
    tmp_path_factory: pytest.TempPathFactory, make_settings: Callable[[Path], Settings], spark: SparkSession
) -> Settings:
    """The generated files ingested and aggregated on a local lake: what the lake on S3 must hold too."""
    return aggregated_lake(tmp_path_factory.mktemp("local") / "lake", make_settings, **GENERATED)


@pytest.fixture(scope="module")
def s3_lake(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, local_lake: Settings) -> Iterator[S3Lake]:
    """The local lake's landing files uploaded to a bucket, then ingest → validate → aggregate → publish there, each
    as its own `lakehouse` command; a Trino server for this lake starts meanwhile and stops after the tests."""
    env = {**os.environ, **s3_environ(tmp_path_factory.mktemp("s3"), s3_endpoint)}
    settings = load_settings(CONF, env)
    bucket = client(settings)
    bucket.create_bucket(Bucket=BUCKET)
    landing = Path(local_lake.lake.root) / tables.LANDING
    for path in sorted(p for p in landing.rglob("*") if p.is_file()):
        bucket.upload_file(str(path), BUCKET, f"lake/{tables.LANDING}/{path.relative_to(landing)}")
    with ThreadPoolExecutor(max_workers=1) as pool:
        started = pool.submit(start, settings)
        try:
            ingests = _at_once(env, "ingest", "ingest")
            printed = {"ingest": next(summary for _, summary, _ in ingests if summary["batch"] is not None),
                       "validate": _run(env, "validate", tables.EVENTS)}  # fmt: skip
            waiting = unaggregated_batches(settings)
            printed["aggregate"] = _run(env, "aggregate")
            started.result()
            printed["publish"] = _run(env, "publish")
            yield S3Lake(settings, env, printed, waiting, ingests)
        finally:
            started.exception()
            stop(settings)


def uploaded(local_lake: Settings) -> Audit:
    """The oracle's reading of the landing files (uploaded to the bucket as they are)."""
    landing = Path(local_lake.lake.root) / tables.LANDING
    return audit(sorted(str(path) for path in landing.rglob("*") if path.is_file()))


@pytest.mark.slow
def test_two_ingests_at_once_on_s3_take_turns(s3_lake: S3Lake) -> None:
    """Delta's S3 log store is safe within one driver only: the second ingest waited for the first's writer lock,
    then found every file taken (the other tests find each table equal to the local lake's: nothing twice)."""
    (first_pid, first, _), (second_pid, second, _) = sorted(s3_lake.ingests, key=lambda run: run[1]["batch"] is None)
    waiter_stderr = next(err for pid, _, err in s3_lake.ingests if pid == second_pid)
    assert f"lakehouse: warning: waiting for the lake's writer lock, held by lakehouse ingest (pid {first_pid} " \
           in waiter_stderr  # fmt: skip
    assert (first["batch"], first["lines_read"]) == (1, GENERATED["events"])
    assert (second["batch"], second["lines_read"]) == (None, 0)
    assert [run["batch"] for run in peek(s3_lake.settings, tables.INGEST_RUNS, ["batch"])] == [1]


@pytest.mark.slow
def test_every_step_runs_on_s3(s3_lake: S3Lake, local_lake: Settings) -> None:
    printed, found = s3_lake.printed, uploaded(local_lake)
    assert (printed["ingest"]["batch"], printed["ingest"]["lines_read"]) == (1, GENERATED["events"])
    assert printed["ingest"]["valid"] == len(found.first_seen)
    assert printed["validate"]["success"] and printed["validate"]["rows"] == len(found.first_seen)
    assert printed["aggregate"]["batches"] == [1]
    assert sorted(printed["publish"]["registered"]) == sorted(PUBLISHED)


@pytest.mark.slow
@pytest.mark.parametrize("table", list(COMPARED))
def test_tables_on_s3_equal_those_of_a_local_lake(s3_lake: S3Lake, local_lake: Settings, table: str) -> None:
    on_s3, local = (sorted(peek(s, table, COMPARED[table]), key=repr) for s in (s3_lake.settings, local_lake))
    assert on_s3 == local
    assert local


@pytest.mark.slow
def test_waiting_batches_are_read_from_s3_without_spark(s3_lake: S3Lake) -> None:
    assert s3_lake.waiting_before_aggregate == [1]
    assert unaggregated_batches(s3_lake.settings) == []
    assert peek(s3_lake.settings, "no_such_table", ["x"]) is None


@pytest.mark.slow
def test_trino_reads_the_s3_tables_as_spark_wrote_them(s3_lake: S3Lake, local_lake: Settings) -> None:
    settings = s3_lake.settings
    for table in PUBLISHED:
        [(count,)] = query(settings, f"SELECT count(*) FROM lake.{table}").rows
        assert count == len(peek(local_lake, table, COMPARED[table][:1])), table
    [(events, users)] = query(settings, "SELECT sum(events), count(DISTINCT user_id) FROM bi.event_usage", ANALYST).rows
    # The oracle's events and their users (the contract's paths: the attributes', else the meta's user id).
    found = [event for _, event in uploaded(local_lake).events]
    known = {event["data"]["attributes"].get("user_id") or event["meta"].get("user_id") for event in found} - {None}
    assert (events, users) == (len(found), len(known))
    # The registrations live in the bucket, next to the tables, as they live in a local lake.
    listed = client(settings).list_objects_v2(Bucket=BUCKET, Prefix=f"lake/{METASTORE}/{LAKE}/{tables.EVENTS}/")
    assert listed["KeyCount"] > 0


@pytest.mark.slow
def test_validation_results_go_to_the_lake_and_reports_to_the_local_quality_dir(s3_lake: S3Lake) -> None:
    recorded = peek(s3_lake.settings, tables.VALIDATIONS, ["table_name", "success", "docs", "checked_by"])
    docs = s3_lake.printed["validate"]["docs"]
    assert sorted(recorded, key=lambda row: (row["checked_by"], row["table_name"])) == [
        {"table_name": tables.EVENTS, "success": True, "docs": docs, "checked_by": "ingest"},
        {"table_name": tables.QUARANTINE, "success": True, "docs": docs, "checked_by": "ingest"},
        {"table_name": tables.EVENTS, "success": True, "docs": docs, "checked_by": "validate"},
    ]
    assert Path(s3_lake.settings.quality.dir, "docs", "index.html").is_file()


@pytest.mark.slow
def test_forget_user_rewrites_landing_objects_and_tables_on_s3(s3_lake: S3Lake) -> None:
    """On a copy of the lake in the same bucket (the other tests keep theirs): the most active user is forgotten."""
    bucket = client(s3_lake.settings)
    for page in bucket.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="lake/"):
        for listed in page["Contents"]:
            copy = "forget/" + listed["Key"].removeprefix("lake/")
            bucket.copy_object(Bucket=BUCKET, Key=copy, CopySource={"Bucket": BUCKET, "Key": listed["Key"]})
    env = {**s3_lake.environ, "LAKEHOUSE__LAKE__ROOT": f"s3a://{BUCKET}/forget"}
    settings = load_settings(CONF, env)
    events = peek(settings, tables.EVENTS, ["user_id"])
    users = Counter(row["user_id"] for row in events if row["user_id"])
    user, held = users.most_common(1)[0]
    printed = _run(env, "forget-user", user)
    assert printed["rows_removed"][tables.EVENTS] == held and printed["landing_files_rewritten"] > 0
    assert len(peek(settings, tables.EVENTS, ["user_id"])) == len(events) - held
    for table in (tables.EVENTS, tables.DAILY_USER_ACTIVITY, tables.MONTHLY_USER_ACTIVITY):
        assert user not in {row["user_id"] for row in peek(settings, table, ["user_id"])}
    landed = [listed["Key"] for listed in bucket.list_objects_v2(Bucket=BUCKET, Prefix="forget/landing/")["Contents"]]
    texts = [bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in landed]
    left = [line for key, text in zip(landed, texts, strict=True) for line in _plain(key, text).splitlines()
            if _is_of(line, user, settings)]  # fmt: skip
    assert not left
    [request] = peek(settings, tables.FORGET_REQUESTS, ["landing_lines_removed"])
    assert request["landing_lines_removed"] == printed["landing_lines_removed"] >= held
    # The original lake is untouched.
    assert len(peek(s3_lake.settings, tables.EVENTS, ["user_id"])) == len(events)


def test_s3_keys_go_in_pairs() -> None:
    with pytest.raises(LakehouseError, match="s3: Value error, access_key and secret_key go together"):
        load_settings(CONF, {"LAKEHOUSE__S3__ACCESS_KEY": "key-only"})


def _at_once(env: dict[str, str], *commands: str) -> list[tuple[int, dict, str]]:
    """Each `lakehouse COMMAND` started at the same time, as a process of its own: its pid, the last JSON line it
    printed and its stderr, after checking it succeeded."""
    started = [subprocess.Popen([sys.executable, "-m", "lakehouse.cli", command], env=env, cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for command in commands]  # fmt: skip
    done = []
    for process in started:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, f"lakehouse {process.args[3]}: {err[-2000:]}"
        done.append((process.pid, json.loads(out.splitlines()[-1]), err))
    return done


def _run(env: dict[str, str], *args: str) -> dict:
    """What `lakehouse ARGS` printed (one JSON line), after checking it succeeded."""
    done = lakehouse(*args, env=env)
    assert done.returncode == 0, f"lakehouse {' '.join(args)}: {done.stderr[-2000:]}"
    return json.loads(done.stdout.splitlines()[-1])


def _plain(key: str, data: bytes) -> bytes:
    return gzip.decompress(data) if key.endswith(".gz") else data


def _is_of(line: bytes, user: str, settings: Settings) -> bool:
    """Whether a landed line is the user's: its user id, derived as ingest derives it, or for a line that is not
    JSON, the id as a JSON string anywhere in it (another user's event naming this one is not this one's)."""
    try:
        event = json.loads(line)
    except ValueError:
        return json.dumps(user).encode() in line
    for path in settings.ingest.user_id_paths:
        found = event
        for key in path.split("."):
            found = found.get(key) if isinstance(found, dict) else None
        if found is not None:
            return found == user
    return False
