"""Decoding in a child process that may die, so that no video can take its worker down.

FFmpeg and PyAV are native code: a file that makes them segfault or abort kills
the process they run in, and a native call that never returns cannot be
interrupted from Python. On Dataflow such a file kills the worker, its bundle is
retried on other workers, each retry kills that worker too, and the job fails.
So every worker thread opens, probes, decodes, samples and converts its videos
in a child process of its own (``python -m transforms.decoder_process``):

* the child is kept alive across videos and started again when it dies;
* it hands the sampled frames (uint8 RGB ``[imgz, imgz, 3]``) back a chunk at a
  time through a shared-memory buffer (a ``memfd`` both processes map): it copies
  a chunk's pixels in, sends a small pickled header (each frame's index, time,
  shape; the report's state), and waits until the parent has copied them out and
  said so, so memory holds one chunk on each side whatever the video's length.
  Pickling the arrays through the pipe cost about 8 ms of a 50-frame video's core
  time in copies and page faults, and raw bytes through the pipe 3.5 ms
  (docs/PERFORMANCE.md);
* the parent enforces ``decode_timeout_s`` from outside, on the time it waits for
  the child (not the time the model takes between chunks), and the child runs
  under an address-space cap of ``decoder_memory_mb``;
* a child that dies, runs past the timeout or hits the cap becomes that video's
  ``decode`` error (``DecoderCrashed``, ``DecodeTimeout`` or ``DecoderOutOfMemory``),
  with the frames it sent before kept (status ``partial``); the next video gets a
  fresh child.

Inside the child one boundary turns any exception raised for a video into that
video's error, so a bug met only on an odd file is a row, not a crash.

The child imports PyAV and numpy only (Beam too when it reads gs://), never
TensorFlow, and inherits the worker's pinned core.
"""

from __future__ import annotations

import atexit
import importlib
import mmap
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

import numpy as np

from transforms.decoding import DecodeReport, SampledFrame, probe_video
from transforms.records import ErrorStage, SamplingSpec, VideoError

__all__ = [
    "CRASHED",
    "OUT_OF_MEMORY",
    "TIMEOUT",
    "DecoderProcess",
    "decode_isolated",
    "probe_isolated",
]

CRASHED = "DecoderCrashed"
TIMEOUT = "DecodeTimeout"
OUT_OF_MEMORY = "DecoderOutOfMemory"

CHUNK_FRAMES = 8  # frames per message: about 0.7 MB at 172x172
_POLL_S = 0.5  # how often a waiting parent checks that the child still lives
_ENOMEM = 12


def _resolve(target: str) -> Callable[..., Iterator[SampledFrame]]:
    """``"module:function"`` -> the function."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _state(report: DecodeReport, decode_cpu_s: float, send_cpu_s: float) -> tuple:
    """What a reply tells the parent: the report's metadata, count and error, and this request's CPU
    seconds so far in the decoder and in sending (pickling, writing to the pipe)."""
    return report.meta, report.frames_decoded, report.error, decode_cpu_s, send_cpu_s


def _error_of(exc: BaseException, spec: SamplingSpec, report: DecodeReport) -> VideoError:
    """Any exception raised for a video as its error, at the stage the video had reached."""
    if isinstance(exc, MemoryError) or getattr(exc, "errno", None) == _ENOMEM:
        return VideoError(ErrorStage.DECODE, OUT_OF_MEMORY,
                          f"decoding needed more than decoder_memory_mb={spec.decoder_memory_mb} "
                          f"({type(exc).__name__})")
    return VideoError.of(ErrorStage.PROBE if report.meta is None else ErrorStage.DECODE, exc)


def _anonymous_file() -> int:
    """A file descriptor for the frames buffer: a ``memfd`` (Linux), else an unlinked temporary file."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("videolabel-frames")
    with tempfile.TemporaryFile() as handle:
        return os.dup(handle.fileno())


class _SharedFrames:
    """The buffer a chunk's pixels cross in: a ``memfd`` that the parent creates and the child grows to
    the largest chunk it has sent (``ftruncate``); each side maps it whole, again when it has grown."""

    def __init__(self, fd: int):
        self.fd = fd
        self._map: mmap.mmap | None = None

    def view(self, nbytes: int, grow: bool) -> memoryview:
        """The first ``nbytes`` of the buffer; ``grow``: the child's side, which makes the file that big."""
        if self._map is None or len(self._map) < nbytes:
            if grow and os.fstat(self.fd).st_size < nbytes:
                os.ftruncate(self.fd, nbytes)
            if self._map is not None:
                self._map.close()
            self._map = mmap.mmap(self.fd, os.fstat(self.fd).st_size)
        return memoryview(self._map)[:nbytes]

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        os.close(self.fd)


