"""The one reader of a run's output: its tables, its typed run record and its labels, local or gs://.

The API, the report, the app, the demo and ``train`` read outputs through ``RunOutput``.
No Streamlit here: the page (``beam_pipeline.app.page``) calls it and caches the answers, and
the tests and ``benchmarks/app_queries.py`` call it without a browser.

An output (local or gs://) holds ``videos/``, ``frames/`` and ``segments/``, each
``split=<split>/part-*.parquet`` (a Hive partition, see ``transforms.schema``). Every
query goes through a ``pyarrow.dataset`` whose ``split`` partition is declared, so a
``split`` filter prunes the other splits' files before any is opened. One video's
frames and segments are read from the part files committed with its ``videos`` part
(the same split folder and file name, see ``transforms.write``), so opening a video
reads one file per table, whatever the size of the run.

Safe by default: a ``PathGuard`` allows the output folder, the videos its rows name,
and folders the user allowed on the command line; anything else raises ``RefusedPath``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pydantic

from beam_pipeline.outputs.figures import failure_table, split_accuracy
from beam_pipeline.outputs.run_record import RUN_FILE, RunRecord

__all__ = ["TABLES", "PathGuard", "RefusedPath", "RunOutput", "VideoDetail", "VideoFilter", "filesystem_for"]

_log = logging.getLogger(__name__)

#: The tables of an output, each ``<table>/split=<split>/part-*.parquet``.
TABLES = ("videos", "frames", "segments", "embeddings")
_PARTITIONING = ds.partitioning(pa.schema([("split", pa.string())]), flavor="hive")
#: The columns the summary, the filters and the failures view read (never the list columns).
SUMMARY_COLUMNS = ["video_id", "uri", "split", "label", "status", "prediction", "score", "is_error",
                   "error_stage", "error_type", "error_message"]
#: The columns of the videos table's page (the rest are in the selected video's row).
PAGE_COLUMNS = ["video_id", "uri", "split", "label", "prediction", "score", "is_error", "status",
                "error_type", "duration_s"]


class RefusedPath(ValueError):
    """A path the app will not open: outside the output, the videos it names and the allowed folders."""


def _gcs_filesystem() -> pafs.FileSystem:
    """pyarrow's GCS filesystem; ``STORAGE_EMULATOR_HOST`` points it at an emulator, as for Beam."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        parsed = urllib.parse.urlparse(emulator if "://" in emulator else f"http://{emulator}")
        return pafs.GcsFileSystem(anonymous=True, scheme=parsed.scheme, endpoint_override=parsed.netloc)
    return pafs.GcsFileSystem()


