"""The pose LSTM and Keras training on synthetic keypoint sequences."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from models.lstm import POSE_FEATURES, build_pose_lstm
from models.training import FitSettings, SplitData, fit_classifier

LABELS = ["walk_left", "walk_right", "stand"]


def _sequences(n_per_class: int, seed: int) -> SplitData:
    """Keypoint windows [n, 9, 51]: a noisy skeleton drifting left, right, or standing still.

    Any one frame looks the same for every class; only the motion over the window differs.
    """
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label, dx in enumerate((-0.04, 0.04, 0.0)):
        for _ in range(n_per_class):
            body = rng.uniform(0.3, 0.7, size=(17, 2))
            frames = []
            for t in range(9):
                joints = body + [0.0, dx * t] + rng.normal(0, 0.01, size=(17, 2))
                scores = rng.uniform(0.4, 0.9, size=(17, 1))
                frames.append(np.concatenate([joints, scores], axis=1).reshape(-1))
            xs.append(frames)
            ys.append(label)
    order = rng.permutation(len(ys))
    return SplitData(np.asarray(xs, np.float32)[order], np.asarray(ys, np.int64)[order])


def test_pose_lstm_shapes_and_layers():
    model = build_pose_lstm(2)
    assert model.input_shape == (None, 9, POSE_FEATURES) and model.output_shape == (None, 2)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("LSTM") == 3 and kinds.count("BatchNormalization") == 3
    assert model.get_layer("dense").units == 32
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_pose_lstm(1)


def test_training_learns_motion_and_writes_every_artefact(tmp_path):
    data = {"train": _sequences(40, 0), "valid": _sequences(10, 1), "test": _sequences(15, 2)}
    results = fit_classifier(build_pose_lstm(len(LABELS)), data, LABELS,
                             FitSettings(num_epochs=40, patience=8, batch_size=16), str(tmp_path),
                             config={"features": "synthetic keypoints"})
    # chance is 1/3; the classes differ only by the sign of the drift, which an LSTM reads
    # off the first and last frames, so anything under 0.8 means training is broken
    assert results["test_accuracy"] >= 0.8, results["metrics"]
    assert results["rows"] == {"train": 120, "valid": 30, "test": 45}
    assert 1 <= results["best_epoch"] <= results["epochs_run"] <= 40
    assert set(results["metrics"]) == {"train", "valid", "test"}
    assert np.sum(results["confusion_matrix"]["matrix"]) == 45
    assert json.loads((tmp_path / "results.json").read_text())["test_accuracy"] == results["test_accuracy"]
    for name in ("loss_curve.png", "confusion_matrix.png", "labels.txt"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    served = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    probs = served(features=tf.constant(data["test"].x[:5]))["probs"].numpy()
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
