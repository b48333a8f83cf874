"""The Python API: ``LabelVideos`` for Beam pipelines, ``label_videos`` and ``train`` for scripts.

Each goes through the same code as the command line: the config is built from a YAML file
and keyword sections (``sampling={"fps": 4}``) and validated by ``beam_pipeline.config``, so
a bad key raises the same one-line ``ConfigError`` as ``--set``, before any video is read.

* ``LabelVideos(config, **sections)``: a composite PTransform, video URIs (str) or
  ``VideoRef``s -> ``{"videos", "frames", "segments"}`` PCollections of row dicts (the
  Parquet tables' columns plus ``split``), for users' own sources and sinks.
* ``label_videos(paths, model, **sections)``: runs ``videolabel run`` locally and returns the
  tables as pandas DataFrames.
* ``train(manifest, output_dir, **sections)``: runs ``videolabel train``; returns results.json
  and the trained model's folder.

Without a ``runner`` section, ``label_videos`` and ``train`` run locally with
``direct_running_mode: auto``: a few videos in this process, which starts fastest,
an archive on one worker process per core (``beam_pipeline.job.local_mode``).

Example::

    from beam_pipeline import label_videos

    result = label_videos("clips/*.mp4", "models_out/a0_stream", sampling={"strategy": "fps", "fps": 4})
    result.videos[["uri", "prediction", "score"]]
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import pandas as pd

from beam_pipeline.config import ConfigError, JobConfig, apply_overrides, config_from_dict, read_yaml

__all__ = ["DEFAULT_RUNNER", "LabelResult", "LabelVideos", "TrainResult", "job_config", "label_videos",
           "train"]


class _BeamNoise(logging.Filter):
    """Drops the warning RunInference logs on the root logger on every model call where its
    ``resource`` module did not load ("memory usage cannot be fetched": nothing wrong here)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Resource module is not available for current platform")


logging.getLogger().addFilter(_BeamNoise())


#: The runner section ``label_videos`` and ``train`` use when none is given: a few videos in this
#: process, more on a worker process per core.
DEFAULT_RUNNER: Mapping[str, Any] = {"runner": "DirectRunner", "direct_running_mode": "auto",
                                     "direct_num_workers": 0}


