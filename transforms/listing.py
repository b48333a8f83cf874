"""ListVideos: globs and manifests -> VideoRef, one per video id.

Manifests (.csv, .jsonl, .parquet) have a ``uri`` column and optionally
``label``, ``split`` and ``video_id``; or segment rows, ``uri,start_s,end_s,label``,
several per video, merged into one ``VideoRef`` with its segments. Relative uris
resolve against the manifest's folder. A row without a uri cannot be listed; it is logged and
counted, and becomes a ``failed`` row (``error_type`` BadManifestRow); never fatal.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import posixpath
from collections.abc import Iterator, Mapping
from typing import Any

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from transforms import metrics
from transforms.records import VideoRef
from transforms.splits import UNLABELLED, split_of, stable_video_id

__all__ = ["ListVideos", "bad_row_ref", "is_manifest", "manifest_columns", "manifest_rows", "manifest_uri",
           "ref_from_row"]

_MANIFEST_EXTENSIONS = (".csv", ".jsonl", ".parquet")
_log = logging.getLogger(__name__)


def is_manifest(path: str) -> bool:
    """True for a path that names a manifest file rather than videos."""
    return path.lower().endswith(_MANIFEST_EXTENSIONS)


def manifest_rows(path: str) -> Iterator[dict[str, Any]]:
    """Reads a manifest (local or gs://) into dicts of its columns."""
    with FileSystems.open(path) as handle:
        data = handle.read()
    lower = path.lower()
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq
        yield from pq.read_table(io.BytesIO(data)).to_pylist()
    elif lower.endswith(".jsonl"):
        for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield {"_bad": f"line {number} is not JSON ({exc.msg})"}
                continue
            yield row if isinstance(row, dict) else {"_bad": f"line {number} is not a JSON object"}
    else:
        yield from csv.DictReader(io.StringIO(data.decode("utf-8-sig")))


def manifest_columns(path: str) -> list[str]:
    """Column names of a manifest (local or gs://), read from its header alone: a Parquet file's
    schema (its footer), a csv file's first line, a jsonl file's first non-blank line (the keys of
    that row; none when it is not a JSON object). No other row is read."""
    lower = path.lower()
    with FileSystems.open(path) as handle:
        if lower.endswith(".parquet"):
            import pyarrow.parquet as pq
            return pq.read_schema(handle).names
        # errors="replace": the bytes read past the header may be anything
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="replace")
        if lower.endswith(".jsonl"):
            line = next((line for line in text if line.strip()), "")
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                return []
            return list(row) if isinstance(row, dict) else []
        return next(csv.reader(text), [])


def _clean(column: str, value: Any) -> str | None:
    """A manifest cell as stripped text (None when empty); lists and mappings are bad values."""
    if value is None:
        return None
    if isinstance(value, (list, dict, bytes)):
        raise ValueError(f"{column}={value!r} is not a single value")
    if isinstance(value, float) and value != value:  # NaN from pandas-written files
        return None
    text = str(value).strip()
    return text or None


def manifest_uri(row: Mapping[str, Any], manifest: str) -> str:
    """A manifest row's video uri, a relative one resolved against the manifest's folder.

    Raises:
        ValueError: the row is not a row (``_bad``), or has no uri.
    """
    if "_bad" in row:
        raise ValueError(row["_bad"])
    uri = _clean("uri", row.get("uri"))
    if uri is None:
        raise ValueError(f"row {dict(row)} has no uri")
    if "://" not in uri and not posixpath.isabs(uri):
        uri = FileSystems.join(posixpath.dirname(manifest) or ".", uri)
    return uri


def ref_from_row(row: Mapping[str, Any], manifest: str, ratios: Mapping[str, float],
                 salt: str) -> VideoRef:
    """A manifest row as a VideoRef; split from the row, else ``transforms.splits.split_of``.

    Raises:
        ValueError: the row has no uri, or a cell holds something that is not a value.
    """
    uri = manifest_uri(row, manifest)
    video_id = _clean("video_id", row.get("video_id")) or stable_video_id(uri)
    label = _clean("label", row.get("label"))
    split = _clean("split", row.get("split")) or split_of(video_id, label, ratios, salt)
    segment = _segment(row, label)
    return VideoRef(video_id, uri, label, split, segments=(segment,) if segment else ())


def _segment(row: Mapping[str, Any], label: str | None) -> tuple[float, float, str] | None:
    """A segment row's ``(start_s, end_s, label)``; None for a whole-video row."""
    start, end = _clean("start_s", row.get("start_s")), _clean("end_s", row.get("end_s"))
    if start is None and end is None:
        return None
    try:
        start_s, end_s = float(start), float(end)
    except (TypeError, ValueError):
        raise ValueError(f"start_s={start!r}, end_s={end!r}: a segment needs two numbers") from None
    if not 0 <= start_s < end_s:
        raise ValueError(f"start_s={start_s:g}, end_s={end_s:g}: a segment needs 0 <= start_s < end_s")
    if label is None:
        raise ValueError(f"segment {start_s:g}-{end_s:g} s has no label")
    return start_s, end_s, label


