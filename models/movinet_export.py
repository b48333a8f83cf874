"""Exports MoViNet a0-a5 (base or stream) to a SavedModel with TF Hub's signatures.

Signatures match the TF Hub Kinetics-600 classifiers, so the same model handler
loads either:

* base: ``serving_default(image) -> {"logits"}``, image float32
  [batch, frames, height, width, 3] in [0, 1], logits float32 [batch, num_classes].
* stream: ``init_states(input_shape) -> states`` with input_shape int32 [5], and
  ``call(image, **states) -> {"logits", "frame_logits", "frame_features", **states}``
  with the same image layout; logits float32 [batch, num_classes] after the clip's
  last frame, and (beyond TF Hub's signature) frame_logits float32 [batch, frames,
  num_classes], the causal output after every frame, and frame_features float32
  [batch, frames, F], each frame's own backbone features (the head's projection,
  averaged over the picture), from the same single call; and ``head(features) ->
  {"logits"}``, features float32 [n, F] -> logits float32 [n, num_classes], the
  classifier head on any mean of frame features.

Per-frame logits cost nothing extra: the backbone already computes causal
per-frame features, and only the head's global average pool collapses time. Run
as a cumulative (causal) mean, which keeps the same state, it gives the pooled
features after every frame; the classifier head then runs on each. The mean of
``frame_features`` over a window of recent frames, through ``head``, is the label
of that stretch alone (``models.frame_window``).

Stream models use (2+1)D convolutions (fast on CPU) and are traced without XLA
(XLA jit was 6.8x slower on CPU here). Base models use 3D convolutions, as the
published checkpoints do. Weights are random unless a checkpoint is given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from models.labels import KINETICS_600, labels_beside, write_labels
from models.movinet_variants import MODEL_IDS, MODEL_MODES, native_imgz
from models.storage import local_copy

__all__ = [
    "build_movinet",
    "HeadParts",
    "causal_head_parts",
    "classifier_on",
    "export_movinet",
    "export_movinet_tflite",
    "head_call",
    "movinet_signatures",
    "save_movinet",
    "stream_call",
]

_log = logging.getLogger(__name__)


def build_movinet(model_id: str, mode: str, num_classes: int = 600, *, conv_type: str | None = None,
                  norm_momentum: float = 0.99, dropout_rate: float = 0.0):
    """Builds a tf_keras MoViNet classifier from tf-models-official.

    Args:
        model_id: a0-a5.
        mode: ``base`` or ``stream`` (causal, with external states).
        num_classes: width of the classification head.
        conv_type: override of the convolution type; default ``3d`` for base,
            ``2plus1d`` for stream.
        norm_momentum: batch-norm moving-average momentum (matters in training only).
        dropout_rate: dropout inside the classifier head (training only).

    Returns:
        A ``MovinetClassifier`` built for input [1, 1, 172, 172, 3]-like shapes
        with dynamic batch, frames, height and width.
    """
    import tf_keras
    from official.projects.movinet.modeling import movinet

    if model_id not in MODEL_IDS or mode not in MODEL_MODES:
        raise ValueError(f"unknown MoViNet variant {model_id}/{mode}")
    causal = mode == "stream"
    backbone = movinet.Movinet(
        model_id=model_id,
        causal=causal,
        conv_type=conv_type or ("2plus1d" if causal else "3d"),
        se_type="2plus3d" if causal else "3d",
        input_specs=tf_keras.layers.InputSpec(shape=[None, None, None, None, 3]),
        activation="simple_swish",
        gating_activation="sigmoid",
        use_positional_encoding=causal and model_id in ("a3", "a4", "a5"),
        use_sync_bn=False,
        norm_momentum=norm_momentum,
        use_external_states=causal,
    )
    return classifier_on(backbone, num_classes, dropout_rate=dropout_rate)


def classifier_on(backbone, num_classes: int, *, dropout_rate: float = 0.0):
    """A new ``MovinetClassifier`` (fresh head of ``num_classes``) sharing ``backbone``'s layers.

    The classifier outputs logits float32 [batch, num_classes], plus the new
    states when the backbone takes external states (stream mode).
    """
    import tf_keras
    from official.projects.movinet.modeling import movinet_model

    input_specs = tf_keras.layers.InputSpec(shape=[None, None, None, None, 3])
    model = movinet_model.MovinetClassifier(
        backbone,
        num_classes=num_classes,
        output_states=backbone.use_external_states,
        input_specs={"image": input_specs},
        activation="simple_swish",
        dropout_rate=dropout_rate,
    )
    model.build([1, 1, 1, 1, 3])
    return model


class HeadParts(NamedTuple):
    """A stream MovinetClassifier's parts, its head pool made causal (``causal_head_parts``)."""

    backbone: Any
    pool: Any  # the backbone head's global average pool, now causal
    classifier: Any  # the classifier head: float32 [n, 1, 1, 1, features] -> logits [n, classes]
    features: int  # F: channels of the head's projection, the width of ``frame_features``


