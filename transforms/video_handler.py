"""VideoHandler: the one ModelHandler every model runs in; ``FrameSource`` in, ``VideoResult`` out, per video.

This is where a probed video's frames are decoded and meet the model:

1. ``transforms.sampling.frames_of``: the sampled frames, decoded lazily in this worker thread's
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

One video per call, except in stream mode on GPU workers (``StreamBatch``): there
``videos`` videos go through each model call together, chunk by chunk, from
their first frame (``stream_predictions``), and each gets exactly the outputs it
gets alone. Beam's BatchElements forms those batches (``batch_elements_kwargs``),
across bundles and by expected length (``expected_length``, ``LENGTH_BUCKETS``)
with ``max_wait_s``.

Memory holds one chunk or one batch of clips, whatever the video's length (a
batch of videos: one chunk of each). Frames stay uint8 until the model turns them
into its own input.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from models.frame_window import FrameWindow
from models.scores import top_k_arrays
from models.video_model import BatchStreamModel, ClipScores, ModelSpec, StreamModel
from transforms import metrics
from transforms.decoder_process import DecoderProcess
from transforms.decoding import DecodeReport, SampledFrame
from transforms.records import Clip, ClipPrediction, FrameSource, VideoResult
from transforms.sampling import expected_frames, frames_of

__all__ = [
    "LENGTH_BUCKETS",
    "ClipWindows",
    "StreamBatch",
    "StreamChunks",
    "VideoHandler",
    "clip_from_frames",
    "clip_predictions",
    "expected_length",
    "pad_clip",
    "stream_prediction",
    "stream_predictions",
    "times_of",
    "windowed",
    "windows",
]

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


def clip_from_frames(frames: list[SampledFrame], owned_stop: int) -> Clip:
    """Stacks sampled frames into a Clip that writes the rows of its first ``owned_stop`` frames."""
    return Clip(
        frames=np.stack([f.image for f in frames]),
        frame_indices=np.array([f.index for f in frames], dtype=np.int64),
        timestamps_s=times_of(frames),
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


class _StreamRows:
    """One video's stream outputs as they come, chunk by chunk: the top ``k`` per frame (and every
    probability with ``keep_probs``), and the output after the last frame."""

    def __init__(self, k: int, keep_probs: bool):
        self._k, self._keep_probs = k, keep_probs
        self._indices, self._times, self._top_index, self._top_score, self._kept = [], [], [], [], []
        self._last: np.ndarray | None = None

    def add(self, frames: Sequence[SampledFrame], probs: np.ndarray, last: np.ndarray | None = None) -> None:
        """``probs`` float32 [len(frames), C]: row i the output for ``frames[i]``; ``last`` float32 [C]
        the video's output after the last of them, when it is not ``probs[-1]`` (frame windows)."""
        index, score = top_k_arrays(probs, self._k)
        self._indices.append(np.array([f.index for f in frames], dtype=np.int64))
        self._times.append(times_of(frames))
        self._top_index.append(index)
        self._top_score.append(score)
        if self._keep_probs:
            self._kept.append(probs)
        self._last = probs[-1] if last is None else last

    def prediction(self) -> ClipPrediction:
        if self._last is None:
            return ClipPrediction(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, self._k), np.int32),
                                  np.zeros((0, self._k), np.float32), None)
        return ClipPrediction(np.concatenate(self._indices), np.concatenate(self._times),
                              np.concatenate(self._top_index), np.concatenate(self._top_score), self._last,
                              np.concatenate(self._kept) if self._keep_probs else None)


def times_of(frames: Sequence[SampledFrame]) -> np.ndarray:
    """The frames' timestamps, float64 [len(frames)] seconds."""
    return np.array([f.time_s for f in frames], dtype=np.float64)


def windowed(model: StreamModel, window_s: float) -> bool:
    """Whether frame labels come from windows of ``window_s`` (> 0) over the model's frame features.

    Raises:
        ValueError: a window is asked of a model with per-frame outputs but no frame features (a
            SavedModel exported before frame windows), one line naming the fix.
    """
    if window_s <= 0 or not getattr(model, "per_frame", False):
        return False  # TF Hub models: each frame gets its chunk's output, window or not
    if not getattr(model, "features", False):
        raise ValueError("model.frame_window_s needs a model with per-frame features and a head signature: "
                         "export or train it again with this version, or set model.frame_window_s=0")
    return True


