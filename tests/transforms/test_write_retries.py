"""Exactly one row per video after bundle retries: the finalize step alone, then a real retrying runner."""

from __future__ import annotations

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from beam_pipeline.config import load_config
from beam_pipeline.demo.synthetic import make_labelled_set
from beam_pipeline.job.launcher import run_job
from tests.conftest import REPO
from tests.helpers import check_segments
from transforms import write
from transforms.schema import SEGMENTS_SCHEMA, VIDEOS_SCHEMA
from transforms.segments import SegmentRule
from transforms.write import finalize_parts, part_name, write_empty_tables


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_finalize_deletes_only_this_runs_uncommitted_parts_and_temp_files(tmp_path):
    run, other = "20260101T000000Z-aaaaaa", "20251231T000000Z-bbbbbb"
    kept_name, lost_name = part_name(run, "0a1b2c3d", 0), part_name(run, "0a1b2c3d", 1)
    keep = [_touch(tmp_path / t / "split=train" / kept_name) for t in ("videos", "frames")]
    keep.append(_touch(tmp_path / "videos" / "split=valid%2Fodd" / part_name(run, "ffff0000", 3)))
    keep.append(_touch(tmp_path / "videos" / "split=train" / part_name(other, "0a1b2c3d", 1)))  # other run
    keep.append(_touch(tmp_path / "videos" / "split=train" / f".{part_name(other, 'beef0000', 0)}.ab.tmp"))
    keep.append(_touch(tmp_path / "segments" / "split=train" / lost_name))  # a table not written here
    lost = [_touch(tmp_path / t / "split=train" / lost_name) for t in ("videos", "frames")]
    lost.append(_touch(tmp_path / "frames" / "split=test" / kept_name))  # same name, other split
    lost.append(_touch(tmp_path / "videos" / "split=test" / f".{lost_name}.0123abcd.tmp"))
    committed = ["split=train/" + kept_name, "split=valid%2Fodd/" + part_name(run, "ffff0000", 3)]

    deleted = finalize_parts(str(tmp_path), ["frames", "videos"], run, committed)
    assert deleted == sorted(str(p) for p in lost)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in lost)
    # idempotent: a retried finalize finds nothing more to do, and fails on nothing
    assert finalize_parts(str(tmp_path), ["frames", "videos"], run, committed) == []
    assert all(p.exists() for p in keep)
    # an output with no parts at all (a run that wrote nothing)
    assert finalize_parts(str(tmp_path / "empty"), ["videos"], run, []) == []


def test_a_table_with_no_part_gets_an_empty_one_that_queries_read_as_zero_rows(tmp_path):
    import duckdb

    run = "20260101T000000Z-aaaaaa"
    name = part_name(run, "0a1b2c3d", 0)
    write.write_table(str(tmp_path / "videos" / "split=test" / name), VIDEOS_SCHEMA.empty_table())
    schemas = {"segments": SEGMENTS_SCHEMA, "videos": VIDEOS_SCHEMA}
    written = write_empty_tables(str(tmp_path), schemas, run, ["split=test/" + name])
    assert written == [str(tmp_path / "segments" / "split=test" / part_name(run, "empty", 0))]
    assert write_empty_tables(str(tmp_path), schemas, run, ["split=test/" + name]) == []  # idempotent
    # docs/OUTPUT.md's way of reading a table: zero rows, every column of the schema, no error
    segments = f"read_parquet('{tmp_path}/segments/*/*.parquet', hive_partitioning = true)"
    query = duckdb.sql(f"SELECT * FROM {segments}")
    assert query.fetchall() == [] and query.columns == [*SEGMENTS_SCHEMA.names, "split"]
    assert ds.dataset(tmp_path / "segments", partitioning="hive").schema.names[:-1] == SEGMENTS_SCHEMA.names
    # a run that committed nothing at all: every table, in split=train
    assert write_empty_tables(str(tmp_path / "none"), schemas, run, []) == sorted(
        str(tmp_path / "none" / t / "split=train" / part_name(run, "empty", 0)) for t in schemas)


def test_a_retried_bundle_leaves_one_row_per_video(tmp_path, monkeypatch, a0_stream):
    """BundleBasedDirectRunner retries a failed bundle as Dataflow does; the first bundle to commit a
    videos part fails right after the rename, so its parts are on disk when the retry writes again."""
    videos_dir = tmp_path / "in"
    make_labelled_set(str(videos_dir), per_class=1, seconds=1.0, sizes=((64, 48),), rates=(10,))
    out = tmp_path / "out"
    failed_parts = []
    real = write.FileSystems

    class FlakyFileSystems(real):
        @staticmethod
        def rename(sources, destinations):
            real.rename(sources, destinations)
            if not failed_parts and "/videos/" in destinations[0]:
                failed_parts.append(destinations[0])
                raise OSError("injected: the worker died right after committing a videos part")

    monkeypatch.setattr(write, "FileSystems", FlakyFileSystems)
    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["{videos_dir}/*.mp4"]', f'output.path="{out}"', f'model.handle="{a0_stream}"',
        "sampling.imgz=64", "output.videos_per_file=1", "output.segment_min_s=0",
        "output.segment_min_score=0", "output.write_embeddings=true"])
    summary = run_job(cfg, ["--runner=BundleBasedDirectRunner", "--direct_running_mode=in_memory"])

    assert len(failed_parts) == 1  # the failure happened, after its part was committed
    (failed,) = failed_parts
    assert not (out / failed.split("/out/", 1)[1]).exists()
    assert not (out / "frames" / failed.split("/videos/", 1)[1]).exists()
    assert not (out / "segments" / failed.split("/videos/", 1)[1]).exists()
    assert not (out / "embeddings" / failed.split("/videos/", 1)[1]).exists()
    videos = ds.dataset(out / "videos", format="parquet", partitioning="hive").to_table().to_pandas()
    assert len(videos) == 4 and videos.video_id.is_unique and set(videos.status) == {"ok"}
    assert set(videos.run_id) == {summary.run_id}
    frames = ds.dataset(out / "frames", format="parquet", partitioning="hive").to_table().to_pandas()
    assert not frames.duplicated(["video_id", "frame_index"]).any()
    per_video = frames.groupby("video_id").size().to_dict()
    assert per_video == videos.set_index("video_id").frames_sampled.to_dict()
    # min_s 0, min_score 0: every run of a label is a segment, so every video has one at least
    segments = check_segments(out, SegmentRule(min_s=0.0, min_score=0.0))
    assert set(segments.video_id) == set(videos.video_id) and summary.counts["segments"] == len(segments)
    # embeddings: one per video and one per segment, exactly, though a bundle was retried
    embeddings = ds.dataset(out / "embeddings", format="parquet", partitioning="hive").to_table().to_pandas()
    assert len(embeddings) == len(videos) + len(segments)
    assert not embeddings.duplicated(["video_id", "segment_index"]).any()
    assert summary.counts["files_discarded"] >= 1
    assert not list(out.glob("*/*/.*.tmp"))
    for part in out.glob("*/*/part-*.parquet"):  # every part left pairs up and holds rows
        assert pq.read_table(part).num_rows > 0


if __name__ == "__main__":
    pytest.main([__file__, "-x", "-q"])
