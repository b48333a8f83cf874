"""``direct_running_mode: auto``: a few videos in this process, an archive on one worker process per core,
decided from the inputs' listing at start and recorded in ``_run.json``."""

from __future__ import annotations

import json
import os

import pytest
from apache_beam.options.pipeline_options import DirectOptions

from beam_pipeline.api import job_config
from beam_pipeline.job import local_mode
from beam_pipeline.job.local_mode import (
    IN_PROCESS_MAX_BYTES,
    IN_PROCESS_MAX_VIDEOS,
    job_work,
    measure_work,
    resolve,
)
from beam_pipeline.job.options import pipeline_options
from tests.conftest import REPO
from tests.media import good

EXTENSIONS = (".mp4", ".mkv")


def _mode(options) -> str:
    return options.view_as(DirectOptions).direct_running_mode


@pytest.mark.parametrize(("runner", "args", "expected"), [
    ({"direct_running_mode": "auto"}, [], "auto"),
    ({}, ["--direct_running_mode", "auto"], "auto"),
    ({"direct_running_mode": "auto"}, ["--direct_running_mode=multi_processing"], "multi_processing"),
    ({"direct_running_mode": "multi_processing"}, ["--direct_running_mode=auto"], "auto"),
    ({}, [], "in_memory"),
])
def test_auto_passes_beam_parsing_and_the_last_running_mode_given_wins(runner, args, expected):
    assert _mode(pipeline_options({"runner": "DirectRunner", **runner}, args)) == expected


def _files(folder, sizes, ending=".mp4"):
    folder.mkdir(exist_ok=True)
    for i, size in enumerate(sizes):
        (folder / f"v{i:03d}{ending}").write_bytes(b"\0" * size)
    return folder


def test_a_glob_counts_the_bytes_of_the_videos_it_matches_only(tmp_path):
    folder = _files(tmp_path / "in", [1000, 2000, 3000])
    _files(folder, [10**7], ending=".txt")  # left out by its ending: not work
    work = measure_work([str(folder / "*")], EXTENSIONS)
    assert (work.videos, work.bytes, work.more, work.small) == (3, 6000, False, True)
    assert str(work) == "3 videos, 0.0 MB"


def test_a_manifest_resolves_its_relative_uris_and_counts_a_missing_file_as_a_video(tmp_path):
    folder = _files(tmp_path / "in", [5000, 7000])
    manifest = folder / "m.csv"
    manifest.write_text("uri,label\nv000.mp4,a\nv001.mp4,b\nmissing.mp4,c\n,d\n")  # last row: no uri
    work = measure_work([str(manifest)], EXTENSIONS)
    assert (work.videos, work.bytes, work.more) == (3, 12000, False)


def test_over_the_byte_bound_the_listing_stops_and_the_job_is_not_small(tmp_path):
    half = IN_PROCESS_MAX_BYTES // 2 + 1
    folder = _files(tmp_path / "in", [half, half, half])
    work = measure_work([str(folder / "*.mp4")], EXTENSIONS)
    assert work.bytes > IN_PROCESS_MAX_BYTES and not work.small
    assert "over 4 MB" in str(work)
    one = measure_work([str(folder / "v000.mp4")], EXTENSIONS, max_bytes=10)  # a named file, any size
    assert (one.videos, one.small) == (1, True)  # one video: workers cannot share it out


def test_more_files_than_the_bound_are_not_listed_to_the_end(tmp_path):
    folder = _files(tmp_path / "in", [10] * (IN_PROCESS_MAX_VIDEOS + 5))
    work = measure_work([str(folder / "*.mp4")], EXTENSIONS)
    assert work.more and not work.small and work.videos == IN_PROCESS_MAX_VIDEOS + 1
    rows = "".join(f"v{i:03d}.mp4\n" for i in range(IN_PROCESS_MAX_VIDEOS + 5))
    (folder / "m.csv").write_text("uri\n" + rows)
    assert measure_work([str(folder / "m.csv")], EXTENSIONS).more


