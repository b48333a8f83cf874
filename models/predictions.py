"""Clip-based handlers' shared steps: a video into batches of clips; probabilities into ClipPredictions."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from models.scores import top_k_arrays
from transforms.decoder_process import frames_of
from transforms.decoding import DecodeReport, windows
from transforms.records import Clip, ClipPrediction, FrameSource, VideoResult

__all__ = ["ClipsPerVideo", "clip_predictions", "clips_of", "pad_clip"]


def clips_of(source: FrameSource, run: Callable[[list[Clip]], Sequence[Any]], *, n_frames: int,
             stride: int, batch_size: int) -> VideoResult:
    """Decodes ``source`` into clips of ``n_frames`` every ``stride`` frames and runs them in batches.

    ``run`` maps a list of at most ``batch_size`` clips to one output per clip.
    Memory holds one batch of clips; the decode outcome is the result's ``info``.
    """
    report = DecodeReport()
    clips = windows(frames_of(source, report), n_frames, stride)
    outputs: list[tuple[int, Any]] = []
    while batch := list(itertools.islice(clips, batch_size)):
        outputs.extend(zip([index for index, _ in batch], run([clip for _, clip in batch])))
    return VideoResult(report.info(source.ref), outputs)


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


class ClipsPerVideo:
    """Mixin for a ModelHandler taking one ``FrameSource`` per call, decoded into clips.

    The handler sets ``_n_frames``, ``_stride`` and ``_batch_size`` and gives
    ``_run_clips`` (a batch of clips -> one output per clip); each video becomes a
    ``VideoResult`` of those outputs.
    """

    _n_frames: int
    _stride: int
    _batch_size: int

    def _run_clips(self, clips: list[Clip], model: Any) -> list[Any]:
        raise NotImplementedError

    def run_inference(self, batch: Sequence[FrameSource], model: Any,
                      inference_args: dict[str, Any] | None = None) -> list[VideoResult]:
        return [clips_of(source, lambda clips: self._run_clips(clips, model), n_frames=self._n_frames,
                         stride=self._stride, batch_size=self._batch_size) for source in batch]

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": 1}

    def get_metrics_namespace(self) -> str:
        return "videolabel"
