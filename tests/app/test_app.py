"""``label_videos``, the app's data module, and ``videolabel app`` driven in Debian's headless chromium.

The browser tests start one ``videolabel app`` server (a subprocess on a free loopback
port, killed at the end) over a real ``run`` output, and one chromium through Debian's
chromedriver (selenium, no driver download); they skip with the reason when either is
missing. ``VIDEOLABEL_SCREENSHOTS=DIR`` saves a screenshot of each view there (the
README's come from ``docs/images``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from beam_pipeline.app.serve import AppSettings, streamlit_argv
from beam_pipeline.config import ConfigError
from beam_pipeline.demo.synthetic import make_labelled_set, motion_frames, write_video
from beam_pipeline.outputs.run_output import PathGuard, RefusedPath, RunOutput, VideoFilter
from benchmarks.app_queries import write_synthetic_output
from tests.conftest import BUCKET, free_port
from tests.helpers import stop_group

REPO = Path(__file__).resolve().parents[2]
#: The labelling settings of every run here: LiteRT a0 stream at 64 px, 4 frames a second.
SECTIONS = {"sampling": {"imgz": 64, "fps": 4}}
CHROMEDRIVER = "/usr/bin/chromedriver"


# -- the data module, on a generated output ----------------------------------------------------

@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> str:
    """600 videos in 12 parts (train/valid/test), 6 frames and 2 segments each."""
    return write_synthetic_output(tmp_path_factory.mktemp("generated"), videos=600, frames_per_video=6,
                                  videos_per_file=50)


def _whole(root: str, table: str) -> pd.DataFrame:
    return ds.dataset(os.path.join(root, table), format="parquet", partitioning="hive").to_table().to_pandas()


class _Recording(pafs.FileSystemHandler):
    """A local filesystem that records every file opened for reading."""

    def __init__(self):
        self.fs, self.opened = pafs.LocalFileSystem(), []

    def get_type_name(self):
        return "recording"

    def normalize_path(self, path):
        return path

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def open_input_file(self, path):
        self.opened.append(path)
        return self.fs.open_input_file(path)

    def open_input_stream(self, path):
        self.opened.append(path)
        return self.fs.open_input_stream(path)

    def _refused(self, *args):  # writes, moves and deletes: a reader never makes them
        raise AssertionError(f"the app wrote to its output: {args}")

    copy_file = create_dir = delete_dir = delete_dir_contents = delete_file = _refused
    delete_root_dir_contents = move = open_append_stream = open_output_stream = _refused


def test_filters_give_the_rows_pandas_gives(generated):
    whole = _whole(generated, "videos")
    out = RunOutput(generated)
    assert out.tables() == ["videos", "frames", "segments"]
    assert out.splits() == sorted(whole.split.unique())
    cases = [VideoFilter(), VideoFilter(split="test"), VideoFilter(status="failed"),
             VideoFilter(split="train", is_error=True, label="class_03"),
             VideoFilter(prediction="class_07", is_error=False)]
    for where in cases:
        expected = whole
        for name, value in vars(where).items():
            if value is not None:
                expected = expected[expected[name] == value]
        page, total = out.videos(where, limit=1000)
        assert total == len(expected) > 0, where
        assert sorted(page.video_id) == sorted(expected.video_id)
        assert list(page.uri) == sorted(page.uri)  # ordered by uri
    first, total = out.videos(VideoFilter(split="test"), offset=0, limit=7)
    second, _ = out.videos(VideoFilter(split="test"), offset=7, limit=7)
    assert len(first) == len(second) == 7 and not set(first.video_id) & set(second.video_id)


def test_summary_and_failures_count_what_the_tables_hold(generated):
    whole = _whole(generated, "videos")
    summary = RunOutput(generated).summary()
    assert summary["videos"] == len(whole)
    judged = whole[whole.label.notna() & whole.prediction.notna()]
    for row in summary["accuracy"]:
        split = judged[judged.split == row["split"]]
        assert row["videos"] == len(split)
        assert row["accuracy"] == pytest.approx((split.label == split.prediction).mean())
    assert summary["confusion"].to_numpy().sum() == len(judged)
    assert summary["confusion"].loc["class_03", "class_03"] == ((judged.label == "class_03")
                                                                & (judged.prediction == "class_03")).sum()
    by_type, examples = RunOutput(generated).failures(examples=2)
    broken = whole[whole.error_type.notna()]
    assert {r["error_type"]: r["videos"] for r in by_type} == broken.error_type.value_counts().to_dict()
    assert (examples.groupby("error_type").size() <= 2).all()


def test_the_split_filter_opens_only_that_splits_files(generated):
    handler = _Recording()
    out = RunOutput(generated, filesystem=pafs.PyFileSystem(handler))
    page, total = out.videos(VideoFilter(split="test"), limit=10)
    assert total > 0 and handler.opened
    assert all("/videos/split=test/" in path for path in handler.opened), handler.opened
    handler.opened.clear()
    one = out.video(page.video_id.iloc[0], "test")
    frames = {p for p in handler.opened if "/frames/" in p}
    segments = {p for p in handler.opened if "/segments/" in p}
    assert len(frames) == len(segments) == 1  # the parts committed with the video's videos part
    assert all("/split=test/" in path for path in handler.opened)
    whole = _whole(generated, "frames")
    expected = whole[whole.video_id == page.video_id.iloc[0]].sort_values("frame_index")
    assert list(one.frames.frame_index) == list(expected.frame_index)
    assert list(one.frames.prediction) == list(expected.prediction)
    assert len(one.segments) == 2 and list(one.segments.segment_index) == [0, 1]
    assert one.row["video_id"] == page.video_id.iloc[0] and one.row["split"] == "test"


def test_the_guard_refuses_paths_outside_the_output(generated, tmp_path):
    out = RunOutput(generated)
    guard = out.guard(extra_roots=[str(tmp_path / "allowed")])
    named = _whole(generated, "videos").uri.iloc[0]  # /archive/clips/...: named by a row
    assert guard.check(named) == named
    assert guard.check(os.path.join(generated, "labels.txt"))
    assert guard.check(str(tmp_path / "allowed" / "clip.mp4"))
    for path in ("/etc/passwd", os.path.join(generated, "..", "elsewhere.mp4"),
                 str(tmp_path / "allowedx.mp4"), "gs://bucket/clip.mp4", "/archive/clips/not_in_the_run.mp4"):
        with pytest.raises(RefusedPath, match="refused"):
            guard.check(path)
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "escape").symlink_to("/etc")
    with pytest.raises(RefusedPath):
        guard.check(str(tmp_path / "allowed" / "escape" / "passwd"))
    gs = PathGuard(("gs://bucket/out",))
    assert gs.check("gs://bucket/out/videos/x.parquet")
    with pytest.raises(RefusedPath):
        gs.check("gs://bucket/out/../secret/x.mp4")


@pytest.mark.usefixtures("gcs")
def test_an_output_in_cloud_storage_reads_as_the_local_one(generated):
    from beam_pipeline.outputs.run_output import filesystem_for

    root = f"gs://{BUCKET}/app-output"
    bucket_fs, bucket_path = filesystem_for(root)  # pyarrow's GCS client, pointed at the emulator
    pafs.copy_files(generated, bucket_path, destination_filesystem=bucket_fs)
    local, remote = RunOutput(generated), RunOutput(root)
    assert remote.tables() == local.tables() and remote.splits() == local.splits()
    assert remote.labels() == local.labels()
    where = VideoFilter(split=local.splits()[-1], status="ok")
    (page, total), (expected, expected_total) = remote.videos(where, limit=20), local.videos(where, limit=20)
    assert total == expected_total and list(page.video_id) == list(expected.video_id)
    one = remote.video(page.video_id.iloc[0], where.split)
    assert list(one.frames.prediction) == list(local.video(page.video_id.iloc[0]).frames.prediction)
    assert remote.summary()["accuracy"] == local.summary()["accuracy"]
    assert remote.guard().check(f"{root}/labels.txt")
    with pytest.raises(RefusedPath):
        remote.guard().check(f"gs://{BUCKET}/elsewhere/clip.mp4")


# -- label_videos -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def labelled_set(tmp_path_factory) -> str:
    """A manifest of 6 labelled videos (train 1, test 2 per class) plus a broken file in test."""
    folder = tmp_path_factory.mktemp("labelled")
    manifest = make_labelled_set(str(folder), per_class=2, motions=("moving_right", "moving_up"),
                                 splits={"train": 1, "test": 1}, seconds=1.6)
    (folder / "broken.mp4").write_bytes(b"this is not a video" * 64)
    with open(manifest, "a", encoding="utf-8") as handle:
        handle.write("broken.mp4,moving_up,test\n")
    return manifest


@pytest.fixture(scope="module")
def run_output(a0_litert, labelled_set, tmp_path_factory):
    from beam_pipeline.api import label_videos

    # with embeddings (more like this), and segments however unsure the random-weights model is (captions)
    return label_videos(labelled_set, a0_litert, output_dir=str(tmp_path_factory.mktemp("run")), **SECTIONS,
                        output={"write_embeddings": True, "segment_min_score": 0})


def test_label_videos_gives_the_frames_of_videolabel_run(run_output, labelled_set, a0_litert, tmp_path):
    from beam_pipeline.cli import main

    out = tmp_path / "cli"
    code = main(["run", "--input", labelled_set, "--output", str(out), "--model", a0_litert,
                 "--set", "sampling.imgz=64", "--set", "sampling.fps=4",
                 "--set", "output.segment_min_score=0", "--runner", "DirectRunner",
                 "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert code == 0
    keys = ["video_id", "frame_index"]
    ours = run_output.frames.sort_values(keys).reset_index(drop=True)
    theirs = _whole(str(out), "frames").sort_values(keys).reset_index(drop=True)
    assert len(ours) == len(theirs) > 0
    for column in ("video_id", "uri", "split", "frame_index", "timestamp_s", "label", "prediction"):
        assert list(ours[column]) == list(theirs[column]), column
    assert np.allclose(ours.score, theirs.score, atol=1e-6)
    videos = run_output.videos.set_index("uri").sort_index()
    assert len(videos) == 5
    assert videos.loc[videos.index.str.endswith("broken.mp4"), "status"].item() == "failed"
    assert set(videos.split) == {"train", "test"}
    segments = _whole(str(out), "segments") if (out / "segments").exists() else pd.DataFrame()
    assert len(run_output.segments) == len(segments)  # the segments table, where the run writes one
    if len(segments):
        columns = ["video_id", "segment_index", "label", "start_s", "end_s"]
        ours, theirs = (table.sort_values(columns[:2])[columns].reset_index(drop=True)
                        for table in (run_output.segments, segments))
        assert ours.equals(theirs)
    record = RunOutput(run_output.output).run_record()  # _run.json, typed
    assert record.counts["videos"] == 5 and record.model.handle == a0_litert


def test_label_videos_refuses_a_bad_key_with_the_config_error(labelled_set):
    from beam_pipeline import label_videos

    with pytest.raises(ConfigError, match=r"^sampling\.fsp: unknown key"):
        label_videos(labelled_set, sampling={"fsp": 4})
    with pytest.raises(ConfigError, match=r"^samplin: unknown section"):
        label_videos(labelled_set, samplin={"fps": 4})
    with pytest.raises(ConfigError, match=r"^sampling: a config section is a mapping"):
        label_videos(labelled_set, sampling=4)
    with pytest.raises(ConfigError, match=r"^model\.top_kk: unknown key"):  # the model section as a mapping
        label_videos(labelled_set, {"handle": "/models/a0", "top_kk": 3})


def test_import_beam_pipeline_stays_light():
    code = ("import sys, beam_pipeline; "
            "print(any(m in sys.modules for m in ('apache_beam', 'pandas', 'tensorflow')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


# -- the command -------------------------------------------------------------------------------

def test_the_server_is_local_headless_and_limits_uploads():
    argv = streamlit_argv(AppSettings("out", ("m1",), max_upload_mb=50), port=9000)
    assert argv[1:4] == ["-m", "streamlit", "run"]
    for flag in ("--server.address=127.0.0.1", "--server.port=9000", "--server.headless=true",
                 "--browser.gatherUsageStats=false", "--server.maxUploadSize=50",
                 "--client.showErrorDetails=type"):
        assert flag in argv
    page_args = argv[argv.index("--") + 1:]
    assert AppSettings.parse(page_args) == AppSettings("out", ("m1",), max_upload_mb=50)
    assert "--server.address=0.0.0.0" in streamlit_argv(AppSettings(), host="0.0.0.0")


def test_app_refuses_a_folder_without_a_run(tmp_path, capsys):
    from beam_pipeline.cli import main

    assert main(["app", str(tmp_path)]) == 2
    assert "holds no videos/ table" in capsys.readouterr().err


# -- in the browser ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app_url(run_output, a0_litert, tmp_path_factory):
    """``videolabel app RUN --model A0`` on a free loopback port; stopped (its process group) at the end."""
    if shutil.which("chromium") is None or not os.path.exists(CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(`make system-deps` installs them)")
    config = tmp_path_factory.mktemp("app") / "app.yaml"
    config.write_text("sampling:\n  imgz: 64\n  fps: 4\n")
    port = free_port()
    log = open(config.with_name("app.log"), "wb")  # noqa: SIM115 - closed below
    command = [sys.executable, "-m", "beam_pipeline", "app", run_output.output, "--port", str(port),
               "--model", a0_litert, "--config", str(config)]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("videolabel app did not start:\n"
                                     + config.with_name("app.log").read_text())
            time.sleep(0.5)
        yield url
    finally:
        stop_group(proc)
        log.close()


@pytest.fixture(scope="module")
def browser(app_url):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1700", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, timeout=90):
    """Waits until ``condition()`` is truthy; an element Streamlit re-rendered meanwhile means: try again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25,
                         ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: condition())


