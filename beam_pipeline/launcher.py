"""run_job: checks, the Beam run, the summary and ``_run.json``."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import platform
import secrets
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DebugOptions, DirectOptions, StandardOptions
from google.protobuf import json_format

from beam_pipeline.checks import (
    check_inputs,
    check_output_location,
    prepare_output,
    resolve_handle,
    resolve_labels,
)
from beam_pipeline.config import ConfigError, JobConfig
from beam_pipeline.dataflow import check_dataflow, dry_run_summary, is_dataflow, is_dry_run
from beam_pipeline.options import pipeline_options
from beam_pipeline.pipeline import build_pipeline, input_mode
from beam_pipeline.resume import prepare_resume
from models.labels import write_labels
from transforms.aggregate import SPLIT_COUNTER_PREFIX, RunStamp
from transforms.listing import video_ids
from transforms.progress import ProgressLine, worker_summary
from transforms.schema import SCHEMA_VERSION

__all__ = ["RUN_FILE", "new_run_id", "pipeline_metrics", "run_job"]

RUN_FILE = "_run.json"
_log = logging.getLogger(__name__)
_LOCAL_RUNNERS = ("DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner", "PrismRunner",
                  "direct", "prism")
_PACKAGES = ("apache-beam", "tensorflow", "tf-keras", "tensorflow-hub", "av", "pyarrow", "numpy")


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("videolabel", *_PACKAGES):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def new_run_id() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _is_local(options) -> bool:
    """Whether the runner runs the workers on this machine (so the progress line can see them)."""
    runner = options.view_as(StandardOptions).runner
    return runner is None or runner.split(".")[-1] in _LOCAL_RUNNERS


def _steady_figures(workers: dict[str, Any] | None, started_at: float) -> dict[str, Any]:
    """Local runs: the rate once the workers are up, the time to the first finished video, and the
    worker processes (with their pinned cores); empty for remote runners."""
    if workers is None:
        return {}
    first, steady = workers["first_done_at"], workers["steady_videos_per_s"]
    return {"steady_videos_per_s": round(steady, 3) if steady else None,
            "startup_s": round(first - started_at, 3) if first else None,
            "worker_processes": workers["processes"], "pinned_cores": workers["pinned_cores"]}


def _pins_cores(cfg: JobConfig, options) -> bool:
    """Whether the workers are local processes of one TF and one FFmpeg thread each, to pin to a core each."""
    mode = options.view_as(DirectOptions).direct_running_mode
    return (cfg.model.pin_workers and cfg.model.tf_threads == 1 and cfg.sampling.decode_threads == 1
            and _is_local(options) and mode == "multi_processing")


def _write_job_file(result, path: str) -> None:
    """Writes a dry run's job to ``--dataflow_job_file`` (Beam skips that file in a dry run):
    ``{"job": Beam's job JSON, "pipeline": the pipeline Dataflow gets, staged as pipeline.pb}``."""
    document = {"job": json.loads(result.job.json() or "{}"),
                "pipeline": json.loads(json_format.MessageToJson(result.job.proto_pipeline))}
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(document, indent=1).encode("utf-8"))


def _dry_run(cfg: JobConfig, options, handle: str, labels: Sequence[str], resume: bool) -> dict[str, Any]:
    """Builds the job without running it (``--dry_run=True``); prints and returns what it would do.

    Read-only: nothing is written to the output, and a ``resume`` dry run builds the
    resume graph (which reads the done videos itself) without trimming the output.
    With ``--dataflow_job_file=PATH`` the job and its pipeline are written to PATH.
    """
    p = beam.Pipeline(options=options)
    build_pipeline(p, cfg, handle=handle, labels=labels, resume=resume,
                   stamp=RunStamp(model=handle, config_hash=cfg.job_hash(), run_id="dry-run"))
    if not is_dataflow(options):
        p.to_runner_api()  # the whole graph, built and checked; a local runner would run it
        return {"dry_run": True, "note": "only DataflowRunner builds a job without running it; "
                                         "the graph was built, nothing was run"}
    result = p.run()
    summary = dry_run_summary(result, options)
    print(f"dry run: Dataflow job {summary['job_name']!r} in {summary['project']}/{summary['region']} "
          f"built, not submitted; labels {summary['labels']}")
    for env in summary["environments"]:
        print(f"  workers: image {env['image']}, accelerator {env['accelerator'] or 'none'}"
              + (f", staged {', '.join(env['staged'])}" if env["staged"] else ""))
    print(f"  accelerator steps: {', '.join(summary['accelerator_steps']) or 'none'}")
    summary["graph_bytes"] = len(result.job.proto_pipeline.SerializeToString())
    job_file = options.view_as(DebugOptions).dataflow_job_file
    if job_file:
        _write_job_file(result, job_file)
    print(f"  job graph: {summary['graph_bytes']:,} bytes (Dataflow takes up to 10 MB)"
          + (f"; written to {job_file}" if job_file else ""))
    return summary


