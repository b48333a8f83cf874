"""The DecodeAndSample DoFn called directly: clips for the model and one VideoInfo per video."""

from __future__ import annotations

import os

from apache_beam import pvalue

from transforms.decode_sample import VIDEOS_TAG, _DecodeAndSampleFn
from transforms.records import ErrorStage, FrameSource, SamplingSpec, VideoRef

SPEC = SamplingSpec(strategy="fps", fps=5.0, n_frames=4, imgz=32, max_pixels=10**7,
                    max_duration_s=600, decode_timeout_s=60)


def _fn(mode):
    fn = _DecodeAndSampleFn(mode=mode, spec=SPEC, stride=4)
    fn.setup()
    return fn


def _split(outputs):
    tagged = [o for o in outputs if isinstance(o, pvalue.TaggedOutput)]
    clips = [o for o in outputs if not isinstance(o, pvalue.TaggedOutput)]
    assert len(tagged) == 1 and tagged[0].tag == VIDEOS_TAG
    return clips, tagged[0].value


def test_base_mode_yields_keyed_clips_then_info(mixed_videos):
    ref = VideoRef("v", os.path.join(mixed_videos["dir"], "right_160x120_25.mp4"), "x", "train")
    clips, (video_id, info) = _split(list(_fn("base").process(ref)))
    # 50 frames at 25 fps, sampled at 5 fps -> 10 frames -> clips of 4, 4, 2
    assert [key for key, _ in clips] == [("v", 0), ("v", 1), ("v", 2)]
    assert [c.frames.shape for _, c in clips] == [(4, 32, 32, 3), (4, 32, 32, 3), (2, 32, 32, 3)]
    assert video_id == "v" and info.frames_decoded == 50 and info.frames_sampled == 10
    assert info.error is None and info.meta.codec == "h264"


def test_stream_mode_probes_and_defers_decoding_to_the_model(mixed_videos):
    ref = VideoRef("v", os.path.join(mixed_videos["dir"], "up_176x144_15.mkv"), None, "train")
    sources, (_, info) = _split(list(_fn("stream").process(ref)))
    assert sources == [(("v", 0), FrameSource(ref, SPEC))]
    assert info.meta.codec == "mpeg4" and info.meta.width == 176 and info.frames_decoded == 0


def test_bad_manifest_row_becomes_a_failed_info_without_opening():
    ref = VideoRef("b", "m.csv#row=3", None, "train", error="m.csv#row=3: row has no uri")
    sources, (_, info) = _split(list(_fn("stream").process(ref)))
    assert sources == []
    assert (info.error.stage, info.error.type) == (ErrorStage.OPEN, "BadManifestRow")


def test_corrupt_file_gives_info_with_open_error_and_no_clips(mixed_videos):
    ref = VideoRef("c", os.path.join(mixed_videos["dir"], mixed_videos["corrupt"]), None, "test")
    clips, (_, info) = _split(list(_fn("base").process(ref)))
    assert clips == []
    assert info.error.stage == ErrorStage.OPEN and info.frames_sampled == 0
