"""Pure decoding and sampling functions on generated videos (no Beam)."""

from __future__ import annotations

import numpy as np
import pytest

from beam_pipeline.demo.synthetic import motion_frames, write_video
from tests.conftest import shared_fixture
from transforms.clips import windows
from transforms.decoding import (
    DecodeReport,
    PacketScan,
    SampledFrame,
    letterbox_size,
    sample_frames,
    select_nearest,
    should_seek,
)
from transforms.records import ErrorStage, SamplingSpec

SPEC = SamplingSpec(strategy="fps", fps=5.0, n_frames=8, imgz=64, max_pixels=3840 * 2160,
                    max_duration_s=3600.0, decode_timeout_s=60.0)


def _sample(path, **changes):
    report = DecodeReport()
    frames = list(sample_frames(str(path), SPEC._replace(**changes), report))
    return frames, report


def test_select_nearest_picks_closest_once_and_prefers_earlier_on_ties():
    items = [(t, i) for i, t in enumerate([0.0, 0.25, 0.5, 0.75, 1.0])]
    picked = [p for _, p in select_nearest(iter(items), iter([0.0, 0.375, 0.5, 0.8, 5.0]))]
    # 0.375 is 0.125 from 0.25 and 0.5: the tie goes to the earlier (index 1); 0.5 -> index 2;
    # 0.8 -> 0.75 (index 3); 5.0 is past the end and dropped.
    assert picked == [0, 1, 2, 3]
    assert [p for _, p in select_nearest(iter(items), None)] == [0, 1, 2, 3, 4]
    # two targets nearest to the same frame yield it once
    assert [p for _, p in select_nearest(iter(items), iter([0.24, 0.26]))] == [1]


def test_letterbox_keeps_aspect():
    assert letterbox_size(320, 180, 172) == (172, 97)
    assert letterbox_size(96, 128, 172) == (129, 172)


def _frames(n):
    return [SampledFrame(i, i / 10, np.full((2, 2, 3), i, np.uint8)) for i in range(n)]


@pytest.mark.parametrize("n, size, stride", [(20, 8, 8), (21, 8, 8), (5, 8, 8), (20, 8, 4), (19, 8, 3)])
def test_windows_write_every_frame_row_exactly_once(n, size, stride):
    clips = list(windows(_frames(n), size, stride))
    assert [i for i, _ in clips] == list(range(len(clips)))
    owned = np.concatenate([c.frame_indices[c.owned_start:c.owned_stop] for _, c in clips])
    assert owned.tolist() == list(range(n))
    for k, (_, clip) in enumerate(clips):
        assert 1 <= len(clip.frame_indices) <= size
        assert clip.frames.dtype == np.uint8
        if k < len(clips) - 1:
            assert clip.frame_indices[0] == k * stride and len(clip.frame_indices) == size


@pytest.fixture(scope="module")
def video_25fps(tmp_path_factory):
    """4 s at 25 fps, 160x120, H.264 with B-frames."""
    path = tmp_path_factory.mktemp("dec") / "v.mp4"
    frames = motion_frames("moving_right", num_frames=100, width=160, height=120,
                           rng=np.random.default_rng(0))
    write_video(str(path), frames, fps=25)
    return path


def test_fps_sampling_times_come_from_pts(video_25fps):
    frames, report = _sample(video_25fps, fps=5.0)
    assert report.error is None
    assert report.frames_decoded == 100
    times = np.array([f.time_s for f in frames])
    # targets 0, 0.2, ... 3.8 s each fall exactly on a 25 fps frame
    np.testing.assert_allclose(times, np.arange(20) * 0.2, atol=1e-6)
    assert [f.index for f in frames] == list(range(0, 100, 5))
    assert report.meta.width == 160 and report.meta.height == 120
    assert report.meta.duration_s == pytest.approx(4.0, abs=0.05)
    assert frames[0].image.shape == (64, 64, 3) and frames[0].image.dtype == np.uint8


def test_letterbox_pads_with_black_bars(video_25fps):
    frames, _ = _sample(video_25fps, fps=1.0, imgz=64)
    image = frames[0].image
    # 160x120 -> 64x48 centred: rows 0-7 and 56-63 are padding
    assert image[:8].max() == 0 and image[56:].max() == 0
    assert image[8:56].max() > 40


