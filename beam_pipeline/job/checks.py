"""Start-up checks: every input, model and output problem found before a video is read."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from apache_beam.io.filesystems import FileSystems

from beam_pipeline.config import ConfigError, JobConfig, ModelConfig
from models.labels import KINETICS_600, labels_beside, read_labels
from models.movinet_variants import hub_handle, is_hub_url
from models.storage import local_copy
from transforms.listing import is_manifest, manifest_columns

__all__ = ["check_inputs", "check_output_location", "check_pose_handle", "fitted_to_model",
           "has_frame_features", "resolve_handle", "resolve_labels", "trained_config"]

def check_inputs(paths: Sequence[str]) -> None:
    """Every glob matches at least one file; every manifest exists and has a ``uri`` column.

    Of a manifest only the header is read (``manifest_columns``): its rows are the job's
    to read, and a bad row becomes a failed output row there, not a start-up error.
    """
    if not paths:
        raise ConfigError("--input: no input given (set input.paths in the config or pass --input)")
    for path in paths:
        if is_manifest(path):
            if not FileSystems.exists(path):
                raise ConfigError(f"--input: manifest {path!r} does not exist")
            columns = manifest_columns(path)
            if "uri" not in columns:
                raise ConfigError(f"--input: manifest {path!r} has no 'uri' column (columns: {columns})")
            continue
        try:
            matched = FileSystems.match([path], limits=[1])[0].metadata_list
        except Exception as exc:  # Beam raises BeamIOError with per-pattern causes
            raise ConfigError(f"--input: cannot list {path!r}: {exc}".replace("\n", " ")) from None
        if not matched:
            raise ConfigError(f"--input: {path!r} matches no file")


def check_output_location(root: str) -> None:
    """A gs:// output's bucket exists and can be listed (a local folder is made when written)."""
    if not root.startswith("gs://"):
        return
    bucket = root[len("gs://"):].split("/", 1)[0]
    try:
        FileSystems.match([f"gs://{bucket}/*"], limits=[1])
    except Exception as exc:  # BeamIOError wrapping NotFound / Forbidden
        reason = "does not exist" if "NotFound" in repr(exc) or "404" in str(exc) else "cannot be listed"
        raise ConfigError(f"--output: bucket gs://{bucket} {reason} (credentials come from Application "
                          "Default Credentials)") from None


def resolve_handle(cfg: JobConfig) -> str:
    """The model handle: the configured one, else the TF Hub URL of the variant.

    A local or gs:// handle must be a SavedModel directory or a `videolabel train`
    output folder (its ``saved_model``, checked against the config it was trained
    with). A URL is returned as it is: the launcher fetches it once (``job.serving``).
    """
    m = cfg.model
    trained = bool(m.handle) and not is_hub_url(m.handle) and FileSystems.exists(
        FileSystems.join(m.handle, "saved_model", "saved_model.pb"))
    if trained:
        _check_trained_like(m.handle, cfg)
    if m.kind == "lstm":
        if not trained:
            raise ConfigError(f"--model: {m.handle!r} is not a `videolabel train` output folder "
                              "(no saved_model/saved_model.pb)")
        check_pose_handle(cfg.pose.handle)
        return m.handle
    if trained:
        return FileSystems.join(m.handle, "saved_model")
    handle = m.handle or hub_handle(m.model_id, m.model_mode, m.hub_version)
    if is_hub_url(handle):
        return handle
    if handle.endswith(".tflite"):
        if not FileSystems.exists(handle):
            raise ConfigError(f"--model: {handle!r} does not exist")
        if m.model_mode != "stream":
            raise ConfigError(f"--model: {handle!r} is a TFLite model, which runs in stream mode only "
                              f"(model.model_mode is {m.model_mode!r})")
        return handle
    if not FileSystems.exists(FileSystems.join(handle, "saved_model.pb")):
        raise ConfigError(f"--model: {handle!r} is not a SavedModel directory (no saved_model.pb)")
    return handle


def fitted_to_model(cfg: JobConfig, handle: str) -> JobConfig:
    """``cfg`` as ``handle`` can honour it: a .tflite stream model without frame features (MoViNet's own
    one-frame layout, no ``head`` signature) gives cumulative frame labels (``model.frame_window_s`` 0)
    when the window is the default, said once on stderr; ``_run.json`` records it.

    Raises:
        ConfigError: a window other than the default was asked of such a model.
    """
    window = cfg.model.frame_window_s
    if not handle.endswith(".tflite") or window == 0 or has_frame_features(handle):
        return cfg
    if window != ModelConfig.model_fields["frame_window_s"].default:
        raise ConfigError(f"model.frame_window_s: {handle!r} has no frame features (no head signature), "
                          f"so it cannot give {window} s windows: convert it again with videolabel "
                          "export-movinet --tflite, or set model.frame_window_s=0 for cumulative labels")
    print(f"{handle} has no frame features (no head signature): each frame is labelled with the output "
          "over the video so far (cumulative), not over a window", file=sys.stderr)
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"frame_window_s": 0.0})})


def trained_config(folder: str) -> dict:
    """The ``config`` a `videolabel train` output's ``results.json`` recorded (empty without the file)."""
    path = FileSystems.join(folder, "results.json")
    if not FileSystems.exists(path):
        return {}
    with FileSystems.open(path) as handle:
        return json.loads(handle.read()).get("config", {})


def _check_trained_like(folder: str, cfg: JobConfig) -> None:
    """A `videolabel train` output runs with the model kind, variant and mode it was trained as."""
    trained = trained_config(folder).get("job", {}).get("model", {})
    keys = ("kind",) if cfg.model.kind == "lstm" else ("kind", "model_id", "model_mode")
    for key in keys:
        if key in trained and trained[key] != getattr(cfg.model, key):
            raise ConfigError(f"model.{key}: {getattr(cfg.model, key)!r}, but {folder} was trained with "
                              f"{key} {trained[key]!r}; run it with the config it was trained with")


def has_frame_features(tflite: str) -> bool:
    """Whether a .tflite MoViNet has the ``head`` signature that frame windows need (LiteRT reads the
    file's signature list; TensorFlow is not imported)."""
    from models.movinet_tflite import interpreter

    with open(local_copy(tflite), "rb") as handle:
        return "head" in interpreter(handle.read(), 1).get_signature_list()


def check_pose_handle(handle: str) -> None:
    """The MoveNet handle is a TF Hub URL or an existing local / gs:// file or folder."""
    if not is_hub_url(handle) and not FileSystems.exists(handle):
        raise ConfigError(f"pose.handle: {handle!r} does not exist")


def resolve_labels(cfg: JobConfig, handle: str) -> list[str]:
    """model.labels, else labels.txt in a SavedModel (or beside a .tflite), else Kinetics-600."""
    if cfg.model.labels:
        if not FileSystems.exists(cfg.model.labels):
            raise ConfigError(f"model.labels: {cfg.model.labels!r} does not exist")
        return read_labels(cfg.model.labels)
    if "://" not in handle or handle.startswith("gs://"):
        beside = labels_beside(handle)
        if FileSystems.exists(beside):
            return read_labels(beside)
    return list(KINETICS_600)
