"""Every input is accounted for: a file named by itself is always a row, a glob's matches left out by
their ending are counted and named in the summary and ``_run.json``, and a run that labels nothing
says so and exits 1."""

from __future__ import annotations

import json

import apache_beam as beam
import pyarrow.dataset as ds
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipeline.cli import main
from beam_pipeline.outputs.run_record import SkippedFiles, pipeline_metrics, pipeline_strings
from tests import media
from tests.conftest import REPO
from transforms import metrics
from transforms.listing import ListVideos, is_glob

RATIOS = {"train": 0.8, "valid": 0.1, "test": 0.1}


def _folder(root):
    """A camera card: an H.264 clip with an upper-case .MTS ending, an mp4, a song and a note."""
    folder = root / "card"
    folder.mkdir()
    media.odd_container(folder / "00001.MTS", "libx264")
    media.good(folder / "clip.mp4", n=10)
    media.audio_only(folder / "song.m4a")
    media.text_file(folder / "notes.txt")
    media.text_file(folder / "README")
    return folder


def test_is_glob_tells_a_pattern_from_a_file():
    assert is_glob("/data/*.mp4") and is_glob("gs://b/clip_?.mp4") and is_glob("/d/clip[12].mp4")
    assert not is_glob("/data/clip.mp3") and not is_glob("gs://b/x/song.m4a")


def test_named_files_are_videos_whatever_their_ending_and_skipped_matches_are_counted(tmp_path):
    folder = _folder(tmp_path)
    elsewhere = tmp_path / "named"
    elsewhere.mkdir()
    named = [media.audio_only(elsewhere / "voice.m4a"), media.text_file(elsewhere / "readme.txt")]
    p = TestPipeline()
    refs = p | ListVideos((f"{folder}/*", *map(str, named)), extensions=(".mp4", ".mts"), ratios=RATIOS,
                          salt="s")
    assert_that(refs | beam.Map(lambda ref: ref.uri.rsplit("/", 1)[-1]),
                equal_to(["00001.MTS", "clip.mp4", "voice.m4a", "readme.txt"]))
    result = p.run()
    result.wait_until_finish()
    counters, _ = pipeline_metrics(result.metrics())
    examples = pipeline_strings(result.metrics(), metrics.SKIPPED_EXAMPLES)
    skipped = SkippedFiles.of(counters, examples)
    assert skipped.count == 3 and skipped.extensions == {".m4a": 1, ".txt": 1, "none": 1}
    assert examples == sorted(str(folder / name) for name in ("song.m4a", "notes.txt", "README"))


def test_a_run_accounts_for_every_file_and_a_run_of_nothing_exits_1(tmp_path, a0_litert, capsys):
    folder = _folder(tmp_path)
    # named by itself: a row, which the decoder fails (AAC audio in MP4, under an .mp3 name)
    song = media.audio_only(tmp_path / "voice.m4a").rename(tmp_path / "named.mp3")
    out = tmp_path / "out"
    argv = ["run", "--config", str(REPO / "configs" / "local.yaml"), "--model", a0_litert,
            "--set", "sampling.imgz=64", "--set", "sampling.fps=2",
            "--direct_running_mode=in_memory", "--direct_num_workers=1"]
    assert main([*argv, "--input", f"{folder}/*", "--input", str(song), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    videos = ds.dataset(out / "videos", partitioning="hive").to_table().to_pandas().set_index("uri")
    assert sorted(videos.index) == sorted([str(folder / "00001.MTS"), str(folder / "clip.mp4"), str(song)])
    assert videos.loc[str(song), "status"] == "failed"
    assert "no video stream" in videos.loc[str(song), "error_message"]
    assert (videos.drop(str(song)).status == "ok").all()
    record = json.loads((out / "_run.json").read_text())
    left_out = sorted(str(folder / name) for name in ("README", "notes.txt", "song.m4a"))
    assert record["skipped"] == {"count": 3, "extensions": {".m4a": 1, ".txt": 1, "none": 1},
                                 "examples": left_out}
    assert "left out by their ending: 3 files (.m4a 1, .txt 1, none 1)" in printed
    # the summary ends with what was found: each video of a small run, failed ones by their status
    found = printed[printed.index("  found:"):].splitlines()[1:]
    assert sorted(line.split()[0] for line in found) == ["00001.MTS", "clip.mp4", "named.mp3"]
    assert [line.split()[1] for line in found if "named.mp3" in line] == ["failed"]
    # every table exists, empty if no row formed, and the summary names it with its count
    segments = ds.dataset(out / "segments", partitioning="hive").to_table()
    assert f"{out}/segments, {out}/_run.json ({segments.num_rows} segment" in printed

    # a glob whose every match is left out: the run says it labelled nothing, and exits 1
    code = main([*argv, "--input", f"{folder}/*.txt", "--output", str(tmp_path / "none")])
    assert code == 1
    said = capsys.readouterr().err
    assert "nothing was labelled: the inputs gave no video (1 left out by their ending)" in said
