"""A core of its own for each local worker process (CPU affinity).

A local ``multi_processing`` run has one worker process per core, each with one
TensorFlow thread and one FFmpeg thread. Left to the scheduler, the processes
move between cores and lose their caches each time one turns from decoding to
the model: on the 2-core benchmark machine two such processes took 0.283 s per
video each, and 0.249 s pinned to a core each (docs/PERFORMANCE.md).

Cores are claimed machine-wide with one lock file per core in the temp folder,
held (``flock``) for the life of the process: two runs on one machine do not pin
onto the same cores, and a finished or killed worker's core is free again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile

__all__ = ["pin_to_free_core", "pinned_core"]

_log = logging.getLogger(__name__)

# this process's claim: (core, the open lock file that holds it)
_claim: tuple[int, object] | None = None


def pin_to_free_core(folder: str | None = None) -> int | None:
    """Pins every thread of this process to the first allowed core no other process holds.

    Threads started later inherit the pin. Called again, returns the same core.

    Args:
        folder: where the per-core lock files live (default ``$TMPDIR/videolabel-cores``).

    Returns:
        The core, or None when there is only one allowed core or every one is held.
    """
    global _claim
    if _claim is not None:
        return _claim[0]
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    folder = folder or os.path.join(tempfile.gettempdir(), "videolabel-cores")
    os.makedirs(folder, exist_ok=True)
    for core in cores:
        lock = open(os.path.join(folder, f"core-{core}.lock"), "a")  # noqa: SIM115 - held for the process
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        for thread in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(thread), {core})
            except OSError:  # the thread has ended meanwhile
                continue
        _claim = (core, lock)
        _log.info("worker process %d pinned to core %d", os.getpid(), core)
        return core
    return None


def pinned_core() -> int | None:
    """The core this process pinned itself to with ``pin_to_free_core``, or None."""
    return _claim[0] if _claim else None
