"""MoViNet classifiers for the video handler: a TF Hub URL, a local or gs:// SavedModel, or a .tflite file.

``Movinet(...).load()`` gives, by ``mode``:

* ``base``: a ``MovinetClips`` (``models.video_model.ClipModel``): clips uint8
  [b, n_frames, h, w, 3] -> probabilities float32 [b, C], with 3D convolutions
  over each whole clip;
* ``stream``: a ``MovinetStream`` (``StreamModel``): frames go chunk after chunk
  with the state carried, so the result does not depend on the chunk size. Models
  from ``export-movinet`` give every frame its own causal output; TF Hub's stream
  models return only the output after a chunk's last frame, which every frame of
  the chunk then gets (``stream_chunk: 1`` gives one per frame there). A
  SavedModel also steps a batch of videos that start together, uint8
  [b, t, h, w, 3] -> [b, t, C] (GPU workers); a .tflite model one video.

Frames become float32 in [0, 1] here, one batch or chunk at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import numpy as np

from models.scores import softmax
from models.storage import local_copy
from models.video_model import ClipScores

__all__ = ["Movinet", "MovinetClips", "MovinetStream", "limit_tf_threads"]

_log = logging.getLogger(__name__)


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


class MovinetClips:
    """A loaded base-mode MoViNet (``serving_default``): a ``ClipModel``; with ``embed``, its ``embed``
    signature (videolabel's exports), which also gives each clip's pooled features."""

    def __init__(self, loaded: Any, embed: bool = False):
        self._loaded = loaded
        self._serve = loaded.signatures["embed" if embed else "serving_default"]
        self._embed = embed

    def outputs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """images float32 [b, frames, h, w, 3] in [0, 1] -> (logits float32 [b, classes], features float32
        [b, F] with ``embed``, else None)."""
        import tensorflow as tf

        out = self._serve(image=tf.constant(images))
        logits = out["logits"] if "logits" in out else next(iter(out.values()))
        return logits.numpy(), (out["features"].numpy() if self._embed else None)

    def __call__(self, clips: np.ndarray) -> ClipScores:
        """uint8 [b, n_frames, h, w, 3] -> probabilities float32 [b, classes] (and features)."""
        logits, features = self.outputs(clips.astype(np.float32) / 255.0)
        return ClipScores(softmax(logits), features=features)


class _SavedModelSteps:
    """A stream-mode SavedModel's ``init_states`` and ``call`` signatures, as logits, for a batch of videos.

    The videos of a batch start together: MoViNet's buffers (``*_stream_buffer``,
    ``*_pool_buffer``) have a leading batch dimension, but its frame counts
    (``*_frame_count``, int32 [1]) are one for the whole batch, so every video of
    a batch must be at the same frame, which they are when they start together
    and advance chunk by chunk. Batch-norm runs in inference mode, so the videos
    of a batch do not affect one another.
    """

    batches = True  # several videos per call (LiteRT models take one)

    def __init__(self, loaded: Any):
        self._loaded = loaded
        self._call = loaded.signatures["call"]
        self._init_states = loaded.signatures["init_states"]
        self.per_frame = "frame_logits" in self._call.structured_outputs
        self._head = loaded.signatures.get("head")
        self.features = self._head is not None and "frame_features" in self._call.structured_outputs

    def init_states(self, imgz: int, batch: int = 1) -> dict:
        """The states before the first frame of ``batch`` videos of ``imgz`` x ``imgz`` frames."""
        import tensorflow as tf

        return self._init_states(input_shape=tf.constant([batch, 1, imgz, imgz, 3], dtype=tf.int32))

    def step(self, frames: np.ndarray, states: dict) -> tuple[np.ndarray, dict]:
        """frames uint8 [b, t, h, w, 3] -> (logits float32 [b, t, classes], new states).

        One video's frames uint8 [t, h, w, 3] give logits [t, classes]. Without
        ``per_frame``, row i holds the output after the last frame, for every i.
        """
        logits, _, states = self.step_with_features(frames, states)
        return logits, states

    def step_with_features(self, frames: np.ndarray,
                           states: dict) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """As ``step``, plus each frame's features float32 [b, t, F] ([t, F] for one video; None
        without ``features``)."""
        import tensorflow as tf

        one = frames.ndim == 4
        videos = frames[np.newaxis] if one else frames
        out = dict(self._call(image=tf.constant(videos.astype(np.float32) / 255.0), **states))
        last = out.pop("logits").numpy()
        frame_logits = out.pop("frame_logits", None)
        features = out.pop("frame_features", None)
        if self.per_frame:
            logits = frame_logits.numpy()
        else:
            logits = np.repeat(last[:, np.newaxis], videos.shape[1], axis=1)
        if features is not None:
            features = features.numpy()[0] if one else features.numpy()
        return (logits[0] if one else logits), features, out

    def head(self, features: np.ndarray) -> np.ndarray:
        """features float32 [n, F] (means of frame features) -> logits float32 [n, classes]."""
        import tensorflow as tf

        return self._head(features=tf.constant(features, tf.float32))["logits"].numpy()


class MovinetStream:
    """A loaded stream-mode MoViNet (SavedModel or TFLite): a ``StreamModel``.

    Row i of a step is the causal output after frame i when the model gives one
    per frame (``per_frame``: videolabel's exports, TFLite); TF Hub's models give
    only the output after the chunk's last frame, which every row then holds.
    ``features``: the model also gives each frame's own features, and ``head``
    turns a mean of them (over a window of recent frames) into probabilities.

    SavedModels also take a batch of videos that start together (``batches``):
    ``init_states(imgz, batch=b)``, then ``step`` on uint8 [b, t, h, w, 3]. TFLite
    models take one video per call.
    """

    def __init__(self, steps: Any):
        self._steps = steps
        self.per_frame = steps.per_frame
        self.features = steps.features
        self.batches = getattr(steps, "batches", False)

    def init_states(self, imgz: int, batch: int | None = None) -> Any:
        """The states before the first frame: of one video, or of ``batch`` videos starting together."""
        if batch is None:
            return self._steps.init_states(imgz)
        self._check_batches()
        return self._steps.init_states(imgz, batch)

    def step(self, frames: np.ndarray, states: Any) -> tuple[np.ndarray, Any]:
        """frames uint8 [t, h, w, 3] -> (probabilities float32 [t, classes], new states).

        With a batch's states (``init_states(imgz, batch=b)``): frames uint8
        [b, t, h, w, 3] -> probabilities float32 [b, t, classes], row [j, i] the
        causal output of video j after its frame i.
        """
        if frames.ndim == 5:
            self._check_batches()
        logits, states = self._steps.step(frames, states)
        return softmax(logits), states

    def step_with_features(self, frames: np.ndarray, states: Any) -> tuple[np.ndarray, np.ndarray, Any]:
        """As ``step``, plus each frame's own features float32 [t, F] (or [b, t, F] for a batch),
        for ``head`` on means over windows of frames. Only for models whose ``features`` is true."""
        if frames.ndim == 5:
            self._check_batches()
        logits, features, states = self._steps.step_with_features(frames, states)
        return softmax(logits), features, states

    def head(self, features: np.ndarray) -> np.ndarray:
        """features float32 [n, F] (a mean of frame features each) -> probabilities float32 [n, classes]."""
        return softmax(self._steps.head(features))

    def _check_batches(self) -> None:
        if not self.batches:
            raise ValueError(f"{type(self._steps).__name__} runs one video per call; batches of videos "
                             "(stream mode with model.accelerator) need the TensorFlow runtime "
                             "(model.runtime: tf, a SavedModel)")


@dataclasses.dataclass(frozen=True)
class Movinet:
    """A MoViNet classifier to load on the workers.

    Attributes:
        handle: TF Hub URL, local or gs:// SavedModel folder, or a stream-mode ``.tflite`` file.
        mode: ``base`` or ``stream``.
        num_labels: size of the label vocabulary; checked against the model at load.
        imgz: input side, for the load-time check call.
        tf_threads: model threads per process (TensorFlow intra-op, or LiteRT); 0: TF decides,
            LiteRT takes every core.
        embed: the model must also give features (``output.write_embeddings``): per frame in
            stream mode (``features``), per clip in base mode (the ``embed`` signature).
    """

    handle: str
    mode: str
    num_labels: int
    imgz: int
    tf_threads: int = 0
    embed: bool = False

    def load(self) -> MovinetClips | MovinetStream:
        """The loaded model, its output width checked against ``num_labels``.

        Raises:
            ValueError: the handle cannot be loaded, lacks the mode's signatures, or
                outputs another number of classes (one line, naming the fix).
        """
        try:
            # A remote (gs://) model is copied once per machine through Beam's FileSystems;
            # hub.load then reads the local copy, a local folder or a TF Hub URL. A .tflite
            # model runs on LiteRT alone: TensorFlow is never imported for it.
            path = local_copy(self.handle)
            if self.handle.endswith(".tflite"):
                model = self._load_tflite(path)
            else:
                model = self._load_saved_model(path)
        except KeyError as exc:
            wanted = "call and init_states" if self.mode == "stream" else "serving_default"
            if self.embed and self.mode != "stream":
                wanted += " and embed (for output.write_embeddings: export it again with export-movinet)"
            raise ValueError(f"model {self.handle} has no {exc} signature; a {self.mode}-mode "
                             f"MoViNet needs {wanted}") from None
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"cannot load model {self.handle}: {type(exc).__name__}: {exc}") from exc
        width = self._output_width(model)
        if width != self.num_labels:
            raise ValueError(
                f"model {self.handle} outputs {width} classes but the labels list has "
                f"{self.num_labels}; pass the model's labels file with --set model.labels=PATH")
        if self.embed and isinstance(model, MovinetStream) and not model.features:
            raise ValueError(f"model {self.handle} gives no frame features, so no embeddings: export it "
                             "again with videolabel export-movinet, or leave output.write_embeddings off")
        if isinstance(model, MovinetClips):
            self._warn_on_cpu()
        return model

    def _load_saved_model(self, path: str) -> MovinetClips | MovinetStream:
        import tensorflow_hub as hub

        limit_tf_threads(self.tf_threads)
        if self.mode == "stream":
            return MovinetStream(_SavedModelSteps(hub.load(path)))
        return MovinetClips(hub.load(path), self.embed)

    def _load_tflite(self, path: str) -> MovinetStream:
        from models.movinet_tflite import TFLiteMovinet

        if self.mode != "stream":
            raise ValueError("TFLite MoViNet models run in stream mode; set model.model_mode=stream")
        with open(path, "rb") as handle:
            return MovinetStream(TFLiteMovinet(handle.read(), threads=self.tf_threads or os.cpu_count()))

    def _output_width(self, model: MovinetClips | MovinetStream) -> int:
        if isinstance(model, MovinetClips):
            return model.outputs(np.zeros((1, 1, self.imgz, self.imgz, 3), np.float32))[0].shape[-1]
        probs, _ = model.step(np.zeros((1, self.imgz, self.imgz, 3), np.uint8), model.init_states(self.imgz))
        return probs.shape[-1]

    @staticmethod
    def _warn_on_cpu() -> None:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            _log.warning("base-mode MoViNet (3D convolutions) is running on CPU: about 80x slower than "
                         "stream mode (8.8 s against 0.11 s for a 50-frame 172x172 A0 clip on two cores, "
                         "benchmarks/model_speed.py); use model_mode: stream on CPU, or GPU workers")
