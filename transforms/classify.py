"""Classify: FrameSource -> VideoResult through Beam RunInference.

Its one step, ``DecodeAndInfer``, runs ``transforms.video_handler.VideoHandler``: each
video is decoded there, lazily, and its frames go through the model. Model sharing
per worker, batching and inference metrics come from RunInference;
a video whose inference raises becomes a ``VideoResult`` with an ``infer`` error
and no clips (dead letter), never a failed job.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference

from transforms.records import ErrorStage, VideoError, VideoInfo, VideoResult

__all__ = ["Classify", "failed_infos"]


def failed_infos(failure) -> Iterator[VideoInfo]:
    """RunInference's dead letter, (failed batch of FrameSources, exception) -> one ``VideoInfo`` per
    video, with the exception as its ``infer`` error."""
    batch, exc = failure
    error = VideoError.of(ErrorStage.INFER, exc)
    for source in batch:
        yield VideoInfo(source.ref, source.meta, 0, 0, error)


def _infer_failures(failure) -> Iterator[VideoResult]:
    """(failed batch of FrameSources, exception) -> one failed VideoResult per video."""
    for info in failed_infos(failure):
        yield VideoResult(info, [])


class Classify(beam.PTransform):
    """FrameSource -> (results, failed): a VideoResult per video, those whose inference raised apart.

    The two are not flattened here: a Flatten is a stage boundary on Beam's local
    runner, which would hold every result back until all videos are classified.
    """

    def __init__(self, handler: ModelHandler):
        super().__init__()
        self._handler = handler

    def expand(self, sources):
        results, dlq = sources | "DecodeAndInfer" >> RunInference(self._handler).with_exception_handling()
        failed = dlq.failed_inferences | "InferFailures" >> beam.FlatMap(_infer_failures)
        return results, failed
