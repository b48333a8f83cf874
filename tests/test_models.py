"""MoViNet export and the RunInference ModelHandler on locally exported SavedModels."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models.labels import KINETICS_600, read_labels
from models.movinet_handler import MovinetClipHandler, MovinetStreamHandler, softmax, stream_probs
from models.movinet_variants import hub_handle, native_imgz
from transforms.decoding import SampledFrame, windows
from transforms.records import ErrorStage, FrameSource, SamplingSpec, VideoRef


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


def test_stream_chunks_carry_state(a0_stream):
    handler = MovinetStreamHandler(a0_stream, num_labels=600, imgz=64, stream_chunk=4)
    model = handler.load_model()
    frames = _frames(12)
    whole = stream_probs(model, frames, 12, 64)
    chunked = stream_probs(model, iter(frames), 4, 64)
    assert whole[2].shape == (12, 600) and whole[2].dtype == np.float32
    assert whole[0].tolist() == list(range(12))
    np.testing.assert_allclose(whole[2].sum(axis=1), 1.0, rtol=1e-5)
    # after the last frame, chunks of 4 with carried state give the whole-clip output
    np.testing.assert_allclose(chunked[2][-1], whole[2][-1], atol=1e-5)
    # frames 0-3 share the output at the end of their chunk, which differs from the end
    np.testing.assert_array_equal(chunked[2][0], chunked[2][3])
    assert np.abs(chunked[2][3] - chunked[2][11]).max() > 0
    # dropping the state would change the answer: a fresh start on the last chunk differs
    fresh = stream_probs(model, frames[8:], 4, 64)
    assert np.abs(fresh[2][-1] - chunked[2][-1]).max() > 1e-6


def test_stream_handler_decodes_a_source_and_reports_it(a0_stream, mixed_videos):
    handler = MovinetStreamHandler(a0_stream, num_labels=600, imgz=64, stream_chunk=3)
    spec = SamplingSpec("fps", 5.0, 8, 64, 10**7, 600.0, 60.0)
    good = VideoRef("g", f"{mixed_videos['dir']}/right_160x120_25.mp4", None, "train")
    bad = VideoRef("c", f"{mixed_videos['dir']}/{mixed_videos['corrupt']}", None, "train")
    ok, broken = handler.run_inference([FrameSource(good, spec), FrameSource(bad, spec)],
                                       handler.load_model())
    assert ok.info.frames_decoded == 50 and ok.info.frames_sampled == 10 and ok.info.error is None
    assert ok.frame_probs.shape == (10, 600) and ok.timestamps_s[-1] == pytest.approx(1.8)
    np.testing.assert_array_equal(ok.clip_probs, ok.frame_probs[-1])
    assert broken.clip_probs is None and broken.frame_probs.shape[0] == 0
    assert broken.info.error.stage == ErrorStage.OPEN


def _base(handle, num_labels):
    return MovinetClipHandler(handle, num_labels=num_labels, imgz=64, n_frames=8, batch_size=4)


def test_base_handler_batches_padded_clips(a0_base):
    handler = _base(a0_base, 5)
    model = handler.load_model()
    clips = [c for _, c in windows(_frames(19), 8, 8)]
    assert [len(c.frame_indices) for c in clips] == [8, 8, 3]
    preds = list(handler.run_inference(clips, model))
    assert [p.frame_probs.shape for p in preds] == [(8, 5), (8, 5), (3, 5)]
    assert preds[2].frame_indices.tolist() == [16, 17, 18]
    # the padded short clip equals the clip with its last frame repeated to 8
    padded = np.concatenate([clips[2].frames, np.repeat(clips[2].frames[-1:], 5, axis=0)])
    expected = softmax(model.base_logits(padded[None].astype(np.float32) / 255.0))
    np.testing.assert_allclose(preds[2].clip_probs, expected[0], atol=1e-5)
    assert handler.batch_elements_kwargs()["max_batch_size"] == 4


def test_label_count_mismatch_fails_at_load(a0_base):
    with pytest.raises(ValueError, match="outputs 5 classes but the labels list has 600"):
        _base(a0_base, 600).load_model()


def test_wrong_mode_for_model_is_a_clear_error(a0_base):
    with pytest.raises(ValueError, match="no 'call' signature"):
        MovinetStreamHandler(a0_base, num_labels=5, imgz=64, stream_chunk=4).load_model()
