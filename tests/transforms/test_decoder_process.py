"""The decoder process: a crash, a hang or a runaway allocation while decoding is one video's row.

The decoders in ``tests.damage`` really do the damage (SIGSEGV, a native call that
never returns, allocation without bound) inside the child; the parent, the next
video and the pipeline run go on.
"""

from __future__ import annotations

import os
import threading

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipeline.config import load_config
from beam_pipeline.job.pipeline import build_pipeline
from beam_pipeline.job.serving import ServedModel
from tests import damage, media
from tests.conftest import REPO
from transforms.aggregate import RunStamp
from transforms.decoder_process import CHUNK_FRAMES, DecoderProcess, probe_isolated
from transforms.decoding import DecodeReport, sample_frames
from transforms.records import ErrorStage, SamplingSpec

SPEC = SamplingSpec(strategy="fps", fps=5.0, n_frames=8, imgz=64, max_pixels=10**7,
                    max_duration_s=3600.0, decode_timeout_s=60.0, decoder_memory_mb=1024)
DAMAGE = {  # decoder -> error type it must give
    "segfaults": "DecoderCrashed",
    "blocks_forever": "DecodeTimeout",
    "allocates_without_bound": "DecoderOutOfMemory",
    "raises_unforeseen": "AttributeError",
}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 4 s clip: 20 frames at 5 fps, more than ``GOOD_FRAMES``."""
    return str(media.good(tmp_path_factory.mktemp("iso") / "good.mp4", n=100, fps=25))


def _decode(child: DecoderProcess, uri: str, spec: SamplingSpec):
    report = DecodeReport()
    return list(child.run("decode", uri, spec, report)), report


def test_frames_match_the_in_process_decoder_and_one_child_serves_many_videos(video):
    child = DecoderProcess(SPEC.decoder_memory_mb)
    expected_report = DecodeReport()
    expected = list(sample_frames(video, SPEC, expected_report))
    for _ in range(3):
        frames, report = _decode(child, video, SPEC)
        assert [(f.index, f.time_s) for f in frames] == [(f.index, f.time_s) for f in expected]
        assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, expected))
        assert (report.meta, report.frames_decoded, report.frames_sampled, report.error) == (
            expected_report.meta, expected_report.frames_decoded, len(expected), None)
        assert report.decode_s > 0 and report.transfer_s > 0
    # larger frames than the shared buffer has held: it grows, and every frame arrives whole
    larger = SPEC._replace(imgz=172)
    frames, _ = _decode(child, video, larger)
    assert all(np.array_equal(a.image, b.image)
               for a, b in zip(frames, sample_frames(video, larger, DecodeReport()), strict=True))
    assert frames[0].image.shape == (172, 172, 3)
    # the frames are the parent's own copies: the next video's chunks do not change them
    kept = [frame.image.copy() for frame in frames]
    _decode(child, video, SPEC)
    assert all(np.array_equal(a, b.image) for a, b in zip(kept, frames))
    assert child.starts == 1
    child.stop()


@pytest.mark.parametrize("decoder", sorted(DAMAGE))
def test_damage_is_the_videos_error_and_the_next_video_gets_a_working_child(video, decoder):
    child = DecoderProcess(SPEC.decoder_memory_mb)
    spec = SPEC._replace(decoder=f"tests.damage:{decoder}", decode_timeout_s=3.0)
    frames, report = _decode(child, video, spec)
    assert (report.error.stage, report.error.type) == (ErrorStage.DECODE, DAMAGE[decoder]), report.error
    kept = damage.GOOD_FRAMES if decoder == "raises_unforeseen" else CHUNK_FRAMES  # what reached the parent
    assert len(frames) == report.frames_sampled == kept
    assert [f.index for f in frames] == [f.index for f in sample_frames(video, SPEC, DecodeReport())][:kept]
    first_pid = child.pid
    again, report = _decode(child, video, SPEC)
    assert report.error is None and len(again) == 20
    assert (child.pid != first_pid) == (decoder != "raises_unforeseen")  # a lost child is replaced
    child.stop()


def test_timeout_counts_waiting_for_the_child_not_the_consumer(video):
    child = DecoderProcess(SPEC.decoder_memory_mb)
    report = DecodeReport()
    frames = []
    for frame in child.run("decode", video, SPEC._replace(decode_timeout_s=2.0), report):
        frames.append(frame)
        threading.Event().wait(0.15)  # a slow model: 20 frames x 0.15 s is past the timeout
    assert report.error is None and len(frames) == 20 and report.decode_s < 2.0
    _, report = _decode(child, video, SPEC._replace(decode_timeout_s=1e-6))
    assert (report.error.stage, report.error.type) == (ErrorStage.DECODE, "DecodeTimeout")
    child.stop()


def test_probe_runs_in_the_child_with_the_guards(video, tmp_path):
    report = DecodeReport()
    probe_isolated(video, SPEC, report)
    assert report.error is None and (report.meta.width, report.meta.height) == (160, 120)
    small = DecodeReport()
    probe_isolated(video, SPEC._replace(max_pixels=100), small)
    assert (small.error.stage, small.error.type) == (ErrorStage.PROBE, "VideoRejected")
    missing = DecodeReport()
    probe_isolated(str(tmp_path / "nope.mp4"), SPEC, missing)
    assert (missing.error.stage, missing.error.type) == (ErrorStage.OPEN, "FileNotFoundError")


def test_an_abandoned_video_does_not_leak_into_the_next(video):
    child = DecoderProcess(SPEC.decoder_memory_mb)
    partial = child.run("decode", video, SPEC, DecodeReport())
    next(partial)  # the consumer stops after one frame; the child still has frames to send
    frames, report = _decode(child, video, SPEC)
    assert report.error is None and [f.index for f in frames][:2] == [0, 5] and len(frames) == 20
    child.stop()


def test_the_child_runs_on_the_workers_pinned_core(video):
    found = {}

    def pinned_worker():
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})  # this thread only, as transforms.cores pins a worker's threads
        report = DecodeReport()
        probe_isolated(video, SPEC._replace(decoder_memory_mb=1000), report)
        from transforms.decoder_process import _process
        child = _process(1000)
        found["core"], found["child"] = {core}, os.sched_getaffinity(child.pid)
        child.stop()

    thread = threading.Thread(target=pinned_worker)
    thread.start()
    thread.join()
    assert found["child"] == found["core"]


def test_hostile_files_through_the_pipeline_give_one_row_each_and_the_run_goes_on(tmp_path, a0_stream):
    d = tmp_path / "archive"
    d.mkdir()
    names = ["good-1.mp4", "segfault-1.mp4", "hang-1.mp4", "good-2.mkv", "oom-1.mp4", "raise-1.mp4"]
    for i, name in enumerate(names):
        media.good(d / name, n=100, fps=25, seed=i)
    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["{d}/*"]', f'output.path="{tmp_path / "out"}"', "sampling.imgz=64",
        # 6 s: room for the oom child to fill 1 GiB on a loaded 2-core machine (at 3 s it once timed out
        # first, beside the Flink tests), and for the hang child to be cut off
        "sampling.decode_timeout_s=6", "sampling.decoder_memory_mb=1024"])
    expected = {"good-1.mp4": ("ok", None, 20), "good-2.mkv": ("ok", None, 20),
                "segfault-1.mp4": ("partial", "DecoderCrashed", CHUNK_FRAMES),
                "hang-1.mp4": ("partial", "DecodeTimeout", CHUNK_FRAMES),
                "oom-1.mp4": ("partial", "DecoderOutOfMemory", CHUNK_FRAMES),
                "raise-1.mp4": ("partial", "AttributeError", damage.GOOD_FRAMES)}
    with TestPipeline() as p:
        groups = build_pipeline(p, cfg, model=ServedModel.of(cfg, a0_stream),
                                labels=[f"c{i}" for i in range(600)],
                                stamp=RunStamp(a0_stream, cfg.job_hash(), "run"),
                                decoder="tests.damage:hostile")
        rows = groups | beam.Flatten()
        videos = rows | beam.Map(lambda g: g.tables["videos"].to_pylist()[0])
        assert_that(videos | beam.Map(lambda r: (r["uri"].rsplit("/", 1)[-1],
                                                 (r["status"], r["error_type"], r["frames_sampled"]))),
                    equal_to(list(expected.items())))
        frames = rows | "Frames" >> beam.Map(
            lambda g: (g.tables["videos"]["uri"][0].as_py().rsplit("/", 1)[-1], g.tables["frames"].num_rows,
                       g.tables["videos"]["prediction"][0].as_py() is None))
        assert_that(frames, equal_to([(name, n, False) for name, (_, _, n) in expected.items()]),
                    label="FramesKept")


def test_a_changed_environment_gets_a_fresh_child(video, monkeypatch):
    child = DecoderProcess(SPEC.decoder_memory_mb)
    _decode(child, video, SPEC)
    first = child.pid
    _decode(child, video, SPEC)
    assert child.pid == first
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")  # a new emulator, say
    frames, report = _decode(child, video, SPEC)
    assert child.pid != first and report.error is None and len(frames) == 20
    with open(f"/proc/{child.pid}/environ", "rb") as handle:
        assert b"STORAGE_EMULATOR_HOST=http://127.0.0.1:1" in handle.read().split(b"\0")
    child.stop()
