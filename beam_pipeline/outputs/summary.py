"""Human-readable end-of-run summary from a run's ``RunRecord``, and what its tables found."""

from __future__ import annotations

import logging
import os

import pyarrow.compute as pc

from beam_pipeline.outputs.run_output import TABLES, RunOutput
from beam_pipeline.outputs.run_record import RUN_FILE, RunRecord
from models.weights_note import random_weights_warning
from transforms import metrics

__all__ = ["found_lines", "print_summary"]

_log = logging.getLogger(__name__)

#: A run of at most this many videos lists each video's prediction; a larger one, labels and counts.
SMALL_RUN = 10


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def found_lines(output: str) -> list[str]:
    """What a run found, from its ``videos`` table: each video's prediction for a small run, else the
    predicted labels with their video counts (the ten most frequent, counted by Arrow over the
    ``prediction`` column alone: an archive's table is not read whole for a summary)."""
    dataset = RunOutput(output).dataset("videos")
    if dataset is None:
        return []
    videos = dataset.count_rows()
    if videos == 0:
        return ["  found: nothing (no video row)"]
    if videos <= SMALL_RUN:
        rows = sorted(dataset.to_table(columns=["uri", "status", "prediction", "score"]).to_pylist(),
                      key=lambda r: r["uri"])
        width = max(len(os.path.basename(r["uri"])) for r in rows)
        return ["  found:"] + [
            f"    {os.path.basename(r['uri']):{width}s}  " + (f"{r['prediction']} ({r['score']:.3f})"
                                                            if r["prediction"] else r["status"])
            for r in rows]
    counted = pc.value_counts(dataset.to_table(columns=["prediction"]).column("prediction").drop_null())
    counts = sorted(((v["values"], v["counts"]) for v in counted.to_pylist()), key=lambda kv: (-kv[1], kv[0]))
    more = f", and {len(counts) - 10} more labels" if len(counts) > 10 else ""
    return ["  found (videos per predicted label): " + ", ".join(f"{k} {v}" for k, v in counts[:10]) + more]


def print_summary(run: RunRecord, output: str) -> None:
    """Prints counts, throughput, where the output is, and what it found."""
    c = run.counts
    print(f"videolabel run {run.run_id}: {_plural(c['videos'], 'video')} in {run.wall_s:.1f}s "
          f"({run.throughput.videos_per_s or 0:.2f} videos/s)")
    print(f"  ok {c.get('videos_ok', 0)}, partial {c.get('videos_partial', 0)}, "
          f"failed {c.get('videos_failed', 0)}; frames decoded {c.get('frames_decoded', 0)}, "
          f"sampled {c.get('frames_sampled', 0)}")
    errors = {k[len(metrics.ERROR_PREFIX):]: v for k, v in c.items() if k.startswith(metrics.ERROR_PREFIX)}
    if errors:
        print("  errors by type: " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())))
    if run.resume is not None:
        print(f"  kept from earlier runs: {run.resume.kept_videos} videos")
    if run.skipped is not None:
        endings = ", ".join(f"{ending} {count}" for ending, count in run.skipped.extensions.items())
        print(f"  left out by their ending: {run.skipped.count} files ({endings}), e.g. "
              f"{', '.join(run.skipped.examples[:3])}; add the ending to input.extensions, or name a "
              "file itself to label it whatever its ending")
    print(f"  model {run.model.handle} ({run.model.num_labels} labels)")
    if run.model.random_weights:
        print(f"  warning: {random_weights_warning(run.model.handle)}")
    written = {"videos": True, "frames": run.config["output"].get("write_frames", True),
               "segments": run.config["output"].get("write_segments", True),
               "embeddings": run.config["output"].get("write_embeddings", False)}
    tables = ", ".join(f"{output}/{table}" for table in TABLES if written[table])
    segments = f" ({_plural(c.get(metrics.SEGMENTS, 0), 'segment')})" if written["segments"] else ""
    print(f"  output {tables}, {output}/{RUN_FILE}{segments}")
    try:
        for line in found_lines(output):
            print(line)
    except Exception as exc:  # noqa: BLE001 - a summary that cannot read its tables still says the rest
        _log.warning("cannot read %s/videos for the summary: %s", output, exc)
