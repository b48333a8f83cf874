"""Which runtime runs the model, and the model file the workers load (``model.runtime``).

Stream-mode MoViNet on CPU workers runs on LiteRT: ``export-movinet`` and
``train`` SavedModels are converted once at launch (``models.movinet_convert``,
cached by content) and the workers load the .tflite alone, without TensorFlow.
On Dataflow the converted file is staged beside the job (``--temp_location``)
and copied to each worker through Beam's filesystems.
"""

from __future__ import annotations

import os
import sys

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from beam_pipeline.config import ConfigError, JobConfig
from beam_pipeline.job.dataflow import is_dataflow
from models.movinet_convert import ConversionError, litert_model
from models.movinet_variants import is_hub_url

__all__ = ["model_runtime", "served_model"]


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


def _staged(path: str, options: PipelineOptions) -> str:
    """A Dataflow job's copy of the local file ``path`` under ``--temp_location`` (uploaded once)."""
    temp = options.view_as(GoogleCloudOptions).temp_location.rstrip("/")
    remote = f"{temp}/videolabel-litert/{os.path.basename(path)}"
    if not FileSystems.exists(remote):
        with open(path, "rb") as source, FileSystems.create(remote) as target:
            target.write(source.read())
    return remote


def served_model(cfg: JobConfig, handle: str, num_labels: int, options: PipelineOptions) -> str:
    """The model the workers load: ``handle`` itself (TensorFlow, or a .tflite file), or its LiteRT
    conversion (converted now on a cache miss; staged for Dataflow).

    Under ``auto``, a SavedModel that does not convert (not written by videolabel)
    stays on TensorFlow, with a note on stderr.

    Raises:
        ConfigError: ``model.runtime: litert`` and the model does not convert (one line).
    """
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
