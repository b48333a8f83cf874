"""VideoHandler: the one ModelHandler every model runs in; ``FrameSource`` in, ``VideoResult`` out, per video.

This is where a probed video's frames are decoded and meet the model:

1. ``transforms.sampling.frames_of``: the sampled frames, decoded lazily in this worker thread's
   decoder process (``transforms.decoder_process``; a crash or hang there is
   the video's error), or those decoded earlier on the CPU workers;
2. ``ClipWindows``: clips of ``n_frames`` every ``stride`` frames (``transforms.clips``),
   each padded to ``n_frames`` by repeating its last frame, ``batch_size`` clips
   per model call; or ``StreamChunks``: chunks of frames with the model state
   carried from chunk to chunk;
3. the model (``models.video_model``: clip, stream or example model), timed
   alone: the ``model_ms`` distribution holds each video's time in model calls,
   and ``VideoInfo.decode_s`` its time waiting for decoded frames, so the two never
   overlap;
4. the video's ``VideoResult``: one ``ClipPrediction`` per clip (stream mode: one,
   clip 0, over every frame). (Training examples: ``transforms.examples``.)

One video per call, except in stream mode on GPU workers (``StreamBatch``): there
``videos`` videos go through each model call together, chunk by chunk, from
their first frame (``transforms.streaming``), and each gets exactly the outputs it
gets alone. Beam's BatchElements forms those batches (``batch_elements_kwargs``),
across bundles and by expected length (``expected_length``, ``LENGTH_BUCKETS``)
with ``max_wait_s``.

Memory holds one chunk or one batch of clips, whatever the video's length (a
batch of videos: one chunk of each). Frames stay uint8 until the model turns them
into its own input.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from models.video_model import ModelSpec
from transforms import metrics
from transforms.clips import ModelClock, clip_predictions, pad_clip, windows
from transforms.decoder_process import DecoderProcess
from transforms.decoding import DecodeReport, SampledFrame
from transforms.records import ClipPrediction, FrameSource, VideoResult
from transforms.sampling import expected_frames, frames_of
from transforms.streaming import stream_prediction, stream_predictions, windowed

__all__ = ["LENGTH_BUCKETS", "ClipWindows", "StreamBatch", "StreamChunks", "VideoHandler", "expected_length"]

#: Sampled-frame counts where a batch of videos is cut (Beam's ``batch_bucket_boundaries``,
#: lower-inclusive): powers of two, so the videos of one bucket differ in length by less than
#: 2x and padding takes under half of a batch's frames. At 5 fps: 3 s, 6 s, ..., 3.6 h.
LENGTH_BUCKETS: tuple[int, ...] = tuple(2 ** i for i in range(4, 17))


class ClipWindows(NamedTuple):
    """Clips of ``n_frames`` starting every ``stride`` frames, ``batch_size`` per model call."""

    n_frames: int
    stride: int
    batch_size: int


class StreamChunks(NamedTuple):
    """``size`` frames per model call, the state carried between calls; with ``window_s`` > 0 (and a
    model with per-frame features), each frame's label from the mean of the features of the last
    ``window_s`` seconds of frames (``models.frame_window``), else the cumulative output."""

    size: int
    window_s: float = 0.0


class StreamBatch(NamedTuple):
    """Stream mode on GPU workers: ``videos`` videos per model call, started together.

    Attributes:
        videos: videos per call (Beam's ``min_batch_size`` and ``max_batch_size``).
        max_wait_s: Beam's ``max_batch_duration_secs``: batches gather across bundles
            (the stateful BatchElements), videos of similar expected length together
            (``LENGTH_BUCKETS``), a partial batch waiting at most this long; None:
            batches form within a bundle, whatever the lengths.
    """

    videos: int
    max_wait_s: float | None = None


def expected_length(source: FrameSource) -> int:
    """The sampled frames a source gives (Beam's ``batch_length_fn``): its decoded frames, else as many
    as sampling takes from its probed duration; a video of unknown duration counts as the longest."""
    if source.frames is not None:
        return len(source.frames)
    expected = expected_frames(source.spec, source.meta)
    return LENGTH_BUCKETS[-1] if expected is None else expected


def _batching(batch: StreamBatch | None) -> dict[str, Any]:
    """``ModelHandler.__init__``'s batching arguments: one video per call, or ``batch``'s settings."""
    if batch is None:
        return {"min_batch_size": 1, "max_batch_size": 1}
    kwargs: dict[str, Any] = {"min_batch_size": batch.videos, "max_batch_size": batch.videos}
    if batch.max_wait_s is not None:  # Beam buckets by length on its stateful path only
        kwargs.update(max_batch_duration_secs=batch.max_wait_s, batch_length_fn=expected_length,
                      batch_bucket_boundaries=list(LENGTH_BUCKETS))
    return kwargs


class VideoHandler(ModelHandler[FrameSource, VideoResult, Any]):
    """``FrameSource`` -> ``VideoResult`` for any model of ``models.video_model``; one video per call,
    or, with ``batch`` (stream mode on GPU workers), ``batch.videos`` videos per model call.

    Args:
        model: the model spec; ``load()`` runs once per worker process.
        plan: ``ClipWindows`` for clip models, ``StreamChunks`` for stream models.
        k: classes kept per frame (predictions only).
        keep_probs: also keep every frame's full probability vector.
        keep_keypoints: also keep every frame's keypoints (pose models).
        keep_features: also keep every frame's features (``output.write_embeddings``): a stream
            model's own per frame, a clip model's (loaded with ``embed``) per clip.
        batch: stream models whose ``batches`` is true (SavedModels on TensorFlow): how
            many videos share each model call and how Beam gathers them; None: one
            video per call. The outputs are the same either way.

    Raises:
        ValueError: ``batch`` without ``StreamChunks``.
    """

    def __init__(self, model: ModelSpec, plan: ClipWindows | StreamChunks, *, k: int = 1,
                 keep_probs: bool = False, keep_keypoints: bool = False, keep_features: bool = False,
                 batch: StreamBatch | None = None):
        if batch is not None and not isinstance(plan, StreamChunks):
            raise ValueError("videos share model calls in stream mode only: batch needs StreamChunks")
        if batch is not None and batch.videos < 1:
            raise ValueError(f"batch.videos: {batch.videos} is not a positive number of videos")
        super().__init__(**_batching(batch))
        self.model = model
        self._plan = plan
        self._k = k
        self._keep_probs = keep_probs
        self._keep_keypoints = keep_keypoints
        self._keep_features = keep_features
        self._batch = batch
        self._model_ms = None
        self._videos_per_call = None

    def load_model(self) -> Any:
        model = self.model.load()
        if isinstance(self._plan, StreamChunks):
            windowed(model, self._plan.window_s)  # a window the model cannot give fails here, once
        if self._batch is not None and self._batch.videos > 1 and not getattr(model, "batches", False):
            raise ValueError(f"model {getattr(self.model, 'handle', self.model)} runs one video per call "
                             "(LiteRT); batches of videos (stream mode with model.accelerator) need a "
                             "SavedModel on TensorFlow (model.runtime: tf)")
        return model

    def run_inference(self, batch: Sequence[FrameSource], model: Any,
                      inference_args: dict[str, Any] | None = None) -> list[VideoResult]:
        if self._model_ms is None:
            self._model_ms = metrics.distribution(metrics.MODEL_MS)
            self._videos_per_call = metrics.distribution(metrics.VIDEOS_PER_CALL)
        if self._batch is not None and len(batch) > 1:
            self._videos_per_call.update(len(batch))
            return self._stream_videos(batch, model)
        self._videos_per_call.update(1)
        return [self._video(source, model) for source in batch]

    def _video(self, source: FrameSource, model: Any) -> VideoResult:
        report, clock = DecodeReport(), ModelClock()
        frames = frames_of(source, report)
        if isinstance(self._plan, StreamChunks):
            outputs = [(0, stream_prediction(model, frames, chunk=self._plan.size, imgz=source.spec.imgz,
                                             k=self._k, keep_probs=self._keep_probs, clock=clock,
                                             window_s=self._plan.window_s,
                                             keep_features=self._keep_features))]
        else:
            outputs = self._clip_outputs(model, frames, clock)
        self._model_ms.update(round(clock.seconds * 1000))
        return VideoResult(report.info(source.ref), outputs)

    def _stream_videos(self, batch: Sequence[FrameSource], model: Any) -> list[VideoResult]:
        """A batch of videos through ``stream_predictions``, each decoded as it goes.

        A thread's decoder process decodes one video at a time (a second request
        stops the first), so every lazily decoded video of the batch but the first
        gets a decoder process of its own, for this batch only: memory stays one
        chunk per video. Each video's ``model_ms`` is its share of the batch's model
        time, by frames.
        """
        reports = [DecodeReport() for _ in batch]
        own: list[DecoderProcess] = []
        try:
            videos, lazy = [], 0
            for source, report in zip(batch, reports):
                decoder = None
                if source.frames is None:
                    if lazy:  # the first takes this thread's decoder process
                        decoder = DecoderProcess(source.spec.decoder_memory_mb)
                        own.append(decoder)
                    lazy += 1
                videos.append(frames_of(source, report, decoder))
            clock = ModelClock()
            predictions = stream_predictions(model, videos, chunk=self._plan.size, imgz=batch[0].spec.imgz,
                                             k=self._k, keep_probs=self._keep_probs, clock=clock,
                                             window_s=self._plan.window_s, keep_features=self._keep_features)
        finally:
            for decoder in own:
                decoder.stop()
        counts = [len(p.frame_indices) for p in predictions]
        for n in counts:
            share = n / sum(counts) if sum(counts) else 1 / len(counts)
            self._model_ms.update(round(clock.seconds * share * 1000))
        return [VideoResult(report.info(source.ref), [(0, prediction)])
                for source, report, prediction in zip(batch, reports, predictions)]

    def _clip_outputs(self, model: Any, frames: Iterable[SampledFrame],
                      clock: ModelClock) -> list[tuple[int, ClipPrediction]]:
        """(clip_index, prediction) for every clip of the frames, in order."""
        n, stride, batch_size = self._plan
        clips = windows(frames, n, stride)
        outputs: list[tuple[int, ClipPrediction]] = []
        while batch := list(itertools.islice(clips, batch_size)):
            indices, chosen = [i for i, _ in batch], [c for _, c in batch]
            out = clock.call(model, np.stack([pad_clip(c.frames, n) for c in chosen]))
            predictions = clip_predictions(chosen, out, self._k, self._keep_probs, self._keep_keypoints)
            outputs.extend(zip(indices, predictions))
        return outputs

    def get_metrics_namespace(self) -> str:
        return metrics.NAMESPACE
