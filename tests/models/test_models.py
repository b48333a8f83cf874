"""MoViNet export, the MoViNet models and the video handler on locally exported SavedModels."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models.labels import KINETICS_600, read_labels
from models.movinet import Movinet
from models.movinet_variants import hub_handle, native_imgz
from models.scores import softmax
from models.weights_note import is_random
from tests.conftest import random_frames as _frames
from transforms.clips import ModelClock, windows
from transforms.decoding import DecodeReport, sample_frames
from transforms.records import ErrorStage, FrameSource, SamplingSpec, VideoRef
from transforms.streaming import stream_prediction
from transforms.video_handler import ClipWindows, StreamChunks, VideoHandler


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
    assert set(base.signatures) == {"serving_default", "embed"}
    # embed: the same logits as serving_default, and each clip's pooled features, from one pass
    clips = tf.random.stateless_uniform([2, 4, 64, 64, 3], seed=[3, 4])
    both = base.signatures["embed"](image=clips)
    served = base.signatures["serving_default"](image=clips)["logits"]
    np.testing.assert_allclose(both["logits"].numpy(), served.numpy(), atol=1e-5)
    assert both["features"].shape == (2, 480)
    assert read_labels(f"{a0_base}/labels.txt") == [f"action_{i}" for i in range(5)]
    assert is_random(a0_stream) and is_random(a0_base)  # exported without --checkpoint


def _stream(handle, num_labels=600, stream_chunk=4):
    return VideoHandler(Movinet(handle, "stream", num_labels, 64), StreamChunks(stream_chunk), k=5)


def test_stream_logits_are_per_frame_and_independent_of_chunking(a0_stream):
    model = _stream(a0_stream).load_model()
    assert model.per_frame
    frames = _frames(12)
    whole = stream_prediction(model, frames, chunk=12, imgz=64, k=5, keep_probs=True)
    assert whole.frame_probs.shape == (12, 600) and whole.frame_probs.dtype == np.float32
    assert whole.top_index.shape == (12, 5) and whole.frame_indices.tolist() == list(range(12))
    np.testing.assert_allclose(whole.frame_probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(whole.top_index[:, 0], whole.frame_probs.argmax(axis=1))
    np.testing.assert_array_equal(whole.clip_probs, whole.frame_probs[-1])
    # the outputs are the same whether the video goes in chunks of 1, 8 (state carried) or whole
    frames = _frames(16, seed=1)
    logits = {}
    for chunk in (1, 8, 16):
        states, rows = model.init_states(64), []
        for start in range(0, 16, chunk):
            out, states = model.step(np.stack([f.image for f in frames[start:start + chunk]]), states)
            rows.append(out)
        logits[chunk] = np.concatenate(rows)
    assert logits[16].shape == (16, 600)
    assert np.abs(logits[1] - logits[16]).max() <= 1e-4
    assert np.abs(logits[8] - logits[16]).max() <= 1e-4
    # a causal output per frame: each frame's differs from the next
    assert all(np.abs(logits[16][i] - logits[16][i + 1]).max() > 0 for i in range(15))
    # dropping the state would change the answer: a fresh start on the last chunk differs
    frames = _frames(12)
    fresh = stream_prediction(model, frames[8:], chunk=4, imgz=64, k=5)
    assert np.abs(fresh.clip_probs - whole.clip_probs).max() > 1e-6
    assert fresh.frame_probs is None


def test_stream_handler_decodes_a_source_and_reports_it(a0_stream, mixed_videos):
    handler = _stream(a0_stream, stream_chunk=3)
    spec = SamplingSpec("fps", 5.0, 8, 64, 10**7, 600.0, 60.0)
    good = VideoRef("g", f"{mixed_videos['dir']}/right_160x120_25.mp4", None, "train")
    bad = VideoRef("c", f"{mixed_videos['dir']}/{mixed_videos['corrupt']}", None, "train")
    ok, broken = handler.run_inference([FrameSource(good, spec), FrameSource(bad, spec)],
                                       handler.load_model())
    assert ok.info.frames_decoded == 50 and ok.info.frames_sampled == 10 and ok.info.error is None
    assert ok.info.decode_s > 0
    ((index, pred),) = ok.clips
    assert index == 0 and pred.top_index.shape == (10, 5) and pred.timestamps_s[-1] == pytest.approx(1.8)
    assert pred.top_index[-1, 0] == pred.clip_probs.argmax()
    ((_, nothing),) = broken.clips
    assert nothing.clip_probs is None and nothing.frame_indices.shape == (0,)
    assert broken.info.error.stage == ErrorStage.OPEN


def _base(handle, num_labels, batch_size=4, n_frames=8, stride=8):
    model = Movinet(handle, "base", num_labels, 64)
    return VideoHandler(model, ClipWindows(n_frames, stride, batch_size), k=3, keep_probs=True)


def test_base_handler_decodes_a_video_into_padded_clips_in_batches(a0_base, mixed_videos):
    # 45 frames at 30 fps sampled at 5 fps: 8 frames; clips of 4 every 3 frames, 2 clips per call
    spec = SamplingSpec("fps", 5.0, 4, 64, 10**7, 600.0, 60.0)
    handler = _base(a0_base, 5, batch_size=2, n_frames=4, stride=3)
    model = handler.load_model()
    ref = VideoRef("v", f"{mixed_videos['dir']}/left_320x180_30.mp4", None, "train")
    (result,) = handler.run_inference([FrameSource(ref, spec)], model)
    assert result.info.frames_sampled == 8 and result.info.error is None
    assert [i for i, _ in result.clips] == [0, 1, 2]
    preds = [p for _, p in result.clips]
    # each frame row is written by the latest clip starting at or before it: 3 + 3 + 2 rows
    assert [p.frame_indices.tolist() for p in preds] == [[0, 6, 12], [18, 24, 30], [36, 42]]
    frames = np.stack([f.image for f in sample_frames(ref.uri, spec, DecodeReport())])
    expected = softmax(model.outputs(frames[None, :4].astype(np.float32) / 255.0)[0])
    np.testing.assert_allclose(preds[0].clip_probs, expected[0], atol=1e-5)
    assert handler.batch_elements_kwargs()["max_batch_size"] == 1


def test_base_handler_pads_a_short_last_clip(a0_base):
    handler = _base(a0_base, 5)
    model = handler.load_model()
    clips = [c for _, c in windows(_frames(19), 8, 8)]
    assert [len(c.frame_indices) for c in clips] == [8, 8, 3]
    preds = [p for _, p in handler._clip_outputs(model, _frames(19), ModelClock())]
    assert [p.frame_probs.shape for p in preds] == [(8, 5), (8, 5), (3, 5)]
    assert [p.top_index.shape for p in preds] == [(8, 3), (8, 3), (3, 3)]
    assert preds[2].frame_indices.tolist() == [16, 17, 18]
    # the padded short clip equals the clip with its last frame repeated to 8
    padded = np.concatenate([clips[2].frames, np.repeat(clips[2].frames[-1:], 5, axis=0)])
    expected = softmax(model.outputs(padded[None].astype(np.float32) / 255.0)[0])
    np.testing.assert_allclose(preds[2].clip_probs, expected[0], atol=1e-5)


def test_label_count_mismatch_fails_at_load(a0_base):
    with pytest.raises(ValueError, match="outputs 5 classes but the labels list has 600"):
        _base(a0_base, 600).load_model()


def test_wrong_mode_for_model_is_a_clear_error(a0_base):
    with pytest.raises(ValueError, match="no 'call' signature"):
        _stream(a0_base, num_labels=5).load_model()
