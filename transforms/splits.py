"""A video's split: the manifest's, else a stable train/valid/test hash of the video id for a labelled
video, else ``unlabelled``.

Why an unlabelled video gets no train/valid/test: a split is a promise about how a
labelled video is used (fitted on, tuned on, or held out to measure on). A video
with no label is none of those; filing it under ``train`` says it was trained on,
and a query of "the test set" would count videos that can test nothing. So it is
``unlabelled``. Nothing is lost by waiting: the hash depends on the video id, the
ratios and the salt alone, so once people label the video (``videolabel
import-annotations``) it gets the split it would have had.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

__all__ = ["UNLABELLED", "hash_split", "split_of", "stable_video_id"]

#: The split of a video that has no label and was given no split.
UNLABELLED = "unlabelled"


def _unit(text: str) -> float:
    """A number in [0, 1) fixed by ``text`` (first 8 bytes of its SHA-256)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_split(video_id: str, ratios: Mapping[str, float], salt: str) -> str:
    """The split for ``video_id``: the same on every run for the same ratios and salt.

    Splits are taken in the order ``ratios`` lists them; each gets the share of
    hash space its ratio gives.
    """
    u = _unit(f"{salt}:{video_id}")
    edge = 0.0
    name = ""
    for name, ratio in ratios.items():
        edge += ratio
        if u < edge:
            return name
    return name


def split_of(video_id: str, label: str | None, ratios: Mapping[str, float], salt: str) -> str:
    """The split of a video its manifest gives none: ``hash_split`` with a label, else ``UNLABELLED``."""
    return UNLABELLED if label is None else hash_split(video_id, ratios, salt)


def stable_video_id(uri: str) -> str:
    """An id for a video with no manifest id: 16 hex chars of the SHA-256 of its uri."""
    return hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
