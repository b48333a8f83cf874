"""``videolabel demo``: the whole job offline: generate labelled videos, train, label unseen ones.

The four classes are a square moving right, left, down or up; one frame does
not tell them apart, only the motion does. MoViNet-A0 (stream) is fine-tuned
from random weights on 8-frame 64x64 clips (no download needed), then the Beam
pipeline labels videos it has never seen, plus a file that is not a video.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from beam_pipeline.config import load_config
from beam_pipeline.demo.synthetic import MOTIONS, make_labelled_set
from beam_pipeline.job.launcher import run_job
from beam_pipeline.outputs.report import build_report
from beam_pipeline.outputs.run_output import RunOutput
from beam_pipeline.outputs.summary import print_summary
from beam_pipeline.training.train_job import run_train

__all__ = ["DEMO_SETTINGS", "DEMO_SPLITS", "run_demo"]

# Videos per motion. From random weights, 30 train videos a motion gave valid accuracy 0.70-1.00
# over machines and seeds (memorised, short of the motions); 60 gave 1.00 by epoch 6 (docs/MODELS.md).
DEMO_SPLITS = {"train": 60, "valid": 5, "test": 5}

# One 8-frame clip per video, the same frames in training and labelling. With 60 videos a motion
# the plain fit learns the motions by epoch 6; with colour augmentation (train's default) valid
# accuracy reached 1.00 at epoch 11, and train's floor of steps for small sets would make the run longer.
DEMO_SETTINGS = (
    "model.kind=movinet", "model.model_id=a0", "model.model_mode=stream",
    "sampling.strategy=uniform", "sampling.n_frames=8", "sampling.imgz=64",
    "train.method=finetune", "train.num_epochs=15", "train.patience=10", "train.batch_size=16",
    "train.learning_rate=0.001", "train.augment=none", "train.min_steps=0",
    "runner.runner=DirectRunner", "runner.direct_running_mode=multi_processing",
    "runner.direct_num_workers=2",
)


def _add_broken_video(folder: str, manifest: str) -> None:
    """Adds a file that is not a video, to show that a bad file becomes a failed row."""
    with open(os.path.join(folder, "broken.mp4"), "wb") as handle:
        handle.write(b"this is not a video" * 64)
    with open(manifest, "a", encoding="utf-8") as handle:
        handle.write("broken.mp4,moving_left\n")


def _print_videos(results: str) -> float:
    """Prints each labelled video; returns the accuracy over the videos that decoded."""
    table = RunOutput(results).dataset("videos").to_table(
        columns=["uri", "label", "status", "prediction", "score", "error_type"])
    print("\n  video                      label          status  prediction     score")
    for row in sorted(table.to_pylist(), key=lambda r: r["uri"]):
        score = row["score"] if row["score"] is not None else float("nan")
        print(f"  {os.path.basename(row['uri']):26s} {row['label'] or '-':14s} {row['status']:7s} "
              f"{row['prediction'] or row['error_type']:14s} {score:.3f}")
    decoded = [r for r in table.to_pylist() if r["status"] == "ok"]
    return sum(r["prediction"] == r["label"] for r in decoded) / max(1, len(decoded))


def run_demo(output: str, beam_args: Sequence[str] = ()) -> dict:
    """Generates videos, trains MoViNet-A0 stream on them, labels unseen ones; returns the run summary."""
    train_videos = os.path.join(output, "videos_train")
    new_videos = os.path.join(output, "videos_new")
    model = os.path.join(output, "model")
    results = os.path.join(output, "results")
    per_class = sum(DEMO_SPLITS.values())
    print(f"1/3 generating labelled videos: {len(MOTIONS)} motions x {per_class} in {train_videos} "
          f"(train {DEMO_SPLITS['train']}, valid {DEMO_SPLITS['valid']}, test {DEMO_SPLITS['test']} each) "
          f"and 6 unseen ones each in {new_videos}")
    manifest = make_labelled_set(train_videos, per_class=per_class, splits=DEMO_SPLITS)
    unseen = make_labelled_set(new_videos, per_class=6, seed=1)
    _add_broken_video(new_videos, unseen)

    print(f"2/3 videolabel train: fine-tuning MoViNet-A0 stream from random weights into {model}")
    cfg = load_config(None, DEMO_SETTINGS)
    trained = run_train(cfg, manifest, model, beam_args, overwrite=True)

    print(f"3/3 videolabel run: labelling {unseen} with the trained model (Beam, DirectRunner)")
    cfg = load_config(None, [*DEMO_SETTINGS, f'input.paths=["{unseen}"]', f'output.path="{results}"',
                             f'model.handle="{model}"'])
    summary = run_job(cfg, beam_args, overwrite=True)
    print_summary(summary, results)
    accuracy = _print_videos(results)
    report = build_report(results)
    print(f"\nAccuracy on the {6 * len(MOTIONS)} unseen videos: {accuracy:.2f} "
          f"(test split while training: {trained['test_accuracy']:.2f}; chance: {1 / len(MOTIONS):.2f}).\n"
          "broken.mp4 is not a video: it is a failed row with its error; the other videos are unaffected.\n"
          f"Predictions: {results}/videos and {results}/frames (Parquet, one folder per split)\n"
          f"Training: {model}/results.json, {model}/loss_curve.png, {model}/confusion_matrix.png\n"
          f"Report ({len(report['images'])} plots): {results}/report/index.html\n"
          f"Browse it in the app (label one video, browse the run): videolabel app {results} --model {model}")
    return {**summary.as_dict(), "unseen_accuracy": accuracy, "test_accuracy": trained["test_accuracy"]}
