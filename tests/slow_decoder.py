"""A decoder that takes a known CPU time per frame, for the timing tests; it runs in the decoder process
(whose decode seconds are its CPU seconds in the decoder, so it spins rather than sleeps)."""

from __future__ import annotations

import time

from transforms.decoding import sample_frames

__all__ = ["SECONDS_PER_FRAME", "slow"]

SECONDS_PER_FRAME = 0.4  # 8 s a run: over twice the model's time on a loaded 2-core machine


def slow(uri, spec, report):
    """``sample_frames``, spinning ``SECONDS_PER_FRAME`` of CPU time before each sampled frame."""
    for frame in sample_frames(uri, spec, report):
        until = time.process_time() + SECONDS_PER_FRAME
        while time.process_time() < until:
            pass
        yield frame
