"""Aggregate: one VideoResult -> that video's output rows, as Arrow record batches.

The video prediction is the mean (or, with ``model.video_pool: max``, the
renormalised maximum) of clip probabilities in base mode and the final causal
output (after the last sampled frame) in stream mode. Each video becomes one
``VideoRows``: a one-row ``videos`` batch, (with ``write_frames``) a ``frames``
batch of one row per sampled frame, and (with ``write_segments``) a ``segments``
batch of its segments (``transforms.segments``, from the frames' top-1
predictions; none for a video without frames), built column by column from the
clips' arrays against the schemas of ``transforms.schema`` (a column the schema
lacks, or lacks a value for, raises). ``split`` rides along as the partition
key and is not written inside the files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.scores import top_k_arrays
from transforms import metrics
from transforms.embeddings import embedding_column, span_embeddings
from transforms.records import (
    ClipPrediction,
    ErrorStage,
    Status,
    VideoError,
    VideoInfo,
    VideoResult,
    VideoRows,
)
from transforms.schema import (
    EMBEDDING,
    SCHEMA_VERSION,
    VIDEOS_SCHEMA,
    embeddings_schema,
    frames_schema,
    record_batch,
)
from transforms.segments import SegmentRule, segment_rows, truth_spans

__all__ = [
    "Aggregate",
    "RunStamp",
    "embeddings_batch",
    "frames_batch",
    "prediction_columns",
    "segments_batch",
    "video_batch",
    "video_probs",
]


_PREDICTION_COLUMNS = ("prediction", "prediction_index", "score", "top_k_labels", "top_k_scores")


class RunStamp:
    """Per-run values stamped on every video row."""

    def __init__(self, model: str, config_hash: str, run_id: str):
        self.model = model
        self.config_hash = config_hash
        self.run_id = run_id


def _lists(values: np.ndarray) -> pa.FixedSizeListArray:
    """One list per row of ``values`` [n, ...] (the rest flattened, C order)."""
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(values).reshape(-1)),
                                             int(np.prod(values.shape[1:])))


def prediction_columns(index: np.ndarray, score: np.ndarray, labels: Sequence[str]) -> dict[str, pa.Array]:
    """The prediction columns of n rows from top-k class indices int32 [n, k] and scores float32 [n, k],
    best first; ``labels`` are the class names in index order."""
    names = pa.array(labels, pa.string())
    best = np.ascontiguousarray(index[:, 0])
    return {
        "prediction": names.take(best),
        "prediction_index": pa.array(best, pa.int32()),
        "score": pa.array(np.ascontiguousarray(score[:, 0]), pa.float32()),
        "top_k_labels": pa.FixedSizeListArray.from_arrays(names.take(index.reshape(-1)), index.shape[1]),
        "top_k_scores": _lists(score),
    }


def _is_error(prediction: pa.Array, label: pa.Array) -> pa.Array:
    """prediction != label per row; null where either is null."""
    return pc.not_equal(prediction, label)


def _status(info: VideoInfo, predicted: bool) -> tuple[Status, VideoError | None]:
    error = info.error
    if info.error is None and info.frames_sampled == 0:
        error = VideoError(ErrorStage.DECODE, "NoFrames", "no frame could be decoded")
    if not predicted:
        return Status.FAILED, error or VideoError(ErrorStage.INFER, "NoPrediction", "no clip was classified")
    return (Status.PARTIAL if error else Status.OK), error


def video_probs(clip_probs: Sequence[np.ndarray], mode: str, pool: str = "mean") -> np.ndarray:
    """A video's probabilities float32 [num_classes] from its clips' (in clip order).

    Stream mode: the output after the last frame. Base mode: the mean over clips,
    or with ``pool="max"`` the per-class maximum, renormalised to sum to 1.
    """
    if mode == "stream":
        return clip_probs[-1]
    stacked = np.stack(clip_probs)
    if pool == "max":
        peak = stacked.max(axis=0)
        return (peak / peak.sum()).astype(np.float32)
    return stacked.mean(axis=0).astype(np.float32)


def video_batch(info: VideoInfo, clips: Sequence[tuple[int, ClipPrediction]], mode: str,
                labels: Sequence[str], k: int, stamp: RunStamp, pool: str = "mean") -> pa.RecordBatch:
    """The video's one ``videos`` row (``VIDEOS_SCHEMA``); ``clips``: (clip_index, prediction), any order."""
    ordered = sorted(clips, key=lambda c: c[0])
    status, error = _status(info, bool(ordered))
    ref, meta = info.ref, info.meta
    if ordered:
        probs = video_probs([c.clip_probs for _, c in ordered], mode, pool)
        prediction = prediction_columns(*top_k_arrays(probs[None], k), labels)
    else:
        prediction = {name: pa.nulls(1, VIDEOS_SCHEMA.field(name).type) for name in _PREDICTION_COLUMNS}
    label = pa.array([ref.label], pa.string())
    scalars: dict[str, Any] = {
        "video_id": ref.video_id,
        "uri": ref.uri,
        "status": status.value,
        "error_stage": error.stage.value if error else None,
        "error_type": error.type if error else None,
        "error_message": error.message if error else None,
        "duration_s": meta.duration_s if meta else None,
        "fps": meta.fps if meta else None,
        "width": meta.width if meta else None,
        "height": meta.height if meta else None,
        "codec": meta.codec if meta else None,
        "frames_decoded": info.frames_decoded,
        "frames_sampled": info.frames_sampled,
        "model": stamp.model,
        "config_hash": stamp.config_hash,
        "run_id": stamp.run_id,
        "schema_version": SCHEMA_VERSION,
    }
    return record_batch({**{name: [value] for name, value in scalars.items()}, "label": label, **prediction,
                         "is_error": _is_error(prediction["prediction"], label)}, VIDEOS_SCHEMA)


