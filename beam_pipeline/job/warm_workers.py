"""Local worker processes started warm: forked from a process that has imported what they run.

Beam's ``multi_processing`` mode starts each worker as ``python -m
apache_beam.runners.worker.sdk_worker_main``, which imports Beam and videolabel's
transforms before it can take work: 1.2 s on the 2-core machine of
docs/PERFORMANCE.md, after the launcher has spent as long importing the same. So
``start`` (called by ``videolabel run`` as soon as the config is read) starts one
process that imports them while the launcher does, then forks a worker for each
one Beam's runner asks for. ``job.local_runner.LocalRunner`` gives Beam the
command of a thin client (``python -m beam_pipeline.job.warm_workers connect
SOCKET``) instead of the worker itself: the client hands its environment (Beam's
control and logging addresses, pipeline options, worker id) to the warm process,
which forks; the forked worker runs Beam's worker ``main`` and sends its exit
status back, and the client exits with it, as the worker itself would have.

Lifetimes, so that nothing outlives the run:

* the warm process reads a pipe from the launcher and exits when it closes (the
  run ended, or the launcher was killed);
* a forked worker watches its client's connection and exits when it closes (Beam
  stopped or killed the client; the launcher died);
* a client that finds no warm process (not started yet, failed, stopped) runs
  Beam's worker in its own process, as Beam would have.

``VIDEOLABEL_WARM_WORKERS=0`` in the environment turns this off: Beam starts its own
workers (``benchmarks/startup.py`` measures both).

The warm process imports no TensorFlow (a worker on ``model.runtime: tf`` imports
it after the fork, as before) and is single-threaded in Python when it forks.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from beam_pipeline.job.flags import flag_value, runs_here

__all__ = ["OFF_SWITCH", "WarmWorkers", "current", "start", "stop", "wanted"]

#: What the warm process imports before it forks: Beam's worker and every module the job's DoFns use.
PRELOAD = ("apache_beam.runners.worker.sdk_worker_main", "beam_pipeline.job.pipeline",
           "models.movinet_tflite")
OFF_SWITCH = "VIDEOLABEL_WARM_WORKERS"
STOP_WAIT_S = 10  # the longest a run's end waits for forked workers to exit
_FORKED = b"F"  # sent to the client once its worker is forked
_LENGTH = struct.Struct(">I")


class WarmWorkers:
    """The warm process of this launcher and the command that gets a worker from it."""

    def __init__(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="videolabel-warm-")
        self.socket_path = os.path.join(self._folder, "workers.sock")
        self._proc = subprocess.Popen([sys.executable, "-m", __name__, "serve", self.socket_path],
                                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def command(self) -> str:
        """The worker command line for Beam's ``SubprocessSDKEnvironment`` (run through ``/bin/sh``)."""
        return f"{sys.executable} -m {__name__} connect {self.socket_path}"

    def stop(self, at_once: bool = False) -> None:
        """Ends the warm process. By default it first waits for the workers it forked to exit (up to
        ``STOP_WAIT_S``), so that their CPU time and memory count among this process's children, as
        Beam's own workers' do; ``at_once`` kills it, importing or not (it holds nothing)."""
        if not at_once and self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                pass
        self._proc.kill()
        self._proc.wait()
        if not self._proc.stdin.closed:
            self._proc.stdin.close()
        shutil.rmtree(self._folder, ignore_errors=True)


_current: WarmWorkers | None = None


def wanted(runner: Mapping[str, Any], beam_args: Sequence[str]) -> bool:
    """Whether a run of this ``runner`` section and these Beam flags may start worker processes here: a
    local runner, ``direct_running_mode`` auto or multi_processing, more than one worker and one usable
    core. Read without Beam, so the warm process can start before the launcher imports it."""
    def value(name: str) -> Any:
        flag = flag_value(beam_args, f"--{name}")
        return flag if flag is not None else runner.get(name)

    return (runs_here(value("runner")) and value("direct_running_mode") in ("auto", "multi_processing")
            and str(value("direct_num_workers")) != "1" and len(os.sched_getaffinity(0)) > 1)


def start() -> WarmWorkers | None:
    """Starts this process's warm process (once; later calls return it); None when
    ``VIDEOLABEL_WARM_WORKERS=0`` turns warm workers off."""
    global _current
    if os.environ.get(OFF_SWITCH) == "0":
        return None
    if _current is None:
        _current = WarmWorkers()
        atexit.register(stop, at_once=True)
    return _current


def current() -> WarmWorkers | None:
    """This process's warm process, if ``start`` started one and it has not been stopped."""
    return _current


def stop(at_once: bool = False) -> None:
    """Stops this process's warm process, if any (``WarmWorkers.stop``)."""
    global _current
    if _current is not None:
        _current.stop(at_once)
        _current = None


# --- the warm process -------------------------------------------------------------------------------

def _send(conn: socket.socket, data: bytes) -> None:
    conn.sendall(_LENGTH.pack(len(data)) + data)


def _receive(conn: socket.socket) -> bytes:
    stream = conn.makefile("rb")
    (length,) = _LENGTH.unpack(stream.read(_LENGTH.size))
    return stream.read(length)


def _worker(conn: socket.socket, environ: dict[str, str]) -> None:
    """In the forked child: Beam's worker with the client's environment; exits with its status, or as
    soon as the client's connection closes."""
    import threading

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the warm process's reaper is not the worker's
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.environ.clear()
    os.environ.update(environ)
    tempfile.tempdir = None  # TMPDIR as the client has it

    def watch() -> None:
        with contextlib.suppress(OSError):
            conn.recv(1)
        os._exit(1)  # the client is gone: so is the run

    threading.Thread(target=watch, name="client-watch", daemon=True).start()
    code = 1
    try:
        from apache_beam.runners.worker import sdk_worker_main

        sdk_worker_main.main([])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            conn.sendall(bytes([code & 0xFF]))
        os._exit(code)


def _reap(*_) -> None:
    """SIGCHLD: waits for every forked worker that has exited (its usage then counts as this process's
    children's, and so as the launcher's)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def serve(socket_path: str) -> None:
    """The warm process: listens first (clients queue while it imports), imports ``PRELOAD``, then forks
    a worker per client until stdin closes."""
    import importlib

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    for name in PRELOAD:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, _reap)
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready:  # the launcher closed its pipe, or died: wait for the workers still exiting
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            with contextlib.suppress(ChildProcessError):
                while True:
                    os.waitpid(-1, 0)
            return
        conn, _ = listener.accept()
        environ = json.loads(_receive(conn))
        if os.fork() == 0:
            listener.close()
            conn.sendall(_FORKED)
            _worker(conn, environ)
        conn.close()


# --- the client Beam starts -------------------------------------------------------------------------

def connect(socket_path: str) -> int:
    """Gets a worker forked by the warm process at ``socket_path`` and returns its exit status; without a
    warm process, runs Beam's worker in this process instead."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(socket_path)
        _send(conn, json.dumps(dict(os.environ)).encode("utf-8"))
        forked = conn.recv(1) == _FORKED
    except OSError:
        forked = False
    if not forked:
        conn.close()
        os.execv(sys.executable, [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"])
    status = conn.recv(1)
    return status[0] if status else 1  # no status: the worker died without a word (a signal, a crash)


if __name__ == "__main__":
    command, path = sys.argv[1:3]
    if command == "serve":
        serve(path)
    else:
        sys.exit(connect(path))
