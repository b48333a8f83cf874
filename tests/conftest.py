"""Shared fixtures: locally exported MoViNet-A0 models and generated videos. No network."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from beam_pipeline.demo.synthetic import motion_frames, write_video
from transforms.decoding import SampledFrame

_CACHE = pytest.StashKey[str]()
_KEEP = pytest.StashKey[bool]()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
#: Beam arguments for a small run in this process: one worker, no pickling across processes.
IN_MEMORY = ["--runner", "DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]

#: Fixtures that export, convert or fit a model (or start a browser): a test that uses one is ``slow``.
MODEL_FIXTURES = frozenset({
    "a0_stream", "a0_litert", "a0_base", "tflite_models", "tf_stream", "loaded", "per_frame",
    "last_only", "demo_run", "motion_model", "labelled", "api_folder", "readme_run", "run_output", "app_url",
    "pose_lstm", "tiny_models", "browser"})


#: Fixtures that take minutes (a fit; a Flink cluster and its runs): their modules start first under
#: pytest-xdist.
LONG_FIXTURES = frozenset({"demo_run", "motion_model", "readme_run", "flink_cluster"})


def pytest_configure(config) -> None:
    """A model cache of this test session's own (``VIDEOLABEL_MODEL_CACHE``), which the workers and
    children it starts inherit: no test reads a conversion another session left behind. Under
    pytest-xdist (``make test``: ``-n 2``) the controller makes it and every test worker shares it, so
    the models below are built once for the whole session (``built_once``); each test worker has a
    temp folder of its own (``TMPDIR``), so that the runs of two workers are two machines' runs (each
    pins its worker processes to the cores, ``transforms.cores``). ``VIDEOLABEL_TEST_MODEL_CACHE`` names
    a folder to use instead, kept afterwards: sessions that repeat tests then share their models."""
    worker = getattr(config, "workerinput", None)
    if worker is None:
        kept = os.environ.get("VIDEOLABEL_TEST_MODEL_CACHE")  # to repeat tests on the same models: kept
        cache = kept or tempfile.mkdtemp(prefix="videolabel-test-models-")
        config.stash[_CACHE] = cache
        config.stash[_KEEP] = bool(kept)
    else:
        cache = worker["videolabel_model_cache"]
        temp = os.path.join(cache, "tmp", worker["workerid"])
        os.makedirs(temp, exist_ok=True)
        os.environ["TMPDIR"] = temp
        tempfile.tempdir = None  # tempfile reads TMPDIR again
    os.environ["VIDEOLABEL_MODEL_CACHE"] = cache


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist, on the controller: hands each test worker the session's model cache."""
    node.workerinput["videolabel_model_cache"] = node.config.stash[_CACHE]


def pytest_unconfigure(config) -> None:
    if not config.stash.get(_KEEP, True):
        shutil.rmtree(config.stash.get(_CACHE, ""), ignore_errors=True)


def pytest_collection_modifyitems(items) -> None:
    """Marks ``slow`` every test that uses a model fixture, and ``browser`` (and ``slow``) the browser's.

    For pytest-xdist's ``--dist loadscope`` (``make test``), which hands each worker whole modules in
    this order: the modules of the longest fixtures first (``LONG_FIXTURES``: the first module that
    uses the demo's model, and those that fit a model of their own), so that both workers start on
    one; the other modules that use the demo's model last, by when it is built (``built_once``).
    """
    demo_modules = list(dict.fromkeys(item.module.__name__ for item in items
                                      if "demo_run" in getattr(item, "fixturenames", ())))
    long_modules = {item.module.__name__ for item in items
                    if LONG_FIXTURES & set(getattr(item, "fixturenames", ()))} - set(demo_modules[1:])
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & MODEL_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if "browser" in used:
            item.add_marker(pytest.mark.browser)

    def place(item) -> int:
        module = item.module.__name__
        return 0 if module in long_modules else 2 if module in demo_modules else 1

    items.sort(key=place)  # stable: the order within each place is kept