def stream_prediction(model: StreamModel, frames: Iterable[SampledFrame], *, chunk: int, imgz: int, k: int,
                      keep_probs: bool = False, clock: _ModelClock | None = None,
                      window_s: float = 0.0) -> ClipPrediction:
    """Runs frames through a stream model in chunks of ``chunk``, carrying its state.

    Per frame only the top ``k`` classes are kept (and the full vector with
    ``keep_probs``), so memory grows by a few bytes per frame, plus one chunk.
    ``clock``, if given, adds up the time spent in the model's calls. With
    ``window_s`` > 0 (``windowed``), row i is the model's head on the mean of the
    features of the frames in the ``window_s`` seconds up to frame i.

    Returns:
        A ClipPrediction over all frames: row i is the causal output after frame i
        (after the end of frame i's chunk for models without per-frame outputs), or
        frame i's window's; ``clip_probs`` is the output after the last frame (over
        the whole video), None without frames.
    """
    clock = clock or _ModelClock()
    window = FrameWindow(window_s) if windowed(model, window_s) else None
    states = clock.call(model.init_states, imgz)
    rows = _StreamRows(k, keep_probs)
    frames = iter(frames)
    while batch := list(itertools.islice(frames, chunk)):
        images = np.stack([f.image for f in batch])
        if window is None:
            probs, states = clock.call(model.step, images, states)
            rows.add(batch, probs)
        else:
            probs, features, states = clock.call(model.step_with_features, images, states)
            rows.add(batch, clock.call(model.head, window.means(features, times_of(batch))), probs[-1])
    return rows.prediction()


def _padded(chunks: Sequence[list[SampledFrame]], last: list[np.ndarray | None], span: int) -> np.ndarray:
    """Each video's chunk as uint8 [len(chunks), span, h, w, 3]; a shorter one (a video that ended)
    padded with its last frame (``last``, updated here), zeros for a video without frames."""
    shape = next(frames[0].image.shape for frames in chunks if frames)
    images = np.zeros((len(chunks), span, *shape), np.uint8)
    for video, frames in enumerate(chunks):
        for i, frame in enumerate(frames):
            images[video, i] = frame.image
        if frames:
            last[video] = frames[-1].image
        if last[video] is not None:
            images[video, len(frames):] = last[video]
    return images


