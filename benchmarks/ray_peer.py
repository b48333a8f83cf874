"""videolabel's labelling job written the way a Ray Data user would write it, for ``benchmarks.throughput``.

The same work as ``videolabel run`` with MoViNet-A0 stream at 5 fps: each video
is decoded and sampled by videolabel's own ``sample_frames`` (so the frames are
identical), the model (``models.movinet.Movinet``, a SavedModel or a ``.tflite``
alike, one thread) runs over the whole clip in one ``step``, and every sampled
frame becomes a row (top-1 class and score), written with ``write_parquet``.
A SavedModel runs in TensorFlow and a ``.tflite`` on LiteRT; ``videolabel run``
(``model.runtime: auto``) runs an ``export-movinet`` SavedModel on LiteRT, so
give this a ``.tflite`` to compare like with like.

The arrangement is the one Ray Data's batch-inference guide gives: the paths
(``from_items``) -> a stateless decode function -> a callable class holding the
model in a fixed pool of actors (``ActorPoolStrategy(size=cores)``) -> Parquet.
Both map stages ask for the same resources, so Ray Data fuses them into one
operator: each actor decodes its video and runs the model on the frames in the
same process, and the frames never go through the object store. Leaving them
apart (decode tasks asking for other resources) was measured too: no faster on
two cores, and it adds the object-store hop (~4.4 MB a 10-s clip: 50 frames
uint8 [172, 172, 3]) plus, with a whole CPU per actor, decode tasks that never
get a CPU. Each actor reserves half a CPU, so the ``Write`` tasks (one CPU each)
can run while the actors work. Ray's worker processes run at its default
niceness (``RAY_worker_niceness``, 15): on a machine shared with other work
they get less CPU than videolabel's workers would.

Measured as videolabel is (``transforms.progress``): each actor notes the time
it finished a video and its pid; the steady rate is the sum over actors of
(videos - 1) / (last - first finish time). ``startup_s`` runs from the call of
``run_ray`` (before ``import ray``) to the first finished video.

    python -m benchmarks.ray_peer --model PATH --out DIR [--cores N] VIDEO...
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections import defaultdict

import numpy as np

__all__ = ["Labeler", "decode_video", "main", "run_ray"]

_POLL_S = 0.5


def _config(model: str):
    """videolabel's job config for MoViNet-A0 stream at 5 fps, one TF thread, with ``model``."""
    from beam_pipeline.config import load_config

    return load_config(None, ["model.model_id=a0", "model.model_mode=stream", "sampling.fps=5",
                              "model.tf_threads=1", f"model.handle={model}"])


def decode_video(batch: dict[str, np.ndarray], spec) -> dict[str, np.ndarray]:
    """One video's sampled frames, by videolabel's ``sample_frames`` with ``spec`` (a ``SamplingSpec``).

    Args:
        batch: ``{"path": str [1]}``.

    Returns:
        ``{"path": str [1], "frames": uint8 [1, t, imgz, imgz, 3]}``, values 0-255.

    Raises:
        ValueError: the video gave no frames (the decoder's error in the message).
    """
    from transforms.decoding import DecodeReport, sample_frames

    (path,) = batch["path"]
    report = DecodeReport()
    frames = [frame.image for frame in sample_frames(str(path), spec, report)]
    if not frames:
        raise ValueError(f"{path}: no frames ({report.error})")
    return {"path": np.array([path]), "frames": np.stack(frames)[np.newaxis]}


