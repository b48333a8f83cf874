"""Turning per-clip model probabilities into ClipPredictions (shared by clip-based handlers)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from transforms.aggregate import top_k_arrays
from transforms.records import Clip, ClipPrediction

__all__ = ["clip_predictions", "pad_clip"]


def pad_clip(frames: np.ndarray, n_frames: int) -> np.ndarray:
    """[t, ...] -> [n_frames, ...], repeating the last entry (the end of a video)."""
    if frames.shape[0] >= n_frames:
        return frames
    pad = np.repeat(frames[-1:], n_frames - frames.shape[0], axis=0)
    return np.concatenate([frames, pad], axis=0)


def clip_predictions(batch: Sequence[Clip], probs: np.ndarray, k: int,
                     keep_probs: bool) -> list[ClipPrediction]:
    """One ClipPrediction per clip; every frame a clip writes gets the clip's probabilities.

    Args:
        batch: the clips, in the order of ``probs``' rows.
        probs: float32 [len(batch), num_classes].
        k: classes kept per frame.
        keep_probs: also keep the full vectors per frame.
    """
    out = []
    for clip, p in zip(batch, probs):
        owned = slice(clip.owned_start, clip.owned_stop)
        n = clip.owned_stop - clip.owned_start
        index, score = top_k_arrays(p, k)
        out.append(ClipPrediction(
            clip.frame_indices[owned], clip.timestamps_s[owned], np.repeat(index[np.newaxis], n, 0),
            np.repeat(score[np.newaxis], n, 0), p, np.repeat(p[np.newaxis], n, 0) if keep_probs else None))
    return out
