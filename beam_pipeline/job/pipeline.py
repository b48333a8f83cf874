"""build_pipeline(p, cfg): the whole job as a Beam graph, testable with TestPipeline."""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam

from beam_pipeline.config import JobConfig
from beam_pipeline.job.resume import ReadDone
from beam_pipeline.job.serving import ServedModel
from models.movinet import Movinet
from models.pose_lstm import PoseLstm
from transforms.aggregate import Aggregate, RunStamp
from transforms.classify import Classify
from transforms.decode_sample import DecodeAndSample
from transforms.listing import ListVideos
from transforms.progress import NoteVideos, note_total
from transforms.records import DEFAULT_DECODER, SamplingSpec
from transforms.schema import SEGMENTS_SCHEMA, VIDEOS_SCHEMA, embeddings_schema, frames_schema
from transforms.segments import SegmentRule
from transforms.video_handler import ClipWindows, StreamChunks, VideoHandler
from transforms.write import write_branches

__all__ = ["build_pipeline", "input_mode", "list_videos", "make_handler", "sampling_spec", "video_rows"]


def input_mode(cfg: JobConfig) -> str:
    """How a video's clip outputs make its prediction: ``stream`` (the last output) or ``base`` (pooled)."""
    return "stream" if cfg.model.kind == "movinet" and cfg.model.model_mode == "stream" else "base"


def make_handler(cfg: JobConfig, model: ServedModel, num_labels: int) -> VideoHandler:
    """The ModelHandler for the configured model and mode: ``FrameSource`` in, ``VideoResult`` out, per
    video; several videos per model call where the served model batches (``ServedModel.batch``)."""
    m, s, handle = cfg.model, cfg.sampling, model.path
    windows = ClipWindows(s.n_frames, s.stride, m.batch_size)
    k = min(m.top_k, num_labels)
    embed = model.embedding_width is not None
    if m.kind == "lstm":
        lstm = PoseLstm(handle, model.pose, cfg.pose.threshold, num_labels, s.n_frames, m.tf_threads, embed)
        return VideoHandler(lstm, windows, k=k, keep_probs=cfg.output.write_probs,
                            keep_keypoints=cfg.output.write_keypoints)
    movinet = Movinet(handle, m.model_mode, num_labels, cfg.imgz, m.tf_threads, embed)
    if m.model_mode == "stream":
        plan = StreamChunks(m.stream_chunk, m.frame_window_s)
        return VideoHandler(movinet, plan, k=k, keep_probs=cfg.output.write_probs, keep_features=embed,
                            batch=model.batch)
    return VideoHandler(movinet, windows, k=k, keep_probs=cfg.output.write_probs)


def sampling_spec(cfg: JobConfig) -> SamplingSpec:
    """The per-video sampling settings of a config: the ``sampling`` keys ``SamplingSpec`` has, with
    ``imgz`` resolved (``JobConfig.imgz``: the variant's native size when unset)."""
    shared = set(SamplingSpec._fields) & set(type(cfg.sampling).model_fields) - {"imgz"}
    return SamplingSpec(**cfg.sampling.model_dump(include=shared), imgz=cfg.imgz)


def _not_done(joined):
    """``(video_id, {"refs": [ref], "done": [...]})`` -> the ref, unless the video is done."""
    _, grouped = joined
    if not grouped["done"]:
        yield from grouped["refs"]


def list_videos(p: beam.Pipeline, cfg: JobConfig, resume: RunStamp | None = None,
                progress_dir: str | None = None):
    """The configured inputs as VideoRefs, one per video id, spread across workers (a Reshuffle).

    With ``resume`` (this run's stamp), the job reads the videos ``cfg.output.path``
    already holds done with the stamp's config hash and model (``ReadDone``) and
    leaves them out by a join on the video id, so the graph carries no ids.

    With ``progress_dir``, the videos left to do are counted and the total noted
    there for the progress line (``transforms.progress.note_total``). The videos
    wait on that note (a side input), so the total is shown before the first video
    is decoded: left to itself, Beam's local runner ran the whole per-video stage
    first. The wait holds nothing back, since the Reshuffle already waits for the whole listing.
    """
    refs = p | "ListVideos" >> ListVideos(cfg.input.paths, extensions=cfg.input.extensions,
                                          ratios=cfg.split.ratios, salt=cfg.split.salt)
    if resume is not None:
        done = p | "ReadDone" >> ReadDone(cfg.output.path, config_hash=resume.config_hash, model=resume.model,
                                          run_id=resume.run_id)
        refs = ({"refs": refs | "KeyRefs" >> beam.Map(lambda ref: (ref.video_id, ref)),
                 "done": done | "KeyDone" >> beam.Map(lambda video_id: (video_id, None))}
                | "JoinDone" >> beam.CoGroupByKey()
                | "SkipDone" >> beam.FlatMap(_not_done))
    spread = refs | "Spread" >> beam.Reshuffle()
    if progress_dir is None:
        return spread
    noted = (refs
             | "CountToDo" >> beam.combiners.Count.Globally()
             | "NoteTotal" >> beam.Map(lambda total: note_total(progress_dir, total)))
    return spread | "AfterTotal" >> beam.Map(lambda ref, _noted: ref, beam.pvalue.AsSingleton(noted))


