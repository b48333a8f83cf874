"""Core-seconds per 10-second video, and what one million of them cost on Dataflow.

Measures, on generated Kinetics-like clips (10 s, 340x256, 30 fps, GOP 250), in a
fresh process per variant with TensorFlow on one thread (so seconds are
core-seconds): the decode path videolabel runs (``sample_frames`` at 5 fps to the
variant's input size) and the model on the sampled frames (stream: the whole
video in one call; base: clips of 16 frames, 4 per call). Then projects a
one-million-video job on Dataflow from those figures and the prices and machine
shapes given as flags (defaults stated in docs/SCALING.md; check current prices).

    python -m benchmarks.scaling [--videos 4] [--variants a0:stream a2:stream a0:base]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchmarks.common import panning_video, print_table, run_child, write_json

RESULTS = Path(__file__).parent / "results" / "scaling.json"
CLIP = {"seconds": 10.0, "width": 340, "height": 256, "fps": 30, "gop": 250}


def child(model_id: str, mode: str, videos: list[str]) -> dict:
    """Seconds per video for decode and model, one TF thread, median over ``videos``."""
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from models.movinet_export import movinet_signatures
    from models.movinet_graph import build_movinet
    from models.movinet_variants import native_imgz
    from transforms.clips import pad_clip
    from transforms.decoding import DecodeReport, sample_frames
    from transforms.records import SamplingSpec

    side = native_imgz(model_id)
    spec = SamplingSpec("fps", 5.0, 16, side, 3840 * 2160, 4 * 3600.0, 600.0)
    signatures = movinet_signatures(build_movinet(model_id, mode), mode)

    def model_s(frames: np.ndarray) -> float:
        images = frames.astype(np.float32) / 255.0
        start = time.perf_counter()
        if mode == "stream":
            states = signatures["init_states"](tf.constant([1, len(images), side, side, 3]))
            signatures["call"]({**states, "image": tf.constant(images[None])})["logits"].numpy()
        else:
            clips = [pad_clip(images[i:i + 16], 16) for i in range(0, len(images), 16)]
            for i in range(0, len(clips), 4):
                signatures["serving_default"](tf.constant(np.stack(clips[i:i + 4])))["logits"].numpy()
        return time.perf_counter() - start

    decode, model = [], []
    for k, video in enumerate(videos):
        start = time.perf_counter()
        frames = np.stack([f.image for f in sample_frames(video, spec, DecodeReport())])
        decode.append(time.perf_counter() - start)
        seconds = model_s(frames)
        if k or len(videos) == 1:  # the first call traces the graph: left out
            model.append(seconds)
    return {"variant": f"{model_id}:{mode}", "imgz": side, "frames_per_video": len(frames),
            "decode_s": round(statistics.median(decode), 4), "model_s": round(statistics.median(model), 4)}


def project(row: dict, args) -> dict:
    """A 1M-video job from per-video core-seconds and the flags' machine shapes and prices."""
    n = args.million * 1_000_000
    cpu_core_s = (row["decode_s"] + row["model_s"]) / args.efficiency
    cpu_hours = n * cpu_core_s / 3600  # vCPU-hours, CPU-only job
    workers = args.max_workers
    wall_h = cpu_hours / (workers * args.vcpus)
    vcpu_price = args.vcpu_hr + args.mem_gb_per_vcpu * args.gb_hr  # USD per vCPU-hour with its memory
    cost = cpu_hours * vcpu_price
    out = {"variant": row["variant"], "core_s_per_video": round(cpu_core_s, 3),
           "cpu_only_vcpu_hours": round(cpu_hours), "cpu_only_wall_h": round(wall_h, 1),
           "cpu_only_cost_usd": round(cost)}
    if args.gpu_s_per_video:
        decode_hours = n * row["decode_s"] / args.efficiency / 3600
        gpu_hours = n * args.gpu_s_per_video / 3600
        gpu_cost = decode_hours * vcpu_price + gpu_hours * (args.gpu_hr + args.gpu_vcpus * vcpu_price)
        out.update({"gpu_job_cpu_vcpu_hours": round(decode_hours), "gpu_hours": round(gpu_hours),
                    "gpu_job_wall_h": round(max(decode_hours / (workers * args.vcpus),
                                                gpu_hours / args.gpu_workers), 1),
                    "gpu_job_cost_usd": round(gpu_cost)})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--variants", nargs="+", default=["a0:stream", "a2:stream", "a0:base"])
    parser.add_argument("--workdir", default="/tmp/videolabel-bench")
    parser.add_argument("--million", type=float, default=1.0, help="millions of videos to project")
    parser.add_argument("--efficiency", type=float, default=0.8,
                        help="share of worker core time spent in decode+model (the rest: I/O, writing, idle)")
    parser.add_argument("--max-workers", type=int, default=100)
    parser.add_argument("--vcpus", type=int, default=4, help="vCPUs per CPU worker (n2-standard-4)")
    parser.add_argument("--vcpu-hr", type=float, default=0.056, help="USD per vCPU-hour, Dataflow batch")
    parser.add_argument("--gb-hr", type=float, default=0.003557, help="USD per GB-hour of worker memory")
    parser.add_argument("--mem-gb-per-vcpu", type=float, default=4.0)
    parser.add_argument("--gpu-s-per-video", type=float, default=0.0,
                        help="GPU seconds per video, measured on a GPU (0: no GPU projection)")
    parser.add_argument("--gpu-hr", type=float, default=0.0, help="USD per GPU-hour")
    parser.add_argument("--gpu-vcpus", type=int, default=8, help="vCPUs of each GPU worker (g2-standard-8)")
    parser.add_argument("--gpu-workers", type=int, default=20)
    args = parser.parse_args(argv)

    folder = Path(args.workdir)
    folder.mkdir(parents=True, exist_ok=True)
    videos = [str(panning_video(folder / f"kinetics_like_{i}.mp4", **CLIP)) for i in range(args.videos)]
    rows = []
    for variant in args.variants:
        model_id, mode = variant.split(":")
        rows.append(run_child("benchmarks.scaling", ["--child", model_id, mode, *videos]))
    table = [[r["variant"], r["imgz"], r["frames_per_video"], r["decode_s"], r["model_s"]] for r in rows]
    print_table("core-seconds per 10-s 340x256 video (one TF thread, 5 fps sampling)",
                ["variant", "imgz", "frames", "decode s", "model s"], table)
    projections = [project(r, args) for r in rows]
    title = (f"{args.million:g}M videos on Dataflow ({args.max_workers} x {args.vcpus}-vCPU workers, "
             f"efficiency {args.efficiency})")
    print_table(title, list(projections[0]), [list(p.values()) for p in projections])
    write_json(RESULTS, {"clip": CLIP, "per_video": rows, "assumptions": vars(args),
                        "projections": projections})
    return 0


if __name__ == "__main__":
    import json
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], sys.argv[4:])))
    else:
        raise SystemExit(main())
