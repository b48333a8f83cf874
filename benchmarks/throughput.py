"""Throughput side by side: the machine's ceilings per runtime, the hand-written loop, Ray Data, videolabel.

On a fixed set of Kinetics-like clips (10 s, 340x256, 30 fps, GOP 250; or
``--videos-dir``), MoViNet ``--variant`` (default A0 stream) at 5 fps, measures:

(a) decode ceiling: videolabel's in-order decode (only the sampled frames
    converted), one process per core, videos split between them; and the same
    through the decoder process that a run decodes in (its cost apart);
(b) model ceilings, one per runtime (TensorFlow on the SavedModel, LiteRT on its
    conversion; stream models only): the model on each video's sampled frames,
    one process per core, one thread each;
(c) combined ceiling = cores / (decode + model core-seconds per video), for the
    runtime the run uses, all cores busy as in a real run;
(d) naive: one process, every frame decoded to an RGB array in a list, the 5 fps
    subset resized, then the SavedModel in TensorFlow: what users write by hand;
(e) Ray Data (``benchmarks.ray_peer``, with ``make bench``'s ``bench`` extra): the
    same job as a Ray user writes it, the same decoder, model file and cores;
(f) videolabel: ``videolabel run`` on DirectRunner (multi_processing, one worker
    per core, one model thread each, default output settings), once per runtime,
    on as many videos as its runtime's combined ceiling (measured first) does in
    ``--steady-s`` seconds (60), plus 4 a core: at least a minute of steady state
    on any machine. Its steady rate is ``_run.json``'s ``throughput.steady_videos_per_s``:
    per worker, (videos - 1) / (last - first finish time), summed over workers, the
    way the ceilings sum their processes' timed sections. In its steady window (every
    worker past its first video, none at its last) the machine's CPU counters give the
    cores' busy share and the busy core-seconds per video, which the run's own stage
    times split (``benchmarks.steady``): probe, decode and transfer (the decoder
    process), model, aggregate, write, and Beam's share, what they leave.

A ceiling is an upper bound for the same model calls: every video's call (or
decode) is timed ``REPEATS`` times on warm data in a process pinned to its own
core and the fastest counts; the ceilings are measured before and after the runs
and the faster of the two is kept. ``model_in_run`` sets the run's own model
core-seconds per video (``_run.json`` ``stage_s.model``) beside the ceiling's.

The Ray Data run has the LiteRT run's videos; the ceilings and the naive loop N.
Start-up is reported apart: ``startup_s`` is from the ``videolabel`` process's
launch to its first finished video (the model already converted, as after
``export-movinet`` or ``train``). ``peak_rss_mb_per_worker`` is the largest
resident size of any one process of the run. Prints four tables (paths, runtimes,
stages, targets) and writes JSON whose top level has ``videolabel_share_of_ceiling``,
``videolabel_vs_naive``, ``videolabel_vs_tf_path``, ``videolabel_vs_ray``, ``startup_s``,
``peak_rss_mb_per_worker``, ``targets``, ``busy_share_in_steady_window`` and
``stage_ms_per_video``.

    python -m benchmarks.throughput [--videos 48] [--steady-s 60] [--variant a0:stream] [--videos-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.util
import json
import math
import operator
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import panning_video, print_table, write_json
from benchmarks.steady import STAGES, CpuSample, CpuSampler, stage_ms, steady_figures

RESULTS = Path(__file__).parent / "results"


def _results_path(variant: str) -> Path:
    """throughput.json for the headline variant (A0 stream), throughput_<id>_<mode>.json for others."""
    name = "throughput" if variant == "a0:stream" else f"throughput_{variant.replace(':', '_')}"
    return RESULTS / f"{name}.json"
CLIP = {"seconds": 10.0, "width": 340, "height": 256, "fps": 30, "gop": 250}
FPS = 5.0


def _job(variant: str, handle: str, *settings: str):
    """videolabel's config for ``variant`` ("a0:stream") at 5 fps with the model ``handle``, plus
    ``settings`` (``key=value`` overrides)."""
    from beam_pipeline.config import load_config

    model_id, mode = variant.split(":")
    return load_config(None, [f"model.model_id={model_id}", f"model.model_mode={mode}", f"sampling.fps={FPS}",
                              "model.tf_threads=1", f"model.handle={handle}", *settings])


REPEATS = 3


def _fastest(fn, *args) -> tuple[float, float]:
    """(wall, process CPU) seconds of the fastest of ``REPEATS`` calls of ``fn(*args)``."""
    best_wall = best_cpu = float("inf")
    for _ in range(REPEATS):
        wall, cpu = time.perf_counter(), time.process_time()
        fn(*args)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def child_decode(videos: list[str], variant: str, handle: str, isolated: bool = False) -> dict:
    """Decode only: videolabel's sample_frames on each video, in a process pinned to a core of its own;
    ``isolated``: through the decoder process a run decodes in (started before the clock), on the
    same core, so the difference is what isolation costs. Each video: the fastest of REPEATS."""
    from beam_pipeline.job.pipeline import sampling_spec
    from transforms.cores import pin_to_free_core
    from transforms.decoder_process import decode_isolated
    from transforms.decoding import DecodeReport, sample_frames

    pin_to_free_core()
    spec = sampling_spec(_job(variant, handle))
    decode = decode_isolated if isolated else sample_frames
    list(decode(videos[0], spec, DecodeReport()))  # warm: the decoder process starts
    seconds = cpu = 0.0
    for video in videos:
        wall_s, cpu_s = _fastest(lambda v: list(decode(v, spec, DecodeReport())), video)
        seconds, cpu = seconds + wall_s, cpu + cpu_s
    return {"seconds": seconds, "call_cpu_s": cpu, "videos": len(videos), **_usage()}


def child_model(videos: list[str], variant: str, handle: str, cumulative: bool = False) -> dict:
    """Model only: videolabel's model handler on frames decoded beforehand (not timed), pinned to a core.

    ``handle`` is the SavedModel (TensorFlow) or its .tflite conversion (LiteRT).
    Frame labels come from the default frame window, or with ``cumulative`` from
    the cumulative output (``model.frame_window_s: 0``), to measure the window's cost.
    Each video is one ``FrameSource`` holding its sampled frames, so the handler's
    ``run_inference`` does exactly the run's model work and no decoding; each
    video counts the fastest of REPEATS calls.
    """
    from beam_pipeline.job.checks import resolve_labels
    from beam_pipeline.job.pipeline import make_handler, sampling_spec
    from beam_pipeline.job.serving import ServedModel
    from transforms.cores import pin_to_free_core
    from transforms.decoding import DecodeReport, sample_frames
    from transforms.records import FrameSource, VideoRef

    pin_to_free_core()
    cfg = _job(variant, handle, *(["model.frame_window_s=0"] if cumulative else []))
    spec = sampling_spec(cfg)
    sources = []
    for video in videos:
        ref, report = VideoRef(video, video, None, "test"), DecodeReport()
        frames = tuple(sample_frames(video, spec, report))
        sources.append(FrameSource(ref, spec, report.meta, frames, report.info(ref)))
    loaded = time.perf_counter()  # start-up: the model's load and first call
    handler = make_handler(cfg, ServedModel.of(cfg, handle), len(resolve_labels(cfg, handle)))
    model = handler.load_model()
    list(handler.run_inference(sources[:1], model))
    startup = time.perf_counter() - loaded
    seconds = cpu = 0.0
    for source in sources:
        wall_s, cpu_s = _fastest(lambda s: list(handler.run_inference([s], model)), source)
        seconds, cpu = seconds + wall_s, cpu + cpu_s
    frames = sum(len(s.frames) for s in sources)
    return {"seconds": seconds, "call_cpu_s": cpu, "videos": len(videos), "frames": frames,
            "startup_s": startup, **_usage()}


def child_naive(videos: list[str], variant: str, model_dir: str) -> dict:
    """The hand-written loop: decode every frame to RGB into a list, take 5 fps, resize, run the model.

    The model is the same SavedModel, loaded the way its users load TF Hub
    models, with TensorFlow's own thread settings (all cores).
    """
    import av
    import numpy as np
    import tensorflow as tf
    import tensorflow_hub as hub

    from models.movinet_variants import native_imgz
    from transforms.clips import pad_clip

    model_id, mode = variant.split(":")
    side = native_imgz(model_id)
    loaded = time.perf_counter()
    signatures = hub.load(model_dir).signatures

    def run(frames):
        images = tf.constant(frames.astype(np.float32)[None] / 255.0)
        if mode == "stream":
            states = signatures["init_states"](input_shape=tf.constant([1, len(frames), side, side, 3]))
            return signatures["call"](**states, image=images)["logits"].numpy()
        clips = np.stack([pad_clip(frames[i:i + 8], 8) for i in range(0, len(frames), 8)])
        out = signatures["serving_default"](image=tf.constant(clips.astype(np.float32) / 255.0))
        return out["logits"].numpy()

    run(np.zeros((8, side, side, 3), np.uint8))
    startup = time.perf_counter() - loaded
    start = time.perf_counter()
    for video in videos:
        with av.open(video) as container:
            stream = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            step = max(1, round(float(stream.average_rate) / FPS))
        picked = np.stack(frames[::step])
        resized = tf.image.resize_with_pad(picked, side, side).numpy().astype(np.uint8)
        run(resized)
    return {"seconds": time.perf_counter() - start, "videos": len(videos), "startup_s": startup, **_usage()}


def _usage() -> dict:
    """Peak RSS (MB) and CPU seconds of this process and the children it has waited for."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"peak_rss_mb": round(max(own.ru_maxrss, kids.ru_maxrss) / 1024, 1),
            "cpu_s": round(own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime, 2)}


