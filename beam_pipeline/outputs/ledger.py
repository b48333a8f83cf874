"""What videolabel wrote into an output folder, so that it deletes nothing else.

Every ``run`` and ``train`` (and ``report``) records, in ``OUTPUT/_videolabel.json``
and *before* it writes anything, what it is about to write there (a ``Ledger``):

* ``run_ids``: the runs whose Parquet parts the folder holds. A part belongs to a
  run only by its name, ``<table>/split=<split>/part-<run_id>-<writer>-<seq>.parquet``
  (``transforms.write.part_name``), or its hidden temporary ``.part-<run_id>-....tmp``;
* ``tables``: the table folders those parts live in (``videos``, ``frames``, ...);
* ``files``: single files at the top (``labels.txt``, ``_run.json``, ``results.json``, ...);
* ``folders``: folders written whole (``saved_model``, ``report``).

A file is *owned* when the ledger names it that way, and nothing else is: a
folder called ``videos`` or a file called ``results.json`` is a user's until a
ledger says otherwise. ``--overwrite`` deletes owned files only, ``--resume`` and
the finalize step touch only parts of known run ids, and a job refuses to start
where it would write over a file it does not own (``prepare_output``). An output
of a version that wrote no ledger is recognised by its ``_run.json`` alone (its run
id and the runs it resumed).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence

from apache_beam.io.filesystems import FileSystems
from pydantic import BaseModel, ConfigDict, ValidationError

from beam_pipeline.config import ConfigError
from beam_pipeline.outputs.run_record import RUN_FILE

__all__ = ["LEDGER_FILE", "REPORT_WRITES", "RUN_WRITES", "TRAIN_WRITES", "Ledger", "Survey", "Writes",
           "check_output", "check_output_apart", "claim", "prepare_output", "read_ledger", "survey"]

_log = logging.getLogger(__name__)

LEDGER_FILE = "_videolabel.json"
#: A part's file name (``transforms.write.part_name``: ``part-<run_id>-<writer>-<seq>.parquet``), or the
#: hidden temporary name it is written under; ``run`` is checked against the ledger's run ids.
_PART = re.compile(r"(?P<temp>\.)?part-(?P<run>.+)-[^-/]+-\d+\.parquet(?(temp)\.[^/]+\.tmp)")


@dataclasses.dataclass(frozen=True)
class Writes:
    """What one kind of job writes into its output folder (see the module doc)."""

    tables: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()

    def paths(self) -> tuple[str, ...]:
        """Every top-level name it writes, the ledger included."""
        return (*self.tables, *self.files, *self.folders, LEDGER_FILE)


RUN_WRITES = Writes(tables=("videos", "frames", "segments", "embeddings"), files=("labels.txt", RUN_FILE))
TRAIN_WRITES = Writes(tables=("features",), files=("labels.txt", "results.json", "loss_curve.png",
                                                    "confusion_matrix.png"), folders=("saved_model",))
REPORT_WRITES = Writes(folders=("report",))


class Ledger(BaseModel):
    """``OUTPUT/_videolabel.json``: what videolabel wrote into the folder (see the module doc)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ledger_version: int = 1
    run_ids: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()

    def with_writes(self, writes: Writes, run_id: str | None = None) -> Ledger:
        """This ledger with ``writes`` (and ``run_id``'s parts) added."""
        def union(old: tuple[str, ...], new: Sequence[str]) -> tuple[str, ...]:
            return tuple(dict.fromkeys((*old, *new)))

        return Ledger(run_ids=union(self.run_ids, [run_id] if run_id else []),
                      tables=union(self.tables, writes.tables), files=union(self.files, writes.files),
                      folders=union(self.folders, writes.folders))

    def owns(self, relative: str) -> bool:
        """Whether the file at ``relative`` (a path under the output, '/'-separated) is videolabel's."""
        if relative == LEDGER_FILE or relative in self.files:
            return True
        top, _, rest = relative.partition("/")
        if top in self.folders:
            return True
        if top not in self.tables:
            return False
        split, _, name = rest.partition("/")
        part = _PART.fullmatch(name)
        return split.startswith("split=") and part is not None and part["run"] in self.run_ids

    def write(self, root: str) -> None:
        """Writes ``root/_videolabel.json`` (local or gs://; a local folder is made)."""
        with FileSystems.create(FileSystems.join(root, LEDGER_FILE)) as handle:
            handle.write(self.model_dump_json(indent=2).encode("utf-8"))


