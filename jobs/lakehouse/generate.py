"""Synthetic landing files for `lakehouse generate`: skewed, realistic events plus duplicates and bad lines of
every DESIGN §1 reason, written fast with the standard library only (deterministic for a given seed)."""

from __future__ import annotations

import gzip
import json
import math
import random
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any, BinaryIO

MAX_LINE_BYTES = 1024 * 1024
COUNTRIES = {"US": 30, "DE": 20, "GB": 15, "FR": 12, "ES": 9, "IT": 8, "NL": 6}
ANONYMOUS_SHARE = 0.05
USER_IN_META_SHARE = 0.10  # of identified events
LATE_SHARE = 0.03
LATE_MS = (60_000, 3 * 86_400_000)
CRLF_SHARE = 0.003
BOM_FILE_SHARE = 0.15
BLANK_CHUNK_SHARE = 0.25
CHUNK_LINES = 8192  # small enough to keep big allocations (and their page faults) off the hot path
META_TAIL_BITS = 4
RESERVOIR_LINES = 10_000
HOUR_MS = 3_600_000
EARLIEST_START = date(2000, 1, 4)  # late events reach 3 days back; the contract rejects anything before 2000
BLANKS = ("", "  ", "\t", " \r")
UUID_VARIANT = {c: "89ab"[int(c, 16) % 4] for c in "0123456789abcdef"}

# (name, relative popularity, emitting service, attributes); the first eight are the ones every run must have.
REALISTIC_TYPES: tuple[tuple[str, float, str, tuple[str, ...]], ...] = (
    ("page_viewed", 1.0, "service_web", ("url", "referrer", "duration_ms")),
    ("search_performed", 0.35, "service_search", ("query", "results")),
    ("profile_viewed", 0.3, "service_web", ("profile_id",)),
    ("login", 0.2, "service_accounts", ("method", "mfa")),
    ("item_added_to_cart", 0.15, "service_checkout", ("item_id", "quantity", "price")),
    ("logout", 0.12, "service_accounts", ("session_seconds",)),
    ("order_placed", 0.05, "service_checkout", ("order_id", "amount", "currency", "items")),
    ("user_created", 0.02, "service_accounts", ("name", "signup_source", "marketing_opt_in")),
    ("item_viewed", 0.5, "service_web", ("item_id", "category")),
    ("item_removed_from_cart", 0.04, "service_checkout", ("item_id", "quantity")),
    ("checkout_started", 0.07, "service_checkout", ("items", "cart_value", "currency")),
    ("payment_failed", 0.01, "service_checkout", ("reason", "amount", "currency")),
    ("notification_sent", 0.09, "service_notifications", ("channel", "template")),
    ("notification_clicked", 0.03, "service_notifications", ("channel", "template")),
    ("video_played", 0.06, "service_mobile", ("video_id", "position_s", "quality", "autoplay")),
    ("review_submitted", 0.01, "service_web", ("item_id", "rating", "text")),
    ("file_uploaded", 0.01, "service_web", ("file",)),
    ("share_clicked", 0.02, "service_mobile", ("target", "item_id")),
    ("subscription_started", 0.006, "service_checkout", ("plan", "price", "currency", "trial")),
    ("subscription_cancelled", 0.003, "service_checkout", ("plan", "reason")),
    ("password_reset_requested", 0.004, "service_accounts", ("channel",)),
    ("email_verified", 0.01, "service_accounts", ("delay_hours",)),
    ("experiment_assigned", 0.08, "service_web", ("experiment", "variant")),
    ("error_shown", 0.02, "service_mobile", ("error_code", "screen", "tags")),
)
GENERATED_VERBS = ("clicked", "viewed", "toggled", "dismissed", "completed", "opened")
GENERATED_ATTRS = (
    "element",
    "position",
    "ratio",
    "enabled",
    "context",
    "labels",
    "count",
    "score",
    "viewport",
    "source",
    "values",
    "dismissed",
)
SERVICE_META = {
    "service_web": ("", ',"version":"1.2.3"', ',"version":"1.3.0"'),
    "service_mobile": (
        ',"app_version":"5.3.0","platform":"ios"',
        ',"app_version":"5.2.1","platform":"android"',
        ',"app_version":"5.3.0","platform":"android"',
    ),
    "service_search": ("", ',"version":"2.4.1"'),
    "service_accounts": ("", ',"version":"0.9.7","region":"eu-west-1"'),
    "service_checkout": ("", ',"version":"3.0.2"'),
    "service_notifications": ("", ',"version":"1.0.0","batch":true'),
}
UNIQUE_ATTRS = {"order_id": "ord_"}  # per-event values (a pool would repeat order ids)
TYPE_ZIPF = 1.1
USER_ZIPF = 0.8