def _child(kind: str, videos: list[str], variant: str, handle: str) -> dict:
    """Runs one measurement in a fresh process; its JSON includes its own peak RSS and CPU seconds."""
    args = [sys.executable, "-m", "benchmarks.throughput", "--child", kind, variant, handle, *videos]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _parallel(kind: str, videos: list[str], variant: str, handle: str, cores: int) -> dict:
    """``cores`` child processes at once, the videos split between them; the slowest one's timed section."""
    shares = [videos[i::cores] for i in range(cores)]
    start = time.perf_counter()
    args = [[sys.executable, "-m", "benchmarks.throughput", "--child", kind, variant, handle, *share]
            for share in shares]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for a in args]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - start
    # the processes' own timed sections (start-up excluded), run side by side
    busy = max(r["seconds"] for r in results)
    measured = {"videos_per_s": round(len(videos) / busy, 3), "wall_s": round(wall, 2),
                "core_s_per_video": round(sum(r["seconds"] for r in results) / len(videos), 4),
                "cpu_s_per_video": round(sum(r["call_cpu_s"] for r in results) / len(videos), 4),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}
    if "startup_s" in results[0]:
        measured["startup_s"] = round(max(r["startup_s"] for r in results), 2)
        measured["core_s_per_50_frames"] = round(
            sum(r["seconds"] for r in results) / sum(r["frames"] for r in results) * 50, 4)
    return measured