class _LegacyRecord(BaseModel):
    """What an older ``_run.json`` (of a version without ledgers) says of the runs that wrote the folder."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    schema_version: int
    resume: dict | None = None


def read_ledger(root: str) -> Ledger | None:
    """The folder's ledger; for an output of a version without one, what its ``_run.json`` names; else None.

    Raises:
        ConfigError: ``_videolabel.json`` exists but is not a ledger.
    """
    path = FileSystems.join(root, LEDGER_FILE)
    if FileSystems.exists(path):
        try:
            with FileSystems.open(path) as handle:
                return Ledger.model_validate_json(handle.read())
        except ValidationError as exc:
            raise ConfigError(f"--output: {path!r} is not a videolabel ledger ({exc.error_count()} "
                              "errors): leave that folder as it is and choose another") from None
    record = FileSystems.join(root, RUN_FILE)
    if not FileSystems.exists(record):
        return None
    try:
        with FileSystems.open(record) as handle:
            legacy = _LegacyRecord.model_validate(json.loads(handle.read()))
    except (ValueError, ValidationError):  # not JSON, or not a run record: a user's file
        return None
    previous = tuple((legacy.resume or {}).get("previous_runs", ()))
    return Ledger(run_ids=(legacy.run_id, *previous)).with_writes(RUN_WRITES)


def _local(path: str) -> bool:
    return "://" not in path


def _files_under(path: str) -> Iterator[str]:
    """Every file at or below ``path`` (local or gs://), lazily where the filesystem lists lazily."""
    if _local(path):
        if os.path.isfile(path) or os.path.islink(path):
            yield path
        for folder, folders, names in os.walk(path):  # a link to a folder is listed, never followed
            links = [name for name in folders if os.path.islink(os.path.join(folder, name))]
            for name in sorted([*names, *links]):
                yield os.path.join(folder, name)
        return
    for match in FileSystems.match([path, f"{path}/**"]):
        for meta in match.metadata_list:
            yield meta.path


@dataclasses.dataclass(frozen=True)
class Survey:
    """An output folder as a job about to write into it sees it.

    ``owned``: every file the ledger owns (sorted); ``foreign``: files where the job would write that
    videolabel did not write (at most ``limit`` of them, the first found).
    """

    ledger: Ledger | None
    owned: tuple[str, ...]
    foreign: tuple[str, ...]


def survey(root: str, writes: Writes, limit: int = 3) -> Survey:
    """Looks at ``root`` before a job that writes ``writes`` starts; reads, deletes nothing."""
    ledger = read_ledger(root)
    known = ledger or Ledger()
    owned, foreign = [], []
    looked = writes.paths()
    earlier = (p for p in (*known.tables, *known.files, *known.folders) if p not in looked)
    for top in (*looked, *earlier):
        for path in _files_under(FileSystems.join(root, top)):
            relative = path[len(root.rstrip("/")) + 1:].replace(os.sep, "/")
            if known.owns(relative):
                owned.append(path)
            elif top in looked and len(foreign) < limit:
                foreign.append(path)
    return Survey(ledger, tuple(sorted(set(owned))), tuple(foreign))


def _remove_empty_folders(root: str, ledger: Ledger) -> None:
    """Removes the folders of a local output that deleting owned files left empty (never a non-empty one)."""
    if not _local(root):
        return  # object stores have no folders
    for top in (*ledger.tables, *ledger.folders):
        for folder, _, _ in sorted(os.walk(os.path.join(root, top)), key=lambda w: -len(w[0])):
            try:
                os.rmdir(folder)
            except OSError:  # not empty: something in it is not ours
                pass


def check_output(root: str, writes: Writes, *, overwrite: bool = False, resume: bool = False,
                 again: str = "") -> Survey:
    """Whether a job that writes ``writes`` may start in ``root``; reads, deletes nothing.

    * A file where the job writes that videolabel did not write: refused, whatever the flags.
    * An earlier videolabel output: refused unless ``overwrite`` (it will be replaced) or ``resume``
      (it will be finished).

    Args:
        again: what the refusal of an earlier output suggests besides ``--overwrite`` (e.g. ", --resume ...").

    Returns:
        The folder as found.

    Raises:
        ConfigError: in one line, naming the files; it suggests ``--overwrite`` only where every file in
            the way is videolabel's.
    """
    found = survey(root, writes)
    if found.foreign:
        raise ConfigError(
            f"--output: {root!r} holds files videolabel did not write where this job writes "
            f"({', '.join(found.foreign)}); nothing was deleted: choose another output folder")
    if found.ledger and not (overwrite or resume):
        runs = ", ".join(found.ledger.run_ids) or "unknown"
        raise ConfigError(
            f"--output: {root!r} already holds a videolabel output (run {runs}); pass --overwrite to "
            f"replace it (deletes only the {len(_doomed(found))} files videolabel wrote there){again}, "
            "or choose another folder")
    return found


def _doomed(found: Survey) -> list[str]:
    """What replacing the output deletes: every owned file but the ledger (which is written anew)."""
    return [path for path in found.owned if path.rsplit("/", 1)[-1] != LEDGER_FILE]


def prepare_output(root: str, writes: Writes, run_id: str, *, overwrite: bool, again: str = "") -> Ledger:
    """Makes ``root`` ready for a new job writing ``writes`` as ``run_id`` (``check_output`` first): with
    ``overwrite``, deletes every file the earlier output's ledger owns, and nothing else; then writes the
    new ledger.

    Raises:
        ConfigError: as ``check_output``.
    """
    found = check_output(root, writes, overwrite=overwrite, again=again)
    doomed = _doomed(found)
    if doomed:
        FileSystems.delete(doomed)
        _remove_empty_folders(root, found.ledger)
        _log.info("--overwrite: deleted %d files of the earlier output in %s", len(doomed), root)
    ledger = Ledger().with_writes(writes, run_id)
    ledger.write(root)
    return ledger


def claim(root: str, writes: Writes, run_id: str | None = None) -> Survey:
    """Adds ``writes`` (and ``run_id``) to ``root``'s ledger, keeping what it owns: a resumed run, a report.

    Returns:
        The folder as found (``owned``: the files owned before the claim), with the new ledger, written.

    Raises:
        ConfigError: a file where ``writes`` goes that videolabel did not write.
    """
    found = check_output(root, writes, resume=True)
    ledger = (found.ledger or Ledger()).with_writes(writes, run_id)
    ledger.write(root)
    return dataclasses.replace(found, ledger=ledger)


def _normal(path: str) -> str:
    """``path`` as compared for containment: an absolute real path locally, else without a trailing '/'."""
    return os.path.realpath(path) if _local(path) else path.rstrip("/")


def _glob_base(pattern: str) -> str:
    """The folder a glob lists (its part before the first wildcard), or the path itself."""
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return "/".join(parts[:i]) or "."
    return pattern


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _is_path(handle: str) -> bool:
    return bool(handle) and (_local(handle) or handle.startswith("gs://"))


def _could_list(pattern: str, folder: str) -> bool:
    """Whether the input ``pattern`` (a glob, a file or a manifest) lies inside ``folder``, or lists it
    or something below it (``DATA/videos/*`` lists ``DATA/videos/out``; ``*.mp4`` does not list ``out``)."""
    base = _glob_base(pattern)
    wild = pattern[len(base):].strip("/").split("/") if base != pattern else []
    base, folder = _normal(base), _normal(folder)
    if _within(base, folder):
        return True
    if not _within(folder, base):
        return False
    below = folder[len(base):].strip("/").split("/")
    for name, part in zip(below, wild):
        if "**" in part:
            return True
        if not fnmatch.fnmatchcase(name, part):
            return False
    return True


def check_output_apart(output: str, inputs: Sequence[str], models: Sequence[str] = ()) -> None:
    """The output folder neither holds an input (a glob's folder, a file or a manifest) nor lies where an
    input glob lists, and neither holds nor sits in a model or labels file the job reads. Reads nothing.

    Raises:
        ConfigError: naming both paths.
    """
    for given in inputs:
        if _could_list(given, output):
            where = "holds" if _within(_normal(_glob_base(given)), _normal(output)) else "is inside"
            raise ConfigError(f"--output: {output!r} {where} the input {given!r}: write the output "
                              "outside the videos it labels")
    out = _normal(output)
    for model in filter(_is_path, models):
        if _within(_normal(model), out) or _within(out, _normal(model)):
            raise ConfigError(f"--output: {output!r} overlaps {model!r}, which the job reads: write the "
                              "output elsewhere")
