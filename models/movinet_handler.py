"""Beam ModelHandler for MoViNet classifiers (TF Hub URL or local / gs:// SavedModel).

Base mode: a batch of clips, each padded to ``n_frames`` by repeating its last
frame, goes in one call. Stream mode: one clip (a video's whole frame sequence)
goes in chunks of ``stream_chunk`` frames with the states carried between calls;
every frame of a chunk gets the causal prediction at the end of that chunk, so
``stream_chunk: 1`` gives a prediction after every frame.
Frames arrive uint8 and become float32 in [0, 1] one batch or chunk at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from transforms.records import Clip, ClipPrediction

__all__ = ["MovinetModelHandler", "softmax"]

_log = logging.getLogger(__name__)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float logits [..., num_classes], as float32."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class _Movinet:
    """A loaded MoViNet: logits for base clips, or chunked streaming with states."""

    def __init__(self, loaded: Any, mode: str):
        self.mode = mode
        self._loaded = loaded
        if mode == "stream":
            self._call = loaded.signatures["call"]
            self._init_states = loaded.signatures["init_states"]
        else:
            self._serve = loaded.signatures["serving_default"]

    def base_logits(self, images: np.ndarray) -> np.ndarray:
        """images float32 [batch, frames, h, w, 3] in [0, 1] -> logits float32 [batch, classes]."""
        import tensorflow as tf

        out = self._serve(image=tf.constant(images))
        logits = out["logits"] if "logits" in out else next(iter(out.values()))
        return logits.numpy()

    def stream_logits(self, frames: np.ndarray, chunk: int) -> np.ndarray:
        """frames uint8 [t, h, w, 3] -> logits float32 [t, classes], causal.

        Row i holds the logits at the end of the chunk that contains frame i.
        """
        import tensorflow as tf

        t = frames.shape[0]
        states = self._init_states(input_shape=tf.constant([1, t, *frames.shape[1:]], dtype=tf.int32))
        rows = []
        for start in range(0, t, chunk):
            part = frames[start:start + chunk].astype(np.float32)[np.newaxis] / 255.0
            out = self._call(image=tf.constant(part), **states)
            logits = out.pop("logits").numpy()[0]
            states = out
            rows.append(np.repeat(logits[np.newaxis], part.shape[1], axis=0))
        return np.concatenate(rows, axis=0)


class MovinetModelHandler(ModelHandler[Clip, ClipPrediction, _Movinet]):
    """Runs MoViNet over ``Clip`` elements; wrap in KeyedModelHandler for keys.

    Args:
        handle: TF Hub URL, or local / gs:// SavedModel directory.
        mode: ``base`` or ``stream``.
        num_labels: size of the label vocabulary; checked against the model's
            output at load.
        imgz: input side, for the load-time check call.
        n_frames: base-mode clip length (shorter clips are padded).
        batch_size: clips per call in base mode.
        stream_chunk: frames per call in stream mode.
        tf_threads: TensorFlow intra-op threads per process; 0 lets TF decide.
    """

    def __init__(self, handle: str, *, mode: str, num_labels: int, imgz: int, n_frames: int,
                 batch_size: int, stream_chunk: int, tf_threads: int = 0):
        super().__init__()
        self._handle = handle
        self._mode = mode
        self._num_labels = num_labels
        self._imgz = imgz
        self._n_frames = n_frames
        self._batch_size = batch_size
        self._stream_chunk = stream_chunk
        self._tf_threads = tf_threads

    def load_model(self) -> _Movinet:
        import tensorflow as tf

        if self._tf_threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(self._tf_threads)
                tf.config.threading.set_inter_op_parallelism_threads(self._tf_threads)
            except RuntimeError:  # TF already initialised in this process
                _log.debug("TensorFlow threads already fixed in this process")
        import tensorflow_hub as hub

        try:
            # hub.load takes TF Hub URLs and local or gs:// SavedModel folders alike.
            model = _Movinet(hub.load(self._handle), self._mode)
        except KeyError as exc:
            raise ValueError(
                f"model {self._handle} has no {exc} signature; a {self._mode}-mode MoViNet "
                f"needs {'call and init_states' if self._mode == 'stream' else 'serving_default'}"
            ) from None
        except Exception as exc:
            raise ValueError(f"cannot load model {self._handle}: {type(exc).__name__}: {exc}") from exc
        probe = np.zeros((1, self._imgz, self._imgz, 3), dtype=np.uint8)
        if self._mode == "stream":
            width = model.stream_logits(probe, 1).shape[-1]
        else:
            width = model.base_logits(probe[np.newaxis].astype(np.float32)).shape[-1]
        if width != self._num_labels:
            raise ValueError(
                f"model {self._handle} outputs {width} classes but the labels list has "
                f"{self._num_labels}; pass the model's labels file with --set model.labels=PATH")
        return model

    def run_inference(self, batch: Sequence[Clip], model: _Movinet,
                      inference_args: dict[str, Any] | None = None) -> Iterable[ClipPrediction]:
        if self._mode == "stream":
            return [self._stream(clip, model) for clip in batch]
        return self._base(batch, model)

    def _base(self, batch: Sequence[Clip], model: _Movinet) -> list[ClipPrediction]:
        images = np.stack([_pad(c.frames, self._n_frames) for c in batch]).astype(np.float32) / 255.0
        probs = softmax(model.base_logits(images))
        out = []
        for clip, p in zip(batch, probs):
            owned = slice(clip.owned_start, clip.owned_stop)
            n = clip.owned_stop - clip.owned_start
            out.append(ClipPrediction(clip.frame_indices[owned], clip.timestamps_s[owned],
                                      np.repeat(p[np.newaxis], n, axis=0), p))
        return out

    def _stream(self, clip: Clip, model: _Movinet) -> ClipPrediction:
        probs = softmax(model.stream_logits(clip.frames, self._stream_chunk))
        owned = slice(clip.owned_start, clip.owned_stop)
        return ClipPrediction(clip.frame_indices[owned], clip.timestamps_s[owned], probs[owned], probs[-1])

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size if self._mode == "base" else 1}

    def get_metrics_namespace(self) -> str:
        return "videolabel"

    def get_num_bytes(self, batch: Sequence[Clip]) -> int:
        return sum(c.frames.nbytes for c in batch)


def _pad(frames: np.ndarray, n_frames: int) -> np.ndarray:
    """uint8 [t, h, w, 3] -> [n_frames, h, w, 3], repeating the last frame."""
    if frames.shape[0] >= n_frames:
        return frames
    pad = np.repeat(frames[-1:], n_frames - frames.shape[0], axis=0)
    return np.concatenate([frames, pad], axis=0)