FIRST_NAMES = (
    "John",
    "Anna",
    "José",
    "Zoë",
    "Łukasz",
    "François",
    "Søren",
    "Émilie",
    "Jürgen",
    "Chloé",
    "Mehmet",
    "Aoife",
    "Giulia",
    "Pieter",
    "Olivia",
    "Noah",
    "Mia",
    "Liam",
    "Sofía",
    "Matteo",
    "Siobhán",
    "Kenji",
)
QUERIES = (
    "running shoes",
    "iphone 15 case",
    'the "best" coffee grinder',
    "café au lait mug",
    "größe 42 sneaker",
    "usb-c cable 2m",
    "lego",
    "C:\\path\\to\\file",
    "winter jacket",
    "tv 55 inch",
    "ñoquis",
    "gift ideas",
    "bluetooth headphones",
    "yoga mat",
    "",
)
CATEGORIES = ("electronics", "fashion", "home", "garden", "toys", "books", "sports", "beauty")
REFERRERS = (
    None,
    None,
    "https://www.google.com/",
    "https://t.co/abc",
    "android-app://com.google.android.gm/",
    "https://www.bing.com/search?q=shop&form=QBLH",
)
URL_PATHS = ("/", "/cart", "/checkout", "/help/returns", "/account/settings", "/blog/2024/spring-sale")


@dataclass(frozen=True)
class GenerateSummary:
    """What one `generate` call wrote; `lines == valid + duplicates + sum(bad.values())`."""

    files: list[str]
    lines: int
    valid: int
    duplicates: int
    bad: dict[str, int]


@dataclass(frozen=True)
class _Hour:
    path: Path
    start_ms: int
    first_line: int  # global index of the hour's first line
    lines: int


TypeRow = tuple[str, list[str], int, str, list[str]]
UserRow = tuple[str, str, str]


@dataclass(frozen=True)
class _World:
    """Everything drawn once per run, pre-rendered so that an event is a few look-ups and one f-string."""

    # ('","type":"<name>","attributes":{', attribute fragments (JSON members, no braces), log2 of their count,
    #  '"order_id":"ord_' or "", meta tails (service and extra members, closing meta and the event))
    types: list[TypeRow]
    type_cw: list[float]
    users: list[UserRow]  # ('"user_id":"…",', ',"country":"DE"', ',"user_id":"…","country":"DE"')
    user_cw: list[float]


@dataclass
class _Tally:
    valid: int = 0
    duplicates: int = 0
    bad: Counter[str] = field(default_factory=Counter)


