"""Clip windows, without Beam: sampled frames grouped into clips of ``n_frames`` (``windows``), padded
to the model's clip length (``pad_clip``), and a batch of clip scores turned into per-clip predictions
(``clip_predictions``). ``transforms.video_handler`` runs them for base-mode MoViNet and the pose LSTM.

Frames stay uint8 [n_frames, height, width, 3] here; the model turns them into its own input.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from models.scores import top_k_arrays
from models.video_model import ClipScores
from transforms.decoding import SampledFrame
from transforms.records import Clip, ClipPrediction

__all__ = ["ModelClock", "clip_from_frames", "clip_predictions", "pad_clip", "times_of", "windows"]


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
        scores: probabilities float32 [len(batch), num_classes], keypoints float32
            [len(batch), n_frames, 17, 3] or None, and features float32 [len(batch), F] or None
            (every frame a clip writes gets its clip's features).
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
            None if keypoints is None else keypoints[row, owned],
            None if scores.features is None else np.repeat(scores.features[row:row + 1], n, 0)))
    return out



class ModelClock:
    """Seconds spent inside model calls, for one video."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def call(self, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds += time.perf_counter() - start



def times_of(frames: Sequence[SampledFrame]) -> np.ndarray:
    """The frames' timestamps, float64 [len(frames)] seconds."""
    return np.array([f.time_s for f in frames], dtype=np.float64)
