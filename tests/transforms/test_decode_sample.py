"""The DecodeAndSample DoFn called directly: a FrameSource per good video, a failed result per bad one."""

from __future__ import annotations

import os

from apache_beam import pvalue

from transforms.decode_sample import FAILED_TAG, _OpenAndProbeFn, _PredecodeShortFn
from transforms.decoding import DecodeReport, sample_frames
from transforms.records import ErrorStage, FrameSource, SamplingSpec, VideoRef
from transforms.sampling import expected_frames, frames_of

SPEC = SamplingSpec(strategy="fps", fps=5.0, n_frames=4, imgz=32, max_pixels=10**7,
                    max_duration_s=600, decode_timeout_s=60)


def _run(ref):
    outputs = list(_OpenAndProbeFn(SPEC).process(ref))
    assert len(outputs) == 1
    return outputs[0]


def test_a_good_video_is_probed_and_its_decoding_left_to_the_model(mixed_videos):
    ref = VideoRef("v", os.path.join(mixed_videos["dir"], "up_176x144_15.mkv"), None, "train")
    source = _run(ref)
    assert isinstance(source, FrameSource) and source.ref == ref and source.spec == SPEC
    assert source.meta.codec == "mpeg4" and source.meta.width == 176 and source.meta.fps == 15


def test_bad_manifest_row_becomes_a_failed_result_without_opening():
    ref = VideoRef("b", "m.csv#row=3", None, "train", error="m.csv#row=3: row has no uri")
    out = _run(ref)
    assert isinstance(out, pvalue.TaggedOutput) and out.tag == FAILED_TAG
    assert out.value.clips == [] and out.value.info.meta is None
    assert (out.value.info.error.stage, out.value.info.error.type) == (ErrorStage.OPEN, "BadManifestRow")


def test_corrupt_file_becomes_a_failed_result_with_an_open_error(mixed_videos):
    ref = VideoRef("c", os.path.join(mixed_videos["dir"], mixed_videos["corrupt"]), None, "test")
    out = _run(ref)
    assert out.tag == FAILED_TAG and out.value.info.ref == ref
    assert out.value.info.error.stage == ErrorStage.OPEN and out.value.info.frames_sampled == 0


def test_short_videos_are_decoded_here_when_the_model_runs_elsewhere(mixed_videos):
    ref = VideoRef("v", os.path.join(mixed_videos["dir"], "right_160x120_25.mp4"), None, "train")
    # 2 s at 25 fps sampled at 5 fps: 10 frames expected (11 allowed for the end point)
    assert expected_frames(SPEC, _run(ref).meta) == 11
    probed = _run(ref)
    (source,) = _PredecodeShortFn(max_frames=11).process(probed)
    lazy = DecodeReport()
    expected = list(sample_frames(ref.uri, SPEC, lazy))
    assert [f.index for f in source.frames] == [f.index for f in expected] and len(expected) == 10
    assert all((a.image == b.image).all() for a, b in zip(source.frames, expected))
    report = DecodeReport()
    assert list(frames_of(source, report)) == list(source.frames)
    assert (report.frames_decoded, report.frames_sampled, report.error) == (50, 10, None)
    assert report.meta == lazy.meta
    # over the limit: left to the video handler, which decodes it lazily
    assert list(_PredecodeShortFn(max_frames=10).process(probed)) == [probed] and probed.frames is None
