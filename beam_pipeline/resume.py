"""``--resume``: keep the videos an earlier run into the same output finished, redo the rest.

A video is done when it has a ``videos`` row with status ``ok`` made with this
run's ``config_hash`` and model. Before the run starts, the output is made to
hold the done videos and nothing else:

* a part file holding other rows (failed, partial or changed videos, or a
  second copy of a done video, as a retried bundle can leave) is rewritten
  without them, its paired ``frames`` part too, each atomically;
* a ``frames`` part whose ``videos`` part never landed (a run killed between
  the two commits) is removed, and so are temporary files a killed run left.

The run then skips the done ids, and its parts carry its own run id, so nothing
it writes replaces a kept file. The output ends with one row per video.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from transforms.write import write_table

__all__ = ["ResumeState", "prepare_resume"]

_log = logging.getLogger(__name__)
_COLUMNS = ["video_id", "status", "config_hash", "model", "run_id"]


@dataclasses.dataclass(frozen=True)
class ResumeState:
    """What resuming found: the done ids, how many rows were dropped, and the earlier runs' ids."""

    done: frozenset[str]
    dropped_rows: int
    removed_files: int
    previous_runs: tuple[str, ...]


def _match(pattern: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def _read(path: str, columns: list[str] | None = None) -> pa.Table:
    with FileSystems.open(path) as handle:
        return pq.read_table(pa.BufferReader(handle.read()), columns=columns)


def _paired(videos_part: str, root: str) -> str:
    """The frames part committed with a videos part: same split folder and file name."""
    return FileSystems.join(root, "frames", videos_part[len(FileSystems.join(root, "videos")) + 1:])


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


def prepare_resume(root: str, config_hash: str, model: str) -> ResumeState:
    """Finds the done videos in ``root`` and trims the output to them (see the module doc)."""
    videos_dir, frames_dir = FileSystems.join(root, "videos"), FileSystems.join(root, "frames")
    removed = _delete(_match(f"{videos_dir}/*/.*.tmp") + _match(f"{frames_dir}/*/.*.tmp"))
    parts = _match(f"{videos_dir}/*/part-*.parquet")
    owner: dict[str, str] = {}
    runs: set[str] = set()
    for part in parts:
        rows = _read(part, _COLUMNS).to_pylist()
        runs.update(r["run_id"] for r in rows)
        for r in rows:
            if (r["status"] == "ok" and r["config_hash"] == config_hash and r["model"] == model
                    and r["video_id"] not in owner):
                owner[r["video_id"]] = part
    keep: dict[str, set[str]] = {part: set() for part in parts}
    for video_id, part in owner.items():
        keep[part].add(video_id)
    dropped = 0
    for part, ids in keep.items():
        frames = _paired(part, root)
        dropped += _keep_only(part, ids)
        if FileSystems.exists(frames):
            _keep_only(frames, ids)
    committed = {_paired(part, root) for part in parts}
    removed += _delete(p for p in _match(f"{frames_dir}/*/part-*.parquet") if p not in committed)
    _log.info("resume: %d videos done, %d rows dropped, %d files removed", len(owner), dropped, removed)
    return ResumeState(frozenset(owner), dropped, removed, tuple(sorted(runs)))
