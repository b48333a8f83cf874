"""What happens now in a video that changes: a model trained on single-motion clips (the demo's) labels
videos whose motion switches halfway, frame by frame (windowed against cumulative) and as segments."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow.dataset as ds
import pytest

from beam_pipeline.config import load_config
from beam_pipeline.demo.synthetic import path_frames, write_video
from beam_pipeline.job.launcher import run_job

LABELS = ("moving_right", "moving_up")
FPS = 4  # the videos' and the sampling's rate, as the demo's clips (8 frames over 2 s): a frame every 0.25 s
SIDE = 64
LEG = 12  # sampled frames of each motion in a switching video: the change is at 3.0 s
CHANGE_S = LEG / FPS


@pytest.fixture(scope="module")
def motion_model(demo_run) -> str:
    """The demo's model: MoViNet-A0 stream fine-tuned from random weights on 8-frame clips of one motion
    each, 0.25 s apart (the rate of the videos below), saved as ``videolabel train`` saves it (frame
    features and the head signature). Its four motions include both of LABELS."""
    folder, summary, _ = demo_run
    # the motions are learnt (chance is 0.25), or nothing below means much
    assert summary["test_accuracy"] >= 0.8, summary
    return str(folder / "demo" / "model")


@pytest.fixture(scope="module")
def switching_videos(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """Videos that move one way for 3 s, then the other way for 3 s, at FPS: {uri: (first, second)}."""
    folder = tmp_path_factory.mktemp("switching")
    rng = np.random.default_rng(11)
    videos = {}
    for i, (first, second) in enumerate([LABELS, LABELS[::-1], LABELS, LABELS[::-1]]):
        path = str(folder / f"switch_{i}.mp4")
        frames = path_frames([(first, LEG), (second, LEG)], width=SIDE, height=SIDE, rng=rng, fps=FPS)
        write_video(path, frames, fps=FPS)
        videos[path] = (first, second)
    return videos


WINDOW_S = 0.5  # two sampled frames
STEP_S = 1 / FPS


class _Labelled(NamedTuple):
    frames: dict  # uri -> (frame times float64 [n], frame labels)
    videos: dict  # uri -> the video's prediction
    segments: dict  # uri -> its segments rows, in order


def _label(model: str, videos: dict, out, window_s: float) -> _Labelled:
    """Runs videolabel on the videos (every frame, TensorFlow, the given frame window)."""
    cfg = load_config(None, [
        "model.model_id=a0", "model.model_mode=stream", f'model.handle="{model}"', "model.runtime=tf",
        f"model.frame_window_s={window_s}", "sampling.strategy=all", f"sampling.imgz={SIDE}",
        f'input.paths={list(videos)}', f'output.path="{out}"', "runner.runner=DirectRunner"])
    run_job(cfg, [], overwrite=True)
    tables = {name: ds.dataset(str(out / name), partitioning="hive").to_table().to_pandas()
              for name in ("frames", "videos", "segments")}
    frames = {uri: (g.timestamp_s.to_numpy(), g.prediction.tolist())
              for uri, g in tables["frames"].sort_values("timestamp_s").groupby("uri")}
    return _Labelled(frames, dict(zip(tables["videos"].uri, tables["videos"].prediction)),
                     {uri: g.sort_values("segment_index") for uri, g in tables["segments"].groupby("uri")})


@pytest.fixture(scope="module")
def labelled(motion_model, switching_videos, tmp_path_factory) -> dict[str, _Labelled]:
    """The switching videos labelled with the frame window and with cumulative frame labels."""
    out = tmp_path_factory.mktemp("labelled")
    return {"window": _label(motion_model, switching_videos, out / "window", WINDOW_S),
            "cumulative": _label(motion_model, switching_videos, out / "cumulative", 0.0)}


def _first_after(times: np.ndarray, labels: list[str], label: str, start: float) -> float:
    """The time of the first frame at or after ``start`` labelled ``label`` (inf if none)."""
    hits = [t for t, got in zip(times, labels) if t >= start - 1e-6 and got == label]
    return hits[0] if hits else np.inf


def _read_right(labelled: dict, videos: dict) -> list[str]:
    """The videos whose windowed frame labels say the first motion before the change (once the window
    holds it alone) and the second after it settles, in 80% of frames or more: where the model sees
    the motions, which the claims below are about. At least 3 of the 4 must be."""
    right = []
    for uri, (first, second) in videos.items():
        times, labels = labelled["window"].frames[uri]
        before = [got for t, got in zip(times, labels) if WINDOW_S <= t < CHANGE_S]
        after = [got for t, got in zip(times, labels) if t >= CHANGE_S + WINDOW_S + STEP_S]
        if before.count(first) >= 0.8 * len(before) and after.count(second) >= 0.8 * len(after):
            right.append(uri)
    assert len(right) >= 3, {uri: labelled["window"].frames[uri][1] for uri in videos}
    return right


def test_windowed_frame_labels_follow_the_change_and_cumulative_ones_lag(labelled, switching_videos):
    for uri in _read_right(labelled, switching_videos):
        first, second = switching_videos[uri]
        times, labels = labelled["window"].frames[uri]
        assert len(times) == 2 * LEG
        # the switch comes within one window plus one sampled frame of the true change
        switch = _first_after(times, labels, second, CHANGE_S)
        assert switch <= CHANGE_S + WINDOW_S + STEP_S, (uri, labels)
        # the cumulative labels (the video so far) lag: they switch later, if at all, and fewer of the
        # frames after the change get the second motion
        times_c, labels_c = labelled["cumulative"].frames[uri]
        assert _first_after(times_c, labels_c, second, CHANGE_S) > switch, (uri, labels_c)
        assert labels_c[LEG:].count(second) < labels[LEG:].count(second), (uri, labels_c)
        # the video's own prediction is the output after its last frame, window or not
        assert labelled["window"].videos[uri] == labelled["cumulative"].videos[uri]


def test_segments_of_a_switching_video_are_its_two_motions(labelled, switching_videos):
    for uri in _read_right(labelled, switching_videos):
        first, second = switching_videos[uri]
        rows = labelled["window"].segments[uri]
        assert rows.label.tolist() == [first, second], rows
        # the boundary is where the windowed frame labels switch: after the change, within the
        # trailing window's lag (one window) plus one sampled frame
        times, labels = labelled["window"].frames[uri]
        boundary = rows.start_s.iloc[1]
        assert boundary == _first_after(times, labels, second, CHANGE_S), rows
        assert CHANGE_S <= boundary <= CHANGE_S + WINDOW_S + STEP_S, rows
        assert rows.end_s.iloc[0] == boundary and rows.end_s.iloc[1] == pytest.approx(2 * LEG / FPS)
        assert rows.frames.sum() == 2 * LEG - round(rows.start_s.iloc[0] * FPS)
        assert rows.true_label.isna().all()  # no labels given
