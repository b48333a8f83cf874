"""MoViNet export and the RunInference ModelHandler on locally exported SavedModels."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models.labels import KINETICS_600, read_labels
from models.movinet_handler import MovinetModelHandler
from models.movinet_variants import hub_handle, native_imgz
from transforms.decoding import SampledFrame, clip_from_frames, windows


def _frames(n, side=64, seed=0):
    rng = np.random.default_rng(seed)
    return [SampledFrame(i, i / 5, rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for i in range(n)]


def test_kinetics_labels_and_hub_handles():
    assert len(KINETICS_600) == 600 and len(set(KINETICS_600)) == 600
    assert KINETICS_600[0] == "abseiling" and KINETICS_600[-1] == "zumba"
    assert hub_handle("a2", "base", 3) == (
        "https://tfhub.dev/tensorflow/movinet/a2/base/kinetics-600/classification/3")
    assert [native_imgz(m) for m in ("a0", "a1", "a2", "a3", "a4", "a5")] == [172, 172, 224, 256, 290, 320]


def test_exports_have_hub_signatures_and_labels(a0_stream, a0_base):
    stream = tf.saved_model.load(a0_stream)
    assert {"call", "init_states"} <= set(stream.signatures)
    assert "logits" in stream.signatures["call"].structured_outputs
    assert read_labels(f"{a0_stream}/labels.txt") == KINETICS_600
    base = tf.saved_model.load(a0_base)
    assert set(base.signatures) == {"serving_default"}
    assert read_labels(f"{a0_base}/labels.txt") == [f"action_{i}" for i in range(5)]


def _handler(handle, mode, num_labels, **kw):
    args = dict(mode=mode, num_labels=num_labels, imgz=64, n_frames=8, batch_size=4, stream_chunk=4)
    return MovinetModelHandler(handle, **{**args, **kw})


def test_stream_handler_carries_state_across_chunks(a0_stream):
    frames = _frames(12)
    clip = clip_from_frames(frames, len(frames))
    whole = _handler(a0_stream, "stream", 600, stream_chunk=12)
    chunked = _handler(a0_stream, "stream", 600, stream_chunk=4)
    model = whole.load_model()
    (a,) = whole.run_inference([clip], model)
    (b,) = chunked.run_inference([clip], model)
    assert a.frame_probs.shape == (12, 600) and a.frame_probs.dtype == np.float32
    np.testing.assert_allclose(a.frame_probs.sum(axis=1), 1.0, rtol=1e-5)
    # after the last frame, chunks of 4 with carried state give the whole-clip output
    np.testing.assert_allclose(a.clip_probs, b.clip_probs, atol=1e-5)
    # chunked: frames 0-3 share the output at frame 3, which differs from the end
    np.testing.assert_array_equal(b.frame_probs[0], b.frame_probs[3])
    assert np.abs(b.frame_probs[3] - b.frame_probs[11]).max() > 0
    # dropping the state would change the answer: a fresh start on the last chunk differs
    (c,) = chunked.run_inference([clip_from_frames(frames[8:], 4)], model)
    assert np.abs(c.clip_probs - b.clip_probs).max() > 1e-6


def test_base_handler_batches_padded_clips(a0_base):
    handler = _handler(a0_base, "base", 5)
    model = handler.load_model()
    clips = [c for _, c in windows(_frames(19), 8, 8)]
    assert [len(c.frame_indices) for c in clips] == [8, 8, 3]
    preds = list(handler.run_inference(clips, model))
    assert [p.frame_probs.shape for p in preds] == [(8, 5), (8, 5), (3, 5)]
    assert preds[2].frame_indices.tolist() == [16, 17, 18]
    # the padded short clip equals the clip with its last frame repeated to 8
    padded = np.concatenate([clips[2].frames, np.repeat(clips[2].frames[-1:], 5, axis=0)])
    direct = model.base_logits(padded[None].astype(np.float32) / 255.0)
    expected = np.exp(direct - direct.max()) / np.exp(direct - direct.max()).sum()
    np.testing.assert_allclose(preds[2].clip_probs, expected[0], atol=1e-5)
    assert handler.batch_elements_kwargs()["max_batch_size"] == 4


def test_label_count_mismatch_fails_at_load(a0_base):
    with pytest.raises(ValueError, match="outputs 5 classes but the labels list has 600"):
        _handler(a0_base, "base", 600).load_model()


def test_wrong_mode_for_model_is_a_clear_error(a0_base):
    with pytest.raises(ValueError, match="no 'call' signature"):
        _handler(a0_base, "stream", 5).load_model()
