"""Label vocabularies: the shipped Kinetics-600 names and labels files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources

__all__ = ["KINETICS_600", "LABELS_FILENAME", "labels_beside", "read_labels", "write_labels"]

LABELS_FILENAME = "labels.txt"


def _packaged(name: str) -> list[str]:
    text = resources.files("models").joinpath("labels", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


KINETICS_600: list[str] = _packaged("kinetics_600.txt")


def read_labels(path: str) -> list[str]:
    """Reads a labels file (one name per line, index order; local or gs://)."""
    from apache_beam.io.filesystems import FileSystems  # Beam loads in a second: only when reading

    with FileSystems.open(path) as handle:
        text = handle.read().decode("utf-8")
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ValueError(f"labels file {path} is empty")
    return labels


def write_labels(path: str, labels: Sequence[str]) -> None:
    """Writes names one per line, index order (local or gs://)."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as handle:
        handle.write(("\n".join(labels) + "\n").encode("utf-8"))


def labels_beside(handle: str) -> str:
    """Where a model's own labels file lives: inside a SavedModel folder, beside a .tflite file."""
    if handle.endswith(".tflite"):
        handle = handle.rsplit("/", 1)[0] if "/" in handle else "."
    if "://" in handle:  # gs:// and other object stores: "/"-separated
        return f"{handle.rstrip('/')}/{LABELS_FILENAME}"
    return os.path.join(handle, LABELS_FILENAME)
