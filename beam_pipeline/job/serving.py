"""Which runtime runs the model, and the model file the workers load (``model.runtime``).

Stream-mode MoViNet on CPU workers runs on LiteRT: ``export-movinet`` and
``train`` SavedModels are converted once at launch (``models.movinet_convert``,
cached by content) and the workers load the .tflite alone, without TensorFlow.
On Dataflow the converted file is staged beside the job (``--temp_location``)
and copied to each worker through Beam's filesystems.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from beam_pipeline.config import ConfigError, JobConfig
from beam_pipeline.job.checks import has_frame_features, trained_config
from beam_pipeline.job.dataflow import is_dataflow
from models.hub_fetch import HubUnavailable, hub_local
from models.movinet_convert import ConversionError, litert_model
from models.movinet_variants import feature_width, is_hub_url
from models.weights_note import is_random
from transforms.video_handler import StreamBatch

__all__ = ["ServedModel", "embedding_width", "frame_labels", "model_runtime", "serve", "served_pose"]


def model_runtime(cfg: JobConfig, handle: str) -> str:
    """``tf`` or ``litert``: ``model.runtime``, with ``auto`` resolved (see ``ModelConfig.runtime``).

    Raises:
        ConfigError: ``litert`` asked for a model or worker it cannot run on.
    """
    m = cfg.model
    if handle.endswith(".tflite"):
        return "litert"
    if m.runtime == "tf":
        return "tf"
    reason = ("model.kind is lstm" if m.kind != "movinet" else
              "model_mode is base (3D convolutions)" if m.model_mode != "stream" else
              "model.accelerator is set (GPU workers run TensorFlow)" if m.accelerator else
              "the model is a TF Hub URL" if is_hub_url(handle) else None)
    if reason is None:
        return "litert"
    if m.runtime == "litert":
        raise ConfigError(f"model.runtime: litert runs stream MoViNet SavedModels on CPU workers, "
                          f"but {reason}; use model.runtime: auto or tf")
    return "tf"


def _staged(path: str, options: PipelineOptions, folder: str = "videolabel-litert") -> str:
    """A Dataflow job's copy of the local file or folder ``path`` under ``--temp_location/folder``
    (each file uploaded once)."""
    temp = options.view_as(GoogleCloudOptions).temp_location.rstrip("/")
    remote = f"{temp}/{folder}/{os.path.basename(path.rstrip('/'))}"
    if os.path.isfile(path):
        files = {path: remote}
    else:
        files = {os.path.join(root, name): f"{remote}/{os.path.relpath(os.path.join(root, name), path)}"
                 for root, _, names in os.walk(path) for name in names}
    for local, target in sorted(files.items()):
        if not FileSystems.exists(target):
            with open(local, "rb") as source, FileSystems.create(target) as out:
                out.write(source.read())
    return remote


def _fetched(handle: str, options: PipelineOptions, what: str = "--model",
             instead: str = "export a model instead: videolabel export-movinet --checkpoint ...") -> str:
    """A TF Hub model's local folder (fetched now, once per machine), staged for Dataflow.

    Raises:
        ConfigError: it cannot be fetched (one line naming ``what`` and what to do ``instead``).
    """
    try:
        local = hub_local(handle)
    except HubUnavailable as exc:
        raise ConfigError(f"{what}: {exc} (no network? {instead})") from None
    return _staged(local, options, "videolabel-models") if is_dataflow(options) else local


def served_pose(cfg: JobConfig, options: PipelineOptions) -> str | None:
    """The MoveNet the workers load (``model.kind: lstm``, else None): ``pose.handle``, or for a TF Hub
    URL its copy fetched now into the cache (staged for Dataflow), as for the classifier.

    Raises:
        ConfigError: a TF Hub pose model that cannot be fetched (one line).
    """
    handle = cfg.pose.handle
    if cfg.model.kind != "lstm" or not handle:
        return None
    if is_hub_url(handle):
        return _fetched(handle, options, "pose.handle", "use a MoveNet .tflite file or SavedModel folder")
    return handle


def _served_path(cfg: JobConfig, handle: str, num_labels: int, options: PipelineOptions) -> str:
    """The model the workers load: ``handle`` itself (TensorFlow, or a .tflite file), its LiteRT
    conversion (converted now on a cache miss; staged for Dataflow), or for a TF Hub URL the model
    fetched now into the cache (``models.hub_fetch``; staged for Dataflow): workers never call TF Hub.

    Under ``auto``, a SavedModel that does not convert (not written by videolabel)
    stays on TensorFlow, with a note on stderr.

    Raises:
        ConfigError: ``model.runtime: litert`` and the model does not convert (one line).
    """
    if is_hub_url(handle):
        return _fetched(handle, options)
    if handle.endswith(".tflite") or model_runtime(cfg, handle) == "tf":
        return handle
    try:
        converted = litert_model(handle, cfg.imgz, cfg.model.model_id, num_labels)
    except ConversionError as error:
        if cfg.model.runtime == "litert":
            raise ConfigError(f"model.runtime: litert: {error}") from None
        print(f"{error}; running it on TensorFlow", file=sys.stderr)
        return handle
    return _staged(converted, options) if is_dataflow(options) else converted


def frame_labels(cfg: JobConfig, handle: str) -> str:
    """What a frame row's prediction is, for ``_run.json``:

    * ``clip``: the output of the clip that holds the frame (base mode, the pose LSTM);
    * ``window``: stream mode: the head on the mean of the features of the frames in the last
      ``model.frame_window_s`` seconds up to it;
    * ``cumulative``: stream mode with ``frame_window_s: 0``: the output over the video up to it;
    * ``chunk``: TF Hub stream models, which give no per-frame features: the output after the
      last frame of the frame's chunk (``model.stream_chunk`` frames), window or not.
    """
    m = cfg.model
    if m.kind != "movinet" or m.model_mode != "stream":
        return "clip"
    if is_hub_url(handle):
        return "chunk"
    return "window" if m.frame_window_s > 0 else "cumulative"


def embedding_width(cfg: JobConfig, handle: str, path: str) -> int | None:
    """F, the width of the run's embeddings (``output.write_embeddings``), else None: a MoViNet's
    feature width (``models.movinet_variants.feature_width``: 480 for A0), a pose LSTM's as its
    ``results.json`` records it.

    Raises:
        ConfigError: a model that gives no features: TF Hub's classifiers, a .tflite without frame
            features, a pose LSTM trained before embeddings (one line naming the fix).
    """
    if not cfg.output.write_embeddings:
        return None
    if is_hub_url(handle):
        raise ConfigError("output.write_embeddings: TF Hub's MoViNet classifiers give no features; run a "
                          "model of videolabel export-movinet or videolabel train")
    if path.endswith(".tflite") and not has_frame_features(path):
        raise ConfigError(f"output.write_embeddings: {path} has no frame features; convert it again with "
                          "videolabel export-movinet --tflite")
    if cfg.model.kind != "lstm":
        return feature_width(cfg.model.model_id)
    width = trained_config(handle).get("embedding_width")
    if width is None:
        raise ConfigError(f"output.write_embeddings: the LSTM in {handle} was trained before embeddings; "
                          "train it again with this version")
    return int(width)


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """The model that serves a run, decided once on the driver (``serve``) and passed as it is to the
    model handler (``job.pipeline.make_handler``) and to the run record (``_run.json``'s ``model``).

    Attributes:
        handle: the resolved model handle, stamped on the rows.
        path: what the workers load: ``handle``, or its LiteRT conversion.
        runtime: what runs ``path``: ``litert`` (a .tflite file) or ``tf``.
        batch: videos per model call (stream mode with an accelerator, on TensorFlow), else None
            (one video per call: a CPU worker gains nothing from batching videos).
        frame_labels: what a frame row's prediction is (``frame_labels``).
        random_weights: the model was exported with random weights (``models.weights_note``).
        pose: the MoveNet the workers load before the LSTM (``served_pose``); None for MoViNet.
        embedding_width: F, the width of each embedding with ``output.write_embeddings``
            (``embedding_width``), else None.
    """

    handle: str
    path: str
    runtime: str
    batch: StreamBatch | None
    frame_labels: str
    random_weights: bool = False
    pose: str | None = None
    embedding_width: int | None = None

    @classmethod
    def of(cls, cfg: JobConfig, handle: str, path: str | None = None, pose: str | None = None) -> ServedModel:
        """``handle`` served from ``path`` (default: the handle itself, as given), with the MoveNet
        ``pose`` (default: ``pose.handle`` of an lstm config)."""
        path = path or handle
        m = cfg.model
        runtime = "litert" if path.endswith(".tflite") or m.runtime == "litert" else "tf"
        batched = m.accelerator and m.kind == "movinet" and m.model_mode == "stream" and runtime == "tf"
        batch = StreamBatch(m.batch_size, m.max_batch_duration_s) if batched else None
        pose = pose or (cfg.pose.handle if m.kind == "lstm" else None)
        return cls(handle, path, runtime, batch, frame_labels(cfg, handle), is_random(handle), pose,
                   embedding_width(cfg, handle, path))


def serve(cfg: JobConfig, handle: str, num_labels: int, options: PipelineOptions) -> ServedModel:
    """The model that serves the run: ``handle`` on the runtime ``model.runtime`` resolves to, converted
    to LiteRT now on a cache miss (and staged for Dataflow); TF Hub models (the classifier, the pose
    model) fetched now.

    Raises:
        ConfigError: ``model.runtime: litert`` and the model cannot run on it, or a TF Hub model that
            cannot be fetched (one line).
    """
    path = _served_path(cfg, handle, num_labels, options)
    return ServedModel.of(cfg, handle, path, served_pose(cfg, options))
