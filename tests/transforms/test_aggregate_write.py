"""Aggregation into Arrow rows and atomic Parquet writing (pure functions, then a Beam write)."""

from __future__ import annotations

import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from models.scores import top_k_arrays
from transforms.aggregate import RunStamp, frames_batch, prediction_columns, video_batch
from transforms.records import (
    ClipPrediction,
    ErrorStage,
    VideoError,
    VideoInfo,
    VideoMeta,
    VideoRef,
    VideoRows,
)
from transforms.schema import VIDEOS_SCHEMA, frames_schema, record_batch
from transforms.write import CommitParts, FinalizeParts, part_name, partition_dir, write_table

LABELS = ["a", "b", "c"]
STAMP = RunStamp("model-dir", "cfg123", "run-1")
META = VideoMeta(2.0, 25.0, 160, 120, "h264")


def _pred(indices, probs):
    probs = np.asarray(probs, np.float32)
    frame_probs = np.repeat(probs[None], len(indices), axis=0)
    return ClipPrediction(np.array(indices, np.int64), np.array(indices, np.float64) / 25,
                          *top_k_arrays(frame_probs, 3), probs, frame_probs)


def _info(label="b", error=None, sampled=4):
    return VideoInfo(VideoRef("v1", "/x/v1.mp4", label, "test"), META, 50, sampled, error)


def video_row(*args):
    """The one ``videos`` row, as a dict."""
    (row,) = video_batch(*args).to_pylist()
    return row


def frame_rows(*args, **kwargs):
    """The ``frames`` rows, as dicts."""
    return frames_batch(*args, **kwargs).to_pylist()


def test_top_k_orders_scores():
    cols = {name: column.to_pylist() for name, column in prediction_columns(
        *top_k_arrays(np.array([[0.1, 0.7, 0.2]], np.float32), 2), LABELS).items()}
    assert cols["prediction"] == ["b"] and cols["prediction_index"] == [1]
    assert cols["top_k_labels"] == [["b", "c"]]
    assert cols["top_k_scores"][0] == pytest.approx([0.7, 0.2])
    index, score = top_k_arrays(np.array([[0.2, 0.2, 0.6], [0.5, 0.1, 0.4]], np.float32), 2)
    assert index.tolist() == [[2, 0], [0, 2]] and index.dtype == np.int32  # ties: lower index first
    np.testing.assert_allclose(score, [[0.6, 0.2], [0.5, 0.4]])


def test_base_video_prediction_is_mean_of_clip_probabilities():
    clips = [(1, _pred([4, 5], [0.1, 0.1, 0.8])), (0, _pred([0, 1, 2, 3], [0.6, 0.3, 0.1]))]
    row = video_row(_info(), clips, "base", LABELS, 2, STAMP)
    # mean = [0.35, 0.2, 0.45] -> "c"
    assert row["prediction"] == "c" and row["score"] == pytest.approx(0.45)
    assert row["status"] == "ok" and row["is_error"] is True and row["error_stage"] is None
    assert (row["model"], row["config_hash"], row["run_id"]) == ("model-dir", "cfg123", "run-1")


def test_stream_video_prediction_is_the_last_clip_output():
    clips = [(0, _pred([0, 1], [0.6, 0.3, 0.1])), (1, _pred([2], [0.2, 0.7, 0.1]))]
    row = video_row(_info(), clips, "stream", LABELS, 2, STAMP)
    assert row["prediction"] == "b" and row["is_error"] is False


