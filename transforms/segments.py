"""Segments: the stretches of one video where one predicted label holds, from its frame predictions.

Pure numpy / pyarrow, no Beam: Aggregate calls ``segment_rows`` once per video, and
tests and readers call it on a ``frames`` table to get the same rows back.

Inputs, one video's sampled frames in time order:

* ``timestamps_s``: float64 [n], each frame's presentation time in seconds (the
  ``frames`` table's ``timestamp_s``), strictly increasing;
* ``prediction_index``: int32 [n], each frame's top-1 class (``prediction_index``);
* ``score``: float32 [n] in [0, 1], that class's probability (``score``);
* ``labels``: the class names, in index order.

Semantics (``SegmentRule(min_s, min_score)``, from ``output.segment_min_s`` and
``output.segment_min_score``; every comparison of times allows 1 microsecond for float error):

* **Frame spans.** Frame i spans [t_i, t_{i+1}). The last frame ends at its timestamp
  plus the median interval between frames, capped at the video's ``duration_s`` when
  that is known and later than the frame; a one-frame video's frame ends at
  ``duration_s`` when known, else it spans no time at all.
* **Runs.** Consecutive frames with the same top-1 label form a run, spanning from its
  first frame's start to its last frame's end.
* **Holds.** A label *holds* over a chain of its runs in which each run starts at most
  ``min_s`` after the previous one ended: runs of other labels shorter than that (one
  odd frame, or a few) are absorbed, and split nothing.
* **Segments.** Scanning in time order, a segment opens on the first run whose label's
  hold from there lasts at least ``min_s`` and has a frame scoring at least ``min_score``
  (a hold's frames that predict its label; the score of the absorbed frames never counts).
  It spans the whole hold: it closes when its label has been absent for longer than
  ``min_s`` (another label holds for longer than that, or no label does), or when the video
  ends, at the end of its label's last run. Scanning goes on from there. Stretches where no
  segment is open (a hold without a confident frame, a label that holds for less than
  ``min_s``, a mix where nothing holds) are gaps; so a segment shorter than ``min_s`` is
  never kept, nor one that spans no time.
* **``min_s = 0``** absorbs nothing: every run with a frame of score >= ``min_score`` is
  a segment, and every other run a gap. A one-frame video is one segment (over
  [t_0, duration_s)) when its score is high enough and ``duration_s - t_0 >= min_s``.

A segment's columns: ``segment_index`` (0, 1, ... in time order), ``start_s`` and ``end_s``
([start_s, end_s), from the frame spans), ``label`` (the predicted class name),
``mean_score`` and ``max_score`` (over its frames that predict its label), ``frames`` (the
sampled frames in its span, absorbed ones included), and, where labels are known,
``true_label`` and ``overlap_s`` (``truth_spans``, ``true_overlap``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from transforms.schema import SEGMENTS_SCHEMA, record_batch

__all__ = ["SegmentRule", "Segments", "find_segments", "frame_ends", "segment_rows", "true_overlap",
           "truth_spans"]

_EPS = 1e-6  # seconds: float error in sums of timestamps (0.1 + 0.2 != 0.3)

Span = tuple[float, float, str]


class SegmentRule(NamedTuple):
    """When a label holds (see the module doc): ``min_s`` seconds (>= 0), ``min_score`` in [0, 1]."""

    min_s: float = 1.0
    min_score: float = 0.5


class Segments(NamedTuple):
    """One video's segments, in time order, as arrays of length s.

    Attributes:
        start_s, end_s: float64 [s], each segment's span [start_s, end_s).
        label_index: int32 [s], its predicted class.
        mean_score, max_score: float32 [s], over its frames that predict that class.
        frames: int64 [s], the sampled frames in its span.
    """

    start_s: np.ndarray
    end_s: np.ndarray
    label_index: np.ndarray
    mean_score: np.ndarray
    max_score: np.ndarray
    frames: np.ndarray


def frame_ends(timestamps_s: np.ndarray, duration_s: float | None = None) -> np.ndarray:
    """float64 [n]: where each frame's span ends: the next frame's timestamp; for the last, its
    timestamp plus the median frame interval, capped at ``duration_s`` when known and later (a
    one-frame video: ``duration_s`` when known and later, else its own timestamp)."""
    t = np.asarray(timestamps_s, np.float64)
    if not len(t):
        return t.copy()
    ends = np.empty_like(t)
    ends[:-1] = t[1:]
    last = t[-1] + float(np.median(np.diff(t))) if len(t) > 1 else t[-1]
    if duration_s is not None and duration_s > t[-1]:
        last = min(last, duration_s) if len(t) > 1 else duration_s
    ends[-1] = last
    return ends


def find_segments(timestamps_s: np.ndarray, prediction_index: np.ndarray, score: np.ndarray,
                  rule: SegmentRule, duration_s: float | None = None) -> Segments:
    """One video's segments from its frames (arrays as in the module doc, time order)."""
    t = np.asarray(timestamps_s, np.float64)
    index = np.asarray(prediction_index, np.int32)
    score = np.asarray(score, np.float32)
    if not (len(t) == len(index) == len(score)):
        raise ValueError(f"frame arrays of lengths {len(t)}, {len(index)}, {len(score)}")
    columns: dict[str, list] = {name: [] for name in Segments._fields}
    if len(t):
        ends = frame_ends(t, duration_s)
        first = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])  # each run's first frame
        stop = np.r_[first[1:], len(t)]
        run_start, run_end = t[first], ends[stop - 1]
        for a, b in _holds(index[first], run_start, run_end, np.maximum.reduceat(score, first), rule):
            lo, hi = int(first[a]), int(stop[b])
            label = index[lo]
            mine = score[lo:hi][index[lo:hi] == label]
            for name, value in (("start_s", run_start[a]), ("end_s", run_end[b]), ("label_index", label),
                                ("mean_score", mine.mean(dtype=np.float64)), ("max_score", mine.max()),
                                ("frames", hi - lo)):
                columns[name].append(value)
    dtypes = (np.float64, np.float64, np.int32, np.float32, np.float32, np.int64)
    return Segments(*(np.array(columns[name], dtype) for name, dtype in zip(Segments._fields, dtypes)))


