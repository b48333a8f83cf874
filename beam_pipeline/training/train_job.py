"""``videolabel train``: extract features with the Beam pipeline, then fit a classifier with Keras.

Each video of a labelled manifest is sampled into clips of ``n_frames`` frames
(``sampling``), and each clip becomes one example in ``OUTPUT/features/split=*/``, labelled
with its video's label, or, from a segment manifest (``uri,start_s,end_s,label,split``, as
``videolabel import-annotations`` writes), with the label of the segment holding its middle:

* ``model.kind: lstm``: MoveNet keypoints, float32 [n_frames, 51];
* ``model.kind: movinet``, ``train.method: head``: the frozen backbone's pooled
  features, float32 [C];
* ``model.kind: movinet``, ``train.method: finetune``: the clip itself, uint8
  [n_frames, imgz, imgz, 3].

The classifier is then fitted on ``train``, stopped early on ``valid``,
evaluated on ``test``, and saved with its labels, results.json and plots (see
``models.training``). A MoViNet comes out as an ordinary MoViNet SavedModel of
the configured variant and mode, so ``videolabel run --model OUTPUT`` labels with either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

from beam_pipeline.config import ConfigError, JobConfig
from beam_pipeline.job.checks import check_inputs, check_pose_handle
from beam_pipeline.job.launcher import run_with_progress
from beam_pipeline.job.local_mode import job_work, resolve
from beam_pipeline.job.options import pipeline_options
from beam_pipeline.job.pipeline import list_videos, sampling_spec
from beam_pipeline.job.serving import served_pose
from beam_pipeline.outputs.ledger import TRAIN_WRITES, check_output, check_output_apart, prepare_output
from beam_pipeline.outputs.run_output import RunOutput
from beam_pipeline.outputs.run_record import new_run_id, pipeline_metrics
from models.movinet_variants import feature_width, is_hub_url
from models.training import SplitData, fit_classifier
from models.video_model import RawClips
from transforms import metrics
from transforms.decode_sample import DecodeAndSample
from transforms.examples import ExtractExamples
from transforms.progress import NoteVideos
from transforms.records import VideoExamples, VideoResult, VideoRows
from transforms.schema import record_batch
from transforms.video_handler import ClipWindows
from transforms.write import write_branches

__all__ = ["FEATURES_SCHEMA", "build_features_pipeline", "example_array", "run_train"]

_log = logging.getLogger(__name__)

FEATURES_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    pa.field("label", pa.string()),
    pa.field("clip_index", pa.int32(), nullable=False),
    pa.field("features", pa.binary(), nullable=False),
    pa.field("dtype", pa.string(), nullable=False),
    pa.field("shape", pa.list_(pa.int32()), nullable=False),
], metadata={"videolabel.table": "features",
             "videolabel.features": "np.frombuffer(features, dtype).reshape(shape), C order"})


def example_array(row: dict[str, Any]) -> np.ndarray:
    """A features row's example as an array of its ``dtype`` and ``shape``."""
    return np.frombuffer(row["features"], row["dtype"]).reshape(row["shape"])


def _what(cfg: JobConfig) -> str:
    if cfg.model.kind == "lstm":
        return "pose keypoints"
    return "frozen MoViNet features" if cfg.train.method == "head" else "clips"


def _example_model(cfg: JobConfig, pose: str | None):
    """The model whose output per clip is a training example (see the module doc); ``pose``: the MoveNet
    the workers load (``job.serving.served_pose``)."""
    m = cfg.model
    if m.kind == "lstm":
        from models.pose_lstm import PoseKeypoints

        return PoseKeypoints(pose or cfg.pose.handle, cfg.pose.threshold, m.tf_threads)
    if cfg.train.method == "head":
        from models.movinet_training import MovinetFeatures

        return MovinetFeatures(m.model_id, m.model_mode, cfg.train.checkpoint, m.tf_threads)
    return RawClips()


def _unread(result: VideoResult) -> VideoExamples:
    """A video that failed before the model, as a ``VideoExamples`` without examples."""
    return VideoExamples(result.info, [])


class _FeatureRowsFn(beam.DoFn):
    """VideoExamples -> ``VideoRows`` with its ``features`` batch (one row per clip); counts the videos
    used and failed.

    A clip's label is the video's, or with a segment manifest the label of the segment holding the
    clip's middle (``background`` outside every segment; None, so left out of training, without one).
    """

    def __init__(self, background: str | None = None):
        self._background = background

    def setup(self) -> None:
        self._used = metrics.counter(metrics.TRAIN_VIDEOS_USED)
        self._failed = metrics.counter(metrics.TRAIN_VIDEOS_FAILED)

    def process(self, result: VideoExamples) -> Iterator[VideoRows]:
        ref = result.info.ref
        (self._used if result.examples else self._failed).inc()
        examples = [np.ascontiguousarray(example) for _, example in result.examples]
        n = len(examples)
        features = record_batch({
            "video_id": [ref.video_id] * n, "uri": [ref.uri] * n,
            "label": [ref.label_at(t, self._background) for t in result.middles_s] if ref.segments
            else [ref.label] * n,
            "clip_index": [clip_index for clip_index, _ in result.examples],
            "features": [e.tobytes() for e in examples], "dtype": [e.dtype.name for e in examples],
            "shape": [list(e.shape) for e in examples]}, FEATURES_SCHEMA)
        yield VideoRows(ref.split, {"features": features})


