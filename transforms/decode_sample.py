"""DecodeAndSample: VideoRef -> FrameSource for the model, or a failed VideoResult.

Each video is opened and probed here, in the worker's decoder process
(``transforms.decoder_process``: a crash or a hang there is the video's row), so
bad files (not a video, no video stream, over the size or length guards, a bad
manifest row) fail early and off the model workers; any other exception raised
for a video is its row too. A good video becomes a ``FrameSource``: the model handler
decodes and samples its frames lazily, a chunk or a batch of clips at a time, so
memory holds one chunk whatever the video's length, and a causal model sees a
video's frames in order, in one place. Every element downstream is one whole
video, so nothing waits on a grouping: a video's rows can be written as soon as
it is done.

With ``predecode_max_frames`` (the model runs on other, GPU, workers), a video
expected to give at most that many sampled frames is decoded here, on the CPU
workers, and its frames travel with the ``FrameSource``; a longer or unmeasured
one is still decoded lazily by the model handler.

With ``pin_core`` (local runs, one single-threaded worker process per core), each
worker process pins itself to a core of its own when it starts
(``transforms.cores``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import apache_beam as beam
from apache_beam import pvalue

from transforms.cores import pin_to_free_core
from transforms.decoder_process import decode_isolated, probe_isolated
from transforms.decoding import DecodeReport
from transforms.records import (
    ErrorStage,
    FrameSource,
    SamplingSpec,
    VideoError,
    VideoMeta,
    VideoRef,
    VideoResult,
)

__all__ = ["DecodeAndSample", "FAILED_TAG", "expected_frames"]

FAILED_TAG = "failed"


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


class _DecodeAndSampleFn(beam.DoFn):
    """Yields a ``FrameSource``, or a tagged ``VideoResult`` with the error and no clips."""

    def __init__(self, spec: SamplingSpec, predecode_max_frames: int | None = None, pin_core: bool = False):
        self._spec = spec
        self._predecode_max_frames = predecode_max_frames
        self._pin_core = pin_core

    def setup(self) -> None:
        if self._pin_core:
            pin_to_free_core()

    def process(self, ref: VideoRef) -> Iterator:
        report = DecodeReport()
        try:
            source = self._source(ref, report)
        except Exception as exc:  # the per-video boundary: whatever this video raises is its row
            report.error = VideoError.of(ErrorStage.PROBE if report.meta is None else ErrorStage.DECODE, exc)
            source = None
        if source is None:
            yield pvalue.TaggedOutput(FAILED_TAG, VideoResult(report.info(ref), []))
        else:
            yield source

    def _source(self, ref: VideoRef, report: DecodeReport) -> FrameSource | None:
        """The probed ``FrameSource`` of ``ref`` (its frames too when short enough to predecode),
        or None with ``report.error`` set."""
        if ref.error:
            report.fail(ErrorStage.OPEN, "BadManifestRow", ref.error)
            return None
        probe_isolated(ref.uri, self._spec, report)
        if report.error is not None:
            return None
        source = FrameSource(ref, self._spec, report.meta)
        expected = expected_frames(self._spec, report.meta)
        if self._predecode_max_frames and expected is not None and expected <= self._predecode_max_frames:
            decoded = DecodeReport()
            frames = tuple(decode_isolated(ref.uri, self._spec, decoded))
            source = source._replace(frames=frames, decoded=decoded.info(ref))
        return source


class DecodeAndSample(beam.PTransform):
    """VideoRef -> (sources, failed).

    Returns ``FrameSource`` elements for the model (with their frames for short
    videos when ``predecode_max_frames`` is set), and ``VideoResult`` elements
    (no clips, ``info.error`` set) for videos that failed to open or probe.
    With ``pin_core`` each worker process takes a core of its own.
    """

    def __init__(self, spec: SamplingSpec, predecode_max_frames: int | None = None, pin_core: bool = False):
        super().__init__()
        self._fn = _DecodeAndSampleFn(spec, predecode_max_frames, pin_core)

    def expand(self, refs):
        outputs = refs | "Probe" >> beam.ParDo(self._fn).with_outputs(FAILED_TAG, main="sources")
        return outputs.sources, outputs[FAILED_TAG]
