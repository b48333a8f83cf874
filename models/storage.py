"""Model files through Beam's ``FileSystems``: a remote model is copied once per machine, then loaded locally.

TensorFlow reads gs:// with its own GCS client, which ignores Beam's settings
(``STORAGE_EMULATOR_HOST``, credentials and retries as Beam's GCS filesystem
has them), so model folders and files are read through the same layer as the
videos and the output: ``local_copy`` lists a remote SavedModel folder, a file
(``.tflite``) or a checkpoint prefix (the files ``PREFIX.*``), copies it into a
local cache and returns the local path that ``hub.load``, ``tf.saved_model.load``
or a TFLite interpreter then reads. Local paths and TF Hub ``http(s)://`` URLs
come back unchanged.

The cache lives in ``$VIDEOLABEL_MODEL_CACHE``, else
``tempfile.gettempdir()/videolabel-models``, one folder per handle and listing
(the relative names, sizes and modification times of its files), so a remote
model that changes is fetched again and an unchanged one is copied once per
machine. A copy is written to a hidden temporary folder and renamed into
place, under a per-entry file lock, so processes on one machine never see a
half copy and copy it only once between them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator

from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems

__all__ = ["cache_root", "is_remote", "local_copy", "locked"]

_log = logging.getLogger(__name__)
_CACHE_ENV = "VIDEOLABEL_MODEL_CACHE"
_CHUNK = 16 << 20


def cache_root() -> str:
    """The folder local copies go in: ``$VIDEOLABEL_MODEL_CACHE``, else ``<tmp>/videolabel-models``."""
    return os.environ.get(_CACHE_ENV) or os.path.join(tempfile.gettempdir(), "videolabel-models")


def is_remote(handle: str) -> bool:
    """True for paths a Beam filesystem other than the local one serves (gs://, s3://, ...)."""
    scheme = FileSystems.get_scheme(handle)
    return scheme is not None and scheme not in ("file", "http", "https")


def _files(handle: str) -> tuple[str, list[FileMetadata]]:
    """(how the handle's files are named, the files): a file, a folder's files, or a prefix's.

    Raises:
        FileNotFoundError: nothing is there.
    """
    handle = handle.rstrip("/")
    exact = [m for m in FileSystems.match([handle])[0].metadata_list if m.path == handle]
    if exact:
        return "file", exact
    below = FileSystems.match([f"{handle}/**"])[0].metadata_list
    if below:
        return "folder", below
    prefixed = FileSystems.match([f"{handle}.*"])[0].metadata_list
    if prefixed:
        return "checkpoint", prefixed
    raise FileNotFoundError(f"{handle}: no such file, folder or checkpoint prefix")


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Holds an exclusive lock on the file ``path`` (other processes wait) for the ``with`` block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _copy_file(source: str, destination: str) -> None:
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    with FileSystems.open(source, compression_type=CompressionTypes.UNCOMPRESSED) as src, \
            open(destination, "wb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)


def local_copy(handle: str) -> str:
    """A local path holding ``handle``'s model: ``handle`` itself unless it is remote (see the module doc).

    Args:
        handle: a SavedModel folder, a file (``.tflite``, ``labels.txt``) or a
            checkpoint prefix; local, remote (gs:// and any Beam filesystem) or a URL.

    Returns:
        The local folder, file or prefix of the same name, inside the cache.

    Raises:
        FileNotFoundError: a remote handle names nothing.
        OSError, BeamIOError: listing or copying failed.
    """
    if not is_remote(handle):
        return handle
    handle = handle.rstrip("/")
    kind, files = _files(handle)
    parent, name = handle.rsplit("/", 1)
    listing = sorted((m.path[len(parent) + 1:], m.size_in_bytes, m.last_updated_in_seconds) for m in files)
    key = hashlib.sha256(json.dumps([handle, listing]).encode()).hexdigest()[:24]
    root = cache_root()
    final = os.path.join(root, key)
    os.makedirs(root, exist_ok=True)
    with locked(os.path.join(root, f".{key}.lock")):
        if not os.path.isdir(final):
            partial = tempfile.mkdtemp(prefix=f".{key}-", dir=root)
            try:
                for relative, _, _ in listing:
                    _copy_file(f"{parent}/{relative}", os.path.join(partial, relative))
                os.rename(partial, final)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
            _log.info("copied %s %s (%d files, %d bytes) to %s", kind, handle, len(listing),
                      sum(size for _, size, _ in listing), final)
    return os.path.join(final, name)
