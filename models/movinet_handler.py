"""Beam ModelHandlers for MoViNet classifiers (TF Hub URL or local / gs:// SavedModel).

Both take one ``FrameSource`` (a probed video) per element, decode it lazily and
return one ``VideoResult``.

``MovinetClipHandler`` (base mode): the video's clips of ``n_frames``, each padded
by repeating its last frame, go ``batch_size`` clips per call.

``MovinetStreamHandler`` (stream mode): the frames go in chunks of
``stream_chunk`` with the model state carried from chunk to chunk, so memory is
bounded by one chunk and the result does not depend on the chunk size. With models from
``export-movinet`` every frame gets its own causal prediction; TF Hub's stream
models return only the output after a chunk's last frame, which every frame of
the chunk then gets (``stream_chunk: 1`` gives one per frame there).

Frames arrive uint8 and become float32 in [0, 1] one batch or chunk at a time.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from models.predictions import ClipsPerVideo, clip_predictions, pad_clip
from models.scores import top_k_arrays
from models.storage import local_copy
from transforms.decoder_process import frames_of
from transforms.decoding import DecodeReport, SampledFrame
from transforms.records import Clip, ClipPrediction, FrameSource, VideoResult

__all__ = ["MovinetClipHandler", "MovinetStreamHandler", "limit_tf_threads", "softmax", "stream_predict"]

_log = logging.getLogger(__name__)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float logits [..., num_classes], as float32."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def limit_tf_threads(threads: int) -> None:
    """Caps TensorFlow's intra- and inter-op threads in this process (0: TF decides), and lets GPU
    memory grow as needed, so that the several SDK processes of a GPU worker share its GPU.

    Only possible before TF's first op in the process; later calls keep the first setting.
    """
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # TF already initialised in this process
            _log.debug("GPU memory growth already fixed in this process")
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TF already initialised in this process
            _log.debug("TensorFlow threads already fixed in this process")


class _Movinet:
    """A loaded MoViNet: logits for base clips, or one streaming step with states."""

    def __init__(self, loaded: Any, mode: str):
        self._loaded = loaded
        if mode == "stream":
            self._call = loaded.signatures["call"]
            self._init_states = loaded.signatures["init_states"]
            self.per_frame = "frame_logits" in self._call.structured_outputs
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
        """frames uint8 [t, h, w, 3] -> (logits float32 [t, classes], new states).

        Row i is the causal output after frame i when the model exports
        ``frame_logits`` (videolabel's export); TF Hub's models give only the
        output after the last frame, which every row then holds.
        """
        import tensorflow as tf

        image = tf.constant(frames.astype(np.float32)[np.newaxis] / 255.0)
        out = dict(self._call(image=image, **states))
        last = out.pop("logits").numpy()[0]
        if "frame_logits" in out:
            return out.pop("frame_logits").numpy()[0], out
        return np.repeat(last[np.newaxis], len(frames), axis=0), out


def stream_predict(model: _Movinet, frames: Iterable[SampledFrame], *, chunk: int, imgz: int, k: int,
                   keep_probs: bool = False) -> ClipPrediction:
    """Runs frames through a stream model in chunks, carrying its state.

    Per frame only the top ``k`` classes are kept (and the full vector with
    ``keep_probs``), so memory grows by a few bytes per frame, plus one chunk.

    Returns:
        A ClipPrediction over all frames: row i is the causal output after frame i
        (after the end of frame i's chunk for models without per-frame logits);
        ``clip_probs`` is the output after the last frame, None without frames.
    """
    states = model.init_states(imgz)
    indices, times, top_index, top_score, kept = [], [], [], [], []
    probs = None
    frames = iter(frames)
    while batch := list(itertools.islice(frames, chunk)):
        logits, states = model.step(np.stack([f.image for f in batch]), states)
        probs = softmax(logits)
        index, score = top_k_arrays(probs, k)
        indices.append(np.array([f.index for f in batch], dtype=np.int64))
        times.append(np.array([f.time_s for f in batch], dtype=np.float64))
        top_index.append(index)
        top_score.append(score)
        if keep_probs:
            kept.append(probs)
    if probs is None:
        return ClipPrediction(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, k), np.int32),
                              np.zeros((0, k), np.float32), None)
    return ClipPrediction(np.concatenate(indices), np.concatenate(times), np.concatenate(top_index),
                          np.concatenate(top_score), probs[-1],
                          np.concatenate(kept) if keep_probs else None)


class _MovinetHandler(ModelHandler):
    """Loading, the label-count check and settings shared by both modes."""

    _mode = ""

    def __init__(self, handle: str, *, num_labels: int, imgz: int, top_k: int, keep_probs: bool,
                 tf_threads: int = 0):
        super().__init__()
        self._handle = handle
        self._num_labels = num_labels
        self._imgz = imgz
        self._k = min(top_k, num_labels)
        self._keep_probs = keep_probs
        self._tf_threads = tf_threads

    def load_model(self) -> _Movinet:
        import tensorflow_hub as hub

        limit_tf_threads(self._tf_threads)
        try:
            # A remote (gs://) model is copied once per machine through Beam's FileSystems;
            # hub.load then reads the local copy, a local folder or a TF Hub URL.
            path = local_copy(self._handle)
            if self._handle.endswith(".tflite"):
                model = self._load_tflite(path)
            else:
                model = _Movinet(hub.load(path), self._mode)
        except KeyError as exc:
            wanted = "call and init_states" if self._mode == "stream" else "serving_default"
            raise ValueError(f"model {self._handle} has no {exc} signature; a {self._mode}-mode "
                             f"MoViNet needs {wanted}") from None
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"cannot load model {self._handle}: {type(exc).__name__}: {exc}") from exc
        width = self._output_width(model)
        if width != self._num_labels:
            raise ValueError(
                f"model {self._handle} outputs {width} classes but the labels list has "
                f"{self._num_labels}; pass the model's labels file with --set model.labels=PATH")
        return model

    def _load_tflite(self, path: str):
        from models.movinet_tflite import TFLiteMovinet

        if self._mode != "stream":
            raise ValueError("TFLite MoViNet models run in stream mode; set model.model_mode=stream")
        with open(path, "rb") as handle:
            return TFLiteMovinet(handle.read(), threads=self._tf_threads or None)

    def _output_width(self, model: _Movinet) -> int:
        raise NotImplementedError

    def get_metrics_namespace(self) -> str:
        return "videolabel"


class MovinetClipHandler(ClipsPerVideo, _MovinetHandler):
    """Base mode: ``FrameSource`` -> ``VideoResult`` of ``ClipPrediction``s, clips batched per call.

    Args:
        handle: TF Hub URL, or local / gs:// SavedModel directory.
        num_labels: size of the label vocabulary; checked against the model at load.
        imgz: input side, for the load-time check call.
        top_k: classes kept per frame.
        keep_probs: also keep every frame's full probability vector.
        n_frames: clip length (shorter clips are padded with their last frame).
        stride: frames between clip starts.
        batch_size: clips per call.
        tf_threads: TensorFlow intra-op threads per process; 0 lets TF decide.
    """

    _mode = "base"

    def __init__(self, handle: str, *, num_labels: int, imgz: int, top_k: int, keep_probs: bool,
                 n_frames: int, stride: int, batch_size: int, tf_threads: int = 0):
        super().__init__(handle, num_labels=num_labels, imgz=imgz, top_k=top_k, keep_probs=keep_probs,
                         tf_threads=tf_threads)
        self._n_frames = n_frames
        self._stride = stride
        self._batch_size = batch_size

    def load_model(self) -> _Movinet:
        import tensorflow as tf

        model = super().load_model()
        if not tf.config.list_physical_devices("GPU"):
            _log.warning("base-mode MoViNet (3D convolutions) is running on CPU: about 80x slower than "
                         "stream mode (8.8 s against 0.11 s for a 50-frame 172x172 A0 clip on two cores, "
                         "benchmarks/model_speed.py); use model_mode: stream on CPU, or GPU workers")
        return model

    def _output_width(self, model: _Movinet) -> int:
        return model.base_logits(np.zeros((1, 1, self._imgz, self._imgz, 3), np.float32)).shape[-1]

    def _run_clips(self, clips: list[Clip], model: _Movinet) -> list[ClipPrediction]:
        images = np.stack([pad_clip(c.frames, self._n_frames) for c in clips]).astype(np.float32) / 255.0
        return clip_predictions(clips, softmax(model.base_logits(images)), self._k, self._keep_probs)


class MovinetStreamHandler(_MovinetHandler):
    """Stream mode: ``FrameSource`` -> ``VideoResult`` with one ``ClipPrediction`` (clip 0) over all frames.

    Args:
        handle, num_labels, imgz, top_k, keep_probs, tf_threads: as for ``MovinetClipHandler``.
        stream_chunk: frames per model call; the state is carried between calls.
    """

    _mode = "stream"

    def __init__(self, handle: str, *, num_labels: int, imgz: int, top_k: int, keep_probs: bool,
                 stream_chunk: int, tf_threads: int = 0):
        super().__init__(handle, num_labels=num_labels, imgz=imgz, top_k=top_k, keep_probs=keep_probs,
                         tf_threads=tf_threads)
        self._chunk = stream_chunk

    def _output_width(self, model: _Movinet) -> int:
        logits, _ = model.step(np.zeros((1, self._imgz, self._imgz, 3), np.uint8),
                               model.init_states(self._imgz))
        return logits.shape[-1]

    def run_inference(self, batch: Sequence[FrameSource], model: _Movinet,
                      inference_args: dict[str, Any] | None = None) -> Iterator[VideoResult]:
        for source in batch:
            report = DecodeReport()
            frames = frames_of(source, report)
            prediction = stream_predict(model, frames, chunk=self._chunk, imgz=source.spec.imgz, k=self._k,
                                        keep_probs=self._keep_probs)
            yield VideoResult(report.info(source.ref), [(0, prediction)])

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": 1}
