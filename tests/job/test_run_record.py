"""``_run.json`` as a RunRecord: the timing fold, the keys scripts read, and the round trip."""

from __future__ import annotations

import json

import pytest

from beam_pipeline.config import load_config
from beam_pipeline.job.resume import ResumeState
from beam_pipeline.job.serving import frame_labels
from beam_pipeline.outputs.run_record import RUN_FILE, RunRecord, Timings
from tests.helpers import COUNTERS, DISTRIBUTIONS, STARTED, sample_record


def test_stage_times_are_the_per_video_stage_times_with_nothing_taken_out():
    timings = Timings.from_distributions(DISTRIBUTIONS)
    assert timings.stage_s.model_dump() == {"probe": 0.01, "decode": 1.2, "transfer": 0.03, "model": 2.1,
                                            "aggregate": 0.007, "write": 0.05}
    assert timings.mean_ms.model_dump() == {
        "probe_per_video": 2.5, "decode_per_video": 300.0, "transfer_per_video": 7.5,
        "model_per_video": 700.0, "aggregate_per_video": 2.33, "write_per_file": 25.0}


def test_a_stage_that_recorded_nothing_is_zero_seconds_and_no_mean():
    timings = Timings.from_distributions({"decode_ms": (2, 100)})
    assert timings.stage_s.model_dump() == {"probe": 0.0, "decode": 0.1, "transfer": 0.0, "model": 0.0,
                                            "aggregate": 0.0, "write": 0.0}
    assert timings.mean_ms.model_dump() == {
        "probe_per_video": None, "decode_per_video": 50.0, "transfer_per_video": None,
        "model_per_video": None, "aggregate_per_video": None, "write_per_file": None}


def test_run_json_keeps_its_keys_and_reads_back_as_the_same_record(tmp_path):
    kept = ResumeState(frozenset({"x", "y"}), dropped_rows=1, removed_files=2, previous_runs=("r0",))
    written = sample_record(kept=kept)
    written.write(str(tmp_path))
    document = json.loads((tmp_path / RUN_FILE).read_text())
    assert list(document) == ["run_id", "schema_version", "started_at", "wall_s", "model", "config_hash",
                              "config", "beam_args", "counts", "splits", "timings", "throughput", "versions",
                              "resume"]
    assert document["model"] == {"handle": "model-dir", "num_labels": 2, "mode": "stream", "model_id": "a0",
                                 "runtime": "litert", "served": "/cache/litert/0123abcd.tflite",
                                 "frame_labels": "window"}
    assert document["counts"] == {"videos": 4, **COUNTERS}
    assert document["splits"]["videos"] == {"test": 1, "train": 3}
    assert document["timings"]["stage_s"] == {"probe": 0.01, "decode": 1.2, "transfer": 0.03, "model": 2.1,
                                              "aggregate": 0.007, "write": 0.05}
    assert document["throughput"] == {"videos_per_s": 0.4, "frames_per_s": 4.0, "steady_videos_per_s": 1.235,
                                      "startup_s": 2.5, "worker_processes": 2, "pinned_cores": [0, 1],
                                      "steady_window": [STARTED.timestamp() + 3.0, STARTED.timestamp() + 9.5],
                                      "steady_window_videos": 2}
    assert document["resume"] == {"kept_videos": 2, "dropped_rows": 1, "removed_files": 2,
                                  "previous_runs": ["r0"]}
    assert document["started_at"] == "2026-01-02T03:04:05+00:00" and document["beam_args"] == [
        "--direct_num_workers=2"]
    assert document["config"]["input"]["paths"] == ["/v/*.mp4"]
    read = RunRecord.read(str(tmp_path))
    assert read.as_dict() == document == written.as_dict()  # config's tuples come back as JSON lists
    assert (read.timings, read.throughput, read.resume) == (written.timings, written.throughput,
                                                            written.resume)


def test_a_remote_fresh_run_has_no_worker_figures_and_no_resume(tmp_path):
    written = sample_record(local=False)
    written.write(str(tmp_path))
    document = json.loads((tmp_path / RUN_FILE).read_text())
    assert "resume" not in document
    assert document["throughput"] == {"videos_per_s": 0.4, "frames_per_s": 4.0}
    assert RunRecord.read(str(tmp_path)).as_dict() == document


def test_reading_an_output_without_a_record_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=RUN_FILE):
        RunRecord.read(str(tmp_path))


@pytest.mark.parametrize("overrides, handle, kind", [
    ([], "model-dir", "window"),
    (["model.frame_window_s=0"], "model-dir", "cumulative"),
    ([], "https://tfhub.dev/tensorflow/movinet/a0/stream/kinetics-600/classification/3", "chunk"),
    (["model.model_mode=base"], "model-dir", "clip"),
    (["model.kind=lstm", "pose.handle=movenet.tflite"], "trained", "clip"),
])
def test_the_record_says_what_a_frame_label_is(overrides, handle, kind):
    assert frame_labels(load_config(None, overrides), handle) == kind
