"""Synthetic event history written straight into a lake's `events` Delta table with Spark column expressions (no
JSON, no ingest), for benchmarks that need a big lake fast.

Each day's events are split over (type, hour) groups by fixed shares: Zipf-like over the types, a daily curve over
the hours. Every group becomes one run of rows in one task, so a write leaves one file per type, date and hour (as
an ingest batch does) without shuffling the rows. Within a group the rows are random but deterministic: hashes of
(seed, day, group, row), so a day always gets the same rows however the days are split into writes."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.generate import COUNTRIES, REALISTIC_TYPES, TYPE_ZIPF
from lakehouse.ingest import INDEXED_FROM_EVENTS, id_rows
from lakehouse.storage import append

EVENT_COLUMNS = (
    ("event_id", "string"), ("event_type", "string"), ("event_ts", "timestamp"), ("event_date", "date"),
    ("event_hour", "int"), ("user_id", "string"), ("country", "string"), ("service", "string"),
    ("attributes", "string"), ("meta", "string"), ("source_file", "string"), ("ingested_at", "timestamp"),
)  # fmt: skip
GROUP_SCHEMA = (
    "day long, event_date date, event_hour int, group_id int, event_type string, service string, "
    "source_file string, ingested_at timestamp, events int"
)
EPOCH = date(1970, 1, 1)
HOUR_MS = 3_600_000
UNIT = 1 << 53  # uniform draws are 53-bit slices of a hash, scaled to [0, 1)
USER_SKEW = 3.0  # user rank = floor(users * u ** USER_SKEW): a few heavy users, a long tail
ANONYMOUS_SHARE = 0.05
NO_COUNTRY_SHARE = 0.02
DAILY_SWING = 0.5  # hourly volume is 1 ± DAILY_SWING of the mean, peaking at PEAK_HOUR UTC
PEAK_HOUR = 15
ROWS_PER_TASK = 500_000
MAX_ROWS_PER_WRITE = 5_000_000
MAX_DAYS_PER_WRITE = 10  # so a long history takes several commits, and Delta checkpoints it as it would a real one


@dataclass(frozen=True)
class History:
    """`days` days of synthetic events from `start`, `events_per_day` each."""

    start: date
    days: int
    events_per_day: int
    types: int = 20
    users: int = 1_000_000
    seed: int = 7

    def days_list(self) -> list[date]:
        """The days this history covers."""
        return [self.start + timedelta(days=offset) for offset in range(self.days)]


@dataclass(frozen=True)
class Written:
    """What `write_history` wrote: rows, Delta commits and seconds."""

    rows: int
    commits: int
    seconds: float


def write_history(spark: SparkSession, settings: Settings, history: History) -> Written:
    """Appends the days of `history` to `events` (and their ids to `_state/event_ids`) under the lake root of
    `settings`, a chunk of days per commit, partitioned by type, date and hour like ingest writes them."""
    started, commits = time.perf_counter(), 0
    per_write = max(1, min(MAX_DAYS_PER_WRITE, MAX_ROWS_PER_WRITE // history.events_per_day))
    for first in range(0, history.days, per_write):
        frame = history_frame(spark, history, first, min(per_write, history.days - first)).persist()
        append(frame, settings, tables.EVENTS)
        # Indexed as ingest indexes what it writes, so that a later ingest deduplicates against it at once.
        append(id_rows(frame, INDEXED_FROM_EVENTS), settings, tables.EVENT_IDS)
        frame.unpersist()
        commits += 1
    return Written(history.days * history.events_per_day, commits, time.perf_counter() - started)


def history_frame(spark: SparkSession, history: History, first: int, days: int) -> DataFrame:
    """The `events` rows of days `first` .. `first + days - 1` of `history` (0 is `history.start`), grouped by
    type, date and hour within each task."""
    groups = [row for offset in range(first, first + days) for row in _groups(history, offset)]
    tasks = max(2, math.ceil(days * history.events_per_day / ROWS_PER_TASK))
    runs = spark.createDataFrame(groups, GROUP_SCHEMA).repartition(tasks).sortWithinPartitions("group_id", "day")
    rows = runs.select("*", F.explode(F.sequence(F.lit(0), F.col("events") - 1)).alias("n"))
    return _events(rows, _Draws(history.seed), history.users)


def day_shares(history: History) -> dict[tuple[int, int], int]:
    """Events per (type rank, hour) of one day: Zipf over the types, a daily curve over the hours, rounded so
    that they add up to `events_per_day` exactly."""
    type_weights = [1 / (rank + 1) ** TYPE_ZIPF for rank in range(history.types)]
    hour_weights = [1 + DAILY_SWING * math.cos(2 * math.pi * (hour - PEAK_HOUR) / 24) for hour in range(24)]
    total = sum(type_weights) * sum(hour_weights)
    exact = {
        (rank, hour): history.events_per_day * tw * hw / total
        for rank, tw in enumerate(type_weights)
        for hour, hw in enumerate(hour_weights)
    }
    counts = {key: math.floor(value) for key, value in exact.items()}
    short = history.events_per_day - sum(counts.values())
    for key in sorted(exact, key=lambda k: counts[k] - exact[k])[:short]:
        counts[key] += 1
    return counts


def type_specs(types: int) -> list[tuple[str, str]]:
    """(name, service) per type rank: the generator's realistic types, then `feature_NNN_viewed` ones."""
    specs = [(name, service) for name, _, service, _ in REALISTIC_TYPES[:types]]
    return specs + [(f"feature_{k:03d}_viewed", "service_web") for k in range(1, types - len(specs) + 1)]


