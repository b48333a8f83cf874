"""A second motion set, kept apart from the demo's (``beam_pipeline.demo.synthetic``), to check that
training learns on data it was not tuned to.

Each class is a direction of travel, ``classes`` of them evenly spread over the circle from
``angle0`` (4 classes from 45 degrees: the diagonals, none of the demo's directions). Each
video draws its own sprite (disc, ring, triangle or cross, 12-30% of the picture's short side,
filled with stripes, checks or noise in two random colours), its own background (noise,
stripes or a gradient, with fresh noise every frame), speed (0.2-0.8 short sides a second)
and start. The sprite wraps around the edges, so where it is tells nothing; only how it moves
between frames does.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from beam_pipeline.demo.synthetic import write_video

__all__ = ["BACKGROUNDS", "FILLS", "SHAPES", "direction_names", "make_direction_set", "sprite_video"]

SHAPES = ("disc", "ring", "triangle", "cross")
FILLS = ("stripes", "checks", "noise")
BACKGROUNDS = ("noise", "stripes", "gradient")


def direction_names(classes: int, angle0: float = 45.0) -> list[str]:
    """The class names, ``dir_045`` ... : the direction of travel in degrees, counter-clockwise
    from the right, on screen (up is 90)."""
    return [f"dir_{round(angle0 + 360.0 * k / classes) % 360:03d}" for k in range(classes)]


def _mask(shape: str, side: int) -> np.ndarray:
    """bool [side, side]: the sprite's silhouette."""
    y, x = (np.mgrid[0:side, 0:side] + 0.5) / side - 0.5
    r = np.hypot(x, y)
    if shape == "disc":
        return r <= 0.5
    if shape == "ring":
        return (r <= 0.5) & (r >= 0.28)
    if shape == "cross":
        return (np.abs(x) <= 0.14) | (np.abs(y) <= 0.14)
    return (y >= -0.45) & (y <= 0.45) & (np.abs(x) <= (y + 0.45) / 1.8)  # triangle, apex up


def _texture(kind: str, height: int, width: int, rng: np.random.Generator, bright: bool) -> np.ndarray:
    """uint8 [height, width, 3]: two random colours (bright ones for a sprite) in stripes, checks or noise."""
    low, high = (120, 256) if bright else (0, 110)
    a, b = (rng.integers(low, high, size=3) for _ in range(2))
    y, x = np.mgrid[0:height, 0:width]
    period = int(rng.integers(3, 9))
    if kind == "stripes":
        angle = rng.uniform(0, math.pi)
        pick = (np.floor((x * math.cos(angle) + y * math.sin(angle)) / period) % 2).astype(bool)
    elif kind == "checks":
        pick = ((x // period + y // period) % 2).astype(bool)
    elif kind == "gradient":
        t = (x / max(1, width - 1))[..., np.newaxis]
        return (a * (1 - t) + b * t).astype(np.uint8)
    else:
        pick = rng.random((height, width)) < 0.5
    return np.where(pick[..., np.newaxis], a, b).astype(np.uint8)


def sprite_video(angle: float, *, num_frames: int, width: int, height: int, fps: float,
                 rng: np.random.Generator, shapes: Sequence[str] = SHAPES, fills: Sequence[str] = FILLS,
                 backgrounds: Sequence[str] = BACKGROUNDS) -> np.ndarray:
    """uint8 [num_frames, height, width, 3]: a textured sprite moving at ``angle`` degrees over a
    textured, noisy background, wrapping around the edges (see the module doc)."""
    short = min(width, height)
    side = max(5, int(short * rng.uniform(0.12, 0.3)))
    mask = _mask(str(rng.choice(shapes)), side)
    sprite = _texture(str(rng.choice(fills)), side, side, rng, bright=True)
    background = _texture(str(rng.choice(backgrounds)), height, width, rng, bright=False).astype(np.int16)
    step = np.array([math.cos(math.radians(angle)), -math.sin(math.radians(angle))])
    step *= rng.uniform(0.2, 0.8) * short / fps  # pixels per frame
    position = rng.uniform(0, 1, size=2) * (width, height)
    noise = int(rng.integers(8, 30))
    out = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frame = np.clip(background + rng.integers(-noise, noise + 1, size=background.shape), 0, 255)
        x, y = np.floor(position).astype(int)
        rows, cols = (y + np.arange(side)) % height, (x + np.arange(side)) % width
        patch = frame[np.ix_(rows, cols)]
        frame[np.ix_(rows, cols)] = np.where(mask[..., np.newaxis], sprite, patch)
        out[t] = frame
        position = (position + step) % (width, height)
    return out


def make_direction_set(folder: str, *, classes: int = 4, per_class: int = 20,
                       splits: Mapping[str, int] | None = None, seconds: float = 2.0,
                       size: tuple[int, int] = (176, 144), fps: int = 20, angle0: float = 45.0,
                       seed: int = 0, **looks: Sequence[str]) -> str:
    """Writes ``per_class`` videos of each direction into ``folder`` plus ``manifest.csv``
    (``uri,label,split``); returns the manifest's path.

    ``splits`` gives each class's videos their split in order (default 70/15/15 of
    ``per_class``, as 14/3/3 for 20); ``looks`` narrows ``shapes``, ``fills`` or
    ``backgrounds`` (see ``sprite_video``).
    """
    if splits is None:
        held = max(1, round(per_class * 0.15))
        splits = {"train": per_class - 2 * held, "valid": held, "test": held}
    if sum(splits.values()) != per_class:
        raise ValueError(f"splits {dict(splits)} do not add up to per_class {per_class}")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    split_of = [name for name, count in splits.items() for _ in range(count)]
    rows = []
    for k, label in enumerate(direction_names(classes, angle0)):
        angle = angle0 + 360.0 * k / classes
        for i in range(per_class):
            name = f"{label}_{i:03d}.mp4"
            frames = sprite_video(angle, num_frames=int(seconds * fps), width=size[0], height=size[1],
                                  fps=fps, rng=rng, **looks)
            write_video(os.path.join(folder, name), frames, fps=fps)
            rows.append({"uri": name, "label": label, "split": split_of[i]})
    manifest = os.path.join(folder, "manifest.csv")
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["uri", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest
