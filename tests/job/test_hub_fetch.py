"""A TF Hub model is fetched once, on the machine that launches the job, and reaches the workers through
the storage layer; one that cannot be fetched stops the run at start in one line. TF Hub itself is
played by a loopback HTTP server that serves a SavedModel as tensorflow_hub's compressed format and
records every request."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import tarfile
import threading
from pathlib import Path

import pytest

from beam_pipeline.cli import main
from beam_pipeline.config import load_config
from beam_pipeline.job.launcher import run_job
from tests.conftest import BUCKET, REPO, free_port, upload
from tests.job.test_dataflow import DATAFLOW_FLAGS
from tests.media import good


class _Hub(http.server.BaseHTTPRequestHandler):
    """Serves ``archive`` (a tar.gz SavedModel) at any path, recording each request."""

    archive = b""
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - the handler's name in http.server
        self.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(len(self.archive)))
        self.end_headers()
        self.wfile.write(self.archive)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hub(a0_stream):
    """The URL of a0_stream on a loopback 'TF Hub'; the list of requests it got."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(Path(a0_stream).rglob("*")):
            tar.add(path, arcname=str(path.relative_to(a0_stream)), recursive=False)
    _Hub.archive = buffer.getvalue()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/tensorflow/movinet/a0/stream/kinetics-600/3"
    yield url, _Hub.requests
    server.shutdown()


def _argv(video: Path, out: Path, model: str) -> list[str]:
    return ["run", "--config", str(REPO / "configs" / "local.yaml"), "--input", str(video), "--output",
            str(out), "--model", model, "--set", "sampling.imgz=64", "--set", "sampling.fps=2",
            "--direct_running_mode=in_memory", "--direct_num_workers=1"]


def test_a_hub_model_is_fetched_once_by_the_launcher_and_the_workers_load_the_copy(hub, tmp_path):
    url, requests = hub
    video = good(tmp_path / "clip.mp4", n=20)
    assert main(_argv(video, tmp_path / "a", url)) == 0
    assert main(_argv(video, tmp_path / "b", url)) == 0
    assert len(requests) == 1  # one download, on the launcher; the second run and the workers read the cache
    model = json.loads((tmp_path / "a" / "_run.json").read_text())["model"]
    assert model["handle"] == url and model["runtime"] == "tf"
    assert Path(model["served"], "saved_model.pb").is_file() and "tfhub" in model["served"]


def test_a_hub_model_that_cannot_be_fetched_stops_the_run_at_start_in_one_line(tmp_path, capsys):
    video = good(tmp_path / "clip.mp4", n=10)
    unreachable = f"http://127.0.0.1:{free_port()}/tensorflow/movinet/a0/stream/kinetics-600/3"
    assert main(_argv(video, tmp_path / "out", unreachable)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"videolabel: error: --model: cannot fetch {unreachable}: ")
    assert "Connection refused" in err[-1] and len(err) <= 2  # the note that it fetches, then the error
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_dataflow_job_stages_the_fetched_model_for_its_workers(hub, gcs, tmp_path):
    from apache_beam.io.filesystems import FileSystems

    url, _ = hub
    upload(good(tmp_path / "clip.mp4", n=10), f"gs://{BUCKET}/hub-in/clip.mp4")
    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["gs://{BUCKET}/hub-in/*.mp4"]', f'output.path="gs://{BUCKET}/hub-out"',
        f'model.handle="{url}"', "sampling.imgz=64"])
    summary = run_job(cfg, ["--runner=DataflowRunner", "--region=europe-west4", *DATAFLOW_FLAGS])
    assert summary["dry_run"]
    # the launcher's copy (the cache folder tensorflow_hub names by the handle's SHA-1), file for file
    local = Path(os.environ["VIDEOLABEL_MODEL_CACHE"], "tfhub", hashlib.sha1(url.encode()).hexdigest())
    remote = f"gs://{BUCKET}/tmp/videolabel-models/{local.name}"
    files = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert Path("saved_model.pb") in files
    for name in files:
        with FileSystems.open(f"{remote}/{name}") as handle:
            assert handle.read() == (local / name).read_bytes(), name
