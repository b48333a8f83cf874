"""MoViNet transfer learning: weights from a SavedModel, head and fine-tune models, train -> run, demo."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from beam_pipeline.cli import main
from beam_pipeline.demo.synthetic import make_labelled_set
from tests.conftest import IN_MEMORY, REPO

CONFIG = str(REPO / "configs" / "movinet_a0_stream.yaml")


def test_pretrained_backbone_takes_the_exported_weights_whatever_the_class_count(a0_stream):
    import tensorflow as tf

    from models.movinet_graph import classifier_on, pooled_features
    from models.movinet_training import finetune_model, head_model, pretrained_backbone

    backbone = pretrained_backbone("a0", "stream", a0_stream)  # 600 classes in, 3 out below
    source = {v.name: v.numpy() for v in tf.saved_model.load(a0_stream).model.variables}
    assert len(backbone.variables) == 385
    assert all(np.array_equal(v.numpy(), source[v.name]) for v in backbone.variables)

    classifier = classifier_on(backbone, 3)
    images = tf.random.stateless_uniform([2, 5, 48, 48, 3], seed=[1, 2])
    features = pooled_features(classifier, images)
    assert features.shape == (2, 480)
    logits, _ = classifier({**classifier.init_states(tf.shape(images)), "image": images}, training=False)
    np.testing.assert_allclose(head_model(classifier)(features).numpy(), tf.nn.softmax(logits).numpy(),
                               atol=1e-6)
    clips = np.asarray(images.numpy() * 255, np.uint8)
    np.testing.assert_allclose(finetune_model(classifier)(clips).numpy().sum(axis=1), 1.0, atol=1e-5)
    assert head_model(classifier).count_params() == 480 * 2048 + 2048 + 2048 * 3 + 3


def test_pretrained_backbone_takes_a_base_export_too(a0_base):
    import tensorflow as tf

    from models.movinet_training import pretrained_backbone

    backbone = pretrained_backbone("a0", "base", a0_base)  # 5 classes in: one _conv above its kernel
    source = {v.name: v.numpy() for v in tf.saved_model.load(a0_base).model.variables}
    assert backbone.variables and all(np.array_equal(v.numpy(), source[v.name]) for v in backbone.variables)


@pytest.mark.parametrize("model_id,mode", [("a1", "stream"), ("a0", "base")])
def test_pretrained_backbone_refuses_weights_of_another_variant(a0_stream, model_id, mode):
    from models.movinet_training import pretrained_backbone

    with pytest.raises(ValueError, match=f"do not fit MoViNet {model_id} {mode}"):
        pretrained_backbone(model_id, mode, a0_stream)


@pytest.fixture(scope="module")
def motion_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("motion")
    return make_labelled_set(str(folder), per_class=6, splits={"train": 4, "valid": 1, "test": 1},
                             seconds=1.0)


def test_training_a_movinet_checks_its_weights_before_reading_videos(tmp_path, a0_stream, motion_set, capsys):
    common = ["train", "--config", CONFIG, "--manifest", motion_set, "--output", str(tmp_path / "t"),
              *IN_MEMORY]
    assert main(common) == 2
    assert "train.checkpoint: train.method head fits a new head" in capsys.readouterr().err
    assert main([*common, "--set", f"train.checkpoint={a0_stream}", "--set", "model.model_id=a1"]) == 2
    assert "do not fit MoViNet a1 stream" in capsys.readouterr().err
    assert main([*common, "--set", "train.method=distill"]) == 2
    assert "train.method: 'distill' is not one of head, finetune" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def _refused(*args, **kwargs):
    raise AssertionError(f"no child process expected: {args}")


def test_demo_fine_tunes_a_model_that_labels_unseen_videos(demo_run, monkeypatch):
    from models.movinet_convert import litert_model

    tmp_path, summary, out = demo_run
    # 20 test clips and 24 unseen videos, 4 classes: 0.75 right by chance (p = 0.25 each) has
    # probability under 1e-5 for 20; a model that learned the motions scores 1.0 here.
    assert summary["test_accuracy"] >= 0.75 and summary["unseen_accuracy"] >= 0.75
    assert summary["counts"]["videos_ok"] == 24 and summary["counts"]["videos_failed"] == 1
    assert "Accuracy on the 24 unseen videos" in out and "broken.mp4" in out
    assert (tmp_path / "demo" / "results" / "report" / "index.html").exists() and "report/index.html" in out
    for name in ("results.json", "loss_curve.png", "confusion_matrix.png", "saved_model/saved_model.pb"):
        assert (tmp_path / "demo" / "model" / name).exists(), name
    # train put the model's LiteRT conversion in the cache: finding it converts nothing (in a child)
    monkeypatch.setattr(subprocess, "run", _refused)
    assert litert_model(str(tmp_path / "demo" / "model" / "saved_model"), 64, "a0", 4).endswith(".tflite")
    monkeypatch.undo()

    # Trained on uniform clips (8 frames over 2 s), the model labels the same unseen videos sampled
    # at a fixed rate as well as uniform ones: only the motion tells the classes apart, not where the
    # square is at a given frame (the demo's old squares crossed from one edge and were read by
    # position). At 4 fps the frames are about 10% closer in time than uniform's; two of the 24 may
    # turn, no more.
    from beam_pipeline import label_videos

    model = {"handle": str(tmp_path / "demo" / "model"), "model_id": "a0", "model_mode": "stream"}
    at_rate = label_videos(str(tmp_path / "demo" / "videos_new" / "manifest.csv"), model,
                           sampling={"strategy": "fps", "fps": 4, "imgz": 64})
    decoded = at_rate.videos[at_rate.videos.status == "ok"]
    assert len(decoded) == 24
    assert (decoded.prediction == decoded.label).mean() >= summary["unseen_accuracy"] - 2 / 24

    # The learning check: played backwards, each unseen video moves the other way, and a model that
    # learned the motions turns its answer around. Position and looks are the same both ways, so a fit
    # that learned those, or memorised its clips, cannot pass (tests/training/test_learning_check.py).
    backwards = _played_backwards(tmp_path / "demo" / "videos_new" / "manifest.csv", tmp_path / "backwards")
    turned = label_videos(backwards, model, sampling={"strategy": "uniform", "n_frames": 8, "imgz": 64})
    decoded = turned.videos[turned.videos.status == "ok"]
    assert len(decoded) == 24 and (decoded.prediction == decoded.label).mean() >= 0.75


def _played_backwards(manifest: os.PathLike, folder: os.PathLike) -> str:
    """Writes each video of ``manifest`` that decodes with its frames in reverse order into ``folder``,
    labelled with the opposite motion; returns the new manifest."""
    import av

    from beam_pipeline.demo.synthetic import write_video
    from tests.helpers import OPPOSITE

    os.makedirs(folder, exist_ok=True)
    rows = ["uri,label"]
    for line in open(manifest).read().splitlines()[1:]:
        uri, label = line.split(",")[:2]
        try:
            with av.open(os.path.join(os.path.dirname(manifest), uri)) as container:
                fps = int(container.streams.video[0].average_rate)
                frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        except av.FFmpegError:  # the demo's broken.mp4
            continue
        write_video(os.path.join(folder, uri), frames[::-1], fps=fps)
        rows.append(f"{uri},{OPPOSITE[label]}")
    path = os.path.join(folder, "manifest.csv")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(rows) + "\n")
    return path


def test_a_trained_folder_runs_with_the_mode_it_was_trained_in(tmp_path, capsys):
    trained = tmp_path / "trained"
    (trained / "saved_model").mkdir(parents=True)
    (trained / "saved_model" / "saved_model.pb").write_bytes(b"")
    job = {"model": {"kind": "movinet", "model_id": "a0", "model_mode": "base"}}
    (trained / "results.json").write_text(json.dumps({"config": {"job": job}}))
    (tmp_path / "clip.mp4").write_bytes(b"")
    code = main(["run", "--config", CONFIG, "--input", str(tmp_path / "*.mp4"),
                 "--output", str(tmp_path / "o"), "--model", str(trained)])
    assert code == 2
    assert "model.model_mode: 'stream', but" in capsys.readouterr().err
