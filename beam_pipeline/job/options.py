"""Runner settings -> Beam PipelineOptions, with unknown flags rejected at start."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.config import ConfigError

__all__ = ["pipeline_options", "runner_flags"]

# Flag names that would carry a secret; Beam's own options never do (it uses ADC).
_CREDENTIAL_WORDS = ("credential", "key_file", "keyfile", "private_key", "token", "secret", "password")


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


def pipeline_options(runner: Mapping[str, Any], beam_args: Sequence[str]) -> PipelineOptions:
    """PipelineOptions from the config's runner section, then the CLI's Beam flags (which win).

    Raises:
        ConfigError: a flag no PipelineOptions class knows, naming the closest known one.
    """
    flags = runner_flags(runner) + list(beam_args)
    for flag in flags:
        name = flag.lstrip("-").split("=", 1)[0].lower()
        if any(word in name for word in _CREDENTIAL_WORDS):
            raise ConfigError(f"--{name}: credentials do not go in configs or flags; videolabel uses "
                              "Application Default Credentials (gcloud auth application-default login, "
                              "or the workers' service account)")
    options = PipelineOptions(flags)
    parsers = []
    options.get_all_options(add_extra_args_fn=parsers.append)
    parser = parsers[0]
    _, unknown = parser.parse_known_args(flags)
    for arg in unknown:
        if not arg.startswith("--"):
            continue
        name = arg.split("=", 1)[0]
        known = [opt for action in parser._actions for opt in action.option_strings]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{name}: not a videolabel or Beam pipeline option{hint}")
    return options
