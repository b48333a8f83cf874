"""DecodeAndSample: VideoRef -> keyed clips for the model, plus one VideoInfo per video."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from transforms.decoding import DecodeReport, clip_from_frames, sample_frames, windows
from transforms.records import Clip, VideoInfo, VideoRef

__all__ = ["DecodeAndSample", "VIDEOS_TAG"]

VIDEOS_TAG = "videos"


class _DecodeAndSampleFn(beam.DoFn):
    """Decodes one video; yields ``((video_id, clip_index), Clip)`` and a tagged VideoInfo."""

    def __init__(self, *, mode: str, strategy: str, fps: float, n_frames: int, stride: int,
                 imgz: int, max_pixels: int, max_duration_s: float, decode_timeout_s: float):
        self._mode = mode
        self._sample_args = dict(strategy=strategy, fps=fps, n_frames=n_frames, imgz=imgz,
                                 max_pixels=max_pixels, max_duration_s=max_duration_s,
                                 decode_timeout_s=decode_timeout_s)
        self._n_frames = n_frames
        self._stride = stride
        self._decoded = Metrics.counter("videolabel", "frames_decoded")
        self._sampled = Metrics.counter("videolabel", "frames_sampled")

    def process(self, ref: VideoRef) -> Iterator:
        report = DecodeReport()
        frames = sample_frames(ref.uri, report=report, **self._sample_args)
        if self._mode == "stream":
            clips = _whole_sequence(frames)
        else:
            clips = windows(frames, self._n_frames, self._stride)
        for clip_index, clip in clips:
            yield (ref.video_id, clip_index), clip
        self._decoded.inc(report.frames_decoded)
        self._sampled.inc(report.frames_sampled)
        yield pvalue.TaggedOutput(VIDEOS_TAG, (ref.video_id, VideoInfo(
            ref, report.meta, report.frames_decoded, report.frames_sampled, report.error)))


def _whole_sequence(frames) -> Iterator[tuple[int, Clip]]:
    """Stream mode: all sampled frames of a video as clip 0 (none if nothing was sampled)."""
    kept = list(frames)
    if kept:
        yield 0, clip_from_frames(kept, len(kept))


class DecodeAndSample(beam.PTransform):
    """VideoRef -> (clips, videos).

    Returns a tuple: clips, a PCollection of ``((video_id, clip_index), Clip)``
    with uint8 frames; and videos, a PCollection of ``(video_id, VideoInfo)``,
    exactly one per input video, failed ones included.
    """

    def __init__(self, *, mode: str, strategy: str, fps: float, n_frames: int, stride: int,
                 imgz: int, max_pixels: int, max_duration_s: float, decode_timeout_s: float):
        super().__init__()
        self._fn = _DecodeAndSampleFn(
            mode=mode, strategy=strategy, fps=fps, n_frames=n_frames, stride=stride, imgz=imgz,
            max_pixels=max_pixels, max_duration_s=max_duration_s, decode_timeout_s=decode_timeout_s)

    def expand(self, refs):
        outputs = refs | "Decode" >> beam.ParDo(self._fn).with_outputs(VIDEOS_TAG, main="clips")
        return outputs.clips, outputs[VIDEOS_TAG]
