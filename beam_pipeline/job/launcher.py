"""run_job: checks, the Beam run, the summary and ``_run.json``, in three steps.

``prepare`` checks everything before a video is read and makes the output ready;
``execute`` runs the job (with the progress line on local runners) and reads its
metrics; ``record`` folds what the run left into the ``RunRecord`` written as
``_run.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricResults
from apache_beam.options.pipeline_options import DebugOptions, DirectOptions, PipelineOptions
from google.protobuf import json_format

from beam_pipeline.config import ConfigError, JobConfig
from beam_pipeline.job import warm_workers
from beam_pipeline.job.checks import (
    check_inputs,
    check_output_location,
    fitted_to_model,
    resolve_handle,
    resolve_labels,
)
from beam_pipeline.job.dataflow import check_dataflow, dry_run_summary, is_dataflow, is_dry_run
from beam_pipeline.job.flink.checks import check_flink, is_flink, workers_here
from beam_pipeline.job.flink.runner import FlinkRunner
from beam_pipeline.job.local_mode import LocalMode, is_local, job_work, resolve, usable_cores
from beam_pipeline.job.local_runner import loopback_off_proxies
from beam_pipeline.job.options import pipeline_options
from beam_pipeline.job.pipeline import build_pipeline
from beam_pipeline.job.resume import ResumeState, prepare_resume
from beam_pipeline.job.serving import ServedModel, serve
from beam_pipeline.outputs.ledger import RUN_WRITES, check_output, check_output_apart, prepare_output
from beam_pipeline.outputs.run_record import (
    ModelInfo,
    ResumeInfo,
    RunRecord,
    SkippedFiles,
    Splits,
    Throughput,
    Timings,
    new_run_id,
    pipeline_metrics,
    pipeline_strings,
)
from models.labels import write_labels
from models.weights_note import random_weights_warning
from transforms import metrics
from transforms.aggregate import RunStamp
from transforms.progress import ProgressLine, worker_summary
from transforms.schema import SCHEMA_VERSION

__all__ = ["ExecutedRun", "PreparedRun", "execute", "prepare", "record", "resolved_model", "run_job",
           "run_with_progress"]

_log = logging.getLogger(__name__)
_PACKAGES = ("apache-beam", "tensorflow", "tf-keras", "tensorflow-hub", "ai-edge-litert", "av", "pyarrow",
             "numpy")


@dataclasses.dataclass(frozen=True)
class PreparedRun:
    """A checked job, ready to run.

    Attributes:
        cfg: the validated job config.
        beam_args: the Beam flags as given.
        options: the PipelineOptions built from ``cfg.runner`` and ``beam_args``.
        model: the model that serves the run, decided once here (``beam_pipeline.job.serving``):
            its handle (stamped on the rows), the file the workers load, runtime, batching and
            what a frame label is.
        labels: the class names in the model's output order.
        stamp: model, config hash and this run's id, stamped on video rows.
        resume: ``--resume``: the job leaves out the videos the output holds done.
        local: how a local run uses the machine (``job.local_mode``); None for a remote runner.
        kept: what resuming found and kept in the output (None before ``prepare`` made the output
            ready, and when not resuming).
    """

    cfg: JobConfig
    beam_args: tuple[str, ...]
    options: PipelineOptions
    model: ServedModel
    labels: tuple[str, ...]
    stamp: RunStamp
    resume: bool
    local: LocalMode | None = None
    kept: ResumeState | None = None


@dataclasses.dataclass(frozen=True)
class ExecutedRun:
    """What a finished run left.

    Attributes:
        started_at: when the job started (UTC).
        wall_s: seconds from the start to the finish.
        counters: the ``videolabel`` counters, name -> total.
        distributions: the ``videolabel`` distributions, name -> (count, sum).
        workers: local runs: ``transforms.progress.worker_summary`` of the worker processes; else None.
        skipped_examples: a few of the glob matches left out by their ending (``metrics.SKIPPED_EXAMPLES``).
    """

    started_at: datetime.datetime
    wall_s: float
    counters: dict[str, int]
    distributions: dict[str, tuple[int, int]]
    workers: dict[str, Any] | None
    skipped_examples: tuple[str, ...] = ()


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("videolabel", *_PACKAGES):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _pins_cores(cfg: JobConfig, options: PipelineOptions) -> bool:
    """Whether the workers are processes of one TF and one FFmpeg thread each, to pin to a core each: local
    ``multi_processing`` workers, and Flink's SDK workers (a process per slot, a slot per core; each
    machine's cores are claimed on that machine, ``transforms.cores``)."""
    mode = options.view_as(DirectOptions).direct_running_mode
    return (cfg.model.pin_workers and cfg.model.tf_threads == 1 and cfg.sampling.decode_threads == 1
            and (is_local(options) and mode == "multi_processing" or is_flink(options)))


