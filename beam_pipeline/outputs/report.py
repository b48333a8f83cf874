"""``videolabel report OUTPUT``: what a run's Parquet says, as tables, plots and one index.html.

Written into ``OUTPUT/report/`` (a local output folder):

* ``index.html``, linking everything below, readable offline;
* ``report.json``, the same figures for scripts;
* ``confusion_matrix.png`` over the labelled videos that were classified;
* ``timeline_<k>.png``: frame predictions over time for the wrong videos, most
  confident first, then the least confident right ones, with the video's
  segments (the ``segments`` table) drawn as labelled spans under the score;
* ``label_distribution.png``: the predicted labels, when no video has a label.

Accuracy counts videos with a label whose status is ``ok`` or ``partial``;
precision and recall are per class over the same videos.
"""

from __future__ import annotations

import html
import json
import logging
import os
from typing import Any

import numpy as np
import pandas as pd

from beam_pipeline.config import ConfigError
from beam_pipeline.outputs.figures import class_metrics, failure_table, judged_videos, split_accuracy
from beam_pipeline.outputs.ledger import REPORT_WRITES, claim
from beam_pipeline.outputs.run_output import RunOutput
from models.plots import confusion_matrix, plot_confusion, plot_counts, plot_timeline
from models.weights_note import random_weights_warning

__all__ = ["build_report"]

_log = logging.getLogger(__name__)


def _read(output: RunOutput, table: str) -> pd.DataFrame | None:
    """One table of the run (its part files only), or None when the output lacks it."""
    dataset = output.dataset(table)
    return None if dataset is None else dataset.to_table().to_pandas()


def _timeline_videos(videos: pd.DataFrame, count: int) -> pd.DataFrame:
    """The wrong videos (most confident first), then the least confident others."""
    classified = videos[videos.prediction.notna()].copy()
    classified["wrong"] = classified.is_error.fillna(False).astype(bool)
    wrong = classified[classified.wrong].sort_values("score", ascending=False)
    rest = classified[~classified.wrong].sort_values("score")
    return pd.concat([wrong, rest]).head(count)


def _plain(value: Any) -> Any:
    """JSON for numpy scalars (and anything else as text)."""
    return value.item() if isinstance(value, np.generic) else str(value)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}"
        if isinstance(value, list):
            return ", ".join(map(str, value))
        return "-" if value is None else str(value)

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(r[c]))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
          "margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
          "th{background:#f0f0f0}img{max-width:100%;border:1px solid #ddd;margin:.3em 0}"
          "figure{margin:0 0 1.2em}figcaption{font-size:90%;color:#444}"
          ".warning{background:#fff3cd;border:1px solid #e0c36c;padding:.5em .8em}")
# Records in <body data-images="loaded/total"> whether every plot loaded (read by tests and scripts).
_IMAGE_CHECK = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
                "document.body.dataset.images="
                "i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;});</script>")


def _labelled_section(judged: pd.DataFrame, report: dict[str, Any], out: str) -> str:
    names = sorted(set(judged.label) | set(judged.prediction))
    index = {n: i for i, n in enumerate(names)}
    matrix = confusion_matrix(judged.label.map(index), judged.prediction.map(index), len(names))
    plot_confusion(matrix, names, os.path.join(out, "confusion_matrix.png"), f"{len(judged)} labelled videos")
    report["images"].append("confusion_matrix.png")
    return ("<h2>Accuracy per split</h2>"
            + _table(report["accuracy_by_split"], ["split", "videos", "right", "accuracy"])
            + "<h2>Per class</h2>"
            + _table(report["classes"], ["label", "support", "predicted", "precision", "recall"])
            + '<h2>Confusion matrix</h2><img src="confusion_matrix.png" alt="confusion matrix">')


def _distribution_section(videos: pd.DataFrame, report: dict[str, Any], out: str) -> str:
    counts = {str(k): int(v) for k, v in videos.prediction.dropna().value_counts().items()}
    report["label_distribution"] = counts
    image = ""
    if counts:
        plot_counts(counts, os.path.join(out, "label_distribution.png"), "predicted labels")
        report["images"].append("label_distribution.png")
        image = '<img src="label_distribution.png" alt="label distribution">'
    return ("<h2>Label distribution</h2><p>No video has a label: these are the predicted labels.</p>"
            + _table([{"label": k, "videos": v} for k, v in counts.items()], ["label", "videos"]) + image)


