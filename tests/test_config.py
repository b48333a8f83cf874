"""Config loading, validation and option pass-through: bad input fails at start, in one line."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from beam_pipeline.cli import main
from beam_pipeline.config import ConfigError, JobConfig, config_from_dict, load_config
from beam_pipeline.options import pipeline_options
from tests.conftest import REPO


def test_local_yaml_loads_with_native_imgz_and_runner():
    cfg = load_config(str(REPO / "configs" / "local.yaml"))
    assert cfg.model.model_mode == "stream"
    assert cfg.imgz == 172
    assert cfg.runner["direct_num_workers"] == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.top_k = 3


def test_local_yaml_lists_every_key_with_its_default():
    raw = yaml.safe_load((REPO / "configs" / "local.yaml").read_text())
    cfg = load_config(str(REPO / "configs" / "local.yaml"))
    defaults = JobConfig()
    for section in ("input", "split", "sampling", "model", "pose", "train", "output"):
        fields = [f.name for f in dataclasses.fields(getattr(defaults, section))]
        assert sorted(raw[section]) == sorted(fields), section
        assert getattr(cfg, section) == getattr(defaults, section), section


@pytest.mark.parametrize("name", ["movinet_a0_stream.yaml", "movinet_a0_base.yaml", "movinet_a0_train.yaml"])
def test_model_configs_load(name):
    cfg = load_config(str(REPO / "configs" / name))
    assert cfg.model.model_id == "a0"


def test_overrides_win_and_are_typed():
    cfg = load_config(str(REPO / "configs" / "local.yaml"),
                      ["sampling.fps=2.5", "model.model_id=a2", 'input.paths=["a/*.mp4"]'])
    assert cfg.sampling.fps == 2.5
    assert cfg.imgz == 224
    assert cfg.input.paths == ("a/*.mp4",)


@pytest.mark.parametrize("raw, needle", [
    ({"sampling": {"fsp": 3}}, "sampling.fsp: unknown key"),
    ({"sampling": {"fps": -1}}, "sampling.fps: -1"),
    ({"sampling": {"strategy": "random"}}, "'random'"),
    ({"model": {"model_id": "a9"}}, "model.model_id: 'a9'"),
    ({"model": {"model_mode": "live"}}, "model.model_mode: 'live'"),
    ({"split": {"ratios": {"train": 0.5, "test": 0.2}}}, "sum to 0.7"),
    ({"sampling": {"n_frames": 4, "clip_stride": 6}}, "clip_stride: 6"),
    ({"modle": {}}, "modle: unknown section"),
    ({"model": {"video_pool": "median"}}, "model.video_pool: 'median'"),
    ({"pose": {"threshold": 2}}, "pose.threshold: 2"),
    ({"train": {"num_epochs": 0}}, "train.num_epochs: 0"),
    ({"model": {"kind": "lstm"}}, "pose.handle: model.kind lstm needs a MoveNet"),
    ({"output": {"write_keypoints": True}}, "output.write_keypoints: keypoints come from"),
    ({"sampling": {"decode_threads": -1}}, "sampling.decode_threads: -1"),
    ({"model": {"pin_workers": "yes"}}, "model.pin_workers: 'yes'"),
])
def test_bad_config_names_the_bad_value(raw, needle):
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_job_hash_ignores_runner_output_and_inputs_but_not_sampling():
    a = load_config(None, ['output.path="x"', "runner.runner=DirectRunner"])
    b = load_config(None, ['output.path="y"', 'input.paths=["z/*.mp4"]'])
    c = load_config(None, ["sampling.fps=1"])
    assert a.job_hash() == b.job_hash() != c.job_hash()


def test_beam_flags_pass_through_and_unknown_flags_fail():
    options = pipeline_options({"runner": "DirectRunner"}, ["--direct_num_workers=3", "--job_name=x"])
    assert options.get_all_options()["direct_num_workers"] == 3
    assert options.get_all_options()["runner"] == "DirectRunner"
    with pytest.raises(ConfigError, match="--direct_num_wrokers: not a videolabel or Beam.*did you mean"):
        pipeline_options({}, ["--direct_num_wrokers=2"])


def test_cli_bad_flag_fails_before_reading_videos(tmp_path, capsys):
    code = main(["run", "--config", str(REPO / "configs" / "local.yaml"), "--input",
                 str(tmp_path / "*.mp4"), "--output", str(tmp_path / "out"), "--no_such_flag=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "--no_such_flag" in err


@pytest.mark.parametrize("extra, needle", [
    ([], "matches no file"),
    (["--model", "/nonexistent/model"], "'/nonexistent/model' is not a SavedModel"),
    (["--set", "model.labels=/nonexistent/labels.txt"], "model.labels: '/nonexistent/labels.txt'"),
])
def test_cli_bad_paths_fail_at_start(tmp_path, capsys, extra, needle, mixed_videos):
    inputs = str(tmp_path / "*.mp4") if not extra else f"{mixed_videos['dir']}/*.mp4"
    code = main(["run", "--config", str(REPO / "configs" / "local.yaml"), "--input", inputs,
                 "--output", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert needle in err and err.count("\n") == 0
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("overrides, beam_args, pinned", [
    ([], ["--direct_running_mode=multi_processing"], True),
    ([], ["--direct_running_mode=in_memory"], False),  # one process: pinning would hold it to one core
    (["model.tf_threads=0"], ["--direct_running_mode=multi_processing"], False),
    (["sampling.decode_threads=0"], ["--direct_running_mode=multi_processing"], False),
    (["model.pin_workers=false"], ["--direct_running_mode=multi_processing"], False),
    ([], ["--runner=DataflowRunner"], False),
])
def test_workers_are_pinned_only_when_each_is_one_local_single_threaded_process(overrides, beam_args, pinned):
    from beam_pipeline.launcher import _pins_cores

    cfg = load_config(str(REPO / "configs" / "local.yaml"), overrides)
    assert _pins_cores(cfg, pipeline_options(cfg.runner, beam_args)) is pinned
