"""Typed elements that flow between the pipeline stages.

The flow is one element per video: ``VideoRef -> FrameSource -> VideoResult -> VideoRows``
(a video that fails before the model becomes a ``VideoResult`` with the error and no
clips). Inside the model handler a video is decoded into ``Clip``s (base mode) or
chunks (stream mode). Frames stay ``uint8`` RGB until the model handler turns them
into ``float32`` in [0, 1].
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

__all__ = [
    "Clip",
    "ClipPrediction",
    "DEFAULT_DECODER",
    "ErrorStage",
    "FrameSource",
    "SamplingSpec",
    "Status",
    "VideoError",
    "VideoInfo",
    "VideoMeta",
    "VideoRef",
    "VideoExamples",
    "VideoResult",
    "VideoRows",
]


class Status(str, enum.Enum):
    """Outcome of one video."""

    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"


class ErrorStage(str, enum.Enum):
    """Where a video's processing went wrong."""

    OPEN = "open"
    PROBE = "probe"
    DECODE = "decode"
    INFER = "infer"


class VideoRef(NamedTuple):
    """One input video, as listed.

    Attributes:
        video_id: stable id (manifest id, else a hash of the uri).
        uri: local path or gs:// uri.
        label: known class name, or None.
        split: train/valid/test (or the manifest's own value).
        error: why the listing could not make a usable reference (a bad
            manifest row); such a video becomes a failed row without being opened.
        segments: ``(start_s, end_s, label)`` spans from a segment manifest, sorted;
            a frame takes the label of the span holding its timestamp.
    """

    video_id: str
    uri: str
    label: str | None
    split: str
    error: str | None = None
    segments: tuple[tuple[float, float, str], ...] = ()

    def label_at(self, t: float, background: str | None = None) -> str | None:
        """The label of a frame at ``t`` seconds: its segment's, ``background`` outside all
        segments, and the video's label when the manifest gives no segments."""
        if not self.segments:
            return self.label
        for start, end, label in self.segments:
            if start <= t < end:
                return label
        return background


class VideoMeta(NamedTuple):
    """What the container says about its video stream."""

    duration_s: float | None
    fps: float | None
    width: int
    height: int
    codec: str


class VideoError(NamedTuple):
    """A per-video failure; becomes ``error_*`` columns, never a crash."""

    stage: ErrorStage
    type: str
    message: str

    @classmethod
    def of(cls, stage: ErrorStage, exc: BaseException) -> VideoError:
        """An exception raised for one video as its error: the type's name and the message's first
        line (at most 500 characters)."""
        message = str(exc) or repr(exc)
        return cls(stage, type(exc).__name__, message.splitlines()[0][:500])


class VideoInfo(NamedTuple):
    """Everything about one video except its predictions: its ref, probe, frame counts, error and
    decode time, one per video (``DecodeReport.info``), carried in its ``VideoResult``."""

    ref: VideoRef
    meta: VideoMeta | None
    frames_decoded: int
    frames_sampled: int
    error: VideoError | None
    decode_s: float = 0.0  # time spent opening, decoding and sampling (not in the model)
    transfer_s: float = 0.0  # CPU time its frames took to cross from the decoder process to the worker


class Clip(NamedTuple):
    """Consecutive sampled frames of one video, the unit sent to the model.

    Attributes:
        frames: uint8 RGB, shape [num_frames, imgz, imgz, 3], values 0-255.
        frame_indices: int64 [num_frames], index of each frame in the decoded stream.
        timestamps_s: float64 [num_frames], presentation time of each frame (from pts).
        owned_start: first position in this clip whose frame row this clip writes.
        owned_stop: one past the last such position. With overlapping windows
            each frame row is written by exactly one clip.
    """

    frames: np.ndarray
    frame_indices: np.ndarray
    timestamps_s: np.ndarray
    owned_start: int
    owned_stop: int


DEFAULT_DECODER = "transforms.decoding:sample_frames"