def generate(
    out_dir: str | Path,
    events: int,
    days: int = 1,
    start: date = date(2024, 1, 1),
    users: int = 10_000,
    types: int = 300,
    bad_rate: float = 0.0,
    dup_rate: float = 0.0,
    seed: int = 0,
    compress: bool = False,
) -> GenerateSummary:
    """Write `events` lines spread over `days` days of hourly files under `out_dir`; see DESIGN §7."""
    _check_args(events, days, start, users, types, bad_rate, dup_rate)
    rng = random.Random(seed)
    hours = _plan_hours(Path(out_dir), events, days, start, compress, rng)
    clashes = [str(h.path) for h in hours if h.path.exists()]
    if clashes:
        raise FileExistsError(f"{clashes[0]} already exists: generate into an empty directory")
    _make_folder(Path(out_dir))
    # Line 0 stays a fresh event so that every duplicate has an earlier line to copy.
    n_bad = min(_bad_total(events, bad_rate), max(0, events - 1))
    n_dup = min(round(events * dup_rate), max(0, events - 1 - n_bad))
    special = rng.sample(range(1, events), n_dup + n_bad) if events else []
    duplicates, bad = sorted(special[:n_dup]), sorted(special[n_dup:])
    schedule = iter(_bad_schedule(n_bad, events, rng))
    world = _build_world(rng, events, users, types)
    tally, reservoir = _Tally(), []
    for hour in hours:
        _make_folder(hour.path.parent)
        with _open(hour.path, compress) as out:
            for first, stop in _chunks(hour):
                text = _chunk_text(first, stop, duplicates, bad, schedule, hour, world, rng, tally, reservoir)
                out.write(text.encode("utf-8", "surrogateescape"))  # surrogates stand for the not_utf8 bytes
    lines = tally.valid + tally.duplicates + sum(tally.bad.values())
    return GenerateSummary(
        sorted(str(h.path) for h in hours), lines, tally.valid, tally.duplicates, dict(sorted(tally.bad.items()))
    )


def _check_args(events: int, days: int, start: date, users: int, types: int, bad_rate: float, dup_rate: float) -> None:
    problems = [
        (events < 0, f"events must be >= 0, got {events}"),
        (days < 1, f"days must be >= 1, got {days}"),
        (
            start < EARLIEST_START,
            f"start must be on or after {EARLIEST_START} (events before 2000 are invalid), got {start}",
        ),
        (
            (date.max - start).days < days - 1,
            f"{days} days from {start} end after {date.max}, the calendar's last day: give fewer days or start earlier",
        ),
        (users < 1, f"users must be >= 1, got {users}"),
        (types < 8, f"types must be >= 8 (the built-in event types), got {types}"),
        (not 0 <= bad_rate < 1, f"bad_rate must be in [0, 1), got {bad_rate}"),
        (not 0 <= dup_rate < 1, f"dup_rate must be in [0, 1), got {dup_rate}"),
        (not bad_rate + dup_rate < 1, f"bad_rate + dup_rate must be < 1, got {bad_rate + dup_rate}"),
    ]
    for failed, message in problems:
        if failed:
            raise ValueError(message)


