"""Throughput side by side: the machine's ceilings, the loop users write by hand, and videolabel.

On a fixed set of Kinetics-like clips (10 s, 340x256, 30 fps, GOP 250; or
``--videos-dir``), MoViNet ``--variant`` (default A0 stream) at 5 fps, measures:

(a) decode ceiling: videolabel's in-order decode (only the sampled frames
    converted), one process per core, videos split between them; and the same
    through the decoder process that a run decodes in (its cost apart);
(b) model ceiling: the model on each video's sampled frames (stream: the whole
    video in one call), one process per core, one TF thread each;
(c) combined ceiling = cores / (decode + model core-seconds per video), the
    core-seconds taken from (a) and (b), all cores busy as in a real run;
(d) naive: one process, every frame decoded to an RGB array in a list, the 5 fps
    subset resized, then the model: what users write by hand;
(e) videolabel: ``videolabel run`` on DirectRunner (multi_processing, one worker
    per core, one TF thread each, default output settings) on 2N videos; its
    steady rate is ``_run.json``'s ``throughput.steady_videos_per_s``: per
    worker, (videos - 1) / (last - first finish time), summed over workers, the
    way the ceilings sum their processes' timed sections; start-up (imports,
    model load, pipeline start: everything before the first finished video) apart.

Start-up of each path is reported apart. Prints a table and writes JSON whose
top level has ``videolabel_share_of_ceiling`` and ``videolabel_vs_naive``.

    python -m benchmarks.throughput [--videos 48] [--variant a0:stream] [--videos-dir DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import panning_video, print_table, write_json

RESULTS = Path(__file__).parent / "results"


def _results_path(variant: str) -> Path:
    """throughput.json for the headline variant (A0 stream), throughput_<id>_<mode>.json for others."""
    name = "throughput" if variant == "a0:stream" else f"throughput_{variant.replace(':', '_')}"
    return RESULTS / f"{name}.json"
CLIP = {"seconds": 10.0, "width": 340, "height": 256, "fps": 30, "gop": 250}
FPS = 5.0


def _job(variant: str, model_dir: str):
    """videolabel's config for ``variant`` ("a0:stream") at 5 fps with the SavedModel in ``model_dir``."""
    from beam_pipeline.config import load_config

    model_id, mode = variant.split(":")
    return load_config(None, [f"model.model_id={model_id}", f"model.model_mode={mode}", f"sampling.fps={FPS}",
                              "model.tf_threads=1", f"model.handle={model_dir}"])


def child_decode(videos: list[str], variant: str, model_dir: str, isolated: bool = False) -> dict:
    """Decode only: videolabel's sample_frames on each video, in a process pinned to a core of its own;
    ``isolated``: through the decoder process a run decodes in (started before the clock), on the
    same core, so the difference is what isolation costs."""
    from beam_pipeline.pipeline import sampling_spec
    from transforms.cores import pin_to_free_core
    from transforms.decoder_process import decode_isolated
    from transforms.decoding import DecodeReport, sample_frames

    pin_to_free_core()
    spec = sampling_spec(_job(variant, model_dir))
    decode = decode_isolated if isolated else sample_frames
    list(decode(videos[0], spec, DecodeReport()))  # warm: the decoder process starts
    start = time.perf_counter()
    frames = sum(sum(1 for _ in decode(v, spec, DecodeReport())) for v in videos)
    return {"seconds": time.perf_counter() - start, "videos": len(videos), "frames": frames, **_usage()}