def _faster(first: dict, second: dict) -> dict:
    """Of two measurements of one ceiling, the one with fewer core-seconds per video, both kept."""
    best = min(first, second, key=lambda m: m["core_s_per_video"])
    return {**best, "before_run": first, "after_run": second}


def _export(variant: str, workdir: Path) -> tuple[str, str | None]:
    """(the variant's SavedModel, its LiteRT conversion for stream models), exported once.

    Random weights: speed does not depend on them. ``export-movinet`` also puts the
    conversion in the model cache, where ``videolabel run`` finds it.
    """
    from models.movinet_convert import LAYOUT, litert_model
    from models.movinet_variants import native_imgz

    model_id, mode = variant.split(":")
    model = workdir / f"{model_id}_{mode}_layout{LAYOUT}"  # exported again when the signatures change
    if not (model / "saved_model.pb").exists():
        subprocess.run([sys.executable, "-m", "beam_pipeline", "export-movinet", "--model-id", model_id,
                        "--mode", mode, "--output", str(model)], check=True, capture_output=True)
    tflite = litert_model(str(model), native_imgz(model_id), model_id, 600) if mode == "stream" else None
    return str(model), tflite


def _videolabel(videos: list[str], variant: str, model: str, runtime: str, cores: int, workdir: Path) -> dict:
    """``videolabel run`` on a manifest of ``videos`` with ``model.runtime``: steady rate, start-up from
    launch and from the job's start, wall, CPU, peak memory, the model's own seconds, and in the steady
    window (``benchmarks.steady``) the cores' busy share and each stage's milliseconds per video."""
    model_id, mode = variant.split(":")
    manifest = workdir / f"manifest_{len(videos)}.csv"
    manifest.write_text("uri\n" + "\n".join(videos) + "\n")
    out = workdir / f"out_{len(videos)}_{runtime}"
    cmd = [sys.executable, "-m", "beam_pipeline", "run", "--input", str(manifest), "--output", str(out),
           "--model", model, "--overwrite", "--set", f"model.model_id={model_id}",
           "--set", f"model.model_mode={mode}", "--set", f"sampling.fps={FPS}", "--set", "model.tf_threads=1",
           "--set", f"model.runtime={runtime}", "--runner=DirectRunner",
           "--direct_running_mode=multi_processing", f"--direct_num_workers={cores}"]
    # run under a fresh measuring process, so peak RSS and CPU are this run's (workers included)
    measured = _measured([sys.executable, "-m", "benchmarks.throughput", "--measure", *cmd], "videolabel run")
    run = json.loads((out / "_run.json").read_text())
    assert run["counts"].get("videos_ok") == len(videos), run["counts"]
    throughput = run["throughput"]
    job_start = datetime.datetime.fromisoformat(run["started_at"]).timestamp()
    samples = [CpuSample(*sample) for sample in measured.pop("cpu_samples")]
    steady = steady_figures(samples, throughput["steady_window"], throughput["steady_window_videos"])
    return {**measured, "videos_per_s": throughput["steady_videos_per_s"], "runtime": run["model"]["runtime"],
            "videos": len(videos), "job_startup_s": throughput["startup_s"],
            "startup_s": round(job_start - measured["launched_at"] + throughput["startup_s"], 2),
            "steady": steady, "stage_s": run["timings"]["stage_s"],
            "stage_ms_per_video": stage_ms(run["timings"]["stage_s"], len(videos),
                                           steady["busy_core_s_per_video"]),
            "model_core_s_per_video": round(run["timings"]["stage_s"]["model"] / len(videos), 4)}


