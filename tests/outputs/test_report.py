"""`videolabel report` on a real Parquet output, and its index.html in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pytest

from beam_pipeline.cli import main
from beam_pipeline.outputs.run_record import RUN_FILE
from models.scores import top_k_arrays
from tests.helpers import sample_record
from transforms.aggregate import RunStamp, frames_batch, segments_batch, video_batch
from transforms.records import ClipPrediction, ErrorStage, VideoError, VideoInfo, VideoMeta, VideoRef
from transforms.schema import SEGMENTS_SCHEMA, VIDEOS_SCHEMA, frames_schema
from transforms.segments import SegmentRule
from transforms.write import part_name, partition_dir, write_table

LABELS = ["jump", "run", "walk"]
META = VideoMeta(2.0, 25.0, 160, 120, "h264")

# (label, predicted class per frame, split); the video's prediction is its last frame's (stream mode)
VIDEOS = [
    ("jump", [0, 0, 0], "test"), ("jump", [0, 1, 0], "test"), ("run", [1, 1, 1], "test"),
    ("run", [1, 0, 0], "train"), ("walk", [2, 2, 1], "train"), ("walk", [2, 2, 2], "train"),
]


def _write_output(root, labelled=True):
    stamp = RunStamp("m", "h", "run-1")
    groups = {}
    for i, (label, classes, split) in enumerate(VIDEOS):
        probs = np.full((len(classes), 3), 0.1, np.float32)
        probs[np.arange(len(classes)), classes] = 0.8 - 0.1 * i  # later videos are less sure
        ref = VideoRef(f"v{i}", f"/data/v{i}.mp4", label if labelled else None, split)
        times = np.arange(len(classes))
        clip = ClipPrediction(times, times * 0.5, *top_k_arrays(probs, 3), probs[-1])
        info = VideoInfo(ref, META, 50, len(classes), None)
        videos, frames, segments = groups.setdefault(split, ([], [], []))
        videos.append(video_batch(info, [(0, clip)], "stream", LABELS, 3, stamp))
        frames.append(frames_batch(info, [(0, clip)], LABELS, 3))
        segments.append(segments_batch(info, [(0, clip)], LABELS, SegmentRule(min_s=0.5, min_score=0.5)))
    broken = VideoInfo(VideoRef("bad", "/data/bad.mp4", "run", "test"), None, 0, 0,
                       VideoError(ErrorStage.OPEN, "InvalidDataError", "not a video"))
    groups["test"][0].append(video_batch(broken, [], "stream", LABELS, 3, stamp))
    for split, (videos, frames, segments) in groups.items():
        tables = (("videos", videos, VIDEOS_SCHEMA), ("frames", frames, frames_schema(False)),
                  ("segments", segments, SEGMENTS_SCHEMA))
        for table, batches, schema in tables:
            folder = partition_dir(str(root), table, split)
            (root / folder[len(str(root)) + 1:]).mkdir(parents=True, exist_ok=True)
            rows = pa.Table.from_batches(batches, schema=schema)
            write_table(f"{folder}/{part_name('run-1', 'w', 0)}", rows)
    sample_record().model_copy(update={"run_id": "run-1"}).write(str(root))


def test_report_figures_are_computed_from_the_parquet(tmp_path, capsys):
    _write_output(tmp_path)
    assert main(["report", str(tmp_path), "--timelines", "3"]) == 0
    out = capsys.readouterr().out
    assert "test: accuracy 1.000 (3/3 videos)" in out and "train: accuracy 0.333 (1/3 videos)" in out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["status"] == {"ok": 6, "failed": 1} and report["run_id"] == "run-1"
    classes = {c["label"]: c for c in report["classes"]}
    # jump: 2 true, both predicted jump; run: v2 right, v3 predicted jump; walk: v4 predicted run
    assert classes["jump"] == {"label": "jump", "support": 2, "predicted": 3, "precision": 2 / 3,
                               "recall": 1.0}
    assert classes["run"]["precision"] == 0.5 and classes["run"]["recall"] == 0.5
    assert classes["walk"]["precision"] == 1.0 and classes["walk"]["recall"] == 0.5
    assert report["failures"] == [{"error_type": "InvalidDataError", "videos": 1, "stages": ["open"],
                                   "statuses": ["failed"], "example_uri": "/data/bad.mp4",
                                   "example_message": "not a video"}]
    # the two wrong videos first (most confident first), then the least confident right one
    assert [t["uri"] for t in report["timelines"]] == ["/data/v3.mp4", "/data/v4.mp4", "/data/v5.mp4"]
    # with their segments: v3 (frames at 0, 0.5, 1 s: run, jump, jump, scored 0.5) two of them; v4 and
    # v5 score under 0.5 (the segment_min_score these rows were made with), so none
    v3 = [{"start_s": 0.0, "end_s": 0.5, "label": "run"}, {"start_s": 0.5, "end_s": 1.5, "label": "jump"}]
    assert [t["segments"] for t in report["timelines"]] == [v3, [], []]
    for name in ("index.html", "confusion_matrix.png", "timeline_0.png", "timeline_2.png"):
        assert (tmp_path / "report" / name).stat().st_size > 1000, name


def test_the_labels_of_a_model_with_random_weights_come_with_a_warning(tmp_path):
    from beam_pipeline.outputs.report import build_report

    _write_output(tmp_path)
    assert build_report(str(tmp_path))["warning"] is None
    record = sample_record()
    random = record.model_copy(update={"model": record.model.model_copy(update={"weights": "random"})})
    random.write(str(tmp_path))
    report = build_report(str(tmp_path))
    assert report["warning"].startswith("model-dir has random weights (export-movinet without --checkpoint)")
    assert "class='warning'>model-dir has random weights" in (tmp_path / "report" / "index.html").read_text()


def test_unlabelled_output_reports_the_label_distribution(tmp_path):
    from beam_pipeline.outputs.report import build_report

    _write_output(tmp_path, labelled=False)
    report = build_report(str(tmp_path))
    assert report["accuracy_by_split"] == []
    assert report["label_distribution"] == {"jump": 3, "run": 2, "walk": 1}
    assert "label_distribution.png" in report["images"]
    assert "No video has a label" in (tmp_path / "report" / "index.html").read_text()


def test_a_run_record_of_another_version_is_left_out_of_the_report(tmp_path, caplog):
    from beam_pipeline.outputs.report import build_report

    _write_output(tmp_path)
    older = {"run_id": "old", "timings": {"mean_ms": {"model_per_batch": 1.0}}}
    (tmp_path / RUN_FILE).write_text(json.dumps(older))
    report = build_report(str(tmp_path))
    assert report["run_id"] is None and report["status"] == {"ok": 6, "failed": 1}
    assert "not a run record of this version" in caplog.text


def test_report_of_a_folder_without_a_run_is_one_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no videos table" in capsys.readouterr().err


def test_index_html_renders_with_its_plots_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (`make test` installs it)")
    _write_output(tmp_path)
    main(["report", str(tmp_path)])
    page = (tmp_path / "report" / "index.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    # the page's own check: every <img> loaded with a width (confusion matrix and 6 timelines)
    assert 'data-images="7/7"' in dom.stdout, dom.stderr[-2000:]
    shot = tmp_path / "page.png"
    subprocess.run([chromium, *flags, "--window-size=1200,1600", f"--screenshot={shot}", page],
                   capture_output=True, timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    assert (pixels[..., :3] < 0.5).mean() > 0.01  # text and plots drawn, not a blank page


def test_the_summary_ends_with_what_the_run_found(tmp_path):
    import pyarrow.dataset as ds

    from beam_pipeline.outputs.summary import found_lines
    from benchmarks.app_queries import write_synthetic_output

    _write_output(tmp_path / "small")  # 7 videos: each with its prediction, the failed one by its status
    lines = found_lines(str(tmp_path / "small"))
    assert lines[0] == "  found:" and len(lines) == 8
    assert lines[1].split() == ["bad.mp4", "failed"] and lines[2].split()[:2] == ["v0.mp4", "jump"]
    # a larger run: labels and their counts, the most frequent first, from the prediction column
    root = write_synthetic_output(tmp_path / "large", videos=60, frames_per_video=2, videos_per_file=20)
    table = ds.dataset(f"{root}/videos", partitioning="hive").to_table().to_pandas()
    counts = sorted(table.prediction.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))
    (line,) = found_lines(str(root))
    shown = ", ".join(f"{label} {count}" for label, count in counts[:10])
    assert line == f"  found (videos per predicted label): {shown}, and {len(counts) - 10} more labels"
