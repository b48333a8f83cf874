"""A local run makes no network call of its own and keeps its loopback traffic off proxies: behind a proxy
that accepts connections and never answers, a two-worker run finishes and the proxy sees nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

from tests.conftest import REPO
from tests.media import good


class _SilentProxy:
    """Accepts connections on loopback and never answers; records each one."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[tuple[str, int]] = []
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.server.accept()
            except OSError:
                return
            self.accepted.append(peer)
            self._held.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self._held:
            conn.close()


def test_a_two_worker_run_behind_a_silent_proxy_finishes_without_touching_it(tmp_path, a0_litert):
    proxy = _SilentProxy()
    env = {**os.environ, "NO_PROXY": "", "no_proxy": ""}
    env.update({name: proxy.url for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")})
    cmd = [sys.executable, "-m", "beam_pipeline", "run", "--config", str(REPO / "configs" / "local.yaml"),
           "--input", str(good(tmp_path / "clip.mp4", n=20)), "--output", str(tmp_path / "out"),
           "--model", a0_litert, "--set", "sampling.imgz=64",
           "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    finally:
        proxy.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok 1, partial 0, failed 0" in proc.stdout
    assert proxy.accepted == []  # no PrismRunner download, no worker dialling localhost through it
    throughput = json.loads((tmp_path / "out" / "_run.json").read_text())["throughput"]
    # the worker that labelled the video: a process of its own (forked warm), pinned to a core of its own
    assert (throughput["running_mode"], throughput["running_mode_reason"]) == ("multi_processing", "set")
    assert throughput["worker_processes"] == 1 and len(throughput["pinned_cores"]) == 1