def _ray(videos: list[str], tflite: str, cores: int, workdir: Path) -> dict | None:
    """The same job on Ray Data (``benchmarks.ray_peer``) with the same LiteRT model; None without ray."""
    if importlib.util.find_spec("ray") is None:
        print("ray is not installed (make bench installs the bench extra): no Ray Data row", file=sys.stderr)
        return None
    cmd = [sys.executable, "-m", "benchmarks.ray_peer", "--model", tflite, "--out", str(workdir / "out_ray"),
           "--cores", str(cores), *videos]
    return _measured(cmd, "Ray Data peer")


def _measured(cmd: list[str], what: str) -> dict:
    """Runs ``cmd``, which prints JSON as its last line of output, and returns that JSON."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ceilings(half: list[str], variant: str, handles: dict[str, str], cores: int) -> dict:
    """decode, decode through the decoder process, the model on each runtime, and the model on the
    last runtime with cumulative frame labels (no window), in that order."""
    out = {"decode": _parallel("decode", half, variant, handles["tf"], cores),
           "isolated": _parallel("isolated", half, variant, handles["tf"], cores)}
    for runtime, handle in handles.items():
        out[runtime] = _parallel("model", half, variant, handle, cores)
    out["cumulative"] = _parallel("cumulative", half, variant, list(handles.values())[-1], cores)
    return out


# The issue's targets for the headline run: (figure, the least or most it may be)
TARGETS = {"videolabel_share_of_ceiling": (">=", 0.9), "videolabel_vs_tf_path": (">=", 1.5),
           "peak_rss_mb_per_worker": ("<", 600)}
EDGE_VIDEOS_PER_CORE = 4  # a run's videos besides its steady state: each worker's first, the tail


def _links(workdir: Path, pool: list[str], count: int) -> list[str]:
    """``count`` distinct paths (links to the clips of ``pool`` in turn), so nothing is cached by path."""
    videos = []
    for i in range(count):
        link = workdir / "set" / f"v{i:05d}.mp4"
        link.parent.mkdir(exist_ok=True)
        if not link.exists():
            link.symlink_to(pool[i % len(pool)])
        videos.append(str(link))
    return videos


def _combined(ceilings: dict, runtimes, cores: int) -> dict[str, float]:
    """Each runtime's combined ceiling, videos/s: cores / (decode + its model core-seconds per video)."""
    decode_s = ceilings["decode"]["core_s_per_video"]
    return {name: cores / (decode_s + ceilings[name]["core_s_per_video"]) for name in runtimes}


