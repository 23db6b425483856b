"""`lakehouse forget-user USER_ID` (DESIGN §6): removes one user from every table and landing file, purges the files
that still hold them, and records the request with counts only."""

from __future__ import annotations

import dataclasses
import getpass
import gzip
import hashlib
import json
import time
import unicodedata
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import gold, state, tables
from lakehouse.config import Settings
from lakehouse.contract import first_string, one_json_value, without_bom
from lakehouse.errors import LakehouseError
from lakehouse.landing import list_landing, number_lines, read_lines
from lakehouse.records import ForgetPlan, ForgetRequest, LandingFile
from lakehouse.session import spark_session
from lakehouse.storage import (
    append_records,
    delete,
    folder_exists,
    has_tagged_commit,
    peek,
    purge,
    read,
    retry_on_conflict,
    rewrite_file,
    tagged_commits,
)

# Marks this command's commits until their table is purged: a later run finishes the purge of an interrupted one.
TAG = "lakehouse forget-user "
UTF8_BOM = "\ufeff".encode()
NOTHING = "nothing to forget: no table row and no landing line is this user's"
# The tables whose rows a request counts.
REMOVED = (tables.EVENTS, tables.QUARANTINE, tables.DAILY_USER_ACTIVITY)


def checked_user_id(text: str) -> str:
    """`text` if it can be a user id: not blank, no control characters (a pasted line break, say)."""
    if not text.strip():
        raise LakehouseError("USER_ID must not be empty")
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise LakehouseError("USER_ID must not hold control characters")
    return text


def owned_by(line: Column, user_id: str, user_id_paths: tuple[str, ...]) -> Column:
    """Whether a raw line (its bytes) is one of the user's events: a JSON line whose user id, derived as ingest
    derives it, is `user_id`; a line that does not parse (malformed, cut short) when it holds the id as a JSON string.
    A line mentioning the user elsewhere (another user's event about them) is not theirs, as in `events`.

    Only lines holding the id's bytes, or a backslash (a JSON escape could spell the id otherwise), are parsed; an id
    a producer sent as a JSON number written another way (1e2 for "100.0") is the one case this misses.
    """
    parsed = one_json_value(without_bom(line.cast("string")))
    derived = F.coalesce(first_string(parsed, user_id_paths) == F.lit(user_id), F.lit(False))
    quoted = json.dumps(user_id, ensure_ascii=False).encode()
    exact = F.when(parsed.isNotNull(), derived).otherwise(F.contains(line, F.lit(bytearray(quoted))))
    candidate = F.contains(line, F.lit(bytearray(user_id.encode()))) | F.contains(line, F.lit(bytearray(b"\\")))
    return F.when(candidate, exact).otherwise(F.lit(False))


def quarantined_line() -> Column:
    """The bytes of the landing line a `quarantine` row holds (`raw` is base64 for a line that is not UTF-8)."""
    return F.when(F.col("reason") == "not_utf8", F.unbase64("raw")).otherwise(F.col("raw").cast("binary"))


def blank_lines(data: bytes, digests: dict[int, str]) -> bytes:
    """`data` with the lines numbered in `digests` (1-based, as Spark's text reader numbers them: `\\n`, `\\r\\n`
    and `\\r` end a line) emptied, their line breaks kept, so every other line keeps its number (quarantine rows
    point at them) and ingest skips the blank ones. Refuses when a line no longer holds what was read (its SHA-256)."""
    lines = data.splitlines(keepends=True)
    for number, digest in digests.items():
        line = lines[number - 1] if number <= len(lines) else b""
        text = line.rstrip(b"\r\n")
        # Hadoop's line reader drops a byte-order mark at the start of a file from the first line it reads.
        read = text.removeprefix(UTF8_BOM) if number == 1 else text
        if hashlib.sha256(read).hexdigest() != digest:
            raise LakehouseError(f"line {number} changed since it was read: run forget-user again")
        lines[number - 1] = line[len(text) :]
    return b"".join(lines)


