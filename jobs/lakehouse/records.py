"""The rows of the pipeline's own tables (ingest plans and runs, aggregate runs, validations, forget plans and
requests), one dataclass each: its Spark schema and its row are derived from its fields."""

from __future__ import annotations

import dataclasses
import typing
from datetime import date, datetime
from types import NoneType, UnionType
from typing import Annotated, Any

# A column of Spark's 32-bit `int` (a plain `int` field is a `long`).
Int32 = Annotated[int, "int"]
_SCALARS: dict[Any, str] = {
    bool: "boolean",
    int: "long",
    float: "double",
    str: "string",
    datetime: "timestamp",
    date: "date",
}


@dataclasses.dataclass(frozen=True)
class LandingFile:
    """A landed file. `path` (relative to the landing root) is its identity; `location` is what Spark reads; `uri` is
    how Spark names the file of the lines it read from `location`; `size` and `modified` (epoch ms; None in plans
    made before it was recorded) as listed."""

    path: str
    location: str
    uri: str
    size: int
    modified: int | None = None


class Record:
    """A row of one of the pipeline's tables, as a frozen dataclass."""

    @classmethod
    def schema(cls) -> str:
        """The Spark DDL schema of the record's table, from the field types."""
        return _struct_fields(cls)

    def row(self) -> tuple:
        """The record as a row of that schema."""
        return _row(self)


def _struct_fields(cls: type) -> str:
    hints = typing.get_type_hints(cls, include_extras=True)
    return ", ".join(f"{field.name} {_ddl(hints[field.name])}" for field in dataclasses.fields(cls))


def _ddl(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return args[1]
    if origin in (UnionType, typing.Union):
        (inner,) = [arg for arg in args if arg is not NoneType]
        return _ddl(inner)
    if origin in (list, tuple):
        return f"array<{_ddl(args[0])}>"
    if origin is dict:
        return f"map<{_ddl(args[0])}, {_ddl(args[1])}>"
    if dataclasses.is_dataclass(hint):
        nested = typing.get_type_hints(hint, include_extras=True)
        return "struct<" + ", ".join(f"{f.name}: {_ddl(nested[f.name])}" for f in dataclasses.fields(hint)) + ">"
    return _SCALARS[hint]


def _row(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return tuple(_row(getattr(value, field.name)) for field in dataclasses.fields(value))
    if isinstance(value, list | tuple):
        return [_row(item) for item in value]
    return value


@dataclasses.dataclass(frozen=True)
class IngestPlan(Record):
    """A planned ingest batch (`_state/ingest_batches`): the files it takes and everything its results depend on,
    fixed before any write."""

    batch: int
    run_id: str
    started_at: datetime
    events_version: int
    files: tuple[LandingFile, ...]


@dataclasses.dataclass(frozen=True)
class IngestRun(Record):
    """A finished ingest batch (`ingest_runs`): its accounting, lines read = valid + quarantined + duplicates."""

    run_id: str | None
    batch: int | None
    files: tuple[str, ...]
    bytes: int
    lines_read: int
    valid: int
    quarantined: int
    duplicates: int
    reasons: dict[str, int]
    started_at: datetime | None
    finished_at: datetime | None
    event_dates: tuple[date, ...]
    # Files that changed since the batch was planned: not read, left for a later batch.
    deferred: tuple[str, ...] = ()

    def summary(self) -> dict:
        """What `lakehouse ingest` prints of the batch: its figures, the number of files, dates as ISO text (a run
        that took nothing has no times; `deferred` only when a file was)."""
        figures = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        figures["files"] = len(self.files)
        if self.started_at is None:
            del figures["started_at"], figures["finished_at"]
        if not self.deferred:
            del figures["deferred"]
        return json_ready(figures)


@dataclasses.dataclass(frozen=True)
class AggregateRun(Record):
    """An aggregate run (`_state/aggregate_runs`): the days and months it rebuilt and the ingest batches it covered."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    days: tuple[date, ...]
    batches: tuple[int, ...]
    user_activity_rows: int
    event_stats_rows: int
    months: tuple[date, ...]

    def summary(self, monthly_activity_rows: int, seconds: float) -> dict:
        """What `lakehouse aggregate` prints of the run (months as YYYY-MM)."""
        return {
            "run_id": self.run_id,
            "days": [day.isoformat() for day in self.days],
            "batches": list(self.batches),
            "user_activity_rows": self.user_activity_rows,
            "event_stats_rows": self.event_stats_rows,
            "months": [month.isoformat()[:7] for month in self.months],
            "monthly_activity_rows": monthly_activity_rows,
            "seconds": seconds,
        }


@dataclasses.dataclass(frozen=True)
class Validation(Record):
    """One run of a table's quality suite (`_quality/validations`): its scope, outcome and per-expectation results
    (`result`, JSON), by ingest or by validate."""

    validation_id: str
    table_name: str
    scope: str
    validated_at: datetime
    success: bool
    rows: int
    failed: tuple[str, ...]
    result: str
    docs: str
    checked_by: str
    suite_digest: str | None


@dataclasses.dataclass(frozen=True)
class ForgetPlan(Record):
    """A `forget-user` request under way (`_state/forget_plans`): the user and what the lake held of them, counted
    before anything changed, so a run that dies midway is finished by the next with these counts; deleted and purged
    once the request is recorded."""

    request_id: str
    requested_at: datetime
    requested_by: str
    user_id: str
    rows_removed: dict[str, int]
    days_rebuilt: Int32
    landing_files_rewritten: Int32
    landing_lines_removed: int


@dataclasses.dataclass(frozen=True)
class ForgetRequest(Record):
    """One `forget-user` request (`_state/forget_requests`): who asked, when, and counts only, never the user."""

    request_id: str
    requested_at: datetime
    requested_by: str
    finished_at: datetime
    rows_removed: dict[str, int]
    days_rebuilt: Int32
    landing_files_rewritten: Int32
    landing_lines_removed: int
    tables_purged: tuple[str, ...]
    files_purged: int


def json_ready(values: dict) -> dict:
    """`values` with dates and times (alone or in lists) as ISO text."""
    return {key: [_iso(item) for item in value] if isinstance(value, list | tuple) else _iso(value)
            for key, value in values.items()}  # fmt: skip


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, date | datetime) else value
