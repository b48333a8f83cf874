"""run_job: checks, the Beam run, the summary and ``_run.json``."""

from __future__ import annotations

import datetime
import json
import logging
import platform
import secrets
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from beam_pipeline.checks import check_inputs, prepare_output, resolve_handle, resolve_labels
from beam_pipeline.config import JobConfig
from beam_pipeline.options import pipeline_options
from beam_pipeline.pipeline import build_pipeline
from models.labels import write_labels
from transforms.aggregate import RunStamp
from transforms.schema import SCHEMA_VERSION

__all__ = ["run_job", "RUN_FILE"]

RUN_FILE = "_run.json"
_log = logging.getLogger(__name__)
_PACKAGES = ("apache-beam", "tensorflow", "tf-keras", "tensorflow-hub", "av", "pyarrow", "numpy")


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("videolabel", *_PACKAGES):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _new_run_id() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _counters(result) -> dict[str, int]:
    """Sums of the ``videolabel`` counters over all steps."""
    totals: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace("videolabel"))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals


def run_job(cfg: JobConfig, beam_args: Sequence[str] = (), *, overwrite: bool = False) -> dict[str, Any]:
    """Runs the labelling job to completion and returns what ``_run.json`` holds.

    Raises:
        ConfigError: a bad input, model handle, labels file, output folder or flag,
            before any video is read.
    """
    options = pipeline_options(cfg.runner, beam_args)
    check_inputs(cfg.input.paths)
    handle = resolve_handle(cfg)
    labels = resolve_labels(cfg, handle)
    prepare_output(cfg.output.path, overwrite)

    run_id = _new_run_id()
    stamp = RunStamp(model=handle, config_hash=cfg.job_hash(), run_id=run_id)
    write_labels(FileSystems.join(cfg.output.path, "labels.txt"), labels)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    _log.info("run %s: model %s, %d labels, output %s", run_id, handle, len(labels), cfg.output.path)

    p = beam.Pipeline(options=options)
    build_pipeline(p, cfg, handle=handle, labels=labels, stamp=stamp)
    result = p.run()
    result.wait_until_finish()
    wall_s = time.monotonic() - t0

    counts = _counters(result)
    videos = sum(counts.get(f"videos_{s}", 0) for s in ("ok", "partial", "failed"))
    summary = {
        "run_id": run_id,
        "schema_version": SCHEMA_VERSION,
        "started_at": started.isoformat(),
        "wall_s": round(wall_s, 3),
        "videos_per_s": round(videos / wall_s, 4) if wall_s else None,
        "model": {"handle": handle, "num_labels": len(labels), "mode": cfg.model.model_mode,
                  "model_id": cfg.model.model_id},
        "config_hash": stamp.config_hash,
        "config": cfg.to_dict(),
        "beam_args": list(beam_args),
        "counts": {"videos": videos, **counts},
        "versions": _versions(),
    }
    with FileSystems.create(FileSystems.join(cfg.output.path, RUN_FILE)) as handle_out:
        handle_out.write(json.dumps(summary, indent=2, default=str).encode("utf-8"))
    return summary