def frames_batch(info: VideoInfo, clips: Sequence[tuple[int, ClipPrediction]], labels: Sequence[str], k: int,
                 *, write_probs: bool = False, write_keypoints: bool = False,
                 background: str | None = None) -> pa.RecordBatch:
    """The video's ``frames`` rows (``frames_schema(write_probs, write_keypoints)``), one per sampled frame
    in time (clip) order; ``clips`` are (clip_index, prediction) in any order, each with its
    ``frame_probs`` when ``write_probs`` and ``keypoints`` when ``write_keypoints``.

    A frame's label is its segment's (``background`` outside segments) when the manifest gives
    segments, else the video's; the labels are the only per-frame Python values.
    """
    schema = frames_schema(write_probs, write_keypoints)
    ordered = sorted(clips, key=lambda c: c[0])
    if not ordered:
        return pa.RecordBatch.from_pylist([], schema=schema)
    preds = [clip for _, clip in ordered]
    timestamps = np.concatenate([c.timestamps_s for c in preds])
    ref, n = info.ref, len(timestamps)
    sizes = [len(c.frame_indices) for c in preds]
    label = pa.array([ref.label_at(t, background) for t in timestamps.tolist()], pa.string())
    prediction = prediction_columns(np.concatenate([c.top_index[:, :k] for c in preds]),
                                    np.concatenate([c.top_score[:, :k] for c in preds]), labels)
    columns: dict[str, Any] = {
        "video_id": pa.repeat(ref.video_id, n),
        "uri": pa.repeat(ref.uri, n),
        "frame_index": np.concatenate([c.frame_indices for c in preds]),
        "timestamp_s": timestamps,
        "clip_index": np.repeat(np.array([i for i, _ in ordered], np.int32), sizes),
        "label": label,
        **prediction,
        "is_error": _is_error(prediction["prediction"], label),
    }
    if write_probs:
        columns["probs"] = _lists(np.concatenate([c.frame_probs for c in preds]))
    if write_keypoints:
        columns["keypoints"] = _lists(np.concatenate([c.keypoints for c in preds]))
    return record_batch(columns, schema)


