"""ExtractExamples: FrameSource -> one training example per clip, through Beam RunInference
(``videolabel train``'s features pass).

Each video is decoded lazily in the worker's decoder process (``transforms.sampling.frames_of``), cut
into clips of ``n_frames`` every ``stride`` frames (``transforms.clips.windows``), each padded to
``n_frames``, and ``batch_size`` clips at a time go through an ``ExampleModel`` (``models.video_model``:
the clip itself, MoveNet keypoints, or a frozen backbone's features). A video whose extraction raises
is a failed ``VideoExamples`` (dead letter), never a failed job.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, RunInference

from models.video_model import ModelSpec
from transforms import metrics
from transforms.classify import failed_infos
from transforms.clips import ModelClock, pad_clip, windows
from transforms.decoding import DecodeReport
from transforms.records import FrameSource, VideoExamples
from transforms.sampling import frames_of
from transforms.video_handler import ClipWindows

__all__ = ["ExtractExamples"]


class _ExampleHandler(ModelHandler[FrameSource, VideoExamples, Any]):
    """``FrameSource`` -> ``VideoExamples``, one video per call."""

    def __init__(self, model: ModelSpec, plan: ClipWindows):
        super().__init__(min_batch_size=1, max_batch_size=1)
        self.model = model
        self._plan = plan
        self._model_ms = None

    def load_model(self) -> Any:
        return self.model.load()

    def run_inference(self, batch: Sequence[FrameSource], model: Any,
                      inference_args: dict[str, Any] | None = None) -> list[VideoExamples]:
        if self._model_ms is None:
            self._model_ms = metrics.distribution(metrics.MODEL_MS)
        return [self._video(source, model) for source in batch]

    def _video(self, source: FrameSource, model: Any) -> VideoExamples:
        report, clock = DecodeReport(), ModelClock()
        n, stride, batch_size = self._plan
        clips = windows(frames_of(source, report), n, stride)
        examples: list[tuple[int, np.ndarray]] = []
        middles: list[float] = []
        while batch := list(itertools.islice(clips, batch_size)):
            out = clock.call(model, np.stack([pad_clip(clip.frames, n) for _, clip in batch]))
            examples.extend(zip((index for index, _ in batch), out))
            middles.extend(float(clip.timestamps_s[[0, -1]].mean()) for _, clip in batch)
        self._model_ms.update(round(clock.seconds * 1000))
        return VideoExamples(report.info(source.ref), examples, tuple(middles))

    def get_metrics_namespace(self) -> str:
        return metrics.NAMESPACE


def _extract_failures(failure) -> Iterator[VideoExamples]:
    """(failed batch of FrameSources, exception) -> one failed VideoExamples per video."""
    for info in failed_infos(failure):
        yield VideoExamples(info, [])


class ExtractExamples(beam.PTransform):
    """FrameSource -> (extracted, failed): a ``VideoExamples`` per video, those whose extraction raised
    apart (not flattened, as ``Classify``'s).

    Args:
        model: the example model spec; ``load()`` runs once per worker process.
        plan: the clips: ``n_frames`` every ``stride`` frames, ``batch_size`` per model call.
    """

    def __init__(self, model: ModelSpec, plan: ClipWindows):
        super().__init__()
        self._handler = _ExampleHandler(model, plan)

    def expand(self, sources):
        results, dlq = sources | "DecodeAndExtract" >> RunInference(self._handler).with_exception_handling()
        failed = dlq.failed_inferences | "ExtractFailures" >> beam.FlatMap(_extract_failures)
        return results, failed
