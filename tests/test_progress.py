"""The progress line: counts noted by worker processes, shown as done / total, failures, rate and ETA."""

from __future__ import annotations

import io
import multiprocessing

from transforms.progress import ProgressLine, note_video


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
    progress = ProgressLine(str(tmp_path), total=10, stream=io.StringIO())
    assert progress.counts() == {"ok": 3, "failed": 1}
    line = progress.line()
    assert line.startswith("videolabel: 4/10 videos (40%), 1 failed, ") and "videos/s, ETA " in line
    assert not line.endswith("ETA --")


def test_not_a_terminal_gives_plain_log_lines_when_the_count_moves(tmp_path):
    stream = io.StringIO()
    note_video(str(tmp_path), "ok")
    with ProgressLine(str(tmp_path), total=2, stream=stream, log_every_s=0.05) as progress:
        while "1/2" not in stream.getvalue():
            pass
        assert progress.counts() == {"ok": 1}
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    # one line when the count moved, one at the end
    assert [line.split(",")[0] for line in lines] == ["videolabel: 1/2 videos (50%)"] * 2
