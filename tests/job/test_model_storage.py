"""Models on gs:// read through Beam's FileSystems (models.storage), against gcp-storage-emulator on loopback.

TensorFlow's own GCS client ignores STORAGE_EMULATOR_HOST, so these fail when a
loader hands the gs:// path to TF instead of a local copy.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from beam_pipeline.config import load_config
from beam_pipeline.demo.synthetic import make_labelled_set
from beam_pipeline.job.launcher import run_job
from beam_pipeline.outputs.run_record import RunRecord
from models import storage
from models.storage import local_copy
from tests.conftest import BUCKET, REPO, upload

TINY_LABELS = ["red", "green", "blue", "grey"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty model cache for this test (VIDEOLABEL_MODEL_CACHE)."""
    folder = tmp_path / "model-cache"
    monkeypatch.setenv("VIDEOLABEL_MODEL_CACHE", str(folder))
    return folder


def _entries(cache: Path) -> list[str]:
    """The finished copies in the cache (hidden locks, partial copies and the LiteRT conversions left out)."""
    if not cache.exists():
        return []
    return sorted(p.name for p in cache.iterdir() if not p.name.startswith(".") and p.name != "litert")


def _write(remote: str, data: bytes) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(remote) as handle:
        handle.write(data)


def _count_copies(monkeypatch) -> list[str]:
    copied: list[str] = []
    real = storage._copy_file

    def counting(source, destination):
        copied.append(source)
        real(source, destination)

    monkeypatch.setattr(storage, "_copy_file", counting)
    return copied


# --- the cache helper -------------------------------------------------------------------------


def test_local_paths_and_urls_are_not_copied(cache, tmp_path):
    assert local_copy(str(tmp_path / "model")) == str(tmp_path / "model")
    url = "https://tfhub.dev/tensorflow/movinet/a0/stream/kinetics-600/classification/3"
    assert local_copy(url) == url
    assert not cache.exists()


@pytest.mark.usefixtures("gcs")
def test_a_folder_is_copied_once_and_again_when_it_changes(cache, monkeypatch):
    root = f"gs://{BUCKET}/unit/model"
    _write(f"{root}/saved_model.pb", b"graph")
    _write(f"{root}/variables/variables.index", b"index-1")
    copied = _count_copies(monkeypatch)

    path = local_copy(root + "/")
    assert Path(path).name == "model" and Path(path).parent.parent == cache
    assert (Path(path) / "saved_model.pb").read_bytes() == b"graph"
    assert (Path(path) / "variables" / "variables.index").read_bytes() == b"index-1"
    assert len(copied) == 2
    assert local_copy(root) == path and len(copied) == 2  # cached: nothing copied again

    _write(f"{root}/variables/variables.index", b"index-two")  # the remote changed
    changed = local_copy(root)
    assert changed != path and len(copied) == 4
    assert (Path(changed) / "variables" / "variables.index").read_bytes() == b"index-two"
    assert (Path(path) / "variables" / "variables.index").read_bytes() == b"index-1"  # never half-replaced


@pytest.mark.usefixtures("gcs")
def test_a_file_and_a_checkpoint_prefix(cache):
    _write(f"gs://{BUCKET}/unit/files/m.tflite", b"tflite-bytes")
    _write(f"gs://{BUCKET}/unit/files/ckpt-1.index", b"i")
    _write(f"gs://{BUCKET}/unit/files/ckpt-1.data-00000-of-00001", b"d")
    _write(f"gs://{BUCKET}/unit/files/ckpt-10.index", b"other checkpoint")
    file = local_copy(f"gs://{BUCKET}/unit/files/m.tflite")
    assert file.endswith("/m.tflite") and Path(file).read_bytes() == b"tflite-bytes"
    prefix = local_copy(f"gs://{BUCKET}/unit/files/ckpt-1")
    assert sorted(os.listdir(Path(prefix).parent)) == ["ckpt-1.data-00000-of-00001", "ckpt-1.index"]
    with pytest.raises(FileNotFoundError, match="no such file, folder or checkpoint prefix"):
        local_copy(f"gs://{BUCKET}/unit/nothing-here")


