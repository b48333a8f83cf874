"""Stream-mode inference, without Beam: a video's sampled frames through a causal model chunk by chunk,
the state carried (``stream_prediction``), or several videos through each call together
(``stream_predictions``, GPU workers), each getting exactly the outputs it gets alone. A frame's label
is the head on the mean of the features of its recent frames where the model gives frame features and
``window_s`` asks for it (``windowed``), else the model's cumulative output after the frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from models.frame_window import FrameWindow
from models.scores import top_k_arrays
from models.video_model import BatchStreamModel, StreamModel
from transforms.clips import ModelClock, times_of
from transforms.decoding import SampledFrame
from transforms.records import ClipPrediction

__all__ = ["stream_prediction", "stream_predictions", "windowed"]


class _StreamRows:
    """One video's stream outputs as they come, chunk by chunk: the top ``k`` per frame (and every
    probability with ``keep_probs``, every frame's own features with ``keep_features``), and the
    output after the last frame."""

    def __init__(self, k: int, keep_probs: bool, keep_features: bool = False):
        self._k, self._keep_probs, self._keep_features = k, keep_probs, keep_features
        self._indices, self._times, self._top_index, self._top_score, self._kept = [], [], [], [], []
        self._features: list[np.ndarray] = []
        self._last: np.ndarray | None = None

    def add(self, frames: Sequence[SampledFrame], probs: np.ndarray, last: np.ndarray | None = None,
            features: np.ndarray | None = None) -> None:
        """``probs`` float32 [len(frames), C]: row i the output for ``frames[i]``; ``last`` float32 [C]
        the video's output after the last of them, when it is not ``probs[-1]`` (frame windows);
        ``features`` float32 [len(frames), F] their own features (kept with ``keep_features``)."""
        index, score = top_k_arrays(probs, self._k)
        self._indices.append(np.array([f.index for f in frames], dtype=np.int64))
        self._times.append(times_of(frames))
        self._top_index.append(index)
        self._top_score.append(score)
        if self._keep_probs:
            self._kept.append(probs)
        if self._keep_features:
            self._features.append(np.asarray(features, np.float32))
        self._last = probs[-1] if last is None else last

    def prediction(self) -> ClipPrediction:
        if self._last is None:
            return ClipPrediction(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, self._k), np.int32),
                                  np.zeros((0, self._k), np.float32), None)
        return ClipPrediction(np.concatenate(self._indices), np.concatenate(self._times),
                              np.concatenate(self._top_index), np.concatenate(self._top_score), self._last,
                              np.concatenate(self._kept) if self._keep_probs else None,
                              features=np.concatenate(self._features) if self._keep_features else None)



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
                      keep_probs: bool = False, clock: ModelClock | None = None,
                      window_s: float = 0.0, keep_features: bool = False) -> ClipPrediction:
    """Runs frames through a stream model in chunks of ``chunk``, carrying its state.

    Per frame only the top ``k`` classes are kept (and the full vector with
    ``keep_probs``), so memory grows by a few bytes per frame, plus one chunk.
    ``clock``, if given, adds up the time spent in the model's calls. With
    ``window_s`` > 0 (``windowed``), row i is the model's head on the mean of the
    features of the frames in the ``window_s`` seconds up to frame i. With
    ``keep_features`` (a model whose ``features`` is true), each frame's own features
    are kept too (``ClipPrediction.features``), 4 F bytes a frame.

    Returns:
        A ClipPrediction over all frames: row i is the causal output after frame i
        (after the end of frame i's chunk for models without per-frame outputs), or
        frame i's window's; ``clip_probs`` is the output after the last frame (over
        the whole video), None without frames.
    """
    clock = clock or ModelClock()
    window = FrameWindow(window_s) if windowed(model, window_s) else None
    states = clock.call(model.init_states, imgz)
    rows = _StreamRows(k, keep_probs, keep_features)
    frames = iter(frames)
    while batch := list(itertools.islice(frames, chunk)):
        images = np.stack([f.image for f in batch])
        if window is None and not keep_features:
            probs, states = clock.call(model.step, images, states)
            rows.add(batch, probs)
            continue
        probs, features, states = clock.call(model.step_with_features, images, states)
        if window is None:
            rows.add(batch, probs, features=features)
        else:
            rows.add(batch, clock.call(model.head, window.means(features, times_of(batch))), probs[-1],
                     features)
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
                       imgz: int, k: int, keep_probs: bool = False, clock: ModelClock | None = None,
                       window_s: float = 0.0, keep_features: bool = False) -> list[ClipPrediction]:
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
        chunk, imgz, k, keep_probs, clock, window_s, keep_features: as ``stream_prediction``; ``clock``
            adds up the whole batch's time in the model; each video has its own window.

    Returns:
        One ClipPrediction per video, in order.
    """
    clock = clock or ModelClock()
    streams = [iter(frames) for frames in videos]
    rows = [_StreamRows(k, keep_probs, keep_features) for _ in streams]
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
        if windows is not None or keep_features:  # models with features give one output per frame
            probs, features, states = clock.call(model.step_with_features, images, states)
            if windows is not None:
                means = [w.means(features[video, :n], times_of(frames))
                         for video, (w, frames, n) in enumerate(zip(windows, chunks, counts))]
                now = np.split(clock.call(model.head, np.concatenate(means)), np.cumsum(counts)[:-1])
            for video, (frames, n) in enumerate(zip(chunks, counts)):
                if n and windows is not None:
                    rows[video].add(frames, now[video], probs[video, n - 1], features[video, :n])
                elif n:
                    rows[video].add(frames, probs[video, :n], features=features[video, :n])
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
