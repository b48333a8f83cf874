"""VideoHandler: the one ModelHandler every model runs in; one ``FrameSource`` in, one ``VideoResult`` out.

This is where a probed video's frames are decoded and meet the model:

1. ``frames_of``: the sampled frames, decoded lazily in this worker thread's
   decoder process (``transforms.decoder_process``; a crash or hang there is
   the video's error), or those decoded earlier on the CPU workers;
2. ``ClipWindows``: clips of ``n_frames`` every ``stride`` frames (``windows``),
   each padded to ``n_frames`` by repeating its last frame, ``batch_size`` clips
   per model call; or ``StreamChunks``: chunks of frames with the model state
   carried from chunk to chunk;
3. the model (``models.video_model``: clip, stream or example model), timed
   alone: the ``model_ms`` distribution holds each video's time in model calls,
   and ``VideoInfo.decode_s`` its time waiting for decoded frames, so the two never
   overlap;
4. the video's ``VideoResult``: one ``ClipPrediction`` per clip (stream mode: one,
   clip 0, over every frame), or one training example per clip.

Memory holds one chunk or one batch of clips, whatever the video's length.
Frames stay uint8 until the model turns them into its own input.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from models.scores import top_k_arrays
from models.video_model import ClipScores, ModelSpec, StreamModel
from transforms.decoder_process import decode_isolated
from transforms.decoding import DecodeReport, SampledFrame
from transforms.records import Clip, ClipPrediction, FrameSource, VideoResult

__all__ = [
    "ClipWindows",
    "StreamChunks",
    "VideoHandler",
    "clip_from_frames",
    "clip_predictions",
    "frames_of",
    "pad_clip",
    "stream_prediction",
    "windows",
]


class ClipWindows(NamedTuple):
    """Clips of ``n_frames`` starting every ``stride`` frames, ``batch_size`` per model call."""

    n_frames: int
    stride: int
    batch_size: int


class StreamChunks(NamedTuple):
    """``size`` frames per model call, the state carried between calls."""

    size: int


def frames_of(source: FrameSource, report: DecodeReport) -> Iterable[SampledFrame]:
    """A source's sampled frames: decoded earlier (``source.frames``, with its outcome copied into
    ``report``), or decoded now, lazily, in this thread's decoder process from the source's probe."""
    if source.frames is None:
        report.meta = source.meta
        return decode_isolated(source.ref.uri, source.spec, report)
    info = source.decoded
    report.meta, report.error, report.decode_s = info.meta, info.error, info.decode_s
    report.frames_decoded, report.frames_sampled = info.frames_decoded, info.frames_sampled
    return source.frames


def clip_from_frames(frames: list[SampledFrame], owned_stop: int) -> Clip:
    """Stacks sampled frames into a Clip that writes the rows of its first ``owned_stop`` frames."""
    return Clip(
        frames=np.stack([f.image for f in frames]),
        frame_indices=np.array([f.index for f in frames], dtype=np.int64),
        timestamps_s=np.array([f.time_s for f in frames], dtype=np.float64),
        owned_start=0,
        owned_stop=owned_stop,
    )


def windows(frames: Iterable[SampledFrame], n_frames: int, stride: int) -> Iterator[tuple[int, Clip]]:
    """Groups sampled frames into clips of ``n_frames`` starting every ``stride`` frames.

    Yields ``(clip_index, clip)``. Clip k starts at frame k * stride and writes the
    rows of its first ``stride`` frames; the last full clip writes all its frames,
    and frames after it go into one shorter final clip (padded before the model,
    ``pad_clip``). So every frame row is written by exactly one clip, the latest
    clip that starts at or before it. Holds at most ``n_frames`` frames.
    """
    buf: list[SampledFrame] = []
    pending: list[SampledFrame] | None = None
    index = 0
    for frame in frames:
        if pending is not None:
            yield index, clip_from_frames(pending, stride)
            index += 1
            pending = None
        buf.append(frame)
        if len(buf) == n_frames:
            pending = buf
            buf = buf[stride:]
    if pending is not None:
        yield index, clip_from_frames(pending, n_frames)
    elif buf:
        yield index, clip_from_frames(buf, len(buf))


def pad_clip(frames: np.ndarray, n_frames: int) -> np.ndarray:
    """[t, ...] -> [n_frames, ...], repeating the last entry (the end of a video)."""
    if frames.shape[0] >= n_frames:
        return frames
    pad = np.repeat(frames[-1:], n_frames - frames.shape[0], axis=0)
    return np.concatenate([frames, pad], axis=0)


def clip_predictions(batch: Sequence[Clip], scores: ClipScores, k: int, keep_probs: bool,
                     keep_keypoints: bool = False) -> list[ClipPrediction]:
    """One ClipPrediction per clip; every frame a clip writes gets the clip's probabilities.

    Args:
        batch: the clips, in the order of ``scores``' rows.
        scores: probabilities float32 [len(batch), num_classes], and keypoints float32
            [len(batch), n_frames, 17, 3] or None.
        k: classes kept per frame.
        keep_probs: also keep the full vectors per frame.
        keep_keypoints: also keep the keypoints of the frames each clip writes.
    """
    keypoints = scores.keypoints if keep_keypoints else None
    out = []
    for row, (clip, p) in enumerate(zip(batch, scores.probs)):
        owned = slice(clip.owned_start, clip.owned_stop)
        n = clip.owned_stop - clip.owned_start
        index, score = top_k_arrays(p, k)
        out.append(ClipPrediction(
            clip.frame_indices[owned], clip.timestamps_s[owned], np.repeat(index[np.newaxis], n, 0),
            np.repeat(score[np.newaxis], n, 0), p, np.repeat(p[np.newaxis], n, 0) if keep_probs else None,
            None if keypoints is None else keypoints[row, owned]))
    return out


class _ModelClock:
    """Seconds spent inside model calls, for one video."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def call(self, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds += time.perf_counter() - start


