"""Decoders that really do the damage a hostile file can do to FFmpeg, for the decoder-process tests.

Each has ``sample_frames``' signature and first yields ``GOOD_FRAMES`` real
sampled frames, one chunk (``CHUNK_FRAMES``, sent to the parent) and two more
(not sent), so the tests can check that what the parent received is kept. They
run inside the decoder process, never in the test process.
"""

from __future__ import annotations

import ctypes
import itertools

import numpy as np

from transforms.decoder_process import CHUNK_FRAMES
from transforms.decoding import sample_frames

__all__ = ["GOOD_FRAMES", "allocates_without_bound", "blocks_forever", "hostile", "raises_unforeseen",
           "segfaults"]

GOOD_FRAMES = CHUNK_FRAMES + 2


def _first_frames(uri, spec, report):
    yield from itertools.islice(sample_frames(uri, spec, report), GOOD_FRAMES)


def segfaults(uri, spec, report):
    """Reads address 0 after the first frames: SIGSEGV, as a native decoder bug does."""
    yield from _first_frames(uri, spec, report)
    ctypes.string_at(0)


def blocks_forever(uri, spec, report):
    """Blocks in a native call that never returns (``pause(2)``), after the first frames."""
    yield from _first_frames(uri, spec, report)
    ctypes.CDLL(None).pause()


def allocates_without_bound(uri, spec, report):
    """Allocates 64 MiB blocks until memory runs out, after the first frames. The blocks are left
    untouched (``np.empty``), as a runaway allocation's would be: the address-space cap stops it within
    milliseconds however loaded the machine, where filling each block (``bytearray``) took longer than
    a 3 s decode timeout on a busy 2-core machine."""
    yield from _first_frames(uri, spec, report)
    blocks = []
    while True:
        blocks.append(np.empty(64 << 20, np.uint8))


def raises_unforeseen(uri, spec, report):
    """Raises an exception no decoding code expects, after the first frames."""
    yield from _first_frames(uri, spec, report)
    raise AttributeError("'NoneType' object has no attribute 'width'")


_BY_NAME = {"segfault": segfaults, "hang": blocks_forever, "oom": allocates_without_bound,
            "raise": raises_unforeseen}


def hostile(uri, spec, report):
    """``sample_frames``, except for a file whose name starts with a damage's name (``segfault-``,
    ``hang-``, ``oom-``, ``raise-``): that damage, so one folder mixes good and hostile files."""
    name = uri.rsplit("/", 1)[-1]
    damage = _BY_NAME.get(name.split("-", 1)[0], sample_frames)
    yield from damage(uri, spec, report)
