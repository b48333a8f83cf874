"""The Beam metrics videolabel reports, each name declared once.

Every metric is in the ``videolabel`` namespace. ``_run.json`` (``counts``, ``timings``), the end-of-run
summary, ``train``'s counts and the tests read them by these names; Dataflow shows them as the job's
custom counters.
"""

from __future__ import annotations

from apache_beam.metrics import Metrics

__all__ = [
    "DECODE_MS", "ERROR_PREFIX", "FILES_DISCARDED", "FILES_WRITTEN", "FRAMES_DECODED", "FRAMES_SAMPLED",
    "MANIFEST_BAD_ROWS", "MODEL_MS", "NAMESPACE", "RESUME_DONE_IDS", "SEGMENTS", "SKIPPED_EXAMPLES",
    "SKIPPED_PREFIX", "SPLIT_PREFIX", "STATUS_PREFIX", "TRAIN_VIDEOS_FAILED", "TRAIN_VIDEOS_USED",
    "VIDEOS_PER_CALL", "WRITE_MS", "counter", "distribution", "skipped_counter", "status_counter",
    "string_set",
]

NAMESPACE = "videolabel"

# counters
FRAMES_DECODED = "frames_decoded"  # frames decoded, over every video
FRAMES_SAMPLED = "frames_sampled"  # frames sampled (one row each in ``frames``)
SEGMENTS = "segments"  # rows of ``segments``
FILES_WRITTEN = "files_written"  # part files committed
FILES_DISCARDED = "files_discarded"  # parts of failed bundles the finalize step deleted
MANIFEST_BAD_ROWS = "manifest_bad_rows"  # manifest rows that became failed rows
RESUME_DONE_IDS = "resume_done_ids"  # videos --resume found done and kept
TRAIN_VIDEOS_USED = "train_videos_used"  # train: videos that gave examples
TRAIN_VIDEOS_FAILED = "train_videos_failed"  # train: videos that gave none
STATUS_PREFIX = "videos_"  # + ok | partial | failed: videos by status
ERROR_PREFIX = "errors_"  # + error_type: failed and partial videos by error
SPLIT_PREFIX = "videos_split_"  # + split: videos by split
SKIPPED_PREFIX = "skipped_"  # + extension ("none" without one): glob matches left out by input.extensions

# string sets
SKIPPED_EXAMPLES = "skipped_examples"  # a few of the files left out by extension (a handful per worker)

# distributions (milliseconds)
PROBE_MS = "probe_ms"  # per video: its probe in the decoder process (CPU, both processes)
DECODE_MS = "decode_ms"  # per video: opening, decoding and sampling (CPU in the decoder process)
TRANSFER_MS = "transfer_ms"  # per video: its frames crossing from the decoder process (CPU, both sides)
MODEL_MS = "model_ms"  # per video: model calls only
AGGREGATE_MS = "aggregate_ms"  # per video: building its rows (Arrow batches) from the predictions
VIDEOS_PER_CALL = "videos_per_call"  # per model call: videos batched into it
WRITE_MS = "write_ms"  # per commit: writing its part files


def counter(name: str):
    """The ``videolabel`` counter ``name``."""
    return Metrics.counter(NAMESPACE, name)


def distribution(name: str):
    """The ``videolabel`` distribution ``name``."""
    return Metrics.distribution(NAMESPACE, name)


def string_set(name: str):
    """The ``videolabel`` string set ``name``."""
    return Metrics.string_set(NAMESPACE, name)


def skipped_counter(extension: str):
    """The counter of glob matches left out for their ``extension`` (``.mp3``; empty: none)."""
    return counter(SKIPPED_PREFIX + (extension.lower() or "none"))


def status_counter(status: str):
    """The counter of videos of ``status`` (``videos_ok``, ``videos_partial``, ``videos_failed``)."""
    return counter(STATUS_PREFIX + status)
