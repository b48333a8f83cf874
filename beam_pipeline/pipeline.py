"""build_pipeline(p, cfg): the whole job as a Beam graph, testable with TestPipeline."""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam

from beam_pipeline.config import JobConfig
from models.movinet_handler import MovinetClipHandler, MovinetStreamHandler
from models.pose_handlers import PoseLstmHandler
from transforms.aggregate import Aggregate, RunStamp
from transforms.classify import Classify
from transforms.decode_sample import DecodeAndSample
from transforms.listing import ListVideos
from transforms.records import SamplingSpec
from transforms.schema import VIDEOS_SCHEMA, frames_schema
from transforms.write import WriteOutputs

__all__ = ["build_pipeline", "input_mode", "make_handler", "sampling_spec"]


def input_mode(cfg: JobConfig) -> str:
    """How DecodeAndSample feeds the model: ``stream`` (lazy frame sources) or ``base`` (clips)."""
    return "stream" if cfg.model.kind == "movinet" and cfg.model.model_mode == "stream" else "base"


def make_handler(cfg: JobConfig, handle: str, num_labels: int):
    """The ModelHandler for the configured model and mode."""
    m = cfg.model
    if m.kind == "lstm":
        return PoseLstmHandler(handle, pose_handle=cfg.pose.handle, threshold=cfg.pose.threshold,
                               num_labels=num_labels, n_frames=cfg.sampling.n_frames, top_k=m.top_k,
                               keep_probs=cfg.output.write_probs, batch_size=m.batch_size,
                               threads=m.tf_threads, keep_keypoints=cfg.output.write_keypoints)
    common = dict(num_labels=num_labels, imgz=cfg.imgz, top_k=m.top_k, keep_probs=cfg.output.write_probs,
                  tf_threads=m.tf_threads)
    if m.model_mode == "stream":
        return MovinetStreamHandler(handle, stream_chunk=m.stream_chunk, **common)
    return MovinetClipHandler(handle, n_frames=cfg.sampling.n_frames, batch_size=m.batch_size, **common)


def sampling_spec(cfg: JobConfig) -> SamplingSpec:
    """The per-video sampling settings of a config."""
    s = cfg.sampling
    return SamplingSpec(strategy=s.strategy, fps=s.fps, n_frames=s.n_frames, imgz=cfg.imgz,
                        max_pixels=s.max_pixels, max_duration_s=s.max_duration_s,
                        decode_timeout_s=s.decode_timeout_s)


def build_pipeline(p: beam.Pipeline, cfg: JobConfig, *, handle: str, labels: Sequence[str],
                   stamp: RunStamp):
    """Adds ListVideos -> DecodeAndSample -> Classify -> Aggregate -> WriteOutputs to ``p``.

    Args:
        p: the pipeline (a TestPipeline in tests).
        cfg: the validated job config; ``cfg.input.paths`` must be set.
        handle: resolved model handle (URL or SavedModel dir).
        labels: class names in the model's output order.
        stamp: model, config hash and run id stamped on video rows.

    Returns:
        (video rows, frame rows or None, written part paths) as PCollections.
    """
    refs = p | "ListVideos" >> ListVideos(
        cfg.input.paths, extensions=cfg.input.extensions,
        ratios=cfg.split.ratios, salt=cfg.split.salt)
    mode = input_mode(cfg)
    clips, infos = refs | "DecodeAndSample" >> DecodeAndSample(
        mode=mode, spec=sampling_spec(cfg), stride=cfg.sampling.stride)
    predictions, errors = clips | "Classify" >> Classify(make_handler(cfg, handle, len(labels)))
    video_rows, frame_rows = (infos, predictions, errors) | "Aggregate" >> Aggregate(
        mode=mode, labels=labels, k=min(cfg.model.top_k, len(labels)),
        write_frames=cfg.output.write_frames, write_probs=cfg.output.write_probs, stamp=stamp,
        pool=cfg.model.video_pool)
    if not cfg.output.write_frames:
        frame_rows = None
    paths = (video_rows, frame_rows) | "WriteOutputs" >> WriteOutputs(
        cfg.output.path, videos_schema=VIDEOS_SCHEMA,
        frames_schema=frames_schema(cfg.output.write_probs, cfg.output.write_keypoints),
        num_shards=cfg.output.num_shards)
    return video_rows, frame_rows, paths
