"""The runner a local videolabel run means: Beam's FnApiRunner, named, with loopback kept off proxies.

Beam's ``DirectRunner`` first tries its ``PrismRunner`` on every pipeline it
thinks Prism supports, which downloads the Prism binary from the internet; where
DNS or a proxy hangs instead of failing, a local run would hang at start.
``LocalRunner`` is the FnApiRunner that ``DirectRunner`` falls back to for a batch
job (``direct_running_mode``, ``direct_num_workers`` as usual), and nothing else:
a local run makes no network call of its own.

Beam's SDK workers (``multi_processing``) dial their control channel on
``localhost`` with gRPC, which honours ``HTTPS_PROXY``/``HTTP_PROXY``: behind a proxy
that never answers, the workers cannot start and the job waits for them.
``loopback_off_proxies`` adds the loopback names to ``NO_PROXY``/``no_proxy`` (and
gRPC's own ``no_grpc_proxy``) for the run, which the worker processes inherit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from apache_beam.runners.runner import PipelineRunner

__all__ = ["LOCAL_RUNNER", "LOOPBACK", "LocalRunner", "loopback_off_proxies"]

#: What ``--runner`` is set to for a local run (``DirectRunner``, or no runner, in the config).
LOCAL_RUNNER = "beam_pipeline.job.local_runner.LocalRunner"
#: The names of this machine's loopback interface.
LOOPBACK = ("localhost", "127.0.0.1", "::1")
_NO_PROXY = ("NO_PROXY", "no_proxy", "no_grpc_proxy")


class LocalRunner(PipelineRunner):
    """Beam's FnApiRunner with this run's options as its provision info (as ``DirectRunner`` makes it);
    ``multi_processing`` workers come warm from ``job.warm_workers`` when its process is running."""

    def run_pipeline(self, pipeline, options):
        from apache_beam.options.pipeline_options import DirectOptions
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle
        from apache_beam.transforms.environments import SubprocessSDKEnvironment

        from beam_pipeline.job import warm_workers

        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        info = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
        provision = fn_runner.ExtendedProvisionInfo(info)
        direct, warm = options.view_as(DirectOptions), warm_workers.current()
        if warm is None or direct.direct_running_mode != "multi_processing":
            return fn_runner.FnApiRunner(provision_info=provision).run_pipeline(pipeline, options)
        environment = SubprocessSDKEnvironment.from_command_string(warm.command)
        runner = fn_runner.FnApiRunner(default_environment=environment, provision_info=provision)
        # FnApiRunner puts its own worker command in place of ours for "multi_processing" only
        direct.direct_running_mode = "warm_multi_processing"
        try:
            return runner.run_pipeline(pipeline, options)
        finally:
            direct.direct_running_mode = "multi_processing"


@contextlib.contextmanager
def loopback_off_proxies() -> Iterator[None]:
    """For the ``with`` block: loopback traffic (and that of the processes started in it) bypasses any
    HTTP(S) proxy the environment names."""
    before = {name: os.environ.get(name) for name in _NO_PROXY}
    for name in _NO_PROXY:
        hosts = [h for h in (before[name] or "").split(",") if h.strip()]
        os.environ[name] = ",".join(hosts + [h for h in LOOPBACK if h not in hosts])
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