def _holds(label: np.ndarray, start: np.ndarray, end: np.ndarray, best: np.ndarray,
           rule: SegmentRule) -> list[tuple[int, int]]:
    """The segments' (first run, last run), from the runs' labels, spans and best scores.

    A chain that failed to open fails from any later run of it too (its rest is shorter and
    scores no higher), so each label's failed chain is skipped to its end: every run is
    walked at most once per label around it.
    """
    found: list[tuple[int, int]] = []
    failed_until: dict[int, int] = {}
    m, i = len(label), 0
    while i < m:
        c = int(label[i])
        if failed_until.get(c, -1) >= i:
            i += 1
            continue
        last, top, k = i, best[i], i + 1
        while k < m and start[k] - end[last] <= rule.min_s + _EPS:
            if label[k] == c:
                last, top = k, max(top, best[k])
            k += 1
        span = end[last] - start[i]
        if span >= rule.min_s - _EPS and span > _EPS and top >= rule.min_score:
            found.append((i, last))
            i = last + 1
        else:
            failed_until[c] = last
            i += 1
    return found


def truth_spans(segments: Sequence[Span], label: str | None,
                background: str | None = None) -> tuple[Span, ...]:
    """What is known of a video's true labels, as ``(start_s, end_s, label)`` spans.

    A segment manifest's spans (``VideoRef.segments``), and ``background`` over the time
    they leave uncovered, when given; else the video label over the whole video; else
    nothing. ``end_s`` may be ``inf`` (to the video's end).
    """
    if not segments:
        return ((0.0, float("inf"), label),) if label is not None else ()
    spans = tuple((float(s), float(e), name) for s, e, name in segments)
    if background is None:
        return spans
    uncovered, at = [], 0.0
    for s, e, _ in sorted(spans):
        if s > at:
            uncovered.append((at, s, background))
        at = max(at, e)
    return spans + (*uncovered, (at, float("inf"), background))


def true_overlap(start_s: float, end_s: float, truth: Sequence[Span]) -> tuple[str | None, float | None]:
    """The true label overlapping [start_s, end_s) most, and by how many seconds (the union of
    its spans in ``truth`` intersected with the segment); ties go to the first label by name.
    ``(None, None)`` when no span overlaps it: nothing is known of that stretch."""
    overlap: dict[str, float] = {}
    for name in {name for _, _, name in truth}:
        covered, at = 0.0, start_s
        for s, e, _ in sorted(span for span in truth if span[2] == name):
            s, e = max(s, at), min(e, end_s)
            if e > s:
                covered += e - s
                at = e
        overlap[name] = covered
    best = min(overlap, key=lambda name: (-overlap[name], name), default=None)
    if best is None or overlap[best] <= 0:
        return None, None
    return best, overlap[best]


def segment_rows(video_id: str, uri: str, timestamps_s: np.ndarray, prediction_index: np.ndarray,
                 score: np.ndarray, labels: Sequence[str], rule: SegmentRule, *,
                 duration_s: float | None = None, truth: Sequence[Span] = ()) -> pa.RecordBatch:
    """One video's ``segments`` rows (``SEGMENTS_SCHEMA``) from its frames (see the module doc);
    ``truth`` (``truth_spans``) gives ``true_label`` and ``overlap_s``, null where it says nothing.
    A video without frames, or without a segment, has no rows."""
    found = find_segments(timestamps_s, prediction_index, score, rule, duration_s)
    n = len(found.start_s)
    truths = [true_overlap(s, e, truth) for s, e in zip(found.start_s.tolist(), found.end_s.tolist())]
    return record_batch({
        "video_id": pa.repeat(video_id, n),
        "uri": pa.repeat(uri, n),
        "segment_index": np.arange(n, dtype=np.int32),
        "start_s": found.start_s,
        "end_s": found.end_s,
        "label": pa.array(labels, pa.string()).take(found.label_index),
        "mean_score": found.mean_score,
        "max_score": found.max_score,
        "frames": found.frames,
        "true_label": pa.array([name for name, _ in truths], pa.string()),
        "overlap_s": pa.array([seconds for _, seconds in truths], pa.float64()),
    }, SEGMENTS_SCHEMA)