def stream_predictions(model: BatchStreamModel, videos: Sequence[Iterable[SampledFrame]], *, chunk: int,
                       imgz: int, k: int, keep_probs: bool = False, clock: _ModelClock | None = None,
                       window_s: float = 0.0) -> list[ClipPrediction]:
    """Runs several videos through a stream model together: all of them in each call, ``chunk`` frames
    of each per call, from their first frame on.

    Each video's prediction is the one ``stream_prediction`` gives it alone, with the
    same ``chunk`` (to float rounding): the videos of a batch start together, so
    MoViNet's frame counts (one for the whole batch) are right for all of them, and
    its buffers are per video. A video that has ended is padded with its last frame
    until the last one ends, and its padded rows are dropped. For a model without
    per-frame outputs (every frame of a chunk gets the output after the chunk's last
    frame), a chunk in which some videos end runs as several calls, cut at those
    ends, so that a video gets the output after its own last frame, and every frame
    of another video the output at the end of its full chunk, as alone.

    Memory: one chunk of each video, whatever their lengths.

    Args:
        model: a model whose ``batches`` is true (a SavedModel).
        videos: each video's sampled frames, uint8 [imgz, imgz, 3] each, in order.
        chunk, imgz, k, keep_probs, clock, window_s: as ``stream_prediction``; ``clock``
            adds up the whole batch's time in the model; each video has its own window.

    Returns:
        One ClipPrediction per video, in order.
    """
    clock = clock or _ModelClock()
    streams = [iter(frames) for frames in videos]
    rows = [_StreamRows(k, keep_probs) for _ in streams]
    windows = [FrameWindow(window_s) for _ in streams] if windowed(model, window_s) else None
    ended = [False] * len(streams)
    last: list[np.ndarray | None] = [None] * len(streams)
    states = None
    while not all(ended):
        chunks = [[] if done else list(itertools.islice(frames, chunk))
                  for frames, done in zip(streams, ended)]
        counts = [len(frames) for frames in chunks]
        ended = [done or n < chunk for done, n in zip(ended, counts)]
        span = max(counts)
        if span == 0:
            break
        images = _padded(chunks, last, span)
        if states is None:
            states = clock.call(model.init_states, imgz, len(streams))
        if windows is not None:
            probs, features, states = clock.call(model.step_with_features, images, states)
            means = [w.means(features[video, :n], times_of(frames))
                     for video, (w, frames, n) in enumerate(zip(windows, chunks, counts))]
            now = np.split(clock.call(model.head, np.concatenate(means)), np.cumsum(counts)[:-1])
            for video, (frames, n) in enumerate(zip(chunks, counts)):
                if n:
                    rows[video].add(frames, now[video], probs[video, n - 1])
            continue
        cuts = [span] if model.per_frame else sorted({n for n in counts if 0 < n < span} | {span})
        parts, start = [], 0
        for cut in cuts:
            probs, states = clock.call(model.step, images[:, start:cut], states)
            parts.append(probs)
            start = cut
        probs = np.concatenate(parts, axis=1)
        for video, (frames, n) in enumerate(zip(chunks, counts)):
            if n:
                own = probs[video, :n] if model.per_frame else np.repeat(probs[video, n - 1:n], n, axis=0)
                rows[video].add(frames, own)
    return [r.prediction() for r in rows]


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
        plan: ``ClipWindows`` for clip and example models, ``StreamChunks`` for stream models.
        k: classes kept per frame (predictions only).
        keep_probs: also keep every frame's full probability vector.
        keep_keypoints: also keep every frame's keypoints (pose models).
        examples: the model is an ``ExampleModel``: the result's clips are its examples,
            one array per clip, not predictions (``videolabel train``).
        batch: stream models whose ``batches`` is true (SavedModels on TensorFlow): how
            many videos share each model call and how Beam gathers them; None: one
            video per call. The outputs are the same either way.

    Raises:
        ValueError: ``batch`` without ``StreamChunks``, or ``examples`` without ``ClipWindows``.
    """

    def __init__(self, model: ModelSpec, plan: ClipWindows | StreamChunks, *, k: int = 1,
                 keep_probs: bool = False, keep_keypoints: bool = False, examples: bool = False,
                 batch: StreamBatch | None = None):
        if examples and not isinstance(plan, ClipWindows):
            raise ValueError("example models take clips: plan must be ClipWindows")
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
        self._examples = examples
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
        report, clock = DecodeReport(), _ModelClock()
        frames = frames_of(source, report)
        if isinstance(self._plan, StreamChunks):
            outputs = [(0, stream_prediction(model, frames, chunk=self._plan.size, imgz=source.spec.imgz,
                                             k=self._k, keep_probs=self._keep_probs, clock=clock,
                                             window_s=self._plan.window_s))]
        else:
            outputs = self._clip_outputs(model, frames, clock)
        self._model_ms.update(int(clock.seconds * 1000))
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
            clock = _ModelClock()
            predictions = stream_predictions(model, videos, chunk=self._plan.size, imgz=batch[0].spec.imgz,
                                             k=self._k, keep_probs=self._keep_probs, clock=clock,
                                             window_s=self._plan.window_s)
        finally:
            for decoder in own:
                decoder.stop()
        counts = [len(p.frame_indices) for p in predictions]
        for n in counts:
            share = n / sum(counts) if sum(counts) else 1 / len(counts)
            self._model_ms.update(int(clock.seconds * share * 1000))
        return [VideoResult(report.info(source.ref), [(0, prediction)])
                for source, report, prediction in zip(batch, reports, predictions)]

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

    def get_metrics_namespace(self) -> str:
        return metrics.NAMESPACE
