"""The review loop against a real Label Studio (``tests/label_studio.py``): a run's segments go in as
pre-annotated tasks, a person's annotation (made through Label Studio's API) changes a label, Label
Studio's JSON export comes back as a segment manifest, and ``videolabel train`` fits a new head on the
frozen backbone on it as it is (the suite's one head fit: a run with the trained model gives each video
what the fitted head gives its features)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.dataset as ds
import pytest

from beam_pipeline.cli.commands import main
from beam_pipeline.outputs.exports import FROM_NAME
from beam_pipeline.training.train_job import example_array
from tests.conftest import IN_MEMORY
from tests.label_studio import label_studio

pytestmark = pytest.mark.slow

SPLITS = ("train", "train", "train", "valid", "test")  # per motion: 20 videos
ON_DEMO = ["--set", "sampling.imgz=64"]  # the demo model's frames


def _tasks(studio, project: int) -> list[dict]:
    found = studio.get("/api/tasks", project=project, fields="all", page_size=1000)
    return found["tasks"] if isinstance(found, dict) else found


def _corrected(task: dict, label: str) -> list[dict]:
    """The regions a person saves: the predicted ones, each given ``label``; the whole video when the
    model found no segment."""
    regions = json.loads(json.dumps(task["predictions"][0]["result"]))
    if not regions:
        frames = max(1, round(task["data"]["fps"] * 2))
        regions = [{"id": "whole", "from_name": FROM_NAME, "to_name": "video", "type": "timelinelabels",
                    "value": {"ranges": [{"start": 1, "end": frames}], "timelinelabels": [label]}}]
    for region in regions:
        region["value"]["timelinelabels"] = [label]
        region.pop("score", None)
    return regions


def _runs_as_its_head(trained, source, manifest, features, labels, tmp_path) -> None:
    """The stream model that `run` serves from ``trained`` gives each video what the fitted head gives its
    frozen features (``features``: the train output's rows)."""
    import tensorflow as tf

    from models.movinet_graph import classifier_on
    from models.movinet_training import head_model, pretrained_backbone, weights_prefix

    out = tmp_path / "labelled"
    assert main(["run", "--config", "configs/movinet_a0_train.yaml", "--input", str(manifest), "--output",
                 str(out), "--model", str(trained), "--set", "model.top_k=4", "--set", "model.runtime=tf",
                 *ON_DEMO, *IN_MEMORY]) == 0
    videos = ds.dataset(out / "videos", format="parquet", partitioning="hive").to_table().to_pylist()
    assert len(videos) == 20 and {v["status"] for v in videos} == {"ok"}
    classifier = classifier_on(pretrained_backbone("a0", "stream", str(source / "saved_model")), len(labels))
    tf.train.Checkpoint(model=classifier).read(weights_prefix(str(trained / "saved_model"))).expect_partial()
    by_uri = {r["uri"]: example_array(r) for r in features}
    for video in videos:
        probs = head_model(classifier)(by_uri[video["uri"]][np.newaxis]).numpy()[0]
        assert video["prediction"] == labels[int(probs.argmax())]
        assert video["score"] == pytest.approx(float(probs.max()), abs=1e-4)


def test_run_to_label_studio_to_corrected_manifest_to_retrained_model(demo_run, tmp_path):
    folder, _, _ = demo_run
    model = folder / "demo" / "model"
    videos = folder / "demo" / "videos_train"
    manifest = tmp_path / "labelled.csv"
    with open(manifest, "w", newline="") as handle:
        handle.write("uri,label,split\n")
        for motion in ("moving_right", "moving_left", "moving_up", "moving_down"):
            for i, split in enumerate(SPLITS):
                handle.write(f"{videos / f'{motion}_{i:03d}.mp4'},{motion},{split}\n")
    out = tmp_path / "run"
    assert main(["run", "--config", "configs/movinet_a0_train.yaml", "--input", str(manifest), "--output",
                 str(out), "--model", str(model), *ON_DEMO, *IN_MEMORY]) == 0
    assert main(["export", str(out), "--format", "label-studio", "--output", str(tmp_path / "ls"),
                 "--document-root", str(videos)]) == 0
    exported = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    labels = (model / "labels.txt").read_text().split()

    with label_studio(tmp_path / "studio") as studio:
        config = (tmp_path / "ls" / "label_config.xml").read_text()
        project = studio.post("/api/projects", {"title": "videolabel review", "label_config": config})
        imported = studio.post(f"/api/projects/{project['id']}/import", exported)
        assert imported["task_count"] == imported["prediction_count"] == 20
        tasks = _tasks(studio, project["id"])
        assert len(tasks) == 20
        by_video = {t["data"]["video_id"]: t for t in tasks}
        for ours in exported:  # the predictions are stored with their scores and regions as exported
            theirs = by_video[ours["data"]["video_id"]]["predictions"][0]
            assert theirs["score"] == pytest.approx(ours["predictions"][0]["score"])
            regions = ours["predictions"][0]["result"]
            assert [r["value"] for r in theirs["result"]] == [r["value"] for r in regions]
        # the person checks every video, most doubtful first: each gets its true label, except the first,
        # which the person decides is something else
        first = exported[0]["data"]
        changed_to = next(label for label in labels if label not in (first["label"], first["prediction"]))
        for ours in exported:
            task = by_video[ours["data"]["video_id"]]
            label = changed_to if task["data"]["video_id"] == first["video_id"] else task["data"]["label"]
            studio.post(f"/api/tasks/{task['id']}/annotations/",
                        {"result": _corrected(task, label), "was_cancelled": False, "lead_time": 3.0})
        response = studio.session.get(f"{studio.url}/api/projects/{project['id']}/export",
                                      params={"exportType": "JSON"}, timeout=60)
        response.raise_for_status()
        (tmp_path / "export.json").write_bytes(response.content)

    corrections = tmp_path / "corrections.csv"
    assert main(["import-annotations", str(tmp_path / "export.json"), "--output", str(corrections)]) == 0
    with open(corrections, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["uri"] for row in rows} == {str(videos / v) for v in
                                            (f"{m}_{i:03d}.mp4" for m in ("moving_right", "moving_left",
                                                                        "moving_up", "moving_down")
                                             for i in range(5))}
    mine = [row for row in rows if row["uri"] == first["uri"]]
    assert mine and {row["label"] for row in mine} == {changed_to}
    assert all(float(row["start_s"]) < float(row["end_s"]) for row in rows)
    assert sorted({row["split"] for row in rows}) == ["test", "train", "valid"]

    trained = tmp_path / "trained"
    assert main(["train", "--config", "configs/movinet_a0_train.yaml", "--manifest", str(corrections),
                 "--output", str(trained), "--set", f"train.checkpoint={model / 'saved_model'}",
                 "--set", "train.num_epochs=3", "--set", "model.runtime=tf",  # no LiteRT conversion after
                 *ON_DEMO, *IN_MEMORY]) == 0
    results = json.loads((trained / "results.json").read_text())
    assert results["rows"] == {"train": 12, "valid": 4, "test": 4}  # each clip labelled by its segment
    assert results["labels"] == sorted(labels) and results["config"]["manifest"] == str(corrections)
    assert results["parameters"] == 480 * 2048 + 2048 + 2048 * 4 + 4  # only the head trains
    for name in ("loss_curve.png", "confusion_matrix.png", "labels.txt", "saved_model/labels.txt"):
        assert (trained / name).exists(), name
    features = ds.dataset(trained / "features", format="parquet", partitioning="hive").to_table().to_pylist()
    assert {tuple(r["shape"]) for r in features} == {(480,)} and len(features) == 20
    assert {r["label"] for r in features if r["uri"] == first["uri"]} == {changed_to}
    _runs_as_its_head(trained, model, corrections, features, results["labels"], tmp_path)
    # one video's path, for pytest -s
    print(json.dumps({"video": first["uri"], "label": first["label"], "prediction": first["prediction"],
                      "score": first["score"], "task_regions": exported[0]["predictions"][0]["result"],
                      "corrected_to": changed_to, "manifest_rows": mine, "trained_rows": results["rows"],
                      "test_accuracy": results["test_accuracy"]}, indent=1))
