"""Progress of a local run: workers note each finished video, the launcher shows one updating line.

Local runners (DirectRunner, Prism) run their workers on this machine, possibly
in other processes, so each worker appends one line per finished video (its
status) to its own file in a shared folder, and ``ProgressLine`` in the
launcher counts them. On Dataflow the same counts are the ``videolabel`` Beam
metrics (``videos_ok``, ``videos_failed``, ...), shown in the job's UI.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from typing import TextIO

__all__ = ["ProgressLine", "note_video"]


_PROCESS_TAG = uuid.uuid4().hex[:8]


def note_video(folder: str, status: str) -> None:
    """Records one finished video with ``status`` in this process's file under ``folder``."""
    path = os.path.join(folder, f"{os.getpid()}-{_PROCESS_TAG}.log")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(status + "\n")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class ProgressLine:
    """Shows videos done / total, failures, videos per second and an ETA while a run goes on.

    On a terminal the line is redrawn every ``interval_s``; otherwise a plain log
    line is printed every ``log_every_s``. Use as a context manager around the run.
    """

    def __init__(self, folder: str, total: int, *, stream: TextIO | None = None, interval_s: float = 0.5,
                 log_every_s: float = 10.0):
        self._folder = folder
        self._total = total
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval = interval_s if self._tty else log_every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._start = time.monotonic()
        self._last = ""

    def counts(self) -> dict[str, int]:
        """Finished videos so far, by status."""
        counts: dict[str, int] = {}
        for name in os.listdir(self._folder):
            with open(os.path.join(self._folder, name), encoding="utf-8") as handle:
                for line in handle:
                    if line.endswith("\n"):
                        counts[line[:-1]] = counts.get(line[:-1], 0) + 1
        return counts

    def line(self) -> str:
        """The progress text for the counts now."""
        counts = self.counts()
        done = sum(counts.values())
        elapsed = time.monotonic() - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * done / self._total:.0f}%)" if self._total else ""
        eta = _duration((self._total - done) / rate) if rate > 0 and self._total >= done else "--"
        return (f"videolabel: {done}/{self._total} videos{share}, {counts.get('failed', 0)} failed, "
                f"{rate:.2f} videos/s, ETA {eta}")

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._show()

    def _show(self, final: bool = False) -> None:
        line = self.line()
        if self._tty:
            self._stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        elif final or line.split(",")[0] != self._last.split(",")[0]:  # a log line when the count moved
            self._stream.write(line + "\n")
        self._last = line
        self._stream.flush()

    def __enter__(self) -> ProgressLine:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._show(final=True)
