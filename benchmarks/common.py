"""Shared benchmark helpers: generated videos, child-process measurement, tables and JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np

from beam_pipeline.demo.synthetic import write_video

__all__ = ["machine", "panning_video", "print_table", "run_child", "write_json"]


def panning_video(path: Path, *, seconds: float, width: int, height: int, fps: int, gop: int,
                  preset: str = "ultrafast") -> Path:
    """H.264 of a textured background panning sideways with a bright square crossing it.

    Every frame differs (real motion vectors, real decode work) and encoding runs
    at several hundred 720p frames a second. Written once; reused if present.
    """
    if path.exists():
        return path
    tmp = path.with_suffix(".partial" + path.suffix)
    write_video(tmp, _panning_frames(int(seconds * fps), width, height), fps=fps, gop=gop,
                image_format="yuv420p", container_format=path.suffix.lstrip(".").replace("mkv", "matroska"),
                options={"preset": preset, "bf": "2"})
    tmp.rename(path)
    return path


def clip_set(workdir: Path, videos: int) -> str:
    """``make bench``'s clip (10 s, 340x256, 30 fps, H.264) written once in ``workdir`` and ``videos``
    links to it in ``workdir/set``; returns their glob."""
    (workdir / "set").mkdir(parents=True, exist_ok=True)
    clip = panning_video(workdir / "clip.mp4", seconds=10, width=340, height=256, fps=30, gop=250)
    for i in range(videos):
        link = workdir / "set" / f"v{i:03d}.mp4"
        if not link.exists():
            link.symlink_to(clip)
    return str(workdir / "set" / "*.mp4")


def _panning_frames(num_frames: int, width: int, height: int) -> Iterator[np.ndarray]:
    """``num_frames`` yuv420p images, uint8 [height * 3 // 2, width] (Y plane, then U and V at 128)."""
    rng = np.random.default_rng(0)
    texture = rng.integers(40, 200, size=(height // 8, (2 * width) // 8), dtype=np.uint8)
    texture = np.kron(texture, np.ones((8, 8), np.uint8))
    chroma = np.full((height // 2, width), 128, np.uint8)
    for i in range(num_frames):
        off = (i * 2) % width
        luma = texture[:, off:off + width].copy()
        x = (i * 7) % (width - height // 4)
        luma[height // 3:height // 3 + height // 4, x:x + height // 4] = 235
        yield np.concatenate([luma, chroma])


def run_child(module: str, args: Sequence[str], *, threads: int = 1) -> dict[str, Any]:
    """Runs ``python -m module args`` in a fresh process; returns the JSON it prints last."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    """The processor's model name, as ``lscpu`` gives it (``/proc/cpuinfo``'s first ``model name``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(), "av": av.__version__,
            "ffmpeg": ".".join(map(str, av.library_versions["libavcodec"]))}


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Prints a plain table (also valid Markdown)."""
    text = [[_cell(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in text)) for i, h in enumerate(columns)]
    print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(columns, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in text:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return str(value)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    print(f"\nwrote {path}")