def _make_folder(folder: Path) -> None:
    """Creates `folder` and its parents; a file in the way, or any other reason it cannot, as an OSError whose message
    names the folder."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        file = next((path for path in (folder, *folder.parents) if path.exists() and not path.is_dir()), folder)
        raise NotADirectoryError(f"cannot write into {folder}: {file} is a file, not a folder") from None
    except OSError as exc:
        raise type(exc)(f"cannot create folder {folder}: {exc.strerror}") from None


def _plan_hours(out: Path, events: int, days: int, start: date, compress: bool, rng: random.Random) -> list[_Hour]:
    """Hourly files with a mild day/night swing; hours that get no line get no file."""
    first = datetime(start.year, start.month, start.day, tzinfo=UTC)
    weights = [(1 + 0.2 * math.sin(2 * math.pi * (h % 24 - 9) / 24)) * rng.uniform(0.9, 1.1) for h in range(days * 24)]
    hours, offset = [], 0
    for h, count in enumerate(_apportion(events, weights)):
        at = first + timedelta(hours=h)
        name = f"events-{at:%Y%m%d-%H}.jsonl" + (".gz" if compress else "")
        if count:
            hours.append(_Hour(out / f"{at:%Y-%m-%d}" / name, int(at.timestamp()) * 1000, offset, count))
        offset += count
    return hours


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Largest-remainder split of `total` by `weights`, so counts add up exactly."""
    scale = total / sum(weights)
    shares = [w * scale for w in weights]
    counts = [int(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: counts[i] - shares[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _bad_total(events: int, bad_rate: float) -> int:
    # A run of any size with bad lines must exercise the size limit, hence at least one line.
    if bad_rate > 0 and events >= 1000:
        return max(1, round(events * bad_rate))
    return round(events * bad_rate)


def _bad_schedule(n_bad: int, events: int, rng: random.Random) -> list[str]:
    """Reasons for the bad lines in order: even across reasons, `too_large` rare (≤ 1 per 1000) but present."""
    n_large = n_bad // 1000
    if n_bad and events >= 1000:
        n_large = max(1, n_large)
    others = [reason for reason in _BAD_VARIANTS if reason != "too_large"]
    schedule = [others[i % len(others)] for i in range(n_bad - n_large)] + ["too_large"] * n_large
    rng.shuffle(schedule)
    return schedule


@contextmanager
def _open(path: Path, compress: bool) -> Iterator[BinaryIO]:
    with open(path, "xb") as raw:  # "x": never overwrite, even a file that appeared after the up-front check
        if not compress:
            yield raw
            return
        # Level 1: twice as fast as the default for ~20% larger files; mtime=0 keeps reruns byte-identical.
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as packed:
            yield packed


def _chunks(hour: _Hour) -> Iterator[tuple[int, int]]:
    stop = hour.first_line + hour.lines
    for first in range(hour.first_line, stop, CHUNK_LINES):
        yield first, min(first + CHUNK_LINES, stop)


# --- the world: types, users and their pre-rendered JSON fragments ---------------------------------------------


def _build_world(rng: random.Random, events: int, users: int, types: int) -> _World:
    specs = _type_specs(types)
    type_weights = [weight for _, weight, _, _ in specs]
    user_weights = [1 / (rank + 1) ** USER_ZIPF for rank in range(users)]
    user_ids = _uuids(users, rng)
    countries = rng.choices(list(COUNTRIES), weights=list(COUNTRIES.values()), k=users)
    popular_users = rng.choices(user_ids, weights=user_weights, k=min(users, 4096))
    per_weight = events / sum(type_weights)
    rows = []
    for i, (name, weight, service, attrs) in enumerate(specs):
        # About one pool entry per 50 events of the type, as a power of two so that one getrandbits picks it.
        pool_bits = min(12, max(3, math.ceil(math.log2(max(1.0, weight * per_weight / 50)))))
        rows.append(
            (
                f'","type":"{name}","attributes":{{',
                _fragments(rng, attrs, 2**pool_bits, popular_users),
                pool_bits,
                "".join(f'"{a}":"{UNIQUE_ATTRS[a]}' for a in attrs if a in UNIQUE_ATTRS),
                _meta_tails(service, random.Random(i)),
            )
        )
    return _World(
        types=rows,
        type_cw=list(accumulate(type_weights)),
        users=[
            (f'"user_id":"{u}",', f',"country":"{c}"', f',"user_id":"{u}","country":"{c}"')
            for u, c in zip(user_ids, countries, strict=True)
        ],
        user_cw=list(accumulate(user_weights)),
    )


def _type_specs(types: int) -> list[tuple[str, float, str, tuple[str, ...]]]:
    """Built-in types first, then `feature_NNN_<verb>` ones with a Zipf tail and 1-4 attributes fixed by index."""
    specs = list(REALISTIC_TYPES[:types])
    services = sorted(SERVICE_META)
    for i in range(len(specs), types):
        type_rng = random.Random(i)  # independent of the seed: a type keeps its attributes across runs
        k = i - len(REALISTIC_TYPES) + 1
        attrs = tuple(type_rng.sample(GENERATED_ATTRS, type_rng.randint(1, 4)))
        name = f"feature_{k:03d}_{GENERATED_VERBS[k % len(GENERATED_VERBS)]}"
        specs.append((name, 1 / (i + 1) ** TYPE_ZIPF, type_rng.choice(services), attrs))
    return specs


def _fragments(rng: random.Random, attrs: tuple[str, ...], size: int, users: list[str]) -> list[str]:
    """A pool of rendered attribute sets for one type; big enough to look varied, small enough to build fast."""
    pooled = [a for a in attrs if a not in UNIQUE_ATTRS]
    return [",".join(f'"{a}":{_ATTR_VALUES[a](rng, users)}' for a in pooled) for _ in range(size)]


def _meta_tails(service: str, type_rng: random.Random) -> list[str]:
    """Meta members after `created_at`: mostly the type's own service, sometimes a client emitting it too."""
    tails = []
    for _ in range(2**META_TAIL_BITS):
        emitter = service if type_rng.random() < 0.85 else type_rng.choice(("service_web", "service_mobile"))
        tails.append(f',"service":"{emitter}"{type_rng.choice(SERVICE_META[emitter])}}}}}')
    return tails


def _j(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _money(rng: random.Random, high: float) -> str:
    # Rendered by hand: a JSON number with exactly two decimals, as a payment system would send it.
    return f"{rng.lognormvariate(math.log(high / 10), 0.8):.2f}"


_ATTR_VALUES: dict[str, Callable[[random.Random, list[str]], str]] = {
    "url": lambda r, _: _j(
        r.choice(
            (
                f"/products/sku-{r.randint(1, 50_000):05d}",
                f"/category/{r.choice(CATEGORIES)}?page={r.randint(1, 9)}",
                r.choice(URL_PATHS),
            )
        )
    ),
    "referrer": lambda r, _: _j(r.choice(REFERRERS)),
    "duration_ms": lambda r, _: str(int(r.expovariate(1 / 8000))),
    "query": lambda r, _: _j(r.choice(QUERIES)),
    "results": lambda r, _: str(r.choice((0, r.randint(1, 40), r.randint(40, 5000)))),
    "profile_id": lambda r, users: _j(r.choice(users)),
    "method": lambda r, _: _j(r.choices(("password", "google", "apple", "sso", "magic_link"), (50, 25, 10, 10, 5))[0]),
    "mfa": lambda r, _: _j(r.random() < 0.3),
    "session_seconds": lambda r, _: str(int(r.expovariate(1 / 900))),
    "item_id": lambda r, _: _j(f"sku-{int(50_000 * r.random() ** 3):05d}"),
    "quantity": lambda r, _: str(r.choices((1, 2, 3, 4, 10), (70, 18, 7, 4, 1))[0]),
    "price": lambda r, _: _money(r, 60),
    "amount": lambda r, _: _money(r, 120),
    "currency": lambda r, _: _j(r.choices(("EUR", "USD", "GBP"), (55, 30, 15))[0]),
    "items": lambda r, _: str(r.randint(1, 8)),
    "cart_value": lambda r, _: _money(r, 150),
    "name": lambda r, _: _j(r.choice(FIRST_NAMES)),
    "signup_source": lambda r, _: _j(r.choice(("organic", "ads", "referral", "partner"))),
    "marketing_opt_in": lambda r, _: _j(r.random() < 0.4),
    "category": lambda r, _: _j(r.choice(CATEGORIES)),
    "reason": lambda r, _: _j(r.choice(("card_declined", "insufficient_funds", "too_expensive", "timeout"))),
    "channel": lambda r, _: _j(r.choice(("email", "push", "sms"))),
    "template": lambda r, _: _j(
        f"tpl_{r.choice(('welcome', 'cart_reminder', 'weekly_digest', 'promo'))}_v{r.randint(1, 3)}"
    ),
    "video_id": lambda r, _: _j(f"vid_{r.randint(1, 9999):04d}"),
    "position_s": lambda r, _: str(r.randint(0, 3600)),
    "quality": lambda r, _: _j(r.choice(("360p", "720p", "1080p", "4k"))),
    "autoplay": lambda r, _: _j(r.random() < 0.5),
    "rating": lambda r, _: str(r.choices((1, 2, 3, 4, 5), (5, 5, 10, 30, 50))[0]),
    "text": lambda r, _: _j(
        r.choice(("Great!", "Arrived late 😞", "Qualität top, gerne wieder", "meh", '5/5 "would" buy'))
    ),
    "file": lambda r, _: _j(
        {
            "name": r.choice(("cv.pdf", "photo.jpg", "notes.txt")),
            "size_bytes": r.randint(1, 10**8),
            "mime": r.choice(("application/pdf", "image/jpeg", "text/plain")),
        }
    ),
    "target": lambda r, _: _j(r.choice(("whatsapp", "email", "copy_link", "facebook"))),
    "plan": lambda r, _: _j(r.choice(("basic", "plus", "pro"))),
    "trial": lambda r, _: _j(r.random() < 0.6),
    "delay_hours": lambda r, _: str(int(r.expovariate(1 / 6))),
    "experiment": lambda r, _: _j(f"exp_{r.randint(1, 20):02d}"),
    "variant": lambda r, _: _j(r.choice(("control", "a", "b"))),
    "error_code": lambda r, _: str(r.choice((400, 401, 404, 409, 500, 503))),
    "screen": lambda r, _: _j(r.choice(("home", "cart", "checkout", "profile"))),
    "tags": lambda r, _: _j(r.sample(("network", "retry", "fatal", "ui", "payment"), r.randint(0, 3))),
    "element": lambda r, _: _j(r.choice(("button", "link", "banner", "tab", "card"))),
    "position": lambda r, _: str(r.randint(0, 20)),
    "ratio": lambda r, _: _j(round(r.random(), 3)),
    "enabled": lambda r, _: _j(r.random() < 0.5),
    "context": lambda r, _: _j({"section": r.choice(("header", "footer", "feed")), "index": r.randint(0, 9)}),
    "labels": lambda r, _: _j(r.sample(("new", "sale", "beta", "promo"), r.randint(0, 2))),
    "count": lambda r, _: str(r.randint(0, 1000)),
    "score": lambda r, _: _j(round(r.gauss(0.5, 0.2), 4)),
    "viewport": lambda r, _: _j({"w": r.choice((375, 414, 768, 1280, 1920)), "h": r.choice((667, 896, 1024, 1080))}),
    "source": lambda r, _: _j(r.choice(("web", "ios", "android"))),
    "values": lambda r, _: _j([r.randint(0, 99) for _ in range(r.randint(1, 4))]),
    "dismissed": lambda r, _: _j(r.random() < 0.2),
}


def _uuids(n: int, rng: random.Random) -> list[str]:
    """`n` random uuid4-format strings from one bulk draw (the version and variant digits set as uuid4 has them)."""
    h = rng.randbytes(16 * n).hex()
    v = UUID_VARIANT
    ids = []
    for i in range(0, 32 * n, 32):
        ids.append(
            f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-{v[h[i + 16]]}{h[i + 17 : i + 20]}-"
            f"{h[i + 20 : i + 32]}"
        )
    return ids


# --- lines ---------------------------------------------------------------------------------------------------


def _chunk_text(
    first: int,
    stop: int,
    duplicates: list[int],
    bad: list[int],
    schedule: Iterator[str],
    hour: _Hour,
    world: _World,
    rng: random.Random,
    tally: _Tally,
    reservoir: list[str],
) -> str:
    """Lines `first`..`stop` of the run as file text: fresh events, with duplicates and bad lines at their places."""
    dup_at = set(_between(duplicates, first, stop))
    bad_at = set(_between(bad, first, stop))
    valid = _valid_lines(stop - first - len(dup_at) - len(bad_at), world, rng, hour.start_ms)
    lines: list[str] = []
    used = 0
    for position in sorted(dup_at | bad_at):
        take = position - first - len(lines)
        lines += valid[used : used + take]
        used += take
        if position in dup_at:
            lines.append(_duplicate(valid, used, reservoir, rng))
        else:
            reason = next(schedule)
            lines.append(_bad_line(reason, world, rng, hour.start_ms))
            tally.bad[reason] += 1
    lines += valid[used:]
    tally.valid += len(valid)
    tally.duplicates += len(dup_at)
    _refill(reservoir, valid, rng)
    fresh_file_start = first == hour.first_line and first not in dup_at | bad_at
    return _file_text(lines, fresh_file_start, rng)


def _between(positions: list[int], first: int, stop: int) -> list[int]:
    return positions[bisect_left(positions, first) : bisect_left(positions, stop)]


def _duplicate(valid: list[str], used: int, reservoir: list[str], rng: random.Random) -> str:
    # Half from this file (a client retry), half from earlier ones (a re-sent backlog). Line 0 of a run is never
    # special, so there is always something to copy.
    if used and (not reservoir or rng.random() < 0.5):
        return valid[rng.randrange(used)]
    return reservoir[rng.randrange(len(reservoir))]


def _refill(reservoir: list[str], valid: list[str], rng: random.Random) -> None:
    """Keep a bounded, run-wide sample of earlier valid lines for cross-file duplicates."""
    for line in rng.sample(valid, min(len(valid), 64)):
        if len(reservoir) < RESERVOIR_LINES:
            reservoir.append(line)
        else:
            reservoir[rng.randrange(RESERVOIR_LINES)] = line


def _file_text(lines: list[str], fresh_file_start: bool, rng: random.Random) -> str:
    """The tolerated noise of real files: a BOM opening some files and a few whitespace-only lines."""
    if fresh_file_start and rng.random() < BOM_FILE_SHARE:
        lines[0] = "\ufeff" + lines[0]
    if lines and rng.random() < BLANK_CHUNK_SHARE:
        lines.insert(rng.randint(1, len(lines)), rng.choice(BLANKS))
    return "\n".join(lines) + "\n" if lines else ""


def _valid_lines(n: int, world: _World, rng: random.Random, hour_ms: int) -> list[str]:
    """`n` fresh, valid events arriving in the hour from `hour_ms`. The hot path: bulk draws, local names."""
    if n == 0:
        return []
    ids = _uuids(n, rng)
    types = rng.choices(world.types, cum_weights=world.type_cw, k=n)
    users = rng.choices(world.users, cum_weights=world.user_cw, k=n)
    rnd, bits = rng.random, rng.getrandbits
    in_meta = ANONYMOUS_SHARE + (1 - ANONYMOUS_SHARE) * USER_IN_META_SHARE
    late_min, late_span = LATE_MS[0], LATE_MS[1] - LATE_MS[0]
    lines = []
    for eid, type_parts, user_parts in zip(ids, types, users, strict=True):
        type_head, pool, pool_bits, unique, tails = type_parts
        user_head, user_tail, user_meta = user_parts
        body = pool[bits(pool_bits)]
        if unique:
            body = f'{unique}{bits(48):012x}",{body}'
        placement = rnd()
        if placement >= in_meta:
            user_meta = ""
        else:
            user_head = user_tail = ""
            if placement < ANONYMOUS_SHARE:
                user_meta = ""
        if rnd() >= LATE_SHARE:
            ts = hour_ms + int(rnd() * HOUR_MS)
        else:  # cubed: most late events are minutes late, a few are days late
            ts = hour_ms - late_min - int(rnd() ** 3 * late_span)
        lines.append(
            f'{{"data":{{"id":"{eid}{type_head}{user_head}{body}{user_tail}}}}},"meta":{{"created_at":{ts}'
            f"{user_meta}{tails[bits(META_TAIL_BITS)]}"
        )
    for i in rng.sample(range(n), int(n * CRLF_SHARE + rnd())):
        lines[i] += "\r"
    return lines


# --- bad lines: each breaks exactly one DESIGN §1 rule, all earlier rules hold ---------------------------------

RAW = "\x00raw\x00"  # stands for number text json.dumps would not write for the value; spliced in after dumping
Event = dict[str, Any]


def _bad_line(reason: str, world: _World, rng: random.Random, hour_ms: int) -> str:
    event = json.loads(_valid_lines(1, world, rng, hour_ms)[0])
    return rng.choice(_BAD_VARIANTS[reason])(event, rng)


def _dump(event: object, raw: str = "") -> str:
    return _j(event).replace(_j(RAW), raw)


def _put(event: Event, path: str, value: object) -> Event:
    *parents, key = path.split(".")
    node = event
    for parent in parents:
        node = node[parent]
    node[key] = value
    return event


def _drop(event: Event, path: str) -> Event:
    *parents, key = path.split(".")
    node = event
    for parent in parents:
        node = node[parent]
    del node[key]
    return event


def _missing(path: str) -> tuple[Callable[[Event, random.Random], str], ...]:
    """Absent, or JSON null: the contract treats both as missing."""
    return lambda e, r: _dump(_drop(e, path)), lambda e, r: _dump(_put(e, path, None))


def _truncated(event: Event, rng: random.Random) -> str:
    text = _dump(event)
    return text[: rng.randint(1, len(text) - 2)]


def _created_at_written_as(template: str) -> Callable[[Event, random.Random], str]:
    """The right integral value, but not a JSON integer (`1704067200000.0`, `1704067200000e0`)."""

    def variant(event: Event, rng: random.Random) -> str:
        text = template.format(event["meta"]["created_at"])
        return _dump(_put(event, "meta.created_at", RAW), raw=text)

    return variant


_BAD_VARIANTS: dict[str, tuple[Callable[[Event, random.Random], str], ...]] = {
    "not_utf8": (
        lambda e, r: _dump(_put(e, "data.attributes.note", "Jos\udce9")),  # Latin-1 text: b"Jos\xe9"
        lambda e, r: _dump(_put(e, "data.attributes.note", "\udcff\udcfe")),  # raw b"\xff\xfe"
    ),
    "too_large": (  # an embedded screenshot, as clients do
        lambda e, r: _dump(
            _put(e, "data.attributes.screenshot", "iVBORw0KGgo" * (MAX_LINE_BYTES // 11 + r.randint(1, 4096)))
        ),
    ),
    "malformed_json": (
        _truncated,
        lambda e, r: _dump(e)[:-1] + ",}",
        lambda e, r: _dump(e).replace('"', "'"),
    ),
    "not_an_object": (
        lambda e, r: _dump([e]),
        lambda e, r: _dump(e["data"]["type"]),
        lambda e, r: str(e["meta"]["created_at"]),
        lambda e, r: "null",
    ),
    "missing:data": _missing("data"),
    "bad_type:data": (
        lambda e, r: _dump(_put(e, "data", [e["data"]])),
        lambda e, r: _dump(_put(e, "data", _dump(e["data"]))),
    ),
    "missing:data.id": _missing("data.id"),
    "bad_type:data.id": (
        lambda e, r: _dump(_put(e, "data.id", r.randint(1, 10**9))),
        lambda e, r: _dump(_put(e, "data.id", "")),
    ),
    "missing:data.type": _missing("data.type"),
    "bad_type:data.type": (
        lambda e, r: _dump(_put(e, "data.type", e["data"]["type"] + " v2")),
        lambda e, r: _dump(_put(e, "data.type", "feature_" + "very_long_" * 13)),
        lambda e, r: _dump(_put(e, "data.type", r.randint(0, 300))),
    ),
    "missing:data.attributes": _missing("data.attributes"),
    "bad_type:data.attributes": (
        lambda e, r: _dump(_put(e, "data.attributes", [e["data"]["attributes"]])),
        lambda e, r: _dump(_put(e, "data.attributes", _dump(e["data"]["attributes"]))),
    ),
    "missing:meta": _missing("meta"),
    "bad_type:meta": (
        lambda e, r: _dump(_put(e, "meta", e["meta"]["service"])),
        lambda e, r: _dump(_put(e, "meta", [e["meta"]])),
    ),
    "missing:meta.created_at": _missing("meta.created_at"),
    "bad_type:meta.created_at": (
        lambda e, r: _dump(_put(e, "meta.created_at", str(e["meta"]["created_at"]))),
        lambda e, r: _dump(_put(e, "meta.created_at", e["meta"]["created_at"] + 0.5)),
        lambda e, r: _dump(_put(e, "meta.created_at", True)),
        _created_at_written_as("{}.0"),
        _created_at_written_as("{}e0"),
    ),
    "out_of_range:meta.created_at": (
        lambda e, r: _dump(_put(e, "meta.created_at", e["meta"]["created_at"] // 1000)),  # seconds, not ms
        lambda e, r: _dump(_put(e, "meta.created_at", 946_684_799_999)),  # 1 ms before 2000-01-01
        lambda e, r: _dump(_put(e, "meta.created_at", 4_070_908_800_000 + r.randrange(HOUR_MS))),  # 2099
    ),
}