def _feature_status(rows: VideoRows) -> str:
    """A video of the features pass is ``ok`` when it gave examples, else ``failed``."""
    return "ok" if rows.tables["features"].num_rows else "failed"


def build_features_pipeline(p: beam.Pipeline, cfg: JobConfig, output: str, run_id: str = "features",
                            progress_dir: str | None = None, pose: str | None = None):
    """Adds listing, decoding, the per-clip examples and the features Parquet to ``p``; returns the
    paths the finalize deleted (see ``transforms.write``). With ``progress_dir``, the videos are noted
    there for ``run``'s progress line, as ``build_pipeline`` does; ``pose``: the MoveNet the workers
    load (default ``pose.handle``)."""
    refs = list_videos(p, cfg, progress_dir=progress_dir)
    sources, unread = refs | "DecodeAndSample" >> DecodeAndSample(sampling_spec(cfg))
    s = cfg.sampling
    windows = ClipWindows(s.n_frames, s.stride, cfg.model.batch_size)
    extract = ExtractExamples(_example_model(cfg, pose), windows)
    extracted, failed = sources | "Examples" >> extract
    unread = unread | "Unread" >> beam.Map(_unread)
    branches = {"Extracted": extracted, "FailedInference": failed, "FailedBeforeModel": unread}
    rows = {name: branch | f"ToRows/{name}" >> beam.ParDo(_FeatureRowsFn(cfg.input.background_label))
            for name, branch in branches.items()}
    if progress_dir is not None:
        for name, branch_rows in rows.items():
            _ = branch_rows | f"NoteProgress/{name}" >> NoteVideos(progress_dir, _feature_status)
    return write_branches(rows, "WriteFeatures", output, {"features": FEATURES_SCHEMA},
                          {"features": ("video_id", "clip_index")}, run_id=run_id,
                          videos_per_file=cfg.output.videos_per_file, flush_s=cfg.output.flush_s)


def _split_data(table: pa.Table) -> tuple[dict[str, SplitData], list[str], int]:
    """Examples per split, the label vocabulary (from train, sorted), and rows dropped."""
    labelled = [row for row in table.to_pylist() if row["label"] is not None]
    labels = sorted({row["label"] for row in labelled if row["split"] == "train"})
    if len(labels) < 2:
        raise ConfigError(f"--manifest: the train split has {len(labels)} label(s); training needs 2 or more")
    index = {name: i for i, name in enumerate(labels)}
    known = [row for row in labelled if row["label"] in index]
    data = {}
    for split in sorted({row["split"] for row in known}):
        rows = [row for row in known if row["split"] == split]
        data[split] = SplitData(np.stack([example_array(row) for row in rows]),
                                np.array([index[row["label"]] for row in rows], dtype=np.int64))
    return data, labels, table.num_rows - len(known)


def _check_start(cfg: JobConfig):
    """The model-specific start-up checks; returns the pretrained MoViNet backbone (None for lstm)."""
    if cfg.model.kind == "lstm":
        check_pose_handle(cfg.pose.handle)
        return None
    from models.movinet_training import FINETUNE_NORM_MOMENTUM, pretrained_backbone

    t = cfg.train
    if t.method == "head" and not t.checkpoint:
        raise ConfigError("train.checkpoint: train.method head fits a new head on a frozen, pretrained "
                          "backbone and needs its weights (a MoViNet checkpoint prefix or an "
                          "export-movinet SavedModel); train.method finetune can start from random weights")
    if t.checkpoint and is_hub_url(t.checkpoint):
        raise ConfigError(f"train.checkpoint: {t.checkpoint!r}: TF Hub classifiers do not expose the "
                          "backbone; use the MoViNet release checkpoint (ckpt-1) or an export-movinet "
                          "SavedModel")
    momentum = FINETUNE_NORM_MOMENTUM if _finetunes(cfg) else 0.99
    try:
        return pretrained_backbone(cfg.model.model_id, cfg.model.model_mode, t.checkpoint,
                                   norm_momentum=momentum)
    except ValueError as exc:
        raise ConfigError(f"train.checkpoint: {exc}") from None


