"""Untrusted media opens nothing but itself: playlists, concat lists and manifests that name other local
files or URLs are failed rows that say what they are, under any name; inputs that are not video say
what they are too (empty, text, an MP4 cut before its index)."""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path

import pytest

from tests import media
from tests.conftest import shared_fixture
from transforms.decoding import DecodeReport, probe_video, sample_frames
from transforms.records import ErrorStage, SamplingSpec

SPEC = SamplingSpec("fps", 5.0, 8, 32, 10**8, 3600.0, 60.0)


def _opened(path: Path) -> DecodeReport:
    """Probes and decodes ``path``; the report, after asserting that no frame came out."""
    report = DecodeReport()
    probe_video(str(path), SPEC, report)
    decoded = DecodeReport()
    assert list(sample_frames(str(path), SPEC, decoded)) == []
    assert report.meta is None and report.error.stage == ErrorStage.OPEN
    assert decoded.error == report.error
    return report


def _hls(segment: str) -> str:
    return f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.2,\n{segment}\n#EXT-X-ENDLIST\n"


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> Path:
    """A real video outside every folder the inputs are in."""
    return media.good(tmp_path_factory.mktemp("elsewhere") / "secret.mp4", n=30)


@pytest.mark.parametrize("name", ["list.m3u8", "list.mp4", "list.mkv", "list.txt", "list"])
def test_an_hls_playlist_naming_a_local_file_is_refused_under_any_name(tmp_path, elsewhere, name):
    for segment in (f"file://{elsewhere}", str(elsewhere)):
        (tmp_path / name).write_text(_hls(segment))
        report = _opened(tmp_path / name)
        assert report.error.message.startswith("an HLS playlist (m3u8): videolabel opens only the file")


@pytest.mark.parametrize("name", ["list.ffconcat", "list.mp4", "list.txt"])
def test_a_concat_list_naming_a_local_file_is_refused(tmp_path, elsewhere, name):
    (tmp_path / name).write_text(f"ffconcat version 1.0\nfile '{elsewhere}'\n")
    assert _opened(tmp_path / name).error.message.startswith("an ffconcat list: videolabel opens only")


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - the handler's name in http.server
        self.requests.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_playlist_naming_a_url_makes_no_request(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        for name in ("remote.m3u8", "remote.mp4"):
            key = f'#EXT-X-KEY:METHOD=AES-128,URI="{url}/key"\n'
            (tmp_path / name).write_text(_hls(f"{url}/segment.ts").replace("#EXTINF", key + "#EXTINF"))
            assert "an HLS playlist" in _opened(tmp_path / name).error.message
    finally:
        server.shutdown()
    assert _Recorder.requests == []


def test_files_that_are_not_video_say_what_they_are_without_an_errno(tmp_path):
    clip = media.good(tmp_path / "clip.mp4", n=30)
    cases = {
        media.zero_bytes(tmp_path / "empty.mp4"): "empty file (0 bytes)",
        media.text_file(tmp_path / "notes.mp4"): "a text file, not a video",
        media.cut_short(clip, tmp_path / "cut.mp4", keep=0.3): "MP4 without its index (moov): cut before",
    }
    for path, said in cases.items():
        report = _opened(path)
        assert report.error.message.startswith(said), report.error
        assert report.error.type == "InvalidDataError" and "Errno" not in report.error.message
    noise = _opened(media.random_bytes(tmp_path / "noise.mp4")).error
    assert noise.type == "InvalidDataError" and noise.message.startswith("Invalid data found when processing")


def test_real_footage_cut_mid_stream_is_partial_and_says_where_without_an_errno(tmp_path):
    source = shared_fixture("videos", "one-by-one-person-detection.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(source.read_bytes()[:200_000])  # its index is at the front: the frames after are gone
    report = DecodeReport()
    frames = list(sample_frames(str(cut), SPEC, report))
    assert frames and report.error is not None
    assert (report.error.stage, report.error.type) == (ErrorStage.DECODE, "InvalidDataError")
    said = re.match(r"data FFmpeg cannot decode after frame (\d+) \(damaged, or cut short\): Invalid data",
                    report.error.message)
    assert said and 0 < int(said[1]) <= report.frames_decoded, report.error.message
    assert "Errno" not in report.error.message