def test_a_base_mode_movinet_labels_only_a_single_video_in_process(tmp_path):
    folder = _files(tmp_path / "in", [1000, 1000])
    inputs = {"input": {"paths": [str(folder / "*.mp4")]}}
    stream = job_config(None, None, inputs)
    base = job_config(None, None, {**inputs, "model": {"model_mode": "base"}})
    assert job_work(stream).small
    assert not job_work(base).small
    assert job_work(base, [str(folder / "v000.mp4")]).small


def test_resolve_sets_the_mode_from_the_work_and_says_why(tmp_path):
    small, big = local_mode.LocalWork(2, 10_000, False), local_mode.LocalWork(9, 10**8, True)
    options = pipeline_options({"runner": "DirectRunner", "direct_running_mode": "auto"}, [])
    chosen = resolve(options, lambda: small)
    assert (chosen.mode, chosen.workers, _mode(options)) == ("in_memory", 1, "in_memory")
    assert str(chosen) == "in this process (auto: 2 videos, 0.0 MB)"
    options = pipeline_options({"direct_running_mode": "auto", "direct_num_workers": 0}, [])
    chosen = resolve(options, lambda: big)
    cores = len(os.sched_getaffinity(0))
    expected = ("multi_processing", cores) if cores > 1 else ("in_memory", 1)
    assert (chosen.mode, chosen.workers) == expected == (_mode(options), options.view_as(DirectOptions)
                                                         .direct_num_workers)
    options = pipeline_options({"direct_running_mode": "auto", "direct_num_workers": 1}, [])
    assert resolve(options, lambda: big).mode == "in_memory"  # one worker asked for: no workers to start


def test_an_explicit_mode_is_kept_and_a_remote_runner_lists_nothing():
    def never():
        raise AssertionError("the work was measured")

    options = pipeline_options({"direct_running_mode": "multi_processing", "direct_num_workers": 3}, [])
    chosen = resolve(options, never)
    assert (chosen.mode, chosen.workers, chosen.reason) == ("multi_processing", 3, "set")
    remote = pipeline_options({"runner": "DataflowRunner", "direct_running_mode": "auto"}, [])
    assert resolve(remote, never) is None
    assert _mode(remote) == "in_memory"  # Beam's own default: "auto" never leaves this machine


@pytest.mark.slow
def test_the_shipped_config_labels_one_video_in_process_and_more_on_workers(tmp_path, a0_litert, monkeypatch):
    from beam_pipeline.job.launcher import run_job

    videos = [good(tmp_path / f"clip{i}.mp4", n=20, seed=i) for i in range(3)]
    base = {"model": {"handle": a0_litert}, "sampling": {"imgz": 64}}
    one = job_config(str(REPO / "configs" / "local.yaml"), None, base,
                     {"input": {"paths": [str(videos[0])]}, "output": {"path": str(tmp_path / "one")}})
    run_job(one)
    throughput = json.loads((tmp_path / "one" / "_run.json").read_text())["throughput"]
    assert throughput["running_mode"] == "in_memory"
    assert throughput["running_mode_reason"].startswith("auto: 1 video, ")
    assert throughput["worker_processes"] == 1

    monkeypatch.setattr(local_mode, "IN_PROCESS_MAX_BYTES", 1000)  # three small clips are an archive here
    paths = {"input": {"paths": [str(tmp_path / "clip*.mp4")]}, "output": {"path": str(tmp_path / "3")}}
    three = job_config(str(REPO / "configs" / "local.yaml"), None, base, paths)
    record = run_job(three)
    assert record.counts["videos_ok"] == 3
    throughput = json.loads((tmp_path / "3" / "_run.json").read_text())["throughput"]
    if len(os.sched_getaffinity(0)) > 1:
        assert throughput["running_mode"] == "multi_processing"
        assert throughput["worker_processes"] >= 2
        assert "3 videos, over 0.000953674 MB" in throughput["running_mode_reason"]
