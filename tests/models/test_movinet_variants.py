"""MoViNet variants, export details, TFLite stream models, and the CPU warnings."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from models.labels import read_labels
from models.movinet import Movinet, MovinetStream
from models.movinet_export import export_movinet_tflite, movinet_signatures
from models.movinet_graph import build_movinet
from models.movinet_tflite import TFLiteMovinet
from tests.conftest import random_frames as _frames
from transforms.streaming import stream_prediction


def _trainable_millions(model) -> float:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights) / 1e6


@pytest.mark.parametrize("model_id, published", [("a0", 3.1), ("a1", 4.6)])
def test_base_parameter_counts_match_the_published_table(model_id, published):
    # Kinetics-600 head, trainable weights (batch-norm statistics are not parameters)
    assert _trainable_millions(build_movinet(model_id, "base")) == pytest.approx(published, rel=0.03)


def test_stream_export_has_no_xla_and_base_keeps_only_tf_models_depthwise_conv3d(a0_stream, a0_base):
    # XLA on CPU was 6.8x slower here: the (2+1)D stream graph must not ask for it. The 3D base
    # graph holds XLA clusters only because tf-models-official compiles its depthwise Conv3D,
    # which TensorFlow has no plain CPU kernel for.
    assert b"_XlaMustCompile" not in Path(a0_stream, "saved_model.pb").read_bytes()
    assert b"_XlaMustCompile" in Path(a0_base, "saved_model.pb").read_bytes()


@pytest.mark.slow  # builds and traces MoViNet-A1
def test_a_larger_variant_runs_per_frame_through_the_functions_export_saves():
    # export_movinet saves these functions whatever the variant (A0's export is tested above and in
    # tests/models/test_models.py): A1's graph gives the same per-frame output whole or frame by frame.
    import tensorflow as tf

    signatures = movinet_signatures(build_movinet("a1", "stream", 10), "stream")
    clip = np.stack([f.image for f in _frames(6)])[np.newaxis].astype(np.float32) / 255
    states = signatures["init_states"](tf.constant(clip.shape))
    whole = signatures["call"]({**states, "image": clip})["frame_logits"].numpy()
    assert whole.shape == (1, 6, 10)
    one_by_one = []
    for i in range(6):
        out = signatures["call"]({**states, "image": clip[:, i:i + 1]})
        states = {name: out[name] for name in states}
        one_by_one.append(out["frame_logits"].numpy())
    np.testing.assert_allclose(np.concatenate(one_by_one, axis=1), whole, atol=1e-5)


@pytest.fixture(scope="session")
def tflite_models(tmp_path_factory) -> dict:
    """A0 stream converted to TFLite at 64x64, float and with int8 weights, each with its labels."""
    out = {}
    for name, quantize in (("float", False), ("int8", True)):
        folder = tmp_path_factory.mktemp(f"tflite_{name}")
        out[name] = export_movinet_tflite(str(folder / "a0_stream.tflite"), model_id="a0", imgz=64,
                                          num_classes=4, labels=["up", "down", "left", "right"],
                                          quantize=quantize)
    return out


def test_tflite_stream_model_matches_its_layout_and_runs_frame_by_frame(tflite_models):
    content = Path(tflite_models["float"]).read_bytes()
    loaded = TFLiteMovinet(content)
    assert loaded.image_size == 64
    with pytest.raises(ValueError, match="takes 64x64 frames, not 172"):
        loaded.init_states(172)
    model = MovinetStream(loaded)
    pred = stream_prediction(model, _frames(5), chunk=2, imgz=64, k=2, keep_probs=True)
    assert pred.frame_probs.shape == (5, 4) and pred.top_index.shape == (5, 2)
    np.testing.assert_allclose(pred.frame_probs.sum(axis=1), 1.0, rtol=1e-5)
    again = stream_prediction(model, _frames(5), chunk=5, imgz=64, k=2, keep_probs=True)
    np.testing.assert_allclose(pred.frame_probs, again.frame_probs, atol=1e-6)
    quantised = MovinetStream(TFLiteMovinet(Path(tflite_models["int8"]).read_bytes()))
    assert len(Path(tflite_models["int8"]).read_bytes()) < len(content) / 2
    q = stream_prediction(quantised, _frames(5), chunk=5, imgz=64, k=2)
    assert q.top_index.shape == (5, 2)
    beside = Path(tflite_models["int8"]).parent / "labels.txt"
    assert read_labels(str(beside)) == ["up", "down", "left", "right"]


def test_tflite_model_through_the_cli(tmp_path, tflite_models, mixed_videos):
    from beam_pipeline.cli import main

    out = tmp_path / "out"
    code = main(["run", "--config", "configs/local.yaml", "--input", f"{mixed_videos['dir']}/*.mp4",
                 "--output", str(out), "--model", tflite_models["float"], "--set", "sampling.imgz=64",
                 "--set", "model.top_k=2", "--runner", "DirectRunner",
                 "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert code == 0
    import pyarrow.dataset as ds

    frames = ds.dataset(out / "frames", format="parquet", partitioning="hive").to_table().to_pandas()
    assert set(frames.prediction) <= {"up", "down", "left", "right"}
    assert (out / "labels.txt").read_text().split() == ["up", "down", "left", "right"]
    assert frames.groupby("video_id").score.nunique().min() > 1  # a prediction per frame


def test_base_mode_on_cpu_warns_with_the_measured_cost(a0_base, caplog):
    with caplog.at_level(logging.WARNING, logger="models.movinet"):
        Movinet(a0_base, "base", num_labels=5, imgz=32).load()
    assert "80x slower than stream mode" in caplog.text
