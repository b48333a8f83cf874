"""Beam ModelHandlers for MoViNet classifiers (TF Hub URL or local / gs:// SavedModel).

``MovinetClipHandler`` (base mode): a batch of clips, each padded to ``n_frames``
by repeating its last frame, goes in one call.

``MovinetStreamHandler`` (stream mode): each element is a ``FrameSource``; the
handler decodes it and feeds the frames in chunks of ``stream_chunk`` with the
model state carried from chunk to chunk, so memory is bounded by one chunk and
the result does not depend on the chunk size. Every frame of a chunk gets the
causal prediction at the end of that chunk (``stream_chunk: 1`` gives one after
every frame).

Frames arrive uint8 and become float32 in [0, 1] one batch or chunk at a time.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from transforms.decoding import DecodeReport, SampledFrame, sample_frames
from transforms.records import Clip, ClipPrediction, FrameSource, VideoInfo

__all__ = ["MovinetClipHandler", "MovinetStreamHandler", "softmax", "stream_probs"]

_log = logging.getLogger(__name__)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float logits [..., num_classes], as float32."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class _Movinet:
    """A loaded MoViNet: logits for base clips, or one streaming step with states."""

    def __init__(self, loaded: Any, mode: str):
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

    def init_states(self, imgz: int) -> dict:
        """Zero states for one video of ``imgz`` x ``imgz`` frames."""
        import tensorflow as tf

        return self._init_states(input_shape=tf.constant([1, 1, imgz, imgz, 3], dtype=tf.int32))

    def step(self, frames: np.ndarray, states: dict) -> tuple[np.ndarray, dict]:
        """frames uint8 [t, h, w, 3] -> (logits float32 [classes] after the last frame, new states)."""
        import tensorflow as tf

        image = tf.constant(frames.astype(np.float32)[np.newaxis] / 255.0)
        out = dict(self._call(image=image, **states))
        return out.pop("logits").numpy()[0], out


def stream_probs(model: _Movinet, frames: Iterable[SampledFrame], chunk: int,
                 imgz: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs frames through a stream model in chunks, carrying its state.

    Returns:
        frame_indices int64 [n], timestamps_s float64 [n], and probs float32
        [n, classes] where row i is the causal output at the end of frame i's chunk.
    """
    states = model.init_states(imgz)
    indices, times, probs = [], [], []
    frames = iter(frames)
    while batch := list(itertools.islice(frames, chunk)):
        logits, states = model.step(np.stack([f.image for f in batch]), states)
        p = softmax(logits)
        indices.extend(f.index for f in batch)
        times.extend(f.time_s for f in batch)
        probs.extend([p] * len(batch))
    width = probs[0].shape[-1] if probs else 0
    return (np.array(indices, dtype=np.int64), np.array(times, dtype=np.float64),
            np.array(probs, dtype=np.float32).reshape(len(indices), width))


class _MovinetHandler(ModelHandler):
    """Loading, the label-count check and settings shared by both modes."""

    _mode = ""

    def __init__(self, handle: str, *, num_labels: int, imgz: int, tf_threads: int = 0):
        super().__init__()
        self._handle = handle
        self._num_labels = num_labels
        self._imgz = imgz
        self._tf_threads = tf_threads

    def load_model(self) -> _Movinet:
        import tensorflow as tf
        import tensorflow_hub as hub

        if self._tf_threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(self._tf_threads)
                tf.config.threading.set_inter_op_parallelism_threads(self._tf_threads)
            except RuntimeError:  # TF already initialised in this process
                _log.debug("TensorFlow threads already fixed in this process")
        try:
            # hub.load takes TF Hub URLs and local or gs:// SavedModel folders alike.
            model = _Movinet(hub.load(self._handle), self._mode)
        except KeyError as exc:
            wanted = "call and init_states" if self._mode == "stream" else "serving_default"
            raise ValueError(f"model {self._handle} has no {exc} signature; a {self._mode}-mode "
                             f"MoViNet needs {wanted}") from None
        except Exception as exc:
            raise ValueError(f"cannot load model {self._handle}: {type(exc).__name__}: {exc}") from exc
        width = self._output_width(model)
        if width != self._num_labels:
            raise ValueError(
                f"model {self._handle} outputs {width} classes but the labels list has "
                f"{self._num_labels}; pass the model's labels file with --set model.labels=PATH")
        return model

    def _output_width(self, model: _Movinet) -> int:
        raise NotImplementedError

    def get_metrics_namespace(self) -> str:
        return "videolabel"


