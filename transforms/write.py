"""WriteOutputs: video and frame rows -> Hive-partitioned Parquet.

Layout: ``OUTPUT/<table>/split=<split>/part-<shard>-of-<shards>.parquet``. Rows
are spread over ``num_shards`` files per split by a hash of the video id (all
rows of a video land in one file), sorted by video and time inside each file.
Each file is written under a hidden temporary name and renamed into place, so
a reader never picks up a half-written part.
"""

from __future__ import annotations

import hashlib
import io
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

__all__ = ["WriteOutputs", "WriteTable", "part_path", "shard_of", "write_parquet"]


def shard_of(video_id: str, num_shards: int) -> int:
    """The shard of a video: stable across runs and processes."""
    digest = hashlib.md5(video_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % num_shards


def part_path(root: str, table: str, split: str, shard: int, num_shards: int) -> str:
    """Where one part file goes; the split value is escaped as Hive does."""
    partition = "split=" + urllib.parse.quote(split, safe="")
    return FileSystems.join(root, table, partition, f"part-{shard:05d}-of-{num_shards:05d}.parquet")


def write_parquet(path: str, rows: Iterable[dict[str, Any]], schema: pa.Schema) -> int:
    """Writes rows (dicts with the schema's keys; others ignored) atomically; returns the count."""
    table = pa.Table.from_pylist(list(rows), schema=schema)
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


class _WritePartFn(beam.DoFn):
    def __init__(self, root: str, table: str, schema: pa.Schema, num_shards: int, sort_keys):
        self._root = root
        self._table = table
        self._schema = schema
        self._num_shards = num_shards
        self._sort_keys = sort_keys

    def process(self, element) -> Iterator[str]:
        (split, shard), rows = element
        ordered = sorted(rows, key=lambda r: tuple(r[k] for k in self._sort_keys))
        path = part_path(self._root, self._table, split, shard, self._num_shards)
        write_parquet(path, ordered, self._schema)
        yield path


class WriteTable(beam.PTransform):
    """Dict rows (with a ``split`` key) -> Parquet parts of one table; outputs the paths."""

    def __init__(self, root: str, table: str, schema: pa.Schema, *, num_shards: int, sort_keys):
        super().__init__()
        self._root = root
        self._table = table
        self._schema = schema
        self._num_shards = num_shards
        self._sort_keys = tuple(sort_keys)

    def expand(self, rows):
        n = self._num_shards
        return (rows
                | "KeyByPart" >> beam.Map(lambda r: ((r["split"], shard_of(r["video_id"], n)), r))
                | "GroupParts" >> beam.GroupByKey()
                | "WriteParts" >> beam.ParDo(
                    _WritePartFn(self._root, self._table, self._schema, n, self._sort_keys)))


class WriteOutputs(beam.PTransform):
    """(video rows, frame rows or None) -> Parquet under ``root``; outputs written paths."""

    def __init__(self, root: str, *, videos_schema: pa.Schema, frames_schema: pa.Schema,
                 num_shards: int):
        super().__init__()
        self._root = root
        self._videos_schema = videos_schema
        self._frames_schema = frames_schema
        self._num_shards = num_shards

    def expand(self, inputs):
        videos, frames = inputs
        paths = [videos | "Videos" >> WriteTable(
            self._root, "videos", self._videos_schema, num_shards=self._num_shards,
            sort_keys=("video_id",))]
        if frames is not None:
            paths.append(frames | "Frames" >> WriteTable(
                self._root, "frames", self._frames_schema, num_shards=self._num_shards,
                sort_keys=("video_id", "frame_index")))
        return paths | "AllParts" >> beam.Flatten()
