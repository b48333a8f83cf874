"""A Flink session cluster of its own processes on loopback, for tests: one JobManager, N TaskManagers.

The processes run Flink's own entry points (``StandaloneSessionClusterEntrypoint``,
``TaskManagerRunner``) from the jars ``make flink`` fetched (``jobserver.cluster_classpath``): the same
Flink 1.19 the job server submits to. Each TaskManager is a JVM of its own, so a test can kill one
(``kill_taskmanager``) and find the SDK worker processes it started (``sdk_workers``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from beam_pipeline.job.flink import jobserver
from beam_pipeline.job.flink.checks import EMBEDDED_CONF
from tests.conftest import free_port

_ENTRY = {"jobmanager": "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
          "taskmanager": "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"}
# Run without Flink's start scripts, a TaskManager needs every memory component set (the scripts
# compute them): 1.2 GiB in all; the network buffers let one TaskManager run every task of the job
# after the other is lost. The Python work is in the SDK workers.
_MEMORY = {
    "taskmanager.memory.framework.heap.size": "128m", "taskmanager.memory.framework.off-heap.size": "128m",
    "taskmanager.memory.task.heap.size": "256m", "taskmanager.memory.task.off-heap.size": "0m",
    "taskmanager.memory.network.min": "256m", "taskmanager.memory.network.max": "256m",
    "taskmanager.memory.managed.size": "64m", "taskmanager.memory.jvm-metaspace.size": "256m",
    "taskmanager.memory.jvm-overhead.min": "128m", "taskmanager.memory.jvm-overhead.max": "128m",
    "jobmanager.memory.process.size": "1024m",
}


# A cluster's restart strategy, as docs/SCALING.md asks of one (Beam sets none for a batch job): the
# one videolabel gives an embedded Flink.
_RESTARTS = dict(line.split(": ", 1) for line in (EMBEDDED_CONF / "flink-conf.yaml").read_text().splitlines()
                 if line.startswith("restart-strategy."))


class FlinkCluster:
    """Start with ``start()`` (or ``with``); ``master`` is the ``--flink_master`` of a run on it.

    Args:
        root: a folder for the config, logs and Flink's temporary files.
        taskmanagers: TaskManager processes.
        slots: task slots per TaskManager.
    """

    def __init__(self, root: Path, taskmanagers: int = 2, slots: int = 2):
        self.root, self.slots = root, slots
        self.rest_port = free_port()
        self.jobmanager: subprocess.Popen | None = None
        self.taskmanagers: list[subprocess.Popen] = []
        self._wanted = taskmanagers

    @property
    def master(self) -> str:
        return f"localhost:{self.rest_port}"

    def _config(self) -> Path:
        conf = self.root / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        settings = {
            "jobmanager.rpc.address": "localhost", "jobmanager.rpc.port": free_port(),
            "jobmanager.bind-host": "localhost", "rest.address": "localhost",
            "rest.bind-address": "localhost", "rest.port": self.rest_port,
            "taskmanager.host": "localhost", "taskmanager.bind-host": "localhost",
            "taskmanager.numberOfTaskSlots": self.slots, "taskmanager.cpu.cores": float(self.slots),
            "cluster.evenly-spread-out-slots": "true",  # the job on both TaskManagers
            "heartbeat.interval": 1000, "heartbeat.timeout": 6000,  # a lost TaskManager is found in seconds
            **_RESTARTS,
            "io.tmp.dirs": str(self.root / "tmp"), "blob.storage.directory": str(self.root / "tmp"),
            **_MEMORY,
        }
        (conf / "flink-conf.yaml").write_text("".join(f"{k}: {v}\n" for k, v in settings.items()))
        return conf

    def _spawn(self, role: str, index: int) -> subprocess.Popen:
        log = open(self.root / f"{role}-{index}.log", "ab")  # noqa: SIM115 (the child keeps it)
        return subprocess.Popen(
            ["java", "-Xmx384m", "-Dorg.slf4j.simpleLogger.showDateTime=true", "-cp",
             jobserver.cluster_classpath(), _ENTRY[role], "--configDir", str(self.root / "conf")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def overview(self) -> dict:
        with urllib.request.urlopen(f"http://{self.master}/overview", timeout=5) as response:
            return json.load(response)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Waits until every running TaskManager has registered its slots with the JobManager."""
        deadline = time.monotonic() + timeout_s
        want = len([tm for tm in self.taskmanagers if tm.poll() is None])
        while time.monotonic() < deadline:
            try:
                if self.overview()["taskmanagers"] >= want:
                    return
            except OSError:
                pass
            if self.jobmanager.poll() is not None:
                raise RuntimeError(f"the JobManager exited; see {self.root}/jobmanager-0.log")
            time.sleep(0.3)
        raise TimeoutError(f"{want} TaskManagers did not register in {timeout_s} s; see {self.root}")

    def start(self) -> FlinkCluster:
        self._config()
        self.jobmanager = self._spawn("jobmanager", 0)
        self.taskmanagers = [self._spawn("taskmanager", i) for i in range(self._wanted)]
        self.wait_ready()
        return self

    def sdk_workers(self, taskmanager: int | None = None) -> list[int]:
        """Process ids of the SDK workers the TaskManagers (or one of them) started."""
        parents = {tm.pid for i, tm in enumerate(self.taskmanagers) if taskmanager in (None, i)}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid in parents and b"sdk_worker_main" in cmdline:
                found.append(int(entry.name))
        return found

    def kill_taskmanager(self, index: int) -> None:
        """SIGKILL to TaskManager ``index`` (its JVM, as a lost machine), and to the SDK workers it started
        (on a lost machine they are gone too)."""
        workers = self.sdk_workers(index)
        os.kill(self.taskmanagers[index].pid, signal.SIGKILL)
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.taskmanagers[index].wait()

    def replace_taskmanager(self, index: int) -> None:
        """A new TaskManager in place of (killed) ``index``, registered before this returns."""
        self.taskmanagers[index] = self._spawn("taskmanager", len(self.taskmanagers) + index)
        self.wait_ready()

    def stop(self) -> None:
        for process in [*self.taskmanagers, self.jobmanager]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def __enter__(self) -> FlinkCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
