"""Beam's flag names, listed once from the pinned Beam, so that a bad flag is refused before Beam loads.

Importing Beam's options takes one to two seconds; a typo should not. ``beam_flags.txt``
(beside this module) lists every flag of Beam's ``PipelineOptions`` for the Beam version
in ``requirements.lock``; ``unknown_flag`` checks the flags a command passes on against
it without importing Beam. ``job.options.pipeline_options`` still checks them with Beam
itself when the run builds its options. ``tests/job/test_config.py`` checks the list
against the installed Beam.

    python -m beam_pipeline.job.flags > beam_pipeline/job/beam_flags.txt
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Sequence
from importlib import resources

__all__ = ["LOCAL_RUNNERS", "beam_flag_names", "credential_flag", "flag_value", "flink_flags", "known_flags",
           "not_an_option", "refused_flag", "runs_here", "unknown_flag"]

#: Runners (the last dotted part of ``--runner``) that run the workers on this machine.
LOCAL_RUNNERS = ("DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner", "PrismRunner",
                 "LocalRunner", "FnApiRunner", "direct", "prism")

# Flag names that would carry a secret; Beam's own options never do (it uses ADC).
_CREDENTIAL_WORDS = ("credential", "key_file", "keyfile", "private_key", "token", "secret", "password")


def _listed(package: str, name: str) -> frozenset[str]:
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


@functools.cache
def known_flags() -> frozenset[str]:
    """The flags of ``beam_flags.txt`` (``--runner``, ``--direct_num_workers``, ...)."""
    return _listed("beam_pipeline.job", "beam_flags.txt")


@functools.cache
def flink_flags() -> frozenset[str]:
    """The options Beam's Flink job server adds to the Python SDK's (``--max_bundle_size``,
    ``--flink_conf_dir``, ...): ``flink/flink_flags.txt``, from ``python -m
    beam_pipeline.job.flink.jobserver flags``."""
    return _listed("beam_pipeline.job.flink", "flink_flags.txt")


def runs_here(runner: str | None) -> bool:
    """Whether ``runner`` (a ``--runner`` value; None: Beam's default) runs the workers on this machine."""
    return runner is None or runner.split(".")[-1] in LOCAL_RUNNERS


def flag_value(flags: Sequence[str], name: str) -> str | None:
    """The value the last ``--name=VALUE`` or ``--name VALUE`` of ``flags`` gives, or None."""
    value = None
    for index, flag in enumerate(flags):
        if flag.startswith(f"{name}="):
            value = flag.split("=", 1)[1]
        elif flag == name and index + 1 < len(flags):
            value = flags[index + 1]
    return value


def credential_flag(flags: Sequence[str]) -> str | None:
    """The refusal of the first of ``flags`` whose name says it carries a secret (never echoing its
    value), or None."""
    for flag in flags:
        name = flag.lstrip("-").split("=", 1)[0].lower()
        if any(word in name for word in _CREDENTIAL_WORDS):
            return (f"--{name}: credentials do not go in configs or flags; videolabel uses Application "
                    "Default Credentials (gcloud auth application-default login, or the workers' service "
                    "account)")
    return None


def refused_flag(flags: Sequence[str]) -> str | None:
    """Why ``flags`` cannot run, in one line (a credential, then a flag Beam does not know), or None."""
    return credential_flag(flags) or unknown_flag(flags)


def unknown_flag(flags: Sequence[str]) -> str | None:
    """The first of ``flags`` (``--name=value`` or ``--name``) that Beam does not know (its Flink job
    server's options included), as the one-line refusal (with the closest known flag); None when Beam
    knows them all. Values are not read."""
    known = known_flags() | flink_flags()
    for flag in flags:
        if not flag.startswith("--"):
            continue
        name = flag.split("=", 1)[0]
        if name not in known:
            return not_an_option(name, known)
    return None


def not_an_option(name: str, options: Iterable[str], cutoff: float = 0.6) -> str:
    """The one-line refusal of flag ``name``, naming the closest of ``options`` (at ``difflib``'s
    ``cutoff``) where one is close."""
    close = difflib.get_close_matches(name, sorted(options), n=1, cutoff=cutoff)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{name}: not a videolabel or Beam pipeline option{hint}"


def beam_flag_names() -> list[str]:
    """Every flag of the installed Beam's ``PipelineOptions`` classes loaded in this process (a class
    registers as its module loads; ``apache_beam.options.pipeline_options`` holds those a run uses),
    sorted."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parsers = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
    return sorted({flag for action in parsers[0]._actions for flag in action.option_strings
                   if flag.startswith("--")})


if __name__ == "__main__":
    print("\n".join(beam_flag_names()))
