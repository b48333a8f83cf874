"""--overwrite, --resume, report and the finalize step delete only what videolabel wrote (its ledger).

Every test that refuses a folder checks that each user file is still there, byte for byte, and that
the refusal never suggests a flag that would delete something videolabel did not write.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.cli import main
from beam_pipeline.config import ConfigError
from beam_pipeline.demo.synthetic import make_labelled_set
from beam_pipeline.outputs.ledger import (
    LEDGER_FILE,
    RUN_WRITES,
    TRAIN_WRITES,
    Ledger,
    check_output_apart,
    prepare_output,
    survey,
)
from tests.conftest import BUCKET, REPO, upload

LOCAL = str(REPO / "configs" / "local.yaml")
RUN_A = "20260101T000000Z-aaaaaa"
RUN_B = "20260102T000000Z-bbbbbb"


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _gs_snapshot(prefix: str) -> dict[str, bytes]:
    snapshot = {}
    for meta in FileSystems.match([f"{prefix}/**"])[0].metadata_list:
        with FileSystems.open(meta.path) as handle:
            snapshot[meta.path] = handle.read()
    return snapshot


def _refused(argv: list[str], capsys) -> str:
    """Runs the CLI, expects exit 2 with one line; returns that line."""
    capsys.readouterr()  # what earlier calls printed
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert "--overwrite" not in err, f"the refusal suggests a destructive flag: {err}"
    return err


def _train_argv(manifest: Path, out: Path, *extra: str) -> list[str]:
    """``train`` of the pose LSTM; any existing file passes the pose model's start-up check."""
    return ["train", "--config", str(REPO / "configs" / "lstm_pose.yaml"), "--manifest", str(manifest),
            "--output", str(out), "--set", f'pose.handle="{manifest}"', *extra]


def _run_argv(inputs: str, out: str, model: str, *extra: str) -> list[str]:
    return ["run", "--config", LOCAL, "--input", inputs, "--output", out, "--model", model,
            "--set", "sampling.imgz=64", "--set", "sampling.fps=2",
            "--direct_running_mode=in_memory", "--direct_num_workers=1", *extra]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """DATA/videos/ with two generated videos and a user's notes: the common layout."""
    data = tmp_path_factory.mktemp("DATA")
    make_labelled_set(str(data / "videos"), per_class=1, motions=("moving_left", "moving_right"), seconds=1.0)
    (data / "videos" / "notes.txt").write_text("shot on the pier, 2025")
    return data


# -- the rule, unit by unit ------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "output", "refused"), [
    ("DATA/videos/*", "DATA", "holds"),
    ("DATA/videos/*.mp4", "DATA/videos", "holds"),
    ("DATA/videos/*", "DATA/videos/labels", "is inside"),
    ("DATA/**/*.mp4", "DATA/labels", "is inside"),
    ("DATA/*/*.mp4", "DATA/labels", "is inside"),
    ("DATA/labels.csv", "DATA", "holds"),
    ("DATA/clip.mp4", "DATA", "holds"),
    ("DATA/*.mp4", "DATA/labels", None),        # the glob lists DATA's files, not what is in DATA/labels
    ("DATA/labels.csv", "DATA/labels", None),
    ("DATA/videos/*", "DATA/videos2", None),    # a name that starts the same is another folder
    ("gs://b/data/videos/*", "gs://b/data", "holds"),
    ("gs://b/data/videos/*", "gs://b/data/videos/out/", "is inside"),
    ("gs://b/data/videos/*", "gs://b/labels", None),
])
def test_an_output_that_holds_or_sits_in_an_input_is_refused(tmp_path, given, output, refused):
    def local(path: str) -> str:
        return path if path.startswith("gs://") else str(tmp_path / path)

    if refused is None:
        check_output_apart(local(output), [local(given)])
        return
    with pytest.raises(ConfigError) as info:
        check_output_apart(local(output), [local(given)])
    assert f"{local(output)!r} {refused} the input {local(given)!r}" in str(info.value)


def test_an_output_that_holds_the_model_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="overlaps"):
        check_output_apart(str(tmp_path), [], [str(tmp_path / "model" / "saved_model")])
    check_output_apart(str(tmp_path / "out"), [], [str(tmp_path / "model"), "https://tfhub.dev/x/y/1"])


