"""The same job on Flink and on DirectRunner, on the same cores and the same videos.

``make bench``'s clip (10 s, 340x256, 30 fps, H.264), ``--videos`` copies of it, MoViNet-A0
stream on LiteRT at 5 fps, two cores:

- ``direct``: ``configs/local.yaml`` on two worker processes (``multi_processing``).
- ``flink``: ``configs/flink.yaml``: Beam's Flink job server running Flink itself (``[local]``),
  two slots, two SDK worker processes, kept between stages (``environment_cache_millis``).
- ``flink_worker_per_stage``: the same with ``--environment_cache_millis=0`` (Beam's default): a
  new SDK worker process for each stage of the job, which is where Flink's start-up went before.
- ``job_server_start_s``: ``java -jar`` of the job server to its port answering.

For each run: launch to exit, launch to the first finished video (``start-up``), the steady rate
(``_run.json``'s ``steady_videos_per_s``) and CPU seconds per video (the launcher and every process
under it), split by kind of process (``ProcessTree``: the launcher, the JVM of the job server and
Flink, the SDK workers or Beam's workers, their decoder processes) to show where Flink's overhead
goes. Prints tables and writes ``benchmarks/results/flink.json``.

    .venv/bin/python -m benchmarks.flink [--videos 96] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from apache_beam.utils.subprocess_server import pick_port

from beam_pipeline.job.flink import jobserver
from benchmarks.common import clip_set, machine, print_table, write_json
from benchmarks.startup import a0_stream_model

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
RUNS = {
    "direct": ("local.yaml", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
    "flink": ("flink.yaml", ["--parallelism=2"]),
    "flink_worker_per_stage": ("flink.yaml", ["--parallelism=2", "--environment_cache_millis=0"]),
}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _kind(cmdline: bytes) -> str:
    if b"transforms.decoder_process" in cmdline:
        return "decoders"
    if cmdline.startswith(b"java"):
        return "jvm"
    if any(word in cmdline for word in (b"sdk_worker", b"sdk-worker", b"warm_workers")):
        return "python_workers"
    if b"beam_pipeline" in cmdline:
        return "launcher"
    return "other"


class ProcessTree(threading.Thread):
    """Samples the CPU seconds of every process under ``root`` (by ``/proc``, every 0.1 s) and keeps
    each one's last reading: a process's CPU time up to its last sample before it exits."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root, self.done = root, threading.Event()
        self.cpu: dict[int, tuple[str, float]] = {}
        self.tick = os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        parents, stats = {}, {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                    cmdline = handle.read().replace(b"\0", b" ")
            except OSError:
                continue
            pid = int(entry.name)
            parents[pid] = int(fields[1])
            stats[pid] = (cmdline, (int(fields[11]) + int(fields[12])) / self.tick)
        for pid, (cmdline, seconds) in stats.items():
            ancestor = pid
            while ancestor not in (self.root, 0, 1) and ancestor in parents:
                ancestor = parents[ancestor]
            if ancestor == self.root:
                kind = _kind(cmdline)  # the last kind that says something (an exiting process has no cmdline)
                if kind == "other" and pid in self.cpu:
                    kind = self.cpu[pid][0]
                self.cpu[pid] = (kind, seconds)

    def run(self) -> None:
        while not self.done.is_set():
            self._sample()
            time.sleep(0.1)

    def by_kind(self) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for kind, seconds in self.cpu.values():
            totals[kind] += seconds
        return dict(totals)

    def processes(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for kind, _ in self.cpu.values():
            counts[kind] += 1
        return dict(sorted(counts.items()))


def _run(name: str, inputs: str, out: Path, model: str) -> dict:
    config, extra = RUNS[name]
    cpu, launched = _children_cpu_s(), time.time()
    command = [sys.executable, "-m", "beam_pipeline", "run", "--config", str(REPO / "configs" / config),
               "--input", inputs, "--output", str(out), "--model", model, "--overwrite", *extra]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tree = ProcessTree(proc.pid)
    tree.start()
    _, stderr = proc.communicate()
    wall = time.time() - launched
    tree.done.set()
    tree.join()
    if proc.returncode:
        raise RuntimeError(f"{name} exited {proc.returncode}:\n{stderr[-3000:]}")
    record = json.loads((out / "_run.json").read_text())
    started = datetime.datetime.fromisoformat(record["started_at"]).timestamp()
    videos = record["counts"]["videos"]
    first_video_s = started - launched + record["throughput"]["startup_s"]
    return {"wall_s": round(wall, 2), "startup_s": round(first_video_s, 2),
            "steady_videos_per_s": record["throughput"]["steady_videos_per_s"],
            "cpu_s_per_video": round((_children_cpu_s() - cpu) / videos, 3), "videos": videos,
            "cpu_s_per_video_by_process": {kind: round(seconds / videos, 3)
                                           for kind, seconds in sorted(tree.by_kind().items())},
            "processes": tree.processes(),
            "worker_processes": record["throughput"]["worker_processes"]}


def _job_server_start_s() -> float:
    """``java -jar`` of the fetched job server until its job port accepts a connection."""
    port, = pick_port(None)
    start = time.perf_counter()
    server = subprocess.Popen(jobserver.server_command(jobserver.job_server_jar(), port),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return round(time.perf_counter() - start, 2)
            except OSError:
                time.sleep(0.02)
    finally:
        server.kill()
        server.wait()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=96)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "videolabel-bench-flink"))
    args = parser.parse_args(argv)
    if jobserver.job_server_jar() is None:
        sys.exit("benchmarks.flink: Beam's Flink job server is not fetched; run `make flink`")
    workdir = Path(args.workdir)
    model = a0_stream_model(workdir)
    inputs = clip_set(workdir, args.videos)
    runs = {name: _run(name, inputs, workdir / name, model) for name in RUNS}
    direct = runs["direct"]
    for figures in runs.values():
        figures["steady_vs_direct"] = round(figures["steady_videos_per_s"] / direct["steady_videos_per_s"], 3)
        figures["startup_over_direct_s"] = round(figures["startup_s"] - direct["startup_s"], 2)
    job_server = _job_server_start_s()
    columns = ["run", "launch to exit", "start-up", "steady videos/s", "vs direct", "CPU s/video", "workers"]
    rows = [[name, f"{r['wall_s']} s", f"{r['startup_s']} s", r["steady_videos_per_s"], r["steady_vs_direct"],
             r["cpu_s_per_video"], r["worker_processes"]] for name, r in runs.items()]
    print_table(f"{args.videos} videos, A0 stream (LiteRT) at 5 fps, two cores", columns, rows)
    kinds = sorted({kind for r in runs.values() for kind in r["cpu_s_per_video_by_process"]})
    print_table("CPU seconds per video, by process (sampled; a process's last reading before it exits)",
                ["run", *kinds], [[name, *(r["cpu_s_per_video_by_process"].get(kind, 0) for kind in kinds)]
                                  for name, r in runs.items()])
    print(f"\nBeam's Flink job server alone: {job_server} s from `java -jar` to its port answering")
    result = {"runs": runs, "job_server_start_s": job_server, "videos": args.videos,
              "beam_java": jobserver.versions()[0], "flink": jobserver.versions()[1], "machine": machine()}
    write_json(RESULTS / "flink.json", result)
    return result


if __name__ == "__main__":
    main()