def _by_css(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def _caption(driver, words):
    captions = _by_css(driver, '[data-testid="stCaptionContainer"]')
    return next((el.text for el in captions if words in el.text), None)


def _shot(driver, name):
    folder = os.environ.get("VIDEOLABEL_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        time.sleep(1.5)  # let the charts draw
        driver.save_screenshot(os.path.join(folder, name))


def _no_exception(driver):
    errors = [el.text for el in _by_css(driver, '[data-testid="stException"]')]
    assert not errors, errors


def _click(driver, group_label, text):
    """Clicks the ``text`` button of the segmented control labelled ``group_label``."""
    css = f'[role="radiogroup"][aria-label="{group_label}"] button'

    def clicked():  # the page may still be drawing its controls, or redraw the button: try again
        button = next((b for b in _by_css(driver, css) if b.text == text), None)
        if button is not None:
            button.click()
        return button is not None

    _wait(driver, clicked)


def _grids_text(driver) -> str:
    """The text of every data grid on the page, from their accessible tables."""
    return " ".join(el.get_attribute("textContent") for el in _by_css(driver, '[data-testid="stDataFrame"]'))


def _videos_table(driver, columns=("video_id", "uri")) -> list[dict[str, str]]:
    """The rows of the page's first table with ``columns`` (default: the videos table), from the grid's
    accessible table."""
    from selenium.webdriver.common.by import By

    for frame in _by_css(driver, '[data-testid="stDataFrame"]'):
        tables = frame.find_elements(By.TAG_NAME, "table")
        if not tables:
            continue
        heads = [h.get_attribute("textContent") for h in tables[0].find_elements(By.CSS_SELECTOR, "thead th")]
        if set(columns) <= set(heads):
            rows = tables[0].find_elements(By.CSS_SELECTOR, "tbody tr")
            cells = [row.find_elements(By.TAG_NAME, "td") for row in rows]
            return [dict(zip(heads, (c.get_attribute("textContent") for c in row))) for row in cells]
    return []


def _into_view(driver, title, timeout=90):
    """Waits for the video titled ``title`` and scrolls to it (charts below the fold may wait to draw)."""
    heading = _wait(driver, lambda: next((h for h in _by_css(driver, "h3") if h.text == title), None),
                    timeout)
    driver.execute_script("arguments[0].scrollIntoView(); window.scrollBy(0, -60);", heading)


def _timeline_drawn(driver) -> bool:
    """Whether the page shows the frame timeline: a drawn chart with the time axis and the prediction band."""
    return any("time (s)" in text and "frame prediction" in text
               for text in (el.get_attribute("textContent")
                            for el in _by_css(driver, '[data-testid="stVegaLiteChart"] svg.marks')))


def _pick(driver, label, text):
    """Types ``text`` into the selectbox labelled ``label`` and takes the first match."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = next(el for el in _by_css(driver, '[data-testid="stSelectbox"]') if el.text.startswith(label))
    field = box.find_element(By.TAG_NAME, "input")
    field.click()
    field.send_keys(text, Keys.ENTER)


def test_browse_a_run_filters_and_plays_a_video_with_its_timeline(browser, app_url, run_output):
    browser.get(f"{app_url}/?view=browse")
    _wait(browser, lambda: _caption(browser, "videos match"))
    _no_exception(browser)
    assert _caption(browser, "videos match").startswith("5 videos match")
    body = browser.find_element("tag name", "body").text
    assert "Accuracy per split" in body and "Confusion matrix" in body
    _shot(browser, "app_browse.png")

    videos = run_output.videos
    _click(browser, "Split", "test")
    test_uris = sorted(videos[videos.split == "test"].uri)
    _wait(browser, lambda: sorted(r["uri"] for r in _videos_table(browser)) == test_uris)
    _wait(browser, lambda: {r["split"] for r in _videos_table(browser)} == {"test"})
    assert _caption(browser, "videos match").startswith(f"{len(test_uris)} videos match")
    _click(browser, "Status", "failed")
    failed = list(videos[videos.status == "failed"].uri)
    _wait(browser, lambda: [(r["uri"], r["status"]) for r in _videos_table(browser)]
          == [(failed[0], "failed")])
    _click(browser, "Status", "failed")  # off again: the test split's videos
    _wait(browser, lambda: len(_videos_table(browser)) == len(test_uris))

    decoded = videos[(videos.split == "test") & (videos.status == "ok")].sort_values("uri").iloc[0]
    _pick(browser, "Open a video", os.path.basename(decoded.uri))
    _into_view(browser, os.path.basename(decoded.uri))
    _wait(browser, lambda: [v for v in _by_css(browser, "video") if v.get_attribute("src")])
    _wait(browser, lambda: _timeline_drawn(browser))
    src = next(v.get_attribute("src") for v in _by_css(browser, "video") if v.get_attribute("src"))
    with urllib.request.urlopen(src, timeout=10) as response:  # the page serves the video's own bytes
        assert response.read() == Path(decoded.uri).read_bytes()
    assert f"Prediction: {decoded.prediction}" in browser.find_element("tag name", "body").text
    # its segments are the player's captions: a WebVTT track, one cue per segment
    track = _wait(browser, lambda: next(iter(_by_css(browser, "video track")), None))
    track_url = urllib.parse.urljoin(src, track.get_attribute("src"))
    with urllib.request.urlopen(track_url, timeout=10) as response:
        cues = response.read().decode()
    ours = run_output.segments[run_output.segments.video_id == decoded.video_id]
    assert cues.startswith("WEBVTT") and cues.count(" --> ") == len(ours) > 0
    assert all(f"{label} " in cues for label in ours.label)
    # more like this: the run's other decoded videos, nearest first
    similar = _wait(browser, lambda: _videos_table(browser, ("uri", "similarity")))
    others = set(videos[(videos.status == "ok") & (videos.video_id != decoded.video_id)].uri)
    assert {row["uri"] for row in similar} == others
    scores = [float(row["similarity"]) for row in similar]
    assert scores == sorted(scores, reverse=True)
    _no_exception(browser)
    _shot(browser, "app_video.png")


def test_label_an_uploaded_video_through_the_page(browser, app_url, a0_litert, tmp_path):
    from selenium.webdriver.common.by import By

    from beam_pipeline.api import label_videos

    video = tmp_path / "jump to the left.mp4"
    write_video(video, motion_frames("moving_left", num_frames=30, width=128, height=96,
                                     rng=np.random.default_rng(5)), fps=15)
    direct = label_videos(str(video), a0_litert, output_dir=str(tmp_path / "direct"), **SECTIONS)
    expected = direct.videos.iloc[0]

    browser.get(f"{app_url}/?view=label")
    _wait(browser, lambda: _by_css(browser, 'input[type="file"]'))
    _no_exception(browser)
    _by_css(browser, 'input[type="file"]')[0].send_keys(str(video))
    _wait(browser, lambda: "jump to the left.mp4" in browser.find_element(By.TAG_NAME, "body").text)
    button = next(b for b in _by_css(browser, '[data-testid="stBaseButton-primary"]') if b.text == "Label")
    _wait(browser, button.is_enabled)
    button.click()
    _into_view(browser, "jump_to_the_left.mp4", timeout=180)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert f"Prediction: {expected.prediction} ({expected.score:.3f})" in text
    # the top k, in the page's table (its accessible table fills in after the grid first draws)
    _wait(browser, lambda: all(name in _grids_text(browser) for name in expected.top_k_labels))
    _wait(browser, lambda: [v for v in _by_css(browser, "video") if v.get_attribute("src")])
    _wait(browser, lambda: _timeline_drawn(browser))
    _no_exception(browser)
    _shot(browser, "app_label.png")

    # a path the output does not name, under no --allow folder: refused, in one line
    next(el for el in _by_css(browser, '[data-testid="stRadio"] label') if "Path or gs://" in el.text).click()
    field = _wait(browser, lambda: next((el for el in _by_css(browser, 'input[type="text"]')
                                         if "gs://" in (el.get_attribute("placeholder") or "")), None))
    field.send_keys("/etc/passwd\n")
    button = next(b for b in _by_css(browser, '[data-testid="stBaseButton-primary"]') if b.text == "Label")
    _wait(browser, button.is_enabled)
    button.click()
    _wait(browser, lambda: any("refused video '/etc/passwd'" in el.text
                               for el in _by_css(browser, '[data-testid="stAlert"]')))
    _no_exception(browser)


@pytest.mark.parametrize("name, codec", [("msmpeg4.avi", "msmpeg4v2"), ("mpeg2.mpg", "mpeg2video")])
def test_a_video_the_browser_cannot_play_is_shown_as_a_preview_that_plays(browser, app_url, tmp_path, name,
                                                                          codec):
    from selenium.webdriver.common.by import By

    video = tmp_path / name
    write_video(video, motion_frames("moving_right", num_frames=45, width=160, height=120,
                                     rng=np.random.default_rng(7)), fps=15, codec=codec)
    browser.get(f"{app_url}/?view=label")
    _wait(browser, lambda: _by_css(browser, 'input[type="file"]'))
    _by_css(browser, 'input[type="file"]')[0].send_keys(str(video))
    _wait(browser, lambda: name in browser.find_element(By.TAG_NAME, "body").text)
    button = next(b for b in _by_css(browser, '[data-testid="stBaseButton-primary"]') if b.text == "Label")
    _wait(browser, button.is_enabled)
    button.click()
    _into_view(browser, name, timeout=180)
    _wait(browser, lambda: "a preview (H.264 in MP4)" in browser.find_element(By.TAG_NAME, "body").text)
    player = _wait(browser, lambda: next((v for v in _by_css(browser, "video") if v.get_attribute("src")),
                                         None))
    # the browser loads it and plays it: frames decoded, time advancing, no MediaError
    browser.execute_script("arguments[0].muted = true; arguments[0].play();", player)
    _wait(browser, lambda: browser.execute_script(
        "const v = arguments[0]; return !v.error && v.readyState >= 2 && v.currentTime > 0.3;", player))
    assert browser.execute_script("return arguments[0].duration;", player) == pytest.approx(3.0, abs=0.2)
    _no_exception(browser)
