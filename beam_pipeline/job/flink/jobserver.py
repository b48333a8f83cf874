"""Beam's Flink job server: fetched once by ``make flink`` with Maven, checked, and found by a run.

``pom.xml`` (beside this module) pins Beam's Flink runner by version; ``jars.sha256`` pins each of
the jars it runs on by SHA-256. ``fetch`` has Maven copy them into a folder of the user cache
(``VIDEOLABEL_FLINK_CACHE``, default ``~/.cache/videolabel/flink/beam-<version>-flink-<version>``),
checks every checksum, and writes ``job-server.jar`` there: a jar of only a manifest, whose
``Main-Class`` is Beam's ``FlinkJobServerDriver`` and whose ``Class-Path`` names the others, so
that Beam's ``FlinkRunner`` starts it with ``java -jar`` as it starts its own shaded jar. A run never
downloads: ``job_server_jar`` only finds the fetched jar (and its folder is also the classpath of
a Flink session cluster, ``cluster_classpath``).

    python -m beam_pipeline.job.flink.jobserver fetch   # what `make flink` runs
    python -m beam_pipeline.job.flink.jobserver pin     # after changing pom.xml: rewrite jars.sha256
    python -m beam_pipeline.job.flink.jobserver path    # the jar a run passes to Beam, or exit 1
    python -m beam_pipeline.job.flink.jobserver flags > beam_pipeline/job/flink/flink_flags.txt

``flink_flags.txt`` lists the options the job server adds to Python's (``--number_of_execution_retries``,
``--max_bundle_size``, ...); a Flink run accepts them (``beam_pipeline.job.flags``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from importlib import resources
from pathlib import Path

__all__ = ["DRIVER", "JAR_NAME", "cache_dir", "cluster_classpath", "fetch", "job_server_jar",
           "manifest", "pinned", "runner_flag_names", "server_command", "versions"]

#: Beam's job server entry point (in beam-runners-flink).
DRIVER = "org.apache.beam.runners.flink.FlinkJobServerDriver"
#: The manifest-only jar ``fetch`` writes beside the others.
JAR_NAME = "job-server.jar"
_MAVEN_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def _here() -> Path:
    return Path(str(resources.files("beam_pipeline.job.flink")))


def versions() -> tuple[str, str]:
    """(Beam's Java version, Flink's minor version) that ``pom.xml`` pins, e.g. ``("2.62.0", "1.19")``."""
    props = ET.parse(_here() / "pom.xml").getroot().find("m:properties", _POM_NS)
    beam = props.findtext("m:beam.version", namespaces=_POM_NS)
    return beam, props.findtext("m:flink.version", namespaces=_POM_NS)


def cache_dir() -> Path:
    """The folder the jars are fetched into: ``VIDEOLABEL_FLINK_CACHE``, else the user cache."""
    beam, flink = versions()
    root = os.environ.get("VIDEOLABEL_FLINK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "videolabel", "flink")
    return Path(root) / f"beam-{beam}-flink-{flink}"


def pinned() -> dict[str, str]:
    """``jars.sha256``: jar file name -> its SHA-256 (hex)."""
    pins = {}
    for line in (_here() / "jars.sha256").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split()
            pins[name] = digest
    return pins


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _header(name: str, value: str) -> bytes:
    """One manifest header, wrapped as the JAR spec asks: lines of at most 72 bytes, each continuation
    starting with one space."""
    line = f"{name}: {value}".encode()
    lines = [line[:72]] + [b" " + line[i:i + 71] for i in range(72, len(line), 71)]
    return b"\r\n".join(lines) + b"\r\n"


def manifest(jars: list[str]) -> bytes:
    """The job server jar's ``META-INF/MANIFEST.MF``: ``DRIVER`` as its main class, ``jars`` (file names
    in the same folder) as its classpath."""
    return (b"Manifest-Version: 1.0\r\n" + _header("Main-Class", DRIVER)
            + _header("Class-Path", " ".join(sorted(jars))) + b"\r\n")


def _copy_dependencies(into: Path) -> None:
    """Maven copies the runtime closure of ``pom.xml`` into ``into`` (checksums strict: ``-C``)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        sys.exit("make flink: Maven (mvn) is not on PATH; install a JDK and Maven (apt-get install maven)")
    beam, flink = versions()
    print(f"fetching Beam's Flink job server {beam} (Flink {flink}) with Maven: about 150 MB, once",
          file=sys.stderr)
    subprocess.run([mvn, "-q", "-B", "-C", "-Dstyle.color=never", "-f", str(_here() / "pom.xml"),
                    _MAVEN_PLUGIN, f"-DoutputDirectory={into}", "-DincludeScope=runtime"], check=True)