def test_the_ledger_owns_parts_by_their_run_id_and_nothing_by_name_alone():
    ledger = Ledger().with_writes(RUN_WRITES, RUN_A)
    assert ledger.owns(f"videos/split=train/part-{RUN_A}-0a1b2c3d-00000.parquet")
    assert ledger.owns(f"frames/split=a%2Fb/.part-{RUN_A}-0a1b2c3d-00003.parquet.9f8e7d.tmp")
    assert ledger.owns("labels.txt") and ledger.owns("_run.json") and ledger.owns(LEDGER_FILE)
    for theirs in (f"videos/split=train/part-{RUN_B}-0a1b2c3d-00000.parquet",  # another run's
                   "videos/split=train/part-00000.parquet", "videos/clip.mp4",
                   "videos/split=train/.notes.tmp",
                   f"videos/part-{RUN_A}-0a1b2c3d-00000.parquet",  # not in a split folder
                   f"features/split=train/part-{RUN_A}-0a1b2c3d-00000.parquet",  # a table it did not write
                   "results.json", "saved_model/saved_model.pb", "frames/0001.jpg"):
        assert not ledger.owns(theirs), theirs
    later = ledger.with_writes(TRAIN_WRITES, RUN_B)
    assert later.run_ids == (RUN_A, RUN_B) and later.owns("saved_model/variables/variables.index")


def _fake_train_output(root: Path, run_id: str) -> None:
    """The files ``train`` writes, under a ledger (``prepare_output``) as train records them."""
    prepare_output(str(root), TRAIN_WRITES, run_id, overwrite=False)
    for name in ("labels.txt", "results.json", "loss_curve.png", "confusion_matrix.png",
                 "saved_model/saved_model.pb", "saved_model/variables/variables.index",
                 f"features/split=train/part-{run_id}-0a1b2c3d-00000.parquet"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"written by {run_id}")


def test_overwrite_of_a_training_deletes_its_files_and_keeps_the_users(tmp_path):
    root = tmp_path / "model"
    _fake_train_output(root, RUN_A)
    (root / "README.md").write_text("my notes on this model")  # a user's file beside the output
    (root / "features" / "split=train" / "mine.parquet").write_bytes(b"PAR1 mine")
    with pytest.raises(ConfigError, match="mine.parquet") as info:  # a user's file where train writes
        prepare_output(str(root), TRAIN_WRITES, RUN_B, overwrite=True)
    assert "--overwrite" not in str(info.value)
    (root / "features" / "split=train" / "mine.parquet").unlink()
    with pytest.raises(ConfigError, match="already holds a videolabel output"):
        prepare_output(str(root), TRAIN_WRITES, RUN_B, overwrite=False)
    prepare_output(str(root), TRAIN_WRITES, RUN_B, overwrite=True)
    assert _snapshot(root).keys() == {"README.md", LEDGER_FILE}
    assert json.loads((root / LEDGER_FILE).read_text())["run_ids"] == [RUN_B]


# -- run and train through the CLI ----------------------------------------------------------------

def test_the_issues_layout_is_refused_before_anything_is_read_or_written(archive, tmp_path, capsys):
    before = _snapshot(archive)
    for extra in ([], ["--overwrite"]):
        err = _refused(_run_argv(f"{archive}/videos/*", str(archive), str(tmp_path / "no-model"), *extra),
                       capsys)
        assert f"{str(archive)!r} holds the input {str(archive / 'videos') + '/*'!r}" in err
        err = _refused(_run_argv(f"{archive}/videos/*", str(archive / "videos" / "labels"),
                                 str(tmp_path / "no-model"), *extra), capsys)
        assert "is inside the input" in err
    assert _snapshot(archive) == before  # every video and the notes, byte for byte; no ledger, no labels.txt


def test_a_users_videos_frames_and_results_are_never_deleted(archive, tmp_path, a0_stream, capsys):
    out = tmp_path / "DATA"
    (out / "videos").mkdir(parents=True)
    (out / "videos" / "clip.mp4").write_bytes((archive / "videos" / "moving_left_000.mp4").read_bytes())
    (out / "frames").mkdir()
    (out / "frames" / "0001.jpg").write_bytes(b"\xff\xd8\xff user frame")
    (out / "results.json").write_text('{"my": "results"}')
    before = _snapshot(out)
    for extra in ([], ["--overwrite"], ["--resume"]):
        err = _refused(_run_argv(f"{archive}/videos/*.mp4", str(out), a0_stream, *extra), capsys)
        assert "videolabel did not write" in err and "clip.mp4" in err
    assert _snapshot(out) == before
    # train writes results.json and saved_model/: the user's results.json is refused the same way
    manifest = archive / "videos" / "manifest.csv"
    for extra in ([], ["--overwrite"]):
        err = _refused(_train_argv(manifest, out, *extra), capsys)
        assert "results.json" in err
    assert _snapshot(out) == before


