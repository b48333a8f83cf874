"""The whole job on Apache Flink (Beam's portable Flink runner, SDK workers in processes of their own):
the rows DirectRunner gives, and exactly one row per video after an SDK worker and a TaskManager are
killed mid-run on a session cluster of its own processes (``tests.flink_cluster``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from beam_pipeline.config import load_config
from beam_pipeline.demo.synthetic import make_labelled_set
from beam_pipeline.job.flink import jobserver
from beam_pipeline.job.launcher import run_job
from tests import media
from tests.conftest import IN_MEMORY, REPO
from tests.flink_cluster import FlinkCluster
from tests.helpers import check_segments
from transforms.segments import SegmentRule

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    jobserver.job_server_jar() is None, reason="Beam's Flink job server is not fetched (make flink)")]

# Small frames, a videos part per two videos (many commits to kill between), every run of a label a segment.
SETTINGS = ["sampling.imgz=64", "output.videos_per_file=2", "output.segment_min_s=0",
            "output.segment_min_score=0"]


def _job_servers() -> list[int]:
    """Process ids of the job server JVMs this process started and that still run."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if ppid == os.getpid() and jobserver.JAR_NAME.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _plain(column: pd.Series) -> list:
    return [list(v) if isinstance(v, np.ndarray) else v for v in column]


def _table(out: Path, name: str) -> pd.DataFrame:
    return ds.dataset(out / name, format="parquet", partitioning="hive").to_table().to_pandas()


@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory) -> dict:
    """Good clips, broken files (empty, random bytes, cut short) and a segment manifest of two clips."""
    root = tmp_path_factory.mktemp("flink_inputs")
    good = root / "clips"
    make_labelled_set(str(good), per_class=2, seconds=1.5, sizes=((64, 48), (80, 64)), rates=(10, 15))
    media.zero_bytes(good / "empty.mp4")
    media.random_bytes(good / "noise.mp4")
    media.cut_short(good / "moving_left_000.mp4", good / "cut.mp4", keep=0.4)
    seg = root / "segmented"
    make_labelled_set(str(seg), per_class=1, motions=["moving_up", "moving_down"], seconds=2.0,
                      sizes=((64, 48),), rates=(10,), seed=3)
    manifest = root / "segments.csv"
    manifest.write_text("uri,start_s,end_s,label,split\n"
                        f"{seg}/moving_up_000.mp4,0.0,0.9,moving_up,test\n"
                        f"{seg}/moving_up_000.mp4,1.1,2.0,moving_down,test\n"
                        f"{seg}/moving_down_000.mp4,0.2,1.6,moving_down,train\n")
    return {"paths": [f"{good}/*.mp4", str(manifest)], "videos": 8 + 3 + 2}


def _config(config: str, inputs: list[str], out: Path, model: str, extra=()):
    paths = ", ".join(f'"{p}"' for p in inputs)
    return load_config(str(REPO / "configs" / config), [f"input.paths=[{paths}]", f'output.path="{out}"',
                                                       f'model.handle="{model}"', *SETTINGS, *extra])


def test_flink_gives_the_rows_the_direct_runner_gives(mixed_inputs, a0_stream, a0_litert, tmp_path):
    """Same inputs through DirectRunner and through Flink (embedded, two slots, two SDK worker processes):
    the same videos, frames and segments, predictions equal to 1e-5, the same failures; then a
    ``--resume`` on Flink (its CoGroupByKey) redoes the failed videos only."""
    direct, flink = tmp_path / "direct", tmp_path / "flink"
    run_job(_config("local.yaml", mixed_inputs["paths"], direct, a0_stream), IN_MEMORY)
    summary = run_job(_config("flink.yaml", mixed_inputs["paths"], flink, a0_stream), [])
    assert _job_servers() == []  # stopped with the run, not at this process's exit

    assert summary.beam_args == () and summary.throughput.worker_processes == 2
    assert summary.counts["videos"] == mixed_inputs["videos"]
    keys = {"videos": ["video_id"], "frames": ["video_id", "frame_index"],
            "segments": ["video_id", "segment_index"]}
    for name, key in keys.items():
        a = _table(direct, name).sort_values(key).reset_index(drop=True)
        b = _table(flink, name).sort_values(key).reset_index(drop=True)
        assert not b.duplicated(key).any() and len(a) == len(b), name
        for column in a.columns:
            if column in ("run_id", "config_hash", "top_k_scores"):
                continue
            if a[column].dtype.kind == "f":
                np.testing.assert_allclose(b[column].to_numpy(float), a[column].to_numpy(float), atol=1e-5,
                                           err_msg=f"{name}.{column}")
            else:
                assert _plain(b[column]) == _plain(a[column]), f"{name}.{column}"
        if name != "segments":
            top_a, top_b = (np.stack(t.top_k_scores.dropna().to_numpy()) for t in (a, b))
            assert np.abs(top_b - top_a).max() <= 1e-5
    videos = _table(flink, "videos")
    broken = {Path(u).name for u in videos[videos.status != "ok"].uri}
    assert broken == {"empty.mp4", "noise.mp4", "cut.mp4"} and summary.counts["videos_ok"] == len(videos) - 3
    assert videos[videos.status != "ok"].error_message.str.len().min() > 10  # as DirectRunner's (above)
    frames = _table(flink, "frames")
    assert set(frames.label.dropna()) == {"moving_up", "moving_down"}  # the segment manifest's labels

    again = run_job(_config("flink.yaml", mixed_inputs["paths"], flink, a0_stream), [], resume=True)
    assert again.resume.kept_videos == mixed_inputs["videos"] - 3  # all but the three broken files
    assert again.counts["videos"] == 3 and again.counts["resume_done_ids"] == mixed_inputs["videos"] - 3
    resumed = _table(flink, "videos")
    assert resumed.video_id.is_unique and len(resumed) == mixed_inputs["videos"]


