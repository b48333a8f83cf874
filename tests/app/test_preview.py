"""Previews for videos a browser cannot play: which ones need one, and what the preview holds."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from beam_pipeline.app.preview import MAX_SIDE, browser_plays, preview_mp4
from beam_pipeline.demo.synthetic import motion_frames, write_video


def _video(path, codec, *, width=160, height=120, frames=45, fps=15):
    rng = np.random.default_rng(3)
    return write_video(path, motion_frames("moving_right", num_frames=frames, width=width, height=height,
                                           rng=rng), fps=fps, codec=codec)


@pytest.mark.parametrize("name, codec, plays", [
    ("h264.mp4", "libx264", True), ("h264.mkv", "libx264", True), ("h264.mov", "libx264", True),
    ("msmpeg4.avi", "msmpeg4v2", False), ("mpeg2.mpg", "mpeg2video", False), ("mpeg4.mp4", "mpeg4", False)])
def test_the_browser_plays_h264_in_mp4_and_matroska_and_nothing_else_here(tmp_path, name, codec, plays):
    assert browser_plays(str(_video(tmp_path / name, codec))) is plays


@pytest.mark.parametrize("name, codec", [("msmpeg4.avi", "msmpeg4v2"), ("mpeg2.mpg", "mpeg2video")])
def test_a_preview_is_h264_in_mp4_with_the_videos_frames_and_length(tmp_path, name, codec):
    source = _video(tmp_path / name, codec, width=1280, height=720, frames=45, fps=15)
    preview = preview_mp4(str(source))
    with av.open(io.BytesIO(preview)) as container:
        stream = container.streams.video[0]
        assert "mp4" in container.format.name and stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (MAX_SIDE, 360)
        frames = [frame.time for frame in container.decode(stream)]
    assert len(frames) == 45 and frames[-1] == pytest.approx(44 / 15, abs=0.01)
    assert preview[:64].find(b"ftyp") > 0 and preview.find(b"moov") < preview.find(b"mdat")  # faststart
