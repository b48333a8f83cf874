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

    @classmethod
    def serving(cls, saved_model: str, path: str):
        """A loopback server of its own for ``saved_model``: (its server, the model's URL, the requests)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for file in sorted(Path(saved_model).rglob("*")):
                tar.add(file, arcname=str(file.relative_to(saved_model)), recursive=False)
        handler = type("Hub", (cls,), {"archive": buffer.getvalue(), "requests": []})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}{path}", handler.requests

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
    server, url, requests = _Hub.serving(a0_stream, "/tensorflow/movinet/a0/stream/kinetics-600/3")
    yield url, requests
    server.shutdown()


@pytest.fixture(scope="module")
def pose_hub(tmp_path_factory):
    """A MoveNet-shaped SavedModel (int32 [1,192,192,3] -> float32 [1,1,17,3]) on a loopback 'TF Hub'
    of its own, and a pose LSTM over 4 frames in a ``train``-like folder: (URL, requests, LSTM folder)."""
    import tensorflow as tf

    from models.labels import write_labels
    from models.lstm import build_pose_lstm
    from models.training import save_features_model

    class Pose(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 192, 192, 3], tf.int32)])
        def serve(self, image):
            level = tf.reduce_mean(tf.cast(image, tf.float32)) / 255.0
            return {"output_0": tf.fill([1, 1, 17, 3], level)}

    folder = tmp_path_factory.mktemp("pose_hub")
    pose = Pose()
    tf.saved_model.save(pose, str(folder / "movenet"), signatures={"serving_default": pose.serve})
    save_features_model(build_pose_lstm(2, n_frames=4), str(folder / "lstm" / "saved_model"))
    write_labels(str(folder / "lstm" / "labels.txt"), ["a", "b"])
    server, url, requests = _Hub.serving(str(folder / "movenet"), "/google/movenet/singlepose/lightning/4")
    yield url, requests, str(folder / "lstm")
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


def _pose_argv(video: Path, out: Path, lstm: str, pose: str) -> list[str]:
    return [*_argv(video, out, lstm), "--set", "model.kind=lstm", "--set", f"pose.handle={pose}",
            "--set", "sampling.n_frames=4"]


@pytest.mark.slow  # saves a SavedModel and runs the pose LSTM on TensorFlow
def test_a_hub_pose_model_is_fetched_once_by_the_launcher_and_the_workers_load_the_copy(pose_hub, tmp_path):
    from beam_pipeline.job.pipeline import make_handler
    from beam_pipeline.job.serving import ServedModel

    url, requests, lstm = pose_hub
    video = good(tmp_path / "clip.mp4", n=20)
    assert main(_pose_argv(video, tmp_path / "a", lstm, url)) == 0
    assert main(_pose_argv(video, tmp_path / "b", lstm, url)) == 0
    assert len(requests) == 1  # one download, on the launcher
    run = json.loads((tmp_path / "a" / "_run.json").read_text())
    local = Path(os.environ["VIDEOLABEL_MODEL_CACHE"], "tfhub", hashlib.sha1(url.encode()).hexdigest())
    assert run["model"]["pose"] == str(local) and (local / "saved_model.pb").is_file()
    assert run["counts"]["videos_ok"] == 1 and run["config"]["pose"]["handle"] == url
    cfg = load_config(None, [f"pose.handle={url}", "model.kind=lstm"])
    handler = make_handler(cfg, ServedModel.of(cfg, lstm, pose=str(local)), 2)
    assert handler.model.pose_handle == str(local)  # what the workers load: the copy


def test_a_hub_pose_model_that_cannot_be_fetched_stops_the_run_at_start_in_one_line(tmp_path, capsys):
    video = good(tmp_path / "clip.mp4", n=10)
    unreachable = f"http://127.0.0.1:{free_port()}/google/movenet/singlepose/lightning/4"
    lstm = tmp_path / "lstm"
    (lstm / "saved_model").mkdir(parents=True)
    (lstm / "saved_model" / "saved_model.pb").write_bytes(b"")  # checked to exist; never loaded
    (lstm / "labels.txt").write_text("a\nb\n")
    assert main(_pose_argv(video, tmp_path / "out", str(lstm), unreachable)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"videolabel: error: pose.handle: cannot fetch {unreachable}: ")
    assert "use a MoveNet .tflite file or SavedModel folder" in err[-1]
    assert not (tmp_path / "out").exists()