def test_train_overwrite_keeps_a_users_saved_model(archive, tmp_path, capsys):
    out = tmp_path / "work"
    (out / "saved_model" / "variables").mkdir(parents=True)
    (out / "saved_model" / "saved_model.pb").write_bytes(b"\x08\x01 my own model")
    (out / "saved_model" / "variables" / "variables.index").write_bytes(b"my weights")
    before = _snapshot(out)
    manifest = archive / "videos" / "manifest.csv"
    for extra in ([], ["--overwrite"]):
        err = _refused(_train_argv(manifest, out, *extra), capsys)
        assert "saved_model" in err
    assert _snapshot(out) == before


def _parts(out: Path) -> set[str]:
    return {p.name for p in out.glob("*/split=*/part-*.parquet")}


def _videos(out: Path) -> list[dict]:
    return ds.dataset(out / "videos", format="parquet", partitioning="hive").to_table().to_pylist()


def test_overwrite_replaces_a_real_run_and_nothing_else(archive, tmp_path, a0_stream, capsys):
    out = tmp_path / "out"
    argv = _run_argv(f"{archive}/videos/*.mp4", str(out), a0_stream)
    assert main(argv) == 0
    first = {row["run_id"] for row in _videos(out)}
    assert len(first) == 1 and len(_videos(out)) == 2
    first_parts = _parts(out)
    assert main(["report", str(out)]) == 0 and (out / "report" / "index.html").exists()
    (out / "notes.txt").write_text("the user's notes beside the run")
    (out / "videos_backup").mkdir()
    (out / "videos_backup" / "old.parquet").write_bytes(b"the user's backup")
    user = {k: v for k, v in _snapshot(out).items() if k == "notes.txt" or k.startswith("videos_backup")}
    capsys.readouterr()

    assert main(argv) == 2  # an earlier videolabel run: this refusal may name --overwrite
    err = capsys.readouterr().err
    assert "already holds a videolabel output" in err and "--overwrite" in err and "--resume" in err

    assert main([*argv, "--overwrite"]) == 0
    second = {row["run_id"] for row in _videos(out)}
    assert len(_videos(out)) == 2 and second.isdisjoint(first)
    assert _parts(out).isdisjoint(first_parts)  # every part of the first run deleted
    assert not (out / "report").exists()  # the first run's report went with it
    assert {k: v for k, v in _snapshot(out).items() if k in user} == user

    # a run of a version without ledgers is recognised by its _run.json, and replaced the same way
    (out / LEDGER_FILE).unlink()
    assert main([*argv, "--overwrite"]) == 0
    assert {row["run_id"] for row in _videos(out)}.isdisjoint(second) and len(_videos(out)) == 2
    assert {k: v for k, v in _snapshot(out).items() if k in user} == user

    # a user's file dropped among the parts: refused, even with --overwrite; nothing deleted
    mine = out / "videos" / "split=train" / "part-00000.parquet"
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.write_bytes(b"PAR1 the user's own part")
    before = _snapshot(out)
    for extra in (["--overwrite"], ["--resume"]):
        assert "part-00000.parquet" in _refused([*argv, *extra], capsys)
    assert _snapshot(out) == before


def test_resume_deletes_only_its_own_runs_leftovers(archive, tmp_path, a0_stream, capsys):
    out = tmp_path / "out"
    argv = _run_argv(f"{archive}/videos/*.mp4", str(out), a0_stream)
    assert main(argv) == 0
    (run_id,) = {row["run_id"] for row in _videos(out)}
    split = next((out / "videos").glob("split=*"))
    ours = split / f".part-{run_id}-0a1b2c3d-00009.parquet.1234abcd.tmp"  # what a killed run leaves
    ours.write_bytes(b"half a part")
    assert main([*argv, "--resume"]) == 0
    assert not ours.exists()
    assert "2 videos done and kept" in capsys.readouterr().out
    # a hidden .tmp of the user's (the old rule deleted every .*.tmp) stops a resume instead
    theirs = split / ".notes.tmp"
    theirs.write_bytes(b"the user's")
    before = _snapshot(out)
    assert ".notes.tmp" in _refused([*argv, "--resume"], capsys)
    assert _snapshot(out) == before


