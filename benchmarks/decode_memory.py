"""Peak memory against video length: does processing a 1-hour 720p video stay flat?

Generates 720p30 H.264 videos of several lengths and, each in a fresh process,
runs videolabel's own per-video paths on them:

* ``decode``: the base-mode handler's decoding, ``sample_frames`` at 5 fps into
  ``windows`` of 8 frames (what goes to the model one clip at a time);
* ``stream``: the stream-mode model handler on a ``FrameSource``: decode, sample
  and MoViNet-A0 stream (random weights) in chunks of 64 frames with the state
  carried (what one RunInference element costs).

Reports the process's resident memory after imports and model load, its peak,
and the growth between them. Flat means the growth does not follow the length.

    python -m benchmarks.decode_memory [--minutes 1 10 60] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import panning_video, print_table, run_child, write_json

SPEC_ARGS = dict(strategy="fps", fps=5.0, n_frames=8, imgz=172, max_pixels=3840 * 2160,
                 max_duration_s=24 * 3600.0, decode_timeout_s=24 * 3600.0)


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS now, VmHWM peak).

    VmHWM, unlike getrusage's ru_maxrss, starts afresh with the exec'd process.
    """
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(mode: str, video: str, model: str) -> dict:
    """One measurement in this process; returns the figures."""
    from models.movinet import Movinet
    from transforms.clips import windows
    from transforms.decoding import DecodeReport, sample_frames
    from transforms.records import FrameSource, SamplingSpec, VideoRef
    from transforms.video_handler import StreamChunks, VideoHandler

    spec = SamplingSpec(**SPEC_ARGS)
    handler = VideoHandler(Movinet(model, "stream", num_labels=600, imgz=172, tf_threads=2), StreamChunks(64),
                           k=5)
    loaded = handler.load_model() if mode == "stream" else None
    baseline = _status_mb("VmRSS")
    t0 = time.monotonic()
    if mode == "stream":
        (result,) = handler.run_inference([FrameSource(VideoRef("v", video, None, "x"), spec)], loaded)
        decoded, sampled = result.info.frames_decoded, result.info.frames_sampled
    else:
        report = DecodeReport()
        clips = sum(1 for _ in windows(sample_frames(video, spec, report), 8, 8))
        decoded, sampled = report.frames_decoded, report.frames_sampled
        assert clips == -(-sampled // 8)
    wall = time.monotonic() - t0
    peak = _status_mb("VmHWM")
    return {"mode": mode, "baseline_mb": round(baseline, 1), "peak_mb": round(peak, 1),
            "growth_mb": round(peak - baseline, 1), "wall_s": round(wall, 2),
            "frames_decoded": decoded, "frames_sampled": sampled}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "videolabel-bench"))
    parser.add_argument("--json", default="benchmarks/results/decode_memory.json")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "VIDEO", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = work / "a0_stream"
    if not (model / "saved_model.pb").exists():
        from models.movinet_export import export_movinet
        export_movinet(str(model), model_id="a0", mode="stream")
    rows, results = [], []
    for minutes in args.minutes:
        t = time.monotonic()
        video = panning_video(work / f"pan720_{minutes:g}min.mp4", seconds=minutes * 60,
                              width=1280, height=720, fps=30, gop=250)
        print(f"{video.name}: {time.monotonic() - t:.0f}s to make", file=sys.stderr)
        for mode in ("decode", "stream"):
            r = {"minutes": minutes, **run_child("benchmarks.decode_memory",
                                                ["--child", mode, str(video), str(model)])}
            results.append(r)
            rows.append([f"{minutes:g}", mode, r["frames_decoded"], r["frames_sampled"], r["baseline_mb"],
                         r["peak_mb"], r["growth_mb"], r["wall_s"],
                         round(r["frames_decoded"] / r["wall_s"], 1)])
    print_table("Peak memory per video, 720p30 H.264, 5 fps sampling at 172x172 (one process each)",
                ["minutes", "path", "decoded", "sampled", "base MB", "peak MB", "growth MB", "wall s",
                 "decoded fps"], rows)
    by_mode = {m: [r["growth_mb"] for r in results if r["mode"] == m] for m in ("decode", "stream")}
    verdict = {m: {"growth_mb": g, "flat": max(g) - min(g) < 64} for m, g in by_mode.items()}
    print("\nflat (growth varies by < 64 MB across lengths): "
          + ", ".join(f"{m} {'yes' if v['flat'] else 'NO'}" for m, v in verdict.items()))
    write_json(Path(args.json), {"benchmark": "decode_memory", "results": results, "verdict": verdict})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