def _groups(history: History, offset: int) -> list[tuple]:
    """The group rows (GROUP_SCHEMA) of day `offset` of `history`: one per type and hour that has events."""
    day = history.start + timedelta(days=offset)
    specs = type_specs(history.types)
    rows = []
    for (rank, hour), events in day_shares(history).items():
        if events:
            ingested = datetime(day.year, day.month, day.day, hour, 5, tzinfo=UTC) + timedelta(days=1)
            source = f"history/{day + timedelta(days=1)}/events-{day:%Y%m%d}-{hour:02d}.jsonl"
            rows.append(((day - EPOCH).days, day, hour, rank * 24 + hour, *specs[rank], source, ingested, events))
    return rows


def _events(rows: DataFrame, draw: _Draws, users: int) -> DataFrame:
    """Group rows exploded to one row per event (`n`), turned into the exact `events` columns."""
    user_rank = F.floor(F.pow(draw.uniform("user"), USER_SKEW) * users)
    user = F.when(draw.uniform("anonymous") >= ANONYMOUS_SHARE, user_rank)
    drawn = rows.select(
        "*",
        (F.col("day") * 24 * HOUR_MS + F.col("event_hour") * HOUR_MS + F.floor(draw.uniform("ts") * HOUR_MS)).alias(
            "ts_ms"
        ),
        user.alias("user_rank"),
        F.floor(draw.uniform("value") * 1000).cast("int").alias("value"),
    )
    rank = F.col("user_rank")
    # A user keeps one country; anonymous events draw theirs per event.
    country_draw = F.when(rank.isNull(), draw.uniform("country")).otherwise(draw.uniform("user_country", rank))
    derived = {
        "event_id": draw.uuid(draw.hash("id1"), draw.hash("id2")),
        "event_ts": F.timestamp_millis("ts_ms"),
        "user_id": F.when(rank.isNotNull(), draw.uuid(draw.hash("user1", rank), draw.hash("user2", rank))),
        "country": F.when(draw.uniform("no_country") >= NO_COUNTRY_SHARE, _weighted(country_draw, COUNTRIES)),
        "attributes": F.concat(
            F.lit('{"item_id":"item-'), F.col("value").cast("string"), F.lit('","quantity":'),
            (F.col("value") % 7 + 1).cast("string"), F.lit("}"),
        ),
        "meta": F.concat(
            F.lit('{"created_at":'), F.col("ts_ms").cast("string"), F.lit(',"service":"'), "service", F.lit('"}')
        ),
    }  # fmt: skip
    with_derived = drawn.select("*", *[column.alias(name) for name, column in derived.items()])
    return with_derived.select(*[F.col(name).cast(kind) for name, kind in EVENT_COLUMNS])


def _weighted(uniform: Column, weights: dict[str, float]) -> Column:
    """The key of `weights` a uniform draw in [0, 1) picks, each with its share of the total weight."""
    keys, total = list(weights), sum(weights.values())
    bounds = [bound / total for bound in accumulate(weights.values())]
    choice = F.when(uniform < bounds[0], F.lit(keys[0]))
    for key, bound in zip(keys[1:-1], bounds[1:-1], strict=True):
        choice = choice.when(uniform < bound, F.lit(key))
    return choice.otherwise(F.lit(keys[-1]))


class _Draws:
    """Deterministic pseudo-random columns: hashes of (seed, purpose, day, group, row), or of given keys."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def hash(self, purpose: str, *keys: Column) -> Column:
        """A 64-bit hash of the event row (or of `keys`) for `purpose`."""
        return F.xxhash64(F.lit(self.seed), F.lit(purpose), *(keys or ("day", "group_id", "n")))

    def uniform(self, purpose: str, *keys: Column) -> Column:
        """A uniform double in [0, 1)."""
        return F.pmod(self.hash(purpose, *keys), F.lit(UNIT)) / float(UNIT)

    @staticmethod
    def uuid(high: Column, low: Column) -> Column:
        """A uuid4-formatted string from two 64-bit hashes: each group is a bit field with a guard bit that fixes
        its width in hex digits (the version and variant digits are set as in a uuid4)."""

        def field(bits: Column, shift: int, width: int, guard: int) -> Column:
            return F.hex(F.shiftrightunsigned(bits, shift).bitwiseAND(F.lit((1 << width) - 1)).bitwiseOR(F.lit(guard)))

        dash = F.lit("-")
        return F.lower(
            F.concat(
                field(high, 0, 31, 1 << 31), dash, field(high, 31, 15, 1 << 15), dash,
                field(high, 46, 12, 0x4000), dash, field(low, 0, 14, 0x8000), dash, field(low, 14, 47, 1 << 47),
            )
        )  # fmt: skip
