"""What a run records: its id, its ``videolabel`` Beam metrics, and ``_run.json`` as one typed record.

``videolabel run`` writes ``OUTPUT/_run.json`` from a ``RunRecord``; the report,
the end-of-run summary and the tests read it back through ``RunRecord.read``.
``videolabel train`` shares the run ids and the metrics query.
"""

from __future__ import annotations

import datetime
import json
import secrets
from typing import Any

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from pydantic import BaseModel, ConfigDict

from transforms import metrics

__all__ = ["RUN_FILE", "MeanMs", "ModelInfo", "ResumeInfo", "RunRecord", "Splits", "StageSeconds",
           "SkippedFiles", "Throughput", "Timings", "new_run_id", "pipeline_metrics", "pipeline_strings"]

RUN_FILE = "_run.json"


def new_run_id() -> str:
    """A run id: the UTC start time and 6 random hex digits, e.g. ``20260101T120000Z-a1b2c3``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def pipeline_metrics(results) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """The ``videolabel`` counters (name -> total) and distributions (name -> (count, sum)) of a
    finished run's ``MetricResults`` (``PipelineResult.metrics()``), summed over all steps (committed
    values where the runner has them)."""
    queried = results.query(MetricsFilter().with_namespace(metrics.NAMESPACE))
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


def pipeline_strings(results, name: str) -> list[str]:
    """The strings of the ``videolabel`` string set ``name`` of a finished run's ``MetricResults``, sorted."""
    found: set[str] = set()
    for string_set in results.query(MetricsFilter().with_namespace(metrics.NAMESPACE)
                                    .with_name(name))["string_sets"]:
        value = string_set.committed if string_set.committed is not None else string_set.attempted
        found.update(getattr(value, "string_set", value) or ())
    return sorted(found)


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelInfo(_Part):
    """The model a run labelled with: resolved handle, number of labels, MoViNet mode and variant,
    what ran it (``runtime``, ``tf`` or ``litert``, on ``served``: the handle, or its LiteRT file),
    and what a frame's label is (``frame_labels``, see ``beam_pipeline.job.serving.frame_labels``).
    ``weights`` is ``random`` for a model exported with random weights (``models.weights_note``),
    written only then; ``pose``, for the pose LSTM, the MoveNet its workers loaded;
    ``embedding_width``, with ``output.write_embeddings``, the floats in each ``embedding``."""

    handle: str
    num_labels: int
    mode: str
    model_id: str
    runtime: str = "tf"
    served: str | None = None
    frame_labels: str = "clip"
    weights: str | None = None
    pose: str | None = None  # model.kind lstm: the MoveNet the workers loaded (a TF Hub model's copy)
    embedding_width: int | None = None

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"


class Splits(_Part):
    """The hash-split settings, and the videos each split got (``videos_split_<name>`` counters)."""

    ratios: dict[str, float]
    salt: str
    videos: dict[str, int]


class StageSeconds(_Part):
    """Seconds per stage, summed over workers: probing and decoding (CPU in the decoder process),
    frames crossing from it to the worker (CPU, both sides), model calls only, building rows, and
    writing part files. Beam's own share of a worker is what these leave out."""

    probe: float = 0.0
    decode: float
    transfer: float = 0.0
    model: float
    aggregate: float = 0.0
    write: float


class MeanMs(_Part):
    """Mean milliseconds per unit of each stage; None where the stage recorded nothing."""

    probe_per_video: float | None = None
    decode_per_video: float | None
    transfer_per_video: float | None = None
    model_per_video: float | None
    aggregate_per_video: float | None = None
    write_per_file: float | None


def _mean(total_ms: int, count: int) -> float | None:
    return round(total_ms / count, 2) if count else None


# (the stage, its distribution, its mean's unit), in the order a video meets them
_STAGES = (("probe", metrics.PROBE_MS, "per_video"), ("decode", metrics.DECODE_MS, "per_video"),
           ("transfer", metrics.TRANSFER_MS, "per_video"), ("model", metrics.MODEL_MS, "per_video"),
           ("aggregate", metrics.AGGREGATE_MS, "per_video"), ("write", metrics.WRITE_MS, "per_file"))


