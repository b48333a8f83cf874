"""Fine-tuning MoViNet-A0 stream from random weights: test accuracy by method, set and seed.

Each set is written with its seed, its clips extracted once by ``videolabel train``'s own
feature pass (uniform 8 frames at 64x64), and each method fitted on the same clips:

* ``tf-models``: batch-norm momentum 0.99 (tf-models-official's), no precise batch norm,
  early stopping that counts epochs only (``patience`` 10);
* ``momentum 0.9``: the same with momentum 0.9 (the fix before this one);
* ``precise BN``: momentum 0.9, the statistics recomputed after each epoch
  (``models.training.precise_batch_norm``), patience of at least 100 steps;
* ``colour, 600 steps``: precise BN, and each train clip drawn with new colours
  (``train.augment: colour``) for at least 600 steps (``train.min_steps``);
* ``colour, 1000 steps``: what ``train`` does: the same for at least ``FINETUNE_MIN_STEPS`` (1000).

Sets: ``demo`` (``beam_pipeline.demo.synthetic``: squares over dark noise) and ``sprites``
(``benchmarks.motion_set``: shapes, textures, backgrounds, speeds and sizes of its own, moving in
the diagonals), each 4 classes, 20 videos of 2 s per class (train 14, valid 3, test 3).

    python -m benchmarks.training_accuracy [--sets demo sprites] [--seeds 0 1 2] [--methods ...]

Prints the table and writes ``benchmarks/results/training_accuracy.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds

from beam_pipeline.api import DEFAULT_RUNNER, job_config
from beam_pipeline.demo.synthetic import make_labelled_set
from beam_pipeline.job.launcher import run_with_progress
from beam_pipeline.job.options import pipeline_options
from beam_pipeline.training.train_job import (
    _augmentation,
    _fit_settings,
    _split_data,
    build_features_pipeline,
)
from benchmarks.common import print_table, write_json
from benchmarks.motion_set import make_direction_set

#: The method that is ``train``'s own for ``finetune`` (its floor of steps, FINETUNE_MIN_STEPS).
TRAIN_METHOD = "colour, 1000 steps"
METHODS = ("tf-models", "momentum 0.9", "precise BN", "colour, 600 steps", TRAIN_METHOD)
SPLITS = {"train": 14, "valid": 3, "test": 3}
SETTINGS = {"model": {"kind": "movinet", "model_id": "a0", "model_mode": "stream"},
            "sampling": {"strategy": "uniform", "n_frames": 8, "imgz": 64},
            "train": {"method": "finetune", "batch_size": 16, "num_epochs": 40}}


def _write_set(name: str, folder: str, seed: int) -> str:
    if name == "demo":
        return make_labelled_set(folder, per_class=20, splits=SPLITS, seed=seed)
    return make_direction_set(folder, classes=4, per_class=20, splits=SPLITS, seed=seed)


@contextlib.contextmanager
def _method(name: str) -> Iterator[float]:
    """Sets ``models.training`` up as ``name`` trains; yields the batch-norm momentum."""
    import models.training as training

    precise, steps = training.precise_batch_norm, training.MIN_PATIENCE_STEPS
    if name in ("tf-models", "momentum 0.9"):
        training.precise_batch_norm = lambda *args, **kwargs: 0
        training.MIN_PATIENCE_STEPS = 0
    try:
        yield 0.99 if name == "tf-models" else 0.9
    finally:
        training.precise_batch_norm, training.MIN_PATIENCE_STEPS = precise, steps


def _fit(method: str, data, labels, cfg, seed: int, out: str) -> dict:
    from models.movinet_graph import classifier_on
    from models.movinet_training import finetune_model, pretrained_backbone
    from models.training import fit_classifier

    coloured = method.startswith("colour")  # train's own augmentation for finetune
    settings = _fit_settings(cfg)
    if method != TRAIN_METHOD:
        settings = settings.model_copy(update={"min_steps": 600 if coloured else 0})
    settings = settings.model_copy(update={"seed": seed})
    with _method(method) as momentum:
        backbone = pretrained_backbone("a0", "stream", None, norm_momentum=momentum)
        model = finetune_model(classifier_on(backbone, len(labels), dropout_rate=cfg.train.dropout_rate))
        t0 = time.monotonic()
        results = fit_classifier(model, data, labels, settings, out, save=lambda *_: None,
                                 augment=_augmentation(cfg) if coloured else None)
    return {"test_accuracy": results["test_accuracy"], "best_epoch": results["best_epoch"],
            "epochs_run": results["epochs_run"], "fit_s": round(time.monotonic() - t0, 1)}


def _kept_runs(path: Path, runs: list[dict]) -> list[dict]:
    """The runs already in ``path`` of the (set, method, seed)s not measured again in ``runs``."""
    if not path.exists():
        return []
    again = {(r["set"], r["method"], r["seed"]) for r in runs}
    kept = json.loads(path.read_text())["runs"]
    return [r for r in kept if (r["set"], r["method"], r["seed"]) not in again]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["demo", "sprites"], choices=["demo", "sprites"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", default="benchmarks/results/training_accuracy.json")
    args = parser.parse_args()
    cfg = job_config(None, None, SETTINGS, default_runner=DEFAULT_RUNNER)
    runs = []
    with tempfile.TemporaryDirectory(prefix="videolabel-bench-train-") as work:
        for set_name in args.sets:
            for seed in args.seeds:
                folder = os.path.join(work, f"{set_name}_{seed}")
                manifest = _write_set(set_name, os.path.join(folder, "videos"), seed)
                clips = os.path.join(folder, "clips")
                job = cfg.with_inputs((manifest,))
                run_with_progress(pipeline_options(job.runner, ()),
                                  lambda p, progress, job=job, clips=clips: build_features_pipeline(
                                      p, job, clips, progress_dir=progress))
                table = ds.dataset(f"{clips}/features", format="parquet", partitioning="hive").to_table()
                data, labels, _ = _split_data(table)
                for method in args.methods:
                    result = _fit(method, data, labels, cfg, seed, os.path.join(folder, method))
                    runs.append({"set": set_name, "seed": seed, "method": method, **result})
                    print(f"{set_name} seed {seed} {method}: {result}", flush=True)
    runs = sorted(_kept_runs(Path(args.out), runs) + runs, key=lambda r: r["seed"])
    summary = []
    for set_name, method in sorted({(r["set"], r["method"]) for r in runs},
                                   key=lambda key: (key[0], METHODS.index(key[1]))):
        accuracies = [r["test_accuracy"] for r in runs if r["set"] == set_name and r["method"] == method]
        summary.append({"method": method, "set": set_name, "test_accuracy": accuracies,
                        "mean": round(float(np.mean(accuracies)), 3), "min": min(accuracies)})
    print_table("Fine-tuning MoViNet-A0 stream from random weights: test accuracy (12 clips each)",
                ["method", "set", "test accuracy by seed", "mean", "min"],
                [[s["method"], s["set"], " ".join(f"{a:.2f}" for a in s["test_accuracy"]), f"{s['mean']:.2f}",
                  f"{s['min']:.2f}"] for s in summary])
    write_json(Path(args.out), {"settings": SETTINGS, "splits": SPLITS, "runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
