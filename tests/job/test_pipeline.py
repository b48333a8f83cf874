"""build_pipeline on a TestPipeline (base mode) and the CLI end to end (stream mode)."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipeline.config import load_config
from beam_pipeline.job.pipeline import build_pipeline, list_videos
from beam_pipeline.job.serving import ServedModel
from beam_pipeline.outputs.run_record import RunRecord, Splits
from models.labels import read_labels
from tests.conftest import REPO
from tests.helpers import check_segments
from transforms.aggregate import RunStamp
from transforms.progress import read_total
from transforms.schema import FRAMES_SCHEMA, SCHEMA_VERSION, VIDEOS_SCHEMA
from transforms.segments import SegmentRule


def _read(root: Path, table: str) -> pa.Table:
    return ds.dataset(root / table, format="parquet", partitioning="hive").to_table()


def test_base_mode_pipeline_writes_one_row_per_video_and_covers_every_frame(tmp_path, mixed_videos, a0_base):
    out = tmp_path / "out"
    cfg = load_config(str(REPO / "configs" / "movinet_a0_base.yaml"), [
        f'input.paths=["{mixed_videos["dir"]}/*"]', f'output.path="{out}"',
        "sampling.fps=4", "sampling.n_frames=4", "sampling.clip_stride=2", "sampling.imgz=64",
        "output.write_probs=true", "output.segment_min_s=0.5", "output.segment_min_score=0",
        "output.write_embeddings=true"])
    labels = read_labels(f"{a0_base}/labels.txt")
    with TestPipeline() as p:
        groups = build_pipeline(p, cfg, model=ServedModel.of(cfg, a0_base),
                                labels=labels,
                                stamp=RunStamp(a0_base, cfg.job_hash(), "test-run"))
        videos = groups | beam.Flatten() | beam.Map(lambda g: g.tables["videos"].to_pylist()[0])
        statuses = videos | beam.Map(lambda r: (r["uri"].rsplit("/", 1)[-1], r["status"]))
        expected = [(name, "ok") for name in mixed_videos["good"]] + [(mixed_videos["corrupt"], "failed")]
        assert_that(statuses, equal_to(expected))

    videos = _read(out, "videos").to_pandas().set_index("video_id")
    frames = _read(out, "frames").to_pandas()
    assert len(videos) == len(mixed_videos["good"]) + 1
    for video_id, video in videos[videos.status == "ok"].iterrows():
        mine = frames[frames.video_id == video_id].sort_values("frame_index")
        # every sampled frame has exactly one row, with a clip and a prediction from the labels
        assert len(mine) == video.frames_sampled
        assert mine.frame_index.is_unique
        assert set(mine.prediction) <= set(labels)
        assert mine.clip_index.is_monotonic_increasing
        assert all(len(p) == 5 for p in mine.probs)
        # stride 2 over 4-frame clips: clip k writes frames 2k and 2k+1 (the last writes the rest)
        positions = list(range(len(mine)))
        assert mine.clip_index.tolist() == [min(i // 2, max(0, (len(mine) - 3) // 2)) for i in positions]
    failed = videos[videos.status == "failed"].iloc[0]
    assert failed.error_stage == "open" and failed.error_message
    # base mode: segments from the clips' frame labels, as the frames table gives them
    segments = check_segments(out, SegmentRule(min_s=0.5, min_score=0.0), labels=labels)
    assert set(segments.video_id) == set(videos[videos.status == "ok"].index)
    # embeddings from the base export's embed signature: a row per decoded video and per segment
    embeddings = _read(out, "embeddings").to_pandas()
    whole = embeddings[embeddings.segment_index.isna()]
    assert set(whole.video_id) == set(videos[videos.status == "ok"].index)
    spans = embeddings.dropna(subset=["segment_index"]).sort_values(["video_id", "segment_index"])
    assert spans[["video_id", "start_s", "end_s"]].values.tolist() == \
        segments.sort_values(["video_id", "segment_index"])[["video_id", "start_s", "end_s"]].values.tolist()
    vectors = np.stack(embeddings.embedding.to_numpy())
    assert vectors.shape[1] == 480
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_cli_run_end_to_end(tmp_path, mixed_videos, a0_stream):
    out = tmp_path / "out"
    manifest = tmp_path / "labels.csv"
    names = sorted(mixed_videos["good"])
    manifest.write_text("uri,label,split\n" + "".join(
        f"{mixed_videos['dir']}/{n},{'abseiling' if i % 2 else 'zumba'},{'test' if i < 2 else 'train'}\n"
        for i, n in enumerate(names)) + f"{mixed_videos['dir']}/{mixed_videos['corrupt']},zumba,valid\n")
    cmd = [sys.executable, "-m", "beam_pipeline", "run", "--config", str(REPO / "configs" / "local.yaml"),
           "--input", str(manifest), "--output", str(out), "--model", a0_stream,
           "--set", "model.stream_chunk=8", "--set", "sampling.imgz=64"]  # the conversion other tests use
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok 4, partial 0, failed 1" in proc.stdout
    assert "videolabel: 5/5 videos (100%), 1 failed" in proc.stderr  # the progress line, not a terminal
    assert "errors by type: InvalidDataError 1" in proc.stdout
    # a0_stream was exported without --checkpoint: said at start (a log line), in the summary, in _run.json
    warning = f"{a0_stream} has random weights (export-movinet without --checkpoint): its labels mean nothing"
    assert warning in proc.stderr and f"warning: {warning}" in proc.stdout
    assert json.loads((out / "_run.json").read_text())["model"]["weights"] == "random"

    videos, frames = _read(out, "videos"), _read(out, "frames")
    # columns and types are the declared schema, plus the split partition
    for table, schema in ((videos, VIDEOS_SCHEMA), (frames, FRAMES_SCHEMA)):
        for field in schema:
            assert table.schema.field(field.name).type == field.type, field.name
        assert table.schema.field("split").type in (pa.string(), pa.dictionary(pa.int32(), pa.string()))
    assert videos.num_rows == 5
    v = videos.to_pandas().set_index("uri")
    corrupt = v.loc[f"{mixed_videos['dir']}/{mixed_videos['corrupt']}"]
    assert (corrupt.status, corrupt.split, corrupt.error_stage) == ("failed", "valid", "open")
    assert corrupt.error_type and pd.isna(corrupt.prediction) and pd.isna(corrupt.is_error)
    labels = (out / "labels.txt").read_text().splitlines()
    assert len(labels) == 600
    for i, name in enumerate(names):
        row = v.loc[f"{mixed_videos['dir']}/{name}"]
        n, fps = mixed_videos["good"][name]
        assert row.status == "ok" and row.frames_decoded == n
        assert row.split == ("test" if i < 2 else "train")
        assert row.label == ("abseiling" if i % 2 else "zumba")
        assert row.prediction in labels and row.prediction == row.top_k_labels[0]
        assert len(row.top_k_labels) == 5 and list(row.top_k_scores) == sorted(row.top_k_scores, reverse=True)
        assert row.is_error == (row.prediction != row.label)
        assert row.duration_s == pytest.approx(n / fps, abs=0.1)
        assert row.schema_version == SCHEMA_VERSION and row.run_id and row.config_hash

    f = frames.to_pandas()
    for video_id, group in f.groupby("video_id"):
        video = videos.to_pandas().set_index("video_id").loc[video_id]
        ts = group.sort_values("frame_index").timestamp_s
        assert ts.is_monotonic_increasing and ts.is_unique
        assert ts.min() >= 0 and ts.max() < video.duration_s
        assert len(group) == video.frames_sampled == pytest.approx(video.duration_s * 5, abs=1)

    run = RunRecord.read(str(out))
    assert run.counts["videos"] == 5 and run.counts["videos_failed"] == 1
    assert run.counts["frames_sampled"] == len(f)
    assert run.counts["errors_InvalidDataError"] == 1
    assert run.counts["frames_decoded"] == sum(n for n, _ in mixed_videos["good"].values())
    assert run.model.handle == a0_stream and run.config["model"]["stream_chunk"] == 8

    assert run.splits == Splits(ratios={"train": 0.8, "valid": 0.1, "test": 0.1}, salt="videolabel",
                                videos={"test": 2, "train": 2, "valid": 1})
    assert run.throughput.videos_per_s == pytest.approx(5 / run.wall_s, rel=0.01)
    assert run.throughput.frames_per_s == pytest.approx(len(f) / run.wall_s, rel=0.01)
    throughput = run.throughput
    # after start-up: faster than over the whole run, which start-up (TF import, model load) dominates
    assert throughput.steady_videos_per_s > throughput.videos_per_s
    assert 0 < throughput.startup_s < run.wall_s
    # local.yaml, five small videos: in this process (direct_running_mode auto), not pinned to one core
    assert throughput.running_mode == "in_memory"
    assert (throughput.worker_processes, throughput.pinned_cores) == (1, ())
    assert throughput.running_mode_reason == "auto: 5 videos, 0.4 MB"
    # one worker: at work from its first finished video to its last, and the four after the first in it
    since, until = throughput.steady_window
    assert datetime.datetime.fromisoformat(run.started_at).timestamp() < since < until
    assert throughput.steady_window_videos == 4
    stages = run.timings.stage_s
    # the decoded videos' frames crossed from the decoder process, and their rows were built
    assert min(stages.probe, stages.decode, stages.transfer, stages.model, stages.aggregate, stages.write) > 0
    assert stages.transfer < stages.decode  # raw bytes through the pipe: less than decoding them
    assert sum(stages.model_dump().values()) < run.wall_s * 2  # two workers at most
    assert run.timings.mean_ms.decode_per_video > 0 and run.timings.mean_ms.model_per_video > 0

    # queryable with no glue: the three queries of the docs, in DuckDB
    con = duckdb.connect()
    videos_sql = f"read_parquet('{out}/videos/*/*.parquet', hive_partitioning=true)"
    frames_sql = f"read_parquet('{out}/frames/*/*.parquet', hive_partitioning=true)"
    accuracy = dict((s, (n, a)) for s, n, a in con.execute(
        f"SELECT split, count(*), avg(CASE WHEN NOT is_error THEN 1.0 ELSE 0.0 END) FROM {videos_sql} "
        "WHERE status = 'ok' GROUP BY split").fetchall())
    ok_videos = v[v.status == "ok"]
    for split in ("test", "train"):
        mine = ok_videos[ok_videos.split == split]
        assert accuracy[split] == (len(mine), pytest.approx((~mine.is_error.astype(bool)).mean()))
    failed = con.execute(
        f"SELECT uri, error_stage, error_type FROM {videos_sql} WHERE status = 'failed'").fetchall()
    assert failed == [(corrupt.name, "open", corrupt.error_type)]
    one = names[0]
    timeline = con.execute(
        f"SELECT f.timestamp_s, f.prediction FROM {frames_sql} f JOIN {videos_sql} v USING (video_id) "
        f"WHERE v.uri LIKE '%{one}' ORDER BY f.timestamp_s").fetchall()
    assert [t for t, _ in timeline] == sorted(f[f.uri.str.endswith(one)].timestamp_s)
    assert len(timeline) == v.loc[f"{mixed_videos['dir']}/{one}"].frames_sampled
    # pyarrow reads the partitioning: a filter on split touches only that folder's files
    test_only = ds.dataset(out / "videos", format="parquet", partitioning="hive").to_table(
        filter=ds.field("split") == "test")
    assert test_only.num_rows == 2 and set(test_only["split"].to_pylist()) == {"test"}

    # a second run into the same folder is refused unless --overwrite
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert again.returncode == 2 and "already holds a videolabel output" in again.stderr

    # the glob form, replacing the run: no labels, hash splits, the same five videos
    glob_cmd = [f"{mixed_videos['dir']}/*" if arg == str(manifest) else arg for arg in cmd] + ["--overwrite"]
    proc = subprocess.run(glob_cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    replaced = _read(out, "videos").to_pandas()
    assert len(replaced) == 5 and replaced.label.isna().all() and replaced.is_error.isna().all()
    assert set(replaced.run_id) != {run.run_id}


def test_segment_manifest_labels_each_frame_by_its_segment(tmp_path, mixed_videos, a0_stream):
    video = f"{mixed_videos['dir']}/right_160x120_25.mp4"  # 2 s, sampled at 5 fps: 0.0, 0.2, ..., 1.8
    manifest = tmp_path / "segments.csv"
    manifest.write_text(f"uri,start_s,end_s,label,split\n{video},0.3,0.9,zumba,test\n"
                        f"{video},1.5,2.0,abseiling,test\n")
    out = tmp_path / "out"
    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["{manifest}"]', f'output.path="{out}"', "sampling.imgz=64",
        "input.background_label=background"])
    labels = read_labels(f"{a0_stream}/labels.txt")
    with TestPipeline() as p:
        build_pipeline(p, cfg, model=ServedModel.of(cfg, a0_stream),
                       labels=labels, stamp=RunStamp(a0_stream, "h", "r"))
    (video_row,) = _read(out, "videos").to_pylist()
    assert video_row["label"] is None and video_row["is_error"] is None and video_row["split"] == "test"
    frames = sorted(_read(out, "frames").to_pylist(), key=lambda r: r["timestamp_s"])
    expected = ["background", "background", "zumba", "zumba", "zumba", "background", "background",
                "background", "abseiling", "abseiling"]
    assert [f["label"] for f in frames] == expected
    assert [f["is_error"] for f in frames] == [f["prediction"] != f["label"] for f in frames]


def test_each_video_is_committed_as_it_finishes_not_at_the_end(tmp_path, mixed_videos, a0_stream):
    """No stage boundary between the model and the writer: on Beam's local runner a Flatten or a
    grouping there would hold every row back until all videos are classified."""
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["{mixed_videos["dir"]}/*"]', f'output.path="{tmp_path}"'])
    p = beam.Pipeline()
    build_pipeline(p, cfg, model=ServedModel.of(cfg, a0_stream),
                   labels=["x"] * 600, stamp=RunStamp(a0_stream, "h", "r"))
    _, stages = fn_runner.FnApiRunner().create_stages(p.to_runner_api())
    (fused,) = [s for s in stages if any("Classify" in t.unique_name for t in s.transforms)]
    names = " ".join(t.unique_name for t in fused.transforms)
    for step in ("DecodeAndSample", "Classify/DecodeAndInfer", "Aggregate/Classified/ToRows",
                 "WriteOutputs/Classified/Commit"):
        assert step in names, step


def test_the_progress_total_is_noted_before_the_first_video_is_worked_on(tmp_path, mixed_videos):
    """The count of the videos to do branches off before the Reshuffle: on Beam's local runner it is
    fused with the listing, so the total is in the progress folder before any video goes further."""
    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["{mixed_videos["dir"]}/*"]', f'output.path="{tmp_path}/out"'])
    folder = tmp_path / "progress"
    folder.mkdir()
    with TestPipeline() as p:
        refs = list_videos(p, cfg, progress_dir=str(folder))
        # what each video's first step after the listing sees in the progress folder
        assert_that(refs | beam.Map(lambda _ref: read_total(str(folder))), equal_to([5] * 5))
    assert read_total(str(folder)) == 5
