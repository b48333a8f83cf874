"""CommitParts and FinalizeParts: per-video Arrow rows -> Hive-partitioned Parquet, committed as the run goes.

Layout: ``OUTPUT/<table>/split=<split>/part-<run_id>-<writer>-<seq>.parquet``.
Each element is one video's rows, a ``VideoRows``: its split and one record
batch per table. A worker buffers them per split and commits a part file per
table (the buffered batches concatenated, sorted by the table's sort keys)
when ``videos_per_file`` videos are buffered, when the oldest has waited
``flush_s`` seconds, and at the end of each bundle. So a killed run keeps every
video committed before the kill, and resuming redoes only the rest.

Every file is written under a hidden temporary name and renamed into place, so
a reader never picks up a half-written part. Tables are committed in the order
given, the last one (``videos``) last: a video that has its ``videos`` row has
all its other rows, in the part files of the same name.

Exactly one row per video, whatever bundle retries happen (as Beam's own file
sinks do it): ``CommitParts`` passes the name of every part it commits downstream,
from ``process`` and ``finish_bundle``. A runner keeps the outputs of a bundle
only when the bundle commits, so a bundle that committed parts and then failed
(its retry writes the same videos again, under new names) passes nothing on.
After every write (a global combine is the barrier), ``FinalizeParts`` lists this
run's parts (``part-<run_id>-*``) in every table and deletes those no committed
bundle passed on, and this run's leftover temporary files (``finalize_parts``;
idempotent, so a retried finalize is harmless), and writes an empty part into each
table that holds none, so that every table of a finished run can be queried. A run
killed before it finalizes may hold such duplicates until ``--resume`` trims them.

A job with several branches of rows (classified videos, videos that failed) commits
each branch with its own ``CommitParts`` and flattens only their part keys into the
one ``FinalizeParts``: on Beam's local runner a Flatten is a stage boundary, and one
before the commits would hold every row back until all videos are done.
"""

from __future__ import annotations

import io
import logging
import re
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.records import VideoRows

__all__ = ["CommitParts", "FinalizeParts", "finalize_parts", "part_name", "partition_dir", "write_branches",
           "write_empty_tables", "write_table"]

_log = logging.getLogger(__name__)


def partition_dir(root: str, table: str, split: str) -> str:
    """The folder of one table's split; the split value is escaped as Hive does."""
    return FileSystems.join(root, table, "split=" + urllib.parse.quote(split, safe=""))


def part_name(run_id: str, writer: str, seq: int) -> str:
    """The file name of one commit; the same in every table of the commit."""
    return f"part-{run_id}-{writer}-{seq:05d}.parquet"


def _commit_key(split: str, name: str) -> str:
    """What a commit passes downstream: ``split=<split>/<part name>``, the same in every table."""
    return "split=" + urllib.parse.quote(split, safe="") + "/" + name


