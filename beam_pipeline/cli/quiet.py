"""Keeps the known noise of TensorFlow, XLA, absl and Beam off stderr; everything else passes.

TensorFlow's CUDA build logs ``failed call to cuInit`` at ERROR level on every machine
without a GPU, in every process that loads it (each Beam worker), and absl-style lines
(``W0000 ... op_level_cost_estimator.cc ... Error in PredictCost()``) ignore
``TF_CPP_MIN_LOG_LEVEL``. Native code writes them straight to file descriptor 2, so no
Python setting reaches them. ``quiet_stderr`` puts a small filter process between fd 2 of
this process (inherited by every worker and child it starts) and the real stderr:

* it drops only the lines of ``NOISE`` (the CUDA ones only where no NVIDIA GPU exists, so a
  GPU machine still shows why its GPU failed); every other line, real warnings and
  errors included, is copied through as it comes;
* a terminal stays a terminal (a pseudo-terminal in raw mode), so status lines still redraw
  in place; a partial line is held only while it could be the start of a noise line;
* the filter is its own process: what this process wrote before a crash (a segfault, a
  Python fatal error) still reaches the real stderr.

Python's warnings of ``pkg_resources`` deprecation (TF Hub imports it) are ignored in this
process and, through ``PYTHONWARNINGS``, in its children.

Run as ``python -m beam_pipeline.cli.quiet IN_FD OUT_FD GPU`` it is the filter itself.
"""

from __future__ import annotations

import atexit
import os
import re
import select
import subprocess
import sys
import warnings

__all__ = ["CUDA_NOISE", "NOISE", "has_nvidia_gpu", "is_noise", "quiet_stderr"]

#: Lines that say nothing wrong: XLA's cost model, absl's preamble, the once-only XLA notice,
#: duplicate CUDA plugin registration, Beam's memory warning where it failed to import torch,
#: LiteRT's note that it uses its CPU delegate (once per interpreter), and the LiteRT converter's
#: notes on the options it ignores and the MLIR pass it does not run.
NOISE = (
    r"op_level_cost_estimator\.cc:\d+\] Error in PredictCost\(\)",
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"Compiled cluster using XLA!  This line is logged at most once",
    r"Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register factory for plugin",
    r"computation_placer\.cc:\d+\] .*already registered",
    r"Resource module is not available for current platform, memory usage cannot be fetched",
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",
    r"tf_tfl_flatbuffer_helpers\.cc:\d+\] Ignored (output_format|drop_control_dependency)\.$",
    r"mlir_graph_optimization_pass\.cc:\d+\] MLIR V1 optimization pass is not enabled$",
)

#: Lines that are noise only where no NVIDIA GPU exists (on a GPU machine they explain a failure).
CUDA_NOISE = (
    r"failed call to cuInit",
    r"Could not find cuda drivers on your machine, GPU will not be used",
)

_WARNINGS = "ignore:pkg_resources is deprecated:UserWarning"
# A partial line is held back (until its newline) only when it starts like a native or Python log line.
_LOG_START = re.compile(rb"^(\d{4}-\d\d-\d\d |[IWEF]\d{4} |WARNING[: ]|ERROR[: ])")
_HOLD_S = 0.5


def has_nvidia_gpu() -> bool:
    """Whether an NVIDIA driver is loaded on this machine (its device files or proc entry exist)."""
    return os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidia0")


def _pattern(gpu: bool) -> re.Pattern[bytes]:
    return re.compile("|".join(NOISE if gpu else NOISE + CUDA_NOISE).encode())


def is_noise(line: str, gpu: bool = False) -> bool:
    """Whether ``quiet_stderr`` drops ``line`` on a machine with (``gpu``) or without an NVIDIA GPU."""
    return bool(_pattern(gpu).search(line.encode()))


def _filter(source: int, target: int, gpu: bool) -> None:
    """Copies ``source`` to ``target`` without the noise lines, until ``source`` ends."""
    noise, pending = _pattern(gpu), b""
    while True:
        ready, _, _ = select.select([source], [], [], _HOLD_S if pending else None)
        chunk = b""
        if ready:
            try:
                chunk = os.read(source, 65536)
            except OSError:  # a pseudo-terminal whose last writer closed
                chunk = b""
            if not chunk:
                break
        data = pending + chunk
        lines = data.split(b"\n")
        pending = lines.pop()
        out = b"".join(line + b"\n" for line in lines if not noise.search(line))
        if pending and (not ready or not _LOG_START.match(pending) or b"\r" in pending):
            out, pending = out + pending, b""
        if out:
            os.write(target, out)
    if pending and not noise.search(pending):
        os.write(target, pending)


def quiet_stderr() -> None:
    """Filters this process's fd 2 (and its children's) through the noise filter; idempotent.

    Safe to skip: where a filter process cannot start, stderr is left as it is.
    """
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), _WARNINGS]))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("VIDEOLABEL_QUIET_STDERR"):  # an ancestor's filter already has fd 2
        return
    tty = os.isatty(2)
    if tty:
        import pty
        import tty as termios_tty

        read_end, write_end = pty.openpty()
        termios_tty.setraw(write_end)
    else:
        read_end, write_end = os.pipe()
    real = os.dup(2)
    try:
        command = [sys.executable, "-m", "beam_pipeline.cli.quiet", str(read_end), str(real),
                   str(int(has_nvidia_gpu()))]
        child = subprocess.Popen(command, pass_fds=(read_end, real), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=real)
    except OSError:
        for fd in (read_end, write_end, real):
            os.close(fd)
        return
    os.close(read_end)
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    os.environ["VIDEOLABEL_QUIET_STDERR"] = "1"

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # this process's end closes; children still writing keep the filter going
        try:
            child.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass

    atexit.register(restore)


if __name__ == "__main__":
    _filter(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1")
