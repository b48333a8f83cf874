"""The Python SDK worker's boot, for a runner that starts workers itself (Flink's PROCESS environment)
or asks a worker pool to (EXTERNAL, ``worker_pool_main --container_executable``).

A portable runner starts a worker by running its boot command with the runner's endpoints:

    videolabel-sdk-worker --id=1-1 --provision_endpoint=localhost:P --control_endpoint=localhost:C
                          --logging_endpoint=localhost:L --artifact_endpoint=localhost:A

Beam's Docker image does this with its Go ``boot`` binary, which is not on PyPI. This does the part a
machine with videolabel installed needs: it asks the provision service for the job's pipeline options
(so the worker unpickles and runs with the launcher's settings), then replaces itself with Beam's
``sdk_worker_main`` on the same process id (so a runner's kill reaches the worker itself). Staged
artifacts are not fetched: the worker runs the videolabel installed beside this boot, the same
version as the launcher's (docs/SCALING.md, "Flink").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence

__all__ = ["main", "worker_environment"]


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="videolabel-sdk-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--id", required=True, help="the worker id the runner gave")
    parser.add_argument("--provision_endpoint", required=True)
    parser.add_argument("--control_endpoint", default=None)
    parser.add_argument("--logging_endpoint", default=None)
    parser.add_argument("--artifact_endpoint", default=None)
    parser.add_argument("--semi_persistent_directory", default=None)
    args, _ = parser.parse_known_args(argv)
    return args


def worker_environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment ``sdk_worker_main`` reads, from the runner's flags and its provision service:
    ``PIPELINE_OPTIONS`` (JSON), the control and logging endpoints (``ApiServiceDescriptor`` text),
    ``WORKER_ID`` and ``SEMI_PERSISTENT_DIRECTORY``."""
    import grpc
    from apache_beam.portability.api import beam_provision_api_pb2, beam_provision_api_pb2_grpc, endpoints_pb2
    from google.protobuf import json_format, text_format

    with grpc.insecure_channel(args.provision_endpoint) as channel:
        stub = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel)
        info = stub.GetProvisionInfo(beam_provision_api_pb2.GetProvisionInfoRequest(),
                                     metadata=[("worker_id", args.id)], timeout=60).info
    control = args.control_endpoint or info.control_endpoint.url
    logging = args.logging_endpoint or info.logging_endpoint.url
    env = dict(os.environ)
    env.update(
        PIPELINE_OPTIONS=json_format.MessageToJson(info.pipeline_options),
        CONTROL_API_SERVICE_DESCRIPTOR=text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=control)),
        WORKER_ID=args.id,
        SEMI_PERSISTENT_DIRECTORY=args.semi_persistent_directory or tempfile.gettempdir(),
    )
    if logging:
        env["LOGGING_API_SERVICE_DESCRIPTOR"] = text_format.MessageToString(
            endpoints_pb2.ApiServiceDescriptor(url=logging))
    if info.runner_capabilities:
        env["RUNNER_CAPABILITIES"] = " ".join(info.runner_capabilities)
    return env


def main(argv: Sequence[str] | None = None) -> None:
    """Boots one SDK worker (see the module doc); does not return."""
    env = worker_environment(_arguments(sys.argv[1:] if argv is None else argv))
    command = [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"]
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main()