class MovinetClipHandler(_MovinetHandler):
    """Base mode: ``Clip`` -> ``ClipPrediction``, clips batched per call.

    Args:
        handle: TF Hub URL, or local / gs:// SavedModel directory.
        num_labels: size of the label vocabulary; checked against the model at load.
        imgz: input side, for the load-time check call.
        n_frames: clip length (shorter clips are padded with their last frame).
        batch_size: clips per call.
        tf_threads: TensorFlow intra-op threads per process; 0 lets TF decide.
    """

    _mode = "base"

    def __init__(self, handle: str, *, num_labels: int, imgz: int, n_frames: int, batch_size: int,
                 tf_threads: int = 0):
        super().__init__(handle, num_labels=num_labels, imgz=imgz, tf_threads=tf_threads)
        self._n_frames = n_frames
        self._batch_size = batch_size

    def _output_width(self, model: _Movinet) -> int:
        return model.base_logits(np.zeros((1, 1, self._imgz, self._imgz, 3), np.float32)).shape[-1]

    def run_inference(self, batch: Sequence[Clip], model: _Movinet,
                      inference_args: dict[str, Any] | None = None) -> list[ClipPrediction]:
        images = np.stack([_pad(c.frames, self._n_frames) for c in batch]).astype(np.float32) / 255.0
        out = []
        for clip, p in zip(batch, softmax(model.base_logits(images))):
            owned = slice(clip.owned_start, clip.owned_stop)
            n = clip.owned_stop - clip.owned_start
            out.append(ClipPrediction(clip.frame_indices[owned], clip.timestamps_s[owned],
                                      np.repeat(p[np.newaxis], n, axis=0), p))
        return out

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def get_num_bytes(self, batch: Sequence[Clip]) -> int:
        return sum(c.frames.nbytes for c in batch)


class MovinetStreamHandler(_MovinetHandler):
    """Stream mode: ``FrameSource`` -> ``ClipPrediction`` with the decode outcome in ``info``.

    Args:
        handle, num_labels, imgz, tf_threads: as for ``MovinetClipHandler``.
        stream_chunk: frames per model call; the state is carried between calls.
    """

    _mode = "stream"

    def __init__(self, handle: str, *, num_labels: int, imgz: int, stream_chunk: int,
                 tf_threads: int = 0):
        super().__init__(handle, num_labels=num_labels, imgz=imgz, tf_threads=tf_threads)
        self._chunk = stream_chunk

    def _output_width(self, model: _Movinet) -> int:
        logits, _ = model.step(np.zeros((1, self._imgz, self._imgz, 3), np.uint8),
                               model.init_states(self._imgz))
        return logits.shape[-1]

    def run_inference(self, batch: Sequence[FrameSource], model: _Movinet,
                      inference_args: dict[str, Any] | None = None) -> Iterator[ClipPrediction]:
        for source in batch:
            report = DecodeReport()
            frames = sample_frames(source.ref.uri, source.spec, report)
            indices, times, probs = stream_probs(model, frames, self._chunk, source.spec.imgz)
            info = VideoInfo(source.ref, report.meta, report.frames_decoded, report.frames_sampled,
                             report.error)
            yield ClipPrediction(indices, times, probs, probs[-1] if len(probs) else None, info)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": 1}


def _pad(frames: np.ndarray, n_frames: int) -> np.ndarray:
    """uint8 [t, h, w, 3] -> [n_frames, h, w, 3], repeating the last frame."""
    if frames.shape[0] >= n_frames:
        return frames
    pad = np.repeat(frames[-1:], n_frames - frames.shape[0], axis=0)
    return np.concatenate([frames, pad], axis=0)
