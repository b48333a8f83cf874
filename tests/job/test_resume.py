"""Kill a real run mid-way, then --resume: no half-written part is visible; one row per video after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipeline.config import load_config
from beam_pipeline.demo.synthetic import make_labelled_set
from beam_pipeline.job.pipeline import list_videos
from beam_pipeline.outputs.run_record import RunRecord
from tests.conftest import REPO
from tests.helpers import check_segments
from transforms.aggregate import RunStamp
from transforms.progress import read_total
from transforms.schema import SCHEMA_VERSION, VIDEOS_SCHEMA
from transforms.segments import SegmentRule

N_VIDEOS = 36
SEGMENTS = SegmentRule(min_s=0.0, min_score=0.0)  # every run a segment: every ok video has some


@pytest.fixture(scope="module")
def many_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("many")
    make_labelled_set(str(folder), per_class=N_VIDEOS // 4, seconds=3.0, sizes=((96, 72),), rates=(25,))
    (folder / "corrupt.mp4").write_bytes(os.urandom(2048))
    return folder


def _cmd(videos: Path, out: Path, model: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "beam_pipeline", "run", "--config", str(REPO / "configs" / "local.yaml"),
            "--input", f"{videos}/*.mp4", "--output", str(out), "--model", model,
            "--set", "sampling.strategy=all", "--set", "sampling.imgz=64",
            "--set", "output.videos_per_file=1", "--set", "model.stream_chunk=16",
            "--set", "output.segment_min_s=0", "--set", "output.segment_min_score=0",
            "--set", "output.write_embeddings=true",
            "--direct_running_mode=in_memory", "--direct_num_workers=1", *extra]


def _parts(out: Path, table: str) -> list[Path]:
    return sorted((out / table).glob("split=*/part-*.parquet"))


def _segments_of(out: Path, ids) -> list[dict]:
    """The segments rows of the videos ``ids``, by video and index (nulls as None)."""
    table = ds.dataset(out / "segments", format="parquet", partitioning="hive").to_table()
    mine = table.filter(pc.is_in(table["video_id"], value_set=pa.array(sorted(ids), pa.string())))
    return mine.sort_by([("video_id", "ascending"), ("segment_index", "ascending")]).to_pylist()


def _videos(out: Path):
    return ds.dataset(out / "videos", format="parquet", partitioning="hive").to_table().to_pandas()


def test_kill_mid_run_then_resume_gives_one_row_per_video(tmp_path, many_videos, a0_stream):
    out = tmp_path / "out"
    proc = subprocess.Popen(_cmd(many_videos, out, a0_stream), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=tmp_path, start_new_session=True)
    deadline = time.monotonic() + 600
    while len(_parts(out, "videos")) < 8:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the run committed no parts in 10 minutes"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    # what a reader sees after the kill: whole files only, each a committed video
    killed = _videos(out)
    assert 8 <= len(killed) < N_VIDEOS + 1 and killed.video_id.is_unique
    for part in _parts(out, "videos") + _parts(out, "frames") + _parts(out, "segments"):
        assert pq.read_table(part).num_rows > 0
    (first_run,) = set(killed.run_id)
    kept_ids = set(killed[killed.status == "ok"].video_id)
    kept_segments = _segments_of(out, kept_ids)

    resumed = subprocess.run(_cmd(many_videos, out, a0_stream, "--resume"), capture_output=True, text=True,
                             timeout=900, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    kept = int((killed.status == "ok").sum())
    assert f"{kept} videos done and kept" in resumed.stdout
    videos = _videos(out)
    assert len(videos) == N_VIDEOS + 1 and videos.video_id.is_unique
    assert (videos.status == "ok").sum() == N_VIDEOS
    corrupt = videos[videos.uri.str.endswith("corrupt.mp4")].iloc[0]
    assert corrupt.status == "failed"
    run = RunRecord.read(str(out))
    assert run.resume.kept_videos == kept and run.resume.previous_runs == (first_run,)
    assert run.counts["videos"] == N_VIDEOS + 1 - kept  # this run did only the rest
    # the kept rows are the first run's, untouched; everything else is the second run's
    by_run = videos.groupby("run_id").size().to_dict()
    assert by_run == {first_run: kept, run.run_id: N_VIDEOS + 1 - kept}
    frames = ds.dataset(out / "frames", format="parquet", partitioning="hive").to_table().to_pandas()
    per_video = frames.groupby("video_id").size()
    ok = videos[videos.status == "ok"].set_index("video_id")
    assert per_video.to_dict() == ok.frames_sampled.to_dict()  # no frame row twice, none missing
    assert not frames.duplicated(["video_id", "frame_index"]).any()
    # one set of segments per video, the one its frames give, kept or redone with its videos row
    segments = check_segments(out, SEGMENTS)
    assert set(segments.video_id) == set(ok.index)
    assert _segments_of(out, kept_ids) == kept_segments  # the kept videos' own, untouched
    # the embeddings too: one per ok video and per segment, the kept ones the first run's
    embeddings = ds.dataset(out / "embeddings", format="parquet", partitioning="hive").to_table().to_pandas()
    assert len(embeddings) == len(ok) + len(segments)
    assert not embeddings.duplicated(["video_id", "segment_index"]).any()
    assert set(embeddings[embeddings.segment_index.isna()].video_id) == set(ok.index)

    # a changed config redoes every video, still one row each
    again = subprocess.run(_cmd(many_videos, out, a0_stream, "--resume", "--set", "model.top_k=3"),
                           capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 videos done and kept" in again.stdout
    redone = _videos(out)
    assert len(redone) == N_VIDEOS + 1 and redone.video_id.is_unique and redone.run_id.nunique() == 1
    assert all(len(k) == 3 for k in redone[redone.status == "ok"].top_k_labels)
    assert set(check_segments(out, SEGMENTS).video_id) == set(redone[redone.status == "ok"].video_id)


def test_resume_and_overwrite_exclude_each_other(tmp_path, a0_stream, many_videos, capsys):
    from beam_pipeline.cli import main

    code = main(["run", "--input", f"{many_videos}/*.mp4", "--output", str(tmp_path / "o"),
                 "--model", a0_stream, "--resume", "--overwrite"])
    assert code == 2 and "--resume and --overwrite: choose one" in capsys.readouterr().err


def test_a_resumed_job_reads_the_done_set_itself_and_joins_it_with_the_listing(tmp_path):
    """list_videos with a resume stamp: the job reads ``videos`` parts (no ids in the graph) and
    leaves out exactly the done ones; an output with no parts yet leaves out nothing. The progress
    total is the videos listed less those kept."""
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("video_id,uri\n" + "".join(f"{v},/x/{v}.mp4\n" for v in "abcde"))
    stamp = RunStamp("model-dir", "cfg-1", "20260102T000000Z-cccccc")
    old, now = SCHEMA_VERSION - 1, SCHEMA_VERSION
    rows = [("a", "ok", "cfg-1", "model-dir", "20260101T000000Z-aaaaaa", now),    # done
            ("b", "failed", "cfg-1", "model-dir", "20260101T000000Z-aaaaaa", now),  # redone
            ("c", "ok", "cfg-0", "model-dir", "20260101T000000Z-aaaaaa", now),      # other config
            ("d", "ok", "cfg-1", "model-dir", stamp.run_id, now),                   # this run's own row
            ("a", "ok", "cfg-1", "model-dir", "20251231T000000Z-bbbbbb", now),      # a second copy
            ("e", "ok", "cfg-1", "model-dir", "20251231T000000Z-bbbbbb", old)]      # older tables: redone
    names = ("video_id", "status", "config_hash", "model", "run_id", "schema_version")
    columns = dict(zip(names, zip(*rows)))
    columns["uri"] = [f"/x/{v}.mp4" for v in columns["video_id"]]
    table = pa.table([pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(len(rows), f.type)
                      for f in VIDEOS_SCHEMA], schema=VIDEOS_SCHEMA)
    split_dir = tmp_path / "out" / "videos" / "split=train"
    split_dir.mkdir(parents=True)
    pq.write_table(table, split_dir / "part-20260101T000000Z-aaaaaa-0a1b2c3d-00000.parquet")
    out = tmp_path / "out"
    for root, expected in ((out, list("bcde")), (tmp_path / "empty", list("abcde"))):
        cfg = load_config(str(REPO / "configs" / "local.yaml"),
                          [f'input.paths=["{manifest}"]', f'output.path="{root}"'])
        progress = tmp_path / f"progress-{root.name}"
        progress.mkdir()
        with TestPipeline() as p:
            ids = list_videos(p, cfg, stamp, str(progress)) | beam.Map(lambda ref: ref.video_id)
            assert_that(ids, equal_to(expected))
        assert read_total(str(progress)) == len(expected)