def filesystem_for(root: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of a local folder or a gs:// URI, and the path in it."""
    if root.startswith("gs://"):
        return _gcs_filesystem(), root[len("gs://"):].rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(root)


def _normal(path: str) -> str:
    """A path to compare with an allowed root: gs:// URIs without ``.``/``..``, local ones real."""
    if path.startswith("gs://"):
        bucket_path = posixpath.normpath("/" + path[len("gs://"):])
        return "gs:/" + bucket_path
    return os.path.realpath(os.path.expanduser(path))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclasses.dataclass(frozen=True)
class PathGuard:
    """Which paths the page may open.

    Attributes:
        roots: folders (local or gs://) whose files may be read: the output folder, the
            folders given with ``--allow``, and the app's private upload folder.
        named: a callable telling whether a run's rows name a video (``RunOutput.names_video``).
    """

    roots: tuple[str, ...] = ()
    named: Any = None

    def check(self, path: str, what: str = "path") -> str:
        """Returns ``path`` if it may be opened.

        Raises:
            RefusedPath: a path outside every allowed root that no row of the output names.
        """
        path = path.strip()
        if not path:
            raise RefusedPath(f"{what}: empty")
        normal = _normal(path)
        if any(_under(normal, _normal(root)) for root in self.roots):
            return path
        if self.named is not None and self.named(path):
            return path
        allowed = ", ".join(self.roots) or "none"
        raise RefusedPath(f"refused {what} {path!r}: the app opens only the output folder, the videos its "
                          f"rows name and the folders given with --allow (allowed: {allowed})")


@dataclasses.dataclass(frozen=True)
class VideoFilter:
    """The videos table's filters; None means any value.

    Attributes:
        split: one split (pushed down to the ``split=<name>/`` folders).
        status: ``ok``, ``partial`` or ``failed``.
        label, prediction: one class name.
        is_error: True for wrong predictions, False for right ones.
    """

    split: str | None = None
    status: str | None = None
    label: str | None = None
    prediction: str | None = None
    is_error: bool | None = None

    def expression(self) -> ds.Expression | None:
        """The filter as a pyarrow dataset expression (None without a filter)."""
        terms = [ds.field(name) == value for name, value in dataclasses.asdict(self).items()
                 if value is not None]
        if not terms:
            return None
        expression = terms[0]
        for term in terms[1:]:
            expression = expression & term
        return expression


@dataclasses.dataclass(frozen=True)
class VideoDetail:
    """One video of a run: its row (a mapping), its frames and segments (DataFrames, maybe empty)."""

    row: dict[str, Any]
    frames: pd.DataFrame
    segments: pd.DataFrame


def _frame(table: pa.Table | None) -> pd.DataFrame:
    return pd.DataFrame() if table is None else table.to_pandas()


class RunOutput:
    """A ``videolabel run`` output, read through pyarrow datasets.

    Args:
        root: the output folder, local or gs://.
        filesystem: the pyarrow filesystem to read it through (default: from ``root``; tests
            pass one that records what is opened).
    """

    def __init__(self, root: str, filesystem: pafs.FileSystem | None = None):
        self.root = root
        if filesystem is None:
            self.fs, self.base = filesystem_for(root)
        else:
            self.fs, self.base = filesystem, os.path.abspath(root) if "://" not in root else root
        self._datasets: dict[str, ds.Dataset | None] = {}

    # -- files ---------------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.base, *parts)

    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def dataset(self, table: str) -> ds.Dataset | None:
        """The dataset of one table (its files listed once), or None when the output lacks it."""
        if table not in self._datasets:
            folder = self._path(table)
            if not self._exists(folder):
                self._datasets[table] = None
            else:
                selector = pafs.FileSelector(folder, recursive=True)
                files = sorted(info.path for info in self.fs.get_file_info(selector)
                               if info.type == pafs.FileType.File and info.base_name.startswith("part-")
                               and info.base_name.endswith(".parquet"))
                self._datasets[table] = ds.dataset(files, filesystem=self.fs, format="parquet",
                                                   partitioning=_PARTITIONING, partition_base_dir=folder) \
                    if files else None
        return self._datasets[table]

    def tables(self) -> list[str]:
        """The tables the output holds."""
        return [table for table in TABLES if self.dataset(table) is not None]

    def splits(self) -> list[str]:
        """The splits of the videos table, from its ``split=<name>`` folders."""
        dataset = self.dataset("videos")
        if dataset is None:
            return []
        names = {urllib.parse.unquote(posixpath.basename(posixpath.dirname(path)))[len("split="):]
                 for path in dataset.files}
        return sorted(names)

    def _read_text(self, name: str) -> str | None:
        path = self._path(name)
        if not self._exists(path):
            return None
        with self.fs.open_input_stream(path) as handle:
            return handle.read().decode("utf-8")

    def run_record(self) -> RunRecord | None:
        """``_run.json`` as its typed record; None without one, or with one this version cannot read
        (a warning says so)."""
        text = self._read_text(RUN_FILE)
        if not text:
            return None
        try:
            return RunRecord.model_validate_json(text)
        except pydantic.ValidationError as exc:
            _log.warning("%s is not a run record of this version (%d problems); going on without it",
                         self._path(RUN_FILE), exc.error_count())
            return None

    def labels(self) -> list[str]:
        """``labels.txt``: the model's classes in index order (empty without the file)."""
        text = self._read_text("labels.txt") or ""
        return [line.strip() for line in text.splitlines() if line.strip()]

    # -- queries -------------------------------------------------------------------------------

    def _scan(self, table: str, columns: Sequence[str] | None = None,
              filter: ds.Expression | None = None) -> pa.Table | None:
        dataset = self.dataset(table)
        if dataset is None:
            return None
        if columns is not None:
            columns = [c for c in columns if c in dataset.schema.names]
        return dataset.to_table(columns=columns, filter=filter)

    def read_tables(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The whole ``videos``, ``frames`` and ``segments`` tables (empty DataFrames where absent)."""
        return tuple(_frame(self._scan(table)) for table in ("videos", "frames", "segments"))

    def summary_table(self) -> pd.DataFrame:
        """The videos' ``SUMMARY_COLUMNS`` (no list columns): what the summary and filters need."""
        return _frame(self._scan("videos", SUMMARY_COLUMNS))

    def summary(self) -> dict[str, Any]:
        """Counts per split and status, accuracy per split, the confusion matrix, the filter choices.

        Returns:
            ``videos`` (int), ``by_split`` (DataFrame: split, videos, ok, partial, failed),
            ``accuracy`` (list of {split, videos, right, accuracy}), ``confusion`` (DataFrame:
            true labels x predictions, counts; empty without labels), ``choices`` (column ->
            sorted values, for split, status, label, prediction).
        """
        videos = self.summary_table()
        if videos.empty:
            return {"videos": 0, "by_split": pd.DataFrame(), "accuracy": [], "confusion": pd.DataFrame(),
                    "choices": {}}
        by_split = pd.crosstab(videos.split, videos.status).reset_index()
        by_split.insert(1, "videos", by_split.drop(columns="split").sum(axis=1))
        judged = videos[videos.label.notna() & videos.prediction.notna()]
        confusion = pd.crosstab(judged.label, judged.prediction) if not judged.empty else pd.DataFrame()
        choices = {col: sorted(str(v) for v in videos[col].dropna().unique())
                   for col in ("split", "status", "label", "prediction")}
        return {"videos": len(videos), "by_split": by_split, "accuracy": split_accuracy(videos),
                "confusion": confusion, "choices": choices}

    def failures(self, examples: int = 5) -> tuple[list[dict[str, Any]], pd.DataFrame]:
        """Failed or partial videos: per error type (count, stages, one example) and up to
        ``examples`` example rows of each type (uri, split, status, stage, message)."""
        broken = _frame(self._scan("videos", SUMMARY_COLUMNS, ds.field("error_type").is_valid()))
        if broken.empty:
            return [], broken
        rows = broken.sort_values(["error_type", "uri"]).groupby("error_type").head(examples)
        return failure_table(broken), rows[["error_type", "uri", "split", "status", "error_stage",
                                            "error_message", "video_id"]].reset_index(drop=True)

    def videos(self, where: VideoFilter = VideoFilter(), *, offset: int = 0, limit: int = 50,
               columns: Sequence[str] = PAGE_COLUMNS) -> tuple[pd.DataFrame, int]:
        """One page of the videos matching ``where``, ordered by uri; and how many match."""
        table = self._scan("videos", columns, where.expression())
        if table is None:
            return pd.DataFrame(columns=list(columns)), 0
        order = pc.sort_indices(table, sort_keys=[("uri", "ascending"), ("video_id", "ascending")])
        page = table.take(order[offset:offset + limit])
        return page.to_pandas(), table.num_rows

    def _find(self, video_id: str, split: str | None) -> tuple[dict[str, Any], str] | None:
        """The row of ``video_id`` and the part file holding it."""
        dataset = self.dataset("videos")
        if dataset is None:
            return None
        where = ds.field("video_id") == video_id
        if split is not None:
            where = where & (ds.field("split") == split)
        for tagged in dataset.scanner(filter=where).scan_batches():
            if tagged.record_batch.num_rows:
                return tagged.record_batch.to_pylist()[0], tagged.fragment.path
        return None

    def _rows_of(self, table: str, video_id: str, split: str, videos_part: str) -> pd.DataFrame:
        """``table``'s rows of one video: from the part committed with its videos part when there is
        one, else from the split's files."""
        where = ds.field("video_id") == video_id
        paired = self._path(table, posixpath.relpath(videos_part, self._path("videos")))
        if self._exists(paired):
            found = ds.dataset(paired, filesystem=self.fs, format="parquet").to_table(filter=where)
            if found.num_rows:
                return found.to_pandas().assign(split=split)
        return _frame(self._scan(table, None, where & (ds.field("split") == split)))

    def video(self, video_id: str, split: str | None = None) -> VideoDetail | None:
        """One video's row, frames (by ``frame_index``) and segments (by ``segment_index``)."""
        found = self._find(video_id, split)
        if found is None:
            return None
        row, part = found
        frames, segments = (self._rows_of(table, video_id, row["split"], part) if self.dataset(table)
                            else pd.DataFrame() for table in ("frames", "segments"))
        if not frames.empty:
            frames = frames.sort_values("frame_index").reset_index(drop=True)
        if not segments.empty and "segment_index" in segments:
            segments = segments.sort_values("segment_index").reset_index(drop=True)
        return VideoDetail(row, frames, segments)

    def names_video(self, uri: str) -> bool:
        """Whether a row of the videos table has this ``uri``."""
        table = self._scan("videos", ["uri"], ds.field("uri") == uri)
        return table is not None and table.num_rows > 0

    def guard(self, extra_roots: Iterable[str] = ()) -> PathGuard:
        """A ``PathGuard`` for this output: its folder, ``extra_roots`` and the videos it names."""
        return PathGuard((self.root, *extra_roots), self.names_video)
