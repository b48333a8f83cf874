"""Stable train/valid/test assignment from a hash of the video id."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

__all__ = ["hash_split", "stable_video_id"]


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


def stable_video_id(uri: str) -> str:
    """An id for a video with no manifest id: 16 hex chars of the SHA-256 of its uri."""
    return hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
