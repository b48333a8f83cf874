"""``videolabel export``: a run's labels for people and players.

* ``label-studio``: ``tasks.json``, one Label Studio task per video that decoded, its segments as a
  pre-annotation (a prediction of ``<TimelineLabels>`` regions over the video), and
  ``label_config.xml``, the labelling interface for them (``label_studio_config``). Tasks come most
  doubtful first: ``is_error`` videos, then by rising score, so a person checks those first.
  A region's ``start`` and ``end`` are frame numbers at the video's own frame rate, counted from 1
  (Label Studio's video timeline); ``videolabel import-annotations`` turns them back into seconds.
* ``webvtt``: ``<video_id>.vtt``, one cue per segment (``label 87%``), for any player's captions.
* ``csv``: ``frame_predictions.csv``, one row per sampled frame: a column per class probability,
  then ``prediction``, ``video`` (its uri), ``frame``, ``label``, ``split`` and ``error``, as the
  CNN+LSTM projects wrote it; the run must have ``output.write_probs``.

``csv`` streams the frames batch by batch, so its memory stays one batch whatever the run;
``label-studio`` and ``webvtt`` hold the run's segments (a few columns a segment) and the decoded
videos' rows in memory while they write.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from beam_pipeline.outputs.run_output import RunOutput

__all__ = ["FORMATS", "FROM_NAME", "TO_NAME", "export", "label_studio_config", "local_files_url", "to_frame",
           "vtt_time", "webvtt"]

FORMATS = ("label-studio", "webvtt", "csv")
#: The names of the labelling interface's tags, which regions refer to.
FROM_NAME, TO_NAME = "action", "video"


def vtt_time(seconds: float) -> str:
    """WebVTT's ``HH:MM:SS.mmm``.

    >>> vtt_time(3725.5)
    '01:02:05.500'
    """
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}.{millis % 1000:03d}"


def to_frame(seconds: float, fps: float) -> int:
    """The Label Studio frame (from 1) that starts at or after ``seconds`` at ``fps``: frame f spans
    [(f - 1) / fps, f / fps)."""
    return int(math.floor(seconds * fps + 1e-6)) + 1


def local_files_url(uri: str, document_root: str = "/") -> str:
    """The URL Label Studio serves a local video at (``LOCAL_FILES_SERVING_ENABLED=true`` with
    ``LOCAL_FILES_DOCUMENT_ROOT=document_root``); a gs:// or http(s) uri is returned as it is (a
    project with a cloud storage source reads gs:// itself)."""
    if "://" in uri:
        return uri
    relative = os.path.relpath(os.path.abspath(uri), os.path.abspath(document_root))
    if relative.startswith(".."):
        raise ValueError(f"{uri} is outside the document root {document_root}: pass --document-root")
    return f"/data/local-files/?d={relative}"


def label_studio_config(labels: list[str]) -> str:
    """The labelling interface: the video, and one timeline of its labels (``<TimelineLabels>``)."""
    choices = "\n".join(f"    <Label value={quoteattr(label)}/>" for label in labels)
    return (f'<View>\n  <Header value="$uri"/>\n'
            f'  <Video name="{TO_NAME}" value="$video" frameRate="$fps" timelineHeight="120"/>\n'
            f'  <TimelineLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{choices}\n  </TimelineLabels>\n'
            f"</View>\n")


def _segments_by_video(output: RunOutput) -> dict[str, list[dict]]:
    """Each video's segments rows (the columns the exports need), by video id, in segment order."""
    found: dict[str, list[dict]] = {}
    dataset = output.dataset("segments")
    columns = ["video_id", "segment_index", "start_s", "end_s", "label", "mean_score"]
    for batch in dataset.to_batches(columns=columns) if dataset is not None else ():
        for row in batch.to_pylist():
            found.setdefault(row["video_id"], []).append(row)
    for rows in found.values():
        rows.sort(key=lambda r: r["segment_index"])
    return found


def _decoded(output: RunOutput) -> pa.Table:
    """The videos that decoded (``ok`` or ``partial``), most doubtful first."""
    dataset = output.dataset("videos")
    if dataset is None:
        raise ValueError(f"{output.root} holds no videos/ table of a `videolabel run`")
    table = dataset.to_table(columns=["video_id", "uri", "split", "label", "prediction", "score", "is_error",
                                      "fps", "duration_s", "model"],
                             filter=ds.field("prediction").is_valid())
    wrong = pc.fill_null(table["is_error"], False)
    order = pc.sort_indices(table.append_column("_wrong", wrong),
                            sort_keys=[("_wrong", "descending"), ("score", "ascending"),
                                       ("uri", "ascending")])
    return table.take(order)