class SamplingSpec(NamedTuple):
    """How to sample one video; see ``SamplingConfig`` for the meaning of each field.

    ``decoder`` names the function (``"module:function"``, with ``sample_frames``'
    signature) that the decoder process runs; tests swap in decoders that crash.
    """

    strategy: str
    fps: float
    n_frames: int
    imgz: int
    max_pixels: int
    max_duration_s: float
    decode_timeout_s: float
    decode_threads: int = 1
    decoder_memory_mb: int = 4096
    decoder: str = DEFAULT_DECODER


class FrameSource(NamedTuple):
    """The model's unit: one probed video whose frames the model handler decodes lazily.

    Handlers decode it a chunk or a batch of clips at a time, so memory is bounded
    by one chunk rather than the video's length, and return one ``VideoResult``.
    ``meta`` is what the probe found, for the row of a video whose inference fails.
    When the model runs on other workers (GPU), a short video is decoded before
    them: ``frames`` holds its sampled frames and ``decoded`` the decode outcome.
    """

    ref: VideoRef
    spec: SamplingSpec
    meta: VideoMeta | None = None
    frames: tuple[Any, ...] | None = None
    decoded: VideoInfo | None = None


class ClipPrediction(NamedTuple):
    """Model output for one clip, keyed outside by ``(video_id, clip_index)``.

    Per-frame scores are the causal output after each frame in stream mode and
    the clip's probabilities repeated in base mode. Only their top k are kept
    unless the full vectors are asked for (``output.write_probs``), so a long
    video costs a few bytes per frame, not 4 per class.

    Attributes:
        frame_indices: int64 [n], the frames whose rows this clip writes.
        timestamps_s: float64 [n], their presentation times.
        top_index: int32 [n, k], each frame's k best classes, best first.
        top_score: float32 [n, k], their probabilities.
        clip_probs: float32 [num_classes], the clip's probabilities (stream mode:
            the output after the last frame); None when no frame was sampled.
        frame_probs: float32 [n, num_classes] with ``write_probs``, else None.
        keypoints: float32 [n, 17, 3] pose keypoints (y, x, score) with
            ``write_keypoints`` (pose LSTM only), else None.
        features: float32 [n, F] with ``write_embeddings``: each frame's own features (stream
            mode) or its clip's (clip models), which the video's and its segments' embeddings
            average; else None.
    """

    frame_indices: np.ndarray
    timestamps_s: np.ndarray
    top_index: np.ndarray
    top_score: np.ndarray
    clip_probs: np.ndarray | None
    frame_probs: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    features: np.ndarray | None = None


class VideoResult(NamedTuple):
    """Everything the model stage learned of one video: one element per video from here on.

    Attributes:
        info: the decode outcome (a probe or inference failure in ``info.error``).
        clips: ``(clip_index, prediction)`` in clip order (stream mode: one, clip 0, over every frame).
    """

    info: VideoInfo
    clips: list[tuple[int, ClipPrediction]]


class VideoExamples(NamedTuple):
    """One video's training examples (``transforms.examples.ExtractExamples``).

    Attributes:
        info: the decode outcome (a probe or extraction failure in ``info.error``).
        examples: ``(clip_index, example)`` in clip order, one array per clip, of the example model's
            dtype and shape (uint8 clips, float32 keypoints or features).
        middles_s: each clip's middle time in seconds (between its first and last frame), in the same
            order: where a segment manifest's label for the clip is read (``VideoRef.label_at``).
    """

    info: VideoInfo
    examples: list[tuple[int, np.ndarray]]
    middles_s: tuple[float, ...] = ()


class VideoRows(NamedTuple):
    """One video's output rows, the writer's unit: committed together, in one part file per table.

    Attributes:
        split: the video's split, the Hive partition its rows go to (not a column in the files).
        tables: table name -> that video's rows as one record batch of the table's schema
            (``videos``: one row; ``frames``: one per sampled frame, in time order).
    """

    split: str
    tables: dict[str, pa.RecordBatch]
