"""LiteRT for stream MoViNet: converted once at launch, the SavedModel's outputs frame for frame, and
workers that never import TensorFlow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.dataset as ds
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.config import ConfigError, load_config
from beam_pipeline.job.pipeline import make_handler, sampling_spec
from beam_pipeline.job.serving import ServedModel, model_runtime
from models.movinet import Movinet
from models.movinet_convert import _content_key
from tests import media
from tests.conftest import REPO, random_frames
from transforms.classify import Classify
from transforms.decode_sample import DecodeAndSample
from transforms.listing import ListVideos
from transforms.streaming import stream_prediction


def _log_probs(model, frames, chunk: int) -> np.ndarray:
    pred = stream_prediction(model, frames, chunk=chunk, imgz=64, k=5, keep_probs=True)
    return np.log(pred.frame_probs)


def test_litert_gives_every_frame_the_savedmodel_output(a0_stream, a0_litert):
    tf_model = Movinet(a0_stream, "stream", 600, 64, tf_threads=1).load()
    litert = Movinet(a0_litert, "stream", 600, 64, tf_threads=1).load()
    frames = random_frames(21, side=64, seed=3)
    want = _log_probs(tf_model, frames, chunk=21)
    # log-probabilities are the logits less one constant per frame: compare those, not tiny probabilities
    want = want - want.mean(axis=1, keepdims=True)
    for chunk in (21, 8, 5, 1):  # 8-frame calls then 1-frame calls, whatever the chunks
        got = _log_probs(litert, frames, chunk)
        got = got - got.mean(axis=1, keepdims=True)
        assert np.abs(got - want).max() <= 1e-4, chunk
    assert np.abs(want[0] - want[-1]).max() > 1e-3  # every frame has its own causal output


def test_the_cache_key_follows_the_model_content(a0_stream, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(a0_stream, copy)
    key = _content_key(copy, 64, "a0", 600)
    assert _content_key(Path(a0_stream), 64, "a0", 600) == key  # where it lies does not matter
    assert _content_key(copy, 96, "a0", 600) != key and _content_key(copy, 64, "a0", 5) != key
    weights = next((copy / "variables").glob("*.data-*"))
    with open(weights, "r+b") as handle:
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 1]))
    assert _content_key(copy, 64, "a0", 600) != key


@pytest.mark.parametrize(("overrides", "handle", "runtime"), [
    ([], "/models/a0_stream", "litert"),
    (["model.runtime=tf"], "/models/a0_stream", "tf"),
    (["model.model_mode=base"], "/models/a0_base", "tf"),
    (["model.accelerator=type:nvidia-l4;count:1"], "/models/a0_stream", "tf"),
    ([], "https://tfhub.dev/tensorflow/movinet/a0/stream/kinetics-600/classification/3", "tf"),
    (["model.runtime=tf"], "/models/a0.tflite", "litert"),
])
def test_auto_picks_litert_for_stream_savedmodels_on_cpu_workers(overrides, handle, runtime):
    assert model_runtime(load_config(None, overrides), handle) == runtime


@pytest.mark.parametrize(("overrides", "reason"), [
    (["model.model_mode=base"], "model_mode is base"),
    (["model.accelerator=type:nvidia-l4;count:1"], "model.accelerator is set"),
])
def test_litert_where_it_cannot_run_fails_in_one_line(overrides, reason):
    with pytest.raises(ConfigError, match=f"model.runtime: litert runs .* but {reason}"):
        model_runtime(load_config(None, ["model.runtime=litert", *overrides]), "/models/a0")


def _where_it_ran(result) -> str:
    """A classified video -> JSON of the worker process it ran in and whether TensorFlow is loaded there."""
    (_, prediction), = result.clips
    return json.dumps({"video": os.path.basename(result.info.ref.uri), "pid": os.getpid(),
                       "tensorflow": "tensorflow" in sys.modules, "frames": len(prediction.frame_indices)})


def test_workers_that_run_litert_never_import_tensorflow(a0_litert, tmp_path):
    for i in range(3):
        media.good(tmp_path / f"v{i}.mp4", n=20, fps=10, seed=i)
    cfg = load_config(None, [f'input.paths=["{tmp_path}/*.mp4"]', "sampling.imgz=64", "model.tf_threads=1"])
    options = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                               "--direct_num_workers=2"])
    with beam.Pipeline(options=options) as p:
        refs = p | ListVideos(cfg.input.paths, extensions=cfg.input.extensions, ratios=cfg.split.ratios,
                              salt=cfg.split.salt)
        sources, _ = refs | DecodeAndSample(sampling_spec(cfg))
        results, _ = sources | Classify(make_handler(cfg, ServedModel.of(cfg, a0_litert), 600))
        _ = (results | beam.Map(_where_it_ran)
             | beam.io.WriteToText(str(tmp_path / "ran"), shard_name_template="", file_name_suffix=".jsonl"))
    ran = [json.loads(line) for line in (tmp_path / "ran.jsonl").read_text().splitlines()]
    assert sorted(r["video"] for r in ran) == ["v0.mp4", "v1.mp4", "v2.mp4"]
    assert all(r["frames"] > 0 for r in ran)  # the model labelled the frames
    assert all(r["pid"] != os.getpid() for r in ran)  # in worker processes, not this one
    assert not any(r["tensorflow"] for r in ran)


def test_a_run_converts_at_launch_and_labels_as_tensorflow_does(a0_stream, a0_litert, mixed_videos, tmp_path):
    from beam_pipeline.cli import main

    frames = {}
    for runtime in ("auto", "tf"):
        out = tmp_path / runtime
        code = main(["run", "--config", "configs/local.yaml", "--input", f"{mixed_videos['dir']}/*.mp4",
                     "--output", str(out), "--model", a0_stream, "--set", "sampling.imgz=64",
                     "--set", f"model.runtime={runtime}", "--runner", "DirectRunner",
                     "--direct_running_mode=in_memory", "--direct_num_workers=1"])
        assert code == 0
        record = json.loads((out / "_run.json").read_text())["model"]
        assert record["runtime"] == ("litert" if runtime == "auto" else "tf")
        assert record["served"] == (a0_litert if runtime == "auto" else a0_stream)
        table = ds.dataset(out / "frames", format="parquet", partitioning="hive").to_table().to_pandas()
        frames[runtime] = table.sort_values(["video_id", "frame_index"]).reset_index(drop=True)
    litert, tf_rows = frames["auto"], frames["tf"]
    assert len(litert) == len(tf_rows) > 0
    assert litert.video_id.nunique() == len([n for n in mixed_videos["good"] if n.endswith(".mp4")])
    assert np.abs(litert.score.to_numpy() - tf_rows.score.to_numpy()).max() <= 1e-4
    # the same top class, except where TensorFlow's first two are tied to within that
    top2 = np.array([s[0] - s[1] for s in tf_rows.top_k_scores])
    assert (litert.prediction == tf_rows.prediction)[top2 > 1e-4].all()


def test_a_loaded_litert_model_says_nothing_on_stderr_when_it_runs(a0_litert):
    # LiteRT notes its XNNPACK delegate on fd 2 at a signature's first call: the model makes that call
    # when it loads, with the note kept off, so it never lands in a run's progress line
    code = ("import numpy as np; from models.movinet_tflite import TFLiteMovinet; "
            f"m = TFLiteMovinet(open({a0_litert!r}, 'rb').read()); "
            "m.step(np.zeros((3, 64, 64, 3), np.uint8), m.init_states(64)); print('stepped')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.strip() == "stepped", done.stderr[-2000:]
    assert "XNNPACK" not in done.stderr
