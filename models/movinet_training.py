"""Transfer learning on MoViNet: a new classifier head on a frozen backbone, or the whole network.

Two methods, as in the MoViNet tutorials:

* ``head``: the backbone is frozen. The Beam pipeline computes each clip's pooled
  backbone features once (float32 [C]; C is 480 for a0), and Keras fits only the
  classifier head (1x1x1 convolutions C -> 2048 -> classes) on them.
* ``finetune``: every weight trains, on the decoded clips (uint8 [frames, side, side, 3]).

Either way the result is an ordinary ``MovinetClassifier`` of the configured
variant and mode, saved by ``save_movinet``, so ``videolabel run --model`` labels
with it like any exported MoViNet.

Pretrained weights come from a tf.train.Checkpoint prefix of the MoViNet release
(e.g. ``movinet_a0_base/ckpt-1``, saved as ``tf.train.Checkpoint(model=...)``) or
from a SavedModel written by ``export-movinet`` or ``train``; only the backbone
is taken, whatever the source's class count.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from apache_beam.io.filesystems import FileSystems

from models.movinet import limit_tf_threads
from models.movinet_graph import build_movinet, classifier_head, classifier_on, pooled_features
from models.storage import local_copy

__all__ = [
    "FINETUNE_MIN_STEPS",
    "FINETUNE_NORM_MOMENTUM",
    "MovinetFeatures",
    "finetune_model",
    "head_model",
    "pretrained_backbone",
    "weights_prefix",
]

# Batch-norm momentum while fine-tuning. With tf-models-official's 0.99 the moving
# statistics lag the weights over a short fit: on the synthetic motion set, held-out
# accuracy stayed at chance (0.25) for 10 epochs while training accuracy reached 1.0;
# with 0.9 it reached 0.95-1.0 within 8-18 epochs (a0 stream, 160 clips of 8x64x64).
FINETUNE_NORM_MOMENTUM = 0.9

# Optimiser steps a finetune runs at least (``train.min_steps`` null). On 14 clips a class of a
# motion set the demo was not tuned to, colour-augmented fits from random weights sat at chance
# on valid for 200-300 steps, then climbed; at 600 steps the test accuracy of 3 seeds was 0.67-0.92,
# and their best epochs came late (one at step 584 of 600). 1000 steps: docs/MODELS.md.
FINETUNE_MIN_STEPS = 1000

# Object-graph path from a tf.train.Checkpoint(model=MovinetClassifier) root to the head's last
# convolution, whose kernel is [..., classes]; the same in the release checkpoints and in SavedModel
# variables. Below it, one ``_conv`` (base) or two (stream: the causal wrapper's) lead to ``kernel``.
_CLASSIFIER = ("model", "layer_with_weights-1", "_classifier")


def weights_prefix(source: str) -> str:
    """The checkpoint prefix of ``source``: a SavedModel folder's variables (or those of a ``train``
    output's ``saved_model``), else ``source`` itself."""
    for folder in (source, FileSystems.join(source, "saved_model")):
        if FileSystems.exists(FileSystems.join(folder, "saved_model.pb")):
            return FileSystems.join(folder, "variables", "variables")
    return source


def _source_classes(prefix: str) -> int:
    """How many classes the checkpointed MovinetClassifier's head has."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(prefix)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    node = graph.nodes[0]
    for name in _CLASSIFIER:
        children = {child.local_name: child.node_id for child in node.children}
        if name not in children:
            raise ValueError(f"{prefix} is not a checkpoint of a MoViNet classifier (no {name!r})")
        node = graph.nodes[children[name]]
    while "kernel" not in (children := {child.local_name: child.node_id for child in node.children}):
        if "_conv" not in children:
            raise ValueError(f"{prefix} is not a checkpoint of a MoViNet classifier (no classifier kernel)")
        node = graph.nodes[children["_conv"]]
    node = graph.nodes[children["kernel"]]
    return int(reader.get_variable_to_shape_map()[node.attributes[0].checkpoint_key][-1])


def pretrained_backbone(model_id: str, mode: str, source: str | None, *, norm_momentum: float = 0.99):
    """The MoViNet backbone of the variant with the weights of ``source`` (None: random weights).

    Raises:
        ValueError: ``source`` is not a MoViNet checkpoint of this variant and mode.
    """
    import tensorflow as tf

    if source is None:
        return build_movinet(model_id, mode, 1, norm_momentum=norm_momentum).backbone
    try:
        # TF reads checkpoints with its own GCS client: read a local copy made through FileSystems.
        prefix = weights_prefix(local_copy(source))
        model = build_movinet(model_id, mode, _source_classes(prefix), norm_momentum=norm_momentum)
        status = tf.train.Checkpoint(model=model).read(prefix).expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, OSError, tf.errors.OpError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"weights {source} do not fit MoViNet {model_id} {mode}: {first[:200]}") from None
    return model.backbone


def head_model(classifier):
    """tf_keras model: pooled features float32 [batch, C] -> probabilities [batch, classes].

    It shares the classifier head's layer with ``classifier``, so fitting it
    trains that head in place and leaves the backbone untouched.
    """
    import tf_keras as keras

    head = classifier_head(classifier)
    channels = int(head.weights[0].shape[-2])  # first 1x1x1 kernel: [..., C, head_filters]
    features = keras.Input([channels], name="features")
    x = keras.layers.Reshape([1, 1, 1, channels])(features)
    probs = keras.layers.Softmax()(head(x))
    return keras.Model(features, probs)


def finetune_model(classifier):
    """tf_keras model: clips uint8 [batch, frames, h, w, 3] -> probabilities [batch, classes].

    Wraps ``classifier`` (stream models start from zero states), so fitting it
    trains every weight of ``classifier``.
    """
    import tensorflow as tf
    import tf_keras as keras

    class ClipClassifier(keras.Model):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, clips, training=False):
            images = tf.cast(clips, tf.float32) / 255.0
            inputs = {"image": images}
            if self.inner.backbone.use_external_states:
                inputs.update(self.inner.init_states(tf.shape(images)))
                logits, _ = self.inner(inputs, training=training)
            else:
                logits = self.inner(inputs, training=training)
            return tf.nn.softmax(logits)

    return ClipClassifier(classifier)


@dataclasses.dataclass(frozen=True)
class MovinetFeatures:
    """The examples of ``train.method: head``: each clip's pooled backbone features float32 [C].

    ``load()`` gives an ``ExampleModel`` (``models.video_model``): clips uint8
    [b, n_frames, h, w, 3] -> float32 [b, C].

    Attributes:
        model_id, mode: the MoViNet variant.
        weights: pretrained weights (see ``pretrained_backbone``).
        tf_threads: TensorFlow threads per process; 0 lets TF decide.
    """

    model_id: str
    mode: str
    weights: str
    tf_threads: int = 0

    def load(self):
        import tensorflow as tf

        limit_tf_threads(self.tf_threads)
        classifier = classifier_on(pretrained_backbone(self.model_id, self.mode, self.weights), 1)
        features = tf.function(lambda images: pooled_features(classifier, images))
        return lambda clips: features(tf.constant(clips.astype(np.float32) / 255.0)).numpy()
