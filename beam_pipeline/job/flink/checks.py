"""Flink specifics of a run: what ``--runner=FlinkRunner`` needs, settled before a video is read.

Beam's ``FlinkRunner`` starts Beam's Flink job server (``java -jar``), which runs the job on an
embedded Flink (``--flink_master=[local]``) or submits it to a cluster (``--flink_master=HOST:PORT``,
the JobManager's REST address). The Python work runs in SDK worker processes that Flink's
TaskManagers start (``PROCESS``: the boot command ``videolabel-sdk-worker`` of this install) or ask
a worker pool beside each TaskManager to start (``EXTERNAL``: ``environment_config`` names the pool,
as a sidecar on Kubernetes). ``check_flink`` fills what a run can fill (the fetched job server jar,
the boot command, one slot and one SDK worker process per usable core on an embedded Flink) and
refuses, in one line, what cannot work: stateful batching across bundles
(``model.max_batch_duration_s``), no jar, no ``java``, workers as threads of the launcher
(``LOOPBACK``), an ``EXTERNAL`` environment with no pool, an uber jar submission (it needs Beam's
shaded job server jar, which Maven Central does not serve for this Beam).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    JobServerOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
)

from beam_pipeline.config import ConfigError, JobConfig
from beam_pipeline.job.flink import jobserver
from beam_pipeline.job.local_runner import LOOPBACK

__all__ = ["BOOT", "EMBEDDED", "EMBEDDED_CONF", "boot_command", "check_flink", "is_flink", "workers_here"]

#: ``--flink_master`` values that run Flink inside the job server, on this machine.
EMBEDDED = ("[local]", "[auto]")
#: The Flink configuration of an embedded Flink (its restart strategy).
EMBEDDED_CONF = Path(__file__).with_name("conf")
#: The SDK worker boot command (``beam_pipeline.job.flink.sdk_boot``), installed beside ``python``.
BOOT = "videolabel-sdk-worker"


def is_flink(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner or ""
    return runner.split(".")[-1] in ("FlinkRunner", "flink")


def workers_here(options: PipelineOptions) -> bool:
    """Whether a Flink run's TaskManagers (and so its SDK workers) are on this machine: an embedded
    Flink, or a cluster on a loopback address."""
    if not is_flink(options):
        return False
    master = options.view_as(FlinkRunnerOptions).flink_master.strip()
    if master in EMBEDDED:
        return True
    host = urlparse(master if "://" in master else f"http://{master}").hostname
    return host in LOOPBACK


def boot_command() -> str:
    """The absolute path of this install's ``videolabel-sdk-worker``.

    Raises:
        ConfigError: it is not installed beside this Python.
    """
    boot = Path(sys.executable).with_name(BOOT)
    if not boot.exists():
        raise ConfigError(f"--environment_type=PROCESS: {boot} is missing; reinstall videolabel "
                          "(make install) so that Flink can start its SDK workers")
    return str(boot)


def _environment(portable: PortableOptions) -> None:
    """Fills or refuses the SDK worker environment (see the module doc)."""
    kind = (portable.environment_type or "PROCESS").upper()
    if kind == "LOOPBACK":
        raise ConfigError("--environment_type=LOOPBACK: on Flink the SDK workers would be threads of this "
                          "process, on one core; use PROCESS (configs/flink.yaml) or EXTERNAL (a pool)")
    portable.environment_type = kind
    if kind == "PROCESS" and not (portable.environment_config
                                  or portable.lookup_environment_option("process_command")):
        portable.add_environment_option(f"process_command={boot_command()}")
    if kind == "EXTERNAL" and not (portable.environment_config
                                   or portable.lookup_environment_option("external_service_address")):
        raise ConfigError("--environment_type=EXTERNAL: set --environment_config=HOST:PORT, the worker pool "
                          "beside each TaskManager (python -m apache_beam.runners.worker.worker_pool_main "
                          f"--container_executable={BOOT} --service_port=50000; docs/SCALING.md)")


def check_flink(cfg: JobConfig, options: PipelineOptions, cores: int) -> PipelineOptions:
    """A Flink run's options, settled (see the module doc); ``options`` as they are for another runner.

    An embedded Flink gets ``--flink_conf_dir`` (unless given): ``conf/flink-conf.yaml`` beside this
    module, whose restart strategy restarts a lost task (Beam's Flink runner sets none for a batch job).

    ``model.max_batch_duration_s`` is refused: Beam's Flink runner runs a batch job's stateful DoFn
    (Beam's ``BatchElements`` across bundles, on state and timers) on each key's whole input after a
    sort, so its timers never cut a batch short and every video's frames would wait in memory for the
    last video (measured: 23 videos held for the whole run, then written at once). Batches within a
    bundle (the setting left null) work as on any runner.

    Args:
        cfg: the run's config.
        options: the run's options.
        cores: the slots an embedded Flink gets when ``--parallelism`` is not set (a cluster's own
            default applies to a cluster); ``--sdk_worker_parallelism`` 0 then means one SDK worker
            process per slot (Flink would run one for all its slots, and Python uses a core each).

    Raises:
        ConfigError: the first setting that cannot work, in one line.
    """
    if not is_flink(options):
        return options
    if cfg.model.max_batch_duration_s is not None:
        raise ConfigError("model.max_batch_duration_s: on Flink's batch mode its state and timers hold every "
                          "video's frames until the input ends; leave it null (batches form within a bundle)")
    flink = options.view_as(FlinkRunnerOptions)
    if flink.flink_submit_uber_jar:
        raise ConfigError("--flink_submit_uber_jar: needs Beam's shaded Flink job server jar, which Maven "
                          "Central does not serve for this Beam; leave it off (the job server submits jobs)")
    if not flink.flink_job_server_jar:
        jar = jobserver.job_server_jar()
        if jar is None:
            raise ConfigError(f"FlinkRunner: Beam's Flink job server is not fetched to "
                              f"{jobserver.cache_dir()}; run `make flink` (needs a JDK and Maven) or pass "
                              "--flink_job_server_jar=PATH")
        flink.flink_job_server_jar = str(jar)
    elif not Path(flink.flink_job_server_jar).is_file():
        raise ConfigError(f"--flink_job_server_jar: {flink.flink_job_server_jar!r} is not a file")
    flink.flink_version = jobserver.versions()[1]
    java = options.view_as(JobServerOptions).job_server_java_launcher
    if shutil.which(java) is None:
        raise ConfigError(f"FlinkRunner: {java!r} is not on PATH; Beam's Flink job server needs a Java 11+ "
                          "runtime (apt-get install default-jre-headless)")
    portable = options.view_as(PortableOptions)
    _environment(portable)
    if flink.flink_master.strip() in EMBEDDED:
        if flink.parallelism < 1:
            flink.parallelism = cores
        if int(portable.sdk_worker_parallelism or 0) == 0:  # Flink's own choice: one process for all slots
            portable.sdk_worker_parallelism = flink.parallelism
        settled = options.get_all_options(drop_default=True, retain_unknown_options=True)
        if not settled.get("flink_conf_dir"):  # a Java option of the job server's: Python keeps it as given
            return PipelineOptions.from_dictionary({**settled, "flink_conf_dir": str(EMBEDDED_CONF)})
    return options