def test_a_surveyed_folder_is_only_read(archive, tmp_path):
    before = _snapshot(archive)
    found = survey(str(archive), RUN_WRITES)
    assert found.ledger is None and not found.owned and len(found.foreign) == 3  # the first three found
    assert _snapshot(archive) == before


def test_a_link_to_a_users_folder_is_in_the_way_and_never_followed(archive, tmp_path):
    out = tmp_path / "out"
    prepare_output(str(out), RUN_WRITES, RUN_A, overwrite=False)
    (out / "videos" / "split=train").mkdir(parents=True)
    (out / "videos" / "split=train" / "archive").symlink_to(archive / "videos", target_is_directory=True)
    with pytest.raises(ConfigError, match="archive"):
        prepare_output(str(out), RUN_WRITES, RUN_B, overwrite=True)
    (out / "videos" / "split=train" / "archive").unlink()
    (out / "frames").symlink_to(archive / "videos", target_is_directory=True)
    with pytest.raises(ConfigError, match="frames"):
        prepare_output(str(out), RUN_WRITES, RUN_B, overwrite=True)
    assert sorted(p.name for p in (archive / "videos").iterdir()) == [
        "manifest.csv", "moving_left_000.mp4", "moving_right_000.mp4", "notes.txt"]


# -- the same on gs:// (gcp-storage-emulator) -----------------------------------------------------

def test_gs_archive_under_the_output_prefix_is_refused(gcs, archive, a0_stream, capsys):
    data = f"gs://{BUCKET}/ledger-data"
    for path in sorted((archive / "videos").iterdir()):
        upload(path, f"{data}/videos/{path.name}")
    before = _gs_snapshot(data)
    for extra in ([], ["--overwrite"]):
        err = _refused(_run_argv(f"{data}/videos/*", data, a0_stream, *extra), capsys)
        assert f"{data!r} holds the input {data + '/videos/*'!r}" in err
    assert _gs_snapshot(data) == before


def test_gs_users_objects_are_kept_and_a_real_run_replaced(gcs, archive, a0_stream, capsys):
    out = f"gs://{BUCKET}/ledger-out"
    upload(archive / "videos" / "notes.txt", f"{out}/videos/notes.txt")
    upload(archive / "videos" / "moving_left_000.mp4", f"{out}/results.json")
    before = _gs_snapshot(out)
    for extra in ([], ["--overwrite"]):
        err = _refused(_run_argv(f"{archive}/videos/*.mp4", out, a0_stream, *extra), capsys)
        assert "videolabel did not write" in err
    assert _gs_snapshot(out) == before

    run = f"gs://{BUCKET}/ledger-run"
    argv = _run_argv(f"{archive}/videos/*.mp4", run, a0_stream)
    assert main(argv) == 0
    first = {m.path for m in FileSystems.match([f"{run}/videos/*/part-*.parquet"])[0].metadata_list}
    assert first
    upload(archive / "videos" / "notes.txt", f"{run}/notes.txt")
    assert main([*argv, "--overwrite"]) == 0
    second = {m.path for m in FileSystems.match([f"{run}/videos/*/part-*.parquet"])[0].metadata_list}
    assert second and second.isdisjoint(first)
    assert FileSystems.exists(f"{run}/notes.txt")
    with FileSystems.open(f"{run}/{LEDGER_FILE}") as handle:
        assert len(json.loads(handle.read())["run_ids"]) == 1


def test_export_movinet_writes_only_new_files(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"someone's model")
    (tmp_path / "labels.txt").write_text("mine\n")
    before = _snapshot(tmp_path)
    err = _refused(["export-movinet", "--output", str(model)], capsys)
    assert f"{str(model)!r} already exists" in err
    err = _refused(["export-movinet", "--tflite", "--output", str(tmp_path / "new.tflite")], capsys)
    assert f"{str(tmp_path / 'labels.txt')!r} already exists" in err  # the labels written beside it
    assert _snapshot(tmp_path) == before
