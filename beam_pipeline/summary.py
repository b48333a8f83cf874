"""Human-readable end-of-run summary from the ``_run.json`` mapping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transforms.aggregate import ERROR_COUNTER_PREFIX

__all__ = ["print_summary"]


def print_summary(summary: Mapping[str, Any], output: str) -> None:
    """Prints counts, throughput and where the output is."""
    c = summary["counts"]
    print(f"videolabel run {summary['run_id']}: {c['videos']} videos in {summary['wall_s']:.1f}s "
          f"({summary['throughput']['videos_per_s'] or 0:.2f} videos/s)")
    print(f"  ok {c.get('videos_ok', 0)}, partial {c.get('videos_partial', 0)}, "
          f"failed {c.get('videos_failed', 0)}; frames decoded {c.get('frames_decoded', 0)}, "
          f"sampled {c.get('frames_sampled', 0)}")
    errors = {k[len(ERROR_COUNTER_PREFIX):]: v for k, v in c.items() if k.startswith(ERROR_COUNTER_PREFIX)}
    if errors:
        print("  errors by type: " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())))
    if "resume" in summary:
        print(f"  kept from earlier runs: {summary['resume']['kept_videos']} videos")
    print(f"  model {summary['model']['handle']} ({summary['model']['num_labels']} labels)")
    print(f"  output {output}/videos, {output}/frames, {output}/_run.json")