def _section_values(sections: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    for name, keys in sections.items():
        if not isinstance(keys, Mapping):
            raise ConfigError(f"{name}: a config section is a mapping of keys, e.g. "
                              f"{name}={{'key': value}} (got {keys!r})")
    return dict(sections)


def job_config(config: str | JobConfig | None = None, model: str | Mapping[str, Any] | None = None,
               sections: Mapping[str, Any] | None = None,
               flags: Mapping[str, Mapping[str, Any]] | None = None,
               default_runner: Mapping[str, Any] | None = None) -> JobConfig:
    """A validated JobConfig from the API's arguments.

    Args:
        config: a YAML config file (as ``--config``), a JobConfig, or None for the defaults.
        model: a model handle (as ``--model``), or the whole ``model`` section as a mapping.
        sections: config sections as mappings (``sampling={"fps": 4}``), over ``config``.
        flags: ``{section: {key: value}}`` set last, as the command line's path flags.
        default_runner: the ``runner`` section when neither ``config`` nor ``sections`` gives one.

    Raises:
        ConfigError: a section that is not a mapping, an unknown key or a bad value (one line).
    """
    sections = dict(sections or {})
    if isinstance(model, Mapping):
        sections, model = {**sections, "model": model}, None
    if isinstance(config, JobConfig):
        raw = config.to_dict()
    else:
        raw = read_yaml(config) if config else {}
    raw = apply_overrides(raw, (), _section_values(sections))
    if not raw.get("runner") and default_runner is not None:
        raw["runner"] = dict(default_runner)
    flags = {section: dict(keys) for section, keys in (flags or {}).items()}
    if model is not None:
        flags.setdefault("model", {})["handle"] = model
    return config_from_dict(apply_overrides(raw, (), flags))


class LabelResult(NamedTuple):
    """What ``label_videos`` returns.

    Attributes:
        videos: one row per input video, failed ones included (the ``videos`` table).
        frames: one row per sampled frame of each video that decoded (``frames``).
        segments: one row per stretch of a video where one label holds (``segments``); empty
            when the output has no segments table.
        output: the output folder holding the Parquet, ``labels.txt`` and ``_run.json``.
    """

    videos: pd.DataFrame
    frames: pd.DataFrame
    segments: pd.DataFrame
    output: str


def label_videos(paths: str | Sequence[str], model: str | Mapping[str, Any] | None = None, *,
                 config: str | JobConfig | None = None,
                 output_dir: str | None = None, overwrite: bool = False,
                 **sections: Mapping[str, Any]) -> LabelResult:
    """Labels videos with a local videolabel run and returns its tables.

    Args:
        paths: a video path, glob (local or gs://) or manifest (.csv/.jsonl/.parquet), or a
            list of them; replaces ``input.paths``.
        model: a model handle, as ``--model``: a TF Hub URL, a SavedModel folder (local or
            gs://, e.g. from ``export-movinet``), a ``train`` output or a ``.tflite`` file;
            or the whole ``model`` section as a mapping (``{"handle": ..., "top_k": 3}``);
            None keeps ``model.handle`` of the config (else the TF Hub default).
        config: a YAML config file, as ``--config``, or a JobConfig; None starts from the defaults.
        output_dir: the output folder (local or gs://), as ``--output``; None makes a new
            temporary folder.
        overwrite: replace an earlier run in ``output_dir``.
        **sections: config sections as mappings, applied over ``config``, e.g.
            ``sampling={"strategy": "fps", "fps": 4}``, ``output={"write_probs": True}`` (the
            ``output`` section's keys; its ``path`` is ``output_dir``),
            ``runner={"direct_running_mode": "multi_processing", "direct_num_workers": 2}``
            (``model`` is the argument above).

    Returns:
        A ``LabelResult`` with the ``videos``, ``frames`` and ``segments`` DataFrames
        (``split`` a column) and the output folder.

    Raises:
        ConfigError: a bad section, key, value, input, model handle or output, before any
            video is read (one line naming it).
    """
    from beam_pipeline.job.launcher import run_job
    from beam_pipeline.outputs.run_output import RunOutput

    output_dir = output_dir or tempfile.mkdtemp(prefix="videolabel-")
    inputs = [paths] if isinstance(paths, str) else list(paths)
    cfg = job_config(config, model, sections, {"input": {"paths": inputs}, "output": {"path": output_dir}},
                     DEFAULT_RUNNER)
    run_job(cfg, (), overwrite=overwrite)
    videos, frames, segments = RunOutput(output_dir).read_tables()
    return LabelResult(videos, frames, segments, output_dir)


def _as_ref(element, cfg: JobConfig):
    """A video URI (str) or VideoRef -> VideoRef (a URI's id and split as the listing gives them);
    anything else -> a VideoRef whose ``error`` says what it was (a failed row)."""
    from transforms.listing import ref_from_row
    from transforms.records import VideoRef
    from transforms.splits import UNLABELLED, stable_video_id

    if isinstance(element, VideoRef):
        return element
    if isinstance(element, str) and element.strip():
        return ref_from_row({"uri": element}, "", cfg.split.ratios, cfg.split.salt)
    # Not a video: a failed row that says so, never a failed pipeline.
    shown = repr(element)[:200]
    video_id = stable_video_id(shown)
    return VideoRef(video_id, shown, None, UNLABELLED,
                    error=f"LabelVideos input {shown}: not a video URI (str) or VideoRef "
                          f"({type(element).__name__})")


def _table_rows(rows, table: str) -> Iterator[dict[str, Any]]:
    """One video's ``VideoRows`` -> the rows of one of its tables as dicts, with ``split``."""
    batch = rows.tables.get(table)
    if batch is not None:
        for row in batch.to_pylist():
            yield {**row, "split": rows.split}


class LabelVideos(beam.PTransform):
    """Video URIs (str) or ``VideoRef``s -> ``{"videos", "frames", "segments"}``: PCollections of row
    dicts, the columns of the Parquet tables (``transforms.schema``) plus ``split``.

    The same decoding, guards, model handler, frame labels and rows as ``videolabel run``, without
    its listing and writer, so it composes with any source and sink::

        with beam.Pipeline() as p:
            rows = p | beam.Create(["clips/a.mp4", "clips/b.mp4"]) | LabelVideos(model="models_out/a0")
            rows["videos"] | beam.Map(print)

    Every input element ends as exactly one ``videos`` row: a video that cannot be read is a
    ``failed`` row with its error. ``frames`` is empty with ``output={"write_frames": False}``,
    ``segments`` with ``output={"write_segments": False}``.

    Args:
        config: a YAML config file, a JobConfig, or None for the defaults (``input``, ``output``
            and ``runner`` are not used: the pipeline is yours).
        model: a model handle (as ``--model``) or the ``model`` section as a mapping.
        **sections: config sections as mappings over ``config``, e.g. ``sampling={"fps": 4}``.

    Raises:
        ConfigError: a bad key or value, a model handle that does not exist, or labels that
            cannot be read: when the transform is made, before the pipeline runs.
    """

    TABLES = ("videos", "frames", "segments")

    def __init__(self, config: str | JobConfig | None = None, *, model: str | Mapping[str, Any] | None = None,
                 **sections: Mapping[str, Any]):
        from beam_pipeline.job.launcher import resolved_model

        super().__init__()
        self.cfg, self.handle, self.labels, self.stamp = resolved_model(job_config(config, model, sections))

    def expand(self, videos):
        from beam_pipeline.job.pipeline import video_rows
        from beam_pipeline.job.serving import serve

        cfg = self.cfg
        model = serve(cfg, self.handle, len(self.labels), videos.pipeline.options)
        refs = (videos
                | "ToRefs" >> beam.Map(_as_ref, cfg)
                | "Spread" >> beam.Reshuffle())
        branches = video_rows(refs, cfg, model=model, labels=self.labels, stamp=self.stamp)
        rows = tuple(branches.values()) | "AllVideos" >> beam.Flatten()
        return {table: rows | f"Rows/{table}" >> beam.FlatMap(_table_rows, table) for table in self.TABLES}


class TrainResult(NamedTuple):
    """What ``train`` returns.

    Attributes:
        results: results.json: test accuracy, per-split metrics, history, confusion matrix.
        model: the trained model's folder, a ``--model`` handle for ``label_videos`` and ``run``.
    """

    results: dict[str, Any]
    model: str


def train(manifest: str, output_dir: str | None = None, *, config: str | JobConfig | None = None,
          overwrite: bool = False, **sections: Mapping[str, Any]) -> TrainResult:
    """Trains a classifier on a labelled manifest, as ``videolabel train``.

    Args:
        manifest: a labelled manifest (.csv/.jsonl/.parquet, local or gs://) with ``uri``,
            ``label`` and ``split`` (train/valid[/test]) columns.
        output_dir: the folder for the features, the model and its results, as ``--output``;
            None makes a new temporary folder.
        config: a YAML config file or a JobConfig; None starts from the defaults.
        overwrite: replace an earlier training in ``output_dir``.
        **sections: config sections as mappings, e.g. ``model={"kind": "movinet"}``,
            ``train={"method": "finetune", "num_epochs": 20}``, ``sampling={"imgz": 64}``.

    Returns:
        A ``TrainResult``: results.json and the model folder.

    Raises:
        ConfigError: a bad section, key or value, manifest or checkpoint, before any video is read.
    """
    from beam_pipeline.training.train_job import run_train

    output_dir = output_dir or tempfile.mkdtemp(prefix="videolabel-train-")
    cfg = job_config(config, None, sections, default_runner=DEFAULT_RUNNER)
    results = run_train(cfg, manifest, output_dir, overwrite=overwrite)
    return TrainResult(results, output_dir)
