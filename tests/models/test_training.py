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


@pytest.mark.slow  # fits a model
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
    saved = tf.saved_model.load(str(tmp_path / "saved_model"))
    probs = saved.signatures["serving_default"](features=tf.constant(data["test"].x[:5]))["probs"].numpy()
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # embed: the same probabilities, and the embedding layer's output from the same pass
    both = saved.signatures["embed"](features=tf.constant(data["test"].x[:5]))
    np.testing.assert_allclose(both["probs"].numpy(), probs, atol=1e-6)
    assert both["embedding"].shape == (5, 128)


def test_precise_batch_norm_sets_the_statistics_of_the_fitted_weights():
    import tf_keras as keras

    from models.training import precise_batch_norm

    keras.utils.set_random_seed(0)
    inputs = keras.Input([6])
    hidden = keras.layers.Dense(4)(inputs)
    norm = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Model(inputs, keras.layers.Dense(2)(norm(hidden)))
    for seed, mean in ((1, 3.0), (2, -5.0)):  # the second call: the traced pass sees the new examples
        x = np.random.default_rng(seed).normal(mean, 2.0, size=(90, 6)).astype(np.float32)
        assert precise_batch_norm(model, x, batch_size=32, seed=seed) == 1
        seen = keras.Model(inputs, hidden)(x).numpy()  # what the batch-norm layer sees
        order = np.random.default_rng(seed).permutation(90)
        batches = [seen[order[start:start + 32]] for start in (0, 32, 64)]  # the last one of 26
        # the average over the 3 batches of their statistics, where momentum 0.99 would have kept ~97%
        # of the initial zeros and ones (and the first call's statistics, in the second)
        np.testing.assert_allclose(norm.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0),
                                   atol=1e-4)
        np.testing.assert_allclose(norm.moving_variance.numpy(), np.mean([b.var(0) for b in batches], 0),
                                   rtol=0.05)
    assert norm.momentum == 0.99  # restored
    assert precise_batch_norm(keras.Sequential([keras.Input([6]), keras.layers.Dense(2)]), x, 32) == 0


@pytest.mark.slow  # fits a model
def test_training_on_examples_that_say_nothing_waits_its_steps_then_warns_at_chance(tmp_path, caplog, capsys):
    from models.training import MIN_PATIENCE_STEPS

    data = {split: _sequences(8, seed) for split, seed in (("train", 3), ("valid", 4), ("test", 5))}
    # Every example the same: whatever the starting weights, the model gives one answer to all.
    # (Shuffled labels were not enough: a start could score 0.42 on 24 test examples by luck.)
    data = {split: SplitData(np.zeros_like(d.x), d.y) for split, d in data.items()}
    with caplog.at_level("WARNING", logger="models.training"):
        results = fit_classifier(build_pose_lstm(len(LABELS)), data, LABELS,
                                 FitSettings(num_epochs=12, patience=2, batch_size=24), str(tmp_path))
    # 24 train examples in batches of 24: one step an epoch, so patience counts 100 steps, not 2 epochs
    assert MIN_PATIENCE_STEPS > 12 and results["epochs_run"] == 12
    warnings = [r.getMessage() for r in caplog.records if "training ended at chance" in r.getMessage()]
    assert len(warnings) == 1 and "too few clips (24 train examples for 3 classes)" in warnings[0]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train: epoch")]
    assert len(lines) == 12 and lines[-1].startswith("train: epoch 12/12") and "ETA --" in lines[-1]


def test_a_small_set_runs_its_min_steps_past_num_epochs_and_finetune_asks_for_them(tmp_path, capsys):
    import tf_keras as keras

    from beam_pipeline.config import load_config
    from beam_pipeline.training.train_job import _fit_settings
    from models.movinet_training import FINETUNE_MIN_STEPS

    rng = np.random.default_rng(2)
    y = np.arange(24) % 2
    data = {"train": SplitData(rng.normal(size=(16, 3)).astype(np.float32), y[:16]),
            "valid": SplitData(rng.normal(size=(8, 3)).astype(np.float32), y[16:])}
    model = keras.Sequential([keras.Input([3]), keras.layers.Dense(2, activation="softmax")])
    # 16 examples in batches of 8: two steps a pass, so 30 steps take 15 passes, not the 3 asked
    settings = FitSettings(num_epochs=3, patience=1, batch_size=8, min_steps=30)
    results = fit_classifier(model, data, ["a", "b"], settings, str(tmp_path), save=lambda *_: None)
    assert results["epochs_run"] == 15
    assert capsys.readouterr().err.splitlines()[-1].startswith("train: epoch 15/15")

    finetune = load_config(None, ["model.kind=movinet", "train.method=finetune"])
    assert _fit_settings(finetune).min_steps == FINETUNE_MIN_STEPS
    assert _fit_settings(load_config(None, ["model.kind=movinet", "train.method=finetune",
                                            "train.min_steps=7"])).min_steps == 7
    assert _fit_settings(load_config(None, ["model.kind=movinet"])).min_steps == 0  # head
