"""`_run.json` timings add up: decode and model seconds are measured apart, neither holding the other.

Each run decodes through a decoder that spins a known CPU time per frame, far
more than the model takes, in one worker, so the decode seconds must hold at
least that time and the model seconds none of it: a model time that included
waiting for frames (RunInference's batch latency does) would hold the spin too.
The decoder process decodes the next chunk while the model works on the last one
(it waits only for the parent to copy a chunk out), so on free cores the two may
overlap in wall time; each is within the run's wall time."""

from __future__ import annotations

import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.config import load_config
from beam_pipeline.job.pipeline import build_pipeline
from beam_pipeline.job.serving import ServedModel
from beam_pipeline.outputs.run_record import Timings, pipeline_metrics
from tests import media
from tests.conftest import REPO, shared_fixture
from tests.slow_decoder import SECONDS_PER_FRAME
from transforms.aggregate import RunStamp

VIDEOS = 2
FRAMES = 10  # 2 s at 25 fps sampled at 5 fps


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("timed")
    for i in range(VIDEOS):
        media.good(d / f"v{i}.mp4", n=50, fps=25, seed=i)
    return d


@pytest.fixture(scope="module")
def pose_lstm(tmp_path_factory):
    """An untrained pose LSTM in a `videolabel train`-like folder, and the MoveNet fixture."""
    from models.labels import write_labels
    from models.lstm import build_pose_lstm
    from models.training import save_features_model

    movenet = str(shared_fixture("models", "movenet_single_pose_lightning_ptq.tflite"))
    folder = tmp_path_factory.mktemp("lstm")
    save_features_model(build_pose_lstm(2, n_frames=4), str(folder / "saved_model"))
    write_labels(str(folder / "labels.txt"), ["a", "b"])
    return str(folder), movenet


def _timed_run(videos, out, handle, labels, overrides):
    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["{videos}/*.mp4"]', f'output.path="{out}"', "sampling.imgz=64", *overrides])
    p = beam.Pipeline(options=PipelineOptions(["--direct_running_mode=in_memory", "--direct_num_workers=1"]))
    build_pipeline(p, cfg, model=ServedModel.of(cfg, handle),
                   labels=labels, stamp=RunStamp(handle, cfg.job_hash(), "timed"),
                   decoder="tests.slow_decoder:slow")
    start = time.monotonic()
    result = p.run()
    result.wait_until_finish()
    wall = time.monotonic() - start
    counts, distributions = pipeline_metrics(result.metrics())
    assert counts["videos_ok"] == VIDEOS and counts["frames_sampled"] == VIDEOS * FRAMES
    return Timings.from_distributions(distributions), wall


@pytest.mark.slow  # runs the job with each model kind
@pytest.mark.parametrize("mode", ["stream", "base", "lstm"])
def test_decode_and_model_seconds_are_measured_apart(mode, videos, tmp_path, request):
    if mode == "lstm":
        handle, movenet = request.getfixturevalue("pose_lstm")
        labels, overrides = ["a", "b"], ["model.kind=lstm", f"pose.handle={movenet}", "sampling.n_frames=4"]
    else:
        handle = request.getfixturevalue(f"a0_{mode}")
        labels = [f"c{i}" for i in range(600 if mode == "stream" else 5)]
        overrides = [f"model.model_mode={mode}", "sampling.n_frames=4"]
    timings, wall = _timed_run(videos, tmp_path / "out", handle, labels, overrides)
    spun = VIDEOS * FRAMES * SECONDS_PER_FRAME
    stages = timings.stage_s
    assert spun <= stages.decode <= wall  # the decoder process's own CPU time, consumed in the model step
    assert 0 < stages.model < spun * 0.75  # the model's calls alone: none of the decoder's time
    assert timings.mean_ms.model_per_video == pytest.approx(stages.model * 1000 / VIDEOS, abs=2)