def stream_prediction(model: StreamModel, frames: Iterable[SampledFrame], *, chunk: int, imgz: int, k: int,
                      keep_probs: bool = False, clock: _ModelClock | None = None) -> ClipPrediction:
    """Runs frames through a stream model in chunks of ``chunk``, carrying its state.

    Per frame only the top ``k`` classes are kept (and the full vector with
    ``keep_probs``), so memory grows by a few bytes per frame, plus one chunk.
    ``clock``, if given, adds up the time spent in the model's calls.

    Returns:
        A ClipPrediction over all frames: row i is the causal output after frame i
        (after the end of frame i's chunk for models without per-frame outputs);
        ``clip_probs`` is the output after the last frame, None without frames.
    """
    clock = clock or _ModelClock()
    states = clock.call(model.init_states, imgz)
    indices, times, top_index, top_score, kept = [], [], [], [], []
    probs = None
    frames = iter(frames)
    while batch := list(itertools.islice(frames, chunk)):
        probs, states = clock.call(model.step, np.stack([f.image for f in batch]), states)
        index, score = top_k_arrays(probs, k)
        indices.append(np.array([f.index for f in batch], dtype=np.int64))
        times.append(np.array([f.time_s for f in batch], dtype=np.float64))
        top_index.append(index)
        top_score.append(score)
        if keep_probs:
            kept.append(probs)
    if probs is None:
        return ClipPrediction(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, k), np.int32),
                              np.zeros((0, k), np.float32), None)
    return ClipPrediction(np.concatenate(indices), np.concatenate(times), np.concatenate(top_index),
                          np.concatenate(top_score), probs[-1],
                          np.concatenate(kept) if keep_probs else None)


class VideoHandler(ModelHandler[FrameSource, VideoResult, Any]):
    """``FrameSource`` -> ``VideoResult`` for any model of ``models.video_model``; one video per call.

    Args:
        model: the model spec; ``load()`` runs once per worker process.
        plan: ``ClipWindows`` for clip and example models, ``StreamChunks`` for stream models.
        k: classes kept per frame (predictions only).
        keep_probs: also keep every frame's full probability vector.
        keep_keypoints: also keep every frame's keypoints (pose models).
        examples: the model is an ``ExampleModel``: the result's clips are its examples,
            one array per clip, not predictions (``videolabel train``).
    """

    def __init__(self, model: ModelSpec, plan: ClipWindows | StreamChunks, *, k: int = 1,
                 keep_probs: bool = False, keep_keypoints: bool = False, examples: bool = False):
        super().__init__()
        if examples and not isinstance(plan, ClipWindows):
            raise ValueError("example models take clips: plan must be ClipWindows")
        self.model = model
        self._plan = plan
        self._k = k
        self._keep_probs = keep_probs
        self._keep_keypoints = keep_keypoints
        self._examples = examples
        self._model_ms = None

    def load_model(self) -> Any:
        return self.model.load()

    def run_inference(self, batch: Sequence[FrameSource], model: Any,
                      inference_args: dict[str, Any] | None = None) -> list[VideoResult]:
        if self._model_ms is None:
            self._model_ms = Metrics.distribution(self.get_metrics_namespace(), "model_ms")
        return [self._video(source, model) for source in batch]

    def _video(self, source: FrameSource, model: Any) -> VideoResult:
        report, clock = DecodeReport(), _ModelClock()
        frames = frames_of(source, report)
        if isinstance(self._plan, StreamChunks):
            outputs = [(0, stream_prediction(model, frames, chunk=self._plan.size, imgz=source.spec.imgz,
                                             k=self._k, keep_probs=self._keep_probs, clock=clock))]
        else:
            outputs = self._clip_outputs(model, frames, clock)
        self._model_ms.update(int(clock.seconds * 1000))
        return VideoResult(report.info(source.ref), outputs)

    def _clip_outputs(self, model: Any, frames: Iterable[SampledFrame], clock: _ModelClock) -> list:
        """(clip_index, prediction or example) for every clip of the frames, in order."""
        n, stride, batch_size = self._plan
        clips = windows(frames, n, stride)
        outputs: list[tuple[int, Any]] = []
        while batch := list(itertools.islice(clips, batch_size)):
            indices, chosen = [i for i, _ in batch], [c for _, c in batch]
            out = clock.call(model, np.stack([pad_clip(c.frames, n) for c in chosen]))
            if self._examples:
                outputs.extend(zip(indices, out))
            else:
                predictions = clip_predictions(chosen, out, self._k, self._keep_probs, self._keep_keypoints)
                outputs.extend(zip(indices, predictions))
        return outputs

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": 1}

    def get_metrics_namespace(self) -> str:
        return "videolabel"
