"""``models.clip_augment`` and ``fit_classifier``'s ``augment``: new looks for train clips, same motion."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from beam_pipeline.demo.synthetic import motion_frames
from models.clip_augment import colour_jitter
from models.training import FitSettings, SplitData, fit_classifier


def test_colour_jitter_gives_each_clip_one_new_look_for_all_its_frames():
    rng = np.random.default_rng(0)
    clips = np.stack([motion_frames("moving_right", num_frames=6, width=32, height=24, rng=rng)
                      for _ in range(8)])
    tf.random.set_seed(3)
    out = colour_jitter(tf.constant(clips)).numpy()
    assert out.shape == clips.shape and out.dtype == np.uint8
    looks = set()
    for before, after in zip(clips, out):
        # One map of colours for the whole clip: each colour of the clip, in any frame, becomes
        # the same colour in every frame, so what moves and how is as it was.
        colours, where = np.unique(before.reshape(-1, 3), axis=0, return_inverse=True)
        mapped = after.reshape(-1, 3)
        first = {}
        for index, colour in zip(where.ravel(), mapped):
            assert tuple(first.setdefault(index, tuple(colour))) == tuple(colour)
        looks.add(tuple(sorted(first.values())))
        assert not np.array_equal(before, after)
    assert len(looks) == len(clips)  # each clip drew its own look


def test_fit_augments_the_train_batches_only(tmp_path):
    """An augmentation that blanks every train batch leaves nothing to learn from, while the
    evaluation still sees the real examples: a set that trains to 1.00 stays at chance."""
    import tf_keras as keras

    rng = np.random.default_rng(1)
    y = np.arange(64) % 2
    x = (rng.normal(size=(64, 4)) + 3 * y[:, np.newaxis]).astype(np.float32)
    data = {"train": SplitData(x[:48], y[:48]), "valid": SplitData(x[48:], y[48:])}
    settings = FitSettings(num_epochs=30, patience=30, batch_size=8, learning_rate=0.01)

    def model():  # zero weights: a model that never saw a real example predicts one class
        return keras.Sequential([keras.Input([4]), keras.layers.Dense(2, activation="softmax",
                                                                      kernel_initializer="zeros")])

    plain = fit_classifier(model(), data, ["a", "b"], settings, str(tmp_path / "plain"), save=lambda *_: None)
    blank = fit_classifier(model(), data, ["a", "b"], settings, str(tmp_path / "blank"), save=lambda *_: None,
                           augment=tf.zeros_like)
    assert plain["metrics"]["valid"]["accuracy"] == 1.0 and max(plain["history"]["accuracy"]) >= 0.9
    assert max(blank["history"]["accuracy"]) <= 0.7 and blank["metrics"]["valid"]["accuracy"] == 0.5
