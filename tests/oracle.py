"""An independent oracle of the event contract (DESIGN §1) in plain Python, for judging generated files and
checking what the Spark jobs wrote against it."""

from __future__ import annotations

import gzip
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_CREATED_MS = 946_684_800_000  # 2000-01-01
EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
FILE_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})/events-(\d{8})-(\d{2})\.jsonl(\.gz)?")
COUNTRIES = {"DE", "US", "GB", "FR", "ES", "IT", "NL"}
# The limits of the JSON parser the contract runs on (Spark's, Jackson's defaults): at most 1000 nested levels, of
# which the check for a single value takes one, and at most 1000 digits in a number. Deeper or longer is malformed.
MAX_DEPTH = 999
MAX_NUMBER_DIGITS = 1000
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]|-?[0-9][0-9.eE+-]*')
# json.loads recurses per nested level: deep enough for MAX_DEPTH, and a little more to tell it apart.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * MAX_DEPTH))
REQUIRED_TYPES = {
    "user_created",
    "profile_viewed",
    "page_viewed",
    "item_added_to_cart",
    "order_placed",
    "login",
    "logout",
    "search_performed",
}
ALL_REASONS = {
    "not_utf8",
    "too_large",
    "malformed_json",
    "not_an_object",
    "missing:data",
    "bad_type:data",
    *(
        f"{kind}:{path}"
        for kind in ("missing", "bad_type")
        for path in ("data.id", "data.type", "data.attributes", "meta", "meta.created_at")
    ),
    "out_of_range:meta.created_at",
}
REQUIRED = (  # DESIGN §1, in order: a path and what a well-typed value there looks like
    ("data", lambda v: isinstance(v, dict)),
    ("data.id", lambda v: isinstance(v, str) and v != ""),
    ("data.type", lambda v: isinstance(v, str) and EVENT_TYPE.fullmatch(v) is not None),
    ("data.attributes", lambda v: isinstance(v, dict)),
    ("meta", lambda v: isinstance(v, dict)),
    ("meta.created_at", lambda v: type(v) is int),  # not bool, not float (1.0 and 1e3 parse as float)
)


def first_failure(raw: bytes, now_ms: int, max_line_bytes: int = MIB) -> str | None:
    """The DESIGN §1 reason of a non-blank line (BOM and CR already removed), under a limit of `max_line_bytes` per
    line; None when the event is valid."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    if len(raw) > max_line_bytes:
        return "too_large"
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return "malformed_json"
    if not _within_parser_limits(text):
        return "malformed_json"
    if not isinstance(doc, dict):
        return "not_an_object"
    for path, well_typed in REQUIRED:
        value = _at(doc, path)
        if value is None:
            return f"missing:{path}"
        if not well_typed(value):
            return f"bad_type:{path}"
    if not MIN_CREATED_MS <= doc["meta"]["created_at"] <= now_ms + DAY_MS:
        return "out_of_range:meta.created_at"
    return None


def _within_parser_limits(text: str) -> bool:
    """Whether a valid JSON text nests at most MAX_DEPTH levels and holds no number of more than MAX_NUMBER_DIGITS
    digits."""
    depth = 0
    for token in _TOKENS.findall(text):
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif token in "]}":
            depth -= 1
        elif token[0] != '"' and sum(char.isdigit() for char in token) > MAX_NUMBER_DIGITS:
            return False
    return True


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _at(doc: dict, path: str) -> object:
    node: object = doc
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


@dataclass
class Audit:
    """What the files hold according to the checker."""

    reasons: Counter = field(default_factory=Counter)
    first_seen: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # id -> (file, raw line)
    events: list[tuple[str, dict]] = field(default_factory=list)  # (file, event) of first-seen valid events
    duplicates: int = 0
    duplicates_same_file: int = 0
    duplicates_not_copies: int = 0
    lines: int = 0
    bom_files: int = 0
    crlf_lines: int = 0
    blank_lines: int = 0


def audit(files: list[str]) -> Audit:
    result, now_ms = Audit(), int(time.time() * 1000)
    for name in files:
        data = Path(name).read_bytes()
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        if data.startswith(b"\xef\xbb\xbf"):
            data, result.bom_files = data[3:], result.bom_files + 1
        # Lines end as Hadoop's line reader ends them: at \n, \r\n or a lone \r, and at the end of the file.
        for ended in data.splitlines(keepends=True):
            line = ended.rstrip(b"\r\n")
            if not line.strip():
                result.blank_lines += 1
                continue
            result.crlf_lines += ended.endswith(b"\r\n")
            _judge(result, name, line, now_ms)
    return result


def _judge(result: Audit, name: str, line: bytes, now_ms: int) -> None:
    result.lines += 1
    reason = first_failure(line, now_ms)
    if reason:
        result.reasons[reason] += 1
        return
    event = json.loads(line)
    event_id = event["data"]["id"]
    if event_id not in result.first_seen:
        result.first_seen[event_id] = (name, line)
        result.events.append((name, event))
        return
    first_file, first_line = result.first_seen[event_id]
    result.duplicates += 1
    result.duplicates_same_file += first_file == name
    result.duplicates_not_copies += first_line != line