@pytest.fixture(scope="module")
def flink_cluster(tmp_path_factory):
    with FlinkCluster(tmp_path_factory.mktemp("flink_cluster"), taskmanagers=2, slots=2) as running:
        yield running


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("archive")
    make_labelled_set(str(folder), per_class=25, seconds=1.0, sizes=((64, 48),), rates=(10,))
    return {"glob": f"{folder}/*.mp4", "videos": 100}


def _committed(out: Path) -> int:
    return len(list((out / "videos").glob("split=*/part-*.parquet")))


def _rows_on_disk(out: Path) -> dict:
    """What the committed videos parts hold at this moment: parts, rows, distinct videos."""
    parts = list((out / "videos").glob("split=*/part-*.parquet"))
    ids = []
    if parts:
        ids = ds.dataset(parts, format="parquet").to_table(columns=["video_id"]).column(0).to_pylist()
    return {"parts": len(parts), "rows": len(ids), "videos": len(set(ids))}


def _run_and_break(cluster: FlinkCluster, archive: dict, out: Path, model: str,
                   faults) -> tuple[int, str, list]:
    """``videolabel run`` on the cluster; each of ``faults`` (name, callable) once two more videos parts
    are committed. Returns the run's exit code, its stderr, and what the output held at each fault."""
    command = [sys.executable, "-m", "beam_pipeline", "run", "--config", str(REPO / "configs" / "flink.yaml"),
               "--input", archive["glob"], "--output", str(out), "--model", model,
               *[arg for s in SETTINGS for arg in ("--set", s)],
               f"--flink_master={cluster.master}", "--parallelism=2", "--sdk_worker_parallelism=2"]
    log = out.parent / f"{out.name}.log"
    seen, wanted = [], 2
    with open(log, "w") as stderr:
        run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 300
        for name, fault in faults:
            while _committed(out) < wanted and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert run.poll() is None and _committed(out) >= wanted, f"ended before {name}: {log.read_text()}"
            seen.append({"fault": name, **_rows_on_disk(out)})
            fault()
            wanted = _committed(out) + 2
        code = run.wait(timeout=300)
    return code, log.read_text(), seen


def _check_exactly_once(out: Path, archive: dict) -> dict:
    """One row per video, per sampled frame and per segment, whatever was killed; returns the counts."""
    videos = _table(out, "videos")
    assert len(videos) == archive["videos"] and videos.video_id.is_unique and set(videos.status) == {"ok"}
    frames = _table(out, "frames")
    assert not frames.duplicated(["video_id", "frame_index"]).any()
    per_video = frames.groupby("video_id").size().to_dict()
    assert per_video == videos.set_index("video_id").frames_sampled.to_dict()
    segments = check_segments(out, SegmentRule(min_s=0.0, min_score=0.0))
    assert not list(out.glob("*/*/.*.tmp"))
    return {"videos": len(videos), "frames": len(frames), "segments": len(segments)}


def _finish(code: int, log: str, out: Path, archive: dict, model: str) -> str:
    """The run's end: exit 0, or (if Flink gave up) a ``--resume`` on the embedded Flink that finishes it."""
    if code == 0:
        return "restarted by Flink"
    assert code == 1, log[-3000:]
    cfg = _config("flink.yaml", [archive["glob"]], out, model)
    run_job(cfg, [], resume=True)
    return "finished by --resume"


def test_an_sdk_worker_then_a_taskmanager_killed_mid_run_leave_one_row_per_video(
        flink_cluster, archive, a0_stream, a0_litert, tmp_path):
    """On a session cluster (one JobManager, two TaskManagers): an SDK worker killed once two videos parts
    are committed, then a TaskManager (with the SDK workers it started) once two more are. Flink restarts
    what it lost (or, if it gives up, ``--resume`` finishes); each table then holds one row per video."""
    out = tmp_path / "out"

    def kill_sdk_worker():
        workers = flink_cluster.sdk_workers()
        assert workers, "no SDK worker process under the TaskManagers"
        subprocess.run(["kill", "-9", str(workers[0])], check=True)

    faults = [("SDK worker killed", kill_sdk_worker),
              ("TaskManager killed", lambda: flink_cluster.kill_taskmanager(0))]
    code, log, seen = _run_and_break(flink_cluster, archive, out, a0_stream, faults)
    how = _finish(code, log, out, archive, a0_stream)
    counts = _check_exactly_once(out, archive)
    assert len(seen) == 2 and all(moment["rows"] < archive["videos"] for moment in seen)
    print("\n" + "\n".join(f"{m['fault']} with {m['parts']} videos parts committed ({m['rows']} rows, "
                            f"{m['videos']} videos)" for m in seen) + f"\nthen {how}; rows {counts}")
