"""``python -m beam_pipeline`` is the ``videolabel`` command."""

from beam_pipeline.cli import main

raise SystemExit(main())