def segments_batch(info: VideoInfo, clips: Sequence[tuple[int, ClipPrediction]], labels: Sequence[str],
                   rule: SegmentRule, *, background: str | None = None) -> pa.RecordBatch:
    """The video's ``segments`` rows (``SEGMENTS_SCHEMA``) from its frames' top-1 predictions, in time
    (clip) order; ``clips`` are (clip_index, prediction) in any order. The true labels are the
    manifest's segments (``background`` between them), else the video label (``truth_spans``)."""
    preds = [clip for _, clip in sorted(clips, key=lambda c: c[0])]
    ref = info.ref
    if preds:
        arrays = (np.concatenate([c.timestamps_s for c in preds]),
                  np.concatenate([c.top_index[:, 0] for c in preds]),
                  np.concatenate([c.top_score[:, 0] for c in preds]))
    else:
        arrays = (np.zeros(0, np.float64), np.zeros(0, np.int32), np.zeros(0, np.float32))
    return segment_rows(ref.video_id, ref.uri, *arrays, labels, rule,
                        duration_s=info.meta.duration_s if info.meta else None,
                        truth=truth_spans(ref.segments, ref.label, background))


def embeddings_batch(info: VideoInfo, clips: Sequence[tuple[int, ClipPrediction]], width: int,
                     segments: pa.RecordBatch | None = None) -> pa.RecordBatch:
    """The video's ``embeddings`` rows (``embeddings_schema(width)``): the whole video's (the normalised
    mean of its frames' features, ``transforms.embeddings``), then one per row of its ``segments``
    batch (over the frames in [start_s, end_s)); none for a video without frames.

    Raises:
        ValueError: a clip without features, or features of another width (the model is not the one
            the run declared).
    """
    ordered = sorted(clips, key=lambda c: c[0])
    if not ordered:
        return pa.RecordBatch.from_pylist([], schema=embeddings_schema(width))
    if any(c.features is None for _, c in ordered):
        raise ValueError("the model gave no features for this video's clips (output.write_embeddings)")
    features = np.concatenate([c.features for _, c in ordered])
    times = np.concatenate([c.timestamps_s for _, c in ordered])
    spans = segments if segments is not None and segments.num_rows else None
    starts, ends = ([0], [len(times)]) if spans is None else (
        np.r_[0, np.searchsorted(times, spans["start_s"].to_numpy() - 1e-6)],
        np.r_[len(times), np.searchsorted(times, spans["end_s"].to_numpy() - 1e-6)])
    n = len(starts)
    nothing = pa.nulls(1, pa.float64())
    return record_batch({
        "video_id": pa.repeat(info.ref.video_id, n), "uri": pa.repeat(info.ref.uri, n),
        "segment_index": pa.concat_arrays([pa.nulls(1, pa.int32()), *([] if spans is None
                                                                        else [spans["segment_index"]])]),
        "start_s": pa.concat_arrays([nothing, *([] if spans is None else [spans["start_s"]])]),
        "end_s": pa.concat_arrays([nothing, *([] if spans is None else [spans["end_s"]])]),
        EMBEDDING: embedding_column(span_embeddings(features, starts, ends), n, width),
    }, embeddings_schema(width))