def _run_size(rate: float, steady_s: float, cores: int) -> int:
    """Videos for a run of ``steady_s`` seconds of steady state at ``rate`` videos/s (its ceiling: the run
    itself is slower, so it lasts longer), plus each worker's first videos and the tail."""
    return math.ceil(rate * steady_s) + EDGE_VIDEOS_PER_CORE * cores


def _targets(figures: dict) -> dict:
    """Each target of ``TARGETS`` with the figure and whether it held."""
    held = {">=": operator.ge, "<": operator.lt}
    return {name: {"target": f"{op} {bound}", "value": figures[name], "held": held[op](figures[name], bound)}
            for name, (op, bound) in TARGETS.items() if figures.get(name) is not None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=48,
                        help="N: the ceilings and the naive loop run on N videos")
    parser.add_argument("--steady-s", type=float, default=60.0,
                        help="each run's steady state at its runtime's combined ceiling, in seconds: the "
                             f"run's videos are that many seconds' worth, plus {EDGE_VIDEOS_PER_CORE} a core")
    parser.add_argument("--variant", default="a0:stream")
    parser.add_argument("--videos-dir", help="a folder of .mp4 videos to use instead of generated clips")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "videolabel-throughput"))
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.videos_dir:
        pool = sorted(str(p) for p in Path(args.videos_dir).glob("*.mp4"))
    else:
        pool = [str(panning_video(workdir / f"clip_{i:03d}.mp4", **CLIP)) for i in range(8)]
    half = _links(workdir, pool, args.videos)

    model_dir, tflite = _export(args.variant, workdir)
    handles = {"tf": model_dir, **({"litert": tflite} if tflite else {})}
    before = _ceilings(half, args.variant, handles, cores)
    naive = _child("naive", half, args.variant, model_dir)
    sizes = {name: _run_size(rate, args.steady_s, cores)
             for name, rate in _combined(before, handles, cores).items()}
    runs = {name: _videolabel(_links(workdir, pool, sizes[name]), args.variant, model_dir, name, cores,
                              workdir) for name in handles}
    ray = _ray(_links(workdir, pool, sizes["litert"]), tflite, cores, workdir) if tflite else None
    after = _ceilings(half, args.variant, handles, cores)
    ceiling = {name: _faster(before[name], after[name]) for name in before}

    runtime = "litert" if tflite else "tf"
    run = runs[runtime]
    decode = ceiling["decode"]
    combined = _combined(ceiling, handles, cores)
    naive_rate = naive["videos"] / naive["seconds"]
    steady = run["videos_per_s"]
    isolation_s = ceiling["isolated"]["core_s_per_video"] - decode["core_s_per_video"]
    per_video = decode["core_s_per_video"] + ceiling[runtime]["core_s_per_video"]
    window_s = ceiling[runtime]["core_s_per_video"] - ceiling["cumulative"]["core_s_per_video"]
    frame_window_s = _job(args.variant, model_dir).model.frame_window_s

    rows = [["decode ceiling", decode["videos_per_s"], decode["videos_per_s"] / combined[runtime], "", "",
             f"{cores} procs"],
            ["decode, decoder process", ceiling["isolated"]["videos_per_s"],
             ceiling["isolated"]["videos_per_s"] / combined[runtime], "", "",
             f"{isolation_s * 1000:+.1f} ms/video, {isolation_s / per_video:+.1%} of a video's core-s"]]
    for name in handles:
        rows.append([f"model ceiling, {name}", ceiling[name]["videos_per_s"],
                     ceiling[name]["videos_per_s"] / combined[runtime], "", ceiling[name]["peak_rss_mb"],
                     f"{cores} procs"])
        rows.append([f"combined ceiling, {name}", combined[name], combined[name] / combined[runtime], "", "",
                     f"{decode['core_s_per_video'] + ceiling[name]['core_s_per_video']:.3f} core-s/video"])
    cumulative = ceiling["cumulative"]
    rows.append([f"model ceiling, {runtime}, cumulative frame labels", cumulative["videos_per_s"],
                 cumulative["videos_per_s"] / combined[runtime], "", cumulative["peak_rss_mb"],
                 f"the {frame_window_s:g}-s frame window costs {window_s * 1000:+.1f} ms/video, "
                 f"{window_s / cumulative['core_s_per_video']:+.1%} of the model's core-s"])
    rows.append(["naive loop (TF)", naive_rate, naive_rate / combined[runtime], 1.0, naive["peak_rss_mb"],
                 f"start-up {naive['startup_s']:.1f} s"])
    if ray:
        rows.append(["Ray Data (LiteRT)", ray["videos_per_s"], ray["videos_per_s"] / combined[runtime],
                     ray["videos_per_s"] / naive_rate, ray["peak_rss_mb_per_worker"],
                     f"start-up {ray['startup_s']:.1f} s"])
    for name, measured in runs.items():
        rows.append([f"videolabel run, {name}", measured["videos_per_s"],
                     measured["videos_per_s"] / combined[runtime], measured["videos_per_s"] / naive_rate,
                     measured["peak_rss_mb"],
                     f"{measured['videos']} videos, start-up {measured['startup_s']:.1f} s; steady "
                     f"{measured['steady']['window_s']:.0f} s, {measured['steady']['busy_share']:.0%} of "
                     f"{cores} cores busy, {measured['steady']['busy_core_s_per_video']:.3f} core-s/video"])
    title = f"{args.variant} at {FPS:g} fps, {cores} cores, 10-s 340x256 clips"
    print_table(title, ["path", "videos/s", f"share of {runtime} ceiling", "vs naive", "peak MB", "notes"],
                rows)
    print_table("runtimes: the model alone, one thread per process, the fastest of "
                f"{REPEATS} calls per video",
                ["runtime", "core-s / 50 frames", "videos/s", "start-up s", "peak MB"],
                [[name, ceiling[name]["core_s_per_50_frames"], ceiling[name]["videos_per_s"],
                  ceiling[name]["startup_s"], ceiling[name]["peak_rss_mb"]] for name in handles])
    ceiling_ms = {"decode": decode["core_s_per_video"] * 1000,
                  "model": ceiling[runtime]["core_s_per_video"] * 1000}
    print_table(f"where a video's core-seconds go in the steady window, ms per video (ceiling: "
                f"decode {ceiling_ms['decode']:.1f}, model {ceiling_ms['model']:.1f}, "
                f"{sum(ceiling_ms.values()):.1f} in all)",
                ["run", *STAGES, "beam", "total", "over the ceiling", "cores busy"],
                [[name, *(m["stage_ms_per_video"][stage] for stage in (*STAGES, "beam", "total")),
                  m["stage_ms_per_video"]["total"] - ceiling_ms["decode"]
                  - ceiling[name]["core_s_per_video"] * 1000,
                  f"{m['steady']['busy_share']:.1%}"] for name, m in runs.items()])
    figures = {"videolabel_share_of_ceiling": round(steady / combined[runtime], 3),
               "videolabel_vs_naive": round(steady / naive_rate, 3),
               "videolabel_vs_tf_path": round(steady / runs["tf"]["videos_per_s"], 3),
               "videolabel_vs_ray": round(steady / ray["videos_per_s"], 3) if ray else None,
               "startup_s": run["startup_s"], "peak_rss_mb_per_worker": run["peak_rss_mb"]}
    targets = _targets(figures)
    print_table("targets", ["figure", "target", "value", "held"],
                [[name, t["target"], t["value"], "yes" if t["held"] else "NO"]
                 for name, t in targets.items()])
    write_json(_results_path(args.variant), {
        "variant": args.variant, "cores": cores, "videos": {"ceilings": args.videos, **sizes},
        "steady_s": args.steady_s, "clip": CLIP, "repeats": REPEATS, "runtime": runtime, **figures,
        "targets": targets,
        "busy_share_in_steady_window": run["steady"]["busy_share"],
        "stage_ms_per_video": run["stage_ms_per_video"],
        "ceiling_ms_per_video": {name: round(ms, 2) for name, ms in ceiling_ms.items()},
        "combined_ceiling_videos_per_s": {name: round(rate, 3) for name, rate in combined.items()},
        "decode_ceiling": decode, "decode_in_decoder_process": ceiling["isolated"],
        "isolation_core_s_per_video": round(isolation_s, 4),
        "isolation_share_of_video": round(isolation_s / per_video, 4),
        "frame_window_s": frame_window_s,
        "model_ceiling_cumulative": ceiling["cumulative"],
        "frame_window_core_s_per_video": round(window_s, 4),
        "frame_window_share_of_model": round(window_s / ceiling["cumulative"]["core_s_per_video"], 4),
        "model_ceiling": {name: ceiling[name] for name in handles},
        "model_in_run": {name: {"run_core_s_per_video": runs[name]["model_core_s_per_video"],
                                "ceiling_core_s_per_video": ceiling[name]["core_s_per_video"]}
                         for name in handles},
        "naive": {**naive, "videos_per_s": round(naive_rate, 3)},
        "ray": ray,
        "videolabel": runs,
    })
    return 0


def _measure(cmd: list[str]) -> None:
    """Runs ``cmd`` (its output discarded) and prints when it was launched (epoch s), its wall time,
    CPU seconds, the largest resident size of it or any of its processes, and the machine's CPU
    counters sampled while it ran (``benchmarks.steady.CpuSampler``), as JSON."""
    launched, start = time.time(), time.perf_counter()
    with CpuSampler() as sampler:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(proc.returncode)
    print(json.dumps({"launched_at": launched, "wall_s": round(time.perf_counter() - start, 3), **_usage(),
                      "cpu_samples": sampler.samples}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        _measure(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, variant, model_path, *paths = sys.argv[2:]
        child = {"decode": child_decode, "isolated": functools.partial(child_decode, isolated=True),
                 "model": child_model, "cumulative": functools.partial(child_model, cumulative=True),
                 "naive": child_naive}[kind]
        print(json.dumps(child(paths, variant, model_path)))
    else:
        raise SystemExit(main())
