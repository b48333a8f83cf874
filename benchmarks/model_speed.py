"""MoViNet speed per variant on this machine's CPU, through the functions export-movinet saves.

For each variant and mode, in a fresh process with TensorFlow on ``--threads``
threads: one whole clip of ``--frames`` frames at the variant's native size in
one call (stream: ``call`` with fresh states, per-frame logits included; base:
``serving_default``). Reports the median seconds per clip, frames per second,
and the parameter count against the published one.

    python -m benchmarks.model_speed [--variants a0 a1 a2 a3 a4 a5] [--base a0] [--frames 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks.common import print_table, run_child, write_json

# MoViNet paper, Table 1 (base models, Kinetics-600 head).
PUBLISHED_PARAMS_M = {"a0": 3.1, "a1": 4.6, "a2": 4.8, "a3": 5.3, "a4": 4.9, "a5": 15.7}


def child(model_id: str, mode: str, frames: int, threads: int, repeat: int) -> dict:
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from models.movinet_export import movinet_signatures
    from models.movinet_graph import build_movinet
    from models.movinet_variants import native_imgz

    side = native_imgz(model_id)
    model = build_movinet(model_id, mode)
    params = build_movinet(model_id, "base").count_params() if mode == "stream" else model.count_params()
    signatures = movinet_signatures(model, mode)
    clip = tf.constant(np.random.default_rng(0).random((1, frames, side, side, 3), dtype=np.float32))
    if mode == "stream":
        states = signatures["init_states"](tf.constant([1, frames, side, side, 3]))

        def run():
            return signatures["call"]({**states, "image": clip})["frame_logits"].numpy()
    else:
        def run():
            return signatures["serving_default"](clip)["logits"].numpy()
    run()  # trace and warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return {"model_id": model_id, "mode": mode, "imgz": side, "frames": frames, "threads": threads,
            "seconds_per_clip": round(seconds, 4), "frames_per_s": round(frames / seconds, 1),
            "params_m": round(params / 1e6, 2), "published_params_m": PUBLISHED_PARAMS_M[model_id]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(PUBLISHED_PARAMS_M))
    parser.add_argument("--base", nargs="*", default=["a0"], help="variants also timed in base mode")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/model_speed.json")
    parser.add_argument("--child", nargs=2, metavar=("MODEL_ID", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.frames, args.threads, args.repeat)))
        return 0
    runs = [(v, "stream") for v in args.variants] + [(v, "base") for v in args.base]
    results = []
    for model_id, mode in runs:
        flags = ["--child", model_id, mode, "--frames", str(args.frames), "--threads", str(args.threads),
                 "--repeat", str(args.repeat)]
        results.append(run_child("benchmarks.model_speed", flags, threads=args.threads))
    stream_a0 = next((r for r in results if (r["model_id"], r["mode"]) == ("a0", "stream")), None)
    rows = [[r["model_id"], r["mode"], r["imgz"], r["seconds_per_clip"], r["frames_per_s"],
             round(r["seconds_per_clip"] / stream_a0["seconds_per_clip"], 1) if stream_a0 else "",
             r["params_m"], r["published_params_m"]] for r in results]
    print_table(f"MoViNet on CPU ({args.threads} threads), one {args.frames}-frame clip per call, "
                "native size, median", ["variant", "mode", "imgz", "s/clip", "frames/s", "x a0 stream",
                                        "params M", "published M"], rows)
    write_json(Path(args.json), {"benchmark": "model_speed", "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
