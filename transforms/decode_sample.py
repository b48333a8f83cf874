"""DecodeAndSample: VideoRef -> FrameSource for the model, or a failed VideoResult.

Each video is opened and probed here, in the worker's decoder process
(``transforms.decoder_process``: a crash or a hang there is the video's row), so
bad files (not a video, no video stream, over the size or length guards, a bad
manifest row) fail early and off the model workers; any other exception raised
for a video is its row too. A good video becomes a ``FrameSource``: the video handler
in Classify (``transforms.video_handler``) decodes and samples its frames lazily from
this probe, without probing again, a chunk or a batch of clips at a time, so
memory holds one chunk whatever the video's length, and a causal model sees a
video's frames in order, in one place. Every element downstream is one whole
video, so nothing waits on a grouping: a video's rows can be written as soon as
it is done.

With ``predecode_max_frames`` (the model runs on other, GPU, workers), a video
expected to give at most that many sampled frames is decoded here, on the CPU
workers, and its frames travel with the ``FrameSource``; a longer or unmeasured
one is still decoded lazily by the video handler.

With ``pin_core`` (local runs, one single-threaded worker process per core), each
worker process pins itself to a core of its own when it starts
(``transforms.cores``).
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam import pvalue

from transforms import metrics
from transforms.cores import pin_to_free_core
from transforms.decoder_process import probe_isolated
from transforms.decoding import DecodeReport
from transforms.records import (
    ErrorStage,
    FrameSource,
    SamplingSpec,
    VideoError,
    VideoRef,
    VideoResult,
)
from transforms.sampling import expected_frames, frames_of

__all__ = ["DecodeAndSample", "FAILED_TAG"]

FAILED_TAG = "failed"


class _OpenAndProbeFn(beam.DoFn):
    """Yields a probed ``FrameSource``, or a tagged ``VideoResult`` with the error and no clips."""

    def __init__(self, spec: SamplingSpec, pin_core: bool = False):
        self._spec = spec
        self._pin_core = pin_core
        self._probe_ms = metrics.distribution(metrics.PROBE_MS)

    def setup(self) -> None:
        if self._pin_core:
            pin_to_free_core()

    def process(self, ref: VideoRef) -> Iterator:
        report = DecodeReport()
        try:
            if ref.error:
                report.fail(ErrorStage.OPEN, "BadManifestRow", ref.error)
            else:
                probe_isolated(ref.uri, self._spec, report)
        except Exception as exc:  # the per-video boundary: whatever this video raises is its row
            report.error = VideoError.of(ErrorStage.PROBE, exc)
        self._probe_ms.update(round((report.decode_s + report.transfer_s) * 1000))
        if report.error is None:
            yield FrameSource(ref, self._spec, report.meta)
        else:
            yield pvalue.TaggedOutput(FAILED_TAG, VideoResult(report.info(ref), []))


class _PredecodeShortFn(beam.DoFn):
    """Decodes a ``FrameSource`` expected to give at most ``max_frames`` sampled frames into
    ``frames`` (with the outcome in ``decoded``); passes a longer or unmeasured one on as it is."""

    def __init__(self, max_frames: int):
        self._max_frames = max_frames

    def process(self, source: FrameSource) -> Iterator[FrameSource]:
        expected = expected_frames(source.spec, source.meta)
        if expected is None or expected > self._max_frames:
            yield source
            return
        report = DecodeReport()
        try:
            frames = tuple(frames_of(source, report))
        except Exception as exc:  # the per-video boundary, as in the model step
            report.error, frames = VideoError.of(ErrorStage.DECODE, exc), ()
        yield source._replace(frames=frames, decoded=report.info(source.ref))


class DecodeAndSample(beam.PTransform):
    """VideoRef -> (sources, failed).

    ``OpenAndProbe``: each video is opened and probed (guards included) in the
    worker's decoder process; returns ``FrameSource`` elements for the model, whose
    handler decodes and samples them lazily from this probe
    (``transforms.video_handler``), and ``VideoResult`` elements (no clips,
    ``info.error`` set) for videos that failed to open or probe. With
    ``predecode_max_frames``, ``PredecodeShort`` then decodes and samples the short
    videos here, their frames travelling with the ``FrameSource``. With
    ``pin_core`` each worker process takes a core of its own.
    """

    def __init__(self, spec: SamplingSpec, predecode_max_frames: int | None = None, pin_core: bool = False):
        super().__init__()
        self._probe = _OpenAndProbeFn(spec, pin_core)
        self._predecode_max_frames = predecode_max_frames

    def expand(self, refs: beam.PCollection[VideoRef]) -> tuple[beam.PCollection, beam.PCollection]:
        outputs = refs | "OpenAndProbe" >> beam.ParDo(self._probe).with_outputs(FAILED_TAG, main="sources")
        sources = outputs.sources
        if self._predecode_max_frames:
            sources = sources | "PredecodeShort" >> beam.ParDo(_PredecodeShortFn(self._predecode_max_frames))
        return sources, outputs[FAILED_TAG]
