"""Progress of a local run: workers note each finished video, the launcher shows one updating line.

Local runners (DirectRunner, Prism) run their workers on this machine, possibly
in other processes, so each worker (step ``NoteVideos``) appends one line per finished video (its
status, the time it finished and the core the process is pinned to) to its own
file in a shared folder, and ``ProgressLine`` in the launcher counts them against
the total the job notes there once it has listed the videos (``note_total``). The
times give the steady rate: each worker's videos per second from its first
finished video to its last, summed over workers, so start-up (imports, model
load) is kept apart. On Dataflow the same counts are the ``videolabel`` Beam metrics (``videos_ok``,
``videos_failed``, ...), shown in the job's UI.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, TextIO

import apache_beam as beam

from models.console import StatusLine, duration
from transforms.cores import pinned_core
from transforms.records import VideoRows

__all__ = ["NoteVideos", "ProgressLine", "note_total", "note_video", "read_total", "row_status",
           "steady_rate", "worker_summary"]


_PROCESS_TAG = uuid.uuid4().hex[:8]
_NOTES = ".log"  # the ending of the worker processes' files
_TOTAL = "total"


def note_video(folder: str, status: str) -> None:
    """Records one finished video (``status``, the time now, this process's pinned core or ``-``) in this
    process's file under ``folder``."""
    path = os.path.join(folder, f"{os.getpid()}-{_PROCESS_TAG}{_NOTES}")
    core = pinned_core()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{status} {time.time():.3f} {'-' if core is None else core}\n")


def note_total(folder: str, total: int) -> None:
    """Records the number of videos the run has to do in ``folder`` (atomically: a reader sees the
    whole number or none; a retried bundle writes the same number again)."""
    path = os.path.join(folder, _TOTAL)
    with open(f"{path}.{os.getpid()}-{_PROCESS_TAG}.tmp", "w", encoding="utf-8") as handle:
        handle.write(str(total))
    os.replace(handle.name, path)


def read_total(folder: str) -> int | None:
    """The total ``note_total`` recorded in ``folder``; None until the job has counted the videos."""
    try:
        with open(os.path.join(folder, _TOTAL), encoding="utf-8") as handle:
            return int(handle.read())
    except FileNotFoundError:
        return None


def row_status(rows: VideoRows) -> str:
    """The status of a video's ``videos`` row."""
    return rows.tables["videos"]["status"][0].as_py()


class _NoteFn(beam.DoFn):
    def __init__(self, folder: str, status: Callable[[VideoRows], str]):
        self._folder, self._status = folder, status

    def process(self, rows: VideoRows) -> None:
        note_video(self._folder, self._status(rows))


class NoteVideos(beam.PTransform):
    """``VideoRows`` -> nothing: notes each video (``note_video``) in ``folder`` as its rows are made,
    with its status: by default that of its ``videos`` row (``row_status``)."""

    def __init__(self, folder: str, status: Callable[[VideoRows], str] = row_status):
        super().__init__()
        self._folder, self._status = folder, status

    def expand(self, rows):
        return rows | "Note" >> beam.ParDo(_NoteFn(self._folder, self._status))


class _Note(NamedTuple):
    status: str
    at: float  # epoch seconds
    core: int | None


def _notes(folder: str) -> list[list[_Note]]:
    """Per worker process, its finished videos in the order noted."""
    workers = []
    for name in sorted(n for n in os.listdir(folder) if n.endswith(_NOTES)):
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            # a line still being written has no newline yet
            lines = [line.split() for line in handle if line.endswith("\n")]
        workers.append([_Note(status, float(at), None if core == "-" else int(core))
                        for status, at, core in lines])
    return workers


def worker_summary(folder: str) -> dict:
    """What the worker processes' notes in ``folder`` say of a finished local run.

    Returns:
        ``steady_videos_per_s``: the sum over worker processes of (videos - 1) /
        (last - first finish time), so the time before each worker's first
        video (imports, model load, pipeline start) is left out; None where no
        worker finished two videos apart in time. ``first_done_at``: epoch
        seconds of the first finished video (None without any).
        ``processes``: worker processes that finished videos. ``pinned_cores``:
        the cores they were pinned to, sorted. ``steady_window``: (from, to) epoch
        seconds when every worker had finished its first video and none its last
        (all of them at work; None if that never held), and ``steady_window_videos``
        the videos finished after ``from`` up to ``to``.
    """
    workers = _notes(folder)
    notes = [note for noted in workers for note in noted]
    window = None
    if workers and all(workers):
        since, until = max(noted[0].at for noted in workers), min(noted[-1].at for noted in workers)
        window = (since, until) if until > since else None
    return {"steady_videos_per_s": _steady(workers),
            "first_done_at": min((n.at for n in notes), default=None),
            "processes": sum(1 for noted in workers if noted),
            "pinned_cores": sorted({n.core for n in notes if n.core is not None}),
            "steady_window": window,
            "steady_window_videos": sum(window[0] < n.at <= window[1] for n in notes) if window else None}


def steady_rate(finish_times: Iterable[Sequence[float]]) -> float | None:
    """Videos per second once the workers are up: over workers (each the times it finished a video),
    the sum of (videos - 1) / (last - first time); None where no worker finished two videos apart."""
    rates = [(len(times) - 1) / (max(times) - min(times))
             for times in finish_times if len(times) >= 2 and max(times) > min(times)]
    return sum(rates) if rates else None


def _steady(workers: list[list[_Note]]) -> float | None:
    return steady_rate([note.at for note in noted] for noted in workers)


def _counts(workers: list[list[_Note]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for noted in workers:
        for note in noted:
            counts[note.status] = counts.get(note.status, 0) + 1
    return counts


class ProgressLine:
    """Shows videos done / total, failures, videos per second and an ETA while a run goes on.

    The total is read from ``folder`` (``note_total``); until the job has noted it
    the line shows the videos done alone. On a terminal the line is redrawn every
    ``interval_s``; otherwise a plain log line is printed every ``log_every_s``.
    Use as a context manager around the run.
    """

    def __init__(self, folder: str, *, stream: TextIO | None = None, interval_s: float = 0.5,
                 log_every_s: float = 10.0):
        self._folder = folder
        self._out = StatusLine(stream)
        self._interval = interval_s if self._out.tty else log_every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._start = time.monotonic()
        self._last = ""

    def counts(self) -> dict[str, int]:
        """Finished videos so far, by status."""
        return _counts(_notes(self._folder))

    def line(self) -> str:
        """The progress text for the counts now; the rate is the steady rate of the videos that decoded
        once there is one (a file that fails at open finishes at once, and would make the first rates
        and ETAs fantasies), else videos done over the time so far."""
        notes = _notes(self._folder)
        counts = _counts(notes)
        done = sum(counts.values())
        total = read_total(self._folder)
        elapsed = time.monotonic() - self._start
        decoded = [[note for note in noted if note.status != "failed"] for noted in notes]
        rate = _steady(decoded) or (done / elapsed if elapsed > 0 else 0.0)
        if total is None:
            done_text, eta = f"{done} videos", "--"
        else:
            done_text = f"{done}/{total} videos" + (f" ({100 * done / total:.0f}%)" if total else "")
            eta = duration((total - done) / rate) if rate > 0 and total >= done else "--"
        return (f"videolabel: {done_text}, {counts.get('failed', 0)} failed, "
                f"{rate:.2f} videos/s, ETA {eta}")

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._show()

    def _show(self, final: bool = False) -> None:
        line = self.line()
        # off a terminal, a log line only when the count moved
        if self._out.tty or final or line.split(",")[0] != self._last.split(",")[0]:
            self._out.show(line, final)
        self._last = line

    def __enter__(self) -> ProgressLine:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._show(final=True)