def _send_frames(replies: Connection, acks: Connection, shared: _SharedFrames, tag: str,
                 chunk: list[SampledFrame], state: tuple) -> None:
    """One reply: the chunk's pixels copied into ``shared``, then ``(tag, [(index, time_s, shape, dtype)
    of each frame], state)`` pickled; with frames, it waits for the parent's ack (it has copied them)."""
    images = [np.ascontiguousarray(frame.image) for frame in chunk]
    if images:
        view = shared.view(sum(image.nbytes for image in images), grow=True)
        offset = 0
        for image in images:
            view[offset:offset + image.nbytes] = image.reshape(-1).data
            offset += image.nbytes
        view.release()
    replies.send((tag, [(frame.index, frame.time_s, image.shape, image.dtype.str)
                        for frame, image in zip(chunk, images)], state))
    if images:
        acks.recv_bytes()


def _receive_frames(replies: Connection, acks: Connection, shared: _SharedFrames) -> tuple:
    """The reply ``_send_frames`` sent: ``(tag, frames, state)``, the frames' pixels copied out of
    ``shared`` into arrays of their own, then acknowledged. Raises EOFError if the child is lost."""
    tag, heads, state = replies.recv()
    frames = []
    if heads:
        sizes = [int(np.prod(shape)) * np.dtype(dtype).itemsize for _, _, shape, dtype in heads]
        view = shared.view(sum(sizes), grow=False)
        offset = 0
        for (index, time_s, shape, dtype), size in zip(heads, sizes):
            image = np.frombuffer(view[offset:offset + size], dtype).reshape(shape).copy()
            frames.append(SampledFrame(index, time_s, image))
            offset += size
        view.release()
        try:
            acks.send_bytes(b"")
        except OSError:  # the child died since: the next reply says how
            pass
    return tag, frames, state


def _serve_one(request: tuple, replies: Connection, acks: Connection, shared: _SharedFrames) -> None:
    """Runs one request: frames in chunks, the last chunk with ``done``, each with the report's state.

    A decode request carries the video's probe (``VideoMeta``, or None), which the decoder reuses.
    CPU time (``time.process_time``: the worker and its child share a pinned core, so wall time would
    count the other's turns) is split between the decoder and sending; the last reply's own sending
    is not in it.
    """
    kind, uri, spec, meta = request
    report = DecodeReport()
    report.meta = meta
    chunk: list[SampledFrame] = []
    started = time.process_time()
    sending = 0.0
    try:
        if kind == "probe":
            probe_video(uri, spec, report)
        else:
            for frame in _resolve(spec.decoder)(uri, spec, report):
                chunk.append(frame)
                if len(chunk) == CHUNK_FRAMES:
                    mark = time.process_time()
                    _send_frames(replies, acks, shared, "frames", chunk,
                                 _state(report, mark - started - sending, sending))
                    sending += time.process_time() - mark
                    chunk = []
    except Exception as exc:  # the per-video boundary: every error for this video is its row
        error = _error_of(exc, spec, report)
        if error.type == OUT_OF_MEMORY:
            chunk = []  # free what there is, and say so even after an earlier, milder error
            report.error = error
        else:
            report.fail(error.stage, error.type, error.message)
    _send_frames(replies, acks, shared, "done", chunk,
                 _state(report, time.process_time() - started - sending, sending))


def _child_main(request_fd: int, reply_fd: int, frames_fd: int, memory_mb: int) -> None:
    """The child's loop: one request at a time until the parent closes the pipe. Requests and the acks
    of replies with frames come in on ``request_fd``; frames go out through ``frames_fd``."""
    try:  # die with the parent, even one killed with SIGKILL
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    cap = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    requests = Connection(request_fd, writable=False)
    replies = Connection(reply_fd, readable=False)
    shared = _SharedFrames(frames_fd)
    while True:
        try:
            request = requests.recv()
        except EOFError:
            return
        _serve_one(request, replies, requests, shared)


