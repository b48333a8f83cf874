"""What sampling gives a probed video, without Beam: how many frames (``expected_frames``) and the frames
themselves (``frames_of``), decoded earlier on the CPU workers or now in a decoder process.

``transforms.decode_sample`` (which probes videos and may decode short ones early) and
``transforms.video_handler`` (which decodes the rest lazily, in the model's workers) both use them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from transforms.decoder_process import DecoderProcess, decode_isolated
from transforms.decoding import DecodeReport, SampledFrame
from transforms.records import FrameSource, SamplingSpec, VideoMeta

__all__ = ["expected_frames", "frames_of"]


def expected_frames(spec: SamplingSpec, meta: VideoMeta | None) -> int | None:
    """How many frames sampling will take from a probed video; None when its length is unknown."""
    if spec.strategy == "uniform":
        return spec.n_frames
    if meta is None or not meta.duration_s:
        return None
    rate = meta.fps or spec.fps
    if spec.strategy == "fps":
        rate = min(rate, spec.fps)
    return math.ceil(meta.duration_s * rate) + 1


def frames_of(source: FrameSource, report: DecodeReport,
              decoder: DecoderProcess | None = None) -> Iterable[SampledFrame]:
    """A source's sampled frames: decoded earlier (``source.frames``, with its outcome copied into
    ``report``), or decoded now, lazily, from the source's probe in ``decoder`` (default: this
    thread's decoder process, which decodes one video at a time)."""
    if source.frames is None:
        report.meta = source.meta
        if decoder is not None:
            return decoder.run("decode", source.ref.uri, source.spec, report)
        return decode_isolated(source.ref.uri, source.spec, report)
    info = source.decoded
    report.meta, report.error = info.meta, info.error
    report.decode_s, report.transfer_s = info.decode_s, info.transfer_s
    report.frames_decoded, report.frames_sampled = info.frames_decoded, info.frames_sampled
    return source.frames
