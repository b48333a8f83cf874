"""The segments table: the pure function on hand-made frame sequences, Aggregate and the writer,
resume's pairing of parts, and a real run whose segments equal what its own frames table gives."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from beam_pipeline.job.resume import prepare_resume
from beam_pipeline.outputs.ledger import RUN_WRITES, Ledger
from models.scores import top_k_arrays
from tests.helpers import check_segments, doc_query
from transforms.aggregate import Aggregate, RunStamp, frames_batch, segments_batch, video_batch
from transforms.records import (
    ClipPrediction,
    ErrorStage,
    VideoError,
    VideoInfo,
    VideoMeta,
    VideoRef,
    VideoResult,
)
from transforms.schema import SCHEMA_VERSION, SEGMENTS_SCHEMA, VIDEOS_SCHEMA, frames_schema
from transforms.segments import (
    SegmentRule,
    find_segments,
    frame_ends,
    segment_rows,
    true_overlap,
    truth_spans,
)
from transforms.write import CommitParts, FinalizeParts, part_name, partition_dir, write_table

LABELS = ["a", "b", "c", "d"]
RULE = SegmentRule(min_s=1.0, min_score=0.5)
STEP = 0.25  # seconds between sampled frames in the hand-made sequences


def _frames(classes: str, scores=0.9, step: float = STEP):
    """Frames ``step`` apart predicting ``classes`` (one letter of LABELS per frame), scored ``scores``."""
    index = np.array([LABELS.index(c) for c in classes], np.int32)
    return np.arange(len(classes)) * step, index, np.broadcast_to(np.float32(scores), index.shape).copy()


def _spans(classes: str, rule: SegmentRule = RULE, scores=0.9, duration_s=None, step: float = STEP):
    found = find_segments(*_frames(classes, scores, step), rule, duration_s)
    return [(s, e, LABELS[i]) for s, e, i in zip(found.start_s.tolist(), found.end_s.tolist(),
                                                 found.label_index.tolist())]


# ------------------------------------------------------------------ the pure function


def test_one_odd_frame_neither_splits_a_segment_nor_opens_one():
    scores = np.full(12, 0.6, np.float32)
    scores[3], scores[8] = 0.8, 0.99  # the odd frame (b) scores highest: it counts in no statistic
    t, index, _ = _frames("aaaaaaaabaaa")
    found = find_segments(t, index, scores, RULE, duration_s=10.0)
    assert found.start_s.tolist() == [0.0] and found.end_s.tolist() == [3.0]
    assert found.label_index.tolist() == [0] and found.frames.tolist() == [12]  # the odd frame counted
    assert found.max_score.tolist() == [pytest.approx(0.8)]
    assert found.mean_score.tolist() == [pytest.approx((0.6 * 10 + 0.8) / 11)]
    # alone between low scores, one confident odd frame opens nothing
    assert _spans("aaaaaaaabaaaaaaaa", scores=[0.2] * 8 + [0.9] + [0.2] * 8) == []
    # a few odd frames of mixed labels, together no longer than min_s, are absorbed too
    assert _spans("aaaaaaaabcbaaaaa") == [(0.0, 4.0, "a")]


def test_two_segments_with_exact_boundaries():
    assert _spans("aaaaaaaabbbbbbbb") == [(0.0, 2.0, "a"), (2.0, 4.0, "b")]
    # b holds 1.5 s (> min_s) between two stretches of a: three segments
    assert _spans("aaaaaaaabbbbbbaaaaaa") == [(0.0, 2.0, "a"), (2.0, 3.5, "b"), (3.5, 5.0, "a")]
    # b holds 1.0 s, not longer than min_s: absorbed
    assert _spans("aaaaaaaabbbbaaaaaa") == [(0.0, 4.5, "a")]
    # two labels that alternate: the first to hold keeps it, the other never holding longer than min_s
    # (a segment ends with its label's last run: the last b is left out)
    assert _spans("abababababab") == [(0.0, 2.75, "a")]
    # b holds 1.75 s with one odd c inside: the odd frame splits nothing there either
    found = find_segments(*_frames("aaaaaaaabbbcbbb"), RULE)
    assert found.start_s.tolist() == [0.0, 2.0] and found.end_s.tolist() == [2.0, 3.75]
    assert found.frames.tolist() == [8, 7]


def test_a_low_score_stretch_and_a_mix_where_nothing_holds_are_gaps():
    scores = [0.9] * 8 + [0.3] * 8 + [0.9] * 8
    assert _spans("aaaaaaaabbbbbbbbaaaaaaaa", scores=scores) == [(0.0, 2.0, "a"), (4.0, 6.0, "a")]
    # a hold opens on a confident frame anywhere in it, and spans all of it
    assert _spans("aaaaaaaa", scores=[0.1] * 7 + [0.5]) == [(0.0, 2.0, "a")]
    assert _spans("aaaaaaaa", scores=[0.1] * 7 + [0.49]) == []
    # 1.5 s of b, c, d, 0.5 s each: a is absent for longer than min_s and nothing else holds
    assert _spans("aaaaaaaabbccddaaaaaaaa") == [(0.0, 2.0, "a"), (3.5, 5.5, "a")]
    # but b back within min_s holds from its first frame: the c and d between are absorbed
    assert _spans("aaaaaaaabcdbcdaaaaaaaa") == [(0.0, 2.0, "a"), (2.0, 3.0, "b"), (3.5, 5.5, "a")]


def test_a_segment_shorter_than_min_s_is_dropped():
    assert _spans("aaabbbbbbbb") == [(0.75, 2.75, "b")]  # a held 0.75 s: its stretch is a gap
    assert _spans("aaaa", duration_s=0.9) == []  # 4 frames, 0.9 s: shorter than min_s
    assert _spans("aaaa") == [(0.0, 1.0, "a")]  # exactly min_s is kept
    # at 5 fps timestamps are not exact in binary (0.2 * 5 != 1.0): five frames still hold 1 s
    assert _spans("aaaaabbbbb", step=0.2) == [(0.0, 1.0, "a"), (1.0, 2.0, "b")]


def test_the_last_frame_ends_one_median_interval_later_capped_at_the_duration():
    t = np.array([0.0, 0.25, 0.5, 1.0, 1.25])  # intervals 0.25, 0.25, 0.5, 0.25: median 0.25
    assert frame_ends(t).tolist() == [0.25, 0.5, 1.0, 1.25, 1.5]
    assert frame_ends(t, duration_s=1.4).tolist()[-1] == 1.4  # capped
    assert frame_ends(t, duration_s=9.0).tolist()[-1] == 1.5  # a later duration does not stretch it
    assert frame_ends(t, duration_s=1.2).tolist()[-1] == 1.5  # a duration before the frame is ignored
    assert _spans("aaaaaaaa", duration_s=1.9) == [(0.0, 1.9, "a")]
    assert _spans("aaaaaaaa") == [(0.0, 2.0, "a")]


def test_min_s_zero_and_one_frame_videos():
    zero = SegmentRule(min_s=0.0, min_score=0.5)
    # nothing is absorbed: every confident run is a segment, every other run a gap
    assert _spans("aabaa", zero) == [(0.0, 0.5, "a"), (0.5, 0.75, "b"), (0.75, 1.25, "a")]
    assert _spans("aabaa", zero, scores=[0.9, 0.9, 0.1, 0.9, 0.9]) == [(0.0, 0.5, "a"), (0.75, 1.25, "a")]
    # one frame: it spans to the end of the video when the duration is known ...
    assert _spans("c", duration_s=2.0) == [(0.0, 2.0, "c")]
    assert _spans("c", duration_s=0.5) == []  # ... shorter than min_s
    assert _spans("c", zero, duration_s=0.5) == [(0.0, 0.5, "c")]
    # ... and no time at all when it is not: no segment, even with min_s 0
    assert _spans("c", zero) == []
    none = find_segments(np.zeros(0), np.zeros(0, np.int32), np.zeros(0, np.float32), zero)
    assert none.frames.tolist() == [] and none.start_s.dtype == np.float64


def test_overlap_with_segment_spans_a_background_and_a_video_label():
    manifest = ((0.3, 0.9, "zumba"), (1.5, 2.0, "abseiling"))
    with_background = truth_spans(manifest, None, background="background")
    # [0, 2): zumba 0.6 s, abseiling 0.5 s, background 0.3 + 0.6 s
    assert true_overlap(0.0, 2.0, with_background) == ("background", pytest.approx(0.9))
    assert true_overlap(0.0, 2.0, truth_spans(manifest, None)) == ("zumba", pytest.approx(0.6))
    assert true_overlap(1.4, 3.0, truth_spans(manifest, None)) == ("abseiling", pytest.approx(0.5))
    assert true_overlap(1.4, 3.0, with_background) == ("background", pytest.approx(1.1))  # to the end
    assert true_overlap(1.0, 1.4, truth_spans(manifest, None)) == (None, None)  # nothing known there
    # a label's spans overlapping each other count once; ties go to the first name
    assert true_overlap(0.0, 2.0, ((0.0, 1.0, "x"), (0.5, 1.5, "x"))) == ("x", 1.5)
    assert true_overlap(0.0, 2.0, ((0.0, 1.0, "y"), (1.0, 2.0, "x"))) == ("x", 1.0)
    # a video label covers the whole video; no label at all is nothing known
    assert true_overlap(0.5, 1.75, truth_spans((), "jump")) == ("jump", 1.25)
    assert truth_spans((), None) == () and true_overlap(0.5, 1.75, ()) == (None, None)


def test_segment_rows_follow_the_schema_and_are_null_where_no_label_is_known():
    t, index, score = _frames("aaaaaaaabbbbbbbb")
    rows = segment_rows("v1", "/x/v1.mp4", t, index, score, LABELS, RULE, duration_s=3.9,
                        truth=truth_spans(((0.0, 2.5, "a"),), None))
    assert rows.schema.equals(SEGMENTS_SCHEMA, check_metadata=True)
    assert rows.to_pylist() == [
        {"video_id": "v1", "uri": "/x/v1.mp4", "segment_index": 0, "start_s": 0.0, "end_s": 2.0, "label": "a",
         "mean_score": pytest.approx(0.9), "max_score": pytest.approx(0.9), "frames": 8, "true_label": "a",
         "overlap_s": 2.0},
        {"video_id": "v1", "uri": "/x/v1.mp4", "segment_index": 1, "start_s": 2.0, "end_s": 3.9, "label": "b",
         "mean_score": pytest.approx(0.9), "max_score": pytest.approx(0.9), "frames": 8, "true_label": "a",
         "overlap_s": 0.5}]
    unknown = segment_rows("v1", "/x/v1.mp4", t, index, score, LABELS, RULE).to_pydict()
    assert unknown["true_label"] == [None, None] and unknown["overlap_s"] == [None, None]
    empty = segment_rows("v1", "/x/v1.mp4", t[:0], index[:0], score[:0], LABELS, RULE)
    assert empty.num_rows == 0 and empty.schema.equals(SEGMENTS_SCHEMA)


# ------------------------------------------------------------------ Aggregate and the writer

META = VideoMeta(3.9, 25.0, 160, 120, "h264")
STAMP = RunStamp("model-dir", "cfg-1", "run-1")


def _clip(classes: str, start: int = 0) -> ClipPrediction:
    """A clip of frames ``start``, ``start + 1``, ... at 4 fps predicting ``classes`` at 0.9."""
    probs = np.full((len(classes), len(LABELS)), 0.1 / 3, np.float32)
    probs[np.arange(len(classes)), [LABELS.index(c) for c in classes]] = 0.9
    frames = np.arange(start, start + len(classes))
    return ClipPrediction(frames, frames * STEP, *top_k_arrays(probs, 2), probs[-1])


def _info(video_id="v1", label=None, segments=(), split="test", error=None, sampled=16):
    return VideoInfo(VideoRef(video_id, f"/x/{video_id}.mp4", label, split, segments=segments), META, 100,
                     sampled, error)


def test_aggregate_builds_segments_from_the_frames_in_clip_order_even_without_frame_rows():
    clips = [(1, _clip("bbbbbbbb", 8)), (0, _clip("aaaaaaaa"))]  # any order in; time order out
    info = _info(segments=((0.0, 1.2, "a"), (2.5, 3.0, "b")))
    rows = segments_batch(info, clips, LABELS, RULE, background="none").to_pylist()
    # b's last frame capped at the video's 3.9 s; b's segment is mostly outside the manifest's spans
    assert [(r["start_s"], r["end_s"], r["label"], r["true_label"]) for r in rows] == [
        (0.0, 2.0, "a", "a"), (2.0, 3.9, "b", "none")]
    assert [r["overlap_s"] for r in rows] == pytest.approx([1.2, 0.5 + 0.9])
    fn = Aggregate(mode="stream", labels=LABELS, k=2, write_frames=False, write_probs=False, stamp=STAMP,
                   segments=RULE)._fn
    (out,) = fn.process(VideoResult(info, clips))
    assert sorted(out.tables) == ["segments", "videos"]  # no frame rows asked for; segments still
    assert out.tables["segments"].to_pylist() == segments_batch(info, clips, LABELS, RULE).to_pylist()
    failed = _info(error=VideoError(ErrorStage.OPEN, "InvalidDataError", "bad"), sampled=0)
    (none,) = fn.process(VideoResult(failed, []))
    assert none.tables["segments"].num_rows == 0 and none.tables["segments"].schema.equals(SEGMENTS_SCHEMA)
    off = Aggregate(mode="stream", labels=LABELS, k=2, write_frames=True, write_probs=False, stamp=STAMP)._fn
    (plain,) = off.process(VideoResult(info, clips))
    assert sorted(plain.tables) == ["frames", "videos"]  # output.write_segments: false


def _video_rows(video_id: str, classes: str | None, split: str = "test"):
    clips = [(0, _clip(classes))] if classes else []
    info = _info(video_id, label="a", split=split, sampled=len(classes or ""),
                 error=None if classes else VideoError(ErrorStage.OPEN, "InvalidDataError", "bad"))
    return {"videos": video_batch(info, clips, "stream", LABELS, 2, STAMP),
            "frames": frames_batch(info, clips, LABELS, 2),
            "segments": segments_batch(info, clips, LABELS, RULE)}


SCHEMAS = {"frames": frames_schema(False), "segments": SEGMENTS_SCHEMA, "videos": VIDEOS_SCHEMA}
SORT_KEYS = {"videos": ("video_id",), "frames": ("video_id", "frame_index"),
             "segments": ("video_id", "segment_index")}


def test_the_writer_commits_segments_with_their_video_and_copes_with_videos_without_any(tmp_path):
    from transforms.records import VideoRows

    videos = {"v0": "aaaaaaaabbbbbbbb", "v1": "aab", "v2": None, "v3": "cccccccc", "v4": None}
    groups = [VideoRows("test", _video_rows(v, c)) for v, c in videos.items()]
    with TestPipeline() as p:
        _ = (p | beam.Create(groups)
             | CommitParts(str(tmp_path), SCHEMAS, SORT_KEYS, run_id="run-1", videos_per_file=2)
             | FinalizeParts(str(tmp_path), SCHEMAS, run_id="run-1"))
    segments = ds.dataset(tmp_path / "segments", format="parquet", partitioning="hive").to_table().to_pylist()
    # nothing holds 1 s in v1, v2 and v4 failed: no rows; v0 has two segments, v3 one
    assert sorted((r["video_id"], r["segment_index"], r["label"]) for r in segments) == [
        ("v0", 0, "a"), ("v0", 1, "b"), ("v3", 0, "c")]
    for part in (tmp_path / "segments" / "split=test").iterdir():  # paired with its videos part
        ids = set(pq.read_table(tmp_path / "videos" / "split=test" / part.name)["video_id"].to_pylist())
        assert set(pq.read_table(part)["video_id"].to_pylist()) <= ids
    assert len(list((tmp_path / "videos" / "split=test").iterdir())) == 3  # 5 videos, 2 a part


def _write_part(root: Path, table: str, name: str, rows: list[pa.RecordBatch]) -> Path:
    folder = partition_dir(str(root), table, "test")
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_table(f"{folder}/{name}", pa.Table.from_batches(rows, schema=SCHEMAS[table]))
    return Path(folder) / name


def test_resume_keeps_and_drops_segments_with_their_videos_part(tmp_path):
    """prepare_resume on an output a killed run left: a done video keeps its segments, a redone one
    loses them, a segments part whose videos part never landed goes, and so do temporary files."""
    rows = {v: _video_rows(v, c) for v, c in
            {"done": "aaaaaaaabbbbbbbb", "failed": None, "old": "cccccccc", "other": "dddddddd"}.items()}
    old_version = rows["old"]["videos"]
    rows["old"]["videos"] = old_version.set_column(
        VIDEOS_SCHEMA.get_field_index("schema_version"), "schema_version", pa.array([1], pa.int32()))
    rows["other"]["videos"] = video_batch(_info("other", "a"), [(0, _clip("dddddddd"))], "stream", LABELS, 2,
                                          RunStamp("model-dir", "cfg-0", "run-1"))
    first, second, orphan = (part_name("run-1", "w", i) for i in range(3))
    for table in SCHEMAS:
        _write_part(tmp_path, table, first, [rows[v][table] for v in ("done", "failed", "old")])
        _write_part(tmp_path, table, second, [rows["other"][table]])
    # a segments part whose videos part never landed, and a temporary file
    lost = [_write_part(tmp_path, "segments", orphan, [rows["done"]["segments"]])]
    lost.append(tmp_path / "segments" / "split=test" / f".{part_name('run-1', 'w', 3)}.ab.tmp")
    lost[-1].write_bytes(b"half")

    Ledger().with_writes(RUN_WRITES, "run-1").write(str(tmp_path))  # as run-1 recorded what it wrote
    state = prepare_resume(str(tmp_path), "cfg-1", "model-dir", "run-2")
    assert state.done == {"done"} and SCHEMA_VERSION > 1  # "old" is of schema version 1: redone
    kept = pq.read_table(tmp_path / "segments" / "split=test" / first).to_pylist()
    assert kept == rows["done"]["segments"].to_pylist() and len(kept) == 2
    assert not (tmp_path / "segments" / "split=test" / second).exists()  # "other": another config
    assert not any(path.exists() for path in lost)
    assert pq.read_table(tmp_path / "videos" / "split=test" / first)["video_id"].to_pylist() == ["done"]


# ------------------------------------------------------------------ a real run


def test_a_run_writes_the_segments_its_frames_give(tmp_path, a0_stream, a0_litert):
    from beam_pipeline.config import load_config
    from beam_pipeline.demo.synthetic import motion_frames, write_video
    from beam_pipeline.job.launcher import run_job
    from beam_pipeline.outputs.report import build_report
    from tests.conftest import REPO

    rng = np.random.default_rng(3)
    for name, motion in (("seg", "moving_right"), ("whole", "moving_up"), ("none", "moving_left")):
        frames = motion_frames(motion, num_frames=25, width=64, height=48, rng=rng)
        write_video(tmp_path / f"{name}.mp4", frames, fps=10)
    manifest = tmp_path / "labels.csv"
    manifest.write_text("uri,label,start_s,end_s,split\n"
                        "seg.mp4,zumba,0.3,1.1,test\nseg.mp4,abseiling,1.6,2.5,test\n"
                        "whole.mp4,juggling balls,,,train\nnone.mp4,,,,train\n"
                        "missing.mp4,zumba,,,test\n")
    out = tmp_path / "out"
    rule = SegmentRule(min_s=0.4, min_score=0.0)  # random weights score about 1/600: open on any
    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["{manifest}"]', f'output.path="{out}"', f'model.handle="{a0_stream}"',
        "sampling.imgz=64",
        f"output.segment_min_s={rule.min_s}", f"output.segment_min_score={rule.min_score}",
        'input.background_label="background"'])
    summary = run_job(cfg, ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert summary.counts["videos_ok"] == 3 and summary.counts["videos_failed"] == 1

    videos = ds.dataset(out / "videos", format="parquet", partitioning="hive").to_table().to_pandas()
    ids = dict(zip(videos.uri.map(lambda u: Path(u).stem), videos.video_id))
    manifest_segments = {ids["seg"]: ((0.3, 1.1, "zumba"), (1.6, 2.5, "abseiling"))}
    got = check_segments(out, rule, manifest_segments, background="background")
    assert len(got) and summary.counts["segments"] == len(got)
    assert ids["missing"] not in set(got.video_id)  # failed: no frames, no segments
    by_video = {stem: got[got.video_id == vid].sort_values("segment_index") for stem, vid in ids.items()}
    for stem in ("seg", "whole", "none"):
        rows = by_video[stem]
        assert len(rows), stem  # 2.5 s of frames at 5 fps: something holds 0.4 s
        assert rows.segment_index.tolist() == list(range(len(rows)))
        assert (rows.start_s.to_numpy()[1:] >= rows.end_s.to_numpy()[:-1]).all()  # in order, apart
        assert (rows.end_s > rows.start_s).all() and rows.end_s.max() <= 2.5 + 1e-6
    # true labels, checked against the manifest by sampling every millisecond of each segment
    ref = VideoRef(ids["seg"], "seg.mp4", None, "test", segments=manifest_segments[ids["seg"]])
    for row in by_video["seg"].itertuples():
        grid = np.arange(row.start_s, row.end_s, 0.001)
        counts = pd.Series([ref.label_at(t, "background") for t in grid]).value_counts()
        assert row.true_label == counts.index[0]
        assert row.overlap_s == pytest.approx(counts.iloc[0] / 1000, abs=0.003)
    whole = by_video["whole"]
    assert set(whole.true_label) == {"juggling balls"}
    assert whole.overlap_s.tolist() == pytest.approx((whole.end_s - whole.start_s).tolist())
    assert by_video["none"].true_label.isna().all() and by_video["none"].overlap_s.isna().all()

    # the README's query (docs/OUTPUT.md's too), on this output
    assert doc_query("accuracy per split", out, "README.md") == doc_query("accuracy per split", out)
    judged = videos[(videos.status == "ok") & videos.label.notna()]
    per_split = duckdb.connect().execute(doc_query("accuracy per split", out, "README.md")).fetchall()
    assert sorted(per_split) == sorted(
        (split, len(rows), pytest.approx((rows.prediction == rows.label).mean()))
        for split, rows in judged.groupby("split"))

    # docs/OUTPUT.md's DuckDB query, on this output, for the label of most segments
    label = got.label.value_counts().index[0]
    query = doc_query("where in which videos does label X happen, longest first", out)
    found = duckdb.connect().execute(query.replace("'juggling balls'", "?"), [label]).fetchall()
    mine = got[got.label == label]
    assert sorted((u, s, e) for u, s, e, *_ in found) == sorted(zip(mine.uri, mine.start_s, mine.end_s))
    assert [x for *_, x, _ in found] == sorted((mine.end_s - mine.start_s).tolist(), reverse=True)

    # the report draws each timeline's segments, as the table holds them
    report = build_report(str(out))
    assert report["timelines"]
    for timeline in report["timelines"]:
        video_id = videos.set_index("uri").loc[timeline["uri"]].video_id
        rows = got[got.video_id == video_id].sort_values("segment_index")
        assert timeline["segments"] == [{"start_s": s, "end_s": e, "label": x}
                                        for s, e, x in zip(rows.start_s, rows.end_s, rows.label)]
        assert (out / "report" / timeline["file"]).stat().st_size > 1000
