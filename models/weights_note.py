"""Where a model's weights came from, noted beside its labels (``weights.json``).

``export-movinet`` without ``--checkpoint`` writes a MoViNet with random weights:
it runs, and its labels look like any other's, but they mean nothing. The export
notes that beside the model's labels (inside a SavedModel folder, beside a
.tflite file), and ``run``, ``label_videos``, the report and the app say so in
one line wherever they show such a model's labels (``random_weights_warning``).
A model without the note (a TF Hub model, a ``train`` output, an older export) is
taken as trained.
"""

from __future__ import annotations

import json

from apache_beam.io.filesystems import FileSystems

from models.labels import labels_beside

__all__ = ["NOTE_FILENAME", "is_random", "random_weights_warning", "write_note"]

NOTE_FILENAME = "weights.json"


def _note_path(handle: str) -> str:
    labels = labels_beside(handle.rstrip("/"))
    return labels[: -len(labels.rsplit("/", 1)[-1])] + NOTE_FILENAME


def write_note(handle: str, *, random: bool, checkpoint: str | None = None) -> str:
    """Writes the note of the model at ``handle`` (local or gs://); returns its path."""
    path = _note_path(handle)
    note = {"weights": "random" if random else "checkpoint", "checkpoint": checkpoint}
    with FileSystems.create(path) as out:
        out.write(json.dumps(note).encode("utf-8"))
    return path


def is_random(handle: str) -> bool:
    """Whether the model at ``handle`` (a SavedModel folder, a ``train`` output's model, a .tflite file,
    local or gs://) was exported with random weights. A TF Hub handle, or no note, is False."""
    if handle.startswith(("http://", "https://")):
        return False
    path = _note_path(handle)
    try:
        if not FileSystems.exists(path):
            return False
        with FileSystems.open(path) as note:
            return json.loads(note.read()).get("weights") == "random"
    except (OSError, ValueError):
        return False


def random_weights_warning(handle: str) -> str:
    """The one line every tool shows beside the labels of a model with random weights."""
    return (f"{handle} has random weights (export-movinet without --checkpoint): its labels mean nothing; "
            "export with --checkpoint (a MoViNet checkpoint) or use a TF Hub handle for real ones")
