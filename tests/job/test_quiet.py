"""``beam_pipeline.cli.quiet``: TensorFlow's and Beam's known noise is kept off stderr, real output is not."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

import pytest

from beam_pipeline.cli.quiet import has_nvidia_gpu, is_noise
from tests.conftest import REPO

CUINIT = ("2026-12-02 00:32:27.806797: E external/local_xla/xla/stream_executor/cuda/cuda_platform.cc:51] "
          "failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
COST = ('W0000 00:00:1796171795.804155   12449 op_level_cost_estimator.cc:699] Error in PredictCost() for '
        'the op: op: "CropAndResize"')
REAL = "E0000 00:00:1796171795.9 12449 some_kernel.cc:42] a real error: out of memory"


def _child(code: str, quiet: bool = True, **kwargs) -> subprocess.CompletedProcess:
    prelude = "from beam_pipeline.cli.quiet import quiet_stderr; quiet_stderr()\n" if quiet else ""
    env = {k: v for k, v in os.environ.items() if k not in ("VIDEOLABEL_QUIET_STDERR", "PYTHONWARNINGS")}
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, **kwargs)


def test_noise_is_known_lines_only_and_cuda_lines_only_without_a_gpu():
    assert is_noise(CUINIT) and is_noise(COST)
    assert is_noise("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    for converter in ("W0000 00:00:1796192528.485792    4884 tf_tfl_flatbuffer_helpers.cc:364] Ignored "
                      "output_format.", "I0000 00:00:1796192528.943191    4884 mlir_graph_optimization_pass."
                      "cc:437] MLIR V1 optimization pass is not enabled"):
        assert is_noise(converter)
    assert not is_noise("E0000 00:00:1796192528.5 4884 tf_tfl_flatbuffer_helpers.cc:370] Failed to convert "
                        "op FlexConv3D")
    assert not is_noise(CUINIT, gpu=True) and is_noise(COST, gpu=True)  # a GPU machine's cuInit is real
    assert not is_noise(REAL)
    assert not is_noise("videolabel: error: sampling.fps: -1 is invalid")
    assert not is_noise("WARNING beam_pipeline.training.train_job: training ended at chance: "
                        "test accuracy 0.25")


def test_the_filter_drops_noise_keeps_the_rest_in_order_and_survives_a_crash():
    code = f"""
import os, sys
os.write(2, b"first\\n" + {COST!r}.encode() + b"\\n")
print("from python", file=sys.stderr, flush=True)
os.write(2, {CUINIT!r}.encode() + b"\\n" + {REAL!r}.encode() + b"\\nlast before the crash")
os.abort()
"""
    done = _child(code)
    assert done.returncode != 0  # the child crashed; what it wrote before still came through
    expected = ["first", "from python", REAL, "last before the crash"]
    if has_nvidia_gpu():
        expected.insert(2, CUINIT)
    assert done.stderr.splitlines() == expected


def test_status_lines_still_redraw_on_a_terminal():
    main, worker = pty.openpty()
    code = ("import os, sys, time\nassert os.isatty(2)\n"
            "for i in range(3):\n"
            "    sys.stderr.write(f'\\rtrain: epoch {i}'); sys.stderr.flush(); time.sleep(0.1)\n"
            "sys.stderr.write('\\n')\n")
    env = {k: v for k, v in os.environ.items() if k != "VIDEOLABEL_QUIET_STDERR"}
    child = subprocess.Popen([sys.executable, "-c", "from beam_pipeline.cli.quiet import quiet_stderr; "
                              "quiet_stderr()\n" + code], cwd=REPO, env=env, stderr=worker)
    os.close(worker)
    seen, started = b"", time.monotonic()
    while b"epoch 0" not in seen and time.monotonic() - started < 60:
        seen += os.read(main, 4096)
    first = time.monotonic()
    assert child.wait(timeout=60) == 0
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    # Each redraw arrives as it is written (no newline held it back), and \r is not rewritten.
    assert b"\rtrain: epoch 0" in seen and b"\rtrain: epoch 2" in seen and time.monotonic() - first < 30


@pytest.mark.skipif(has_nvidia_gpu(), reason="the CUDA lines are noise only on a machine without a GPU")
def test_tensorflow_and_tf_hub_start_quietly_and_real_warnings_show():
    code = ("import logging, os\nimport tensorflow as tf\nimport tensorflow_hub\n"
            "print((tf.constant(2) + 1).numpy())\n"
            "logging.warning('a real warning')\n"
            f"os.write(2, {REAL!r}.encode() + b'\\n')\n")
    loud, quiet = _child(code, quiet=False), _child(code)
    assert loud.returncode == 0 and quiet.returncode == 0 and quiet.stdout.strip() == "3"
    assert "cuInit" in loud.stderr and "pkg_resources" in loud.stderr  # what the filter is for
    for noise in ("cuInit", "pkg_resources", "absl::InitializeLog", "cuda drivers"):
        assert noise not in quiet.stderr, quiet.stderr
    assert "a real warning" in quiet.stderr and REAL in quiet.stderr
