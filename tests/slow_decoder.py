"""A decoder that takes a known time per frame, for the timing tests; it runs in the decoder process."""

from __future__ import annotations

import time

from transforms.decoding import sample_frames

__all__ = ["SECONDS_PER_FRAME", "slow"]

SECONDS_PER_FRAME = 0.15


def slow(uri, spec, report):
    """``sample_frames``, sleeping ``SECONDS_PER_FRAME`` before each sampled frame."""
    for frame in sample_frames(uri, spec, report):
        time.sleep(SECONDS_PER_FRAME)
        yield frame