def video_rows(refs, cfg: JobConfig, *, model: ServedModel, labels: Sequence[str], stamp: RunStamp,
               pin_cores: bool = False, decoder: str = DEFAULT_DECODER) -> dict[str, beam.PCollection]:
    """VideoRefs -> DecodeAndSample -> Classify -> Aggregate: each video's ``VideoRows``.

    Returns:
        The rows of the three branches, never flattened (see ``build_pipeline``):
        ``Classified``, ``FailedInference`` and ``FailedBeforeModel``.
    """
    accelerator = cfg.model.accelerator
    sources, failed = refs | "DecodeAndSample" >> DecodeAndSample(
        sampling_spec(cfg)._replace(decoder=decoder),
        predecode_max_frames=cfg.sampling.predecode_max_frames if accelerator else None, pin_core=pin_cores)
    classify = Classify(make_handler(cfg, model, len(labels)))
    if accelerator:
        # The model step alone runs on accelerator workers: break fusion so that listing and
        # decoding stay on the CPU workers, and hint the accelerator on Classify only.
        sources = sources | "FusionBreak" >> beam.Reshuffle()
        classify = classify.with_resource_hints(accelerator=accelerator)
    results, infer_failed = sources | "Classify" >> classify
    branches = {"Classified": results, "FailedInference": infer_failed, "FailedBeforeModel": failed}
    out = cfg.output
    segments = SegmentRule(out.segment_min_s, out.segment_min_score) if out.write_segments else None
    aggregate = Aggregate(mode=input_mode(cfg), labels=labels, k=min(cfg.model.top_k, len(labels)),
                          write_frames=out.write_frames, write_probs=out.write_probs,
                          write_keypoints=out.write_keypoints, stamp=stamp, pool=cfg.model.video_pool,
                          background=cfg.input.background_label, segments=segments,
                          embedding_width=model.embedding_width)
    return {name: branch | f"Aggregate/{name}" >> aggregate for name, branch in branches.items()}


def build_pipeline(p: beam.Pipeline, cfg: JobConfig, *, model: ServedModel, labels: Sequence[str],
                   stamp: RunStamp, resume: bool = False, progress_dir: str | None = None,
                   pin_cores: bool = False, decoder: str = DEFAULT_DECODER):
    """Adds ListVideos -> DecodeAndSample -> Classify -> Aggregate -> WriteOutputs to ``p``.

    Every element after the listing is one whole video, so each video's rows (``videos``,
    ``frames``, ``segments``) are committed to the output together as soon as it is done;
    once all are written, ``WriteOutputs/Finalize`` removes what bundles that failed (and were
    retried) had committed, so each table ends with one row per video (per frame, per segment;
    see ``transforms.write``).

    Args:
        p: the pipeline (a TestPipeline in tests).
        cfg: the validated job config; ``cfg.input.paths`` must be set.
        model: the model that serves the run (``job.serving.serve``, or ``ServedModel.of`` a handle).
        labels: class names in the model's output order.
        stamp: model, config hash and run id stamped on video rows.
        resume: ``--resume``: leave out the videos the output already holds done (read by the job).
        progress_dir: local runs: where workers note finished videos for the progress line.
        pin_cores: local runs of single-threaded worker processes: each takes a core of its own.
        decoder: the function (``"module:function"``, ``sample_frames``' signature) that each
            worker's decoder process runs (``transforms.decoder_process``); tests pass decoders
            that crash, hang or exhaust memory.

    Returns:
        The per-video rows (``VideoRows``: Arrow batches per table), as a tuple of
        PCollections (classified, failed at inference, failed before the model), never
        flattened: on Beam's local runner a Flatten is a stage boundary that would hold
        every row back until all videos are done. Each branch is aggregated
        (``Aggregate/<branch>``) and committed (``WriteOutputs/<branch>``) on its own;
        only the part keys are flattened, into ``WriteOutputs/Finalize``.
    """
    refs = list_videos(p, cfg, stamp if resume else None, progress_dir)
    rows = video_rows(refs, cfg, model=model, labels=labels, stamp=stamp, pin_cores=pin_cores,
                      decoder=decoder)
    out = cfg.output
    if progress_dir is not None:
        for name, branch_rows in rows.items():
            _ = branch_rows | f"NoteProgress/{name}" >> NoteVideos(progress_dir)
    # committed in this order, videos last (transforms.write)
    schemas = {"videos": VIDEOS_SCHEMA}
    if model.embedding_width is not None:
        schemas = {"embeddings": embeddings_schema(model.embedding_width), **schemas}
    if out.write_segments:
        schemas = {"segments": SEGMENTS_SCHEMA, **schemas}
    if out.write_frames:
        schemas = {"frames": frames_schema(out.write_probs, out.write_keypoints), **schemas}
    sort_keys = {"videos": ("video_id",), "frames": ("video_id", "frame_index"),
                 "segments": ("video_id", "segment_index"), "embeddings": ("video_id", "segment_index")}
    write_branches(rows, "WriteOutputs", out.path, schemas, sort_keys, run_id=stamp.run_id,
                   videos_per_file=out.videos_per_file, flush_s=out.flush_s)
    return tuple(rows.values())
