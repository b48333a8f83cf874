"""Decode speed: in-order decoding (sampled frames converted) against the alternatives.

On generated Kinetics-like clips (10 s, 340x256, 30 fps H.264) with long and
short GOPs, times per video:

* ``videolabel``: ``sample_frames`` as the pipeline runs it (in order, only the
  sampled frames converted and resized; ``uniform`` seeks where ``should_seek`` says);
* ``in-order``: the same, forced never to seek;
* ``seek``: the same, forced to seek to every sampled frame (``uniform`` only);
* ``convert-all``: decode and convert every frame to 172x172 RGB, then keep the
  sampled ones (what a hand-written loop usually does; the ceiling to beat).

    python -m benchmarks.decode_speed [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import av

from benchmarks.common import panning_video, print_table, write_json
from transforms.decoding import (
    DecodeReport,
    letterbox_size,
    open_container,
    sample_frames,
    scan_packets,
    should_seek,
    video_stream,
)
from transforms.records import SamplingSpec

CASES = [("fps", 5.0, 8), ("uniform", 0, 4), ("uniform", 0, 8), ("uniform", 0, 16)]
GOPS = (250, 15)
IMGZ = 172


def _videolabel(path: str, spec: SamplingSpec, seek=None) -> int:
    report = DecodeReport()
    n = sum(1 for _ in sample_frames(path, spec, report, seek=seek))
    assert report.error is None, report.error
    return report.frames_decoded if n else 0


def _convert_all(path: str, spec: SamplingSpec) -> int:
    with av.open(path) as c:
        stream = c.streams.video[0]
        w, h = letterbox_size(stream.codec_context.width, stream.codec_context.height, IMGZ)
        images = [f.to_ndarray(width=w, height=h, format="rgb24") for f in c.decode(stream)]
    keep = max(1, len(images) // max(1, spec.n_frames))
    _ = images[::keep]
    return len(images)


def _time(fn, repeat: int) -> tuple[float, int]:
    fn()  # warm the page cache and the codec
    runs, decoded = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        decoded = fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), decoded


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "videolabel-bench"))
    parser.add_argument("--json", default="benchmarks/results/decode_speed.json")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    rows, results = [], []
    for gop in GOPS:
        video = str(panning_video(work / f"kinetics_like_gop{gop}.mp4", seconds=10, width=340, height=256,
                                  fps=30, gop=gop, preset="veryfast"))
        with open_container(video) as c:
            scan = scan_packets(c, video_stream(c))
        for strategy, fps, n in CASES:
            spec = SamplingSpec(strategy, fps or 5.0, n, IMGZ, 10**8, 1e6, 1e6)
            paths = {"videolabel": partial(_videolabel, video, spec),
                     "in-order": partial(_videolabel, video, spec, seek=False),
                     "convert-all": partial(_convert_all, video, spec)}
            if strategy == "uniform":
                paths["seek"] = partial(_videolabel, video, spec, seek=True)
            timed = {name: _time(fn, args.repeat) for name, fn in paths.items()}
            best = min(timed, key=lambda k: timed[k][0])
            chose_seek = strategy == "uniform" and should_seek(n, scan)
            case = f"{strategy} {n if strategy == 'uniform' else f'{fps:g} fps'}"
            for name, (seconds, decoded) in timed.items():
                r = {"gop": gop, "case": case, "path": name, "ms_per_video": round(seconds * 1000, 2),
                     "frames_decoded": decoded, "fastest": name == best}
                results.append(r)
                rows.append([gop, case, name, r["ms_per_video"], decoded,
                             round(timed["convert-all"][0] / seconds, 2), "*" if name == best else ""])
            results.append({"gop": gop, "case": case, "videolabel_seeks": chose_seek,
                            "videolabel_vs_best": round(timed[best][0] / timed["videolabel"][0], 3)})
    print_table("Decode + sample one 10 s 340x256 30 fps H.264 clip (median of runs, one core)",
                ["GOP", "sampling", "path", "ms/video", "decoded", "x convert-all", "fastest"], rows)
    shares = [r["videolabel_vs_best"] for r in results if "videolabel_vs_best" in r]
    print(f"\nvideolabel's own choice runs at {min(shares):.0%}-{max(shares):.0%} "
          "of the fastest path per case")
    write_json(Path(args.json), {"benchmark": "decode_speed", "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
