"""Beam ModelHandlers for pose: MoveNet keypoints alone, and keypoints into a trained LSTM.

Both take one ``FrameSource`` (a probed video) per element, decode it into clips
of ``n_frames`` every ``stride`` frames, ``batch_size`` clips at a time, and
return one ``VideoResult``. Keypoints are float32 [frames, 17, 3] (y, x, score;
weak joints zeroed). The LSTM sees each clip's keypoints padded to ``n_frames``
(repeating the last frame) and flattened to [n_frames, 51].
"""

from __future__ import annotations

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from models.movenet import MoveNet, load_movenet
from models.predictions import ClipsPerVideo, clip_predictions, pad_clip
from models.storage import local_copy
from transforms.records import Clip, ClipPrediction

__all__ = ["PoseHandler", "PoseLstmHandler", "lstm_window"]


def lstm_window(keypoints: np.ndarray, n_frames: int) -> np.ndarray:
    """float32 [t, 17, 3] -> [n_frames, 51]: padded with the last frame, joints flattened."""
    padded = pad_clip(keypoints, n_frames)[:n_frames]
    return padded.reshape(n_frames, -1).astype(np.float32)


def _load_movenet(handle: str, threads: int) -> MoveNet:
    try:
        return load_movenet(handle, threads or None)
    except Exception as exc:
        raise ValueError(f"cannot load pose model {handle}: {type(exc).__name__}: {exc}") from exc


class PoseHandler(ClipsPerVideo, ModelHandler):
    """``FrameSource`` -> ``VideoResult`` of keypoints float32 [clip frames, 17, 3] per clip.

    Args:
        handle: MoveNet .tflite file or SavedModel / TF Hub handle.
        threshold: joints scored under it become zeros.
        n_frames, stride, batch_size: the clips, and how many go per call.
        threads: interpreter / TF threads per process; 0 lets them decide.
    """

    def __init__(self, handle: str, *, threshold: float, n_frames: int, stride: int, batch_size: int,
                 threads: int = 0):
        super().__init__()
        self._n_frames, self._stride, self._batch_size = n_frames, stride, batch_size
        self._handle = handle
        self._threshold = threshold
        self._threads = threads

    def load_model(self) -> MoveNet:
        return _load_movenet(self._handle, self._threads)

    def _run_clips(self, clips: list[Clip], model: MoveNet) -> list[np.ndarray]:
        return [model.keypoints(clip.frames, self._threshold) for clip in clips]


class _PoseLstm:
    def __init__(self, movenet: MoveNet, serve):
        self.movenet = movenet
        self.serve = serve


class PoseLstmHandler(ClipsPerVideo, ModelHandler):
    """``FrameSource`` -> ``VideoResult`` of ``ClipPrediction``s: MoveNet keypoints, then the trained LSTM.

    Args:
        handle: the ``videolabel train`` output folder (``saved_model/`` and ``labels.txt``).
        pose_handle, threshold: the MoveNet model and its joint threshold.
        num_labels: checked against the LSTM's output at load.
        n_frames: the LSTM's window length, and the clip length.
        stride: frames between clip starts.
        top_k, keep_probs: classes kept per frame, and whether to keep full vectors.
        keep_keypoints: also return each frame's keypoints.
        batch_size: windows per LSTM call.
        threads: TF threads per process; 0 lets TF decide.
    """

    def __init__(self, handle: str, *, pose_handle: str, threshold: float, num_labels: int, n_frames: int,
                 stride: int, top_k: int, keep_probs: bool, batch_size: int, threads: int = 0,
                 keep_keypoints: bool = False):
        super().__init__()
        self._n_frames, self._stride, self._batch_size = n_frames, stride, batch_size
        self._handle = handle
        self._pose_handle = pose_handle
        self._threshold = threshold
        self._threads = threads
        self._keep_keypoints = keep_keypoints
        self._num_labels = num_labels
        self._k = min(top_k, num_labels)
        self._keep_probs = keep_probs

    def load_model(self) -> _PoseLstm:
        import tensorflow as tf

        try:
            saved = tf.saved_model.load(local_copy(f"{self._handle.rstrip('/')}/saved_model"))
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
        return _PoseLstm(_load_movenet(self._pose_handle, self._threads), serve)

    def _run_clips(self, clips: list[Clip], model: _PoseLstm) -> list[ClipPrediction]:
        import tensorflow as tf

        keypoints = [model.movenet.keypoints(clip.frames, self._threshold) for clip in clips]
        windows = np.stack([lstm_window(k, self._n_frames) for k in keypoints])
        probs = model.serve(features=tf.constant(windows))["probs"].numpy()
        predictions = clip_predictions(clips, probs, self._k, self._keep_probs)
        if not self._keep_keypoints:
            return predictions
        return [p._replace(keypoints=k[c.owned_start:c.owned_stop])
                for p, k, c in zip(predictions, keypoints, clips)]