def pipeline_metrics(result) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """The ``videolabel`` counters (name -> total) and distributions (name -> (count, sum)), all steps."""
    queried = result.metrics().query(MetricsFilter().with_namespace("videolabel"))
    counters: dict[str, int] = {}
    for counter in queried["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + int(value or 0)
    distributions: dict[str, tuple[int, int]] = {}
    for dist in queried["distributions"]:
        value = dist.committed if dist.committed is not None else dist.attempted
        if value is not None:
            count, total = distributions.get(dist.key.metric.name, (0, 0))
            distributions[dist.key.metric.name] = (count + value.count, total + value.sum)
    return counters, distributions


def _per_s(count: int, wall_s: float) -> float | None:
    return round(count / wall_s, 3) if wall_s else None


def _timings(distributions: dict[str, tuple[int, int]], mode: str) -> dict[str, Any]:
    """Seconds per stage, summed over workers, and the mean per unit.

    ``model`` is RunInference's batch latency; in stream mode frames are decoded
    inside the model step, so the decode time is taken out of it.
    """
    decode_n, decode_ms = distributions.get("decode_ms", (0, 0))
    batches, model_us = distributions.get("inference_batch_latency_micro_secs", (0, 0))
    writes, write_ms = distributions.get("write_ms", (0, 0))
    model_s = model_us / 1e6 - (decode_ms / 1e3 if mode == "stream" else 0.0)
    return {
        "stage_s": {"decode": round(decode_ms / 1e3, 3), "model": round(max(model_s, 0.0), 3),
                    "write": round(write_ms / 1e3, 3)},
        "mean_ms": {"decode_per_video": round(decode_ms / decode_n, 1) if decode_n else None,
                    "model_per_batch": round(model_us / 1e3 / batches, 1) if batches else None,
                    "write_per_file": round(write_ms / writes, 1) if writes else None},
    }


def run_job(cfg: JobConfig, beam_args: Sequence[str] = (), *, overwrite: bool = False,
            resume: bool = False) -> dict[str, Any]:
    """Runs the labelling job to completion and returns what ``_run.json`` holds.

    With ``resume``, videos an earlier run into the same output finished with the
    same config hash and model are kept and skipped (see ``beam_pipeline.resume``):
    the output is trimmed here first, then the job reads the done ids itself, so the
    graph stays small; the ids read here serve only the printout and the progress total.

    Raises:
        ConfigError: a bad input, model handle, labels file, output folder or flag,
            before any video is read.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite: choose one (resume keeps finished videos, "
                          "overwrite deletes them)")
    options = pipeline_options(cfg.runner, beam_args)
    check_dataflow(cfg, options)
    check_inputs(cfg.input.paths)
    check_output_location(cfg.output.path)
    handle = resolve_handle(cfg)
    labels = resolve_labels(cfg, handle)
    if is_dry_run(options):
        return _dry_run(cfg, options, handle, labels, resume)
    state = None
    if resume:
        state = prepare_resume(cfg.output.path, cfg.job_hash(), handle)
        print(f"resuming in {cfg.output.path}: {len(state.done)} videos done and kept; "
              f"{state.dropped_rows} failed, partial or changed rows dropped, to be redone")
    else:
        prepare_output(cfg.output.path, overwrite)

    run_id = new_run_id()
    stamp = RunStamp(model=handle, config_hash=cfg.job_hash(), run_id=run_id)
    write_labels(FileSystems.join(cfg.output.path, "labels.txt"), labels)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    _log.info("run %s: model %s, %d labels, output %s", run_id, handle, len(labels), cfg.output.path)

    with tempfile.TemporaryDirectory(prefix="videolabel-progress-") as progress_dir:
        local = _is_local(options)
        p = beam.Pipeline(options=options)
        build_pipeline(p, cfg, handle=handle, labels=labels, stamp=stamp, resume=resume,
                       progress_dir=progress_dir if local else None, pin_cores=_pins_cores(cfg, options))
        progress = contextlib.nullcontext()
        if local:
            total = len(video_ids(cfg.input.paths, cfg.input.extensions) - (state.done if state else set()))
            progress = ProgressLine(progress_dir, total)
        with progress:
            result = p.run()
            result.wait_until_finish()
        workers = worker_summary(progress_dir) if local else None
    wall_s = time.monotonic() - t0

    counts, distributions = pipeline_metrics(result)
    videos = sum(counts.get(f"videos_{s}", 0) for s in ("ok", "partial", "failed"))
    summary = {
        "run_id": run_id,
        "schema_version": SCHEMA_VERSION,
        "started_at": started.isoformat(),
        "wall_s": round(wall_s, 3),
        "model": {"handle": handle, "num_labels": len(labels), "mode": cfg.model.model_mode,
                  "model_id": cfg.model.model_id},
        "config_hash": stamp.config_hash,
        "config": cfg.to_dict(),
        "beam_args": list(beam_args),
        "counts": {"videos": videos, **counts},
        "splits": {"ratios": dict(cfg.split.ratios), "salt": cfg.split.salt,
                   "videos": {k[len(SPLIT_COUNTER_PREFIX):]: v for k, v in sorted(counts.items())
                              if k.startswith(SPLIT_COUNTER_PREFIX)}},
        "timings": _timings(distributions, input_mode(cfg)),
        "throughput": {"videos_per_s": _per_s(videos, wall_s),
                       "frames_per_s": _per_s(counts.get("frames_sampled", 0), wall_s),
                       **_steady_figures(workers, started.timestamp())},
        "versions": _versions(),
    }
    if state:
        summary["resume"] = {"kept_videos": len(state.done), "dropped_rows": state.dropped_rows,
                             "removed_files": state.removed_files, "previous_runs": list(state.previous_runs)}
    with FileSystems.create(FileSystems.join(cfg.output.path, RUN_FILE)) as handle_out:
        handle_out.write(json.dumps(summary, indent=2, default=str).encode("utf-8"))
    return summary
