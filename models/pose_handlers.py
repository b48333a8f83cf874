"""Beam ModelHandlers for pose: MoveNet keypoints alone, and keypoints into a trained LSTM.

Both take ``Clip`` elements (uint8 frames). Keypoints are float32 [frames, 17, 3]
(y, x, score; weak joints zeroed). The LSTM sees each clip's keypoints padded
to ``n_frames`` (repeating the last frame) and flattened to [n_frames, 51].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from models.movenet import MoveNet, load_movenet
from models.predictions import clip_predictions, pad_clip
from transforms.records import Clip, ClipPrediction

__all__ = ["PoseHandler", "PoseLstmHandler", "lstm_window"]


def lstm_window(keypoints: np.ndarray, n_frames: int) -> np.ndarray:
    """float32 [t, 17, 3] -> [n_frames, 51]: padded with the last frame, joints flattened."""
    padded = pad_clip(keypoints, n_frames)[:n_frames]
    return padded.reshape(n_frames, -1).astype(np.float32)


class PoseHandler(ModelHandler[Clip, np.ndarray, MoveNet]):
    """``Clip`` -> keypoints float32 [frames, 17, 3].

    Args:
        handle: MoveNet .tflite file or SavedModel / TF Hub handle.
        threshold: joints scored under it become zeros.
        threads: interpreter / TF threads per process; 0 lets them decide.
    """

    def __init__(self, handle: str, *, threshold: float, threads: int = 0):
        super().__init__()
        self._handle = handle
        self._threshold = threshold
        self._threads = threads

    def load_model(self) -> MoveNet:
        try:
            return load_movenet(self._handle, self._threads or None)
        except Exception as exc:
            raise ValueError(f"cannot load pose model {self._handle}: {type(exc).__name__}: {exc}") from exc

    def run_inference(self, batch: Sequence[Clip], model: MoveNet,
                      inference_args: dict[str, Any] | None = None) -> list[np.ndarray]:
        return [model.keypoints(clip.frames, self._threshold) for clip in batch]

    def get_metrics_namespace(self) -> str:
        return "videolabel"


class _PoseLstm:
    def __init__(self, movenet: MoveNet, serve):
        self.movenet = movenet
        self.serve = serve


class PoseLstmHandler(ModelHandler[Clip, ClipPrediction, _PoseLstm]):
    """``Clip`` -> ``ClipPrediction``: MoveNet keypoints, then the LSTM ``videolabel train`` saved.

    Args:
        handle: the training output folder (``saved_model/`` and ``labels.txt``).
        pose_handle, threshold: the MoveNet model and its joint threshold.
        num_labels: checked against the LSTM's output at load.
        n_frames: the LSTM's window length.
        top_k, keep_probs: classes kept per frame, and whether to keep full vectors.
        keep_keypoints: also return each frame's keypoints.
        batch_size: windows per LSTM call.
        threads: TF threads per process; 0 lets TF decide.
    """

    def __init__(self, handle: str, *, pose_handle: str, threshold: float, num_labels: int, n_frames: int,
                 top_k: int, keep_probs: bool, batch_size: int, threads: int = 0,
                 keep_keypoints: bool = False):
        super().__init__()
        self._handle = handle
        self._keep_keypoints = keep_keypoints
        self._pose = PoseHandler(pose_handle, threshold=threshold, threads=threads)
        self._num_labels = num_labels
        self._n_frames = n_frames
        self._k = min(top_k, num_labels)
        self._keep_probs = keep_probs
        self._batch_size = batch_size

    def load_model(self) -> _PoseLstm:
        import tensorflow as tf

        try:
            saved = tf.saved_model.load(f"{self._handle.rstrip('/')}/saved_model")
            serve = saved.signatures["serving_default"]
        except Exception as exc:
            raise ValueError(f"cannot load the LSTM in {self._handle}: {type(exc).__name__}: {exc}") from exc
        (spec,) = serve.structured_input_signature[1].values()
        width = serve(features=tf.zeros([1, self._n_frames, 51]))["probs"].shape[-1]
        if spec.shape[1] != self._n_frames:
            raise ValueError(f"the LSTM in {self._handle} takes windows of {spec.shape[1]} frames, "
                             f"not sampling.n_frames={self._n_frames}")
        if width != self._num_labels:
            raise ValueError(f"the LSTM in {self._handle} outputs {width} classes but the labels list "
                             f"has {self._num_labels}")
        return _PoseLstm(self._pose.load_model(), serve)

    def run_inference(self, batch: Sequence[Clip], model: _PoseLstm,
                      inference_args: dict[str, Any] | None = None) -> list[ClipPrediction]:
        import tensorflow as tf

        keypoints = self._pose.run_inference(batch, model.movenet)
        windows = np.stack([lstm_window(k, self._n_frames) for k in keypoints])
        probs = model.serve(features=tf.constant(windows))["probs"].numpy()
        predictions = clip_predictions(batch, probs, self._k, self._keep_probs)
        if not self._keep_keypoints:
            return predictions
        return [p._replace(keypoints=k[c.owned_start:c.owned_stop])
                for p, k, c in zip(predictions, keypoints, batch)]

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def get_metrics_namespace(self) -> str:
        return "videolabel"