class Labeler:
    """The MoViNet stream model, loaded once per actor: a video's frames -> one row per frame.

    Args:
        model: a stream-mode SavedModel folder or ``.tflite`` file.
        num_labels: the model's number of classes.
        imgz: the frames' side in pixels.
    """

    def __init__(self, model: str, num_labels: int, imgz: int):
        from models.movinet import Movinet

        self._model = Movinet(handle=model, mode="stream", num_labels=num_labels, imgz=imgz,
                              tf_threads=1).load()
        self._imgz = imgz
        self._pid = os.getpid()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{"path": str [1], "frames": uint8 [1, t, h, w, 3]}`` -> t rows: ``path`` str, ``frame``
        int64 (0-based sampled frame), ``label`` int64 (top-1 class), ``score`` float32 (its probability),
        ``done_at`` float64 (epoch seconds when this video was done), ``pid`` int64 (this actor's)."""
        (path,), (frames,) = batch["path"], batch["frames"]
        probs, _ = self._model.step(np.asarray(frames), self._model.init_states(self._imgz))
        t = len(probs)
        return {"path": np.repeat(np.array([path]), t), "frame": np.arange(t, dtype=np.int64),
                "label": probs.argmax(axis=1).astype(np.int64), "score": probs.max(axis=1),
                "done_at": np.full(t, time.time()), "pid": np.full(t, self._pid, dtype=np.int64)}


class _ProcessPoller:
    """Polls this process's descendants (Ray's gcs_server, raylet, agents, internal actors and workers)
    every 0.5 s for the map workers' peak RSS and every process's CPU seconds, by kind: ``map_workers``
    (the actors running ``Labeler``), ``ray_other`` (everything else Ray started)."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self._peak_rss: dict[int, int] = {}
        self._cpu: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(_POLL_S):
            self.poll()

    def poll(self) -> None:
        import psutil

        for proc in self._me.children(recursive=True):
            try:
                with proc.oneshot():
                    title = " ".join(proc.cmdline())  # Ray sets a worker's to ray::<what it runs>
                    cpu = proc.cpu_times()
                    rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            kind = "map_workers" if title.startswith("ray::MapWorker") else "ray_other"
            self._cpu[proc.pid] = (kind, cpu.user + cpu.system)
            if kind == "map_workers":
                self._peak_rss[proc.pid] = max(rss, self._peak_rss.get(proc.pid, 0))

    def __enter__(self) -> _ProcessPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def summary(self) -> dict:
        """``peak_rss_mb_per_worker``: the largest map worker's peak RSS; ``cpu_s``: CPU seconds by kind,
        and of the driver (this process)."""
        cpu: dict[str, float] = defaultdict(float)
        for kind, seconds in self._cpu.values():
            cpu[kind] += seconds
        own = self._me.cpu_times()
        cpu["driver"] = own.user + own.system
        return {"peak_rss_mb_per_worker": round(max(self._peak_rss.values(), default=0) / 2**20, 1),
                "cpu_s": {kind: round(seconds, 2) for kind, seconds in sorted(cpu.items())}}


def run_ray(videos: list[str], model: str, cores: int, out: str) -> dict:
    """Labels ``videos`` with Ray Data on ``cores`` CPUs and writes the frame rows as Parquet under ``out``
    (replaced if present).

    Returns:
        ``videos_per_s`` (steady rate, ``transforms.progress.steady_rate``), ``startup_s``, ``wall_s``,
        ``videos``, ``peak_rss_mb_per_worker`` (the largest actor process), ``actors`` (that finished videos)
        and ``cpu_s`` (CPU seconds of the actors, of the rest of Ray's processes and of the driver).

    Raises:
        AssertionError: a video has no rows in the output.
    """
    started = time.time()
    os.environ.update({"OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"})  # inherited by the workers
    import pyarrow.parquet as pq
    import ray

    from beam_pipeline.job.checks import resolve_labels
    from beam_pipeline.job.pipeline import sampling_spec
    from transforms.progress import steady_rate

    cfg = _config(model)
    ray.init(num_cpus=cores, include_dashboard=False, logging_level="warning")
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        with _ProcessPoller() as poller:
            (ray.data.from_items([{"path": v} for v in videos])
             .map_batches(decode_video, batch_size=1, fn_kwargs={"spec": sampling_spec(cfg)}, num_cpus=0.5)
             .map_batches(Labeler, batch_size=1, compute=ray.data.ActorPoolStrategy(size=cores), num_cpus=0.5,
                          fn_constructor_args=(model, len(resolve_labels(cfg, model)), cfg.imgz))
             .write_parquet(out, mode=ray.data.SaveMode.OVERWRITE))
        wall = time.time() - started
    finally:
        ray.shutdown()
    table = pq.read_table(out, columns=["path", "done_at", "pid"])
    missing = set(videos) - set(table["path"].to_pylist())
    assert not missing, f"{len(missing)} videos without rows, e.g. {sorted(missing)[:3]}"
    done_at: dict[int, list[float]] = defaultdict(list)
    for _, at, pid in sorted(set(zip(*(table[c].to_pylist() for c in ("path", "done_at", "pid"))))):
        done_at[pid].append(at)
    steady = steady_rate(done_at.values())
    first = min(at for times in done_at.values() for at in times)
    return {"videos_per_s": round(steady, 3) if steady else None, "startup_s": round(first - started, 3),
            "wall_s": round(wall, 3), "videos": len(videos), **poller.summary(), "actors": len(done_at)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a stream-mode SavedModel folder or .tflite file")
    parser.add_argument("--out", required=True, help="folder for the Parquet rows (replaced)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("videos", nargs="+")
    args = parser.parse_args(argv)
    print(json.dumps(run_ray(args.videos, args.model, args.cores, args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
