"""``videolabel export`` (label-studio, webvtt, csv) and ``import-annotations`` on an output made of real
rows (``transforms.aggregate``), written as a run writes them. The round trip through a real Label
Studio is in ``test_label_studio.py``."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from beam_pipeline.cli.commands import main
from beam_pipeline.outputs.annotations import import_annotations
from beam_pipeline.outputs.exports import export, to_frame, vtt_time
from models.scores import top_k_arrays
from transforms.aggregate import RunStamp, frames_batch, segments_batch, video_batch
from transforms.listing import ListVideos
from transforms.records import ClipPrediction, ErrorStage, VideoError, VideoInfo, VideoMeta, VideoRef
from transforms.segments import SegmentRule
from transforms.write import partition_dir, write_table

LABELS = ["run", "jump", "sit"]
FPS = 8.0


def _video(video_id: str, classes: str, label: str | None, split: str, score: float = 0.9):
    """One video's tables: frames at 8 fps predicting ``classes`` (one letter each) at ``score``."""
    probs = np.full((len(classes), len(LABELS)), (1 - score) / 2, np.float32)
    probs[np.arange(len(classes)), ["rjs".index(c) for c in classes]] = score
    frames = np.arange(len(classes))
    clip = ClipPrediction(frames * 3, frames / FPS, *top_k_arrays(probs, 2), probs[-1], probs)
    info = VideoInfo(VideoRef(video_id, f"/videos/{video_id}.mp4", label, split),
                     VideoMeta(len(classes) / FPS, FPS, 64, 48, "h264"), len(classes) * 3, len(classes), None)
    clips = [(0, clip)]
    return {"videos": video_batch(info, clips, "stream", LABELS, 2, RunStamp("model-dir", "cfg", "run-1")),
            "frames": frames_batch(info, clips, LABELS, 2, write_probs=True),
            "segments": segments_batch(info, clips, LABELS, SegmentRule(0.5, 0.5))}


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    videos = {"a": _video("a", "r" * 16 + "j" * 16, "run", "train", 0.9),     # wrong half-way: is_error
              "b": _video("b", "j" * 24, "jump", "test", 0.6),                  # right, unsure
              "c": _video("c", "s" * 12 + "r" * 12, None, "test", 0.95)}        # no label, sure
    failed = VideoInfo(VideoRef("d", "/videos/d.mp4", "sit", "test"), None, 0, 0,
                       VideoError(ErrorStage.OPEN, "InvalidDataError", "broken"))
    stamp = RunStamp("model-dir", "cfg", "run-1")
    videos["d"] = {"videos": video_batch(failed, [], "stream", LABELS, 2, stamp)}
    for video_id, tables in videos.items():
        split = tables["videos"]["video_id"][0].as_py() and {"a": "train"}.get(video_id, "test")
        for table, batch in tables.items():
            folder = Path(partition_dir(str(root), table, split))
            folder.mkdir(parents=True, exist_ok=True)
            write_table(str(folder / f"part-{video_id}.parquet"), pa.Table.from_batches([batch]))
    (root / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return root


def test_webvtt_has_one_cue_per_segment_at_its_times(output, tmp_path):
    paths = export(str(output), "webvtt", str(tmp_path))
    assert sorted(Path(p).name for p in paths) == ["a.vtt", "b.vtt", "c.vtt"]  # d failed: no file
    text = (tmp_path / "a.vtt").read_text()
    assert text == ("WEBVTT\n\n1\n00:00:00.000 --> 00:00:02.000\nrun 90%\n\n"
                    "2\n00:00:02.000 --> 00:00:04.000\njump 90%\n")
    time_ = r"(\d\d:\d\d:\d\d\.\d{3})"
    cues = re.findall(f"{time_} --> {time_}", (tmp_path / "c.vtt").read_text())
    assert cues == [("00:00:00.000", "00:00:01.500"), ("00:00:01.500", "00:00:03.000")]
    assert vtt_time(3725.5) == "01:02:05.500" and vtt_time(0.0004) == "00:00:00.000"


def test_the_csv_has_a_probability_column_per_class_and_one_row_per_frame(output, tmp_path):
    (path,) = export(str(output), "csv", str(tmp_path))
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [*LABELS, "prediction", "video", "frame", "label", "split", "error"]
    assert len(rows) == 32 + 24 + 24
    a = [r for r in rows if r["video"] == "/videos/a.mp4"]
    assert [r["frame"] for r in a[:3]] == ["0", "3", "6"] and {r["split"] for r in a} == {"train"}
    assert float(a[0]["run"]) == pytest.approx(0.9) and float(a[0]["jump"]) == pytest.approx(0.05)
    assert [r["error"] for r in (a[0], a[-1])] == ["false", "true"]  # run, then jump: label run
    assert {r["label"] for r in rows if r["video"] == "/videos/c.mp4"} == {""}  # no label: empty


def test_the_csv_needs_the_runs_probabilities(output, tmp_path):
    no_probs = tmp_path / "run"
    for table in ("videos", "frames"):
        for part in (output / table).rglob("*.parquet"):
            target = no_probs / part.relative_to(output)
            target.parent.mkdir(parents=True, exist_ok=True)
            table_rows = pq.read_table(part)
            write_table(str(target), table_rows.drop_columns(["probs"]) if table == "frames" else table_rows)
    with pytest.raises(ValueError, match="output.write_probs=true"):
        export(str(no_probs), "csv", str(tmp_path / "csv"))
    assert main(["export", str(no_probs), "--format", "csv", "--output", str(tmp_path / "csv")]) == 2


def _tasks(output: Path, folder: Path) -> list[dict]:
    assert main(["export", str(output), "--format", "label-studio", "--output", str(folder),
                 "--document-root", "/videos"]) == 0
    return json.loads((folder / "tasks.json").read_text())


def test_label_studio_tasks_come_doubtful_first_with_their_segments_as_regions(output, tmp_path):
    tasks = _tasks(output, tmp_path)
    assert [t["data"]["video_id"] for t in tasks] == ["a", "b", "c"]  # wrong, then by rising score
    a = tasks[0]
    assert a["data"]["video"] == "/data/local-files/?d=a.mp4" and a["data"]["fps"] == FPS
    (prediction,) = a["predictions"]
    assert prediction["model_version"] == "model-dir"
    regions = [(r["value"]["timelinelabels"], r["value"]["ranges"]) for r in prediction["result"]]
    assert regions == [(["run"], [{"start": 1, "end": 16}]), (["jump"], [{"start": 17, "end": 32}])]
    config = (tmp_path / "label_config.xml").read_text()
    assert all(f'<Label value="{label}"/>' in config for label in LABELS)
    assert to_frame(2.0, FPS) == 17 and to_frame(0.0, FPS) == 1


def test_an_annotated_export_comes_back_as_a_segment_manifest_that_listing_reads(output, tmp_path):
    tasks = _tasks(output, tmp_path)
    # a person corrects video a: the second half is "sit", from 1.5 s; b is accepted as predicted
    # (an earlier cancelled annotation of b is ignored); c, a video of a glob (unlabelled), is labelled
    # "sit" over its first second; a task nobody opened is left out
    corrected = json.loads(json.dumps(tasks[0]["predictions"][0]["result"]))
    corrected[1]["value"] = {"ranges": [{"start": 13, "end": 32}], "timelinelabels": ["sit"]}
    corrected[0]["value"]["ranges"] = [{"start": 1, "end": 12}]
    tasks[0]["annotations"] = [{"id": 1, "result": corrected, "was_cancelled": False,
                                "updated_at": "2026-12-03T10:00:00Z"}]
    accepted = tasks[1]["predictions"][0]["result"]
    tasks[1]["annotations"] = [
        {"id": 2, "result": [], "was_cancelled": True, "updated_at": "2026-12-03T09:00:00Z"},
        {"id": 3, "result": accepted, "was_cancelled": False, "updated_at": "2026-12-03T10:01:00Z"}]
    tasks[2]["data"]["split"] = "unlabelled"
    tasks[2]["annotations"] = [{"id": 4, "was_cancelled": False, "result": [
        {"from_name": "action", "to_name": "video", "type": "timelinelabels",
         "value": {"ranges": [{"start": 1, "end": 8}], "timelinelabels": ["sit"]}}]}]
    unopened = json.loads(json.dumps(tasks[1]))
    unopened["data"]["uri"], unopened["annotations"] = "/videos/e.mp4", []
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps([*tasks, unopened]))
    manifest = tmp_path / "manifest.csv"
    found = import_annotations(str(exported), str(manifest))
    assert (found.tasks, found.annotated, found.changed) == (4, 3, 2)
    assert manifest.read_text().splitlines() == [
        "uri,start_s,end_s,label,split",
        "/videos/a.mp4,0.0,1.5,run,train", "/videos/a.mp4,1.5,4.0,sit,train",
        "/videos/b.mp4,0.0,3.0,jump,test", "/videos/c.mp4,0.0,1.0,sit,"]

    def listed(refs):  # what `train --manifest` lists: one ref per video, its segments merged
        refs = {ref.uri: ref for ref in refs}
        assert refs["/videos/a.mp4"].segments == ((0.0, 1.5, "run"), (1.5, 4.0, "sit"))
        assert refs["/videos/a.mp4"].label_at(1.6) == "sit" and refs["/videos/a.mp4"].split == "train"
        assert refs["/videos/b.mp4"].label == "jump" and len(refs) == 3
        assert refs["/videos/c.mp4"].split in ("train", "valid", "test")  # the hash's, now it is labelled

    with TestPipeline() as p:
        ratios = {"train": 0.8, "valid": 0.1, "test": 0.1}
        refs = p | ListVideos((str(manifest),), extensions=(".mp4",), ratios=ratios, salt="")
        assert_that(refs | beam.combiners.ToList(), lambda found: listed(found[0]))


def test_import_refuses_what_is_not_a_videolabel_export_in_one_line(tmp_path):
    bad = tmp_path / "min.json"
    bad.write_text(json.dumps({"tasks": []}))
    assert main(["import-annotations", str(bad), "--output", str(tmp_path / "m.csv")]) == 2
    alien = tmp_path / "alien.json"
    alien.write_text(json.dumps([{"id": 7, "data": {"video": "x.mp4"},
                                  "annotations": [{"id": 1, "result": []}]}]))
    with pytest.raises(ValueError, match="task 7 has no uri or fps"):
        import_annotations(str(alien), str(tmp_path / "m.csv"))
    empty = tmp_path / "none.json"
    empty.write_text(json.dumps([]))
    assert main(["import-annotations", str(empty), "--output", str(tmp_path / "m.csv")]) == 1
