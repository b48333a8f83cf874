"""Dataflow specifics: start-up checks, and what a ``--dry_run=True`` job would submit.

Beam's DataflowRunner with ``--dry_run=True`` builds the whole job (steps,
environments, resource hints, options) offline and stops before calling the
service; ``dry_run_summary`` reads that job back so a user (and the tests) can
check it: job name and labels, the worker image or staged setup file, and
which steps ask for an accelerator.
"""

from __future__ import annotations

from typing import Any

from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)
from apache_beam.portability.api import beam_runner_api_pb2

from beam_pipeline.config import ConfigError, JobConfig

__all__ = ["check_dataflow", "dry_run_summary", "is_dataflow", "is_dry_run"]

_ACCELERATOR_URN = "beam:resources:accelerator:v1"


def is_dataflow(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner or ""
    return runner.split(".")[-1] in ("DataflowRunner", "dataflow")


def is_dry_run(options: PipelineOptions) -> bool:
    return bool(options.view_as(TestOptions).dry_run)


def check_dataflow(cfg: JobConfig, options: PipelineOptions) -> None:
    """What a Dataflow job needs before it starts: project, region, gs:// locations, the GPU image.

    Raises:
        ConfigError: the first missing or unusable setting, in one line.
    """
    if not is_dataflow(options):
        return
    cloud, worker = options.view_as(GoogleCloudOptions), options.view_as(WorkerOptions)
    for flag, value in (("--project", cloud.project), ("--region", cloud.region),
                        ("--temp_location", cloud.temp_location)):
        if not value:
            raise ConfigError(f"{flag}: DataflowRunner needs it (set it in runner: or pass {flag}=...)")
    if not cloud.temp_location.startswith("gs://"):
        raise ConfigError(f"--temp_location: {cloud.temp_location!r} must be a gs:// path for Dataflow")
    for path in (*cfg.input.paths, cfg.output.path):
        if not path.startswith("gs://"):
            raise ConfigError(f"{path!r}: Dataflow workers read and write Cloud Storage; use a gs:// path")
    if cfg.model.accelerator and not worker.sdk_container_image:
        raise ConfigError("--sdk_container_image: model.accelerator needs the worker image with TensorFlow "
                          "for GPUs (`make image`, then push it; see docs/SCALING.md)")


def _environment(proto, env_id: str) -> dict[str, Any]:
    env = proto.components.environments[env_id]
    image = None
    if env.urn == "beam:env:docker:v1":
        image = beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
    staged = [beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(d.role_payload).staged_name
              for d in env.dependencies if d.role_payload]
    return {"image": image, "staged": staged,
            "accelerator": env.resource_hints.get(_ACCELERATOR_URN, b"").decode() or None}


def dry_run_summary(result, options: PipelineOptions) -> dict[str, Any]:
    """The job a dry run built: name, labels, worker images and staged files, accelerator steps."""
    job = result.job
    proto = job.proto_pipeline
    steps, environments = {}, {}
    for transform in proto.components.transforms.values():
        if transform.environment_id and not transform.subtransforms:
            env = environments.setdefault(transform.environment_id,
                                          _environment(proto, transform.environment_id))
            steps[transform.unique_name] = env["accelerator"]
    return {
        "dry_run": True,
        "job_name": job.proto.name,
        "labels": dict(job.proto.labels),
        "project": options.view_as(GoogleCloudOptions).project,
        "region": options.view_as(GoogleCloudOptions).region,
        "setup_file": options.view_as(SetupOptions).setup_file,
        "environments": list(environments.values()),
        "accelerator_steps": sorted(name for name, hint in steps.items() if hint),
        "cpu_steps": sorted(name for name, hint in steps.items() if not hint),
    }