def forget(settings: Settings, user_id: str, requested_by: str | None = None) -> dict:
    """Forgets `user_id` everywhere in the lake; a summary of what it removed (counts only). A request an earlier run
    left unfinished (any user's) is finished first, with the counts it planned."""
    user_id = checked_user_id(user_id)
    spark = spark_session(settings)
    started = time.monotonic()
    _refuse_while_ingesting(spark, settings)
    finished = {plan.user_id: _carry_out(spark, settings, plan, _found(spark, settings, plan.user_id))
                for plan in _pending(spark, settings)}  # fmt: skip
    found = _found(spark, settings, user_id)
    if found.nothing() and not _unpurged(spark, settings):
        summary = finished.get(user_id) or {**_summary(None, None, {}), "message": NOTHING}
        return {**summary, "seconds": round(time.monotonic() - started, 3)}
    plan = ForgetPlan(
        str(uuid.uuid4()), datetime.now(UTC), requested_by or _os_user(), user_id,
        {name: found.rows.get(name, 0) for name in REMOVED}, len(found.days), len(found.lines),
        sum(len(digests) for digests in found.lines.values()),
    )  # fmt: skip
    # Before anything changes: a run that dies from here on leaves the plan, which the next run carries out.
    append_records(spark, settings, tables.FORGET_PLANS, [plan])
    return {**_carry_out(spark, settings, plan, found), "seconds": round(time.monotonic() - started, 3)}


@dataclasses.dataclass(frozen=True)
class Found:
    """What the lake holds of one user now: their landing lines (numbers and SHA-256 per file), their rows (as
    DataFrames) and how many in each table, and the days of `events` and the gold tables that hold them."""

    lines: dict[LandingFile, dict[int, str]]
    frames: dict[str, DataFrame]
    rows: dict[str, int]
    days: list[date]

    def nothing(self) -> bool:
        return not self.lines and not any(self.rows.values())


def _found(spark: SparkSession, settings: Settings, user_id: str) -> Found:
    frames = _user_rows(spark, settings, user_id)
    rows = {name: frame.count() for name, frame in frames.items()}
    # From `events` and `daily_user_activity` both, so a run interrupted between the two is finished by the next.
    held = [frames[name] for name in (tables.EVENTS, tables.DAILY_USER_ACTIVITY) if rows.get(name)]
    days = sorted({row["event_date"] for frame in held for row in frame.select("event_date").distinct().collect()})
    return Found(_landing_lines(spark, settings, user_id), frames, rows, days)


def _pending(spark: SparkSession, settings: Settings) -> list[ForgetPlan]:
    """The planned requests not recorded yet (a run died midway). The plans of recorded ones are closed meanwhile,
    and a close that died before its purge is finished."""
    plans = peek(settings, tables.FORGET_PLANS, None) or []
    recorded = {row["request_id"] for row in peek(settings, tables.FORGET_REQUESTS, ["request_id"]) or []}
    if closed := [plan["request_id"] for plan in plans if plan["request_id"] in recorded]:
        _close(spark, settings, closed)
    elif has_tagged_commit(spark, settings, tables.FORGET_PLANS, TAG):
        purge(spark, settings, tables.FORGET_PLANS)
    return [_as_plan(plan) for plan in plans if plan["request_id"] not in recorded]


def _as_plan(row: dict) -> ForgetPlan:
    """A plan as `peek` reads it (a map as pairs, times without their zone: UTC)."""
    return ForgetPlan(**{**row, "rows_removed": dict(row["rows_removed"]),
                         "requested_at": row["requested_at"].replace(tzinfo=UTC)})  # fmt: skip


def _carry_out(spark: SparkSession, settings: Settings, plan: ForgetPlan, found: Found) -> dict:
    """Removes what `found` holds of the plan's user (all of what was planned, or what a run that died left), purges,
    records the request with the plan's counts and closes the plan; the request's summary."""
    for landed, digests in found.lines.items():
        _rewrite(spark, landed, digests, plan.request_id)
    _refuse_while_ingesting(spark, settings)
    with tagged_commits(spark, TAG + plan.request_id):
        _remove(spark, settings, plan.user_id, found)
    _refuse_while_ingesting(spark, settings)
    purged = {name: purge(spark, settings, name) for name in _unpurged(spark, settings)}
    summary = _summary(plan.request_id, plan, purged)
    request = ForgetRequest(
        plan.request_id, plan.requested_at, plan.requested_by, datetime.now(UTC), plan.rows_removed,
        plan.days_rebuilt, plan.landing_files_rewritten, plan.landing_lines_removed, tuple(summary["tables_purged"]),
        summary["files_purged"],
    )  # fmt: skip
    append_records(spark, settings, tables.FORGET_REQUESTS, [request])
    _close(spark, settings, [plan.request_id])
    return summary


def _close(spark: SparkSession, settings: Settings, request_ids: list[str]) -> None:
    """Deletes recorded requests' plans, the last place holding their users' ids, and purges that table (its delete
    is tagged until then, so a close that dies is finished by the next run)."""
    closing = F.col("request_id").isin(request_ids)
    with tagged_commits(spark, TAG + request_ids[0]):
        retry_on_conflict(lambda: delete(spark, settings, tables.FORGET_PLANS, closing))
    purge(spark, settings, tables.FORGET_PLANS)