def write_table(path: str, table: pa.Table) -> int:
    """Writes an Arrow table to ``path`` under a hidden temporary name, then renames it into place;
    returns its row count."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    folder, name = path.rsplit("/", 1)
    temp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    with FileSystems.create(temp) as handle:
        handle.write(buffer.getvalue())
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temp], [path])
    return table.num_rows


def _delete_existing(paths: Sequence[str]) -> None:
    """Deletes ``paths``; one already gone (a retried finalize) is no error."""
    if not paths:
        return
    try:
        FileSystems.delete(list(paths))
    except BeamIOError:
        left = [path for path in paths if FileSystems.exists(path)]
        if left:
            raise


def finalize_parts(root: str, tables: Iterable[str], run_id: str, committed: Iterable[str]) -> list[str]:
    """Deletes this run's parts that no committed bundle passed on, and this run's temporary files.

    Args:
        root: the output folder.
        tables: the tables written (``videos``, ``frames``, ...).
        run_id: this run's id; other runs' files are never touched.
        committed: ``split=<split>/<part name>`` of every commit of a bundle that succeeded.

    Returns:
        The paths deleted, sorted. Idempotent: a second call deletes nothing more.
    """
    keep = set(committed)
    own_part = re.compile(rf"part-{re.escape(run_id)}-[0-9a-f]+-\d+\.parquet")
    own_temp = re.compile(rf"\.part-{re.escape(run_id)}-.*\.tmp")
    doomed = []
    for table in tables:
        folder = FileSystems.join(root, table)
        patterns = [f"{folder}/*/part-{run_id}-*.parquet", f"{folder}/*/.part-{run_id}-*.tmp"]
        for match in FileSystems.match(patterns):
            for meta in match.metadata_list:
                split_dir, name = meta.path.rsplit("/", 1)
                key = split_dir.rsplit("/", 1)[-1] + "/" + name
                if own_temp.fullmatch(name) or (own_part.fullmatch(name) and key not in keep):
                    doomed.append(meta.path)
    doomed.sort()
    _delete_existing(doomed)
    if doomed:
        _log.info("finalize: removed %d files that no committed bundle passed on", len(doomed))
    return doomed


def write_empty_tables(root: str, schemas: Mapping[str, pa.Schema], run_id: str,
                       committed: Iterable[str]) -> list[str]:
    """Writes an empty part, with its schema, into each table of ``schemas`` that holds no part at all
    (a run where no segment formed, say), so that every documented query of it reads zero rows.

    The file goes into the first split this run committed (``split=train`` if none), named
    ``part-<run_id>-empty-00000.parquet``. Idempotent.

    Returns:
        The paths written, sorted.
    """
    splits = sorted(key.split("/", 1)[0] for key in committed)
    split_dir = splits[0] if splits else "split=train"
    written = []
    for table, schema in schemas.items():
        folder = FileSystems.join(root, table)
        if any(match.metadata_list for match in FileSystems.match([f"{folder}/*/part-*.parquet"])):
            continue
        path = f"{folder}/{split_dir}/{part_name(run_id, 'empty', 0)}"
        write_table(path, schema.empty_table())
        written.append(path)
    return sorted(written)


class _Buffer:
    """One split's buffered record batches per table, and when the first of them arrived."""

    def __init__(self, tables: Sequence[str]):
        self.batches: dict[str, list[pa.RecordBatch]] = {t: [] for t in tables}
        self.videos = 0
        self.since = time.monotonic()


class _CommitFn(beam.DoFn):
    def __init__(self, root: str, schemas: Mapping[str, pa.Schema], sort_keys: Mapping[str, Sequence[str]],
                 run_id: str, videos_per_file: int, flush_s: float):
        self._root = root
        self._schemas = dict(schemas)
        self._sort_keys = {t: tuple(k) for t, k in sort_keys.items()}
        self._run_id = run_id
        self._videos_per_file = videos_per_file
        self._flush_s = flush_s

    def setup(self) -> None:
        self._writer = uuid.uuid4().hex[:8]
        self._seq = 0
        self._write_ms = metrics.distribution(metrics.WRITE_MS)
        self._files = metrics.counter(metrics.FILES_WRITTEN)

    def start_bundle(self) -> None:
        self._buffers: dict[str, _Buffer] = {}

    def process(self, rows: VideoRows) -> Iterator[str]:
        if rows.tables.keys() != self._schemas.keys():
            raise ValueError(f"rows of tables {sorted(rows.tables)}; the writer has {sorted(self._schemas)}")
        if not any(batch.num_rows for batch in rows.tables.values()):
            return
        buffer = self._buffers.setdefault(rows.split, _Buffer(self._schemas))
        for table, batch in rows.tables.items():
            buffer.batches[table].append(batch)
        buffer.videos += 1
        if buffer.videos >= self._videos_per_file or time.monotonic() - buffer.since >= self._flush_s:
            yield self._commit(rows.split, self._buffers.pop(rows.split))

    def finish_bundle(self) -> Iterator[WindowedValue]:
        buffers, self._buffers = self._buffers, {}
        for split, buffer in buffers.items():
            yield GlobalWindows.windowed_value(self._commit(split, buffer))

    def _commit(self, split: str, buffer: _Buffer) -> str:
        """Writes one part per table (``videos`` last); returns the commit's key (``_commit_key``)."""
        start = time.perf_counter()
        name = part_name(self._run_id, self._writer, self._seq)
        self._seq += 1
        for table, schema in self._schemas.items():
            rows = pa.Table.from_batches(buffer.batches[table], schema=schema)
            if rows.num_rows:
                rows = rows.sort_by([(key, "ascending") for key in self._sort_keys[table]])
                write_table(FileSystems.join(partition_dir(self._root, table, split), name), rows)
                self._files.inc()
        self._write_ms.update(round((time.perf_counter() - start) * 1000))
        return _commit_key(split, name)