class _RowsFn(beam.DoFn):
    def __init__(self, *, mode: str, labels: Sequence[str], k: int, write_frames: bool, write_probs: bool,
                 write_keypoints: bool, stamp: RunStamp, pool: str, background: str | None,
                 segments: SegmentRule | None, embedding_width: int | None):
        self._embedding_width = embedding_width
        self._background = background
        self._segments = segments
        self._mode = mode
        self._pool = pool
        self._labels = list(labels)
        self._k = k
        self._write_frames = write_frames
        self._write_probs = write_probs
        self._write_keypoints = write_keypoints
        self._stamp = stamp
        self._by_status = {s: metrics.status_counter(s.value) for s in Status}
        self._named: dict[str, Any] = {}
        self._decoded = metrics.counter(metrics.FRAMES_DECODED)
        self._sampled = metrics.counter(metrics.FRAMES_SAMPLED)
        self._segment_rows = metrics.counter(metrics.SEGMENTS)
        self._decode_ms = metrics.distribution(metrics.DECODE_MS)
        self._transfer_ms = metrics.distribution(metrics.TRANSFER_MS)
        self._aggregate_ms = metrics.distribution(metrics.AGGREGATE_MS)

    def process(self, result: VideoResult) -> Iterator[VideoRows]:
        info = result.info
        start = time.thread_time()
        try:
            tables = self._tables(info, result.clips)
        except Exception as exc:  # the per-video boundary: a video whose rows cannot be made is failed
            info = info._replace(error=VideoError.of(ErrorStage.INFER, exc))
            tables = self._tables(info, [])
        self._aggregate_ms.update(round((time.thread_time() - start) * 1000))
        self._decoded.inc(info.frames_decoded)
        self._sampled.inc(info.frames_sampled)
        if "segments" in tables:
            self._segment_rows.inc(tables["segments"].num_rows)
        self._decode_ms.update(round(info.decode_s * 1000))
        self._transfer_ms.update(round(info.transfer_s * 1000))
        self._count(f"{metrics.SPLIT_PREFIX}{info.ref.split}")
        video = tables["videos"]
        self._by_status[Status(video["status"][0].as_py())].inc()
        error_type = video["error_type"][0].as_py()
        if error_type:
            self._count(f"{metrics.ERROR_PREFIX}{error_type}")
        yield VideoRows(info.ref.split, tables)

    def _tables(self, info: VideoInfo, outputs: Sequence[tuple[int, ClipPrediction]]):
        """The video's ``{table: batch}``: ``videos`` and, with ``write_frames``, ``frames``, and with
        segments, ``segments``."""
        clips = [(index, pred) for index, pred in outputs if len(pred.frame_indices)]
        labels, k = self._labels, self._k
        tables = {"videos": video_batch(info, clips, self._mode, labels, k, self._stamp, self._pool)}
        if self._write_frames:
            tables["frames"] = frames_batch(info, clips, labels, k, write_probs=self._write_probs,
                                            write_keypoints=self._write_keypoints,
                                            background=self._background)
        if self._segments is not None:
            tables["segments"] = segments_batch(info, clips, labels, self._segments,
                                                background=self._background)
        if self._embedding_width is not None:
            width = self._embedding_width
            tables["embeddings"] = embeddings_batch(info, clips, width, tables.get("segments"))
        return tables

    def _count(self, name: str) -> None:
        """Adds one to the counter ``name``, made on first use (error types and splits are open sets)."""
        if name not in self._named:
            self._named[name] = metrics.counter(name)
        self._named[name].inc()


class Aggregate(beam.PTransform):
    """VideoResult -> one ``VideoRows`` per video: its ``videos`` batch (one row), with
    ``write_frames`` its ``frames`` batch, and with ``segments`` (the rule, ``output.segment_min_s``
    and ``output.segment_min_score``) its ``segments`` batch (none for a video without frames),
    so that the writer commits a video's rows together.

    ``write_probs`` and ``write_keypoints`` add the ``probs`` and ``keypoints`` frame columns
    (``transforms.schema.frames_schema``). ``background`` labels the frames outside every
    segment of a segmented video, and is the true label there for ``segments``.
    ``embedding_width`` (``output.write_embeddings``) adds its ``embeddings`` batch (the video's and
    its segments', from the clips' features). Counts videos by status, split and error type,
    frames, and segments.
    """

    def __init__(self, *, mode: str, labels: Sequence[str], k: int, write_frames: bool, write_probs: bool,
                 stamp: RunStamp, pool: str = "mean", write_keypoints: bool = False,
                 background: str | None = None, segments: SegmentRule | None = None,
                 embedding_width: int | None = None):
        super().__init__()
        self._fn = _RowsFn(mode=mode, labels=labels, k=k, write_frames=write_frames, write_probs=write_probs,
                           write_keypoints=write_keypoints, stamp=stamp, pool=pool, background=background,
                           segments=segments, embedding_width=embedding_width)

    def expand(self, results):
        return results | "ToRows" >> beam.ParDo(self._fn)