def _classifier(cfg: JobConfig, backbone, labels: Sequence[str]):
    """(the tf_keras model to fit, the function that saves it) for the configured model."""
    if cfg.model.kind == "lstm":
        from models.lstm import build_pose_lstm
        from models.training import save_features_model

        return build_pose_lstm(len(labels), n_frames=cfg.sampling.n_frames), save_features_model
    from models.movinet_convert import prime_litert
    from models.movinet_export import save_movinet
    from models.movinet_graph import classifier_on
    from models.movinet_training import finetune_model, head_model

    classifier = classifier_on(backbone, len(labels), dropout_rate=cfg.train.dropout_rate)
    model = head_model(classifier) if cfg.train.method == "head" else finetune_model(classifier)

    def save(_fitted, path: str) -> None:
        save_movinet(classifier, cfg.model.model_mode, path, labels)
        # the LiteRT model that `videolabel run` loads, unless this config serves it on TensorFlow
        if cfg.model.model_mode == "stream" and cfg.model.runtime != "tf":
            prime_litert(classifier, path, cfg.imgz, cfg.model.model_id, len(labels))

    return model, save


def _embedding_width(cfg: JobConfig, model) -> int:
    """The width of the fitted model's embeddings (``output.write_embeddings`` of a run with it): the pose
    LSTM's embedding layer, a MoViNet's features."""
    if cfg.model.kind == "lstm":
        from models.lstm import EMBEDDING_LAYER

        return int(model.get_layer(EMBEDDING_LAYER).output.shape[-1])
    return feature_width(cfg.model.model_id)


def _finetunes(cfg: JobConfig) -> bool:
    """Whether ``train`` fits every weight of a MoViNet on decoded clips (else features computed once)."""
    return cfg.model.kind == "movinet" and cfg.train.method == "finetune"


def _fit_settings(cfg: JobConfig):
    """``train`` with ``min_steps`` resolved: null is ``FINETUNE_MIN_STEPS`` for a MoViNet finetune,
    else 0."""
    steps = cfg.train.min_steps
    if steps is None:
        from models.movinet_training import FINETUNE_MIN_STEPS

        steps = FINETUNE_MIN_STEPS if _finetunes(cfg) else 0
    return cfg.train.model_copy(update={"min_steps": steps})


def _augmentation(cfg: JobConfig):
    """What changes each batch of train clips: ``train.augment`` for a MoViNet ``finetune``, else None
    (``head`` and the LSTM fit on features computed once)."""
    if not _finetunes(cfg):
        return None
    from models.clip_augment import AUGMENTATIONS

    return AUGMENTATIONS[cfg.train.augment]


def run_train(cfg: JobConfig, manifest: str, output: str, beam_args: Sequence[str] = (),
              overwrite: bool = False) -> dict[str, Any]:
    """Extracts features from ``manifest`` into ``output`` and trains; returns results.json."""
    check_output_apart(output, [manifest], [cfg.train.checkpoint, cfg.pose.handle if cfg.model.kind == "lstm"
                                            else None])
    options = pipeline_options(cfg.runner, beam_args)
    check_inputs([manifest])
    resolve(options, lambda: job_work(cfg, [manifest]))
    check_output(output, TRAIN_WRITES, overwrite=overwrite)
    backbone = _check_start(cfg)
    pose = served_pose(cfg, options)
    run_id = new_run_id()
    prepare_output(output, TRAIN_WRITES, run_id, overwrite=overwrite)
    cfg = cfg.with_inputs((manifest,))
    print(f"1/2 extracting {_what(cfg)} of {manifest} into {output}/features")
    finished, _ = run_with_progress(options, lambda p, folder: build_features_pipeline(
        p, cfg, output, run_id=run_id, progress_dir=folder, pose=pose))
    counts, _ = pipeline_metrics(finished)
    failed = counts.get(metrics.TRAIN_VIDEOS_FAILED, 0)
    print(f"    {counts.get(metrics.TRAIN_VIDEOS_USED, 0)} videos used, {failed} failed to decode"
          + (" (left out of training)" if failed else ""))
    features = RunOutput(output).dataset("features")
    if features is None:
        raise ConfigError(f"--manifest: no video of {manifest} gave an example ({failed} failed to decode): "
                          "nothing to train on")
    table = features.to_table()
    data, labels, dropped = _split_data(table)
    model, save = _classifier(cfg, backbone, labels)
    name = "pose LSTM" if cfg.model.kind == "lstm" else (
        f"MoViNet {cfg.model.model_id} {cfg.model.model_mode} ({cfg.train.method})")
    print(f"2/2 training the {name} on {', '.join(f'{k} {len(v.y)}' for k, v in sorted(data.items()))} "
          f"examples ({len(labels)} classes; {dropped} without a train label skipped)")
    results = fit_classifier(model, data, labels, _fit_settings(cfg), output,
                             config={"job": cfg.to_dict(), "manifest": manifest, "features_skipped": dropped,
                                     "videos_failed": failed,
                                     "embedding_width": _embedding_width(cfg, model)},
                             save=save, augment=_augmentation(cfg))
    accuracy = results["test_accuracy"]
    print(f"test accuracy {accuracy:.3f}" if accuracy is not None else "no test split: see results.json")
    print(f"model {output}/saved_model, labels {output}/labels.txt, {output}/results.json, "
          f"{output}/loss_curve.png, {output}/confusion_matrix.png")
    return results
