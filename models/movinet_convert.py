"""Stream-mode MoViNet SavedModels converted to LiteRT (.tflite), once per model, cached by content.

``convert_model`` writes a stream MoViNet classifier as a .tflite file with three
signatures of fixed shapes (``imgz`` square frames), the first two over the same states:

* ``frames_8`` (``CHUNK`` frames): ``image`` float32 [1, 8, imgz, imgz, 3] in
  [0, 1] and the state tensors -> the new states, ``frame_logits`` float32
  [1, 8, C] (every frame's causal output), ``logits`` [1, C] (the last one's) and
  ``frame_features`` float32 [1, 8, F] (each frame's own features);
* ``frames_1``: the same for one frame, for the frames after the last full chunk;
* ``head``: ``features`` float32 [8, F] -> ``logits`` float32 [8, C], the classifier
  head on 8 rows of (means of) frame features (``models.frame_window``).

The states do not depend on the number of frames in a call, so CHUNK-frame
calls then one-frame calls give the SavedModel's outputs for every frame
(``models.movinet_tflite.TFLiteMovinet`` runs them). CHUNK is 8, the fastest
call length on LiteRT's XNNPACK for these models (docs/PERFORMANCE.md).

``litert_model`` is what the launcher calls for a SavedModel that ``export-movinet``
or ``train`` wrote (its variables restore the rebuilt classifier): it keys the
model by the sha256 of its files, the variant, the frame size and the converter's
versions, and converts in a child process on a miss, so neither the launching
process nor the workers (which load the .tflite alone) import TensorFlow. The
cache is ``models.storage.cache_root()/litert/<key>.tflite``, written under a
file lock and renamed into place; a model that does not convert leaves
``<key>.failed`` with the reason, so later launches refuse it at once.

    python -m models.movinet_convert SAVED_MODEL OUT.tflite IMGZ MODEL_ID NUM_CLASSES
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from models.storage import cache_root, local_copy, locked

__all__ = ["CHUNK", "ConversionError", "convert_model", "convert_saved_model", "litert_model", "prime_litert"]

#: Frames per call of the multi-frame signature, and rows per call of ``head``.
CHUNK = 8

#: The signatures' layout, in the cache key: a file converted before a change is converted again.
LAYOUT = 2  # 2: frame_features and head


class ConversionError(RuntimeError):
    """A stream SavedModel that cannot be converted to LiteRT (one line: the model and the reason)."""


def convert_model(model, path: str, imgz: int, *, quantize: bool = False) -> str:
    """Writes a stream ``MovinetClassifier`` as a two-signature .tflite at local ``path`` (module doc).

    Args:
        model: a tf_keras stream MovinetClassifier (``models.movinet_graph.build_movinet``).
        path: the .tflite file to write.
        imgz: the square frame side the model is converted for.
        quantize: store the weights as int8 (dynamic range); outputs then differ
            from the float model's.

    Returns:
        ``path``.
    """
    import tensorflow as tf

    from models.movinet_graph import head_call, stream_call

    signatures = {f"frames_{n}": stream_call(model, [1, n, imgz, imgz, 3]).get_concrete_function()
                  for n in (CHUNK, 1)}
    signatures["head"] = head_call(model, CHUNK).get_concrete_function()
    module = tf.Module()
    # the variables alone: saving the Keras model would serialise every layer (minutes of tracing)
    module.weights = list(model.variables)
    with tempfile.TemporaryDirectory(prefix="videolabel-convert-") as folder:
        tf.saved_model.save(module, folder, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=list(signatures))
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        Path(path).write_bytes(converter.convert())
    return path


def convert_saved_model(saved_model: str, path: str, imgz: int, model_id: str, num_classes: int) -> str:
    """Converts a stream SavedModel that ``export-movinet`` or ``train`` wrote (``convert_model``).

    Its variables are a checkpoint of the MoViNet ``model_id`` classifier of
    ``num_classes``; the classifier is rebuilt and restored from it.

    Raises:
        ConversionError: the SavedModel holds another model.
    """
    import tensorflow as tf

    from models.movinet_graph import build_movinet

    model = build_movinet(model_id, "stream", num_classes)
    try:
        status = tf.train.Checkpoint(model=model).read(os.path.join(saved_model, "variables", "variables"))
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"{saved_model} is not a MoViNet-{model_id} stream model with "
                              f"{num_classes} classes written by videolabel ({first})") from None
    return convert_model(model, path, imgz)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _content_key(root: Path, imgz: int, model_id: str, num_classes: int) -> str:
    """sha256 over the SavedModel's files, the variant, the frame side, CHUNK, LAYOUT and the converter
    versions."""
    digest = hashlib.sha256()
    versions = [_version(name) for name in ("tensorflow", "tf-models-official", "ai-edge-litert")]
    digest.update(json.dumps([imgz, model_id, num_classes, CHUNK, LAYOUT, versions]).encode())
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        with open(file, "rb") as content:
            for block in iter(lambda: content.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:32]


def _cached(saved_model: str, imgz: int, model_id: str, num_classes: int,
            convert: Callable[[Path, str], None]) -> str:
    """The cached .tflite of the SavedModel; ``convert(local folder, partial path)`` makes a missing one."""
    source = Path(local_copy(saved_model))
    if not (source / "saved_model.pb").is_file():
        raise ConversionError(f"{saved_model} is not a SavedModel folder (no saved_model.pb)")
    key = _content_key(source, imgz, model_id, num_classes)
    folder = os.path.join(cache_root(), "litert")
    os.makedirs(folder, exist_ok=True)
    target, refused = os.path.join(folder, f"{key}.tflite"), os.path.join(folder, f"{key}.failed")
    with locked(os.path.join(folder, f".{key}.lock")):
        if os.path.exists(refused):  # this model did not convert before: say why at once
            with open(refused, encoding="utf-8") as reason:
                raise ConversionError(reason.read())
        if not os.path.exists(target):
            partial = f"{target}.partial-{os.getpid()}"
            try:
                convert(source, partial)
                os.rename(partial, target)
            except ConversionError as error:
                with open(refused, "w", encoding="utf-8") as reason:
                    reason.write(str(error))
                raise
            finally:
                if os.path.exists(partial):
                    os.remove(partial)
    return target


def litert_model(handle: str, imgz: int, model_id: str, num_classes: int) -> str:
    """The LiteRT conversion of stream SavedModel ``handle`` at ``imgz``, from the cache or converted now.

    A remote (gs://) model is copied locally first (``models.storage.local_copy``).
    Conversion runs in a child process (TensorFlow is imported there only) and
    takes a minute or two; later launches find the file in the cache.

    Returns:
        The local path of the cached .tflite file.

    Raises:
        ConversionError: the handle is no SavedModel of that variant, or the converter failed
            (one line).
    """
    def in_child(source: Path, partial: str) -> None:
        print(f"converting {handle} to LiteRT at {imgz}x{imgz} (once; cached in {cache_root()}/litert)",
              file=sys.stderr)
        args = [str(source), partial, str(imgz), model_id, str(num_classes)]
        proc = subprocess.run([sys.executable, "-m", "models.movinet_convert", *args], capture_output=True,
                              text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ConversionError(f"cannot convert {handle} to LiteRT: {last}")

    return _cached(handle, imgz, model_id, num_classes, in_child)


def prime_litert(model, saved_model: str, imgz: int, model_id: str, num_classes: int) -> str:
    """Puts the conversion of ``model``, just saved to ``saved_model``, in the cache (in this process),
    so that the first ``videolabel run`` at ``imgz`` finds it (``export-movinet``, ``train``)."""
    return _cached(saved_model, imgz, model_id, num_classes,
                   lambda _source, partial: convert_model(model, partial, imgz))


if __name__ == "__main__":
    try:
        convert_saved_model(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    except ConversionError as error:
        raise SystemExit(str(error)) from None
