"""``label_videos``: a local videolabel run from Python, returning its tables as DataFrames.

It goes through the same code as ``videolabel run``: the config is loaded and validated
by ``beam_pipeline.config`` (a bad key raises the same one-line ``ConfigError``), and
``beam_pipeline.launcher.run_job`` runs the job, with its start-up checks, decoding
guards, model handler and rows. Only the runner default differs: without a ``runner``
section (in ``config`` or as a keyword) the job runs on DirectRunner ``in_memory`` in
this process, which starts fastest for a few videos.

Example::

    from beam_pipeline import label_videos

    result = label_videos("clips/*.mp4", "models_out/a0_stream", sampling={"strategy": "fps", "fps": 4})
    result.videos[["uri", "prediction", "score"]]
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pandas as pd

from beam_pipeline.config import ConfigError, apply_overrides, config_from_dict, read_yaml

__all__ = ["IN_MEMORY_RUNNER", "LabelResult", "label_videos"]

#: The runner section ``label_videos`` uses when none is given: one process, no workers to start.
IN_MEMORY_RUNNER: Mapping[str, Any] = {"runner": "DirectRunner", "direct_running_mode": "in_memory",
                                       "direct_num_workers": 1}


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


def _section_values(sections: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    for name, keys in sections.items():
        if not isinstance(keys, Mapping):
            raise ConfigError(f"{name}: a config section is a mapping of keys, e.g. "
                              f"{name}={{'key': value}} (got {keys!r})")
    return dict(sections)


def label_videos(paths: str | Sequence[str], model: str | Mapping[str, Any] | None = None, *,
                 config: str | None = None,
                 output: str | None = None, overwrite: bool = False,
                 **sections: Mapping[str, Any]) -> LabelResult:
    """Labels videos with a local videolabel run and returns its tables.

    Args:
        paths: a video path, glob (local or gs://) or manifest (.csv/.jsonl/.parquet), or a
            list of them; replaces ``input.paths``.
        model: a model handle, as ``--model``: a TF Hub URL, a SavedModel folder (local or
            gs://, e.g. from ``export-movinet``), a ``train`` output or a ``.tflite`` file;
            or the whole ``model`` section as a mapping (``{"handle": ..., "top_k": 3}``);
            None keeps ``model.handle`` of the config (else the TF Hub default).
        config: a YAML config file, as ``--config``; None starts from the defaults.
        output: the output folder (local or gs://); None makes a new temporary folder.
        overwrite: replace an earlier run in ``output``.
        **sections: config sections as mappings, applied over ``config``, e.g.
            ``sampling={"strategy": "fps", "fps": 4}``, ``output={"write_probs": True}``,
            ``runner={"direct_running_mode": "multi_processing", "direct_num_workers": 2}``
            (``model`` is the argument above).

    Returns:
        A ``LabelResult`` with the ``videos``, ``frames`` and ``segments`` DataFrames
        (``split`` a column) and the output folder.

    Raises:
        ConfigError: a bad section, key, value, input, model handle or output, before any
            video is read (one line naming it).
    """
    from beam_pipeline.app_data import RunOutput
    from beam_pipeline.launcher import run_job

    if isinstance(model, Mapping):
        sections, model = {**sections, "model": model}, None
    raw = apply_overrides(read_yaml(config) if config else {}, (), _section_values(sections))
    if not raw.get("runner"):
        raw["runner"] = dict(IN_MEMORY_RUNNER)
    output = output or tempfile.mkdtemp(prefix="videolabel-")
    inputs = [paths] if isinstance(paths, str) else list(paths)
    flags: dict[str, dict[str, Any]] = {"input": {"paths": inputs}, "output": {"path": output}}
    if model is not None:
        flags["model"] = {"handle": model}
    cfg = config_from_dict(apply_overrides(raw, (), flags))
    run_job(cfg, (), overwrite=overwrite)
    videos, frames, segments = RunOutput(output).read_tables()
    return LabelResult(videos, frames, segments, output)