def _write_job_file(result, path: str) -> None:
    """Writes a dry run's job to ``--dataflow_job_file`` (Beam skips that file in a dry run):
    ``{"job": Beam's job JSON, "pipeline": the pipeline Dataflow gets, staged as pipeline.pb}``."""
    document = {"job": json.loads(result.job.json() or "{}"),
                "pipeline": json.loads(json_format.MessageToJson(result.job.proto_pipeline))}
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(document, indent=1).encode("utf-8"))


def _dry_run(run: PreparedRun) -> dict[str, Any]:
    """Builds the job without running it (``--dry_run=True``); prints and returns what it would do.

    Read-only: nothing is written to the output, and a ``resume`` dry run builds the
    resume graph (which reads the done videos itself) without trimming the output.
    With ``--dataflow_job_file=PATH`` the job and its pipeline are written to PATH.
    """
    p = beam.Pipeline(options=run.options)
    build_pipeline(p, run.cfg, model=run.model, labels=run.labels, resume=run.resume, stamp=run.stamp)
    if not is_dataflow(run.options):
        p.to_runner_api()  # the whole graph, built and checked; a local runner would run it
        return {"dry_run": True, "note": "only DataflowRunner builds a job without running it; "
                                         "the graph was built, nothing was run"}
    result = p.run()
    summary = dry_run_summary(result, run.options)
    print(f"dry run: Dataflow job {summary['job_name']!r} in {summary['project']}/{summary['region']} "
          f"built, not submitted; labels {summary['labels']}")
    for env in summary["environments"]:
        print(f"  workers: image {env['image']}, accelerator {env['accelerator'] or 'none'}"
              + (f", staged {', '.join(env['staged'])}" if env["staged"] else ""))
    print(f"  accelerator steps: {', '.join(summary['accelerator_steps']) or 'none'}")
    summary["graph_bytes"] = len(result.job.proto_pipeline.SerializeToString())
    job_file = run.options.view_as(DebugOptions).dataflow_job_file
    if job_file:
        _write_job_file(result, job_file)
    print(f"  job graph: {summary['graph_bytes']:,} bytes (Dataflow takes up to 10 MB)"
          + (f"; written to {job_file}" if job_file else ""))
    return summary


class ResolvedModel(NamedTuple):
    """The config as the model can honour it (``checks.fitted_to_model``), the model handle (checked),
    its labels, and a new run's stamp (model, config hash, run id)."""

    cfg: JobConfig
    handle: str
    labels: tuple[str, ...]
    stamp: RunStamp


def resolved_model(cfg: JobConfig) -> ResolvedModel:
    """Resolves and checks the model of ``cfg`` (``ResolvedModel``).

    Raises:
        ConfigError: the model handle or the labels file cannot be used.
    """
    handle = resolve_handle(cfg)
    cfg = fitted_to_model(cfg, handle)
    labels = tuple(resolve_labels(cfg, handle))
    return ResolvedModel(cfg, handle, labels, RunStamp(model=handle, config_hash=cfg.job_hash(),
                                                       run_id=new_run_id()))


_AGAIN = ", --resume to finish it"  # what else a refused earlier run can do


def _read_paths(cfg: JobConfig) -> list[str]:
    """The model, labels and pose files a run reads besides its inputs (those set)."""
    paths = [cfg.model.handle, cfg.model.labels]
    if cfg.model.kind == "lstm":
        paths.append(cfg.pose.handle)
    return [p for p in paths if p]