class Timings(_Part):
    """Where the workers' time went: ``stage_s`` totals and ``mean_ms`` per unit."""

    stage_s: StageSeconds
    mean_ms: MeanMs

    @classmethod
    def from_distributions(cls, distributions: dict[str, tuple[int, int]]) -> Timings:
        """Folds the per-video distributions (``probe_ms``, ``decode_ms``, ``transfer_ms``, ``model_ms``,
        ``aggregate_ms``) and the per-file ``write_ms`` ((count, sum of ms), as ``pipeline_metrics``
        gives them); a stage that recorded nothing is 0 s."""
        folded = {stage: (unit, *distributions.get(name, (0, 0))) for stage, name, unit in _STAGES}
        return cls(stage_s=StageSeconds(**{stage: round(total / 1e3, 3)
                                           for stage, (_, _, total) in folded.items()}),
                   mean_ms=MeanMs(**{f"{stage}_{unit}": _mean(total, count)
                                     for stage, (unit, count, total) in folded.items()}))


class Throughput(_Part):
    """Videos and frames per second of wall time; local runs add the worker figures (absent otherwise)."""

    videos_per_s: float | None
    frames_per_s: float | None
    steady_videos_per_s: float | None = None
    startup_s: float | None = None
    worker_processes: int | None = None
    # epoch seconds from when every worker had finished a video to when the first finished its last,
    # and the videos finished in it (``transforms.progress.worker_summary``)
    steady_window: tuple[float, float] | None = None
    steady_window_videos: int | None = None
    pinned_cores: tuple[int, ...] | None = None
    running_mode: str | None = None  # Beam's direct_running_mode of a local run
    running_mode_reason: str | None = None  # "set", or what ``direct_running_mode: auto`` measured


class SkippedFiles(_Part):
    """Glob matches left out because ``input.extensions`` does not hold their ending."""

    count: int
    extensions: dict[str, int]  # ending (".mp3"; "none": no ending) -> files
    examples: tuple[str, ...]  # a few of them, sorted

    @classmethod
    def of(cls, counters: dict[str, int], examples: list[str]) -> SkippedFiles | None:
        """From the run's counters (``metrics.SKIPPED_PREFIX``) and names; None if nothing was skipped."""
        extensions = {name[len(metrics.SKIPPED_PREFIX):]: count for name, count in sorted(counters.items())
                      if name.startswith(metrics.SKIPPED_PREFIX) and count}
        if not extensions:
            return None
        return cls(count=sum(extensions.values()), extensions=extensions, examples=tuple(examples[:10]))


class ResumeInfo(_Part):
    """What ``--resume`` kept of the output, and the earlier runs it kept rows of."""

    kept_videos: int
    dropped_rows: int
    removed_files: int
    previous_runs: tuple[str, ...]


class RunRecord(_Part):
    """``OUTPUT/_run.json``: one finished ``videolabel run``.

    Fields with a default (``throughput``'s local figures, ``resume``, ``skipped``) are
    written only when set, so a remote run's file has no worker figures, a fresh run's
    none of ``resume``, and a run that left no file out by its ending no ``skipped``.
    """

    run_id: str
    schema_version: int
    started_at: str  # ISO 8601, UTC
    wall_s: float
    model: ModelInfo
    config_hash: str
    config: dict[str, Any]
    beam_args: tuple[str, ...]
    counts: dict[str, int]  # "videos" (all statuses), then every videolabel counter
    splits: Splits
    timings: Timings
    throughput: Throughput
    versions: dict[str, str | None]
    resume: ResumeInfo | None = None
    skipped: SkippedFiles | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON mapping ``_run.json`` holds (plain lists, dicts, numbers, strings)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def write(self, output: str) -> None:
        """Writes ``output/_run.json`` (local or gs://)."""
        with FileSystems.create(FileSystems.join(output, RUN_FILE)) as handle:
            handle.write(json.dumps(self.as_dict(), indent=2).encode("utf-8"))

    @classmethod
    def read(cls, output: str) -> RunRecord:
        """Reads ``output/_run.json`` (local or gs://).

        Raises:
            FileNotFoundError: the output holds no ``_run.json``.
            pydantic.ValidationError: the file is not a run record of this version.
        """
        path = FileSystems.join(output, RUN_FILE)
        if not FileSystems.exists(path):
            raise FileNotFoundError(path)
        with FileSystems.open(path) as handle:
            return cls.model_validate_json(handle.read())
