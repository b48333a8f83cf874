"""Pose models for the video handler: MoveNet keypoints as training examples, and keypoints into an LSTM.

Keypoints are float32 [frames, 17, 3] (y, x, score; weak joints zeroed). The
LSTM (``videolabel train``'s output folder) sees each clip's keypoints as a
window float32 [n_frames, 51], the joints flattened.

* ``PoseKeypoints(...).load()``: an ``ExampleModel``, clips -> windows [b, n_frames, 51];
* ``PoseLstm(...).load()``: a ``ClipModel``, clips -> probabilities [b, C] and the keypoints.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from models.movenet import MoveNet, load_movenet
from models.storage import local_copy
from models.video_model import ClipScores

__all__ = ["LoadedPoseLstm", "PoseKeypoints", "PoseLstm", "lstm_window"]


def lstm_window(keypoints: np.ndarray) -> np.ndarray:
    """float32 [n_frames, 17, 3] -> [n_frames, 51]: the joints of each frame flattened."""
    return keypoints.reshape(len(keypoints), -1).astype(np.float32)


def _load_movenet(handle: str, threads: int) -> MoveNet:
    try:
        return load_movenet(handle, threads or None)
    except Exception as exc:
        raise ValueError(f"cannot load pose model {handle}: {type(exc).__name__}: {exc}") from exc


def _keypoints(movenet: MoveNet, clips: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 [b, n, h, w, 3] -> float32 [b, n, 17, 3]."""
    return np.stack([movenet.keypoints(clip, threshold) for clip in clips])


@dataclasses.dataclass(frozen=True)
class PoseKeypoints:
    """MoveNet keypoints of each clip as its LSTM window, the examples ``videolabel train`` fits on.

    Attributes:
        handle: MoveNet .tflite file or SavedModel / TF Hub handle.
        threshold: joints scored under it become zeros.
        threads: interpreter / TF threads per process; 0 lets them decide.
    """

    handle: str
    threshold: float
    threads: int = 0

    def load(self):
        movenet = _load_movenet(self.handle, self.threads)
        return lambda clips: np.stack([lstm_window(k) for k in _keypoints(movenet, clips, self.threshold)])


class LoadedPoseLstm:
    """MoveNet and the trained LSTM, loaded: a ``ClipModel``."""

    def __init__(self, movenet: MoveNet, serve: Any, threshold: float, embed: bool = False):
        self._movenet = movenet
        self._serve = serve
        self._threshold = threshold
        self._embed = embed

    def classify(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Keypoint windows float32 [b, n_frames, 51] -> (probabilities float32 [b, C], with ``embed`` the
        windows' embeddings float32 [b, E] (``models.lstm.EMBEDDING_LAYER``), else None)."""
        import tensorflow as tf

        out = self._serve(features=tf.constant(windows))
        return out["probs"].numpy(), (out["embedding"].numpy() if self._embed else None)

    def __call__(self, clips: np.ndarray) -> ClipScores:
        """uint8 [b, n_frames, h, w, 3] -> probabilities, the keypoints float32 [b, n_frames, 17, 3], and
        with ``embed`` the embeddings."""
        keypoints = _keypoints(self._movenet, clips, self._threshold)
        probs, features = self.classify(np.stack([lstm_window(k) for k in keypoints]))
        return ClipScores(probs, keypoints, features)


@dataclasses.dataclass(frozen=True)
class PoseLstm:
    """A pose LSTM trained by ``videolabel train``, on the keypoints of a MoveNet model.

    Attributes:
        handle: the ``videolabel train`` output folder (``saved_model/`` and ``labels.txt``).
        pose_handle, threshold: the MoveNet model and its joint threshold.
        num_labels: checked against the LSTM's output at load.
        n_frames: the window length the LSTM must take.
        threads: TF threads per process; 0 lets TF decide.
        embed: also give each window's embedding (the ``embed`` signature of this version's ``train``).
    """

    handle: str
    pose_handle: str
    threshold: float
    num_labels: int
    n_frames: int
    threads: int = 0
    embed: bool = False

    def load(self) -> LoadedPoseLstm:
        import tensorflow as tf

        try:
            saved = tf.saved_model.load(local_copy(f"{self.handle.rstrip('/')}/saved_model"))
            serve = saved.signatures["embed" if self.embed else "serving_default"]
        except KeyError:
            raise ValueError(f"the LSTM in {self.handle} gives no embeddings (no embed signature): train it "
                             "again with this version, or leave output.write_embeddings off") from None
        except Exception as exc:
            raise ValueError(f"cannot load the LSTM in {self.handle}: {type(exc).__name__}: {exc}") from exc
        (spec,) = serve.structured_input_signature[1].values()
        width = serve(features=tf.zeros([1, self.n_frames, 51]))["probs"].shape[-1]
        if spec.shape[1] != self.n_frames:
            raise ValueError(f"the LSTM in {self.handle} takes windows of {spec.shape[1]} frames, "
                             f"not sampling.n_frames={self.n_frames}")
        if width != self.num_labels:
            raise ValueError(f"the LSTM in {self.handle} outputs {width} classes but the labels list "
                             f"has {self.num_labels}")
        movenet = _load_movenet(self.pose_handle, self.threads)
        return LoadedPoseLstm(movenet, serve, self.threshold, self.embed)