def child_model(videos: list[str], variant: str, model_dir: str) -> dict:
    """Model only: videolabel's model handler on frames decoded beforehand (not timed), pinned to a core.

    Each video is one ``FrameSource`` holding its sampled frames, so the handler's
    ``run_inference`` does exactly the run's model work (stream: the whole clip
    in one call) and no decoding.
    """
    from beam_pipeline.checks import resolve_labels
    from beam_pipeline.pipeline import make_handler, sampling_spec
    from transforms.cores import pin_to_free_core
    from transforms.decoding import DecodeReport, sample_frames
    from transforms.records import FrameSource, VideoRef

    pin_to_free_core()
    loaded = time.perf_counter()
    cfg = _job(variant, model_dir)
    handler = make_handler(cfg, model_dir, len(resolve_labels(cfg, model_dir)))
    model = handler.load_model()
    spec = sampling_spec(cfg)
    sources = []
    for video in videos:
        ref, report = VideoRef(video, video, None, "test"), DecodeReport()
        frames = tuple(sample_frames(video, spec, report))
        sources.append(FrameSource(ref, spec, report.meta, frames, report.info(ref)))
    list(handler.run_inference(sources[:1], model))  # first call
    startup = time.perf_counter() - loaded
    start = time.perf_counter()
    for source in sources:
        list(handler.run_inference([source], model))
    return {"seconds": time.perf_counter() - start, "videos": len(videos), "startup_s": startup, **_usage()}


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
    from transforms.video_handler import pad_clip

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


