"""``videolabel demo``: the whole job offline on generated labelled videos."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pyarrow.dataset as ds

from beam_pipeline.config import load_config
from beam_pipeline.launcher import run_job
from beam_pipeline.summary import print_summary
from beam_pipeline.synthetic import MOTIONS, make_labelled_set

__all__ = ["run_demo"]


def _add_broken_video(folder: str, manifest: str) -> None:
    """Adds a file that is not a video, to show that a bad file becomes a failed row."""
    with open(os.path.join(folder, "broken.mp4"), "wb") as handle:
        handle.write(b"this is not a video" * 64)
    with open(manifest, "a", encoding="utf-8") as handle:
        handle.write("broken.mp4,moving_left\n")


def run_demo(output: str, beam_args: Sequence[str] = ()) -> dict:
    """Generates videos, exports MoViNet-A0 stream, labels the videos; returns the run summary."""
    from models.movinet_export import export_movinet

    videos = os.path.join(output, "videos_in")
    model = os.path.join(output, "model")
    results = os.path.join(output, "results")
    print(f"1/3 generating labelled videos in {videos}")
    manifest = make_labelled_set(videos, per_class=3)
    _add_broken_video(videos, manifest)
    if not os.path.exists(os.path.join(model, "saved_model.pb")):
        print(f"2/3 exporting MoViNet-A0 stream ({len(MOTIONS)} classes, random weights) to {model}")
        export_movinet(model, model_id="a0", mode="stream", num_classes=len(MOTIONS),
                       labels=list(MOTIONS))
    else:
        print(f"2/3 reusing the model in {model}")
    print("3/3 labelling with the Beam pipeline (DirectRunner)")
    cfg = load_config(None, [
        f'input.paths=["{manifest}"]', f'output.path="{results}"', f'model.handle="{model}"',
        "runner.runner=DirectRunner", "runner.direct_running_mode=multi_processing",
        "runner.direct_num_workers=2",
    ])
    summary = run_job(cfg, beam_args, overwrite=True)
    print_summary(summary, results)
    table = ds.dataset(os.path.join(results, "videos"), format="parquet", partitioning="hive").to_table(
        columns=["uri", "split", "label", "status", "prediction", "score", "error_type"])
    print("\n  video                      split  label          status  prediction     score")
    for row in sorted(table.to_pylist(), key=lambda r: r["uri"]):
        print(f"  {os.path.basename(row['uri']):26s} {row['split']:6s} {row['label'] or '-':14s} "
              f"{row['status']:7s} {row['prediction'] or row['error_type']:14s} "
              f"{row['score'] if row['score'] is not None else float('nan'):.3f}")
    print("\nWhat the labels mean: the model was exported with RANDOM weights (nothing was trained),\n"
          "so its predictions are arbitrary; the demo shows the pipeline, its Parquet output and\n"
          "its error rows (broken.mp4), not accuracy. Train a model, or pass a real one with\n"
          "`videolabel run --model HANDLE`, for meaningful labels.")
    return summary
