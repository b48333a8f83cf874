"""`videolabel train` for the pose LSTM, then `videolabel run` with what it trained (real ASL clips)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.dataset as ds
import pytest

from beam_pipeline.cli import main
from tests.conftest import IN_MEMORY, REPO, SHARED_FIXTURES, shared_fixture


@pytest.fixture(scope="module")
def asl_manifest(tmp_path_factory):
    clips = sorted((SHARED_FIXTURES / "videos" / "asl_gestures").glob("*.mkv"))
    if len(clips) < 20:
        pytest.skip("the ASL clips under ../shared/fixtures/videos/asl_gestures are absent")
    path = tmp_path_factory.mktemp("asl") / "labels.csv"
    rows = []
    for i, clip in enumerate(clips):
        split = "train" if i < 14 else ("valid" if i < 17 else "test")
        rows.append(f"{clip},{'early' if clip.stem < 'm' else 'late'},{split}")
    broken = path.parent / "broken.mkv"
    broken.write_bytes(b"not a video" * 100)
    rows.append(f"{broken},early,train")  # left out of training, counted, and on the progress line
    path.write_text("uri,label,split\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.slow  # fits the LSTM, then runs the job
def test_train_then_run_the_pose_lstm_through_the_cli(tmp_path, asl_manifest, capsys):
    movenet = str(shared_fixture("models", "movenet_single_pose_lightning_ptq.tflite"))
    trained = tmp_path / "trained"
    config = str(REPO / "configs" / "lstm_pose.yaml")
    code = main(["train", "--config", config, "--manifest", str(asl_manifest), "--output", str(trained),
                 "--set", f"pose.handle={movenet}", "--set", "train.num_epochs=3", *IN_MEMORY])
    assert code == 0
    printed = capsys.readouterr()
    assert "test accuracy" in printed.out and "20 videos used, 1 failed to decode" in printed.out
    # the feature pass shows run's progress line, and training one line per epoch
    assert "videolabel: 21/21 videos (100%), 1 failed" in printed.err
    assert "train: epoch 3/3" in printed.err
    features = ds.dataset(trained / "features", format="parquet", partitioning="hive").to_table()
    assert features.num_rows == 20  # uniform sampling of 9 frames: one window per clip
    assert {tuple(s) for s in features["shape"].to_pylist()} == {(9, 51)}
    assert set(features["dtype"].to_pylist()) == {"float32"}
    results = json.loads((trained / "results.json").read_text())
    assert results["rows"] == {"train": 14, "valid": 3, "test": 3}
    assert results["labels"] == ["early", "late"] and 0 <= results["test_accuracy"] <= 1
    assert results["epochs_run"] <= 3 and results["parameters"] > 300_000
    for name in ("loss_curve.png", "confusion_matrix.png", "labels.txt", "saved_model/saved_model.pb"):
        assert (trained / name).exists(), name

    out = tmp_path / "labelled"
    code = main(["run", "--config", config, "--input", f"{SHARED_FIXTURES}/videos/asl_gestures/[a-c]*.mkv",
                 "--output", str(out), "--model", str(trained), "--set", f"pose.handle={movenet}",
                 "--set", "output.write_keypoints=true", "--set", "output.write_embeddings=true", *IN_MEMORY])
    assert code == 0
    # an embedding per video: the LSTM's embedding layer on its one window, 128 floats as results.json says
    assert results["config"]["embedding_width"] == 128
    embeddings = ds.dataset(out / "embeddings", format="parquet", partitioning="hive").to_table().to_pandas()
    whole = embeddings[embeddings.segment_index.isna()]
    assert len(whole) == 4 and {len(e) for e in whole.embedding} == {128}
    vectors = np.stack(whole.embedding.to_numpy())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert np.linalg.matrix_rank(vectors) == 4  # four videos, four different windows
    videos = ds.dataset(out / "videos", format="parquet", partitioning="hive").to_table().to_pandas()
    frames = ds.dataset(out / "frames", format="parquet", partitioning="hive").to_table().to_pandas()
    names = sorted(videos.uri.str.rsplit("/", n=1).str[-1])
    assert names == ["again.mkv", "bird.mkv", "book.mkv", "brother.mkv"]
    assert set(videos.status) == {"ok"} and set(videos.prediction) <= {"early", "late"}
    assert frames.groupby("video_id").size().tolist() == [9, 9, 9, 9]
    keypoints = np.stack(frames.keypoints.to_numpy()).reshape(-1, 17, 3)
    assert keypoints.shape == (36, 17, 3) and (keypoints[..., 2] > 0).sum(axis=1).min() >= 8


def test_lstm_needs_a_pose_model_and_a_trained_folder(tmp_path, capsys):
    config = str(REPO / "configs" / "lstm_pose.yaml")
    code = main(["run", "--config", config, "--input", "x/*.mp4", "--output", str(tmp_path / "o")])
    assert code == 2 and "pose.handle: model.kind lstm needs a MoveNet" in capsys.readouterr().err
    movenet = str(shared_fixture("models", "movenet_single_pose_lightning_ptq.tflite"))
    code = main(["run", "--config", config, "--input", f"{SHARED_FIXTURES}/videos/asl_gestures/*.mkv",
                 "--output", str(tmp_path / "o"), "--model", str(tmp_path / "model"),
                 "--set", f"pose.handle={movenet}"])
    assert code == 2 and "is not a `videolabel train` output folder" in capsys.readouterr().err


def test_train_checks_the_pose_model_before_reading_videos(tmp_path, asl_manifest, capsys):
    config = str(REPO / "configs" / "lstm_pose.yaml")
    code = main(["train", "--config", config, "--manifest", str(asl_manifest),
                 "--output", str(tmp_path / "t"),
                 "--set", "pose.handle=/nowhere/movenet.tflite", *IN_MEMORY])
    assert code == 2 and "pose.handle: '/nowhere/movenet.tflite' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
