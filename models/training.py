"""Fitting a classifier on extracted features: Keras fit, early stopping, evaluation, artefacts.

``fit_classifier`` trains on the ``train`` split, stops early on ``valid`` loss
(keeping the best weights), evaluates every split, and writes into the output
folder: ``saved_model/`` (by default ``serving_default``: features -> ``probs``),
``labels.txt``, ``results.json``, ``loss_curve.png`` and ``confusion_matrix.png``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveFloat, PositiveInt

from models.console import StatusLine, duration
from models.labels import write_labels
from models.plots import confusion_matrix, plot_confusion, plot_loss_curve

__all__ = ["MIN_PATIENCE_STEPS", "FitSettings", "SplitData", "fit_classifier", "precise_batch_norm",
           "save_features_model"]

#: Early stopping waits at least this many optimiser steps after the best epoch.
MIN_PATIENCE_STEPS = 100

_log = logging.getLogger(__name__)


class FitSettings(BaseModel):
    """Optimiser and stopping settings (names as in the MoViNet tooling's JSON configs).

    Frozen and validated (pydantic): a bool, a string or a value out of range is refused.

    Attributes:
        num_epochs: most passes over the train split, unless ``min_steps`` needs more.
        min_steps: at least this many optimiser steps: a small set (a few steps a pass) runs
            more passes than ``num_epochs`` to reach them, and early stopping waits for them.
        learning_rate: Adam's step size.
        batch_size: examples per step.
        patience: epochs without a better valid loss before stopping, and at least
            ``MIN_PATIENCE_STEPS`` optimiser steps, so that a small set (a few steps an epoch)
            is not given up on after a few dozen steps.
        seed: seeds Python, NumPy and TensorFlow.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    num_epochs: PositiveInt = 100
    min_steps: NonNegativeInt = 0
    learning_rate: PositiveFloat = 1e-3
    batch_size: PositiveInt = 32
    patience: PositiveInt = 10
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class SplitData:
    """One split's examples: features float32 [n, ...] and class indices int64 [n]."""

    x: np.ndarray
    y: np.ndarray


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def save_features_model(model, path: str) -> None:
    """Saves ``model`` with ``serving_default(features) -> {"probs"}``, features float32 [batch, ...];
    a model with an ``embedding`` layer (``models.lstm.EMBEDDING_LAYER``) also with ``embed(features) ->
    {"probs", "embedding"}``, embedding float32 [batch, E] that layer's output, from the same pass."""
    import tensorflow as tf
    import tf_keras as keras

    from models.lstm import EMBEDDING_LAYER

    serving_shape = [None, *model.input_shape[1:]]
    spec = tf.TensorSpec(serving_shape, tf.float32, name="features")

    @tf.function(input_signature=[spec])
    def serve(features):
        return {"probs": model(features, training=False)}

    signatures = {"serving_default": serve}
    if EMBEDDING_LAYER in {layer.name for layer in model.layers}:
        both = keras.Model(model.inputs, [model.output, model.get_layer(EMBEDDING_LAYER).output])

        @tf.function(input_signature=[spec])
        def embed(features):
            probs, embedding = both(features, training=False)
            return {"probs": probs, "embedding": embedding}

        signatures["embed"] = embed
    tf.saved_model.save(model, path, signatures=signatures)


def _batch_norms(model) -> list:
    import tf_keras as keras

    return [layer for layer in model.submodules if isinstance(layer, keras.layers.BatchNormalization)]


# Per model: the momentum its batch norms read while their statistics are recomputed, and the
# traced training-mode forward pass. Traced once per model and input shape: an eager MoViNet pass
# is op by op in Python, and was most of each epoch of a small set (2.9 s against 0.3 s traced,
# for 56 clips of 8x64x64 against 1.6 s for the epoch's 4 steps).
_PRECISE_PASSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _precise_pass(model):
    """``(momentum, forward)`` for ``model``: a float32 variable and ``forward(batch)``, a traced
    training-mode call of ``model`` (which it references weakly, so the cache does not keep it)."""
    import tensorflow as tf

    if model not in _PRECISE_PASSES:
        ref = weakref.ref(model)
        momentum = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        _PRECISE_PASSES[model] = (momentum, tf.function(lambda batch: ref()(batch, training=True),
                                                        reduce_retracing=True))
    return _PRECISE_PASSES[model]


def precise_batch_norm(model, x: np.ndarray, batch_size: int, seed: int = 0) -> int:
    """Sets every batch-norm layer's moving mean and variance to their average over the batches of ``x``.

    Forward passes in training mode, no weight update ("precise BN"): batch i is
    averaged in with momentum i / (i + 1), so the statistics are those of the
    fitted weights over the whole set, where the moving averages of training
    trail weights that changed under them (a short fit: inference then predicts
    a constant while training-mode accuracy climbs).

    Args:
        model: a tf_keras model; one without batch norm is left as it is.
        x: the training examples, [n, ...] as the model takes them.
        batch_size: examples per forward pass.
        seed: orders the examples.

    Returns:
        The number of batch-norm layers updated.
    """
    layers = _batch_norms(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    momentum, forward = _precise_pass(model)
    order = np.random.default_rng(seed).permutation(len(x))
    try:
        for layer in layers:  # a variable: the traced pass reads the momentum of each batch
            layer.momentum = momentum
        for i, start in enumerate(range(0, len(x), batch_size)):
            momentum.assign(i / (i + 1))
            forward(x[order[start:start + batch_size]])
    finally:
        for layer, saved in zip(layers, momenta):
            layer.momentum = saved
    return len(layers)


class _EpochLine:
    """``train: epoch 3/40, train loss 0.812 acc 0.71, valid loss 0.903 acc 0.67, best epoch 3, 1m05s,
    ETA 13m``: one line per epoch, redrawn on a terminal (``models.console``)."""

    def __init__(self, epochs: int):
        self._epochs, self._start, self._out = epochs, time.monotonic(), StatusLine()

    def show(self, epoch: int, logs: dict[str, float], best: int, final: bool = False) -> None:
        elapsed = time.monotonic() - self._start
        eta = "--" if final else duration(elapsed / epoch * (self._epochs - epoch))
        self._out.show(f"train: epoch {epoch}/{self._epochs}, train loss {logs['loss']:.3f} "
                       f"acc {logs['accuracy']:.2f}, valid loss {logs['val_loss']:.3f} "
                       f"acc {logs['val_accuracy']:.2f}, best epoch {best}, {duration(elapsed)}, ETA {eta}",
                       final)


def _train_batches(train: SplitData, settings: FitSettings, augment: Callable | None):
    """The train split as a tf.data pipeline: shuffled anew each pass, batched, ``augment``ed."""
    import tensorflow as tf

    batches = (tf.data.Dataset.from_tensor_slices((train.x, train.y))
               .shuffle(len(train.y), seed=settings.seed, reshuffle_each_iteration=True)
               .batch(settings.batch_size))
    if augment is not None:
        batches = batches.map(lambda x, y: (augment(x), y))
    return batches.prefetch(1)


def _fit(model, train: SplitData, valid: SplitData, settings: FitSettings,
         augment: Callable | None = None) -> dict[str, list[float]]:
    """Fits ``model`` epoch by epoch and leaves it with its best epoch's weights (by valid loss).

    ``augment`` (batch of train examples -> the same shape) changes every batch as it is
    drawn; the batch-norm statistics and every evaluation see the examples as they are.

    After each epoch the batch-norm statistics are recomputed (``precise_batch_norm``), so the
    valid loss that early stopping reads is that of the model as it will run. Runs at least
    ``min_steps`` steps (more epochs than ``num_epochs`` if need be); past them, stops after
    ``patience`` epochs and ``MIN_PATIENCE_STEPS`` steps without a better valid loss.

    Returns:
        Per epoch: ``loss`` and ``accuracy`` (training mode, during the epoch), ``val_loss`` and
        ``val_accuracy`` (inference mode, after it) and ``epoch_s``.
    """
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": [],
                                       "epoch_s": []}
    steps_per_epoch = -(-len(train.y) // settings.batch_size)
    epochs = max(settings.num_epochs, -(-settings.min_steps // steps_per_epoch))
    best_loss, best_epoch, best_weights = np.inf, 0, None
    line = _EpochLine(epochs)
    batches = _train_batches(train, settings, augment)
    for epoch in range(1, epochs + 1):
        t0 = time.monotonic()
        logs = model.fit(batches, epochs=1, verbose=0).history
        precise_batch_norm(model, train.x, settings.batch_size, seed=settings.seed + epoch)
        val_loss, val_accuracy = model.evaluate(valid.x, valid.y, batch_size=settings.batch_size, verbose=0)
        now = {"loss": logs["loss"][0], "accuracy": logs["accuracy"][0], "val_loss": val_loss,
               "val_accuracy": val_accuracy, "epoch_s": time.monotonic() - t0}
        for key, value in now.items():
            history[key].append(float(value))
        if val_loss < best_loss:
            best_loss, best_epoch, best_weights = val_loss, epoch, model.get_weights()
        waited = epoch - best_epoch
        patient = waited >= settings.patience and waited * steps_per_epoch >= MIN_PATIENCE_STEPS
        done = epoch == epochs or (patient and epoch * steps_per_epoch >= settings.min_steps)
        line.show(epoch, now, best_epoch, final=done)
        if done:
            break
    model.set_weights(best_weights)
    return history


def _warn_at_chance(split: str, accuracy: float, truth: np.ndarray, train_examples: int,
                    classes: int) -> None:
    """One warning line when the fitted model scores no better than always guessing the commonest class."""
    chance = np.bincount(truth, minlength=classes).max() / len(truth)
    if accuracy <= chance + 0.05:
        _log.warning("training ended at chance: %s accuracy %.2f against %.2f for always the commonest "
                     "class; likely too few clips (%d train examples for %d classes) or batch-norm "
                     "statistics that do not fit the weights; try more videos per class, more steps "
                     "(train.min_steps, train.num_epochs), or train.method: head on a pretrained "
                     "checkpoint",
                     split, accuracy, chance, train_examples, classes)


def fit_classifier(model, data: Mapping[str, SplitData], labels: Sequence[str], settings: FitSettings,
                   output_dir: str, config: Mapping[str, Any] | None = None,
                   save: Callable[[Any, str], None] = save_features_model,
                   augment: Callable | None = None) -> dict[str, Any]:
    """Trains ``model`` (tf_keras, softmax output) and writes the artefacts; returns results.json.

    Args:
        model: an uncompiled tf_keras model whose input matches the features.
        data: ``train`` and ``valid`` splits (required) and ``test`` (optional).
        labels: class names in index order.
        settings: optimiser and stopping settings.
        output_dir: folder to create.
        config: what produced the features, recorded in results.json.
        save: writes the fitted model to ``output_dir/saved_model`` (called with
            the model and that path).
        augment: changes each batch of train examples as it is drawn (a tf function, e.g.
            ``models.clip_augment.colour_jitter``); None trains on them as they are.
    """
    import tf_keras as keras

    for split in ("train", "valid"):
        if split not in data or not len(data[split].y):
            raise ValueError(f"training needs examples in the {split!r} split")
    os.makedirs(output_dir, exist_ok=True)
    keras.utils.set_random_seed(settings.seed)
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = _now()
    history = _fit(model, data["train"], data["valid"], settings, augment)
    fit_s = sum(history.pop("epoch_s"))
    val_loss = history["val_loss"]
    best_epoch = int(np.argmin(val_loss)) + 1

    metrics = {}
    for split, d in data.items():
        if len(d.y):
            loss, accuracy = model.evaluate(d.x, d.y, verbose=0)
            metrics[split] = {"loss": float(loss), "accuracy": float(accuracy)}
    scored = "test" if "test" in metrics else "valid"
    predicted = model.predict(data[scored].x, verbose=0).argmax(axis=1)
    matrix = confusion_matrix(data[scored].y, predicted, len(labels))
    _warn_at_chance(scored, metrics[scored]["accuracy"], data[scored].y, len(data["train"].y), len(labels))

    save(model, os.path.join(output_dir, "saved_model"))
    write_labels(os.path.join(output_dir, "labels.txt"), labels)
    plot_loss_curve(history, os.path.join(output_dir, "loss_curve.png"), best_epoch)
    plot_confusion(matrix, labels, os.path.join(output_dir, "confusion_matrix.png"),
                   f"{scored} split, accuracy {metrics[scored]['accuracy']:.2f}")
    results = {
        "test_accuracy": metrics.get("test", {}).get("accuracy"),
        "config": {"fit": settings.model_dump(), **(config or {})},
        "labels": list(labels),
        "rows": {split: int(len(d.y)) for split, d in data.items()},
        "fit_start": started,
        "fit_end": _now(),
        "fit_duration_s": round(fit_s, 3),
        "epochs_run": len(val_loss),
        "best_epoch": best_epoch,
        "metrics": metrics,
        "confusion_matrix": {"split": scored, "matrix": matrix.tolist()},
        "parameters": int(model.count_params()),
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
    }
    with open(os.path.join(output_dir, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    return results
