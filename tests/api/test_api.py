"""The Python API (``from beam_pipeline import LabelVideos, label_videos, train``): docs/API.md's
three examples run as written, and the config built from keyword arguments is validated as ``--set`` is."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from beam_pipeline.config import ConfigError
from beam_pipeline.demo.synthetic import MOTIONS, make_labelled_set
from tests.conftest import REPO


def _readme_examples() -> list[str]:
    """The python blocks of docs/API.md, in order (the import line first, as in the README)."""
    text = (REPO / "docs" / "API.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def api_folder(tmp_path_factory, a0_base):
    """A folder as docs/API.md's examples expect: labels.csv, new/*.mp4 (one not a video), models/a0_base."""
    folder = tmp_path_factory.mktemp("api")
    manifest = make_labelled_set(str(folder), per_class=3, splits={"train": 1, "valid": 1, "test": 1},
                                 seconds=1.0, motions=list(MOTIONS)[:2])
    os.rename(manifest, folder / "labels.csv")
    make_labelled_set(str(folder / "new"), per_class=2, seconds=1.0, motions=list(MOTIONS)[:2], seed=5)
    (folder / "new" / "zz_broken.mp4").write_bytes(b"not a video" * 50)
    (folder / "models").mkdir()
    os.symlink(a0_base, folder / "models" / "a0_base")
    return folder


def _new_videos(folder, basename: bool = False) -> list[str]:
    names = sorted(name for name in os.listdir(folder / "new") if name.endswith(".mp4"))
    return names if basename else [str(folder / "new" / name) for name in names]


def _run(code: str) -> tuple[dict, str]:
    namespace: dict = {"__name__": "__readme__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/API.md", "exec"), namespace)  # docs/API.md's own example
    return namespace, out.getvalue()


@pytest.fixture(scope="module")
def readme_run(api_folder):
    """Runs docs/API.md's examples in order in ``api_folder``: (namespace, stdout) of each."""
    imports, *examples = _readme_examples()
    previous = os.getcwd()
    os.chdir(api_folder)
    try:
        _run(imports)
        return [_run(example) for example in examples]
    finally:
        os.chdir(previous)


def test_the_readme_examples_run_as_written(api_folder, readme_run):
    (trained, printed_train), (labelled, printed_label), _ = readme_run
    result = trained["result"]
    assert result.model == "trained" and (api_folder / "trained" / "saved_model" / "saved_model.pb").exists()
    written = json.loads((api_folder / "trained" / "results.json").read_text())
    assert json.loads(json.dumps(result.results)) == written
    assert result.results["rows"] == {"train": 2, "valid": 2, "test": 2}
    assert result.results["labels"] == sorted(list(MOTIONS)[:2])
    assert printed_train.splitlines()[-1].split() == [str(result.results["test_accuracy"]), "trained"]

    videos = labelled["result"].videos.set_index("uri")
    names = sorted(os.path.basename(uri) for uri in videos.index)
    assert names == _new_videos(api_folder, basename=True) and len(names) == 5  # 4 videos and the broken one
    broken = videos.loc[[uri for uri in videos.index if uri.endswith("zz_broken.mp4")][0]]
    assert broken.status == "failed" and pd.isna(broken.prediction) and broken.error_type
    ok = videos[videos.status == "ok"]
    assert len(ok) == 4 and set(ok.prediction) <= set(result.results["labels"])
    assert set(labelled["result"].frames.uri) == set(ok.index)
    assert "prediction" in printed_label and "zz_broken.mp4" in printed_label

    lines = (api_folder / "predictions.csv").read_text().splitlines()
    composed = {uri: (status, prediction) for uri, status, prediction in (line.split(",") for line in lines)}
    # The same rows as label_videos gave (both took paths relative to the folder).
    def where(uri: str) -> str:
        return os.path.abspath(api_folder / uri)

    labelled_rows = {where(uri): (row.status, row.prediction if isinstance(row.prediction, str) else "None")
                     for uri, row in videos.iterrows()}
    assert {where(uri): value for uri, value in composed.items()} == labelled_rows


