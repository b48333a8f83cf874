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
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt

from models.labels import write_labels
from models.plots import confusion_matrix, plot_confusion, plot_loss_curve

__all__ = ["FitSettings", "SplitData", "fit_classifier", "save_features_model"]


class FitSettings(BaseModel):
    """Optimiser and stopping settings (names as in the MoViNet tooling's JSON configs).

    Frozen and validated (pydantic): a bool, a string or a value out of range is refused.

    Attributes:
        num_epochs: most passes over the train split.
        learning_rate: Adam's step size.
        batch_size: examples per step.
        patience: epochs without a better valid loss before stopping.
        seed: seeds Python, NumPy and TensorFlow.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    num_epochs: PositiveInt = 100
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
    """Saves ``model`` with ``serving_default(features) -> {"probs"}``, features float32 [batch, ...]."""
    import tensorflow as tf

    serving_shape = [None, *model.input_shape[1:]]

    @tf.function(input_signature=[tf.TensorSpec(serving_shape, tf.float32, name="features")])
    def serve(features):
        return {"probs": model(features, training=False)}

    tf.saved_model.save(model, path, signatures={"serving_default": serve})


def fit_classifier(model, data: Mapping[str, SplitData], labels: Sequence[str], settings: FitSettings,
                   output_dir: str, config: Mapping[str, Any] | None = None,
                   save: Callable[[Any, str], None] = save_features_model) -> dict[str, Any]:
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
    """
    import tf_keras as keras

    for split in ("train", "valid"):
        if split not in data or not len(data[split].y):
            raise ValueError(f"training needs examples in the {split!r} split")
    os.makedirs(output_dir, exist_ok=True)
    keras.utils.set_random_seed(settings.seed)
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings.patience,
                                         restore_best_weights=True)
    started, t0 = _now(), time.monotonic()
    history = model.fit(data["train"].x, data["train"].y, epochs=settings.num_epochs,
                        batch_size=settings.batch_size, validation_data=(data["valid"].x, data["valid"].y),
                        callbacks=[stop], verbose=0).history
    duration = time.monotonic() - t0
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
        "fit_duration_s": round(duration, 3),
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
