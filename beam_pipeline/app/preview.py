"""A preview a browser can play, for a video it cannot (an MS-MPEG-4 AVI, an MPEG-2 program stream).

Browsers play H.264, VP8/VP9 and AV1 in MP4, WebM or Matroska, and little else; for
any other container or codec, ``<video>`` stays black at 0:00 (``MediaError`` 4). The
app shows such a video through ``preview_mp4``: H.264 in MP4 (``faststart``), at
most ``MAX_SIDE`` pixels on its longer side and ``MAX_PREVIEW_S`` seconds, encoded
with PyAV on the fly and cached by the page. The input is opened as the pipeline
opens it (``transforms.opening``: the file itself and nothing it names).
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction

import av

from transforms.decoding import open_container, video_stream

__all__ = ["MAX_PREVIEW_S", "MAX_SIDE", "browser_plays", "preview_mp4"]

MAX_SIDE = 640
MAX_PREVIEW_S = 600.0
#: Demuxer name words and codecs that Chromium, Firefox and Safari play in <video>.
_CONTAINERS = ("mp4", "mov", "webm", "matroska")
_CODECS = ("h264", "vp8", "vp9", "av1")


def browser_plays(uri: str) -> bool:
    """Whether a browser plays ``uri`` as it is: its container and its video codec are ones it knows."""
    with open_container(uri) as container:
        names = container.format.name.split(",")
        codec = video_stream(container).codec_context.name
    return any(name in _CONTAINERS for name in names) and codec in _CODECS


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def preview_mp4(uri: str) -> bytes:
    """``uri``'s video as H.264 in MP4: at most ``MAX_SIDE`` pixels on its longer side, its first
    ``MAX_PREVIEW_S`` seconds, each frame at its presentation time on the grid of the video's average
    frame rate (no audio)."""
    with tempfile.TemporaryDirectory(prefix="videolabel-preview-") as folder:
        path = os.path.join(folder, "preview.mp4")  # faststart moves the index up: a file, not a buffer
        _encode(uri, path)
        with open(path, "rb") as encoded:
            return encoded.read()


def _encode(uri: str, path: str) -> None:
    with open_container(uri) as source, av.open(path, "w", format="mp4",
                                               options={"movflags": "+faststart"}) as target:
        stream = video_stream(source)
        scale = min(1.0, MAX_SIDE / max(stream.codec_context.width, stream.codec_context.height))
        rate = int(round(stream.average_rate or 25))
        encoded = target.add_stream("libx264", rate=rate)
        encoded.width = _even(stream.codec_context.width * scale)
        encoded.height = _even(stream.codec_context.height * scale)
        encoded.pix_fmt = "yuv420p"
        encoded.options = {"preset": "veryfast", "crf": "28"}
        start, last = None, -1
        for frame in source.decode(stream):
            if frame.time is None:
                continue
            start = frame.time if start is None else start
            if frame.time - start > MAX_PREVIEW_S:
                break
            tick = int(round((frame.time - start) * rate))  # on the preview's frame grid
            if tick <= last:  # a repeated or out-of-order time: the previous frame holds
                continue
            picture = frame.reformat(width=encoded.width, height=encoded.height, format="yuv420p")
            picture.pts, picture.time_base = tick, Fraction(1, rate)
            target.mux(encoded.encode(picture))
            last = tick
        target.mux(encoded.encode())
