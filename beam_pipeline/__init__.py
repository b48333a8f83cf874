"""videolabel: label every video (and frame) of an archive with a Beam pipeline.

The Python API, ``from beam_pipeline import LabelVideos, label_videos, train`` (``beam_pipeline.api``)
and ``more_like_this``, ``near_duplicates`` (``beam_pipeline.outputs.similar``), is imported on first
use, so ``import beam_pipeline`` stays cheap (no Beam, TensorFlow or pandas import).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["LabelVideos", "label_videos", "more_like_this", "near_duplicates", "train"]

#: Public names and the module each is imported from when first used.
_LAZY = {**{name: "beam_pipeline.api" for name in ("LabelVideos", "label_videos", "train")},
         **{name: "beam_pipeline.outputs.similar" for name in ("more_like_this", "near_duplicates")}}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
