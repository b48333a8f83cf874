"""The ``videolabel`` command line: its commands (``commands``), the stderr filter (``quiet``)."""

from beam_pipeline.cli.commands import console_main, main

__all__ = ["console_main", "main"]
