"""The progress line: counts noted by worker processes, shown against the total the job noted, with
failures, rate and ETA."""

from __future__ import annotations

import io
import multiprocessing

import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline

from transforms import progress as progress_module
from transforms.aggregate import RunStamp, video_batch
from transforms.progress import NoteVideos, ProgressLine, note_total, note_video, read_total, worker_summary
from transforms.records import ClipPrediction, ErrorStage, VideoError, VideoInfo, VideoRef, VideoRows


def _worker(folder: str, statuses: list[str]) -> None:
    for status in statuses:
        note_video(folder, status)


def test_counts_from_several_processes_make_one_line(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    statuses = (["ok", "ok", "failed"], ["ok"])
    workers = [ctx.Process(target=_worker, args=(str(tmp_path), s)) for s in statuses]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(list(tmp_path.iterdir())) == 2  # one file per process
    note_total(str(tmp_path), 10)
    progress = ProgressLine(str(tmp_path), stream=io.StringIO())
    assert progress.counts() == {"ok": 3, "failed": 1}
    line = progress.line()
    assert line.startswith("videolabel: 4/10 videos (40%), 1 failed, ") and "videos/s, ETA " in line
    assert not line.endswith("ETA --")


def test_not_a_terminal_gives_plain_log_lines_when_the_count_moves(tmp_path):
    stream = io.StringIO()
    note_video(str(tmp_path), "ok")
    note_total(str(tmp_path), 2)
    with ProgressLine(str(tmp_path), stream=stream, log_every_s=0.05) as progress:
        while "1/2" not in stream.getvalue():
            pass
        assert progress.counts() == {"ok": 1}
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    # one line when the count moved, one at the end
    assert [line.split(",")[0] for line in lines] == ["videolabel: 1/2 videos (50%)"] * 2


def test_steady_rate_sums_each_workers_rate_after_its_first_video(tmp_path, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "time", lambda: now[0])
    # worker a: four videos at 100..103 s (1 video/s); worker b: two, 0.5 s apart (2 videos/s)
    for tag, times in (("a", (100.0, 101.0, 102.0, 103.0)), ("b", (100.5, 101.0))):
        monkeypatch.setattr(progress_module, "_PROCESS_TAG", tag)
        for now[0] in times:
            note_video(str(tmp_path), "ok")
    summary = worker_summary(str(tmp_path))
    # all at work from b's first video (100.5) to b's last (101.0): a's and b's videos at 101.0
    assert summary == {"steady_videos_per_s": 3.0, "first_done_at": 100.0, "processes": 2, "pinned_cores": [],
                       "steady_window": (100.5, 101.0), "steady_window_videos": 2}
    note_total(str(tmp_path), 12)
    line = ProgressLine(str(tmp_path), stream=io.StringIO()).line()
    # 6 left at 3 videos/s: the ETA uses the steady rate, not done / elapsed
    assert line == "videolabel: 6/12 videos (50%), 0 failed, 3.00 videos/s, ETA 0m02s"


def test_files_that_fail_at_once_do_not_make_the_rate(tmp_path, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "time", lambda: now[0])
    # broken files fail at open within milliseconds, then videos decode at 1 a second
    notes = [(10.0, "failed"), (10.005, "failed"), (10.01, "failed"), (12.0, "ok"), (13.0, "ok"),
             (14.0, "ok")]
    for now[0], status in notes:
        note_video(str(tmp_path), status)
    note_total(str(tmp_path), 13)
    line = ProgressLine(str(tmp_path), stream=io.StringIO()).line()
    assert line == "videolabel: 6/13 videos (46%), 3 failed, 1.00 videos/s, ETA 0m07s"


def test_done_counts_show_without_a_total_until_the_job_notes_it(tmp_path):
    folder = str(tmp_path)
    progress = ProgressLine(folder, stream=io.StringIO())
    assert read_total(folder) is None
    assert progress.line().startswith("videolabel: 0 videos, 0 failed, ")
    note_video(folder, "failed")
    line = progress.line()
    assert line.startswith("videolabel: 1 videos, 1 failed, ") and line.endswith("ETA --")
    note_total(folder, 4)
    note_total(folder, 4)  # a retried bundle notes it again
    assert read_total(folder) == 4
    assert sorted(p.suffix for p in tmp_path.iterdir()) == ["", ".log"]  # the total and one worker's notes
    assert progress.line().startswith("videolabel: 1/4 videos (25%), 1 failed, ")
    # the total is not a worker's notes
    assert progress.counts() == {"failed": 1} and worker_summary(folder)["processes"] == 1


def test_the_note_step_notes_each_video_with_the_status_of_its_videos_row(tmp_path):
    one = np.ones(1, np.float32)
    clip = ClipPrediction(np.zeros(1, np.int64), np.zeros(1), np.zeros((1, 1), np.int32), one[None], one)

    def rows(name, error, clips):
        info = VideoInfo(VideoRef(name, f"/x/{name}.mp4", None, "test"), None, 1, len(clips), error)
        videos = video_batch(info, clips, "stream", ["a"], 1, RunStamp("m", "h", "r"))
        return VideoRows("test", {"videos": videos})

    bad = VideoError(ErrorStage.OPEN, "InvalidDataError", "not a video")
    with TestPipeline() as p:
        videos = [rows("v1", bad, []), rows("v2", None, [(0, clip)]), rows("v3", None, [(0, clip)])]
        _ = p | beam.Create(videos) | NoteVideos(str(tmp_path))
    statuses = [line.split()[0] for log in tmp_path.iterdir() for line in log.read_text().splitlines()]
    assert sorted(statuses) == ["failed", "ok", "ok"]