def _checked(cfg: JobConfig, beam_args: Sequence[str], *, overwrite: bool, resume: bool) -> PreparedRun:
    """The start-up checks (flags, Dataflow settings, inputs, output location, model, labels); reads
    what they need and writes nothing.

    Raises:
        ConfigError: the first problem found, in one line that names the bad value.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite: choose one (resume keeps finished videos, "
                          "overwrite deletes them)")
    check_output_apart(cfg.output.path, cfg.input.paths, _read_paths(cfg))
    options = pipeline_options(cfg.runner, beam_args)
    check_dataflow(cfg, options)
    options = check_flink(cfg, options, usable_cores())
    check_inputs(cfg.input.paths)
    local = resolve(options, lambda: job_work(cfg))
    if local is not None and local.mode == "multi_processing":
        warm_workers.start()  # the CLI started it already, as early as it could
    else:
        warm_workers.stop(at_once=True)
    check_output_location(cfg.output.path)
    check_output(cfg.output.path, RUN_WRITES, overwrite=overwrite, resume=resume, again=_AGAIN)
    cfg, handle, labels, stamp = resolved_model(cfg)
    model = serve(cfg, handle, len(labels), options)
    if model.random_weights:
        _log.warning(random_weights_warning(handle))
    return PreparedRun(cfg, tuple(beam_args), options, model, labels, stamp, resume, local)


def prepare(run: PreparedRun, *, overwrite: bool) -> PreparedRun:
    """Makes the output ready for ``run``: trimmed to the videos done and kept (``resume``), else
    emptied (with ``overwrite``) or checked empty; then writes ``labels.txt``.

    Returns:
        ``run`` with ``kept`` set when resuming.

    Raises:
        ConfigError: the output holds an earlier run and neither ``resume`` nor ``overwrite`` is set.
    """
    root = run.cfg.output.path
    kept = None
    if run.resume:
        kept = prepare_resume(root, run.stamp.config_hash, run.model.handle, run.stamp.run_id)
        print(f"resuming in {root}: {len(kept.done)} videos done and kept; "
              f"{kept.dropped_rows} failed, partial or changed rows dropped, to be redone")
    else:
        prepare_output(root, RUN_WRITES, run.stamp.run_id, overwrite=overwrite, again=_AGAIN)
    write_labels(FileSystems.join(root, "labels.txt"), run.labels)
    return dataclasses.replace(run, kept=kept)


@contextlib.contextmanager
def _progress_folder(local: bool) -> Iterator[str | None]:
    """Local runs: a temporary folder the workers note the total and each finished video in; else None."""
    if not local:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="videolabel-progress-") as folder:
        yield folder


def run_with_progress(options: PipelineOptions, build: Callable[[beam.Pipeline, str | None], Any]
                      ) -> tuple[MetricResults, dict | None]:
    """Builds a pipeline with ``build(p, progress_dir)`` and runs it to completion, showing the progress
    line (``transforms.progress.ProgressLine``) where the workers run on this machine (local runners,
    Flink embedded or on loopback).

    ``progress_dir`` is the folder the workers note the total and each finished video in (workers on
    this machine), else None.

    Returns:
        The finished run's metrics (``PipelineResult.metrics()``, read before a Flink run's job server
        stops with the run), and ``worker_summary`` of its workers (None when not local).
    """
    local = is_local(options) or workers_here(options)
    with _progress_folder(local) as folder, loopback_off_proxies() if local else contextlib.nullcontext():
        p = beam.Pipeline(options=options)
        build(p, folder)
        try:
            with ProgressLine(folder) if folder else contextlib.nullcontext():
                result = p.run()
                result.wait_until_finish()
            finished = result.metrics()
        finally:
            if isinstance(p.runner, FlinkRunner):
                p.runner.stop_job_server()
        return finished, worker_summary(folder) if folder else None


def execute(run: PreparedRun) -> ExecutedRun:
    """Builds and runs the job to completion, with the progress line on local runners."""
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    _log.info("run %s: model %s, %d labels, output %s%s", run.stamp.run_id, run.model.handle, len(run.labels),
              run.cfg.output.path, f"; {run.local}" if run.local else "")
    finished, workers = run_with_progress(run.options, lambda p, folder: build_pipeline(
        p, run.cfg, model=run.model, labels=run.labels, stamp=run.stamp, resume=run.resume,
        progress_dir=folder, pin_cores=_pins_cores(run.cfg, run.options)))
    counters, distributions = pipeline_metrics(finished)
    skipped = tuple(pipeline_strings(finished, metrics.SKIPPED_EXAMPLES))
    return ExecutedRun(started, time.monotonic() - t0, counters, distributions, workers, skipped)


def _per_s(count: int, wall_s: float) -> float | None:
    return round(count / wall_s, 3) if wall_s else None


def _throughput(done: ExecutedRun, videos: int, mode: LocalMode | None) -> Throughput:
    """Videos and frames per wall second; local runs add the rate once the workers are up, the time to
    the first finished video, the worker processes (with their pinned cores) and the running mode."""
    local: dict[str, Any] = {}
    if mode is not None:
        local = {"running_mode": mode.mode, "running_mode_reason": mode.reason}
    if done.workers is not None:
        first, steady = done.workers["first_done_at"], done.workers["steady_videos_per_s"]
        local |= {"steady_videos_per_s": round(steady, 3) if steady else None,
                  "startup_s": round(first - done.started_at.timestamp(), 3) if first else None,
                  "worker_processes": done.workers["processes"], "pinned_cores": done.workers["pinned_cores"],
                  "steady_window": done.workers["steady_window"],
                  "steady_window_videos": done.workers["steady_window_videos"]}
    return Throughput(videos_per_s=_per_s(videos, done.wall_s),
                      frames_per_s=_per_s(done.counters.get(metrics.FRAMES_SAMPLED, 0), done.wall_s), **local)


def record(run: PreparedRun, done: ExecutedRun) -> RunRecord:
    """The run's ``RunRecord``: config, model, counts, splits, timings, throughput, versions, and what
    resuming kept."""
    cfg, counters, kept = run.cfg, done.counters, run.kept
    videos = sum(counters.get(f"videos_{s}", 0) for s in ("ok", "partial", "failed"))
    optional: dict[str, Any] = {}  # written only when set (``RunRecord``)
    if kept is not None:
        optional["resume"] = ResumeInfo(kept_videos=len(kept.done), dropped_rows=kept.dropped_rows,
                                        removed_files=kept.removed_files, previous_runs=kept.previous_runs)
    skipped = SkippedFiles.of(counters, list(done.skipped_examples))
    if skipped is not None:
        optional["skipped"] = skipped
    return RunRecord(
        run_id=run.stamp.run_id, schema_version=SCHEMA_VERSION, started_at=done.started_at.isoformat(),
        wall_s=round(done.wall_s, 3),
        model=ModelInfo(handle=run.model.handle, num_labels=len(run.labels), mode=cfg.model.model_mode,
                        model_id=cfg.model.model_id, served=run.model.path, runtime=run.model.runtime,
                        frame_labels=run.model.frame_labels,
                        **({"weights": "random"} if run.model.random_weights else {}),
                        **({"pose": run.model.pose} if run.model.pose else {}),
                        **({"embedding_width": run.model.embedding_width}
                           if run.model.embedding_width else {})),
        config_hash=run.stamp.config_hash, config=cfg.to_dict(), beam_args=run.beam_args,
        counts={"videos": videos, **counters},
        splits=Splits(ratios=dict(cfg.split.ratios), salt=cfg.split.salt,
                      videos={k[len(metrics.SPLIT_PREFIX):]: v for k, v in sorted(counters.items())
                              if k.startswith(metrics.SPLIT_PREFIX)}),
        timings=Timings.from_distributions(done.distributions),
        throughput=_throughput(done, videos, run.local),
        versions=_versions(), **optional)


def run_job(cfg: JobConfig, beam_args: Sequence[str] = (), *, overwrite: bool = False,
            resume: bool = False) -> RunRecord | dict[str, Any]:
    """Runs the labelling job to completion, writes ``_run.json`` and returns its record.

    With ``resume``, videos an earlier run into the same output finished with the
    same config hash and model are kept and skipped (see ``beam_pipeline.job.resume``):
    the output is trimmed here first, then the job reads the done ids itself, so the
    graph stays small. With ``--dry_run=True`` the job is only built: nothing is
    written, and the returned mapping says what would run (``_dry_run``).

    Raises:
        ConfigError: a bad input, model handle, labels file, output folder or flag,
            before any video is read.
    """
    run = _checked(cfg, beam_args, overwrite=overwrite, resume=resume)
    if is_dry_run(run.options):
        return _dry_run(run)
    try:
        run = prepare(run, overwrite=overwrite)
        done = execute(run)
    finally:
        warm_workers.stop()
    summary = record(run, done)
    summary.write(cfg.output.path)
    return summary
