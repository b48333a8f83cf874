"""Embeddings: a video's and its segments' L2-normalised means of frame features, in the ``embeddings``
table (``output.write_embeddings``), and the stream path that keeps each frame's own features."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.scores import top_k_arrays
from tests.conftest import random_frames
from transforms.aggregate import embeddings_batch, segments_batch
from transforms.clips import clip_predictions, windows
from transforms.embeddings import embedding_column, l2_normalised, span_embeddings
from transforms.records import ClipPrediction, ErrorStage, VideoError, VideoInfo, VideoMeta, VideoRef
from transforms.schema import EMBEDDING, embeddings_schema
from transforms.segments import SegmentRule
from transforms.streaming import stream_prediction, stream_predictions

LABELS = ["a", "b", "c"]
F = 6


def _clip(classes: str, features: np.ndarray, start: int = 0) -> ClipPrediction:
    """Frames ``start``... at 4 fps predicting ``classes`` at 0.9, with ``features`` [len(classes), F]."""
    probs = np.full((len(classes), len(LABELS)), 0.05, np.float32)
    probs[np.arange(len(classes)), [LABELS.index(c) for c in classes]] = 0.9
    frames = np.arange(start, start + len(classes))
    return ClipPrediction(frames, frames * 0.25, *top_k_arrays(probs, 2), probs[-1], features=features)


def _info(sampled: int, error: VideoError | None = None) -> VideoInfo:
    return VideoInfo(VideoRef("v1", "/x/v1.mp4", "a", "test"), VideoMeta(4.0, 4.0, 64, 64, "h264"), sampled,
                     sampled, error)


def test_span_embeddings_are_unit_means_of_their_frames_even_over_long_spans():
    rng = np.random.default_rng(0)
    features = rng.normal(3.0, 1.0, (20_000, F)).astype(np.float32)
    got = span_embeddings(features, [0, 5, 19_999], [20_000, 9, 20_000])
    means = np.stack([features.mean(0, dtype=np.float64), features[5:9].mean(0), features[19_999]])
    np.testing.assert_allclose(got, means / np.linalg.norm(means, axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)
    assert got.dtype == np.float32
    assert l2_normalised(np.zeros((1, F))).tolist() == [[0.0] * F]  # no division by zero


def test_an_embedding_of_another_width_than_the_run_declared_is_refused():
    with pytest.raises(ValueError, match=r"shape \[1, 5\].*1 of 6 floats"):
        embedding_column(np.ones((1, 5), np.float32), 1, F)
    column = embedding_column(None, 3, F)
    assert column.type == pa.list_(pa.float32(), F) and column.null_count == 3


def test_the_embeddings_rows_are_the_means_of_the_videos_and_its_segments_own_frames():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(16, F)).astype(np.float32)
    # clips out of order: time order is what counts
    clips = [(1, _clip("bbbbbbbb", features[8:], 8)), (0, _clip("aaaaaaaa", features[:8]))]
    segments = segments_batch(_info(16), clips, LABELS, SegmentRule(1.0, 0.5))
    assert segments["label"].to_pylist() == ["a", "b"]
    rows = embeddings_batch(_info(16), clips, F, segments)
    assert rows.schema == embeddings_schema(F)
    assert rows.schema.field(EMBEDDING).type == pa.list_(pa.float32(), F)
    assert rows["segment_index"].to_pylist() == [None, 0, 1]
    assert rows["start_s"].to_pylist() == [None, *segments["start_s"].to_pylist()]
    for row, (lo, hi) in zip(rows.to_pylist(), [(0, 16), (0, 8), (8, 16)]):
        np.testing.assert_allclose(row[EMBEDDING], l2_normalised(features[lo:hi].mean(0, keepdims=True))[0],
                                   rtol=1e-6)
    alone = embeddings_batch(_info(16), clips, F)  # no segments table: the video's row only
    assert alone.num_rows == 1 and alone.to_pylist()[0] == rows.to_pylist()[0]


def test_the_embeddings_table_round_trips_through_parquet(tmp_path):
    rows = embeddings_batch(_info(8), [(0, _clip("aaaaaaaa", np.eye(8, F, dtype=np.float32)))], F)
    pq.write_table(pa.Table.from_batches([rows]), tmp_path / "part.parquet")
    back = pq.read_table(tmp_path / "part.parquet")
    assert back.schema.field(EMBEDDING).type == pa.list_(pa.float32(), F)
    assert back.to_pylist() == rows.to_pylist()


def test_a_video_without_frames_has_no_embedding_and_a_model_without_features_is_refused():
    broken = _info(0, VideoError(ErrorStage.OPEN, "InvalidDataError", "bad"))
    assert embeddings_batch(broken, [], F).num_rows == 0
    with pytest.raises(ValueError, match="no features"):
        embeddings_batch(_info(8), [(0, _clip("aaaaaaaa", None))], F)
    with pytest.raises(ValueError, match="not the width"):
        embeddings_batch(_info(8), [(0, _clip("aaaaaaaa", np.ones((8, F + 1), np.float32)))], F)


def test_clip_models_give_each_frame_its_clips_features():
    from models.video_model import ClipScores

    frames = random_frames(7)
    clips = [clip for _, clip in windows(frames, 4, 2)]
    features = np.arange(len(clips) * F, dtype=np.float32).reshape(len(clips), F)
    probs = np.full((len(clips), 3), 1 / 3, np.float32)
    predictions = clip_predictions(clips, ClipScores(probs, features=features), 1, False)
    for clip, prediction, own in zip(clips, predictions, features):
        assert prediction.features.shape == (clip.owned_stop - clip.owned_start, F)
        assert (prediction.features == own).all()


class _FeatureStream:
    """A stream model whose frame features are the frame's mean colour, and whose output the running
    mean of those: enough to see which features reach which frame."""

    per_frame = features = batches = True

    def init_states(self, imgz, batch=None):
        return {"sum": np.zeros((batch or 1, 3)), "n": 0}

    def step_with_features(self, frames, states):
        one = frames.ndim == 4
        videos = frames[np.newaxis] if one else frames
        own = videos.mean(axis=(2, 3)).astype(np.float32)  # [b, t, 3]
        sums = states["sum"][:, np.newaxis] + np.cumsum(own, axis=1)
        counts = states["n"] + np.arange(1, own.shape[1] + 1)
        probs = (sums / counts[:, np.newaxis]).astype(np.float32)
        probs = probs / probs.sum(-1, keepdims=True)
        states = {"sum": sums[:, -1], "n": counts[-1]}
        return (probs[0], own[0], states) if one else (probs, own, states)

    def step(self, frames, states):
        probs, _, states = self.step_with_features(frames, states)
        return probs, states

    def head(self, features):
        return features / features.sum(-1, keepdims=True)


@pytest.mark.parametrize("window_s", [0.0, 0.6])
def test_stream_mode_keeps_each_frames_own_features_window_or_not_alone_or_batched(window_s):
    model, frames = _FeatureStream(), random_frames(11)
    own = np.stack([f.image.mean(axis=(0, 1)) for f in frames]).astype(np.float32)
    alone = stream_prediction(model, frames, chunk=4, imgz=64, k=2, window_s=window_s, keep_features=True)
    np.testing.assert_allclose(alone.features, own, rtol=1e-6)
    other = random_frames(6, seed=3)
    batched = stream_predictions(model, [frames, other], chunk=4, imgz=64, k=2, window_s=window_s,
                                 keep_features=True)
    np.testing.assert_allclose(batched[0].features, own, rtol=1e-6)
    np.testing.assert_allclose(batched[1].features, np.stack([f.image.mean(axis=(0, 1)) for f in other]),
                               rtol=1e-6)
    np.testing.assert_array_equal(batched[0].top_index, alone.top_index)
    assert stream_prediction(model, frames, chunk=4, imgz=64, k=2, window_s=window_s).features is None
