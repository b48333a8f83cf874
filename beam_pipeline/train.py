"""``videolabel train``: extract features with the Beam pipeline, then fit a classifier with Keras.

Pose LSTM: each video of a labelled manifest is sampled (``sampling``), MoveNet
gives keypoints per frame, and each window of ``n_frames`` becomes one example
[n_frames, 51] written to ``OUTPUT/features/split=*/`` as Parquet. The LSTM is
then fitted on ``train``, stopped early on ``valid``, evaluated on ``test``, and
saved with its labels, results.json and plots (see ``models.training``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from beam_pipeline.checks import check_inputs, check_pose_handle, prepare_output
from beam_pipeline.config import ConfigError, JobConfig
from beam_pipeline.options import pipeline_options
from beam_pipeline.pipeline import sampling_spec
from models.lstm import POSE_FEATURES, build_pose_lstm
from models.pose_handlers import PoseHandler, lstm_window
from models.training import SplitData, fit_classifier
from transforms.decode_sample import DecodeAndSample
from transforms.listing import ListVideos
from transforms.write import WriteTable

__all__ = ["FEATURES_SCHEMA", "build_features_pipeline", "run_train"]

_log = logging.getLogger(__name__)

FEATURES_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    pa.field("label", pa.string()),
    pa.field("clip_index", pa.int32(), nullable=False),
    pa.field("features", pa.list_(pa.float32()), nullable=False),
], metadata={"videolabel.table": "features"})


def _feature_rows(element, n_frames: int) -> Iterator[dict[str, Any]]:
    video_id, grouped = element
    info = next(iter(grouped["info"]))
    for (_, clip_index), keypoints in grouped["keypoints"]:
        yield {"video_id": video_id, "uri": info.ref.uri, "split": info.ref.split, "label": info.ref.label,
               "clip_index": clip_index, "features": lstm_window(keypoints, n_frames).reshape(-1).tolist()}


def build_features_pipeline(p: beam.Pipeline, cfg: JobConfig, output: str):
    """Adds listing, decoding, MoveNet keypoints and the features Parquet to ``p``."""
    refs = p | "ListVideos" >> ListVideos(cfg.input.paths, extensions=cfg.input.extensions,
                                          ratios=cfg.split.ratios, salt=cfg.split.salt)
    clips, infos = refs | "DecodeAndSample" >> DecodeAndSample(
        mode="base", spec=sampling_spec(cfg), stride=cfg.sampling.stride)
    handler = KeyedModelHandler(PoseHandler(cfg.pose.handle, threshold=cfg.pose.threshold,
                                            threads=cfg.model.tf_threads))
    keypoints = clips | "Keypoints" >> RunInference(handler)
    keyed = keypoints | "KeyByVideo" >> beam.Map(lambda kv: (kv[0][0], kv))
    rows = ({"info": infos, "keypoints": keyed} | "JoinPerVideo" >> beam.CoGroupByKey()
            | "ToRows" >> beam.FlatMap(_feature_rows, cfg.sampling.n_frames))
    return rows | "WriteFeatures" >> WriteTable(output, "features", FEATURES_SCHEMA,
                                                num_shards=cfg.output.num_shards,
                                                sort_keys=("video_id", "clip_index"))


def _split_data(table: pa.Table, n_frames: int) -> tuple[dict[str, SplitData], list[str], int]:
    """Examples per split, the label vocabulary (from train, sorted), and rows dropped."""
    frame = table.to_pandas()
    labelled = frame[frame.label.notna()]
    labels = sorted(set(labelled[labelled.split == "train"].label))
    if len(labels) < 2:
        raise ConfigError(f"--manifest: the train split has {len(labels)} label(s); training needs 2 or more")
    known = labelled[labelled.label.isin(labels)]
    index = {name: i for i, name in enumerate(labels)}
    data = {}
    for split, rows in known.groupby("split"):
        x = np.stack(rows.features.to_numpy()).astype(np.float32).reshape(-1, n_frames, POSE_FEATURES)
        data[str(split)] = SplitData(x, rows.label.map(index).to_numpy(np.int64))
    return data, labels, len(frame) - len(known)


def run_train(cfg: JobConfig, manifest: str, output: str, beam_args: Sequence[str] = (),
              overwrite: bool = False) -> dict[str, Any]:
    """Extracts features from ``manifest`` into ``output`` and trains; returns results.json."""
    if cfg.model.kind != "lstm":
        raise ConfigError(f"model.kind: {cfg.model.kind!r}; `videolabel train` fits the pose LSTM "
                          "(model.kind: lstm) in this version")
    options = pipeline_options(cfg.runner, beam_args)
    check_inputs([manifest])
    check_pose_handle(cfg.pose.handle)
    prepare_output(output, overwrite)
    cfg = cfg.with_inputs((manifest,))
    print(f"1/2 extracting pose keypoints of {manifest} into {output}/features")
    with beam.Pipeline(options=options) as p:
        build_features_pipeline(p, cfg, output)
    table = ds.dataset(f"{output}/features", format="parquet", partitioning="hive").to_table()
    data, labels, dropped = _split_data(table, cfg.sampling.n_frames)
    print(f"2/2 training the pose LSTM on {', '.join(f'{k} {len(v.y)}' for k, v in sorted(data.items()))} "
          f"windows ({len(labels)} classes; {dropped} without a train label skipped)")
    results = fit_classifier(
        build_pose_lstm(len(labels), n_frames=cfg.sampling.n_frames), data, labels, cfg.train,
        output, config={"job": cfg.to_dict(), "manifest": manifest, "features_skipped": dropped})
    accuracy = results["test_accuracy"]
    print(f"test accuracy {accuracy:.3f}" if accuracy is not None else "no test split: see results.json")
    print(f"model {output}/saved_model, labels {output}/labels.txt, {output}/results.json, "
          f"{output}/loss_curve.png, {output}/confusion_matrix.png")
    return results
