"""Aggregate: one VideoResult -> that video's output rows.

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
from apache_beam.metrics import Metrics

from models.scores import top_k_arrays
from transforms.progress import note_video
from transforms.records import ClipPrediction, ErrorStage, Status, VideoError, VideoInfo, VideoResult
from transforms.schema import SCHEMA_VERSION

__all__ = [
    "Aggregate",
    "ERROR_COUNTER_PREFIX",
    "SPLIT_COUNTER_PREFIX",
    "RunStamp",
    "frame_rows",
    "prediction_columns",
    "top_k",
    "video_probs",
    "video_row",
]

ERROR_COUNTER_PREFIX = "errors_"
SPLIT_COUNTER_PREFIX = "videos_split_"


class RunStamp:
    """Per-run values stamped on every video row."""

    def __init__(self, model: str, config_hash: str, run_id: str):
        self.model = model
        self.config_hash = config_hash
        self.run_id = run_id


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


def video_row(info: VideoInfo, clips: Sequence[tuple[int, ClipPrediction]], mode: str,
              labels: Sequence[str], k: int, stamp: RunStamp, pool: str = "mean") -> dict[str, Any]:
    """The one ``videos`` row for a video. ``clips`` are (clip_index, prediction) in any order."""
    ordered = sorted(clips, key=lambda c: c[0])
    status, error = _status(info, bool(ordered))
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
               k: int, write_probs: bool, background: str | None = None) -> Iterator[dict[str, Any]]:
    """One ``frames`` row per sampled frame, in time order; the label is the frame's segment's
    (``background`` outside segments) when the manifest gives segments, else the video's."""
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
                "label": ref.label_at(float(clip.timestamps_s[i]), background),
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
                 write_probs: bool, stamp: RunStamp, pool: str, progress_dir: str | None,
                 background: str | None):
        self._progress_dir = progress_dir
        self._background = background
        self._mode = mode
        self._pool = pool
        self._labels = list(labels)
        self._k = k
        self._write_frames = write_frames
        self._write_probs = write_probs
        self._stamp = stamp
        self._by_status = {s: Metrics.counter("videolabel", f"videos_{s.value}") for s in Status}
        self._named: dict[str, Any] = {}
        self._decoded = Metrics.counter("videolabel", "frames_decoded")
        self._sampled = Metrics.counter("videolabel", "frames_sampled")
        self._decode_ms = Metrics.distribution("videolabel", "decode_ms")

    def process(self, result: VideoResult) -> Iterator[dict[str, list[dict[str, Any]]]]:
        info = result.info
        try:
            row, frames = self._rows(info, result.clips)
        except Exception as exc:  # the per-video boundary: a video whose rows cannot be made is failed
            info = info._replace(error=VideoError.of(ErrorStage.INFER, exc))
            row, frames = video_row(info, [], self._mode, self._labels, self._k, self._stamp), []
        self._decoded.inc(info.frames_decoded)
        self._sampled.inc(info.frames_sampled)
        self._decode_ms.update(int(info.decode_s * 1000))
        self._count(f"{SPLIT_COUNTER_PREFIX}{info.ref.split}")
        self._by_status[Status(row["status"])].inc()
        if self._progress_dir:
            note_video(self._progress_dir, row["status"])
        if row["error_type"]:
            self._count(f"{ERROR_COUNTER_PREFIX}{row['error_type']}")
        yield {"videos": [row], "frames": frames}

    def _rows(self, info: VideoInfo, outputs: Sequence[tuple[int, ClipPrediction]]):
        """The video's row and its frame rows (none without ``write_frames``)."""
        clips = [(index, pred) for index, pred in outputs if len(pred.frame_indices)]
        row = video_row(info, clips, self._mode, self._labels, self._k, self._stamp, self._pool)
        frames = []
        if self._write_frames:
            frames = list(frame_rows(info, clips, self._labels, self._k, self._write_probs, self._background))
        return row, frames

    def _count(self, name: str) -> None:
        """Adds one to the counter ``name``, made on first use (error types and splits are open sets)."""
        if name not in self._named:
            self._named[name] = Metrics.counter("videolabel", name)
        self._named[name].inc()


class Aggregate(beam.PTransform):
    """VideoResult -> one ``{"videos": [row], "frames": [rows]}`` element per video.

    Rows are dicts whose keys follow ``transforms.schema`` (``frames`` is empty
    without ``write_frames``); keeping a video's rows in one element lets the
    writer commit them together. With ``progress_dir`` (local runs) each video
    is also noted there for the progress line (``transforms.progress``).
    ``background`` labels the frames outside every segment of a segmented video.
    """

    def __init__(self, *, mode: str, labels: Sequence[str], k: int, write_frames: bool,
                 write_probs: bool, stamp: RunStamp, pool: str = "mean", progress_dir: str | None = None,
                 background: str | None = None):
        super().__init__()
        self._fn = _RowsFn(mode=mode, labels=labels, k=k, write_frames=write_frames,
                           write_probs=write_probs, stamp=stamp, pool=pool, progress_dir=progress_dir,
                           background=background)

    def expand(self, results):
        """``results``: one PCollection, or a tuple of them, each aggregated on its own (no Flatten:
        on Beam's local runner a Flatten is a stage boundary that would hold rows back until the end)."""
        if isinstance(results, beam.PCollection):
            return results | "ToRows" >> beam.ParDo(self._fn)
        return tuple(pcoll | f"ToRows{i}" >> beam.ParDo(self._fn) for i, pcoll in enumerate(results))
