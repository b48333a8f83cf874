"""The MoViNet graph, built and called: what the SavedModel exporter (``models.movinet_export``) and the
LiteRT converter (``models.movinet_convert``) both build on.

* ``build_movinet``: a MovinetClassifier of a variant and mode (random weights);
* ``classifier_on``: a new classifier head on a backbone;
* ``causal_head_parts``: a stream classifier's parts, its head pool made causal, so that the head
  gives frame features and causal per-frame logits (see ``models.movinet_export``'s module doc);
* ``stream_call`` and ``head_call``: the traced stream ``call`` and ``head`` functions.

Stream models use (2+1)D convolutions (fast on CPU) and are traced without XLA (XLA jit was 6.8x slower
on CPU here). Base models use 3D convolutions, as the published checkpoints do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from models.movinet_variants import MODEL_IDS, MODEL_MODES

__all__ = ["HeadParts", "base_embed_call", "build_movinet", "causal_head_parts", "classifier_head",
           "classifier_on", "head_call", "pooled_features", "stream_call"]


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


def pooled_features(classifier, images):
    """images float32 [batch, frames, h, w, 3] in [0, 1] -> the backbone's pooled features [batch, C].

    These are what the classifier head sees: the mean over the clip's frames of
    the last convolution's output.
    """
    import tensorflow as tf

    inputs = {"image": images}
    if classifier.backbone.use_external_states:
        inputs.update(classifier.init_states(tf.shape(images)))
    endpoints, _ = classifier.backbone(inputs, training=False)
    pooled = endpoints["head"]  # [batch, 1, 1, 1, C]
    return tf.reshape(pooled, [tf.shape(pooled)[0], pooled.shape[-1]])


def classifier_head(classifier):
    """The ClassifierHead layer of a MovinetClassifier: pooled features float32 [n, 1, 1, 1, F] -> logits
    float32 [n, classes]."""
    from official.projects.movinet.modeling import movinet_layers

    (head,) = [layer for layer in classifier.layers if isinstance(layer, movinet_layers.ClassifierHead)]
    return head


def base_embed_call(model):
    """The ``embed`` tf.function of a base MovinetClassifier: ``embed(image)`` with image float32
    [batch, frames, h, w, 3] in [0, 1] -> ``{"logits": float32 [batch, classes], "features": float32
    [batch, F]}``, the clip's pooled features (``pooled_features``) and the head's output on them, from
    one pass of the backbone."""
    import tensorflow as tf

    head = classifier_head(model)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.float32, name="image")])
    def embed(image):
        features = pooled_features(model, image)
        return {"logits": head(tf.reshape(features, [-1, 1, 1, 1, features.shape[-1]]), training=False),
                "features": features}

    return embed
