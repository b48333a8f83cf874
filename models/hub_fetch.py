"""TF Hub models fetched once, on the machine that launches a job, into the model cache.

Workers never call tfhub.dev: a Dataflow worker on a private IP has no route to
it, and a thousand workers each downloading the model is a rate-limit incident.
``hub_local`` downloads a TF Hub (or any http/https tar.gz SavedModel) handle
once per machine into ``$VIDEOLABEL_MODEL_CACHE/tfhub`` with ``tensorflow_hub``'s
own resolver, in a child process (the launcher never imports TensorFlow), and
returns the local folder; the launcher stages it for remote workers as it stages a
LiteRT file (``beam_pipeline.job.serving``). A handle that cannot be fetched is one
``HubUnavailable`` line, raised before anything is written.

    python -m models.hub_fetch HANDLE CACHE_DIR   # prints the local folder
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys

from models.storage import cache_root

__all__ = ["HubUnavailable", "hub_local"]

#: Seconds a connection to the model's server may stay silent before the fetch gives up.
SOCKET_TIMEOUT_S = 30


class HubUnavailable(RuntimeError):
    """A TF Hub handle that could not be fetched (one line: the handle and the reason)."""


def _cache_dir() -> str:
    return os.path.join(cache_root(), "tfhub")


def _cached(handle: str, cache: str) -> str | None:
    """The folder ``tensorflow_hub`` resolved ``handle`` to in ``cache`` earlier (its name is the SHA-1 of
    the handle), if complete: a SavedModel and no download in progress (its lock file)."""
    folder = os.path.join(cache, hashlib.sha1(handle.encode("utf8")).hexdigest())
    complete = os.path.isfile(os.path.join(folder, "saved_model.pb")) and not os.path.exists(f"{folder}.lock")
    return folder if complete else None


def hub_local(handle: str) -> str:
    """The local folder of the TF Hub model ``handle``: from the cache, else downloaded now (once per
    machine; ``tensorflow_hub`` locks the download against other processes).

    Raises:
        HubUnavailable: the model could not be fetched (no route, refused, not found, not a model).
    """
    cache = _cache_dir()
    found = _cached(handle, cache)
    if found:
        return found
    print(f"fetching {handle} (once; cached in {cache})", file=sys.stderr)
    proc = subprocess.run([sys.executable, "-m", "models.hub_fetch", handle, cache], capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise HubUnavailable(f"cannot fetch {handle}: {last}")
    return proc.stdout.strip().splitlines()[-1]


def _fetch(handle: str, cache: str) -> str:
    socket.setdefaulttimeout(SOCKET_TIMEOUT_S)
    os.environ["TFHUB_CACHE_DIR"] = cache
    import tensorflow_hub as hub

    folder = hub.resolve(handle)
    if not os.path.isfile(os.path.join(folder, "saved_model.pb")):
        raise ValueError("what it serves is not a SavedModel (no saved_model.pb)")
    return folder


if __name__ == "__main__":
    try:
        print(_fetch(sys.argv[1], sys.argv[2]))
    except Exception as exc:  # noqa: BLE001 - the child's boundary: one line for the launcher
        reason = getattr(exc, "reason", None) or exc
        print(f"{type(exc).__name__}: {reason}".splitlines()[0], file=sys.stderr)
        sys.exit(1)
