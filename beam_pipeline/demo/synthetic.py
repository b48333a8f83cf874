"""Synthetic labelled videos made with PyAV, for the offline demo, tests and benchmarks.

Each class is a bright square moving over a dark, lightly noisy background in
one direction, from a random start and wrapping around the edges; a single
frame does not tell the classes apart, nor does where the square is: only the
motion over time does. ``write_video`` is the one numpy-to-video encoder: the tests'
odd media (``tests/media.py``) and the benchmarks' long clips (``benchmarks/common.py``)
call it too.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import TypeVar

import av
import numpy as np

__all__ = ["MOTIONS", "make_labelled_set", "motion_frames", "path_frames", "write_video"]

MOTIONS = {
    "moving_right": (1.0, 0.0),
    "moving_left": (-1.0, 0.0),
    "moving_down": (0.0, 1.0),
    "moving_up": (0.0, -1.0),
}

PathT = TypeVar("PathT", bound=str | os.PathLike[str])


def write_video(path: PathT, frames: Iterable[np.ndarray], *, fps: int = 25, codec: str = "libx264",
                gop: int | None = None, pix_fmt: str = "yuv420p", image_format: str = "rgb24",
                container_format: str | None = None, options: Mapping[str, str] | None = None,
                pts: Iterable[int] | None = None, time_base: Fraction | None = None) -> PathT:
    """Encodes uint8 numpy images into ``path``, a video file with one video stream.

    Frames are read one at a time, so a long video need not fit in memory.

    Args:
        path: the file to write; the container follows its extension unless ``container_format``.
        frames: uint8 images laid out as ``image_format`` says: ``[height, width, 3]`` for
            ``"rgb24"``, ``[height, width, 4]`` for ``"rgba"``, ``[height * 3 // 2, width]``
            (Y plane, then U and V) for ``"yuv420p"``. All the same size; even height and
            width for 4:2:0 ``pix_fmt``.
        fps: the stream's frame rate; with no ``pts`` the frames are 1 / fps apart.
        codec: encoder name, e.g. ``"libx264"``, ``"mpeg4"``, ``"ffv1"``, ``"qtrle"``.
        gop: the most frames between keyframes (the encoder's default if None).
        pix_fmt: the pixel format the codec stores, e.g. ``"yuv420p"``, ``"yuv444p"``, ``"argb"``.
        image_format: the pixel layout of ``frames`` (see above).
        container_format: muxer name (``"mp4"``, ``"matroska"``, ``"h264"``), for a path whose
            extension does not say it.
        options: encoder options, e.g. ``{"preset": "ultrafast", "bf": "2"}``.
        pts: one presentation time per frame, in ``time_base`` units (a variable-rate video).
        time_base: the encoder's time base (1 / fps if None).

    Returns:
        ``path``.
    """
    pending = (av.VideoFrame.from_ndarray(image, format=image_format) for image in frames)
    first = next(pending, None)
    if first is None:
        raise ValueError(f"no frames to write to {path}")
    video_frames = itertools.chain([first], pending)
    with av.open(os.fspath(path), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = first.width, first.height, pix_fmt
        if gop is not None:
            stream.codec_context.gop_size = gop
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if options:
            stream.options = dict(options)
        timed = zip(video_frames, pts, strict=True) if pts is not None else ((f, None) for f in video_frames)
        for frame, stamp in timed:
            frame.pts = stamp
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def motion_frames(motion: str, *, num_frames: int, width: int, height: int, rng: np.random.Generator,
                  fps: float = 25.0) -> np.ndarray:
    """uint8 [num_frames, height, width, 3]: a square moving in ``motion``'s direction (``MOTIONS``)."""
    return path_frames([(motion, num_frames)], width=width, height=height, rng=rng, fps=fps)


def path_frames(legs: Sequence[tuple[str, int]], *, width: int, height: int, rng: np.random.Generator,
                fps: float = 25.0) -> np.ndarray:
    """uint8 [frames, height, width, 3]: a bright square over dark noise that moves, for each leg
    ``(motion, frames)`` in turn, in that motion's direction.

    The square starts anywhere, moves at one speed (0.5-0.9 picture heights a
    second, whatever the frame rate) and wraps around the edges, so where it is
    tells nothing about the motion: only how it moves between frames does. A
    leg's first frame is the first one moved its way, so the motion changes
    exactly at the first frame of a leg.
    """
    side = max(4, min(width, height) // 5)
    speed = rng.uniform(0.5, 0.9) * min(width, height) / fps  # pixels per frame
    position = rng.uniform(0, 1, size=2) * (width, height)
    colour = rng.integers(150, 256, size=3, dtype=np.uint8)
    total = sum(n for _, n in legs)
    out = rng.integers(0, 40, size=(total, height, width, 3), dtype=np.uint8)
    t = 0
    for motion, n in legs:
        step = np.array(MOTIONS[motion]) * speed
        for _ in range(n):
            if t:
                position = (position + step) % (width, height)
            x, y = np.floor(position).astype(int)
            out[t][np.ix_((y + np.arange(side)) % height, (x + np.arange(side)) % width)] = colour
            t += 1
    return out


def make_labelled_set(folder: str, *, per_class: int, motions: Iterable[str] = tuple(MOTIONS),
                      seconds: float = 2.0, sizes: Iterable[tuple[int, int]] = ((160, 120), (128, 96)),
                      rates: Iterable[int] = (25, 15), seed: int = 0,
                      splits: Mapping[str, int] | None = None) -> str:
    """Writes ``per_class`` videos per motion into ``folder`` plus ``manifest.csv``.

    Sizes and frame rates cycle over the given lists, so a set mixes both.
    ``splits`` (e.g. ``{"train": 8, "valid": 1, "test": 1}``, summing to
    ``per_class``) adds a ``split`` column: each class's videos in that order.
    Returns the manifest path; its rows are ``uri,label[,split]`` with uris relative to it.
    """
    if splits is not None and sum(splits.values()) != per_class:
        raise ValueError(f"splits {dict(splits)} do not add up to per_class {per_class}")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes, rates = list(sizes), list(rates)
    split_names = [name for name, count in (splits or {}).items() for _ in range(count)]
    rows = []
    for motion in motions:
        for i in range(per_class):
            width, height = sizes[i % len(sizes)]
            fps = rates[i % len(rates)]
            name = f"{motion}_{i:03d}.mp4"
            frames = motion_frames(motion, num_frames=int(seconds * fps), width=width,
                                   height=height, rng=rng, fps=fps)
            write_video(os.path.join(folder, name), frames, fps=fps)
            rows.append({"uri": name, "label": motion, **({"split": split_names[i]} if splits else {})})
    manifest = os.path.join(folder, "manifest.csv")
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest
