"""Dataflow up to the service boundary: the job built offline (--dry_run), and gs:// through a real
GCS-compatible server (gcp-storage-emulator on loopback)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from beam_pipeline.cli import main
from beam_pipeline.config import load_config
from beam_pipeline.demo.synthetic import make_labelled_set
from beam_pipeline.job.launcher import run_job
from beam_pipeline.outputs.ledger import LEDGER_FILE, RUN_WRITES, Ledger
from tests.conftest import BUCKET, REPO, upload


@pytest.fixture(scope="module")
def gs_videos(gcs, tmp_path_factory):
    """Three generated videos and a manifest (with one object that does not exist) under gs://vl-test/in."""
    folder = tmp_path_factory.mktemp("upload")
    make_labelled_set(str(folder), per_class=1, motions=("moving_left", "moving_right", "moving_up"),
                      seconds=1.0)
    lines = (folder / "manifest.csv").read_text().splitlines() + ["missing.mp4,moving_down"]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    for path in folder.iterdir():
        upload(path, f"gs://{BUCKET}/in/{path.name}")
    return f"gs://{BUCKET}/in/manifest.csv"


DATAFLOW_FLAGS = ["--project=demo-project", f"--temp_location=gs://{BUCKET}/tmp", "--dry_run=True"]


def test_dry_run_asks_for_the_gpu_on_the_classify_step_only(gs_videos, a0_base, capsys):
    image = "us-central1-docker.pkg.dev/demo-project/videolabel/worker:0.1.0"
    cfg = load_config(str(REPO / "configs" / "dataflow_gpu.yaml"), [
        f'input.paths=["{gs_videos}"]', f'output.path="gs://{BUCKET}/out"', f'model.handle="{a0_base}"',
        "model.model_id=a0"])
    summary = run_job(cfg, [*DATAFLOW_FLAGS, f"--sdk_container_image={image}"])
    assert summary["dry_run"] and summary["job_name"] == "videolabel"
    assert summary["labels"] == {"app": "videolabel"} and summary["project"] == "demo-project"
    hint = "type:nvidia-l4;count:1;install-nvidia-driver;machine_type:g2-standard-8"
    gpu_steps = summary["accelerator_steps"]
    assert gpu_steps and all(s.startswith("Classify/") for s in gpu_steps)
    assert any(s.startswith("Classify/DecodeAndInfer/") for s in summary["accelerator_steps"])
    # short videos are decoded on the CPU workers, before the fusion break
    for step in ("ListVideos/", "DecodeAndSample/OpenAndProbe", "DecodeAndSample/PredecodeShort",
                 "FusionBreak/", "Aggregate/", "WriteOutputs/"):
        assert any(s.startswith(step) for s in summary["cpu_steps"]), step
    assert {e["accelerator"] for e in summary["environments"]} == {None, hint}
    assert {e["image"] for e in summary["environments"]} == {image}
    assert "accelerator steps: Classify/" in capsys.readouterr().out
    from apache_beam.io.filesystems import FileSystems

    assert not FileSystems.match([f"gs://{BUCKET}/out/*"])[0].metadata_list  # nothing was written


def test_dry_run_of_a_cpu_job_stages_the_setup_file_and_the_litert_model(gs_videos, a0_stream, a0_litert):
    from apache_beam.io.filesystems import FileSystems

    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["{gs_videos}"]', f'output.path="gs://{BUCKET}/out"', f'model.handle="{a0_stream}"',
        "sampling.imgz=64"])
    summary = run_job(cfg, ["--runner=DataflowRunner", "--region=europe-west4", "--job_name=cpu-labels",
                            "--labels=owner=vision", *DATAFLOW_FLAGS, f"--setup_file={REPO / 'setup.py'}"])
    assert summary["accelerator_steps"] == [] and summary["setup_file"] == str(REPO / "setup.py")
    assert summary["job_name"] == "cpu-labels" and summary["labels"] == {"owner": "vision"}
    (env,) = summary["environments"]
    assert "workflow.tar.gz" in env["staged"]  # the project's sdist, installed on every worker
    # stream mode on CPU workers: the LiteRT conversion is staged beside the job, and the workers load it
    staged = f"gs://{BUCKET}/tmp/videolabel-litert/{Path(a0_litert).name}"
    with FileSystems.open(staged) as handle:
        assert handle.read() == Path(a0_litert).read_bytes()


def test_a_dry_run_through_the_cli_prints_the_job_and_exits_0(gs_videos, a0_stream, capsys):
    from beam_pipeline.cli import main

    code = main(["run", "--config", str(REPO / "configs" / "local.yaml"), "--input", gs_videos,
                 "--output", f"gs://{BUCKET}/out", "--model", a0_stream, "--set", "sampling.imgz=64",
                 "--runner", "DataflowRunner", "--region=europe-west4", "--job_name=cli-dry",
                 *DATAFLOW_FLAGS])
    out = capsys.readouterr().out
    assert code == 0 and "dry run: Dataflow job 'cli-dry' in demo-project/europe-west4 built" in out
    assert "videolabel run" not in out  # no end-of-run summary: nothing ran


def test_dataflow_needs_its_settings_and_a_gpu_image(gs_videos, capsys):
    common = ["run", "--config", str(REPO / "configs" / "dataflow_gpu.yaml"), "--input", gs_videos,
              "--output", f"gs://{BUCKET}/out"]
    assert main([*common, f"--temp_location=gs://{BUCKET}/tmp"]) == 2
    assert "--project: DataflowRunner needs it" in capsys.readouterr().err
    assert main([*common, *DATAFLOW_FLAGS]) == 2
    assert "--sdk_container_image: model.accelerator needs the worker image" in capsys.readouterr().err
    assert main([*common[:-1], "/tmp/local-out", *DATAFLOW_FLAGS, "--sdk_container_image=i"]) == 2
    assert "use a gs:// path" in capsys.readouterr().err


def test_credentials_are_refused_in_configs_and_flags(tmp_path, capsys):
    for extra in (["--set", "runner.credentials_file=/keys/sa.json"], ["--gcp_access_token=ya29.x"]):
        assert main(["run", "--input", str(tmp_path / "*.mp4"), "--output", str(tmp_path / "o"), *extra]) == 2
        err = capsys.readouterr().err
        assert "credentials do not go in configs or flags" in err and "Application Default Credentials" in err
        assert "sa.json" not in err and "ya29" not in err  # the secret itself is never echoed


