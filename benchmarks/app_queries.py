"""How quick ``videolabel app``'s queries are on a run of 100,000 videos.

Generates (once, with pyarrow and numpy) an output laid out as ``videolabel run``
writes it: ``videos``, ``frames`` and ``segments``, each ``split=<split>/part-*.parquet``
with 1,000 videos per part and the three tables' parts paired by name, in the
declared schemas (``transforms.schema``). Then times each query the app makes
through ``beam_pipeline.outputs.run_output`` (each the best of a few repeats, on a fresh
``RunOutput`` where the app would list the files anew), against a ceiling measured
in the same run: a plain full read of the same tables' files with pyarrow.

    .venv/bin/python -m benchmarks.app_queries [--videos 100000] [--frames 15] [--out DIR]

Prints a table and writes ``benchmarks/results/app_queries.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from beam_pipeline.outputs.run_output import RunOutput, VideoFilter
from transforms.schema import FRAMES_SCHEMA, SCHEMA_VERSION, SEGMENTS_SCHEMA, VIDEOS_SCHEMA

__all__ = ["write_synthetic_output"]

RESULTS = Path(__file__).parent / "results" / "app_queries.json"
CLASSES = [f"class_{i:02d}" for i in range(20)]
SPLITS = {"train": 0.8, "valid": 0.1, "test": 0.1}


def _list_column(values: np.ndarray, width: int, dtype: pa.DataType) -> pa.Array:
    """A list<dtype> column of ``width`` items per row from a flat array [rows * width]."""
    offsets = np.arange(0, len(values) + 1, width, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, dtype))


def _prediction_columns(rng: np.random.Generator, n: int, truth: np.ndarray,
                        top_k: int = 5) -> dict[str, Any]:
    """prediction (the true class 80% of the time), its index, score and top-k lists."""
    index = np.where(rng.random(n) < 0.8, truth, rng.integers(0, len(CLASSES), n)).astype(np.int32)
    score = rng.uniform(0.3, 1.0, n).astype(np.float32)
    names = np.array(CLASSES)
    top = (index[:, None] + np.arange(top_k)[None, :]) % len(CLASSES)
    scores = np.sort(rng.uniform(0, 0.3, (n, top_k)).astype(np.float32), axis=1)[:, ::-1].copy()
    scores[:, 0] = score
    return {"prediction": pa.array(names[index]), "prediction_index": pa.array(index),
            "score": pa.array(score),
            "top_k_labels": _list_column(names[top].ravel(), top_k, pa.string()),
            "top_k_scores": _list_column(scores.ravel(), top_k, pa.float32())}


def _table(columns: dict[str, Any], schema: pa.Schema) -> pa.Table:
    return pa.table({f.name: pa.array(columns[f.name], f.type) if not isinstance(columns[f.name], pa.Array)
                     else columns[f.name].cast(f.type) for f in schema}, schema=schema)


def _part(rng: np.random.Generator, first: int, count: int, frames_per_video: int,
          segments_per_video: int) -> tuple[pa.Table, pa.Table, pa.Table]:
    """One part's videos, frames and segments tables (videos ``first`` .. ``first + count``)."""
    ids = np.array([f"{i:016x}" for i in range(first, first + count)])
    uris = np.array([f"/archive/clips/clip_{i:06d}.mp4" for i in range(first, first + count)])
    truth = rng.integers(0, len(CLASSES), count)
    labelled = rng.random(count) < 0.9
    status = np.where(rng.random(count) < 0.02, "failed", np.where(rng.random(count) < 0.01, "partial", "ok"))
    failed = status == "failed"
    pred = _prediction_columns(rng, count, truth)
    label = np.where(labelled, np.array(CLASSES)[truth], None)
    is_error = np.where(labelled & ~failed, pred["prediction"].to_numpy(zero_copy_only=False) != label, None)
    error_type = np.where(failed, np.array(["InvalidDataError", "ProbeError", "DecodeTimeout"])[truth % 3],
                          np.where(status == "partial", "DecodeTimeout", None))
    duration = rng.uniform(2, 60, count)
    videos = {
        "video_id": ids, "uri": uris, "label": label, "status": status,
        "error_stage": np.where(failed, "open", np.where(status == "partial", "decode", None)),
        "error_type": error_type,
        "error_message": np.where(error_type == None, None, "synthetic failure for the benchmark"),  # noqa: E711
        "duration_s": duration, "fps": np.full(count, 25.0), "width": np.full(count, 640),
        "height": np.full(count, 360), "codec": np.full(count, "h264"),
        "frames_decoded": (duration * 25).astype(np.int64),
        "frames_sampled": np.full(count, frames_per_video),
        **pred,
        "is_error": is_error, "model": np.full(count, "/models/a0_stream"),
        "config_hash": np.full(count, "0123456789abcdef"),
        "run_id": np.full(count, "20261201T000000Z-bench0"),
        "schema_version": np.full(count, SCHEMA_VERSION),
    }
    for key in ("prediction", "prediction_index", "score", "top_k_labels", "top_k_scores"):
        videos[key] = pc.if_else(pa.array(failed), pa.scalar(None, videos[key].type), videos[key])
    ok = np.flatnonzero(~failed)
    n_frames = len(ok) * frames_per_video
    rep = np.repeat(ok, frames_per_video)
    frame_no = np.tile(np.arange(frames_per_video), len(ok))
    fpred = _prediction_columns(rng, n_frames, truth[rep])
    frames = {"video_id": ids[rep], "uri": uris[rep], "frame_index": frame_no * 5,
              "timestamp_s": frame_no * 0.2, "clip_index": np.zeros(n_frames, np.int32), "label": label[rep],
              **fpred, "is_error": np.where(labelled[rep], fpred["prediction"].to_numpy(zero_copy_only=False)
                                            != label[rep], None)}
    srep = np.repeat(ok, segments_per_video)
    seg_no = np.tile(np.arange(segments_per_video), len(ok))
    span = frames_per_video * 0.2 / segments_per_video
    segments = {"video_id": ids[srep], "uri": uris[srep], "segment_index": seg_no.astype(np.int32),
                "start_s": seg_no * span, "end_s": (seg_no + 1) * span,
                "label": np.array(CLASSES)[truth[srep]], "mean_score": rng.uniform(0.5, 1, len(srep)),
                "max_score": rng.uniform(0.5, 1, len(srep)),
                "frames": np.full(len(srep), frames_per_video // segments_per_video),
                "true_label": label[srep], "overlap_s": np.where(labelled[srep], span, None)}
    return (_table(videos, VIDEOS_SCHEMA), _table(frames, FRAMES_SCHEMA), _table(segments, SEGMENTS_SCHEMA))


def write_synthetic_output(root: str | os.PathLike, *, videos: int, frames_per_video: int = 15,
                           segments_per_video: int = 2, videos_per_file: int = 1000, seed: int = 0) -> str:
    """Writes an output of ``videos`` videos as ``videolabel run`` lays it out; returns ``root``.

    Splits follow ``SPLITS`` (in blocks of ``videos_per_file``: each part holds one split, as the
    writer's do); 2% of the videos fail and 1% are partial (no frames for failed ones); 90% have a
    label, predicted right 80% of the time.
    """
    rng = np.random.default_rng(seed)
    root = str(root)
    names, shares = list(SPLITS), np.array(list(SPLITS.values()))
    for part, first in enumerate(range(0, videos, videos_per_file)):
        split = names[int(rng.choice(len(names), p=shares))]
        tables = _part(rng, first, min(videos_per_file, videos - first), frames_per_video, segments_per_video)
        for name, table in zip(("videos", "frames", "segments"), tables):
            folder = os.path.join(root, name, f"split={split}")
            os.makedirs(folder, exist_ok=True)
            pq.write_table(table, os.path.join(folder, f"part-bench0-0-{part:05d}.parquet"))
    with open(os.path.join(root, "labels.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(CLASSES) + "\n")
    return root


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _full_scan(root: str) -> int:
    """The ceiling: every file of the three tables read whole with pyarrow (no pruning)."""
    return sum(ds.dataset(os.path.join(root, t), format="parquet", partitioning="hive").to_table().num_rows
               for t in ("videos", "frames", "segments"))


def _open(root: str) -> RunOutput:
    """What the page does when it opens an output: list the files, read the splits, _run.json, labels."""
    output = RunOutput(root)
    output.tables(), output.splits(), output.run_record(), output.labels()
    return output


def measure(root: str, repeats: int = 3) -> dict[str, Any]:
    """Times the app's queries on the output at ``root`` (seconds, best of ``repeats``)."""
    warm = RunOutput(root)
    warm.tables()
    summary = warm.summary()
    page, _ = warm.videos(VideoFilter(split="test"), limit=50)
    one = page.video_id.iloc[0]
    queries: dict[str, Callable[[], Any]] = {
        "open (list files, splits, _run.json, labels)": lambda: _open(root),
        "summary (counts, accuracy per split, confusion)": lambda: RunOutput(root).summary(),
        "failures by error type, with examples": lambda: warm.failures(),
        "table page: all videos": lambda: warm.videos(offset=500, limit=50),
        "table page: split=test": lambda: warm.videos(VideoFilter(split="test"), offset=50, limit=50),
        "table page: split=test, wrong, label class_03": lambda: warm.videos(
            VideoFilter(split="test", label="class_03", is_error=True), limit=50),
        "table page: status=failed": lambda: warm.videos(VideoFilter(status="failed"), limit=50),
        "one video: row + frames + segments (split known)": lambda: warm.video(one, "test"),
        "one video: row + frames + segments (split unknown)": lambda: warm.video(one),
        "path guard: does the output name a uri": lambda: warm.names_video(page.uri.iloc[0]),
    }
    rows = {name: _best(fn, repeats)[0] for name, fn in queries.items()}
    ceiling, rows_read = _best(lambda: _full_scan(root), repeats)
    return {"queries_s": rows, "ceiling_full_scan_s": ceiling, "ceiling_rows": rows_read,
            "videos": summary["videos"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmarks.common import print_table, write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=15, help="frames per video")
    parser.add_argument("--out", help="where to write the output, kept (default: a temporary folder, "
                                      "removed after)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    root = args.out or tempfile.mkdtemp(prefix="app-bench-")
    try:
        start = time.perf_counter()
        if not os.path.isdir(os.path.join(root, "videos")):
            write_synthetic_output(root, videos=args.videos, frames_per_video=args.frames)
        generate_s = time.perf_counter() - start
        result = measure(root, args.repeats)
        size_mb = sum(f.stat().st_size for f in Path(root).rglob("*.parquet")) / 1e6
    finally:
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)
    ceiling = result["ceiling_full_scan_s"]
    print_table(f"videolabel app queries on {result['videos']:,} videos ({args.frames} frames and 2 segments "
                f"each, "
                f"{size_mb:,.0f} MB of Parquet; generated in {generate_s:.1f} s)",
                ["query", "ms", "share of the full scan"],
                [[name, 1000 * s, f"{s / ceiling:.1%}"] for name, s in result["queries_s"].items()]
                + [["ceiling: full read of videos+frames+segments", 1000 * ceiling, "100%"]])
    payload = {"command": "python -m benchmarks.app_queries", "videos": result["videos"],
               "frames_per_video": args.frames, "parquet_mb": round(size_mb, 1),
               "generate_s": round(generate_s, 2), "repeats": args.repeats,
               "queries_ms": {k: round(1000 * v, 2) for k, v in result["queries_s"].items()},
               "ceiling_full_scan_ms": round(1000 * ceiling, 1), "ceiling_rows": result["ceiling_rows"],
               "share_of_ceiling": {k: round(v / ceiling, 4) for k, v in result["queries_s"].items()}}
    if args.videos == 100_000:
        write_json(RESULTS, payload)
    return payload


if __name__ == "__main__":
    main()
