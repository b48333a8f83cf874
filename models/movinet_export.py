"""Exports MoViNet a0-a5 (base or stream) to a SavedModel with TF Hub's signatures.

Signatures match the TF Hub Kinetics-600 classifiers, so the same model handler
loads either:

* base: ``serving_default(image) -> {"logits"}``, image float32
  [batch, frames, height, width, 3] in [0, 1], logits float32 [batch, num_classes];
  and (beyond TF Hub's) ``embed(image) -> {"logits", "features"}``, features float32
  [batch, F] each clip's pooled features (the head's projection averaged over the clip),
  for ``output.write_embeddings``.
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

import logging
import os
import tempfile
from collections.abc import Sequence

from models.labels import KINETICS_600, labels_beside, write_labels
from models.movinet_graph import base_embed_call, build_movinet, head_call, stream_call
from models.movinet_variants import native_imgz
from models.storage import local_copy
from models.weights_note import write_note

__all__ = ["export_movinet", "export_movinet_tflite", "movinet_signatures", "save_movinet"]

_log = logging.getLogger(__name__)


def export_movinet_tflite(path: str, *, model_id: str = "a0", imgz: int | None = None,
                          num_classes: int = 600, checkpoint: str | None = None,
                          labels: Sequence[str] | None = None, quantize: bool = False) -> str:
    """Converts a MoViNet stream model to LiteRT (``models.movinet_convert``); writes labels.txt beside it,
    and weights.json (random without ``checkpoint``: ``models.weights_note``).

    The file has three signatures (``models.movinet_convert``): ``frames_8`` and ``frames_1``,
    ``image`` float32 [1, frames, imgz, imgz, 3] in [0, 1] plus the state tensors in, the new
    states, ``frame_logits`` [1, frames, num_classes] and ``frame_features`` out; and ``head``,
    frame features -> logits. ``quantize`` stores the weights as int8 (dynamic range).

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
    write_note(path, random=not checkpoint, checkpoint=checkpoint)
    _log.info("converted MoViNet %s stream (%dx%d, %d classes) to %s",
              model_id, side, side, num_classes, path)
    return path


def _default_labels(labels: Sequence[str] | None, num_classes: int) -> Sequence[str]:
    if labels is None:
        labels = KINETICS_600 if num_classes == 600 else [f"class_{i}" for i in range(num_classes)]
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels given for a model with {num_classes} classes")
    return labels


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

        return {"serving_default": serve, "embed": base_embed_call(model)}

    call = stream_call(model, [None, None, None, None, 3])

    @tf.function(input_signature=[tf.TensorSpec([5], tf.int32, name="input_shape")])
    def init_states(input_shape):
        return model.init_states(input_shape)

    return {"call": call, "init_states": init_states, "head": head_call(model)}


def export_movinet(output_dir: str, *, model_id: str = "a0", mode: str = "stream",
                   num_classes: int = 600, checkpoint: str | None = None,
                   labels: Sequence[str] | None = None, litert_imgz: int | None = None) -> str:
    """Builds, optionally restores, and saves a MoViNet classifier; writes labels.txt, and weights.json
    saying whether the weights are random (no ``checkpoint``: ``models.weights_note``).

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
    write_note(output_dir, random=not checkpoint, checkpoint=checkpoint)
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
