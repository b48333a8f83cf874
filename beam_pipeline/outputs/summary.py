"""Human-readable end-of-run summary from a run's ``RunRecord``."""

from __future__ import annotations

from beam_pipeline.outputs.run_record import RUN_FILE, RunRecord
from transforms import metrics

__all__ = ["print_summary"]


def print_summary(run: RunRecord, output: str) -> None:
    """Prints counts, throughput and where the output is."""
    c = run.counts
    print(f"videolabel run {run.run_id}: {c['videos']} videos in {run.wall_s:.1f}s "
          f"({run.throughput.videos_per_s or 0:.2f} videos/s)")
    print(f"  ok {c.get('videos_ok', 0)}, partial {c.get('videos_partial', 0)}, "
          f"failed {c.get('videos_failed', 0)}; frames decoded {c.get('frames_decoded', 0)}, "
          f"sampled {c.get('frames_sampled', 0)}")
    errors = {k[len(metrics.ERROR_PREFIX):]: v for k, v in c.items() if k.startswith(metrics.ERROR_PREFIX)}
    if errors:
        print("  errors by type: " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())))
    if run.resume is not None:
        print(f"  kept from earlier runs: {run.resume.kept_videos} videos")
    print(f"  model {run.model.handle} ({run.model.num_labels} labels)")
    print(f"  output {output}/videos, {output}/frames, {output}/{RUN_FILE}")