def _child(kind: str, videos: list[str], variant: str, model_dir: Path) -> dict:
    """Runs one measurement in a fresh process; its JSON includes its own peak RSS and CPU seconds."""
    args = [sys.executable, "-m", "benchmarks.throughput", "--child", kind, variant, str(model_dir), *videos]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _parallel(kind: str, videos: list[str], variant: str, model_dir: Path, cores: int) -> dict:
    """``cores`` child processes at once, the videos split between them; wall time of the slowest."""
    shares = [videos[i::cores] for i in range(cores)]
    start = time.perf_counter()
    args = [[sys.executable, "-m", "benchmarks.throughput", "--child", kind, variant, str(model_dir), *share]
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
    return {"videos_per_s": round(len(videos) / busy, 3), "wall_s": round(wall, 2),
            "core_s_per_video": round(sum(r["seconds"] for r in results) / len(videos), 4)}


def _export(variant: str, workdir: Path) -> Path:
    """The variant's SavedModel (random weights: speed does not depend on them), exported once."""
    model_id, mode = variant.split(":")
    model = workdir / f"{model_id}_{mode}"
    if not (model / "saved_model.pb").exists():
        subprocess.run([sys.executable, "-m", "beam_pipeline", "export-movinet", "--model-id", model_id,
                        "--mode", mode, "--output", str(model)], check=True, capture_output=True)
    return model


def _videolabel(videos: list[str], variant: str, model: Path, cores: int, workdir: Path) -> dict:
    """``videolabel run`` on a manifest of ``videos``: steady rate, start-up, wall, CPU and peak memory."""
    model_id, mode = variant.split(":")
    manifest = workdir / f"manifest_{len(videos)}.csv"
    manifest.write_text("uri\n" + "\n".join(videos) + "\n")
    out = workdir / f"out_{len(videos)}"
    cmd = [sys.executable, "-m", "beam_pipeline", "run", "--input", str(manifest), "--output", str(out),
           "--model", str(model), "--overwrite", "--set", f"model.model_id={model_id}",
           "--set", f"model.model_mode={mode}", "--set", f"sampling.fps={FPS}", "--set", "model.tf_threads=1",
           "--runner=DirectRunner", "--direct_running_mode=multi_processing",
           f"--direct_num_workers={cores}"]
    # run under a fresh measuring process, so peak RSS and CPU are this run's (workers included)
    wrapped = [sys.executable, "-m", "benchmarks.throughput", "--measure", *cmd]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(wrapped, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"videolabel run failed:\n{proc.stderr[-3000:]}")
    run = json.loads((out / "_run.json").read_text())
    assert run["counts"].get("videos_ok") == len(videos), run["counts"]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**measured, "videos_per_s": run["throughput"]["steady_videos_per_s"],
            "startup_s": run["throughput"]["startup_s"], "stage_s": run["timings"]["stage_s"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=48,
                        help="N: the ceilings and the naive loop run on N videos, videolabel on 2N")
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
    # N and 2N distinct paths (links to the generated clips), so nothing is cached by path
    videos = []
    for i in range(2 * args.videos):
        link = workdir / "set" / f"v{i:04d}.mp4"
        link.parent.mkdir(exist_ok=True)
        if not link.exists():
            link.symlink_to(pool[i % len(pool)])
        videos.append(str(link))
    half = videos[:args.videos]

    model_dir = _export(args.variant, workdir)
    decode = _parallel("decode", half, args.variant, model_dir, cores)
    isolated = _parallel("isolated", half, args.variant, model_dir, cores)
    model = _parallel("model", half, args.variant, model_dir, cores)
    per_video = decode["core_s_per_video"] + model["core_s_per_video"]
    combined = cores / per_video
    naive = _child("naive", half, args.variant, model_dir)
    naive_rate = naive["videos"] / naive["seconds"]
    large = _videolabel(videos, args.variant, model_dir, cores, workdir)
    steady, startup = large["videos_per_s"], large["startup_s"]

    isolation_s = isolated["core_s_per_video"] - decode["core_s_per_video"]
    rows = [
        ["decode ceiling", decode["videos_per_s"], decode["videos_per_s"] / combined, "", "",
         f"{cores} procs"],
        ["decode, decoder process", isolated["videos_per_s"], isolated["videos_per_s"] / combined, "", "",
         f"{isolation_s * 1000:+.1f} ms/video, {isolation_s / per_video:+.1%} of a video's core-s"],
        ["model ceiling", model["videos_per_s"], model["videos_per_s"] / combined, "", "",
         f"{cores} procs"],
        ["combined ceiling", combined, 1.0, "", "", f"{per_video:.3f} core-s/video"],
        ["naive loop", naive_rate, naive_rate / combined, 1.0, naive["peak_rss_mb"],
         f"start-up {naive['startup_s']:.1f} s"],
        ["videolabel run", steady, steady / combined, steady / naive_rate, large["peak_rss_mb"],
         f"start-up {startup:.1f} s; CPU {large['cpu_s'] / large['wall_s'] / cores:.0%} of {cores} cores"],
    ]
    print_table(f"{args.variant} at {FPS:g} fps, {cores} cores, 10-s 340x256 clips",
                ["path", "videos/s", "share of ceiling", "vs naive", "peak MB", "notes"], rows)
    write_json(_results_path(args.variant), {
        "variant": args.variant, "cores": cores, "videos": [args.videos, 2 * args.videos], "clip": CLIP,
        "videolabel_share_of_ceiling": round(steady / combined, 3),
        "videolabel_vs_naive": round(steady / naive_rate, 3),
        "combined_ceiling_videos_per_s": round(combined, 3),
        "decode_ceiling": decode, "decode_in_decoder_process": isolated,
        "isolation_core_s_per_video": round(isolation_s, 4),
        "isolation_share_of_video": round(isolation_s / per_video, 4), "model_ceiling": model,
        "core_s_per_video": {"decode": decode["core_s_per_video"], "model": model["core_s_per_video"]},
        "naive": {**naive, "videos_per_s": round(naive_rate, 3)},
        "videolabel": {**large, "videos_per_s": round(steady, 3), "startup_s": round(startup, 1)},
    })
    return 0


def _measure(cmd: list[str]) -> None:
    """Runs ``cmd`` (its output discarded) and prints its wall time, CPU seconds and peak RSS as JSON."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(proc.returncode)
    print(json.dumps({"wall_s": round(time.perf_counter() - start, 3), **_usage()}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        _measure(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, variant, model_path, *paths = sys.argv[2:]
        child = {"decode": child_decode, "isolated": functools.partial(child_decode, isolated=True),
                 "model": child_model, "naive": child_naive}[kind]
        print(json.dumps(child(paths, variant, model_path)))
    else:
        raise SystemExit(main())
