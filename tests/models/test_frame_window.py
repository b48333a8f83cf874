"""Windowed stream frame labels: the head on the mean of the last seconds of frame features, exact
across chunks, runtimes and batches of videos."""

from __future__ import annotations

import numpy as np
import pytest

from models.frame_window import FrameWindow
from models.movinet import Movinet
from tests.conftest import random_frames
from transforms.streaming import stream_prediction, stream_predictions, windowed


def _direct_means(features: np.ndarray, times: np.ndarray, seconds: float) -> np.ndarray:
    """For each frame, the mean of the features of the frames in (t - seconds, t], by brute force."""
    rows = []
    for i, t in enumerate(times):
        held = [j for j in range(i + 1) if times[j] > t - seconds + 1e-6] or [i]
        rows.append(features[held].mean(axis=0))
    return np.array(rows)


@pytest.mark.parametrize("chunk", [1, 3, 8, 50])
def test_window_means_are_the_direct_means_whatever_the_chunks(chunk):
    rng = np.random.default_rng(chunk)
    features = rng.normal(size=(50, 6)).astype(np.float32)
    # irregular spacing, repeated timestamps and a gap longer than the window
    steps = rng.choice([0.0, 0.1, 0.25, 0.4], size=50)
    steps[30] = 2.0
    times = np.cumsum(steps)
    window, got = FrameWindow(0.7), []
    for start in range(0, 50, chunk):
        got.append(window.means(features[start:start + chunk], times[start:start + chunk]))
    got = np.concatenate(got)
    np.testing.assert_allclose(got, _direct_means(features, times, 0.7), rtol=1e-6, atol=1e-6)
    assert np.allclose(got[30], features[30])  # after the gap, a frame's window holds itself alone


def test_a_window_holds_exactly_its_span_of_regular_frames():
    features = np.arange(10, dtype=np.float32)[:, None]
    means = FrameWindow(1.0).means(features, np.arange(10) * 0.25)  # 4 fps: a 1 s window holds 4 frames
    assert means[:, 0].tolist() == [0, 0.5, 1, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]
    with pytest.raises(ValueError, match="positive number of seconds"):
        FrameWindow(0)


