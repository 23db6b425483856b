"""Trino's client side for the lakehouse: one statement run as a user of the `lakehouse` catalog, its rows, and its
errors as one-line LakehouseErrors."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from decimal import Decimal

import requests
import trino.auth
import trino.dbapi
from requests import RequestException
from requests.exceptions import SSLError
from trino.exceptions import HttpError, TrinoConnectionError, TrinoQueryError

from lakehouse.config import Settings, TrinoSettings
from lakehouse.errors import LakehouseError

CATALOG = "lakehouse"
LAKE = "lake"
BI = "bi"
ANALYST = "analyst"
# Where the pipeline user's password comes from (never a file).
ENV_PASSWORD = "LAKEHOUSE__TRINO__PASSWORD"
# For a few seconds after a start, a server lists itself active before it schedules table scans on itself.
NO_NODES_WAIT = 30
# What the client raises when the server's first answer is not Trino's protocol: an HTTP error status (another web
# server), a body that is not JSON, JSON of another shape (a missing key, a list where an object belongs).
_NOT_TRINO = (HttpError, json.JSONDecodeError, KeyError, TypeError, AttributeError)


@dataclass(frozen=True)
class Result:
    """A query's column names and rows."""

    columns: list[str]
    rows: list[tuple]

    def as_table(self) -> str:
        """Columns aligned like Trino's own CLI (numbers to the right, text with line breaks over several lines),
        then the row count."""
        cells = [[_cell(value).split("\n") for value in row] for row in self.rows]
        widths = [
            max([len(name), *(len(line) for row in cells for line in row[i])]) for i, name in enumerate(self.columns)
        ]
        numeric = [bool(self.rows) and _is_number(self.rows[0][i]) for i in range(len(widths))]
        lines = [" | ".join(map(str.center, self.columns, widths)), "-+-".join("-" * width for width in widths)]
        for row in cells:
            lines.extend(_row_lines(row, widths, numeric))
        lines.append(f"({len(self.rows)} row{'' if len(self.rows) == 1 else 's'})")
        return "\n".join(line.rstrip() for line in lines)


class QueryError(LakehouseError):
    """Trino refused or failed a query; `error_name` is Trino's code for why (e.g. PERMISSION_DENIED)."""

    def __init__(self, message: str, error_name: str) -> None:
        super().__init__(message)
        self.error_name = error_name


def query(settings: Settings, sql: str, user: str | None = None) -> Result:
    """The result of one statement, run as `user` (default: the pipeline's user); Trino's errors as QueryError.
    For a few seconds after a start, a server lists itself active before it schedules table scans on itself
    (NO_NODES_AVAILABLE): such a statement is retried for up to NO_NODES_WAIT seconds."""
    deadline = time.monotonic() + NO_NODES_WAIT
    while True:
        try:
            return _query_once(settings, sql, user)
        except QueryError as exc:
            if exc.error_name != "NO_NODES_AVAILABLE" or time.monotonic() > deadline:
                raise
            time.sleep(1)


def _query_once(settings: Settings, sql: str, user: str | None) -> Result:
    try:
        with connect(settings, user) as connection:
            cursor = connection.cursor()
            try:
                cursor.execute(sql.strip().rstrip(";"))
            except HttpError as exc:
                if str(exc).startswith("error 401"):
                    name = settings.trino.user
                    raise LakehouseError(f"Trino at {url(settings.trino)} refused the password of user {name} "
                                         f"(HTTP 401): check {ENV_PASSWORD}") from None  # fmt: skip
                raise _not_a_trino_server(settings, exc) from None
            except _NOT_TRINO as exc:
                raise _not_a_trino_server(settings, exc) from None
            rows = cursor.fetchall()
    except TrinoQueryError as exc:
        raise QueryError(f"Trino: {exc.message}", exc.error_name) from None
    except HttpError as exc:
        raise LakehouseError(f"Trino at {url(settings.trino)} broke off the query: {_not_trino(exc)}") from None
    except SSLError as exc:
        raise LakehouseError(f"TLS with Trino at {url(settings.trino)} failed (check trino.verify): "
                             f"{str(exc).splitlines()[0][:200]}") from None  # fmt: skip
    except (TrinoConnectionError, RequestException):
        raise LakehouseError(f"no Trino server answers at {url(settings.trino)}: run `lakehouse trino start`") from None
    return Result([column[0] for column in cursor.description or ()], [tuple(row) for row in rows])


def connect(settings: Settings, user: str | None = None) -> trino.dbapi.Connection:
    """A DB-API connection to the configured server and catalog, as `user` (default: the pipeline's user), over
    `trino.http_scheme`; with `trino.password` set, it authenticates with it (HTTP basic auth, https only)."""
    config = settings.trino
    password = config.password.get_secret_value()
    if password and config.http_scheme != "https":
        raise LakehouseError(f"trino.password is only sent over https, not to {url(config)}: set trino.http_scheme")
    # The password is the pipeline user's: another `user` is then one the server must let it impersonate.
    auth = trino.auth.BasicAuthentication(config.user, password) if password else None
    return trino.dbapi.connect(host=config.host, port=config.port, user=user or config.user, catalog=CATALOG,
                               source="lakehouse", http_scheme=config.http_scheme, auth=auth,
                               http_session=http_session(config.verify))  # fmt: skip


class _Verifying(requests.Session):
    """A session whose `verify` wins over REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE, which requests otherwise prefers to
    a session's own (so a configured certificate was silently ignored wherever those are set)."""

    def merge_environment_settings(self, *args: object, **kwargs: object) -> dict:
        return {**super().merge_environment_settings(*args, **kwargs), "verify": self.verify}


def http_session(verify: bool | str) -> requests.Session:
    """The HTTP session of a Trino client checking the server's certificate as `trino.verify` says: True, the system's
    CAs (or the bundle the environment names); a path, that certificate or bundle only; False, no check."""
    session = requests.Session() if verify is True else _Verifying()
    session.verify = verify
    return session


def url(config: TrinoSettings) -> str:
    """The address of the configured server."""
    return f"{config.http_scheme}://{config.host}:{config.port}"


def _not_a_trino_server(settings: Settings, exc: Exception) -> LakehouseError:
    where = f"{settings.trino.host}:{settings.trino.port}"
    return LakehouseError(f"what answers at {where} is not a Trino server ({_not_trino(exc)})")


def _not_trino(exc: Exception) -> str:
    """What was wrong with the server's answer, in a few words."""
    if isinstance(exc, HttpError):
        status = re.match(r"error (\d+)", str(exc))
        return f"it answered HTTP {status[1]}" if status else str(exc).split("\n")[0][:200]
    if isinstance(exc, json.JSONDecodeError):
        return "its answer is not JSON"
    return f"its answer is not Trino's protocol: {type(exc).__name__} {exc}"[:200]


def _row_lines(row: list[list[str]], widths: list[int], numeric: list[bool]) -> list[str]:
    lines = []
    for depth in range(max(map(len, row), default=0)):
        texts = [cell[depth] if depth < len(cell) else "" for cell in row]
        columns = zip(texts, widths, numeric, strict=True)
        aligned = (text.rjust(width) if right else text.ljust(width) for text, width, right in columns)
        lines.append(" | ".join(aligned))
    return lines


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _cell(value: object) -> str:
    """A value as Trino's CLI prints it."""
    if isinstance(value, bool):
        return str(value).lower()
    return "NULL" if value is None else str(value)
