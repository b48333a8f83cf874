"""``python -m beam_pipeline`` is the ``videolabel`` command."""

from beam_pipeline.cli import console_main

console_main()