def causal_head_parts(model) -> HeadParts:
    """The parts of a stream MovinetClassifier, its head pool made causal.

    With a causal pool the backbone's ``head`` endpoint is [batch, frames, 1, 1, F]:
    the mean of the features up to each frame, with the same state as before. The
    classifier head is 1x1x1 convolutions, so it applies to each frame alone.
    """
    from official.projects.movinet.modeling import movinet_layers

    (head,) = [layer for layer in model.backbone.layers if isinstance(layer, movinet_layers.Head)]
    head._pool._causal = True  # noqa: SLF001 - the pool has no public switch
    (classifier,) = [layer for layer in model.layers if isinstance(layer, movinet_layers.ClassifierHead)]
    return HeadParts(model.backbone, head._pool, classifier, head.get_config()["project_filters"])  # noqa: SLF001


@contextlib.contextmanager
def _pool_inputs(pool) -> Iterator[list]:
    """Collects each frame's own features while ``pool`` (the head's) runs in a traced call.

    Yields a list that gets, per call of the pool, float32 [batch, frames, C]: its input
    averaged over the picture, before the causal pool sums it over time; exact per
    frame, where differences of the pooled running sums would lose precision in long
    videos. The pool's own ``call`` is back in place on exit.
    """
    import tensorflow as tf

    seen: list = []
    own = pool.call

    def call(inputs, *args, **kwargs):
        shape = tf.shape(inputs)
        seen.append(tf.reshape(tf.reduce_mean(inputs, axis=[2, 3]), [shape[0], shape[1], inputs.shape[-1]]))
        return own(inputs, *args, **kwargs)

    pool.call = call
    try:
        yield seen
    finally:
        del pool.call


def export_movinet_tflite(path: str, *, model_id: str = "a0", imgz: int | None = None,
                          num_classes: int = 600, checkpoint: str | None = None,
                          labels: Sequence[str] | None = None, quantize: bool = False) -> str:
    """Converts a MoViNet stream model to LiteRT (``models.movinet_convert``); writes labels.txt beside it.

    The file has a ``frames_8`` and a ``frames_1`` signature: ``image`` float32
    [1, frames, imgz, imgz, 3] in [0, 1] plus the state tensors in, the new
    states and ``frame_logits`` [1, frames, num_classes] out. ``quantize`` stores
    the weights as int8 (dynamic range).

    Returns:
        ``path`` (local or gs://).
    """
    import tensorflow as tf
    from apache_beam.io.filesystems import FileSystems

    from models.movinet_convert import convert_model

    labels = _default_labels(labels, num_classes)
    model = build_movinet(model_id, "stream", num_classes)
    if checkpoint:
        tf.train.Checkpoint(model=model).restore(local_copy(checkpoint)).assert_existing_objects_matched()
    side = imgz or native_imgz(model_id)
    with tempfile.TemporaryDirectory(prefix="videolabel-tflite-") as folder:
        local = convert_model(model, os.path.join(folder, "model.tflite"), side, quantize=quantize)
        with open(local, "rb") as content, FileSystems.create(path) as handle:
            handle.write(content.read())
    write_labels(labels_beside(path), labels)
    _log.info("converted MoViNet %s stream (%dx%d, %d classes) to %s",
              model_id, side, side, num_classes, path)
    return path


def _default_labels(labels: Sequence[str] | None, num_classes: int) -> Sequence[str]:
    if labels is None:
        labels = KINETICS_600 if num_classes == 600 else [f"class_{i}" for i in range(num_classes)]
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels given for a model with {num_classes} classes")
    return labels


