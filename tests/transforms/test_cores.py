"""Worker processes pinned to a core each: distinct cores, every thread, held until the process ends."""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest

from transforms.cores import pin_to_free_core

CORES = sorted(os.sched_getaffinity(0))


def _claim(folder: str, results, done) -> None:
    before = threading.Thread(target=done.wait)  # a thread that exists before the pin
    before.start()
    core = pin_to_free_core(folder)
    after = threading.Thread(target=done.wait)  # and one started after it
    after.start()
    affinities = [sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")]
    results.put((core, affinities, pin_to_free_core(folder)))
    done.wait()
    before.join()
    after.join()


@pytest.mark.skipif(len(CORES) < 2, reason="needs at least two allowed cores")
def test_each_process_takes_a_free_core_until_none_is_left_and_releases_it_at_exit(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    results, done = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_claim, args=(str(tmp_path), results, done)) for _ in range(len(CORES) + 1)]
    for proc in procs:
        proc.start()
    claims = [results.get(timeout=120) for _ in procs]
    done.set()
    for proc in procs:
        proc.join()
    pinned = [c for c in claims if c[0] is not None]
    assert sorted(core for core, _, _ in pinned) == CORES  # every core once
    for core, affinities, again in pinned:
        assert len(affinities) >= 3 and all(a == [core] for a in affinities)  # every thread
        assert again == core
    (core, affinities, _), = [c for c in claims if c[0] is None]  # the one too many is left alone
    assert all(a == CORES for a in affinities)

    # the processes have ended: their cores are free again
    done.clear()
    proc = ctx.Process(target=_claim, args=(str(tmp_path), results, done))
    proc.start()
    core, _, _ = results.get(timeout=120)
    done.set()
    proc.join()
    assert core == CORES[0]
