"""The runner ``--runner=FlinkRunner`` means: Beam's, with its job server stopped when the run ends.

Beam's ``FlinkRunner`` stops the job server it started (a JVM of a few hundred MB) only when the
launching process exits. A process that runs several jobs (``label_videos``, ``train``, a notebook,
the tests) kept one JVM per job until then; ``job.launcher.run_with_progress`` calls
``stop_job_server`` once the run is over.
"""

from __future__ import annotations

from apache_beam.runners.portability import flink_runner

__all__ = ["FLINK_RUNNER", "FlinkRunner"]

#: What ``--runner`` is set to for ``FlinkRunner`` (or ``flink``) in a config or a flag.
FLINK_RUNNER = "beam_pipeline.job.flink.runner.FlinkRunner"


class FlinkRunner(flink_runner.FlinkRunner):
    """Beam's ``FlinkRunner`` that keeps the job server it starts, for ``stop_job_server``."""

    _job_server = None

    def default_job_server(self, options):
        self._job_server = super().default_job_server(options)
        return self._job_server

    def stop_job_server(self) -> None:
        """Stops the job server this runner started (the Flink job it ran is over by then); idempotent."""
        if self._job_server is not None:
            self._job_server.stop()
            self._job_server = None
