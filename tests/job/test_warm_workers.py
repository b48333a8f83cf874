"""Local worker processes forked warm (``job.warm_workers``): a run's workers are children of the warm
process, a client that finds none runs Beam's worker itself, and a killed launcher leaves no process
behind."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.job import warm_workers
from beam_pipeline.job.local_runner import LOCAL_RUNNER
from tests.conftest import REPO
from tests.media import good


def _note_parent(element: int, folder: str) -> int:
    warm = b"beam_pipeline.job.warm_workers\0serve\0" in Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    Path(folder, f"{element}-{os.getpid()}-{os.getppid() if warm else 0}").touch()
    return element


def _busy(element: int, seconds: float) -> int:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return element


def _run_noting_parents(folder: Path, busy_s: float = 0.0) -> list[tuple[int, int]]:
    """A two-worker ``multi_processing`` run on ``LocalRunner``; each worker notes its pid and its parent's
    (0 where the parent is not a warm process), after ``busy_s`` of CPU time per element."""
    options = PipelineOptions([f"--runner={LOCAL_RUNNER}", "--direct_running_mode=multi_processing",
                               "--direct_num_workers=2"])
    with beam.Pipeline(options=options) as p:
        _ = (p | beam.Create(range(8)) | beam.Reshuffle() | beam.Map(_busy, busy_s)
             | beam.Map(_note_parent, str(folder)))
    notes = [name.split("-") for name in os.listdir(folder)]
    assert sorted(int(n[0]) for n in notes) == list(range(8))
    return sorted({(int(pid), int(parent)) for _, pid, parent in notes})


def test_workers_are_forked_from_the_warm_process(tmp_path):
    warm = warm_workers.start()
    try:
        workers = _run_noting_parents(tmp_path)
    finally:
        warm_workers.stop()
    assert workers and {parent for _, parent in workers} == {warm.pid}
    assert warm_workers.current() is None


def test_the_forked_workers_cpu_time_counts_as_the_launchers_childrens(tmp_path):
    """What measures a run from outside (``benchmarks.throughput``: the children's CPU time and peak
    memory) sees the forked workers as it sees Beam's own."""
    def children_cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before = children_cpu_s()
    warm_workers.start()
    try:
        _run_noting_parents(tmp_path, busy_s=0.5)  # 4 s of CPU time in the workers
    finally:
        warm_workers.stop()
    assert children_cpu_s() - before >= 4.0  # lost, the warm process's own import alone was 1.5-2 s


def test_the_off_switch_leaves_the_workers_to_beam(tmp_path, monkeypatch):
    monkeypatch.setenv(warm_workers.OFF_SWITCH, "0")
    assert warm_workers.start() is None and warm_workers.current() is None
    workers = _run_noting_parents(tmp_path)
    assert {parent for _, parent in workers} == {0}  # Beam's own workers


def test_a_client_that_finds_no_warm_process_runs_beams_worker_itself(tmp_path):
    warm = warm_workers.start()
    try:
        os.kill(warm.pid, signal.SIGKILL)  # gone before the run asks it for a worker
        os.waitpid(warm.pid, 0)
        workers = _run_noting_parents(tmp_path)
    finally:
        warm_workers.stop()
    assert workers and {parent for _, parent in workers} == {0}


def _processes_of(marker: str) -> list[int]:
    """Processes whose command line or environment holds ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmd, open(f"/proc/{pid}/environ", "rb") as env:
                if marker.encode() in cmd.read() + env.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def _decoding(marker: str) -> bool:
    """Whether a decoder process of a run marked so is running."""
    def cmdline(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""

    return any(b"decoder_process" in cmdline(pid) for pid in _processes_of(marker))


@pytest.mark.slow
def test_a_killed_launcher_leaves_no_warm_process_worker_or_decoder_behind(tmp_path, a0_litert):
    temp = tmp_path / "tmp"
    temp.mkdir()
    for i in range(6):
        good(tmp_path / f"v{i}.mp4", n=400, seed=i)
    cmd = [sys.executable, "-m", "beam_pipeline", "run", "--config", str(REPO / "configs" / "local.yaml"),
           "--input", str(tmp_path / "v*.mp4"), "--output", str(tmp_path / "out"), "--model", a0_litert,
           "--set", "sampling.imgz=64", "--set", "sampling.strategy=all",
           "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    launcher = subprocess.Popen(cmd, env={**os.environ, "TMPDIR": str(temp)}, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while launcher.poll() is None and time.monotonic() < deadline and not _decoding(str(temp)):
        time.sleep(0.1)  # until a forked worker has started decoding
    assert launcher.poll() is None and _decoding(str(temp)), "the run ended or never decoded"
    assert len(_processes_of(str(temp))) >= 5  # launcher, warm process, 2 workers (+ clients, decoders)
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 30
    while _processes_of(str(temp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_of(str(temp)) == []
