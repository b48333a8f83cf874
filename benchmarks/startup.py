"""How soon videolabel answers: a refused flag, one clip, the first video of a small archive.

Measured in one run, each figure the median of ``--repeats`` fresh processes (the
model already exported and converted, as after ``export-movinet``):

- ``refuse_flag_s``: ``videolabel run --ouput x`` from launch to its exit 2.
- ``one_clip_s``: ``videolabel run --config configs/local.yaml`` on one 10-s clip, launch
  to exit (``direct_running_mode: auto`` runs it in process); beside it the same run
  with ``--direct_running_mode=multi_processing``, the old default.
- ``startup_s``: launch to the first finished video of a 24-video ``multi_processing``
  run (as ``make bench``'s ``startup_s``), with warm workers (``job.warm_workers``, the
  default) and with Beam's own (``VIDEOLABEL_WARM_WORKERS=0``), the peer.
- ``label_videos_cold_s`` / ``label_videos_warm_s``: ``beam_pipeline.label_videos`` of
  one clip, the first call in a fresh process (imports included) and the median of the
  calls after it in the same process.

Prints a table and writes ``benchmarks/results/startup.json`` with the targets of
issue 27: a refused flag under 1 s, ``startup_s`` at most 3 s, a clip through
``label_videos`` at most 1.5 s warm.

    .venv/bin/python -m benchmarks.startup [--repeats 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, panning_video, print_table, write_json

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
TARGETS = {"refuse_flag_s": 1.0, "startup_s": 3.0, "label_videos_warm_s": 1.5}
_VIDEOLABEL = [sys.executable, "-m", "beam_pipeline"]


def a0_stream_model(workdir: Path) -> str:
    """MoViNet-A0 stream exported (random weights) and converted to LiteRT once in ``workdir``."""
    from models.movinet_convert import litert_model

    model = workdir / "a0_stream"
    if not (model / "saved_model.pb").exists():
        subprocess.run([*_VIDEOLABEL, "export-movinet", "--model-id", "a0", "--mode", "stream", "--output",
                        str(model)], check=True, capture_output=True)
    litert_model(str(model), 172, "a0", 600)
    return str(model)


def _timed(cmd: list[str], env: dict[str, str] | None = None, expect: int = 0) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    took = time.perf_counter() - start
    if proc.returncode != expect:
        raise RuntimeError(f"{cmd} exited {proc.returncode}, not {expect}:\n{proc.stderr[-2000:]}")
    return took


def _run(inputs: str, out: Path, model: str, *extra: str) -> list[str]:
    return [*_VIDEOLABEL, "run", "--config", str(REPO / "configs" / "local.yaml"), "--input", inputs,
            "--output", str(out), "--model", model, "--overwrite", *extra]


def _first_video_s(inputs: str, out: Path, model: str, env: dict[str, str]) -> float:
    """Launch to the first finished video of a two-worker run (``_run.json``'s start and ``startup_s``)."""
    launched = time.time()
    _timed(_run(inputs, out, model, "--direct_running_mode=multi_processing", "--direct_num_workers=2"), env)
    record = json.loads((out / "_run.json").read_text())
    started = datetime.datetime.fromisoformat(record["started_at"]).timestamp()
    return started - launched + record["throughput"]["startup_s"]


def _label_videos(clip: str, model: str, calls: int) -> dict[str, float]:
    """``label_videos`` of ``clip`` ``calls`` times in a fresh process: the first call (imports included)
    and the median of the others."""
    script = (
        "import json, sys, time\n"
        "start = time.perf_counter()\n"
        "from beam_pipeline import label_videos\n"
        "times = []\n"
        f"for _ in range({calls}):\n"
        f"    label_videos({clip!r}, {model!r})\n"
        "    times.append(time.perf_counter() - start)\n"
        "    start = time.perf_counter()\n"
        "print(json.dumps(times))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    times = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"label_videos_cold_s": times[0], "label_videos_warm_s": statistics.median(times[1:])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "videolabel-bench-startup"))
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    (workdir / "set").mkdir(parents=True, exist_ok=True)
    model = a0_stream_model(workdir)
    clip = str(panning_video(workdir / "clip.mp4", seconds=10, width=340, height=256, fps=30, gop=30))
    for i in range(24):
        link = workdir / "set" / f"v{i:02d}.mp4"
        if not link.exists():
            link.symlink_to(clip)
    archive = str(workdir / "set" / "*.mp4")
    cold = {**os.environ, "VIDEOLABEL_WARM_WORKERS": "0"}

    samples: dict[str, list[float]] = {key: [] for key in (
        "refuse_flag_s", "one_clip_s", "one_clip_multi_processing_s", "startup_s", "startup_beam_workers_s")}
    for _ in range(args.repeats):
        samples["refuse_flag_s"].append(_timed([*_VIDEOLABEL, "run", "--ouput", "x"], expect=2))
        samples["one_clip_s"].append(_timed(_run(clip, workdir / "one", model)))
        samples["one_clip_multi_processing_s"].append(_timed(_run(
            clip, workdir / "one", model, "--direct_running_mode=multi_processing",
            "--direct_num_workers=2")))
        samples["startup_s"].append(_first_video_s(archive, workdir / "many", model, dict(os.environ)))
        samples["startup_beam_workers_s"].append(_first_video_s(archive, workdir / "many", model, cold))
    figures = {key: round(statistics.median(values), 2) for key, values in samples.items()}
    api = _label_videos(clip, model, 1 + args.repeats)
    figures.update({key: round(value, 2) for key, value in api.items()})

    rows = [[key, f"{value:.2f} s", f"<= {TARGETS[key]:g} s" if key in TARGETS else "",
             ("met" if value <= TARGETS[key] else "missed") if key in TARGETS else ""]
            for key, value in figures.items()]
    print_table(f"videolabel start-up, median of {args.repeats}", ["figure", "value", "target", ""], rows)
    result = {**figures, "targets": TARGETS, "repeats": args.repeats,
              "met": {key: figures[key] <= target for key, target in TARGETS.items()},
              "warm_workers_gain_s": round(figures["startup_beam_workers_s"] - figures["startup_s"], 2),
              "samples": samples, "machine": machine()}
    write_json(RESULTS / "startup.json", result)
    return result


if __name__ == "__main__":
    main()