def test_gs_input_and_output_for_real(gcs, gs_videos, a0_stream, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    out = f"gs://{BUCKET}/labels"
    cmd = [sys.executable, "-m", "beam_pipeline", "run", "--config", str(REPO / "configs" / "local.yaml"),
           "--input", gs_videos, "--output", out, "--model", a0_stream, "--set", "sampling.imgz=64",
           "--direct_running_mode=in_memory", "--direct_num_workers=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "STORAGE_EMULATOR_HOST": gcs})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok 3, partial 0, failed 1" in proc.stdout

    def table(name):
        parts = [m.path for m in FileSystems.match([f"{out}/{name}/*/part-*.parquet"])[0].metadata_list]
        assert parts, name
        tables = []
        for part in parts:
            with FileSystems.open(part) as handle:
                tables.append(pq.read_table(pa.BufferReader(handle.read())))
        return pa.concat_tables(tables).to_pylist()

    videos = {r["uri"].rsplit("/", 1)[-1]: r for r in table("videos")}
    assert sorted(videos) == ["missing.mp4", "moving_left_000.mp4", "moving_right_000.mp4",
                              "moving_up_000.mp4"]
    missing = videos["missing.mp4"]
    assert (missing["status"], missing["error_stage"]) == ("failed", "open")
    assert missing["uri"] == f"gs://{BUCKET}/in/missing.mp4" and missing["error_message"]
    assert all(v["status"] == "ok" for k, v in videos.items() if k != "missing.mp4")
    frames = table("frames")
    assert len(frames) == sum(v["frames_sampled"] for v in videos.values())
    assert FileSystems.exists(f"{out}/_run.json") and FileSystems.exists(f"{out}/labels.txt")


def test_a_missing_output_bucket_fails_at_start(gcs, gs_videos, a0_stream, capsys):
    code = main(["run", "--input", gs_videos, "--output", "gs://no-such-bucket/out", "--model", a0_stream])
    assert code == 2
    assert "--output: bucket gs://no-such-bucket does not exist" in capsys.readouterr().err


def test_worker_image_pins_the_versions_setup_py_pins():
    dockerfile = (REPO / "Dockerfile").read_text()
    setup = (REPO / "setup.py").read_text()
    beam = re.search(r'"apache-beam\[gcp\]==([\d.]+)"', setup).group(1)
    tf = re.search(r'"tensorflow==([\d.]+)"', setup).group(1)
    assert f"ARG BEAM_VERSION={beam}" in dockerfile
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in dockerfile
    assert f'"tensorflow[and-cuda]=={tf}"' in dockerfile
    assert "COPY beam_pipeline beam_pipeline" in dockerfile and " -c requirements.lock " in dockerfile


def _done_part(n: int, config_hash: str, model: str) -> bytes:
    """A ``videos`` part of ``n`` done rows (status ok, this config and model), as Parquet bytes."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from transforms.schema import VIDEOS_SCHEMA
    from transforms.splits import stable_video_id

    uris = [f"gs://{BUCKET}/archive/{i:07d}.mp4" for i in range(n)]
    filled = {"video_id": pa.array([stable_video_id(uri) for uri in uris]), "uri": pa.array(uris),
              "status": pa.array(["ok"] * n), "config_hash": pa.array([config_hash] * n),
              "model": pa.array([model] * n), "run_id": pa.array(["20260101T000000Z-aaaaaa"] * n)}
    table = pa.table([filled[f.name] if f.name in filled else pa.nulls(n, f.type) for f in VIDEOS_SCHEMA],
                     schema=VIDEOS_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def test_dry_run_resume_of_a_large_output_keeps_the_done_ids_out_of_the_job(gs_videos, a0_stream, tmp_path):
    """200,000 done videos: the job reads them itself (ReadDone) instead of carrying them, so its JSON
    stays far under Dataflow's 10 MB graph limit; and the dry run leaves the output as it was."""
    from apache_beam.io.filesystems import FileSystems

    from beam_pipeline.job.checks import resolve_handle

    out = f"gs://{BUCKET}/big"
    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["{gs_videos}"]', f'output.path="{out}"', f'model.handle="{a0_stream}"',
        "sampling.imgz=64"])
    run_id = "20260101T000000Z-aaaaaa"
    part = f"{out}/videos/split=train/part-{run_id}-0a1b2c3d-00000.parquet"
    data = _done_part(200_000, cfg.job_hash(), resolve_handle(cfg))
    with FileSystems.create(part) as handle:
        handle.write(data)
    Ledger().with_writes(RUN_WRITES, run_id).write(out)  # as the run that wrote the part recorded it
    job_file = tmp_path / "job.json"
    summary = run_job(cfg, ["--runner=DataflowRunner", "--region=europe-west4", *DATAFLOW_FLAGS,
                            f"--dataflow_job_file={job_file}"], resume=True)
    assert summary["dry_run"]
    job = job_file.read_text()
    size, graph = len(job.encode()), summary["graph_bytes"]
    print(f"200,000-video resume: job JSON {size:,} bytes, graph {graph:,} bytes")
    assert size < 1_000_000 and graph < 1_000_000
    for step in ("ReadDone", "JoinDone", "SkipDone"):
        assert step in job, step
    assert any(s.startswith("ReadDone/") for s in summary["cpu_steps"])
    # read-only: the done part is untouched and nothing else was written
    assert sorted(m.path for m in FileSystems.match([f"{out}/**"])[0].metadata_list) == [
        f"{out}/{LEDGER_FILE}", part]
    with FileSystems.open(part) as handle:
        assert handle.read() == data