class _Stopped(Exception):
    """The child was lost mid-request; ``error_type`` and the message say how."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


_children: weakref.WeakSet = weakref.WeakSet()


class DecoderProcess:
    """One child decoder process, started on first use and again after it dies.

    Not thread-safe: each worker thread has its own (``decode_isolated`` and
    ``probe_isolated`` pick it).

    Args:
        memory_mb: the child's address-space cap (``RLIMIT_AS``), in MiB.
    """

    def __init__(self, memory_mb: int):
        self.memory_mb = memory_mb
        self._proc: subprocess.Popen | None = None
        self._busy = False
        self.starts = 0
        _children.add(self)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _start(self) -> None:
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        frames_fd = _anonymous_file()
        self._environ = dict(os.environ)
        env = dict(self._environ)
        env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")])
        # glibc reserves 64 MiB of address space per malloc arena, up to 8 per core: on a large
        # worker that alone would reach the RLIMIT_AS cap, so the child keeps to two
        env.setdefault("MALLOC_ARENA_MAX", "2")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "transforms.decoder_process", str(request_r), str(reply_w),
             str(frames_fd), str(self.memory_mb)],
            pass_fds=(request_r, reply_w, frames_fd), stdin=subprocess.DEVNULL, env=env)
        os.close(request_r)
        os.close(reply_w)
        self._requests = Connection(request_w, readable=False)
        self._replies = Connection(reply_r, writable=False)
        self._shared = _SharedFrames(frames_fd)
        self.starts += 1

    def stop(self) -> None:
        """Kills the child (if any); the next request starts a fresh one."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._requests.close()
        self._replies.close()
        self._shared.close()
        self._proc = None
        self._busy = False

    def _exit_reason(self) -> str:
        code = self._proc.wait()
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"

    def _send(self, request: tuple) -> None:
        """Sends ``request`` to a live child: a fresh one after an abandoned request, or when the
        last one died between requests."""
        if self._busy:  # a request abandoned half-way: its replies are still coming
            self.stop()
        for _ in range(2):
            # a child that died, or that runs with another environment than the worker's now
            # (STORAGE_EMULATOR_HOST, credentials), is replaced
            if self._proc is not None and (self._proc.poll() is not None or self._environ != os.environ):
                self.stop()
            if self._proc is None:
                self._start()
            try:
                self._requests.send(request)
                self._busy = True
                return
            except OSError:  # the child died before reading it
                self.stop()
        raise _Stopped(CRASHED, "decoder process could not be started")

    def _receive(self, budget_s: float) -> tuple:
        """(the next reply, this thread's CPU seconds reading it) within ``budget_s`` seconds of
        waiting, or ``_Stopped``."""
        deadline = time.monotonic() + budget_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise _Stopped(TIMEOUT, "decoding ran past decode_timeout_s; its process was stopped")
            if self._replies.poll(min(remaining, _POLL_S)):
                try:
                    start = time.thread_time()
                    reply = _receive_frames(self._replies, self._requests, self._shared)
                    return reply, time.thread_time() - start
                except (EOFError, OSError):
                    reason = self._exit_reason()
                    self.stop()
                    raise _Stopped(CRASHED, f"decoder process {reason}") from None

    def run(self, kind: str, uri: str, spec: SamplingSpec, report: DecodeReport) -> Iterator[SampledFrame]:
        """Sends one request (``probe`` or ``decode``) and yields the frames the child sends back.

        A decode request takes ``report.meta`` (the video's probe, when known) with it, so the
        decoder does not probe again.
        ``report`` gets the child's metadata, counts and error as they arrive; ``decode_s`` the
        child's CPU seconds in the decoder, and ``transfer_s`` the CPU seconds the frames took to
        cross (the child's sending, this thread's receiving). ``decode_timeout_s`` bounds the
        time spent waiting for the child (not the consumer's time between frames). A lost child
        becomes ``report.error`` (stage ``decode``, or ``probe`` before any metadata), after the
        frames it sent.
        """
        waited = decoding = sending = receiving = 0.0
        sampled = 0
        try:
            self._send((kind, uri, spec, report.meta))
            while True:
                start = time.perf_counter()
                try:
                    (tag, frames, (meta, decoded, error, decoding, sending)), cpu_s = self._receive(
                        spec.decode_timeout_s - waited)
                finally:
                    waited += time.perf_counter() - start
                receiving += cpu_s
                report.meta, report.frames_decoded, report.error = meta, decoded, error
                if tag == "done":
                    self._busy = False
                    if error is not None and error.type == OUT_OF_MEMORY:
                        self.stop()  # the next video gets a fresh child, whatever is left allocated
                for frame in frames:
                    sampled += 1
                    report.frames_sampled = sampled
                    yield frame
                if tag == "done":
                    return
        except _Stopped as stopped:
            stage = ErrorStage.PROBE if kind == "probe" else ErrorStage.DECODE
            where = f" after {sampled} sampled frames" if kind == "decode" else " while probing"
            report.error = VideoError(stage, stopped.error_type, f"{stopped}{where}")
        finally:
            report.decode_s += decoding
            report.transfer_s += sending + receiving


_local = threading.local()


def _process(memory_mb: int) -> DecoderProcess:
    """This thread's decoder process for ``memory_mb``."""
    child = getattr(_local, "child", None)
    if child is None or child.memory_mb != memory_mb:
        if child is not None:
            child.stop()
        child = _local.child = DecoderProcess(memory_mb)
    return child


def decode_isolated(uri: str, spec: SamplingSpec, report: DecodeReport) -> Iterator[SampledFrame]:
    """``spec.decoder``'s frames of ``uri`` (default ``sample_frames``), decoded in this thread's child
    from the probe in ``report.meta`` (probed again there when None).

    Never raises for anything the video does: its problems, a crash, a hang or a
    runaway allocation included, land in ``report.error``; frames sent before
    them are kept.
    """
    return _process(spec.decoder_memory_mb).run("decode", uri, spec, report)


def probe_isolated(uri: str, spec: SamplingSpec, report: DecodeReport) -> None:
    """``probe_video`` (open, probe, guards) of ``uri`` in this thread's child; fills ``report``."""
    for _ in _process(spec.decoder_memory_mb).run("probe", uri, spec, report):
        pass


@atexit.register
def _stop_all() -> None:
    for child in list(_children):
        child.stop()


def main(argv: list[str] | None = None) -> None:
    request_fd, reply_fd, frames_fd, memory_mb = (int(a) for a in (argv or sys.argv[1:]))
    _child_main(request_fd, reply_fd, frames_fd, memory_mb)


if __name__ == "__main__":
    main()