@pytest.mark.usefixtures("gcs")
def test_a_failed_copy_leaves_nothing_and_processes_share_one_copy(cache, monkeypatch):
    root = f"gs://{BUCKET}/unit/shared"
    for i in range(3):
        _write(f"{root}/file{i}", bytes([i]) * 1000)
    real = storage._copy_file

    def fail_on_the_last(source, destination):
        if source.endswith("file2"):
            raise OSError("connection reset")
        real(source, destination)

    monkeypatch.setattr(storage, "_copy_file", fail_on_the_last)
    with pytest.raises(OSError, match="connection reset"):
        local_copy(root)
    assert _entries(cache) == [] and not [p for p in os.listdir(cache) if not p.endswith(".lock")]

    monkeypatch.setattr(storage, "_copy_file", real)
    copied = _count_copies(monkeypatch)
    paths: list[str] = []
    threads = [threading.Thread(target=lambda: paths.append(local_copy(root))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 4 and len(set(paths)) == 1  # a thread that raised appended nothing
    assert len(copied) == 3  # one copy between the four, under the lock
    assert sorted(os.listdir(paths[0])) == ["file0", "file1", "file2"]


# --- the real pipeline with the model on gs:// ------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """One small stream model, 4 classes from each frame's mean colour (causal: a running sum plus the
    carried state), as a SavedModel in videolabel's stream layout (``call`` with ``frame_logits``,
    ``init_states``) and as a TFLite file in MoViNet's (image [1, 1, 64, 64, 3] and the state in,
    ``logits`` and the state out), each with its labels.txt. Seconds to build and load, where an
    exported MoViNet takes minutes here; the storage layer is the same for both."""
    import tensorflow as tf

    from models.labels import labels_beside, write_labels

    class TinyStream(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel = tf.Variable(np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))

        def frame_logits(self, image, state):  # image [1, t, h, w, 3], state [1, 4] -> [1, t, 4]
            colour = tf.reduce_mean(image, axis=[2, 3])
            return tf.cumsum(10.0 * tf.einsum("btc,ck->btk", colour, self.kernel), axis=1) + state[:, None]

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.float32, name="image"),
                                      tf.TensorSpec([None, 4], tf.float32, name="state")])
        def call(self, image, state):
            logits = self.frame_logits(image, state)
            return {"logits": logits[:, -1], "frame_logits": logits, "state": logits[:, -1]}

        @tf.function(input_signature=[tf.TensorSpec([5], tf.int32, name="input_shape")])
        def init_states(self, input_shape):
            return {"state": tf.zeros([input_shape[0], 4])}

        @tf.function(input_signature=[{"image": tf.TensorSpec([1, 1, 64, 64, 3], tf.float32, name="image"),
                                       "state": tf.TensorSpec([1, 4], tf.float32, name="state")}])
        def tflite_step(self, inputs):
            logits = self.frame_logits(inputs["image"], inputs["state"])[:, -1]
            return {"logits": logits, "state": logits}

    module = TinyStream()
    folder = tmp_path_factory.mktemp("tiny_models")
    saved = folder / "tiny_stream"
    signatures = {"call": module.call, "init_states": module.init_states}
    tf.saved_model.save(module, str(saved), signatures=signatures)
    write_labels(labels_beside(str(saved)), TINY_LABELS)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.tflite_step.get_concrete_function()],
                                                               module)
    tflite = folder / "tflite" / "tiny_stream.tflite"
    tflite.parent.mkdir()
    tflite.write_bytes(converter.convert())
    write_labels(labels_beside(str(tflite)), TINY_LABELS)
    return {"saved_model": str(saved), "tflite": str(tflite)}


@pytest.fixture(scope="module")
def storage_videos(request, tmp_path_factory) -> str:
    """Two one-second generated videos under gs://vl-test/storage-in; returns their glob."""
    request.getfixturevalue("gcs")
    folder = tmp_path_factory.mktemp("storage-videos")
    make_labelled_set(str(folder), per_class=1, motions=("moving_left", "moving_right"), seconds=1.0)
    for path in folder.glob("*.mp4"):
        upload(path, f"gs://{BUCKET}/storage-in/{path.name}")
    return f"gs://{BUCKET}/storage-in/*.mp4"