def _centred_log(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities less their mean per row: the logits up to a constant, comparable to 1e-4."""
    logs = np.log(probs)
    return logs - logs.mean(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def tf_stream(a0_stream):
    return Movinet(a0_stream, "stream", 600, 64, tf_threads=1).load()


def test_window_labels_are_the_head_on_the_mean_of_the_window_features(tf_stream):
    frames = random_frames(21, side=64, seed=5)  # 0.2 s apart: a 0.6 s window holds 3 frames
    probs, features, _ = tf_stream.step_with_features(np.stack([f.image for f in frames]),
                                                       tf_stream.init_states(64))
    assert features.shape == (21, 480) and features.dtype == np.float32
    # the features are exact: their running mean through the head is the cumulative output
    running = np.cumsum(features, axis=0) / np.arange(1, 22)[:, None]
    np.testing.assert_allclose(_centred_log(tf_stream.head(running)), _centred_log(probs), atol=1e-4)

    want = tf_stream.head(np.stack([features[max(0, i - 2):i + 1].mean(axis=0) for i in range(21)]))
    cumulative = stream_prediction(tf_stream, frames, chunk=21, imgz=64, k=5, keep_probs=True)
    for chunk in (21, 5, 1):
        got = stream_prediction(tf_stream, frames, chunk=chunk, imgz=64, k=5, keep_probs=True, window_s=0.6)
        np.testing.assert_allclose(_centred_log(got.frame_probs), _centred_log(want), atol=1e-4)
        # the video's prediction is the output after its last frame, over the whole video
        np.testing.assert_allclose(got.clip_probs, cumulative.clip_probs, rtol=1e-4, atol=1e-7)
    assert np.abs(_centred_log(want[-1]) - _centred_log(cumulative.frame_probs[-1])).max() > 1e-3


def test_litert_windows_give_the_savedmodel_labels(tf_stream, a0_litert):
    litert = Movinet(a0_litert, "stream", 600, 64, tf_threads=1).load()
    assert litert.features
    frames = random_frames(19, side=64, seed=6)
    want = stream_prediction(tf_stream, frames, chunk=19, imgz=64, k=5, keep_probs=True, window_s=1.0)
    for chunk in (19, 8, 3):
        got = stream_prediction(litert, frames, chunk=chunk, imgz=64, k=5, keep_probs=True, window_s=1.0)
        np.testing.assert_allclose(_centred_log(got.frame_probs), _centred_log(want.frame_probs), atol=1e-4)
        np.testing.assert_allclose(_centred_log(got.clip_probs), _centred_log(want.clip_probs), atol=1e-4)


def test_videos_batched_together_get_the_windows_they_get_alone(tf_stream):
    videos = [random_frames(n, side=64, seed=n) for n in (5, 13, 9)]
    together = stream_predictions(tf_stream, videos, chunk=4, imgz=64, k=5, keep_probs=True, window_s=0.5)
    for frames, got in zip(videos, together):
        alone = stream_prediction(tf_stream, frames, chunk=4, imgz=64, k=5, keep_probs=True, window_s=0.5)
        np.testing.assert_allclose(got.frame_probs, alone.frame_probs, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got.clip_probs, alone.clip_probs, rtol=1e-4, atol=1e-6)
        assert got.timestamps_s.tolist() == [f.time_s for f in frames]


class _NoFeatures:
    """A stream model with per-frame outputs and no frame features (a SavedModel exported before
    windows), or none of either (TF Hub)."""

    def __init__(self, per_frame: bool):
        self.per_frame, self.features = per_frame, False


def test_a_window_needs_frame_features_where_frames_have_their_own_outputs():
    with pytest.raises(ValueError, match="frame_window_s=0"):
        windowed(_NoFeatures(per_frame=True), 2.0)
    assert not windowed(_NoFeatures(per_frame=True), 0.0)
    assert not windowed(_NoFeatures(per_frame=False), 2.0)  # TF Hub: per chunk, window or not


def test_a_tflite_model_without_frame_features_gives_cumulative_labels_unless_a_window_is_asked(
        tmp_path, capsys):
    import tensorflow as tf

    from beam_pipeline.config import ConfigError, load_config
    from beam_pipeline.job.launcher import resolved_model
    from beam_pipeline.job.serving import ServedModel

    spec = tf.TensorSpec([1, 4], tf.float32, name="x")
    double = tf.function(lambda x: {"y": x * 2}, input_signature=[spec])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()], double)
    old = tmp_path / "old.tflite"
    old.write_bytes(converter.convert())
    # MoViNet's own layout (no head signature) with the default window: cumulative labels, said once
    resolved = resolved_model(load_config(None, [f'model.handle="{old}"']))
    assert resolved.handle == str(old) and resolved.cfg.model.frame_window_s == 0
    assert ServedModel.of(resolved.cfg, resolved.handle).frame_labels == "cumulative"  # _run.json's
    assert "has no frame features (no head signature): each frame is labelled with the output over the " \
           "video so far (cumulative)" in capsys.readouterr().err
    assert resolved.stamp.config_hash == resolved.cfg.job_hash()
    # a window asked for explicitly, which the model cannot give: at start, in one line
    with pytest.raises(ConfigError, match="no frame features.*cannot give 1.5 s windows.*frame_window_s=0"):
        resolved_model(load_config(None, [f'model.handle="{old}"', "model.frame_window_s=1.5"]))
    explicit = resolved_model(load_config(None, [f'model.handle="{old}"', "model.frame_window_s=0"]))
    assert explicit.cfg.model.frame_window_s == 0 and capsys.readouterr().err == ""
