"""DecodeAndSample: VideoRef -> model inputs keyed by (video_id, clip_index), plus one VideoInfo.

Base mode decodes here: clips of ``n_frames`` uint8 frames go to the model as the
video is decoded, so memory holds one clip. Stream mode only opens and probes
here (bad files fail early, off the model workers) and hands a ``FrameSource`` to
the model handler, which decodes chunk by chunk with the model state carried
along: a causal model needs the frames of a video in order, in one place.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam import pvalue

from transforms.decoding import DecodeReport, probe_video, sample_frames, windows
from transforms.records import ErrorStage, FrameSource, SamplingSpec, VideoInfo, VideoRef

__all__ = ["DecodeAndSample", "VIDEOS_TAG"]

VIDEOS_TAG = "videos"


class _DecodeAndSampleFn(beam.DoFn):
    """Yields ``((video_id, clip_index), Clip | FrameSource)`` and a tagged ``(video_id, VideoInfo)``."""

    def __init__(self, *, mode: str, spec: SamplingSpec, stride: int):
        self._mode = mode
        self._spec = spec
        self._stride = stride

    def process(self, ref: VideoRef) -> Iterator:
        report = DecodeReport()
        if ref.error:
            report.fail(ErrorStage.OPEN, "BadManifestRow", ref.error)
        elif self._mode == "stream":
            probe_video(ref.uri, self._spec, report)
            if report.error is None:
                yield (ref.video_id, 0), FrameSource(ref, self._spec)
        else:
            frames = sample_frames(ref.uri, self._spec, report)
            for clip_index, clip in windows(frames, self._spec.n_frames, self._stride):
                yield (ref.video_id, clip_index), clip
        yield pvalue.TaggedOutput(VIDEOS_TAG, (ref.video_id, VideoInfo(
            ref, report.meta, report.frames_decoded, report.frames_sampled, report.error)))


class DecodeAndSample(beam.PTransform):
    """VideoRef -> (model inputs, videos).

    Returns a tuple: model inputs, a PCollection of ``((video_id, clip_index), Clip)``
    (base mode, uint8 frames) or ``((video_id, 0), FrameSource)`` (stream mode); and
    videos, a PCollection of ``(video_id, VideoInfo)``, exactly one per input video,
    failed ones included.
    """

    def __init__(self, *, mode: str, spec: SamplingSpec, stride: int):
        super().__init__()
        self._fn = _DecodeAndSampleFn(mode=mode, spec=spec, stride=stride)

    def expand(self, refs):
        outputs = refs | "Decode" >> beam.ParDo(self._fn).with_outputs(VIDEOS_TAG, main="clips")
        return outputs.clips, outputs[VIDEOS_TAG]