class _FinalizeFn(beam.DoFn):
    def __init__(self, root: str, schemas: Mapping[str, pa.Schema], run_id: str):
        self._root = root
        self._schemas = dict(schemas)
        self._run_id = run_id

    def setup(self) -> None:
        self._discarded = metrics.counter(metrics.FILES_DISCARDED)

    def process(self, committed: list[str]) -> Iterator[str]:
        doomed = finalize_parts(self._root, list(self._schemas), self._run_id, committed)
        self._discarded.inc(len(doomed))
        write_empty_tables(self._root, self._schemas, self._run_id, committed)
        yield from doomed


class CommitParts(beam.PTransform):
    """``VideoRows`` -> Parquet parts under ``root``, committed as they fill; outputs the key
    (``split=<split>/<part name>``) of every commit, for ``FinalizeParts``.

    Args:
        root: output folder, local or gs://.
        schemas: table name -> Arrow schema, in commit order (``videos`` last); every
            element holds a batch of each of these tables, of that schema.
        sort_keys: table name -> columns each file is sorted by.
        run_id: names this run's files apart from earlier runs' (``--resume``).
        videos_per_file: videos per part file, at most.
        flush_s: a part is committed once its oldest video has waited this long.
    """

    def __init__(self, root: str, schemas: Mapping[str, pa.Schema], sort_keys: Mapping[str, Sequence[str]],
                 *, run_id: str, videos_per_file: int = 1000, flush_s: float = 60.0):
        super().__init__()
        self._fn = _CommitFn(root, schemas, sort_keys, run_id, videos_per_file, flush_s)

    def expand(self, rows):
        return rows | "Commit" >> beam.ParDo(self._fn)


class FinalizeParts(beam.PTransform):
    """The keys of every commit (a PCollection of str) -> the paths deleted (a PCollection of str):
    once every commit is done, this run's parts that no committed bundle passed on (see the module doc);
    then an empty part in every table that holds none (``write_empty_tables``).

    Args:
        root: output folder, as given to ``CommitParts``.
        schemas: the tables written and their schemas, as given to ``CommitParts``.
        run_id: this run's id, as given to ``CommitParts``.
    """

    def __init__(self, root: str, schemas: Mapping[str, pa.Schema], *, run_id: str):
        super().__init__()
        self._fn = _FinalizeFn(root, schemas, run_id)

    def expand(self, committed):
        return (committed
                | "AllCommitted" >> beam.combiners.ToList()  # the barrier: one list, after every write
                | "DeleteUncommitted" >> beam.ParDo(self._fn))


def write_branches(branches: Mapping[str, beam.PCollection], label: str, root: str,
                   schemas: Mapping[str, pa.Schema], sort_keys: Mapping[str, Sequence[str]], *, run_id: str,
                   videos_per_file: int = 1000, flush_s: float = 60.0) -> beam.PCollection:
    """Writes every branch of ``VideoRows``: each committed on its own (``<label>/<branch>``, a
    ``CommitParts``), since a Flatten before the writes would, on Beam's local runner, hold every
    row back until the end; then one ``FinalizeParts`` over all their part keys
    (``<label>/Committed``, ``<label>/Finalize``). Arguments as for ``CommitParts``; returns the
    paths the finalize deleted."""
    commit = CommitParts(root, schemas, sort_keys, run_id=run_id, videos_per_file=videos_per_file,
                         flush_s=flush_s)
    return ([rows | f"{label}/{name}" >> commit for name, rows in branches.items()]
            | f"{label}/Committed" >> beam.Flatten()
            | f"{label}/Finalize" >> FinalizeParts(root, schemas, run_id=run_id))
