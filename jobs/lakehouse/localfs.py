"""Hadoop's local file system without a `chmod` process per file (NioLocalFileSystem in java/, compiled on first use
into the jar cache), for Spark on a local lake: README, "Local lake writes"."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pyspark

from lakehouse.errors import LakehouseError

SOURCE = Path(__file__).with_name("java") / "NioLocalFileSystem.java"
FS_CLASS = "io.lakehouse.hadoop.NioLocalFileSystem"
# The oldest Java that Spark 4 runs on: the classes load on any newer one.
JAVA_RELEASE = "17"

log = logging.getLogger(__name__)


def local_fs_conf(jar_cache: str) -> dict[str, str]:
    """The Spark settings that make the driver use NioLocalFileSystem for file: paths; none (Hadoop's own, slower)
    when no Java compiler is found to build it."""
    jar = local_fs_jar(Path(jar_cache))
    if jar is None:
        return {}
    return {"spark.driver.extraClassPath": str(jar), "spark.hadoop.fs.file.impl": FS_CLASS}


def local_fs_jar(jar_cache: Path) -> Path | None:
    """The jar of NioLocalFileSystem in `jar_cache`, compiled against the running Spark's Hadoop if not there yet
    (the name holds a digest of the source and the Hadoop version, so a change of either builds a new one)."""
    hadoop = hadoop_client_api_jar()
    digest = hashlib.sha256(SOURCE.read_bytes() + hadoop.name.encode()).hexdigest()[:12]
    jar = jar_cache.resolve() / "lakehouse" / f"nio-local-fs-{digest}.jar"
    if jar.exists():
        return jar
    javac = _javac()
    if javac is None:
        log.warning("no javac found (JAVA_HOME, PATH): Spark writes local files through Hadoop's chmod processes")
        return None
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=jar.parent) as work:
        classes = Path(work) / "classes"
        command = [javac, "--release", JAVA_RELEASE, "-nowarn", "-cp", str(hadoop), "-d", str(classes), str(SOURCE)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LakehouseError(f"compiling {SOURCE.name} failed: {done.stderr.strip()}")
        built = Path(work) / jar.name
        with zipfile.ZipFile(built, "w") as archive:
            for compiled in sorted(classes.rglob("*.class")):
                archive.write(compiled, compiled.relative_to(classes).as_posix())
        # Another process building it at the same time writes the same bytes: the last rename wins, harmlessly.
        os.replace(built, jar)
    return jar


def hadoop_client_api_jar() -> Path:
    """The Hadoop client API jar of the Spark that runs (its name holds the Hadoop version): under spark-submit,
    SPARK_HOME's, where pyspark itself is imported from a zip without jars; otherwise pip's pyspark's."""
    jars = Path(os.environ.get("SPARK_HOME") or Path(pyspark.__file__).parent) / "jars"
    found = sorted(jars.glob("hadoop-client-api-*.jar"))
    if not found:
        raise LakehouseError(f"no hadoop-client-api jar in {jars}: cannot tell which Hadoop this Spark runs")
    return found[0]


def _javac() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "javac").is_file():
        return str(Path(java_home) / "bin" / "javac")
    return shutil.which("javac")