def stream_call(model, image_shape: Sequence[int | None]):
    """The stream ``call`` tf.function of a stream MovinetClassifier, for images of ``image_shape``.

    ``call({"image": float32 image_shape in [0, 1], **states})`` returns the new
    states, ``frame_logits`` float32 [batch, frames, C] (the causal output after
    every frame) and ``logits`` = the last frame's. ``image_shape`` is
    [batch, frames, height, width, 3], each None for any size; the states take the
    same batch and picture sizes (their shapes do not depend on frames).
    """
    import tensorflow as tf

    dynamic = None in image_shape
    state_shape = [None, None, None, None, 3] if dynamic else [image_shape[0], 1, *image_shape[2:]]
    # builds the layers; one frame, which the classifier takes whether its pool is causal yet or not
    probe = [1, 1, 8, 8, 3] if dynamic else state_shape
    model({**model.init_states(probe), "image": tf.zeros(probe)})
    state_specs = {
        name: tf.TensorSpec([None] * len(spec.shape) if dynamic else spec.shape, spec.dtype, name=name)
        for name, spec in model.initial_state_specs(state_shape).items()
    }
    image_spec = tf.TensorSpec(image_shape, tf.float32, name="image")
    backbone, pool, classifier, _ = causal_head_parts(model)

    @tf.function(input_signature=[{**state_specs, "image": image_spec}])
    def call(inputs):
        with _pool_inputs(pool) as seen:
            endpoints, new_states = backbone(inputs, training=False)
        pooled = endpoints["head"]  # [batch, frames, 1, 1, channels]: mean up to each frame
        batch, frames = tf.shape(pooled)[0], tf.shape(pooled)[1]
        flat = tf.reshape(pooled, [batch * frames, 1, 1, 1, pooled.shape[-1]])
        frame_logits = tf.reshape(classifier(flat, training=False), [batch, frames, -1])
        return {**new_states, "logits": frame_logits[:, -1], "frame_logits": frame_logits,
                "frame_features": seen[-1]}

    return call


def head_call(model, rows: int | None = None):
    """The ``head`` tf.function of a stream MovinetClassifier: features float32 [rows, F] (any mean of
    ``frame_features``; None: any number of rows) -> ``{"logits": float32 [rows, num_classes]}``."""
    import tensorflow as tf

    parts = causal_head_parts(model)

    @tf.function(input_signature=[tf.TensorSpec([rows, parts.features], tf.float32, name="features")])
    def head(features):
        flat = tf.reshape(features, [-1, 1, 1, 1, parts.features])
        return {"logits": parts.classifier(flat, training=False)}

    return head


def movinet_signatures(model, mode: str) -> dict:
    """The tf.functions a SavedModel of ``model`` serves, by signature name (see the module doc).

    Inputs have dynamic batch, frame and picture sizes. Benchmarks time these
    same functions without saving.
    """
    import tensorflow as tf

    image_spec = tf.TensorSpec([None, None, None, None, 3], tf.float32, name="image")
    if mode != "stream":
        @tf.function(input_signature=[image_spec])
        def serve(image):
            return {"logits": model({"image": image}, training=False)}

        return {"serving_default": serve}

    call = stream_call(model, [None, None, None, None, 3])

    @tf.function(input_signature=[tf.TensorSpec([5], tf.int32, name="input_shape")])
    def init_states(input_shape):
        return model.init_states(input_shape)

    return {"call": call, "init_states": init_states, "head": head_call(model)}


def export_movinet(output_dir: str, *, model_id: str = "a0", mode: str = "stream",
                   num_classes: int = 600, checkpoint: str | None = None,
                   labels: Sequence[str] | None = None, litert_imgz: int | None = None) -> str:
    """Builds, optionally restores, and saves a MoViNet classifier; writes labels.txt.

    Args:
        output_dir: SavedModel directory (local or gs://) to create.
        model_id, mode, num_classes: the variant, see ``build_movinet``.
        checkpoint: a tf.train.Checkpoint prefix whose ``model`` matches the variant.
        labels: class names in index order; default Kinetics-600 when
            ``num_classes`` is 600, else ``class_0`` ... ``class_{N-1}``.
        litert_imgz: stream mode: also convert the model to LiteRT for frames of this
            side, into the cache that ``videolabel run`` reads (``models.movinet_convert``).

    Returns:
        ``output_dir``.
    """
    import tensorflow as tf

    labels = _default_labels(labels, num_classes)
    model = build_movinet(model_id, mode, num_classes)
    if checkpoint:
        status = tf.train.Checkpoint(model=model).restore(local_copy(checkpoint))
        status.assert_existing_objects_matched()

    save_movinet(model, mode, output_dir, labels)
    if litert_imgz and mode == "stream":
        from models.movinet_convert import prime_litert

        prime_litert(model, output_dir, litert_imgz, model_id, num_classes)
    _log.info("exported MoViNet %s %s (%d classes) to %s", model_id, mode, num_classes, output_dir)
    return output_dir


def save_movinet(model, mode: str, output_dir: str, labels: Sequence[str]) -> None:
    """Saves a MovinetClassifier with ``movinet_signatures`` and its labels.txt inside.

    The variables are a checkpoint of ``model`` under the name ``model``, so
    ``tf.train.Checkpoint(model=...)`` restores from ``output_dir/variables/variables``.
    """
    import tensorflow as tf

    signatures = movinet_signatures(model, mode)
    module = tf.Module()
    module.model = model
    for name, fn in signatures.items():
        setattr(module, name, fn)
    tf.saved_model.save(module, output_dir, signatures=signatures)
    write_labels(labels_beside(output_dir.rstrip("/")), labels)