def test_uniform_sampling_spans_the_video(video_25fps):
    frames, report = _sample(video_25fps, strategy="uniform", n_frames=9)
    assert report.error is None
    assert len(frames) == 9
    assert frames[0].index == 0 and frames[-1].index == 99
    assert np.all(np.diff([f.time_s for f in frames]) > 0.4)


def test_all_strategy_keeps_every_frame(video_25fps):
    frames, report = _sample(video_25fps, strategy="all")
    assert len(frames) == report.frames_decoded == 100


def test_unreadable_and_missing_files_are_reported_not_raised(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 100)
    frames, report = _sample(bad)
    assert frames == [] and report.error.stage == ErrorStage.OPEN
    frames, report = _sample(tmp_path / "missing.mp4")
    assert frames == [] and report.error.stage == ErrorStage.OPEN
    assert "No such file" in report.error.message


def test_guards_fail_at_probe(video_25fps):
    _, report = _sample(video_25fps, max_pixels=100)
    assert report.error.stage == ErrorStage.PROBE and "max_pixels" in report.error.message
    _, report = _sample(video_25fps, max_duration_s=1.0)
    assert report.error.stage == ErrorStage.PROBE and "max_duration_s" in report.error.message


def test_real_asl_clip_decodes():
    path = shared_fixture("videos", "asl_gestures", "again.mkv")
    frames, report = _sample(path, fps=5.0, imgz=172)
    assert report.error is None
    assert report.meta.width == 640 and report.meta.height == 480
    assert 47 <= report.frames_decoded <= 109
    times = [f.time_s for f in frames]
    assert times == sorted(times) and times[-1] <= report.frames_decoded / 30 + 1e-6
    assert len(frames) == pytest.approx(report.frames_decoded / 30 * 5, abs=1)


def test_should_seek_rule():
    scan = PacketScan(10.0, np.arange(300), keyframes=30, packets=300)  # GOP 10
    assert should_seek(16, scan) and not should_seek(17, scan)
    assert not should_seek(16, scan._replace(keyframes=15))  # GOP 20: 16 x 20 > 0.8 x 300
    assert not should_seek(8, scan._replace(keyframes=2))  # GOP 150
    assert not should_seek(4, scan._replace(pts=None))


@pytest.fixture(scope="module")
def gop_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("gop")
    frames = motion_frames("moving_down", num_frames=300, width=96, height=64, rng=np.random.default_rng(5))
    return {gop: write_video(str(d / f"g{gop}.mp4"), frames, fps=30, gop=gop) for gop in (10, 300)}


@pytest.mark.parametrize("ext, codec", [(".ts", "libx264"), (".mpg", "mpeg2video")])
def test_containers_that_seek_by_bytes_are_sampled_in_order(tmp_path, ext, codec):
    # MPEG-TS and MPEG-PS have no index: a seek lands near the frame, so sampling there picked
    # other frames (and dropped one) where should_seek alone chose to seek
    frames = motion_frames("moving_down", num_frames=300, width=96, height=64, rng=np.random.default_rng(5))
    path = write_video(str(tmp_path / f"g10{ext}"), frames, fps=30, codec=codec, gop=10)
    picked, report = _sample(path, strategy="uniform", n_frames=5)
    spec = SPEC._replace(strategy="uniform", n_frames=5)
    in_order = list(sample_frames(path, spec, DecodeReport(), seek=False))
    assert report.frames_decoded == 300 and report.error is None
    assert [f.index for f in picked] == [f.index for f in in_order]
    assert len(picked) == 5 and picked[0].index == 0 and picked[-1].index == 299


def test_uniform_seeks_on_short_gops_and_picks_the_same_frames(gop_videos):
    short = gop_videos[10]
    sought, report = _sample(short, strategy="uniform", n_frames=5)
    assert report.error is None
    assert report.frames_decoded < 100  # five seeks of at most one GOP each, not 300 frames
    assert len(sought) == 5 and sought[0].index == 0 and sought[-1].index == 299
    every, _ = _sample(short, strategy="all")
    for f in sought:
        assert f.time_s == pytest.approx(every[f.index].time_s)
        np.testing.assert_array_equal(f.image, every[f.index].image)
    in_order, report = _sample(gop_videos[300], strategy="uniform", n_frames=5)
    assert report.frames_decoded == 300
    assert [f.index for f in in_order] == [f.index for f in sought]