def bad_row_ref(row: Mapping[str, Any], number: int, manifest: str, reason: str,
                ratios: Mapping[str, float], salt: str) -> VideoRef:
    """A failed-to-list row as a VideoRef carrying the reason, so it still gets its output row."""
    where = f"{manifest}#row={number}"

    def text(column: str) -> str | None:
        value = row.get(column)
        return value.strip() or None if isinstance(value, str) else None

    video_id = stable_video_id(where)
    split = text("split") or split_of(video_id, text("label"), ratios, salt)
    return VideoRef(video_id, text("uri") or where, text("label"), split, error=f"{where}: {reason}")


class _ReadManifestFn(beam.DoFn):
    def __init__(self, ratios: Mapping[str, float], salt: str):
        self._ratios = dict(ratios)
        self._salt = salt
        self._bad_rows = metrics.counter(metrics.MANIFEST_BAD_ROWS)

    def process(self, path: str) -> Iterator[VideoRef]:
        for number, row in enumerate(manifest_rows(path), start=1):
            try:
                yield ref_from_row(row, path, self._ratios, self._salt)
            except Exception as exc:  # the per-row boundary: whatever a row raises makes it a failed row
                self._bad_rows.inc()
                _log.warning("bad manifest row %s#row=%d: %s", path, number, exc)
                yield bad_row_ref(row, number, path, str(exc), self._ratios, self._salt)


class _RefFromMatchFn(beam.DoFn):
    """A glob match -> its ``VideoRef``; a match whose ending is not in ``extensions`` is counted
    (``metrics.skipped_counter``, a few names in ``metrics.SKIPPED_EXAMPLES``) and left out.
    ``extensions`` None: every match is a video (files named one by one)."""

    #: names of skipped files each DoFn instance reports
    EXAMPLES = 5

    def __init__(self, extensions: tuple[str, ...] | None):
        self._extensions = None if extensions is None else tuple(e.lower() for e in extensions)

    def setup(self) -> None:
        self._examples = metrics.string_set(metrics.SKIPPED_EXAMPLES)
        self._reported = 0

    def process(self, metadata) -> Iterator[VideoRef]:
        path = metadata.path
        if self._extensions is not None and not path.lower().endswith(self._extensions):
            metrics.skipped_counter(posixpath.splitext(path)[1]).inc()
            if self._reported < self.EXAMPLES:
                self._examples.add(path)
                self._reported += 1
            return
        video_id = stable_video_id(path)
        yield VideoRef(video_id, path, None, UNLABELLED)


def is_glob(path: str) -> bool:
    """Whether ``path`` is a pattern (``*``, ``?`` or ``[``) rather than one file's name."""
    return any(char in path for char in "*?[")


class ListVideos(beam.PTransform):
    """Lists videos from globs and manifests; outputs VideoRef, one per video id.

    The output is not reshuffled: a pipeline spreads it across workers itself
    (``beam_pipeline.job.pipeline.list_videos``), after whatever it joins or counts.

    A file named by itself (no ``*``, ``?`` or ``[``) is a video whatever its ending:
    decoding says what it is. A glob's matches count as videos by their ending; the
    others are counted by ending and a few named (``metrics.SKIPPED_PREFIX``,
    ``metrics.SKIPPED_EXAMPLES``), for the run summary and ``_run.json``.

    Args:
        paths: globs and files (local or gs://), and manifest files.
        extensions: endings a glob match needs to count as a video.
        ratios, salt: hash-split settings for videos without a split.
    """

    def __init__(self, paths: tuple[str, ...], *, extensions: tuple[str, ...],
                 ratios: Mapping[str, float], salt: str):
        super().__init__()
        self._files = [p for p in paths if not is_manifest(p) and not is_glob(p)]
        self._globs = [p for p in paths if not is_manifest(p) and is_glob(p)]
        self._manifests = [p for p in paths if is_manifest(p)]
        self._extensions = extensions
        self._ratios = dict(ratios)
        self._salt = salt

    def expand(self, pbegin):
        sources = []
        listed = (("Files", self._files, None), ("Globs", self._globs, self._extensions))
        for name, paths, extensions in listed:
            if paths:
                sources.append(
                    pbegin
                    | name >> beam.Create(paths)
                    | f"Match{name}" >> fileio.MatchAll()
                    | f"{name}ToRefs" >> beam.ParDo(_RefFromMatchFn(extensions)))
        if self._manifests:
            sources.append(
                pbegin
                | "Manifests" >> beam.Create(self._manifests)
                | "ReadManifests" >> beam.ParDo(_ReadManifestFn(self._ratios, self._salt)))
        return (sources
                | "Merge" >> beam.Flatten()
                | "KeyById" >> beam.Map(lambda ref: (ref.video_id, ref))
                | "OnePerId" >> beam.CombinePerKey(_one_per_id)
                | "Refs" >> beam.Values())


def _one_per_id(refs) -> VideoRef:
    """One ref per video id: the first by uri when a video is listed twice, with the segments
    of all its segment rows; such a video's label is its segments' one label, else None."""
    refs = list(refs)
    first = min(refs, key=lambda ref: ref.uri)
    segments = tuple(sorted({s for ref in refs for s in ref.segments}))
    if not segments:
        return first
    labels = {label for _, _, label in segments}
    return first._replace(segments=segments, label=labels.pop() if len(labels) == 1 else None)
