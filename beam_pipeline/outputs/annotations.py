"""``videolabel import-annotations``: a Label Studio export of corrected tasks -> a segment manifest.

Reads Label Studio's JSON export (``GET /api/projects/{id}/export?exportType=JSON``, or Export ->
JSON in its interface; it holds the annotated tasks) of tasks that ``videolabel export --format
label-studio`` made. For each task a person annotated, its latest annotation that was not
cancelled gives one manifest row per timeline region: ``uri,start_s,end_s,label,split``, with
``uri`` and ``split`` from the task's data (a video that was ``unlabelled`` gets an empty split, so
the listing gives it the split the hash of its id gives a labelled video: ``transforms.splits``)
and the region's frames ([start, end], counted from 1 at the task's ``fps``) as seconds
[(start - 1) / fps, end / fps). ``videolabel train --manifest`` takes the file as it is: each
clip is labelled by the segment holding its middle. Tasks nobody annotated are left out (their
labels are still the model's).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any, NamedTuple

from apache_beam.io.filesystems import FileSystems

from transforms.splits import UNLABELLED

__all__ = ["MANIFEST_COLUMNS", "Imported", "import_annotations", "segment_rows"]

MANIFEST_COLUMNS = ("uri", "start_s", "end_s", "label", "split")


class Imported(NamedTuple):
    """What an import found: manifest ``rows`` (dicts of ``MANIFEST_COLUMNS``), and the tasks read,
    annotated and changed from their prediction."""

    rows: list[dict[str, Any]]
    tasks: int
    annotated: int
    changed: int


def _latest(annotations: Iterable[dict]) -> dict | None:
    kept = [a for a in annotations if not a.get("was_cancelled")]
    return max(kept, key=lambda a: (a.get("updated_at") or a.get("created_at") or "", a.get("id") or 0),
               default=None)


def _regions(result: Iterable[dict]) -> list[tuple[int, int, str]]:
    """(start frame, end frame, label) of each timeline range of a result."""
    found = []
    for region in result:
        value = region.get("value", {})
        labels = value.get("timelinelabels") or []
        for span in value.get("ranges", []) if labels else []:
            found.append((int(span["start"]), int(span["end"]), str(labels[0])))
    return sorted(found)


def _changed(task: dict) -> bool:
    """Whether a task's latest annotation differs from the prediction it started from: the annotation's
    own ``prediction`` (Label Studio's JSON export inlines it), else the task's last full prediction;
    an annotation with neither counts as changed."""
    annotation = _latest(task["annotations"])
    parent = annotation.get("prediction")
    if not isinstance(parent, dict):
        parent = next((p for p in reversed(task.get("predictions") or []) if isinstance(p, dict)), None)
    return parent is None or _regions(annotation.get("result", [])) != _regions(parent.get("result", []))


def segment_rows(task: dict) -> list[dict[str, Any]] | None:
    """One task's manifest rows from its latest annotation; None when nobody annotated it.

    Raises:
        ValueError: a task without the ``uri`` or ``fps`` that videolabel's export gives it.
    """
    annotation = _latest(task.get("annotations") or [])
    if annotation is None:
        return None
    data = task.get("data", {})
    if "uri" not in data or not data.get("fps"):
        raise ValueError(f"task {task.get('id')} has no uri or fps in its data: was it made by "
                         "videolabel export --format label-studio?")
    fps = float(data["fps"])
    split = "" if data.get("split") in (None, UNLABELLED) else data["split"]
    return [{"uri": data["uri"], "start_s": round((start - 1) / fps, 6), "end_s": round(end / fps, 6),
             "label": label, "split": split}
            for start, end, label in _regions(annotation.get("result", [])) if end >= start]


def import_annotations(export_path: str, manifest_path: str) -> Imported:
    """Reads a Label Studio JSON export (local or gs://) and writes the segment manifest csv.

    Raises:
        ValueError: the file is not a JSON list of tasks, or a task lacks videolabel's data (one line).
    """
    with FileSystems.open(export_path) as handle:
        try:
            tasks = json.loads(handle.read())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{export_path} is not JSON ({exc}): export the project as JSON") from None
    if not isinstance(tasks, list):
        raise ValueError(f"{export_path} is not a list of tasks: export the project as JSON (not JSON_MIN)")
    rows, annotated, changed = [], 0, 0
    for task in tasks:
        found = segment_rows(task)
        if found is None:
            continue
        annotated += 1
        changed += _changed(task)
        rows.extend(found)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with FileSystems.create(manifest_path) as raw:
        raw.write(text.getvalue().encode("utf-8"))
    return Imported(rows, len(tasks), annotated, changed)