def test_failed_and_partial_status():
    err = VideoError(ErrorStage.OPEN, "InvalidDataError", "bad")
    failed = video_row(_info(error=err, sampled=0), [], "stream", LABELS, 2, STAMP)
    assert failed["status"] == "failed" and failed["error_stage"] == "open"
    assert failed["prediction"] is None and failed["is_error"] is None
    decode_err = VideoError(ErrorStage.DECODE, "InvalidDataError", "cut short")
    partial = video_row(_info(error=decode_err), [(0, _pred([0], [1, 0, 0]))], "stream", LABELS, 2, STAMP)
    assert partial["status"] == "partial" and partial["prediction"] == "a"
    nothing = video_row(_info(sampled=0), [], "stream", LABELS, 2, STAMP)
    assert nothing["status"] == "failed" and nothing["error_type"] == "NoFrames"
    unlabelled = video_row(_info(label=None), [(0, _pred([0], [1, 0, 0]))], "base", LABELS, 2, STAMP)
    assert unlabelled["is_error"] is None


def test_frame_rows_follow_time_and_clip_order():
    clips = [(1, _pred([4, 5], [0.1, 0.1, 0.8])), (0, _pred([0, 2], [0.6, 0.3, 0.1]))]
    rows = frame_rows(_info(), clips, LABELS, 2, write_probs=True)
    assert [r["frame_index"] for r in rows] == [0, 2, 4, 5]
    assert [r["clip_index"] for r in rows] == [0, 0, 1, 1]
    assert [r["prediction"] for r in rows] == ["a", "a", "c", "c"]
    assert rows[0]["timestamp_s"] == pytest.approx(0.0) and rows[3]["timestamp_s"] == pytest.approx(0.2)
    assert rows[0]["probs"] == pytest.approx([0.6, 0.3, 0.1])


def test_batches_follow_the_declared_schema_by_name_and_type():
    batch = video_batch(_info(), [(0, _pred([0], [0, 1, 0]))], "stream", LABELS, 2, STAMP)
    assert batch.schema.equals(VIDEOS_SCHEMA, check_metadata=True)
    keypoints = np.arange(2 * 17 * 3, dtype=np.float32).reshape(2, 17, 3)
    pose = _pred([0, 1], [0, 1, 0])._replace(keypoints=keypoints)
    frames = frames_batch(_info(), [(0, pose)], LABELS, 2, write_probs=True, write_keypoints=True)
    assert frames.schema.equals(frames_schema(True, True), check_metadata=True)
    assert frames["keypoints"].to_pylist()[1] == keypoints[1].reshape(-1).tolist()
    columns = {name: batch[name] for name in VIDEOS_SCHEMA.names}
    assert record_batch(columns, VIDEOS_SCHEMA).equals(batch)
    misspelt = {("predicton" if name == "prediction" else name): column for name, column in columns.items()}
    with pytest.raises(ValueError, match=r"schema: \['predicton'\]; .* without a column: \['prediction'\]"):
        record_batch(misspelt, VIDEOS_SCHEMA)
    with pytest.raises(ValueError, match=r"without a column: \['codec'\]"):
        record_batch({name: c for name, c in columns.items() if name != "codec"}, VIDEOS_SCHEMA)
    with pytest.raises(pa.ArrowInvalid):  # a string where the schema says int32
        record_batch({**columns, "width": ["wide"]}, VIDEOS_SCHEMA)
    with pytest.raises(pa.ArrowInvalid):  # 2.5 is no int32: casts are safe, never truncating
        record_batch({**columns, "width": [2.5]}, VIDEOS_SCHEMA)
    with pytest.raises(ValueError, match=r"non-nullable columns: \['video_id'\]"):
        record_batch({**columns, "video_id": [None]}, VIDEOS_SCHEMA)


def test_write_table_is_atomic_and_leaves_no_temp(tmp_path):
    path = f"{partition_dir(str(tmp_path), 'videos', 'test')}/{part_name('run-1', 'w1', 0)}"
    assert path.endswith("videos/split=test/part-run-1-w1-00000.parquet")
    os.makedirs(os.path.dirname(path))
    batch = video_batch(_info(), [(0, _pred([0], [0, 1, 0]))], "stream", LABELS, 2, STAMP)
    assert write_table(path, pa.Table.from_batches([batch])) == 1
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]