def built_once(name: str, build) -> Path:
    """``SESSION_CACHE/fixtures/name``, made by ``build(folder)`` (an empty folder it fills) in the first
    process of the test session that asks; the others wait for it and share it."""
    from models.storage import locked

    root = Path(os.environ["VIDEOLABEL_MODEL_CACHE"]) / "fixtures"
    root.mkdir(parents=True, exist_ok=True)
    folder, done = root / name, root / f"{name}.built"
    with locked(str(root / f".{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def shared_fixture(*parts: str) -> Path:
    """A file under ../shared/fixtures, or a skip saying why it is missing."""
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared fixtures folder is not beside this checkout)")
    return path


def random_frames(n: int, side: int = 64, seed: int = 0) -> list[SampledFrame]:
    """``n`` sampled frames of uint8 noise [side, side, 3], 0.2 s apart."""
    rng = np.random.default_rng(seed)
    return [SampledFrame(i, i / 5, rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="session")
def a0_stream(tmp_path_factory) -> str:
    """MoViNet-A0 stream SavedModel, random weights, 600 Kinetics classes."""
    from models.movinet_export import export_movinet

    return str(built_once("a0_stream", lambda folder: export_movinet(str(folder / "model"), model_id="a0",
                                                                     mode="stream")) / "model")


@pytest.fixture(scope="session")
def a0_litert(a0_stream) -> str:
    """``a0_stream`` converted to LiteRT for 64x64 frames, into the model cache that runs read."""
    from models.movinet_convert import litert_model

    return litert_model(a0_stream, 64, "a0", 600)


@pytest.fixture(scope="session")
def a0_base(tmp_path_factory) -> str:
    """MoViNet-A0 base SavedModel, random weights, 5 classes with named labels."""
    from models.movinet_export import export_movinet

    return str(built_once("a0_base", lambda folder: export_movinet(
        str(folder / "model"), model_id="a0", mode="base", num_classes=5,
        labels=[f"action_{i}" for i in range(5)])) / "model")


@pytest.fixture(scope="session")
def demo_run():
    """``videolabel demo`` run once for the session: (its folder, its summary, what it printed). Its
    fine-tuned model (``FOLDER/demo/model``: MoViNet-A0 stream, the four motions, 64x64 frames 0.25 s
    apart) is the one model of the suite that has learnt something; several modules label with it."""
    import contextlib
    import io
    import json

    from beam_pipeline.demo.run import run_demo

    def build(folder: Path) -> None:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            summary = run_demo(str(folder / "demo"), IN_MEMORY)
        (folder / "summary.json").write_text(json.dumps(summary))
        (folder / "printed.txt").write_text(out.getvalue())

    folder = built_once("demo", build)
    return folder, json.loads((folder / "summary.json").read_text()), (folder / "printed.txt").read_text()


@pytest.fixture(scope="session")
def mixed_videos(tmp_path_factory) -> dict:
    """A folder of good videos of different sizes, rates and codecs, and one corrupt .mp4.

    Returns {"dir": folder, "good": {name: (frames, fps)}, "corrupt": name}.
    """
    folder = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(7)
    specs = {
        "right_160x120_25.mp4": ("moving_right", 160, 120, 25, 50, "libx264"),
        "left_320x180_30.mp4": ("moving_left", 320, 180, 30, 45, "libx264"),
        "down_96x128_12.mp4": ("moving_down", 96, 128, 12, 30, "libx264"),
        "up_176x144_15.mkv": ("moving_up", 176, 144, 15, 30, "mpeg4"),
    }
    good = {}
    for name, (motion, w, h, fps, n, codec) in specs.items():
        frames = motion_frames(motion, num_frames=n, width=w, height=h, rng=rng)
        write_video(str(folder / name), frames, fps=fps, codec=codec)
        good[name] = (n, fps)
    corrupt = "corrupt.mp4"
    (folder / corrupt).write_bytes(os.urandom(4096))
    (folder / "notes.txt").write_text("not a video, and not a video extension either")
    return {"dir": str(folder), "good": good, "corrupt": corrupt}


BUCKET = "vl-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
    """gcp-storage-emulator on loopback with bucket vl-test, one for the whole test session;
    STORAGE_EMULATOR_HOST points at it."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gcp-storage-emulator"), "start", "--host=127.0.0.1",
         f"--port={port}", "--in-memory", f"--default-bucket={BUCKET}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "gcp-storage-emulator did not start"
            time.sleep(0.1)
    before = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    yield os.environ["STORAGE_EMULATOR_HOST"]
    server.terminate()
    server.wait(timeout=10)
    if before is None:
        os.environ.pop("STORAGE_EMULATOR_HOST")
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = before


def upload(local: Path, remote: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(remote) as handle:
        handle.write(local.read_bytes())
