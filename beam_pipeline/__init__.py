"""videolabel: label every video (and frame) of an archive with a Beam pipeline.

``from beam_pipeline import label_videos`` (``beam_pipeline.api``) is imported on first use,
so ``import beam_pipeline`` stays cheap (no Beam, TensorFlow or pandas import).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["label_videos"]

#: Public names and the module each is imported from when first used.
_LAZY = {"label_videos": "beam_pipeline.api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
