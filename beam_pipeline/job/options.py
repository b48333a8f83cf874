"""Runner settings -> Beam PipelineOptions, with unknown flags rejected at start."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from beam_pipeline.config import ConfigError
from beam_pipeline.job.flags import credential_flag, flink_flags, not_an_option
from beam_pipeline.job.flink.checks import is_flink
from beam_pipeline.job.flink.runner import FLINK_RUNNER
from beam_pipeline.job.local_mode import AUTO
from beam_pipeline.job.local_runner import LOCAL_RUNNER

__all__ = ["pipeline_options", "runner_flags"]

def runner_flags(runner: Mapping[str, Any]) -> list[str]:
    """The config's ``runner`` mapping as Beam flags (``--key=value``; lists repeat the flag)."""
    flags = []
    for key, value in runner.items():
        if value is None or value is False:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            flags.append(f"--{key}" if item is True else f"--{key}={item}")
    return flags


def _without_auto(flags: Sequence[str]) -> tuple[list[str], bool]:
    """``flags`` less every ``--direct_running_mode`` of value ``auto`` (Beam does not know it), and
    whether the last running mode given was ``auto``."""
    kept: list[str] = []
    auto = False
    items = iter(flags)
    for flag in items:
        name, has_value, value = flag.partition("=")
        if name != "--direct_running_mode":
            kept.append(flag)
            continue
        if not has_value:
            value = next(items, "")
        auto = value == AUTO
        if not auto:
            kept.append(f"{name}={value}")
    return kept, auto


def pipeline_options(runner: Mapping[str, Any], beam_args: Sequence[str]) -> PipelineOptions:
    """PipelineOptions from the config's runner section, then the CLI's Beam flags (which win); a Flink
    run also takes the options of Beam's Flink job server (``job.flags.flink_flags``).
    ``DirectRunner`` (or no runner) means ``job.local_runner.LocalRunner``, ``FlinkRunner``
    ``job.flink.runner.FlinkRunner``; a running mode of
    ``auto`` is kept as it is, for ``job.local_mode.resolve`` to decide from the work.

    Raises:
        ConfigError: a flag no PipelineOptions class knows, naming the closest known one.
    """
    flags, auto = _without_auto(runner_flags(runner) + list(beam_args))
    credential = credential_flag(flags)
    if credential:
        raise ConfigError(credential)
    options = PipelineOptions(flags)
    parsers = []
    options.get_all_options(add_extra_args_fn=parsers.append)
    parser = parsers[0]
    _, unknown = parser.parse_known_args(flags)
    for arg in unknown:
        if not arg.startswith("--"):
            continue
        name = arg.split("=", 1)[0]
        if name in flink_flags():  # Beam's PortableRunner gets these from the job server when it runs
            if is_flink(options):
                continue
            raise ConfigError(f"{name}: an option of Beam's Flink runner; it needs --runner=FlinkRunner")
        known = [opt for action in parser._actions for opt in action.option_strings]
        raise ConfigError(not_an_option(name, known))
    standard = options.view_as(StandardOptions)
    if standard.runner in (None, "DirectRunner", "direct"):  # named: no PrismRunner download attempt
        standard.runner = LOCAL_RUNNER
    elif standard.runner in ("FlinkRunner", "flink"):  # stops its job server when the run ends
        standard.runner = FLINK_RUNNER
    if auto:
        options.view_as(DirectOptions).direct_running_mode = AUTO
    return options
