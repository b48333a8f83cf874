"""Decoding that survives real archives: every class of bad or odd input, each made here.

Pure tests call ``sample_frames`` on one file each; the last test runs a folder of
all of them through the pipeline and checks one correct row per file.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipeline.config import load_config
from beam_pipeline.job.pipeline import build_pipeline
from beam_pipeline.job.serving import ServedModel
from tests import media
from tests.conftest import REPO
from transforms import decoding
from transforms.aggregate import RunStamp
from transforms.decoding import DecodeReport, sample_frames
from transforms.records import ErrorStage, SamplingSpec

SPEC = SamplingSpec(strategy="fps", fps=5.0, n_frames=8, imgz=64, max_pixels=10**7,
                    max_duration_s=3600.0, decode_timeout_s=60.0)


def _sample(path, **changes):
    report = DecodeReport()
    frames = list(sample_frames(str(path), SPEC._replace(**changes), report))
    return frames, report


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    return {
        "mp4": media.good(d / "good.mp4", n=100),
        "mkv": media.good(d / "good.mkv", n=100),
        "ts": media.good(d / "good.ts", n=100),
        "dir": d,
    }


@pytest.mark.parametrize("maker", [media.zero_bytes, media.random_bytes, media.text_file])
def test_non_videos_fail_at_open(tmp_path, maker):
    frames, report = _sample(maker(tmp_path / "x.mp4"))
    assert frames == [] and report.error.stage == ErrorStage.OPEN and report.error.message


def test_mp4_cut_short_is_unopenable(tmp_path, sources):
    frames, report = _sample(media.cut_short(sources["mp4"], tmp_path / "cut.mp4"))
    assert frames == [] and report.error.stage == ErrorStage.OPEN


def test_mkv_cut_short_keeps_what_decodes_and_says_truncated(tmp_path, sources):
    frames, report = _sample(media.cut_short(sources["mkv"], tmp_path / "cut.mkv"))
    assert 10 <= report.frames_decoded < 100 and len(frames) >= 3
    assert (report.error.stage, report.error.type) == (ErrorStage.DECODE, "Truncated")
    assert "of the 4.00s" in report.error.message


@pytest.mark.parametrize("kind", ["mp4", "ts"])
def test_corrupt_middle_keeps_frames_on_both_sides(tmp_path, sources, kind):
    path = media.corrupt_middle(sources[kind], tmp_path / f"c.{kind}", start=0.45, length=0.03)
    frames, report = _sample(path, strategy="all")
    times = [f.time_s for f in frames]
    assert report.frames_decoded >= 85
    assert min(times) < 1.0 and max(times) > 3.5  # both sides of the damage at ~1.8 s
    assert times == sorted(times)


def test_audio_only_and_cover_art_fail_at_probe(tmp_path):
    _, audio = _sample(media.audio_only(tmp_path / "a.mp4"))
    assert audio.error.stage == ErrorStage.PROBE and "no video stream" in audio.error.message
    _, cover = _sample(media.cover_art_only(tmp_path / "c.mp4"))
    assert cover.error.stage == ErrorStage.PROBE and "cover art" in cover.error.message


def test_one_pixel_video_is_labelled_like_any_other(tmp_path):
    frames, report = _sample(media.tiny(tmp_path / "t.mkv"))
    assert report.error is None and report.meta.width == report.meta.height == 1
    assert len(frames) == 5 and frames[-1].image.shape == (64, 64, 3)


def test_guards_on_size_and_length(sources):
    _, big = _sample(sources["mp4"], max_pixels=160 * 120 - 1)
    assert big.error.stage == ErrorStage.PROBE and "max_pixels" in big.error.message
    _, long = _sample(sources["mp4"], max_duration_s=3.0)
    assert long.error.stage == ErrorStage.PROBE and "max_duration_s" in long.error.message


def test_length_guard_holds_without_a_declared_duration(tmp_path):
    frames, report = _sample(media.raw_h264(tmp_path / "r.h264", n=75), max_duration_s=1.0)
    assert report.error.type == "TooLong" and all(f.time_s <= 1.0 for f in frames)


def test_avi_cut_short_is_truncated_by_its_declared_frame_count(tmp_path):
    path = media.truncated_avi(tmp_path / "cut.avi", n=200, keep=0.6)
    import av
    with av.open(str(path)) as c:  # FFmpeg shortens the duration to what is there; the header counts 200
        declared = c.streams.video[0].frames
        assert declared == 200
    frames, report = _sample(path)
    assert (report.error.stage, report.error.type) == (ErrorStage.DECODE, "Truncated"), report.error
    assert 0 < report.frames_decoded < 0.9 * declared and f"of the {declared}" in report.error.message
    whole, whole_report = _sample(media.truncated_avi(tmp_path / "whole.avi", n=200, keep=1.0))
    assert whole_report.error is None and whole_report.frames_decoded == 200


def test_a_variable_rate_avi_that_fills_few_of_its_slots_is_complete(tmp_path):
    path = media.sparse_avi(tmp_path / "vfr.avi", frames=69, slots=444, fps=15)
    import av
    with av.open(str(path)) as c:  # the header counts a frame per slot; 69 of them hold one
        assert c.streams.video[0].frames == 444
    frames, report = _sample(path)
    assert report.error is None and report.frames_decoded == 69
    assert report.meta.duration_s == pytest.approx(444 / 15, abs=0.01) and frames[-1].time_s > 29.4
    # the same file cut short is still truncated, by where it ends
    _, cut = _sample(media.cut_short(path, tmp_path / "cut.avi", keep=0.5))
    assert 0 < cut.frames_decoded < 69 and cut.error.type == "Truncated"
    assert "of the 444 frames (29.60s at 15 fps) its container declares" in cut.error.message


def test_missing_and_unreadable_paths_fail_at_open(tmp_path):
    _, missing = _sample(tmp_path / "nope.mp4")
    assert missing.error.stage == ErrorStage.OPEN and missing.error.type == "FileNotFoundError"
    _, directory = _sample(media.directory_named_like_video(tmp_path / "d.mp4"))
    assert directory.error.stage == ErrorStage.OPEN and directory.error.type == "IsADirectoryError"


def test_variable_frame_rate_picks_the_nearest_real_frames(tmp_path):
    times = [0.0, 0.1, 0.15, 0.6, 0.61, 1.3, 2.0]
    frames, report = _sample(media.variable_rate(tmp_path / "v.mkv", times))
    # targets 0, .2, .4, ... 2.0 s: nearest frames, each once, in order
    assert [f.index for f in frames] == [0, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([f.time_s for f in frames], [0.0, 0.15, 0.6, 0.61, 1.3, 2.0], atol=1e-3)
    assert report.frames_decoded == 7


def test_stream_without_duration_or_timestamps(tmp_path):
    path = media.raw_h264(tmp_path / "r.h264", n=50, fps=25)
    frames, report = _sample(path)
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(10) * 0.2, atol=1e-6)
    assert report.meta.duration_s == pytest.approx(2.0)
    uniform, report = _sample(path, strategy="uniform", n_frames=5)
    assert [f.index for f in uniform] == [0, 12, 24, 37, 49] and report.error is None


def test_mpeg_ps_duration_estimate_is_corrected_by_the_frames(tmp_path):
    frames, report = _sample(media.odd_container(tmp_path / "p.mpg", "mpeg2video", n=20, fps=10))
    assert len(frames) == 10 and report.meta.duration_s == pytest.approx(2.0)
    assert max(f.time_s for f in frames) < report.meta.duration_s


def test_rotation_is_applied(tmp_path):
    rotated = media.rotated_mp4(media.marker(tmp_path / "m.mp4"), tmp_path / "r.mp4", 90)
    frames, report = _sample(rotated, imgz=96)
    assert (report.meta.width, report.meta.height) == (96, 160)  # upright size
    image = frames[0].image
    content = np.where(image.max(axis=(0, 2)) > 0)[0]
    rows = np.where(image.max(axis=(1, 2)) > 0)[0]
    # turned 90 degrees clockwise, the top-left marker is now in the top-right corner:
    # 96x160 upright letterboxes to 58x96, columns 19-76; the marker is 12 px at its right edge
    assert content.min() >= 60 and content.max() in (75, 76, 77)
    assert rows.min() == 0 and rows.max() <= 13


def test_alpha_is_dropped_not_blended(tmp_path):
    frames, _ = _sample(media.with_alpha(tmp_path / "a.mov"), imgz=32)
    image = frames[0].image  # 32x16 letterboxed into rows 8-23
    assert tuple(image[16, 4]) == (255, 0, 0)
    assert tuple(image[16, 28]) == (0, 255, 0)  # fully transparent green stays green


# 20 frames at 10 fps, 64x48, in each container and codec the decoding tests go through
CONTAINERS = [
    ("h264.mp4", "libx264", "yuv420p"),
    ("h264.ts", "libx264", "yuv420p"),
    ("mpeg4.mkv", "mpeg4", "yuv420p"),
    ("ps.mpg", "mpeg2video", "yuv420p"),
    ("vp8.webm", "libvpx", "yuv420p"),
    ("vp9.webm", "libvpx-vp9", "yuv420p"),
    ("ms.avi", "msmpeg4", "yuv420p"),
    ("anim.gif", "gif", "rgb8"),
    ("ffv1.mkv", "ffv1", "yuv420p"),
]


@pytest.mark.parametrize("name, codec, pix_fmt", CONTAINERS)
def test_odd_containers_and_codecs_decode(tmp_path, name, codec, pix_fmt):
    frames, report = _sample(media.odd_container(tmp_path / name, codec, pix_fmt=pix_fmt))
    assert report.error is None, report.error
    assert report.frames_decoded == 20 and len(frames) == 10
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(10) * 0.2, atol=0.051)
    assert all(f.image.shape == (64, 64, 3) for f in frames)


@pytest.mark.parametrize("name, codec, pix_fmt", CONTAINERS)
def test_decoding_from_the_probe_opens_once_and_uniform_picks_decoded_frames(tmp_path, monkeypatch, name,
                                                                           codec, pix_fmt):
    path = str(media.odd_container(tmp_path / name, codec, pix_fmt=pix_fmt))
    probed = DecodeReport()
    decoding.probe_video(path, SPEC, probed)
    opened = []
    real_open = decoding.open_container
    monkeypatch.setattr(decoding, "open_container", lambda *a: opened.append(a) or real_open(*a))
    for seek in (True, False):
        report = DecodeReport()
        report.meta = probed.meta  # the probe of the DecodeAndSample step, reused
        picks = list(sample_frames(path, SPEC._replace(strategy="uniform", n_frames=5), report, seek=seek))
        assert len(opened) == 1 and report.error is None, (seek, opened, report.error)
        opened.clear()
    every = {f.index: f for f in sample_frames(path, SPEC._replace(strategy="all"), DecodeReport())}
    # the packet scan and the in-order decoding share one container: the frames picked are the
    # stream's own, from the first to the last
    assert [f.index for f in picks] == [0, 5, 9, 14, 19]
    for frame in picks:
        assert frame.time_s == every[frame.index].time_s
        np.testing.assert_array_equal(frame.image, every[frame.index].image)


def test_folder_of_every_class_gives_one_correct_row_each(tmp_path, sources, a0_stream):
    d = tmp_path / "archive"
    d.mkdir()
    files = {
        "good.mp4": (media.good(d / "good.mp4", n=50), "ok", None),
        "good.webm": (media.odd_container(d / "good.webm", "libvpx-vp9"), "ok", None),
        "zero.mp4": (media.zero_bytes(d / "zero.mp4"), "failed", "open"),
        "random.mkv": (media.random_bytes(d / "random.mkv"), "failed", "open"),
        "text.avi": (media.text_file(d / "text.avi"), "failed", "open"),
        "cut.mp4": (media.cut_short(sources["mp4"], d / "cut.mp4"), "failed", "open"),
        "cut.mkv": (media.cut_short(sources["mkv"], d / "cut.mkv"), "partial", "decode"),
        "cut.avi": (media.truncated_avi(d / "cut.avi", n=100, keep=0.6), "partial", "decode"),
        "corrupt.ts": (media.corrupt_middle(sources["ts"], d / "corrupt.ts", length=0.03), "ok", None),
        "audio.mp4": (media.audio_only(d / "audio.mp4"), "failed", "probe"),
        "cover.mp4": (media.cover_art_only(d / "cover.mp4"), "failed", "probe"),
        "tiny.mkv": (media.tiny(d / "tiny.mkv"), "ok", None),
        "big.mp4": (media.good(d / "big.mp4", n=10, w=256, h=256), "failed", "probe"),
        "long.mp4": (media.good(d / "long.mp4", n=150, w=64, h=48, fps=25), "failed", "probe"),
        "dir.mp4": (media.directory_named_like_video(d / "dir.mp4"), "failed", "open"),
    }
    manifest = d / "manifest.csv"
    rows = [f"{name},x" for name in files] + ["missing.mp4,x", ",x"]
    manifest.write_text("uri,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["{manifest}"]', f'output.path="{out}"', "sampling.imgz=64",
        f"sampling.max_pixels={200 * 200}", "sampling.max_duration_s=5"])
    expected = {name: (status, stage) for name, (_, status, stage) in files.items()}
    expected["missing.mp4"] = ("failed", "open")
    expected["manifest.csv#row=17"] = ("failed", "open")
    with TestPipeline() as p:
        groups = build_pipeline(p, cfg, model=ServedModel.of(cfg, a0_stream),
                                labels=[f"c{i}" for i in range(600)],
                                stamp=RunStamp(a0_stream, cfg.job_hash(), "run"))
        videos = groups | beam.Flatten() | beam.Map(lambda g: g.tables["videos"].to_pylist()[0])
        names = videos | beam.Map(lambda r: (r["uri"].rsplit("/", 1)[-1], r))
        assert_that(names | beam.Map(lambda kv: (kv[0], (kv[1]["status"], kv[1]["error_stage"]))),
                    equal_to(list(expected.items())))
        assert_that(names | "Types" >> beam.Map(lambda kv: (kv[0], kv[1]["error_type"]))
                    | beam.Filter(lambda kv: kv[0] in ("cut.mkv", "cut.avi", "cover.mp4",
                                                       "manifest.csv#row=17")),
                    equal_to([("cut.mkv", "Truncated"), ("cut.avi", "Truncated"),
                              ("cover.mp4", "VideoRejected"), ("manifest.csv#row=17", "BadManifestRow")]),
                    label="ErrorTypes")
