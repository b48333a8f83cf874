"""Makers of bad and odd media files for decoding tests; each returns the path it wrote.

Every encoded video goes through ``beam_pipeline.demo.synthetic.write_video``.
"""

from __future__ import annotations

import os
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from beam_pipeline.demo.synthetic import motion_frames, write_video


def good(path: Path, *, n=50, fps=25, w=160, h=120, codec="libx264", gop=None, seed=0) -> Path:
    frames = motion_frames("moving_right", num_frames=n, width=w, height=h, rng=np.random.default_rng(seed))
    return write_video(path, frames, fps=fps, codec=codec, gop=gop)


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def random_bytes(path: Path, size=20_000) -> Path:
    path.write_bytes(np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def text_file(path: Path) -> Path:
    path.write_text("This is a note about a video, not a video.\n" * 50)
    return path


def cut_short(source: Path, path: Path, keep=0.5) -> Path:
    """The first ``keep`` share of ``source``'s bytes."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def truncated_avi(path: Path, *, n=200, keep=0.6) -> Path:
    """An H.264 AVI cut to its first ``keep`` share of bytes: its header still counts all ``n`` frames."""
    full = good(path.with_name("full-" + path.name), n=n)
    cut_short(full, path, keep)
    full.unlink()
    return path


def corrupt_middle(source: Path, path: Path, start=0.45, length=0.1) -> Path:
    """``source`` with a band of its bytes in the middle overwritten with noise."""
    data = bytearray(source.read_bytes())
    a, b = int(len(data) * start), int(len(data) * (start + length))
    data[a:b] = np.random.default_rng(2).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def audio_only(path: Path, seconds=1.0) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        n = int(16000 * seconds)
        samples = (np.sin(np.arange(n) / 10) * 0.3).astype(np.float32)[None]
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = start
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def cover_art_only(path: Path) -> Path:
    """An MP4 whose only video stream is an attached picture (audio + cover art)."""
    with av.open(str(path), "w", format="mp4") as c:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        v = c.add_stream("mjpeg", rate=1)
        v.width, v.height, v.pix_fmt = 64, 64, "yuvj420p"
        v.disposition = av.stream.Disposition.attached_pic
        img = np.full((64, 64, 3), 200, np.uint8)
        for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            c.mux(p)
        for p in v.encode():
            c.mux(p)
        samples = np.zeros((1, 1024), np.float32)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = i * 1024
            for p in a.encode(frame):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return path


def tiny(path: Path, n=10) -> Path:
    """A 1x1-pixel video (FFV1 in MKV)."""
    return write_video(path, [np.full((1, 1, 3), 25 * i, np.uint8) for i in range(n)], fps=10, codec="ffv1",
                       pix_fmt="yuv444p")


def variable_rate(path: Path, times_s) -> Path:
    """An MKV whose frames sit at the given presentation times (millisecond time base)."""
    images = [np.full((48, 64, 3), (i * 7) % 256, np.uint8) for i in range(len(times_s))]
    return write_video(path, images, fps=30, pts=[int(round(t * 1000)) for t in times_s],
                       time_base=Fraction(1, 1000))


def sparse_avi(path: Path, *, frames=69, slots=444, fps=15) -> Path:
    """A complete variable-rate AVI (MPEG-4 part 2): ``frames`` frames spread over ``slots`` frame periods
    at ``fps``, the last one in the last slot; the muxer writes the empty slots as dropped frames, so the
    header counts ``slots`` frames."""
    pts = [round(i * (slots - 1) / (frames - 1)) for i in range(frames)]
    images = [np.full((48, 64, 3), (i * 7) % 256, np.uint8) for i in range(frames)]
    return write_video(path, images, fps=fps, pts=pts, time_base=Fraction(1, fps), codec="mpeg4")


def with_alpha(path: Path, n=10) -> Path:
    """A QuickTime RLE (argb) video: left half opaque red, right half fully transparent green."""
    img = np.zeros((16, 32, 4), np.uint8)
    img[:, :16] = (255, 0, 0, 255)
    img[:, 16:] = (0, 255, 0, 0)
    return write_video(path, [img] * n, fps=10, codec="qtrle", pix_fmt="argb", image_format="rgba")


def rotated_mp4(source_mp4: Path, path: Path, degrees: int) -> Path:
    """Copy of an MP4 with the video track's display matrix set to rotate by ``degrees`` clockwise."""
    data = bytearray(source_mp4.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0, "no tkhd box"
    version = data[at + 4]
    offset = at + 4 + 4 + (32 if version == 1 else 20) + 8 + 8
    one, zero, w = 0x10000, 0, 0x40000000
    cos, sin = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    matrix = [cos * one, sin * one, zero, -sin * one, cos * one, zero, 0, 0, w]
    data[offset:offset + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))
    return path


def odd_container(path: Path, codec: str, *, n=20, fps=10, w=64, h=48, pix_fmt="yuv420p") -> Path:
    """A short clip in a given container (by extension) and codec."""
    frames = motion_frames("moving_down", num_frames=n, width=w, height=h, rng=np.random.default_rng(3))
    return write_video(path, frames, fps=fps, codec=codec, pix_fmt=pix_fmt)


def directory_named_like_video(path: Path) -> Path:
    os.makedirs(path, exist_ok=True)
    return path


def raw_h264(path: Path, n=50, fps=25) -> Path:
    """A raw H.264 elementary stream: no container, no duration, no packet timestamps."""
    frames = motion_frames("moving_right", num_frames=n, width=64, height=48, rng=np.random.default_rng(4))
    return write_video(path, frames, fps=fps, container_format="h264")


def marker(path: Path, w=160, h=96) -> Path:
    """An MP4 whose frames are black with a white 20x20 square in the top-left corner."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:20, :20] = 255
    return write_video(path, [img] * 5, fps=5)


def reencoded(source: Path, path: Path, *, scale: float = 1.0, codec: str = "libx264", crf: int | None = None,
              trim_s: float = 0.0) -> Path:
    """A re-encoded copy of ``source``: each side times ``scale`` (rounded to even), through ``codec`` (x264
    at its ``ultrafast`` preset, and ``crf`` its quality, 51 worst, when given), its first ``trim_s``
    seconds cut."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        fps = round(float(stream.average_rate or 25))
        width, height = (max(2, round(side * scale / 2) * 2) for side in (stream.width, stream.height))
        frames = [frame.to_ndarray(format="rgb24", width=width, height=height)
                  for frame in container.decode(stream) if frame.time is None or frame.time >= trim_s]
    options = {"preset": "ultrafast"} if codec == "libx264" else {}
    if crf is not None:
        options["crf"] = str(crf)
    return write_video(path, frames, fps=fps, codec=codec, options=options)