def test_label_videos_transform_takes_refs_and_gives_every_table(api_folder, readme_run, tmp_path):
    import apache_beam as beam

    from beam_pipeline import LabelVideos
    from transforms.records import VideoRef

    new = _new_videos(api_folder)
    ref = VideoRef("my-id", new[0], label="moving_right", split="test")
    transform = LabelVideos(model={"handle": str(api_folder / "trained"), "model_mode": "base"},
                            sampling={"strategy": "uniform", "n_frames": 8, "imgz": 64})
    assert transform.labels == tuple(sorted(list(MOTIONS)[:2]))
    with beam.Pipeline() as p:
        rows = p | beam.Create([ref, *new[1:], 42]) | transform
        for table in ("videos", "frames", "segments"):
            _ = (rows[table] | f"Json/{table}" >> beam.Map(json.dumps, default=str)
                 | f"Write/{table}" >> beam.io.WriteToText(str(tmp_path / table), shard_name_template=""))
    seen = {table: [json.loads(line) for line in (tmp_path / table).read_text().splitlines()]
            for table in ("videos", "frames", "segments")}
    videos = {row["video_id"]: row for row in seen["videos"]}
    assert len(videos) == len(new) + 1
    (not_a_video,) = [row for row in videos.values() if row["uri"] == "42"]
    assert not_a_video["status"] == "failed" and "not a video URI (str) or VideoRef (int)" in \
        not_a_video["error_message"]
    mine = videos["my-id"]
    assert (mine["label"], mine["split"], mine["status"]) == ("moving_right", "test", "ok")
    assert mine["is_error"] == (mine["prediction"] != "moving_right")
    failed = [row for row in videos.values() if row["status"] == "failed" and row["uri"] != "42"]
    assert len(failed) == 1 and failed[0]["uri"].endswith("zz_broken.mp4")
    frames = [row for row in seen["frames"] if row["video_id"] == "my-id"]
    assert len(frames) == 8 and all(f["split"] == "test" for f in frames)
    decoded = {video_id for video_id, row in videos.items() if row["status"] == "ok"}
    assert {f["video_id"] for f in seen["frames"]} == decoded
    assert all(s["video_id"] in videos for s in seen["segments"])
    assert np.isclose(mine["score"], max(p for p in mine["top_k_scores"]))


@pytest.mark.parametrize("call,message", [
    (lambda f: __import__("beam_pipeline").LabelVideos(sampling={"strategy": "sometimes"}),
     "sampling.strategy: 'sometimes' is not one of fps, uniform, all"),
    (lambda f: __import__("beam_pipeline").LabelVideos(str(f / "no_such.yaml")),
     "--config: '.*no_such.yaml' does not exist"),
    (lambda f: __import__("beam_pipeline").train(str(f / "labels.csv"), train="finetune"),
     "train: a config section is a mapping of keys"),
    (lambda f: __import__("beam_pipeline").train(str(f / "labels.csv"), str(f / "t"),
                                                  train={"num_epochs": 0}),
     "train.num_epochs: 0"),
    (lambda f: __import__("beam_pipeline").LabelVideos(model=str(f / "no_such_model")),
     "--model: '.*no_such_model' is not a SavedModel directory"),
])
def test_keyword_config_fails_at_once_with_one_line(api_folder, call, message):
    with pytest.raises(ConfigError, match=message) as caught:
        call(api_folder)
    assert "\n" not in str(caught.value)
    assert not (api_folder / "t").exists()


def test_the_api_is_importable_without_loading_it():
    import subprocess
    import sys

    code = ("import sys, beam_pipeline; assert 'apache_beam' not in sys.modules; "
            "from beam_pipeline import LabelVideos, label_videos, train; "
            "import apache_beam; assert issubclass(LabelVideos, apache_beam.PTransform); "
            "assert callable(label_videos) and callable(train)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_label_videos_leaves_out_the_tables_it_is_told_to(api_folder, readme_run):
    """``output={"write_segments": False}``: no segments; a row per sampled frame."""
    from beam_pipeline import label_videos

    result = label_videos(str(api_folder / "new" / "moving_right_000.mp4"),
                          {"handle": str(api_folder / "trained"), "model_mode": "base"},
                          sampling={"strategy": "uniform", "n_frames": 8, "imgz": 64},
                          output={"write_segments": False})
    assert len(result.videos) == 1 and len(result.frames) == 8 and result.segments.empty
    assert ds.dataset(os.path.join(result.output, "videos"), format="parquet").count_rows() == 1


def test_the_api_keeps_runinferences_memory_notice_off_the_log(caplog):
    import logging

    import beam_pipeline.api  # noqa: F401 - its filter on the root logger

    logging.warning("Resource module is not available for current platform, memory usage cannot be fetched.")
    logging.warning("a real warning")
    assert "Resource module" not in caplog.text and "a real warning" in caplog.text