def _label_studio(output: RunOutput, folder: str, document_root: str) -> list[str]:
    labels = output.labels()
    segments = _segments_by_video(output)
    tasks = []
    for video in _decoded(output).to_pylist():
        fps = video["fps"] or 25.0
        regions = [{
            "id": f"{video['video_id']}-{s['segment_index']}", "from_name": FROM_NAME, "to_name": TO_NAME,
            "type": "timelinelabels", "score": s["mean_score"],
            "value": {"ranges": [{"start": to_frame(s["start_s"], fps),
                                  "end": max(to_frame(s["start_s"], fps), to_frame(s["end_s"], fps) - 1)}],
                      "timelinelabels": [s["label"]]},
        } for s in segments.get(video["video_id"], [])]
        tasks.append({
            "data": {"video": local_files_url(video["uri"], document_root), "uri": video["uri"],
                     "video_id": video["video_id"], "split": video["split"], "fps": fps,
                     "label": video["label"], "prediction": video["prediction"], "score": video["score"],
                     "is_error": video["is_error"]},
            "predictions": [{"model_version": video["model"], "score": video["score"], "result": regions}],
        })
    paths = [os.path.join(folder, "tasks.json"), os.path.join(folder, "label_config.xml")]
    with open(paths[0], "w", encoding="utf-8") as handle:
        json.dump(tasks, handle, indent=1)
    with open(paths[1], "w", encoding="utf-8") as handle:
        handle.write(label_studio_config(labels))
    return paths


def webvtt(segments: Iterable[Mapping[str, Any]]) -> str:
    """A WebVTT file's text: one cue per segment (``segment_index``, ``start_s``, ``end_s``, ``label``,
    ``mean_score``), ``label 87%``, numbered from 1 in time order."""
    cues = [f"{s['segment_index'] + 1}\n{vtt_time(s['start_s'])} --> {vtt_time(s['end_s'])}\n"
            f"{s['label']} {s['mean_score']:.0%}\n" for s in sorted(segments, key=lambda s: s["start_s"])]
    return "WEBVTT\n\n" + "\n".join(cues)


def _webvtt(output: RunOutput, folder: str) -> list[str]:
    segments = _segments_by_video(output)
    paths = []
    for video in _decoded(output).to_pylist():
        path = os.path.join(folder, f"{video['video_id']}.vtt")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(webvtt(segments.get(video["video_id"], [])))
        paths.append(path)
    return paths


def _csv(output: RunOutput, folder: str) -> list[str]:
    dataset = output.dataset("frames")
    if dataset is None or "probs" not in dataset.schema.names:
        raise ValueError(f"{output.root} has no frame probabilities: run it with "
                         "--set output.write_probs=true (and output.write_frames)")
    labels = output.labels()
    path = os.path.join(folder, "frame_predictions.csv")
    text = pa.string()
    fields = [*(pa.field(label, pa.float32()) for label in labels), pa.field("prediction", text),
              pa.field("video", text), pa.field("frame", pa.int64()), pa.field("label", text),
              pa.field("split", text), pa.field("error", pa.bool_())]
    schema = pa.schema(fields)
    with pacsv.CSVWriter(path, schema) as writer:
        columns = ["probs", "prediction", "uri", "frame_index", "label", "split", "is_error"]
        for batch in dataset.to_batches(columns=columns):
            flat = np.asarray(batch["probs"].flatten()).reshape(len(batch), len(labels))
            arrays = [*flat.T, batch["prediction"], batch["uri"], batch["frame_index"], batch["label"],
                       batch["split"].cast(pa.string()), batch["is_error"]]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
    return [path]


def export(output_dir: str, fmt: str, folder: str, *, document_root: str = "/") -> list[str]:
    """Writes ``output_dir``'s labels in ``fmt`` (``FORMATS``) into ``folder`` (made if need be); returns
    the paths written. ``document_root``: label-studio's local files root (``local_files_url``).

    Raises:
        ValueError: an unknown format, or a run without what the format needs (one line).
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    output = RunOutput(output_dir)
    os.makedirs(folder, exist_ok=True)
    if fmt == "label-studio":
        return _label_studio(output, folder, document_root)
    if fmt == "webvtt":
        return _webvtt(output, folder)
    return _csv(output, folder)
