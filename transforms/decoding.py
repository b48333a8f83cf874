"""Decoding and frame sampling with PyAV: pure functions, no Beam.

Frames are decoded in order and the unwanted ones dropped; only sampled frames
are converted to RGB and resized (conversion costs more than decoding at small
sizes). Timestamps come from each frame's pts and the stream time base, relative
to the stream's first timestamp, never from index / fps.

Resizing keeps the aspect ratio and pads (letterbox, black bars) to an
``imgz x imgz`` square, so nothing at the edges of the picture is cut off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import av
import numpy as np

from transforms.records import Clip, ErrorStage, VideoError, VideoMeta

__all__ = [
    "DecodeReport",
    "clip_from_frames",
    "SampledFrame",
    "frame_targets",
    "letterbox_size",
    "open_container",
    "probe",
    "sample_frames",
    "select_nearest",
    "windows",
]


class SampledFrame(NamedTuple):
    """One frame kept by sampling.

    Attributes:
        index: position of the frame in the decoded stream (0-based).
        time_s: presentation time in seconds from the stream start.
        image: uint8 RGB [imgz, imgz, 3], values 0-255.
    """

    index: int
    time_s: float
    image: np.ndarray


class DecodeReport:
    """Filled in while ``sample_frames`` runs: metadata, counts and the first error."""

    def __init__(self) -> None:
        self.meta: VideoMeta | None = None
        self.frames_decoded = 0
        self.frames_sampled = 0
        self.error: VideoError | None = None

    def fail(self, stage: ErrorStage, exc_type: str, message: str) -> None:
        if self.error is None:
            self.error = VideoError(stage, exc_type, message)


class VideoRejected(Exception):
    """A video a guard refuses (too big, too long, no video stream)."""


class DecodeTimeout(Exception):
    """Decoding ran past ``decode_timeout_s``."""


def open_container(uri: str, opener: Callable[[str], Any] | None = None):
    """Opens ``uri`` with PyAV.

    Local paths go to FFmpeg directly; other schemes (gs://) are read through
    ``opener`` (default: Beam's ``FileSystems.open``).
    """
    if "://" not in uri:
        return av.open(uri, mode="r")
    if opener is None:
        from apache_beam.io.filesystems import FileSystems
        opener = FileSystems.open
    return av.open(opener(uri), mode="r")


def probe(container, *, max_pixels: int, max_duration_s: float) -> VideoMeta:
    """Reads the first video stream's metadata and applies the size and length guards.

    Raises:
        VideoRejected: no usable video stream, or a guard is exceeded.
    """
    streams = [s for s in container.streams.video]
    if not streams:
        raise VideoRejected("no video stream in the container")
    stream = streams[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise VideoRejected(f"video stream has no picture size ({width}x{height})")
    if width * height > max_pixels:
        raise VideoRejected(f"{width}x{height} is over max_pixels={max_pixels}")
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    if duration is not None and duration > max_duration_s:
        raise VideoRejected(f"duration {duration:.1f}s is over max_duration_s={max_duration_s:g}")
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else None
    return VideoMeta(duration_s=duration, fps=fps, width=width, height=height,
                     codec=stream.codec_context.name)


def letterbox_size(width: int, height: int, imgz: int) -> tuple[int, int]:
    """Size (w, h) that fits ``width x height`` into an ``imgz`` square, aspect kept."""
    scale = imgz / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_square(frame, imgz: int, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    rgb = frame.to_ndarray(width=w, height=h, format="rgb24")
    if w == imgz and h == imgz:
        return rgb
    out = np.zeros((imgz, imgz, 3), dtype=np.uint8)
    top, left = (imgz - h) // 2, (imgz - w) // 2
    out[top:top + h, left:left + w] = rgb
    return out


def frame_targets(strategy: str, *, fps: float, n_frames: int,
                  duration_s: float | None, video_fps: float | None) -> Iterator[float] | None:
    """Target times in seconds, increasing, for a strategy; None means every frame.

    ``fps``: 0, 1/fps, 2/fps, ... (unbounded; decoding ends the list).
    ``uniform``: ``n_frames`` times evenly spaced from the first to the last frame.
    """
    if strategy == "all":
        return None
    if strategy == "fps":
        return (k / fps for k in _count())
    if duration_s is None:
        raise VideoRejected("uniform sampling needs the video duration, which the container lacks")
    last = max(0.0, duration_s - (1.0 / video_fps if video_fps else 0.0))
    return iter(np.linspace(0.0, last, n_frames).tolist())


def _count() -> Iterator[int]:
    k = 0
    while True:
        yield k
        k += 1


def select_nearest(items: Iterable[tuple[float, Any]],
                   targets: Iterator[float] | None) -> Iterator[tuple[float, Any]]:
    """Yields the item nearest to each target time, each item at most once.

    Args:
        items: ``(time_s, payload)`` in increasing time order (decode order).
        targets: increasing target times; None selects every item.

    Ties go to the earlier item. Targets after the last item are dropped.
    """
    if targets is None:
        yield from items
        return
    target = next(targets, None)
    prev: tuple[float, Any] | None = None
    last_yielded: tuple[float, Any] | None = None
    for item in items:
        while target is not None and target <= item[0]:
            pick = item
            if prev is not None and target - prev[0] <= item[0] - target:
                pick = prev
            if pick is not last_yielded:
                last_yielded = pick
                yield pick
            target = next(targets, None)
        if target is None:
            return
        prev = item


def _decoded_frames(container, stream, report: DecodeReport, deadline: float):
    """Yields ``(time_s, (index, frame))`` in decode order; skips packets FFmpeg cannot decode."""
    start_pts = stream.start_time
    index = 0
    last_time = -math.inf
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            report.fail(ErrorStage.DECODE, type(exc).__name__, str(exc))
            continue
        for frame in frames:
            if time.monotonic() > deadline:
                raise DecodeTimeout(f"decoding ran past decode_timeout_s after {index} frames")
            if frame.pts is None:
                t = last_time + 1e-3
            else:
                if start_pts is None:
                    start_pts = frame.pts
                t = float((frame.pts - start_pts) * stream.time_base)
            last_time = t
            report.frames_decoded += 1
            yield t, (index, frame)
            index += 1


def sample_frames(uri: str, *, strategy: str, fps: float, n_frames: int, imgz: int,
                  max_pixels: int, max_duration_s: float, decode_timeout_s: float,
                  report: DecodeReport, opener=None) -> Iterator[SampledFrame]:
    """Decodes ``uri`` in order and yields the sampled frames, resized to ``imgz``.

    Never raises for bad input: problems land in ``report.error`` (with the stage
    they happened at) and the frames decoded before or around them are kept.
    Memory holds one decoded frame and one pending candidate at a time.
    """
    try:
        container = open_container(uri, opener)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        report.fail(ErrorStage.OPEN, type(exc).__name__, str(exc) or repr(exc))
        return
    with container:
        try:
            report.meta = probe(container, max_pixels=max_pixels, max_duration_s=max_duration_s)
            stream = container.streams.video[0]
            targets = frame_targets(strategy, fps=fps, n_frames=n_frames,
                                    duration_s=report.meta.duration_s, video_fps=report.meta.fps)
        except (VideoRejected, av.error.FFmpegError) as exc:
            report.fail(ErrorStage.PROBE, type(exc).__name__, str(exc))
            return
        size = letterbox_size(report.meta.width, report.meta.height, imgz)
        deadline = time.monotonic() + decode_timeout_s
        frames = _decoded_frames(container, stream, report, deadline)
        try:
            for t, (index, frame) in select_nearest(frames, targets):
                report.frames_sampled += 1
                yield SampledFrame(index, t, _to_square(frame, imgz, size))
        except (DecodeTimeout, av.error.FFmpegError, OSError) as exc:
            report.fail(ErrorStage.DECODE, type(exc).__name__, str(exc))


def clip_from_frames(frames: list[SampledFrame], owned_stop: int) -> Clip:
    """Stacks sampled frames into a Clip that writes the rows of its first ``owned_stop`` frames."""
    return Clip(
        frames=np.stack([f.image for f in frames]),
        frame_indices=np.array([f.index for f in frames], dtype=np.int64),
        timestamps_s=np.array([f.time_s for f in frames], dtype=np.float64),
        owned_start=0,
        owned_stop=owned_stop,
    )


def windows(frames: Iterable[SampledFrame], n_frames: int, stride: int) -> Iterator[tuple[int, Clip]]:
    """Groups sampled frames into clips of ``n_frames`` starting every ``stride`` frames.

    Yields ``(clip_index, clip)``. Clip k starts at frame k * stride and writes the
    rows of its first ``stride`` frames; the last full clip writes all its frames,
    and frames after it go into one shorter final clip (padded by the model
    handler). So every frame row is written by exactly one clip, the latest clip
    that starts at or before it. Holds at most ``n_frames`` frames.
    """
    buf: list[SampledFrame] = []
    pending: list[SampledFrame] | None = None
    index = 0
    for frame in frames:
        if pending is not None:
            yield index, clip_from_frames(pending, stride)
            index += 1
            pending = None
        buf.append(frame)
        if len(buf) == n_frames:
            pending = buf
            buf = buf[stride:]
    if pending is not None:
        yield index, clip_from_frames(pending, n_frames)
    elif buf:
        yield index, clip_from_frames(buf, len(buf))