def _groups(splits):
    groups = []
    for i, split in enumerate(splits):
        info = VideoInfo(VideoRef(f"v{i}", f"/x/v{i}.mp4", "a", split), META, 10, 2, None)
        clips = [(0, _pred([1, 0], [1, 0, 0]))]
        groups.append(VideoRows(split, {"videos": video_batch(info, clips, "stream", LABELS, 3, STAMP),
                                        "frames": frames_batch(info, clips, LABELS, 3)}))
    return groups


def test_write_tables_partitions_by_split_and_commits_a_video_with_its_frames(tmp_path):
    splits = ["train", "train", "train", "test", "valid/odd"]
    schemas = {"frames": frames_schema(False), "videos": VIDEOS_SCHEMA}
    sort_keys = {"videos": ("video_id",), "frames": ("video_id", "frame_index")}
    with TestPipeline() as p:
        _ = (p | beam.Create(_groups(splits))
             | CommitParts(str(tmp_path), schemas, sort_keys, run_id="run-1", videos_per_file=2)
             | FinalizeParts(str(tmp_path), schemas, run_id="run-1"))
    videos = ds.dataset(tmp_path / "videos", format="parquet", partitioning="hive").to_table()
    assert sorted(zip(videos["video_id"].to_pylist(), videos["split"].to_pylist())) == [
        ("v0", "train"), ("v1", "train"), ("v2", "train"), ("v3", "test"), ("v4", "valid/odd")]
    assert (tmp_path / "videos" / "split=valid%2Fodd").is_dir()
    frames = ds.dataset(tmp_path / "frames", format="parquet", partitioning="hive").to_table()
    assert frames.num_rows == 10
    # at most 2 videos a file; each frames file pairs with the videos file of the same name
    for split_dir in (tmp_path / "videos").iterdir():
        for part in split_dir.iterdir():
            assert part.name.startswith("part-run-1-")
            ids = pq.read_table(part)["video_id"].to_pylist()
            assert len(ids) <= 2 and ids == sorted(ids)
            paired = pq.read_table(tmp_path / "frames" / split_dir.name / part.name).to_pylist()
            assert sorted({r["video_id"] for r in paired}) == ids
            assert [r["frame_index"] for r in paired if r["video_id"] == ids[0]] == [0, 1]
    assert len(list((tmp_path / "videos" / "split=train").iterdir())) >= 2


def test_frames_take_their_segment_label_and_the_background_outside():
    ref = VideoRef("v1", "/x/v1.mp4", None, "test", segments=((0.0, 0.1, "a"), (0.2, 1.0, "c")))
    info = VideoInfo(ref, META, 50, 5, None)
    # frames at 0, 0.04, ..., 0.24 s (index / 25); every frame predicts "a"
    clips = [(0, _pred([0, 1, 2, 3, 4, 5, 6], [1, 0, 0]))]
    rows = frame_rows(info, clips, LABELS, 2, write_probs=False, background="b")
    assert [r["label"] for r in rows] == ["a", "a", "a", "b", "b", "c", "c"]
    assert [r["is_error"] for r in rows] == [False, False, False, True, True, True, True]
    unlabelled = frame_rows(info, clips, LABELS, 2, write_probs=False)
    assert [r["label"] for r in unlabelled][3:5] == [None, None]
    assert [r["is_error"] for r in unlabelled][3:5] == [None, None]
    assert video_row(info, clips, "stream", LABELS, 2, STAMP)["is_error"] is None  # no one video label


def test_the_writer_refuses_rows_of_other_tables(tmp_path):
    (rows,) = _groups(["test"])
    with pytest.raises(Exception, match=r"tables \['frames', 'videos'\]; the writer has \['videos'\]"):
        with TestPipeline() as p:
            _ = p | beam.Create([rows]) | CommitParts(str(tmp_path), {"videos": VIDEOS_SCHEMA},
                                                     {"videos": ("video_id",)}, run_id="run-1")
