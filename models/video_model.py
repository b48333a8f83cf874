"""The small interface between a model and the video handler (``transforms.video_handler``).

A model is a picklable *spec* (its handle and settings) whose ``load()`` gives the
loaded model, once per worker process; RunInference shares it between threads.
A loaded model is one of three kinds, and nothing in it decodes video: frames
arrive as uint8 RGB arrays, already sampled, squared and, for clips, padded.

* ``ClipModel``: clips uint8 [b, n_frames, h, w, 3] -> ``ClipScores``
  (base-mode MoViNet; the pose LSTM, which adds the keypoints it saw);
* ``StreamModel``: ``init_states(imgz)``, then ``step(frames uint8 [t, h, w, 3],
  states) -> (probabilities float32 [t, C], states)`` chunk after chunk of one
  video (stream-mode MoViNet, SavedModel or TFLite); a ``BatchStreamModel`` also
  steps several videos that start together (GPU workers: SavedModels only); a
  ``WindowStreamModel`` also gives each frame's features and a head for means of
  them (frame windows, ``models.frame_window``);
* ``ExampleModel``: clips uint8 [b, n_frames, h, w, 3] -> one training example
  per clip, an array [b, ...] (``videolabel train``'s features).

Embeddings (``output.write_embeddings``) come from the same calls: a clip model loaded with
``embed`` adds each clip's features to its ``ClipScores``, and a ``WindowStreamModel``'s
``step_with_features`` gives each frame's own.

Adding a model is one small class: a spec with ``load()`` returning one of these.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np

__all__ = ["BatchStreamModel", "ClipModel", "ClipScores", "ExampleModel", "ModelSpec", "RawClips",
           "StreamModel", "WindowStreamModel"]


class ClipScores(NamedTuple):
    """A clip model's output for a batch of clips.

    Attributes:
        probs: float32 [b, num_classes], each row summing to 1.
        keypoints: float32 [b, n_frames, 17, 3] (y, x, score) for pose models, else None.
        features: float32 [b, F], each clip's features (base MoViNet: its pooled head projection;
            the pose LSTM: its last LSTM layer's normalised output), from a model loaded with
            ``embed``; else None.
    """

    probs: np.ndarray
    keypoints: np.ndarray | None = None
    features: np.ndarray | None = None


class ClipModel(Protocol):
    def __call__(self, clips: np.ndarray) -> ClipScores:
        """uint8 [b, n_frames, h, w, 3] -> scores of each clip."""


class StreamModel(Protocol):
    def init_states(self, imgz: int) -> Any:
        """The state before a video's first frame, for ``imgz`` x ``imgz`` frames."""

    def step(self, frames: np.ndarray, states: Any) -> tuple[np.ndarray, Any]:
        """uint8 [t, h, w, 3] -> (float32 [t, num_classes]: row i the causal output after frame i,
        the state after the last frame)."""


class BatchStreamModel(StreamModel, Protocol):
    """A stream model that also takes a batch of videos per step, all starting at frame 0 together.

    ``batches`` says whether it does (``init_states(imgz, batch=b)`` and ``step`` on
    uint8 [b, t, h, w, 3] -> float32 [b, t, num_classes] then work); ``per_frame``
    whether row i is the output after frame i (else after the step's last frame).
    """

    batches: bool
    per_frame: bool

    def init_states(self, imgz: int, batch: int | None = None) -> Any:
        """The state before frame 0 of one video (``batch`` None) or of ``batch`` videos."""


class WindowStreamModel(StreamModel, Protocol):
    """A stream model whose frames can be labelled by windows of recent frames.

    ``features`` says whether it can (videolabel's exports and conversions); then
    ``step_with_features`` also returns each frame's own features float32 [t, F]
    ([b, t, F] for a batch), and ``head`` maps means of them float32 [n, F] to
    probabilities float32 [n, C].
    """

    features: bool

    def step_with_features(self, frames: np.ndarray, states: Any) -> tuple[np.ndarray, np.ndarray, Any]:
        """As ``step``, plus each frame's features."""

    def head(self, features: np.ndarray) -> np.ndarray:
        """float32 [n, F] -> probabilities float32 [n, num_classes]."""


class ExampleModel(Protocol):
    def __call__(self, clips: np.ndarray) -> np.ndarray:
        """uint8 [b, n_frames, h, w, 3] -> [b, ...], one training example per clip."""


class ModelSpec(Protocol):
    def load(self) -> ClipModel | StreamModel | ExampleModel:
        """The loaded model; raises ValueError with one line for a bad handle or a mismatch."""


class RawClips:
    """The examples of ``train.method: finetune``: each clip itself, uint8 [n_frames, h, w, 3]."""

    def load(self) -> ExampleModel:
        return np.asarray