def _verified(folder: Path, pins: dict[str, str]) -> list[str]:
    """The problems of ``folder`` against ``pins`` (a missing, unexpected or changed jar), one a line."""
    found = {p.name for p in folder.glob("*.jar") if p.name != JAR_NAME}
    problems = [f"missing {name}" for name in sorted(set(pins) - found)]
    problems += [f"not pinned: {name}" for name in sorted(found - set(pins))]
    problems += [f"checksum differs: {name}" for name in sorted(found & set(pins))
                 if _sha256(folder / name) != pins[name]]
    return problems


def fetch() -> Path:
    """Fetches and checks the jars into ``cache_dir()`` (once: a complete folder is kept) and writes the
    job server jar; returns its path. Exits with the problems when a checksum does not match."""
    target = cache_dir()
    jar = target / JAR_NAME
    if jar.exists():
        return jar
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        staging = Path(tmp) / "jars"
        _copy_dependencies(staging)
        problems = _verified(staging, pinned())
        if problems:
            sys.exit("make flink: the fetched jars do not match jars.sha256:\n  " + "\n  ".join(problems))
        jars = [p.name for p in staging.glob("*.jar")]
        with zipfile.ZipFile(staging / JAR_NAME, "w") as composite:
            composite.writestr("META-INF/MANIFEST.MF", manifest(jars))
        staging.rename(target)  # whole or not at all: a fetch cut short leaves no folder that looks done
    return jar


def pin() -> None:
    """Rewrites ``jars.sha256`` from a fresh Maven fetch (after a version change in ``pom.xml``)."""
    with tempfile.TemporaryDirectory() as tmp:
        _copy_dependencies(Path(tmp))
        lines = [f"{_sha256(p)}  {p.name}" for p in sorted(Path(tmp).glob("*.jar"))]
    beam, flink = versions()
    (_here() / "jars.sha256").write_text(
        f"# beam-runners-flink-{flink} {beam} and its runtime closure (python -m beam_pipeline.job.flink."
        "jobserver pin)\n" + "\n".join(lines) + "\n", encoding="utf-8")


def job_server_jar() -> Path | None:
    """The fetched job server jar, or None when ``make flink`` has not fetched it."""
    jar = cache_dir() / JAR_NAME
    return jar if jar.exists() else None


def server_command(jar: Path, port: int) -> list[str]:
    """The command that starts the job server ``jar`` on its own, running Flink itself (``[local]``), its
    job service on ``port`` and its other services on free ports."""
    return ["java", "-jar", str(jar), "--flink-master", "[local]", "--job-port", str(port),
            "--artifact-port", "0", "--expansion-port", "0"]


def runner_flag_names(jar: Path) -> list[str]:
    """The options the job server ``jar`` describes (``DescribePipelineOptions``) that the installed
    Python SDK does not define, as ``--name``, sorted. Starts the job server for the call."""
    import grpc
    from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc
    from apache_beam.utils.subprocess_server import pick_port

    from beam_pipeline.job.flags import beam_flag_names

    port, = pick_port(None)
    server = subprocess.Popen(server_command(jar, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with grpc.insecure_channel(f"localhost:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            described = beam_job_api_pb2_grpc.JobServiceStub(channel).DescribePipelineOptions(
                beam_job_api_pb2.DescribePipelineOptionsRequest(), timeout=60)
    finally:
        server.kill()
        server.wait()
    python = set(beam_flag_names())
    return sorted({f"--{o.name}" for o in described.options} - python)


def cluster_classpath() -> str:
    """The classpath (``java -cp``) of the fetched jars: Flink's JobManager and TaskManager run on it."""
    return str(cache_dir() / "*")


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "path"
    if command == "fetch":
        print(fetch())
    elif command == "flags":
        print("\n".join(runner_flag_names(fetch())))
    elif command == "pin":
        pin()
    elif command == "path":
        jar = job_server_jar()
        if jar is None:
            print(f"not fetched: {cache_dir()} (make flink)", file=sys.stderr)
            return 1
        print(jar)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