def _segments_of(segments: pd.DataFrame | None, video_id: str) -> list[dict[str, Any]]:
    """One video's segments, in time order, as ``{"start_s", "end_s", "label"}``."""
    if segments is None or segments.empty:
        return []
    mine = segments[segments.video_id == video_id].sort_values("segment_index")
    return [{"start_s": float(s.start_s), "end_s": float(s.end_s), "label": str(s.label)}
            for s in mine.itertuples()]


def _timeline_section(videos: pd.DataFrame, frames: pd.DataFrame, segments: pd.DataFrame | None, count: int,
                      report: dict[str, Any], out: str) -> str:
    figures = []
    for k, video in enumerate(_timeline_videos(videos, count).itertuples()):
        mine = frames[frames.video_id == video.video_id].sort_values("timestamp_s")
        if mine.empty:
            continue
        name = f"timeline_{k}.png"
        label = None if pd.isna(video.label) else video.label
        verdict = "unlabelled" if label is None else ("wrong" if video.prediction != label else "right")
        spans = _segments_of(segments, video.video_id)
        plot_timeline(mine.timestamp_s.tolist(), mine.prediction.tolist(), mine.score.tolist(),
                      [None if pd.isna(x) else x for x in mine.label], os.path.join(out, name),
                      f"{os.path.basename(video.uri)}: {video.prediction} ({video.score:.2f}), {verdict}",
                      segments=[(s["start_s"], s["end_s"], s["label"]) for s in spans])
        report["timelines"].append({"file": name, "uri": video.uri, "label": label,
                                    "prediction": video.prediction, "score": float(video.score),
                                    "segments": spans})
        report["images"].append(name)
        caption = (f"{video.uri}: label {label or '-'}, prediction {video.prediction} ({video.score:.3f}), "
                   f"{len(spans)} segments")
        figures.append(f'<figure><img src="{name}" alt="timeline {k}">'
                       f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "<h2>Timelines: wrong videos, then the least confident</h2>" + "".join(figures)


def _failures_section(report: dict[str, Any]) -> str:
    if not report["failures"]:
        return "<h2>Failures by error type</h2><p>No video failed.</p>"
    columns = ["error_type", "videos", "stages", "statuses", "example_uri", "example_message"]
    return "<h2>Failures by error type</h2>" + _table(report["failures"], columns)


def build_report(root: str, timelines: int = 6) -> dict[str, Any]:
    """Writes ``root/report/`` (see the module doc); returns what report.json holds.

    Raises:
        ConfigError: ``root`` holds no ``videos`` table, or a ``report/`` folder videolabel did not write.
    """
    output = RunOutput(root)
    videos = _read(output, "videos")
    if videos is None or videos.empty:
        raise ConfigError(f"OUTPUT: {root!r} holds no videos table (is it a `videolabel run` output?)")
    frames, segments = _read(output, "frames"), _read(output, "segments")
    claim(root, REPORT_WRITES)  # a user's own report/ folder is refused, never written over
    out = os.path.join(root, "report")
    os.makedirs(out, exist_ok=True)
    record = output.run_record()
    run_id = record.run_id if record else None
    warning = random_weights_warning(record.model.handle) if record and record.model.random_weights else None
    status = {str(k): int(v) for k, v in videos.status.value_counts().items()}
    report: dict[str, Any] = {
        "output": root, "run_id": run_id, "videos": len(videos), "status": status,
        "accuracy_by_split": split_accuracy(videos), "classes": class_metrics(videos),
        "failures": failure_table(videos), "timelines": [], "images": [], "warning": warning}
    summary = f"{root}: {len(videos)} videos; " + ", ".join(f"{k} {v}" for k, v in status.items())
    sections = [f"<h1>videolabel report</h1><p>{html.escape(summary)}"
                + (f"; run {html.escape(run_id)}" if run_id else "") + "</p>"]
    if warning:
        sections.append(f"<p class='warning'>{html.escape(warning)}</p>")
    judged = judged_videos(videos)
    sections.append(_labelled_section(judged, report, out) if len(judged)
                    else _distribution_section(videos, report, out))
    if frames is not None and len(frames):
        sections.append(_timeline_section(videos, frames, segments, timelines, report, out))
    sections.append(_failures_section(report))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>videolabel report</title>"
            f"<style>{_STYLE}</style>{_IMAGE_CHECK}</head><body>{''.join(sections)}</body></html>")
    with open(os.path.join(out, "index.html"), "w", encoding="utf-8") as handle:
        handle.write(page)
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, default=_plain)
    return report