def _refuse_while_ingesting(spark: SparkSession, settings: Settings) -> None:
    unfinished = state.unfinished_batches(settings)
    if unfinished:
        raise LakehouseError(
            f"ingest batch {unfinished[0]} is not finished: let the running `lakehouse ingest` end (or run it to "
            "finish an interrupted batch), then run forget-user again"
        )


def _landing_lines(spark: SparkSession, settings: Settings, user_id: str) -> dict[LandingFile, dict[int, str]]:
    """The user's lines in every landing file, taken or not: line numbers and the SHA-256 of each line, per file."""
    landing = tables.table_path(settings, tables.LANDING)
    if not folder_exists(spark, landing):
        return {}
    files = list_landing(spark, landing, settings.ingest.extensions)
    if not files:
        return {}
    line = F.col("value").cast("binary")
    numbered = number_lines(read_lines(spark, files))
    hits = numbered.where(owned_by(line, user_id, settings.ingest.user_id_paths)).select(
        "source_file", "line_number", F.sha2(line, 256).alias("digest")
    )
    by_path = {landed.path: landed for landed in files}
    found: dict[LandingFile, dict[int, str]] = defaultdict(dict)
    for row in hits.collect():
        found[by_path[row["source_file"]]][row["line_number"]] = row["digest"]
    return dict(found)


def _rewrite(spark: SparkSession, landed: LandingFile, digests: dict[int, str], request_id: str) -> None:
    """Replaces the landing file with its user lines blanked, compressed as before; its path, which is what ingest
    knows a file by, stays the same, so no later ingest takes it again."""
    compressed = landed.path.endswith(".gz")

    def blanked(data: bytes) -> bytes:
        kept = blank_lines(gzip.decompress(data) if compressed else data, digests)
        return gzip.compress(kept) if compressed else kept

    rewrite_file(spark, landed.location, blanked, request_id)


def _user_rows(spark: SparkSession, settings: Settings, user_id: str) -> dict[str, DataFrame]:
    """The user's rows in each table that exists (the gold tables' through `daily_user_activity`)."""
    found = {}
    for name in (tables.EVENTS, tables.EVENT_IDS, tables.DAILY_USER_ACTIVITY):
        stored = read(spark, settings, name)
        if stored is not None:
            found[name] = stored.where(F.col("user_id") == user_id)
    quarantine = read(spark, settings, tables.QUARANTINE)
    if quarantine is not None:
        found[tables.QUARANTINE] = quarantine.where(_quarantined_by(settings, user_id))
    return found


def _quarantined_by(settings: Settings, user_id: str) -> Column:
    return owned_by(quarantined_line(), user_id, settings.ingest.user_id_paths)


def _remove(spark: SparkSession, settings: Settings, user_id: str, found: Found) -> None:
    """Deletes the user's `events` and `quarantine` rows, then rebuilds the gold tables' days that held the user
    (from `events`, now without them: a day left without events ends up empty)."""
    # The ids first: a run interrupted after deleting them still finds the events, and deletes the rest.
    for name in (tables.EVENT_IDS, tables.EVENTS, tables.QUARANTINE):
        if found.rows.get(name):
            _delete(spark, settings, name, user_id)
    if found.days and tables.DAILY_USER_ACTIVITY in found.frames:
        retry_on_conflict(lambda: gold.rebuild(spark, settings, found.days, []))


def _delete(spark: SparkSession, settings: Settings, table: str, user_id: str) -> None:
    by_user = table in (tables.EVENTS, tables.EVENT_IDS)
    condition = (F.col("user_id") == user_id) if by_user else _quarantined_by(settings, user_id)
    retry_on_conflict(lambda: delete(spark, settings, table, condition))


def _unpurged(spark: SparkSession, settings: Settings) -> list[str]:
    """The tables whose log still holds a commit of this command: their old files may hold a forgotten user."""
    return [name for name in tables.PURGED if has_tagged_commit(spark, settings, name, TAG)]


def _summary(request_id: str | None, plan: ForgetPlan | None, purged: dict[str, int]) -> dict:
    """A request's summary: the counts of its plan (none: zeros) and what it purged."""
    return {
        "request_id": request_id,
        "rows_removed": {name: plan.rows_removed.get(name, 0) if plan else 0 for name in REMOVED},
        "days_rebuilt": plan.days_rebuilt if plan else 0,
        "landing_files_rewritten": plan.landing_files_rewritten if plan else 0,
        "landing_lines_removed": plan.landing_lines_removed if plan else 0,
        "tables_purged": sorted(purged),
        "files_purged": sum(purged.values()),
    }


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
