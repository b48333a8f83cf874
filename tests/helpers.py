"""Helpers the tests of several layers share: the segments a run must hold, the queries of the docs,
a sample run record, and the demo's opposite motions."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.config import load_config
from beam_pipeline.job.launcher import ExecutedRun, PreparedRun, record
from beam_pipeline.job.resume import ResumeState
from beam_pipeline.job.serving import ServedModel
from beam_pipeline.outputs.run_record import RunRecord
from tests.conftest import REPO
from transforms.aggregate import RunStamp
from transforms.schema import SEGMENTS_SCHEMA
from transforms.segments import SegmentRule, segment_rows, truth_spans

#: Each demo motion's reverse: a video played backwards moves the other way.
OPPOSITE = {"moving_left": "moving_right", "moving_right": "moving_left", "moving_up": "moving_down",
            "moving_down": "moving_up"}

# A four-video run, as ``sample_record`` records it.
STARTED = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
COUNTERS = {"videos_ok": 3, "videos_failed": 1, "frames_sampled": 40, "errors_InvalidDataError": 1,
            "videos_split_train": 3, "videos_split_test": 1}
# (count, sum of ms); RunInference's own batch latency (micro-seconds) is not a stage time
DISTRIBUTIONS = {"probe_ms": (4, 10), "decode_ms": (4, 1200), "transfer_ms": (4, 30), "model_ms": (3, 2100),
                 "aggregate_ms": (3, 7), "write_ms": (2, 50),
                 "inference_batch_latency_micro_secs": (6, 9_000_000)}
WORKERS = {"steady_videos_per_s": 1.23456, "first_done_at": STARTED.timestamp() + 2.5, "processes": 2,
           "pinned_cores": [0, 1], "steady_window": (STARTED.timestamp() + 3.0, STARTED.timestamp() + 9.5),
           "steady_window_videos": 2}


def check_segments(out: Path, rule: SegmentRule, truth: dict[str, tuple] | None = None,
                   background: str | None = None, labels: list[str] | None = None) -> pd.DataFrame:
    """Asserts that ``out``'s segments table is exactly what ``transforms.segments`` makes of the run's
    own frames table (with each video's duration and label, or ``truth``: video id -> manifest
    segments): one set per video, none for a video without frames, every part paired with its
    videos part. ``labels``: the class names, else ``out/labels.txt``. Returns the segments table."""
    labels = labels or (out / "labels.txt").read_text().splitlines()
    videos = ds.dataset(out / "videos", format="parquet", partitioning="hive").to_table().to_pandas()
    frames = ds.dataset(out / "frames", format="parquet", partitioning="hive").to_table().to_pandas()
    folder = out / "segments"
    if folder.is_dir():
        table = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
        for field in SEGMENTS_SCHEMA:
            assert table.schema.field(field.name).type == field.type, field.name
        table = table.cast(SEGMENTS_SCHEMA.append(pa.field("split", pa.string())))
    else:  # no video had a segment
        table = SEGMENTS_SCHEMA.append(pa.field("split", pa.string())).empty_table()
    got = table.to_pandas()
    assert not got.duplicated(["video_id", "segment_index"]).any()
    for part in folder.glob("split=*/part-*.parquet"):
        assert (out / "videos" / part.parent.name / part.name).exists(), part
        assert pq.read_table(part).num_rows > 0
    for video in videos.itertuples():
        mine = frames[frames.video_id == video.video_id].sort_values("timestamp_s")
        segments = (truth or {}).get(video.video_id, ())
        label = None if pd.isna(video.label) else video.label
        expected = segment_rows(video.video_id, video.uri, mine.timestamp_s.to_numpy(),
                                mine.prediction_index.to_numpy(), mine.score.to_numpy(), labels, rule,
                                duration_s=None if pd.isna(video.duration_s) else video.duration_s,
                                truth=truth_spans(segments, label, background)).to_pylist()
        rows = table.filter(pc.equal(table["video_id"], video.video_id)).sort_by("segment_index")
        assert set(rows["split"].to_pylist()) <= {video.split}
        assert rows.drop_columns(["split"]).to_pylist() == expected, video.uri
    return got


def doc_query(comment: str, out: Path, doc: str = "docs/OUTPUT.md") -> str:
    """The DuckDB query under ``-- <comment>`` in ``doc``, reading ``out`` instead of ``out/``."""
    text = (REPO / doc).read_text()
    query = text[text.index(f"-- {comment}\n") + len(comment) + 4:]
    return query[:query.index(";")].replace("'out/", f"'{out}/")


def sample_record(*, local: bool = True, kept: ResumeState | None = None) -> RunRecord:
    """What ``record`` makes of a four-video run (local: with the worker figures)."""
    cfg = load_config(str(REPO / "configs" / "local.yaml"), ['input.paths=["/v/*.mp4"]', 'output.path="/o"'])
    stamp = RunStamp("model-dir", cfg.job_hash(), "20260102T030405Z-abcdef")
    model = ServedModel.of(cfg, "model-dir", "/cache/litert/0123abcd.tflite")
    run = PreparedRun(cfg, ("--direct_num_workers=2",), PipelineOptions([]), model, ("a", "b"), stamp,
                      resume=kept is not None, kept=kept)
    done = ExecutedRun(STARTED, 10.0, COUNTERS, DISTRIBUTIONS, WORKERS if local else None)
    return record(run, done)


def stop_group(process: subprocess.Popen, grace_s: float = 10) -> None:
    """Stops a process started with ``start_new_session=True`` and everything it started: SIGTERM to its
    process group, SIGKILL after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