def _upload_model(local: str, remote: str) -> str:
    """Uploads a SavedModel folder (every file) or a .tflite file and its labels.txt; returns the handle."""
    source = Path(local)
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            upload(path, f"{remote}/{path.relative_to(source)}")
        return remote
    upload(source, f"{remote}/{source.name}")
    upload(source.parent / "labels.txt", f"{remote}/labels.txt")
    return f"{remote}/{source.name}"


def _frames(out: str) -> dict[tuple[str, int], dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    rows = {}
    for match in FileSystems.match([f"{out}/frames/*/part-*.parquet"])[0].metadata_list:
        with FileSystems.open(match.path) as handle:
            for r in pq.read_table(pa.BufferReader(handle.read())).to_pylist():
                rows[(r["uri"].rsplit("/", 1)[-1], r["frame_index"])] = r
    return rows


def _run(videos: str, handle: str, out: str) -> RunRecord:
    # the tiny models give per-frame outputs but no frame features: cumulative frame labels
    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["{videos}"]', f'output.path="{out}"', f'model.handle="{handle}"',
        "sampling.imgz=64", "output.write_probs=true", "model.frame_window_s=0"])
    return run_job(cfg, ["--direct_running_mode=in_memory", "--direct_num_workers=1"])


@pytest.mark.parametrize("kind", ["saved_model", "tflite"])
def test_a_gs_model_labels_like_the_same_model_loaded_locally(kind, tiny_models, storage_videos, cache,
                                                              monkeypatch):
    from models.movinet import Movinet

    local = tiny_models[kind]
    remote = _upload_model(local, f"gs://{BUCKET}/models/{kind}")

    first = _run(storage_videos, local, f"gs://{BUCKET}/storage-out/{kind}-local")
    assert _entries(cache) == []  # a local model is loaded where it is
    if kind == "saved_model":  # not a MoViNet: it does not convert to LiteRT, and runs on TensorFlow
        assert first.model.runtime == "tf" and len(list((cache / "litert").glob("*.failed"))) == 1
    copied = _count_copies(monkeypatch)
    summary = _run(storage_videos, remote, f"gs://{BUCKET}/storage-out/{kind}-gs")
    assert summary.model.handle == remote and summary.counts["videos_ok"] == 2
    assert len(_entries(cache)) == 1 and copied  # copied into the cache, through FileSystems

    by_local, by_gs = _frames(f"gs://{BUCKET}/storage-out/{kind}-local"), _frames(
        f"gs://{BUCKET}/storage-out/{kind}-gs")
    assert len(by_local) >= 10 and sorted(by_local) == sorted(by_gs)
    for key, row in by_local.items():
        other = by_gs[key]
        assert (other["prediction"], other["top_k_labels"]) == (row["prediction"], row["top_k_labels"]), key
        np.testing.assert_allclose(other["probs"], row["probs"], rtol=1e-6, atol=1e-7)
    assert {r["prediction"] for r in by_gs.values()} <= set(TINY_LABELS)
    assert len({round(r["score"], 6) for r in by_gs.values()}) > 1  # a prediction per frame

    # A second load on this machine reads the cached copy: nothing is copied again.
    copies = len(copied)
    assert Movinet(remote, "stream", num_labels=len(TINY_LABELS), imgz=64).load() is not None
    assert len(copied) == copies and len(_entries(cache)) == 1


@pytest.mark.usefixtures("gcs")
def test_a_missing_gs_model_is_one_clear_load_error(cache):
    from models.movinet import Movinet

    with pytest.raises(ValueError, match=r"cannot load model gs://vl-test/models/none: FileNotFoundError"):
        Movinet(f"gs://{BUCKET}/models/none", "stream", num_labels=600, imgz=64).load()
