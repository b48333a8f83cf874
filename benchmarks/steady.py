"""A run's steady state: how busy the machine's cores were in it, and where each video's core-seconds went.

``CpuSampler`` reads the machine's CPU counters (``/proc/stat``) every
``interval_s`` while a run goes on. ``steady_figures`` takes the run's steady
window from its ``_run.json`` (``throughput.steady_window``: from when every
worker had finished a video to when the first finished its last, so start-up
and the last bundle's tail are outside it) and gives the cores' busy share in it
and the busy core-seconds per video finished in it. ``stage_ms`` splits those
core-seconds per video into the run's own stages (``timings.stage_s``) and
Beam's share, which is what the stages leave: Beam's per-element work, the
worker's Python between stages, the launcher, and anything not measured.
"""

from __future__ import annotations

import os
import threading
import time
from typing import NamedTuple

__all__ = ["CpuSample", "CpuSampler", "STAGES", "stage_ms", "steady_figures"]

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
STAGES = ("probe", "decode", "transfer", "model", "aggregate", "write")


class CpuSample(NamedTuple):
    at: float  # epoch seconds
    busy_s: float  # CPU seconds the machine's cores have been busy since boot (user, system, interrupts)
    total_s: float  # busy and idle CPU seconds since boot


def _read() -> CpuSample:
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(v) for v in handle.readline().split()[1:8]]
    user, nice, system, idle, iowait, irq, softirq = fields
    busy = user + nice + system + irq + softirq
    return CpuSample(time.time(), busy * _TICK_S, (busy + idle + iowait) * _TICK_S)


class CpuSampler:
    """Samples the machine's CPU counters every ``interval_s`` while in the ``with`` block; ``samples``
    holds them in time order (one at entry and one at exit included)."""

    def __init__(self, interval_s: float = 0.1):
        self.interval_s = interval_s
        self.samples: list[CpuSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(_read())

    def __enter__(self) -> CpuSampler:
        self.samples.append(_read())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(_read())


def steady_figures(samples: list[CpuSample], window: tuple[float, float], videos: int) -> dict:
    """The cores' busy share and busy core-seconds per video within ``window`` (epoch seconds), from the
    samples at its edges (the first at or after its start, the last at or before its end);
    ``videos``: the videos finished in it. Raises ValueError when fewer than two samples fall in it."""
    inside = [s for s in samples if window[0] <= s.at <= window[1]]
    if len(inside) < 2 or videos < 1:
        raise ValueError(f"the steady window {window} holds {len(inside)} CPU samples and {videos} videos")
    first, last = inside[0], inside[-1]
    busy, total = last.busy_s - first.busy_s, last.total_s - first.total_s
    # the videos finished in the sampled span, in proportion to the window's
    share_of_window = (last.at - first.at) / (window[1] - window[0])
    return {"window_s": round(window[1] - window[0], 2), "window_videos": videos,
            "busy_share": round(busy / total, 4),
            "busy_core_s_per_video": round(busy / (videos * share_of_window), 5)}


def stage_ms(stage_s: dict[str, float], videos: int, core_s_per_video: float) -> dict[str, float]:
    """Milliseconds per video of each stage of ``STAGES`` (its ``stage_s`` total over ``videos``), then
    ``beam`` (``core_s_per_video`` less the stages: Beam's share, whatever it is) and ``total``."""
    stages = {name: stage_s.get(name, 0.0) * 1000 / videos for name in STAGES}
    total = core_s_per_video * 1000
    return {**{name: round(ms, 2) for name, ms in stages.items()},
            "beam": round(total - sum(stages.values()), 2), "total": round(total, 2)}
