"""Config loading, validation and option pass-through: bad input fails at start, in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from beam_pipeline.cli import main
from beam_pipeline.config import ConfigError, JobConfig, apply_overrides, config_from_dict, load_config
from beam_pipeline.job.options import pipeline_options
from tests.conftest import REPO


def test_local_yaml_loads_with_native_imgz_and_runner():
    cfg = load_config(str(REPO / "configs" / "local.yaml"))
    assert cfg.model.model_mode == "stream"
    assert cfg.imgz == 172
    assert (cfg.runner["direct_running_mode"], cfg.runner["direct_num_workers"]) == ("auto", 0)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.model.top_k = 3


def test_local_yaml_lists_every_key_with_its_default():
    raw = yaml.safe_load((REPO / "configs" / "local.yaml").read_text())
    cfg = load_config(str(REPO / "configs" / "local.yaml"))
    defaults = JobConfig()
    sections = [name for name in JobConfig.model_fields if name != "runner"]
    assert sections == ["input", "split", "sampling", "model", "pose", "train", "output"]
    for section in sections:
        assert sorted(raw[section]) == sorted(type(getattr(defaults, section)).model_fields), section
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
    ({"train": {"augment": "blur"}}, "train.augment: 'blur' is not one of colour, none"),
    ({"train": {"min_steps": -5}}, "train.min_steps: -5"),
    ({"model": {"kind": "lstm"}}, "pose.handle: model.kind lstm needs a MoveNet"),
    ({"output": {"write_keypoints": True}}, "output.write_keypoints: keypoints come from"),
    ({"sampling": {"decode_threads": -1}}, "sampling.decode_threads: -1"),
    ({"model": {"pin_workers": "yes"}}, "model.pin_workers: 'yes'"),
    ({"sampling": {"fps": True}}, "sampling.fps: True is invalid"),
    ({"sampling": {"n_frames": 2.5}}, "sampling.n_frames: 2.5 is invalid"),
    ({"split": {"ratios": {"train": -1, "test": 2}}}, "split.ratios.train: -1"),
    ({"input": {"extensions": [".mp4", "mkv"]}}, "input.extensions[1]: 'mkv'"),
    ({"model": {"accelerator": "nvidia-l4"}}, "model.accelerator: 'nvidia-l4' is not a Beam"),
    ({"train": {"epochs": 3}}, "train.epochs: unknown key (known: num_epochs, min_steps, learning_rate"),
    ({"modle": {}}, "(known: input, split, sampling, model, pose, train, output, runner)"),
    ({"runner": ["DirectRunner"]}, "runner: ['DirectRunner'] is invalid"),
    ([1, 2], "config: [1, 2] is invalid"),
])
def test_bad_config_names_the_bad_value(raw, needle):
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


# One changed value for every config key, by what the change does to output rows. A key the
# config classes gain fails test_every_config_key_is_classified until it is added here.
RESULT_CHANGING = {
    "input.background_label": "background",
    "split.ratios": {"train": 0.5, "test": 0.5},
    "split.salt": "other-salt",
    "sampling.strategy": "uniform",
    "sampling.fps": 2.0,
    "sampling.n_frames": 16,
    "sampling.clip_stride": 4,
    "sampling.imgz": 224,
    "sampling.max_duration_s": 60.0,
    "sampling.max_pixels": 1920 * 1080,
    "model.kind": "lstm",
    "model.model_id": "a2",
    "model.model_mode": "base",
    "model.hub_version": 4,
    "model.handle": "gs://bucket/model",
    "model.labels": "labels.txt",
    "model.top_k": 3,
    "model.stream_chunk": 1,  # TF Hub stream models: each frame gets the output at its chunk's end
    "model.video_pool": "max",
    "model.frame_window_s": 0,
    "output.write_frames": False,
    "output.write_probs": True,
    "output.write_segments": False,
    "output.segment_min_s": 3,
    "output.segment_min_score": 0.9,
    "output.write_embeddings": True,
    "output.write_keypoints": True,  # model.kind lstm only (tested on the lstm config)
}
EXECUTION_ONLY = {
    "input.paths": ("elsewhere/*.mp4",),
    "input.extensions": (".mp4",),
    "sampling.decode_timeout_s": 30.0,
    "sampling.predecode_max_frames": 100,
    "sampling.decode_threads": 0,
    "sampling.decoder_memory_mb": 512,
    "model.batch_size": 16,
    "model.tf_threads": 4,
    "model.pin_workers": False,
    "model.accelerator": "type:nvidia-l4;count:1;install-nvidia-driver",
    "model.runtime": "litert",
    "model.max_batch_duration_s": 2.0,
    "output.path": "gs://bucket/other",
    "output.videos_per_file": 10,
    "output.flush_s": 5.0,
    "train.num_epochs": 3,
    "train.learning_rate": 0.1,
    "train.batch_size": 4,
    "train.patience": 2,
    "train.seed": 7,
    "train.method": "finetune",
    "train.checkpoint": "gs://bucket/ckpt-1",
    "train.dropout_rate": 0.5,
    "train.augment": "none",
    "train.min_steps": 50,
    "runner": {"runner": "DataflowRunner", "project": "p", "direct_num_workers": 8},
}
LSTM_ONLY = {  # hashed only for model.kind lstm
    "pose.handle": "other_movenet.tflite",
    "pose.threshold": 0.5,
}


def _config_keys() -> set[str]:
    """Every key of every section of JobConfig, as ``section.key`` (``runner``: the whole mapping)."""
    defaults, keys = JobConfig(), set()
    for section in JobConfig.model_fields:
        value = getattr(defaults, section)
        if isinstance(value, BaseModel):
            keys.update(f"{section}.{key}" for key in type(value).model_fields)
        else:
            keys.add(section)
    return keys


def _changed(cfg: JobConfig, changes: dict) -> JobConfig:
    """``cfg`` with ``{"section.key": value}`` (``{"runner": mapping}``) changed, validated again."""
    raw = cfg.to_dict()
    for key, value in changes.items():
        section, _, name = key.partition(".")
        raw[section] = {**raw[section], name: value} if name else value
    changed = config_from_dict(raw)
    assert changed != cfg, changes
    return changed


def _bases() -> dict[str, JobConfig]:
    movinet = load_config(str(REPO / "configs" / "local.yaml"), ["pose.handle=movenet.tflite"])
    return {"movinet": movinet, "lstm": load_config(str(REPO / "configs" / "local.yaml"),
                                                    ["pose.handle=movenet.tflite", "model.kind=lstm"])}


def test_every_config_key_is_classified():
    from beam_pipeline.config import EXECUTION_ONLY_KEYS, LSTM_ONLY_SECTIONS

    tables = [set(RESULT_CHANGING), set(EXECUTION_ONLY), set(LSTM_ONLY)]
    assert sum(map(len, tables)) == len(set.union(*tables)), "a key is in two tables"
    assert set.union(*tables) == _config_keys()
    # The declared sets name real keys and sections only, and say what the tables say.
    expanded = {k for k in _config_keys()
                if k in EXECUTION_ONLY_KEYS or k.split(".")[0] in EXECUTION_ONLY_KEYS}
    assert {k.split(".")[0] for k in EXECUTION_ONLY_KEYS} <= set(JobConfig.model_fields)
    assert all("." not in k or k in _config_keys() for k in EXECUTION_ONLY_KEYS)
    assert expanded == set(EXECUTION_ONLY)
    assert {k.split(".")[0] for k in LSTM_ONLY} == LSTM_ONLY_SECTIONS


_CASES = (
    [(k, v, "lstm" if k == "output.write_keypoints" else "movinet", True) for k, v in RESULT_CHANGING.items()]
    + [(k, v, base, False) for k, v in EXECUTION_ONLY.items() for base in ("movinet", "lstm")]
    + [(k, v, "movinet", False) for k, v in LSTM_ONLY.items()]
    + [(k, v, "lstm", True) for k, v in LSTM_ONLY.items()]
)


@pytest.mark.parametrize("key, value, base, changes", _CASES,
                         ids=[f"{k}-{b}" for k, _, b, _ in _CASES])
def test_job_hash_changes_exactly_with_what_changes_rows(key, value, base, changes):
    cfg = _bases()[base]
    changed = _changed(cfg, {key: value})
    assert (changed.job_hash() != cfg.job_hash()) is changes


def test_job_hash_is_pinned():
    # A changed value makes --resume redo every video of an earlier run: these change only with
    # what rows hold (last: output.write_embeddings, issue 29, with schema version 3). Numbers hash
    # as loaded (the 14400 of local.yaml is an int, the default 4 * 3600.0 a float), so they differ.
    local = str(REPO / "configs" / "local.yaml")
    assert JobConfig().job_hash() == "6dcdf9350a0d47a3"
    assert load_config(local).job_hash() == "8fc8aeb324f13928"
    assert load_config(str(REPO / "configs" / "movinet_a0_base.yaml")).job_hash() == "b16afecb4ce49f13"
    assert load_config(str(REPO / "configs" / "dataflow_gpu.yaml")).job_hash() == "0ed230564b12de0b"
    assert load_config(str(REPO / "configs" / "lstm_pose.yaml"),
                       ["pose.handle=movenet.tflite"]).job_hash() == "447d4a89d507e55d"
    assert load_config(local, ["sampling.fps=1", "sampling.max_duration_s=60", "split.ratios={a: 1}",
                               "model.model_id=a2", "sampling.clip_stride=4", "sampling.imgz=224",
                               "input.background_label=bg"]).job_hash() == "99d814c0b077fa9d"


def test_job_hash_ignores_every_execution_only_key_at_once():
    base = load_config(str(REPO / "configs" / "local.yaml"))
    changed = _changed(base, EXECUTION_ONLY)
    assert changed.job_hash() == base.job_hash() == "8fc8aeb324f13928"


def test_job_hash_ignores_runner_output_and_inputs_but_not_sampling():
    a = load_config(None, ['output.path="x"', "runner.runner=DirectRunner"])
    b = load_config(None, ['output.path="y"', 'input.paths=["z/*.mp4"]'])
    c = load_config(None, ["sampling.fps=1"])
    assert a.job_hash() == b.job_hash() != c.job_hash()


def test_beam_flags_pass_through_and_unknown_flags_fail():
    options = pipeline_options({"runner": "DirectRunner"}, ["--direct_num_workers=3", "--job_name=x"])
    assert options.get_all_options()["direct_num_workers"] == 3
    # DirectRunner (or none) means Beam's FnApiRunner, named (no PrismRunner download attempt)
    local = "beam_pipeline.job.local_runner.LocalRunner"
    assert options.get_all_options()["runner"] == local
    assert pipeline_options({}, []).get_all_options()["runner"] == local
    bundles = pipeline_options({"runner": "BundleBasedDirectRunner"}, [])
    assert bundles.get_all_options()["runner"] == "BundleBasedDirectRunner"
    with pytest.raises(ConfigError, match="--direct_num_wrokers: not a videolabel or Beam.*did you mean"):
        pipeline_options({}, ["--direct_num_wrokers=2"])


def test_cli_bad_flag_fails_before_reading_videos(tmp_path, capsys):
    code = main(["run", "--config", str(REPO / "configs" / "local.yaml"), "--input",
                 str(tmp_path / "*.mp4"), "--output", str(tmp_path / "out"), "--no_such_flag=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "--no_such_flag" in err


def test_the_listed_beam_flags_are_the_installed_beams():
    import beam_pipeline.job.launcher  # noqa: F401 - every module a run loads, with their option classes
    from beam_pipeline.job.flags import beam_flag_names, known_flags

    assert sorted(known_flags()) == beam_flag_names(), \
        "beam_flags.txt is stale: python -m beam_pipeline.job.flags > beam_pipeline/job/beam_flags.txt"


def test_a_bad_flag_is_refused_before_beam_loads():
    code = ("import sys; from beam_pipeline.cli import main; "
            "rc = main(['run', '--input', 'x/*.mp4', '--direct_num_wrokers=2']); "
            "print(rc, 'apache_beam' in sys.modules, 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["2", "False", "False"]
    said = ("--direct_num_wrokers: not a videolabel or Beam pipeline option "
            "(did you mean --direct_num_workers?)")
    assert done.stderr.strip() == f"videolabel: error: {said}"


def test_a_typo_of_videolabels_own_flag_names_it_not_a_beam_flag(tmp_path, capsys):
    for typo, meant in (("--ouput", "--output"), ("--inptu", "--input"), ("--overwite", "--overwrite")):
        code = main(["run", "--input", str(tmp_path / "*.mp4"), typo, "x"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0
        assert err.endswith(f"{typo}: not a videolabel or Beam pipeline option (did you mean {meant}?)")


def test_cli_paths_reach_the_config_as_typed(tmp_path, monkeypatch):
    # Quotes, colons, '#' and brackets are YAML syntax: the flags must not pass through YAML.
    seen = {}
    monkeypatch.setattr("beam_pipeline.job.launcher.run_job",
                        lambda cfg, *_, **__: seen.setdefault("cfg", cfg))
    monkeypatch.setattr("beam_pipeline.outputs.summary.print_summary", lambda *args: None)
    videos, manifest = "it's: #1 [a]/*.mp4", 'say "hi", {x}.csv'
    output, model = str(tmp_path / "out: 'x' # y"), "gs://b/m [v2]: \\ 'q'"
    assert main(["run", "--input", videos, "--input", manifest, "--output", output, "--model", model,
                 "--set", "sampling.fps=2"]) == 0
    cfg = seen["cfg"]
    assert cfg.input.paths == (videos, manifest)
    assert (cfg.output.path, cfg.model.handle, cfg.sampling.fps) == (output, model, 2)


def test_overrides_parse_yaml_and_values_are_set_as_given():
    raw = {"sampling": None, "model": {"top_k": 3}}
    merged = apply_overrides(raw, ["sampling.fps=2.5", "model.handle=[a]"], {"model": {"handle": "[b]"}})
    assert merged == {"sampling": {"fps": 2.5}, "model": {"top_k": 3, "handle": "[b]"}}
    assert raw == {"sampling": None, "model": {"top_k": 3}}
    with pytest.raises(ConfigError, match=r"^--set 'sampling\.fps=\[': value is not valid YAML"):
        apply_overrides({}, ["sampling.fps=["])
    with pytest.raises(ConfigError, match="^runner.x: runner is not a section"):
        apply_overrides({"runner": "DirectRunner"}, [], {"runner": {"x": 1}})


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
    from beam_pipeline.job.launcher import _pins_cores

    cfg = load_config(str(REPO / "configs" / "local.yaml"), overrides)
    assert _pins_cores(cfg, pipeline_options(cfg.runner, beam_args)) is pinned


def test_docs_config_is_generated_from_the_models_and_documents_every_key():
    from beam_pipeline.config import JobConfig
    from beam_pipeline.config_reference import key_docs, render

    assert (REPO / "docs" / "CONFIG.md").read_text() == render(), (
        "docs/CONFIG.md is stale: python -m beam_pipeline.config_reference > docs/CONFIG.md")
    for name, field in JobConfig.model_fields.items():
        if name != "runner":
            undocumented = set(field.annotation.model_fields) - set(key_docs(field.annotation))
            assert not undocumented, f"{name}: {sorted(undocumented)} have no text in its Attributes"
