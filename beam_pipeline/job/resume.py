"""``--resume``: keep the videos an earlier run into the same output finished, redo the rest.

A video is done when it has a ``videos`` row with status ``ok`` made with this
run's ``config_hash``, model and ``schema_version`` (an older output lacks tables or
columns of this one). Before the run starts, the launcher makes the output hold
the done videos and nothing else (``prepare_resume``). It works only on files the
output's ledger owns (``beam_pipeline.outputs.ledger``: parts and temporary files named
with a recorded run id), records this run's id there first, and refuses to start where
a file it does not own lies among the tables:

* a part file holding other rows (failed, partial or changed videos, or a
  second copy of a done video, as a run killed before its finalize can leave)
  is rewritten without them, its paired ``frames`` and ``segments`` parts too
  (the same file name: one commit), each atomically;
* a ``frames`` or ``segments`` part whose ``videos`` part never landed (a run
  killed between the commits) is removed, and so are temporary files a killed run left.

So a kept video keeps exactly the frames and segments committed with it (a video
without segments has none: its commit wrote no row there), and a redone one gets
new ones. The job then reads the done ids itself (``ReadDone``: the ``videos`` parts'
``video_id``, ``status``, ``config_hash``, ``model``, ``run_id`` and ``schema_version`` columns) and
joins them with the listed videos by id (``list_videos``: a CoGroupByKey), so
the job graph stays the same size however many videos are done; a million done
ids would otherwise be pickled into it (Dataflow takes job graphs up to 10 MB).
Rows of the running job never count as done, and an output with no parts yet
reads as nothing done. The run's parts carry its own run id, so nothing it
writes replaces a kept file. The output ends with one row per video.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.outputs.ledger import RUN_WRITES, claim
from transforms import metrics
from transforms.schema import SCHEMA_VERSION
from transforms.write import write_table

__all__ = ["ReadDone", "ResumeState", "done_ids", "prepare_resume"]

_log = logging.getLogger(__name__)
_COLUMNS = ["video_id", "status", "config_hash", "model", "run_id", "schema_version"]
#: The tables whose parts are committed with a ``videos`` part, under the same file name.
_PAIRED = ("frames", "segments", "embeddings")


@dataclasses.dataclass(frozen=True)
class ResumeState:
    """What resuming found: the done ids, how many rows were dropped, and the earlier runs' ids."""

    done: frozenset[str]
    dropped_rows: int
    removed_files: int
    previous_runs: tuple[str, ...]


def _read(path: str, columns: list[str] | None = None) -> pa.Table:
    with FileSystems.open(path) as handle:
        return pq.read_table(pa.BufferReader(handle.read()), columns=columns)


def _paired(videos_part: str, root: str, table: str) -> str:
    """The part of ``table`` committed with a videos part: same split folder and file name."""
    return FileSystems.join(root, table, videos_part[len(FileSystems.join(root, "videos")) + 1:])


def _is_done(row: dict, config_hash: str, model: str) -> bool:
    return (row["status"] == "ok" and row["config_hash"] == config_hash and row["model"] == model
            and row["schema_version"] == SCHEMA_VERSION)


def _keep_only(path: str, ids: set[str]) -> int:
    """Rewrites ``path`` with only the rows of ``ids`` (deletes it when none); returns rows dropped."""
    table = _read(path)
    kept = table.filter(pc.is_in(table["video_id"], value_set=pa.array(sorted(ids), pa.string())))
    if kept.num_rows == table.num_rows:
        return 0
    if kept.num_rows:
        write_table(path, kept)
    else:
        FileSystems.delete([path])
    return table.num_rows - kept.num_rows


def _delete(paths: Iterable[str]) -> int:
    paths = list(paths)
    if paths:
        FileSystems.delete(paths)
    return len(paths)


def _in_table(paths: Iterable[str], root: str, table: str, prefix: str) -> list[str]:
    """Those of ``paths`` in ``root/table/<split>/`` whose file name starts with ``prefix``."""
    folder = FileSystems.join(root, table) + "/"
    return sorted(p for p in paths if p.startswith(folder) and p.rsplit("/", 1)[-1].startswith(prefix))


def prepare_resume(root: str, config_hash: str, model: str, run_id: str) -> ResumeState:
    """Records ``run_id`` in the output's ledger, finds the done videos in ``root`` and trims the output to
    them (see the module doc). Only files of the runs the ledger names are rewritten or deleted.

    Raises:
        ConfigError: the output holds files videolabel did not write where the run writes.
    """
    owned = claim(root, RUN_WRITES, run_id).owned
    removed = _delete(p for table in ("videos", *_PAIRED) for p in _in_table(owned, root, table, "."))
    parts = _in_table(owned, root, "videos", "part-")
    owner: dict[str, str] = {}
    runs: set[str] = set()
    for part in parts:
        rows = _read(part, _COLUMNS).to_pylist()
        runs.update(r["run_id"] for r in rows)
        for r in rows:
            if _is_done(r, config_hash, model) and r["video_id"] not in owner:
                owner[r["video_id"]] = part
    keep: dict[str, set[str]] = {part: set() for part in parts}
    for video_id, part in owner.items():
        keep[part].add(video_id)
    dropped = 0
    for part, ids in keep.items():
        dropped += _keep_only(part, ids)
        for table in _PAIRED:
            paired = _paired(part, root, table)
            if FileSystems.exists(paired):
                _keep_only(paired, ids)
    for table in _PAIRED:
        committed = {_paired(part, root, table) for part in parts}
        removed += _delete(p for p in _in_table(owned, root, table, "part-") if p not in committed)
    _log.info("resume: %d videos done, %d rows dropped, %d files removed", len(owner), dropped, removed)
    return ResumeState(frozenset(owner), dropped, removed, tuple(sorted(runs)))


def done_ids(table: pa.Table, config_hash: str, model: str, run_id: str) -> list[str]:
    """The ids of the done rows of a ``videos`` table (``_COLUMNS`` at least); rows of ``run_id``
    (the running job's own) are never done."""
    rows = table.select(_COLUMNS).to_pylist()
    return [r["video_id"] for r in rows if _is_done(r, config_hash, model) and r["run_id"] != run_id]


class _ReadDoneFn(beam.DoFn):
    def __init__(self, config_hash: str, model: str, run_id: str):
        self._config_hash = config_hash
        self._model = model
        self._run_id = run_id

    def setup(self) -> None:
        self._done = metrics.counter(metrics.RESUME_DONE_IDS)

    def process(self, metadata: FileMetadata) -> Iterable[str]:
        ids = done_ids(_read(metadata.path, _COLUMNS), self._config_hash, self._model, self._run_id)
        self._done.inc(len(ids))
        yield from ids


class ReadDone(beam.PTransform):
    """The ids of the videos done in the output ``root`` (str, one per done row), read by the job.

    An output with no ``videos`` parts yet gives an empty PCollection.

    Args:
        root: the output folder, local or gs://.
        config_hash, model: what a done row was made with (this run's).
        run_id: this run's id: its own rows never count as done.
    """

    def __init__(self, root: str, *, config_hash: str, model: str, run_id: str):
        super().__init__()
        self._pattern = f"{FileSystems.join(root, 'videos')}/*/part-*.parquet"
        self._fn = _ReadDoneFn(config_hash, model, run_id)

    def expand(self, pbegin):
        return (pbegin
                | "Pattern" >> beam.Create([self._pattern])
                | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.ALLOW)
                | "Spread" >> beam.Reshuffle()
                | "ReadIds" >> beam.ParDo(self._fn))
