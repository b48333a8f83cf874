"""DecodeAndSample: VideoRef -> FrameSource for the model, or a failed VideoResult.

Each video is opened and probed here, so bad files (not a video, no video
stream, over the size or length guards, a bad manifest row) fail early and off
the model workers. A good video becomes a ``FrameSource``: the model handler
decodes and samples its frames lazily, a chunk or a batch of clips at a time, so
memory holds one chunk whatever the video's length, and a causal model sees a
video's frames in order, in one place. Every element downstream is one whole
video, so nothing waits on a grouping: a video's rows can be written as soon as
it is done.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam import pvalue

from transforms.decoding import DecodeReport, probe_video
from transforms.records import ErrorStage, FrameSource, SamplingSpec, VideoRef, VideoResult

__all__ = ["DecodeAndSample", "FAILED_TAG"]

FAILED_TAG = "failed"


class _DecodeAndSampleFn(beam.DoFn):
    """Yields a ``FrameSource``, or a tagged ``VideoResult`` with the error and no clips."""

    def __init__(self, spec: SamplingSpec):
        self._spec = spec

    def process(self, ref: VideoRef) -> Iterator:
        report = DecodeReport()
        if ref.error:
            report.fail(ErrorStage.OPEN, "BadManifestRow", ref.error)
        else:
            probe_video(ref.uri, self._spec, report)
        if report.error is None:
            yield FrameSource(ref, self._spec, report.meta)
        else:
            yield pvalue.TaggedOutput(FAILED_TAG, VideoResult(report.info(ref), []))


class DecodeAndSample(beam.PTransform):
    """VideoRef -> (sources, failed).

    Returns ``FrameSource`` elements for the model, and ``VideoResult`` elements
    (no clips, ``info.error`` set) for videos that failed to open or probe.
    """

    def __init__(self, spec: SamplingSpec):
        super().__init__()
        self._fn = _DecodeAndSampleFn(spec)

    def expand(self, refs):
        outputs = refs | "Probe" >> beam.ParDo(self._fn).with_outputs(FAILED_TAG, main="sources")
        return outputs.sources, outputs[FAILED_TAG]
