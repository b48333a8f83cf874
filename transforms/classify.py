"""Classify: keyed clips -> keyed ClipPredictions through Beam RunInference.

Batching, model sharing per worker and inference metrics come from RunInference;
a batch that raises becomes one ``infer`` error per video in it (dead letter),
never a failed job.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from transforms.records import ErrorStage, VideoError

__all__ = ["Classify"]


def _infer_errors(failure) -> Iterator[tuple[str, VideoError]]:
    """(failed batch of keyed clips, exception) -> (video_id, VideoError) per video."""
    batch, exc = failure
    seen = set()
    for (video_id, _clip_index), _clip in batch:
        if video_id not in seen:
            seen.add(video_id)
            yield video_id, VideoError(ErrorStage.INFER, type(exc).__name__, str(exc))


class Classify(beam.PTransform):
    """((video_id, clip_index), Clip) -> (predictions, errors).

    Returns predictions, ``((video_id, clip_index), ClipPrediction)``, and errors,
    ``(video_id, VideoError)`` for clips whose inference raised.
    """

    def __init__(self, handler: ModelHandler):
        super().__init__()
        self._handler = KeyedModelHandler(handler)

    def expand(self, clips):
        predictions, dlq = clips | "RunInference" >> RunInference(
            self._handler).with_exception_handling()
        errors = dlq.failed_inferences | "InferErrors" >> beam.FlatMap(_infer_errors)
        return predictions, errors
