"""Aggregate: per-video join of info, clip predictions and errors -> output rows.

The video prediction is the mean (or, with ``model.video_pool: max``, the
renormalised maximum) of clip probabilities in base mode and the final causal
output (after the last sampled frame) in stream mode. Rows are
plain dicts whose keys follow ``transforms.schema``; ``split`` rides along as
the partition key and is not written inside the files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from transforms.records import ClipPrediction, ErrorStage, Status, VideoError, VideoInfo
from transforms.schema import SCHEMA_VERSION

__all__ = [
    "Aggregate",
    "ERROR_COUNTER_PREFIX",
    "FRAMES_TAG",
    "RunStamp",
    "frame_rows",
    "prediction_columns",
    "top_k",
    "top_k_arrays",
    "video_probs",
    "video_row",
]

FRAMES_TAG = "frames"
ERROR_COUNTER_PREFIX = "errors_"


class RunStamp:
    """Per-run values stamped on every video row."""

    def __init__(self, model: str, config_hash: str, run_id: str):
        self.model = model
        self.config_hash = config_hash
        self.run_id = run_id


def top_k_arrays(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 [..., num_classes] -> (int32 [..., k] class indices best first, float32 [..., k] scores).

    Ties keep the lower class index first.
    """
    order = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    return order.astype(np.int32), np.take_along_axis(probs, order, axis=-1).astype(np.float32)


def prediction_columns(index: np.ndarray, score: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Prediction columns from one row of top-k indices int32 [k] and scores float32 [k]."""
    best = int(index[0])
    return {
        "prediction": labels[best],
        "prediction_index": best,
        "score": float(score[0]),
        "top_k_labels": [labels[i] for i in index],
        "top_k_scores": score.tolist(),
    }


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> dict[str, Any]:
    """Prediction columns for one probability vector float32 [num_classes]."""
    return prediction_columns(*top_k_arrays(probs, k), labels)


def _is_error(prediction: str | None, label: str | None) -> bool | None:
    if label is None or prediction is None:
        return None
    return prediction != label


def _status(info: VideoInfo, predicted: bool,
            infer_error: VideoError | None) -> tuple[Status, VideoError | None]:
    error = info.error or infer_error
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


def video_row(info: VideoInfo, clips: Sequence[tuple[int, ClipPrediction]], mode: str,
              labels: Sequence[str], k: int, stamp: RunStamp,
              infer_error: VideoError | None = None, pool: str = "mean") -> dict[str, Any]:
    """The one ``videos`` row for a video. ``clips`` are (clip_index, prediction) in any order."""
    ordered = sorted(clips, key=lambda c: c[0])
    status, error = _status(info, bool(ordered), infer_error)
    meta = info.meta
    row: dict[str, Any] = {
        "video_id": info.ref.video_id,
        "uri": info.ref.uri,
        "split": info.ref.split,
        "label": info.ref.label,
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
        "prediction": None, "prediction_index": None, "score": None,
        "top_k_labels": None, "top_k_scores": None,
        "model": stamp.model,
        "config_hash": stamp.config_hash,
        "run_id": stamp.run_id,
        "schema_version": SCHEMA_VERSION,
    }
    if ordered:
        probs = video_probs([c.clip_probs for _, c in ordered], mode, pool)
        row.update(top_k(probs, labels, k))
    row["is_error"] = _is_error(row["prediction"], row["label"])
    return row


def frame_rows(info: VideoInfo, clips: Iterable[tuple[int, ClipPrediction]], labels: Sequence[str],
               k: int, write_probs: bool) -> Iterator[dict[str, Any]]:
    """One ``frames`` row per sampled frame, in time order."""
    ref = info.ref
    for clip_index, clip in sorted(clips, key=lambda c: c[0]):
        for i in range(len(clip.frame_indices)):
            row = {
                "video_id": ref.video_id,
                "uri": ref.uri,
                "split": ref.split,
                "frame_index": int(clip.frame_indices[i]),
                "timestamp_s": float(clip.timestamps_s[i]),
                "clip_index": clip_index,
                "label": ref.label,
                **prediction_columns(clip.top_index[i, :k], clip.top_score[i, :k], labels),
            }
            row["is_error"] = _is_error(row["prediction"], row["label"])
            if write_probs:
                row["probs"] = clip.frame_probs[i].tolist()
            if clip.keypoints is not None:
                row["keypoints"] = clip.keypoints[i].reshape(-1).tolist()
            yield row


class _RowsFn(beam.DoFn):
    def __init__(self, *, mode: str, labels: Sequence[str], k: int, write_frames: bool,
                 write_probs: bool, stamp: RunStamp, pool: str):
        self._mode = mode
        self._pool = pool
        self._labels = list(labels)
        self._k = k
        self._write_frames = write_frames
        self._write_probs = write_probs
        self._stamp = stamp
        self._by_status = {s: Metrics.counter("videolabel", f"videos_{s.value}") for s in Status}
        self._by_error: dict[str, Any] = {}
        self._decoded = Metrics.counter("videolabel", "frames_decoded")
        self._sampled = Metrics.counter("videolabel", "frames_sampled")

    def process(self, element) -> Iterator:
        video_id, grouped = element
        preds = list(grouped["preds"])
        # stream mode decodes in the model handler: its outcome replaces the probe-only info
        info = next((pred.info for _, pred in preds if pred.info is not None), None)
        info = info or next(iter(grouped["info"]))
        clips = [(key[1], pred) for key, pred in preds if len(pred.frame_indices)]
        errors = list(grouped["errors"])
        self._decoded.inc(info.frames_decoded)
        self._sampled.inc(info.frames_sampled)
        row = video_row(info, clips, self._mode, self._labels, self._k, self._stamp,
                        errors[0] if errors else None, self._pool)
        self._by_status[Status(row["status"])].inc()
        if row["error_type"]:
            self._error_counter(row["error_type"]).inc()
        yield row
        if self._write_frames:
            for frame in frame_rows(info, clips, self._labels, self._k, self._write_probs):
                yield pvalue.TaggedOutput(FRAMES_TAG, frame)


    def _error_counter(self, error_type: str):
        if error_type not in self._by_error:
            self._by_error[error_type] = Metrics.counter("videolabel", f"{ERROR_COUNTER_PREFIX}{error_type}")
        return self._by_error[error_type]


class Aggregate(beam.PTransform):
    """(videos, predictions, errors) -> (video rows, frame rows).

    Inputs are ``(video_id, VideoInfo)``, ``((video_id, clip_index), ClipPrediction)``
    and ``(video_id, VideoError)``. Outputs dict rows per ``transforms.schema``.
    """

    def __init__(self, *, mode: str, labels: Sequence[str], k: int, write_frames: bool,
                 write_probs: bool, stamp: RunStamp, pool: str = "mean"):
        super().__init__()
        self._fn = _RowsFn(mode=mode, labels=labels, k=k, write_frames=write_frames,
                           write_probs=write_probs, stamp=stamp, pool=pool)

    def expand(self, inputs):
        videos, predictions, errors = inputs
        by_video = predictions | "KeyByVideo" >> beam.Map(lambda kv: (kv[0][0], kv))
        joined = ({"info": videos, "preds": by_video, "errors": errors}
                  | "JoinPerVideo" >> beam.CoGroupByKey())
        rows = joined | "ToRows" >> beam.ParDo(self._fn).with_outputs(FRAMES_TAG, main="videos")
        return rows.videos, rows[FRAMES_TAG]
