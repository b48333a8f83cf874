"""What a run's ``videos`` table says, as rows of figures: accuracy per split, per-class precision and
recall, failures by error type. Pure pandas; the report (``outputs.report``) and the app's reader
(``outputs.run_output``) show them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["class_metrics", "failure_table", "judged_videos", "split_accuracy"]


def judged_videos(videos: pd.DataFrame) -> pd.DataFrame:
    """Labelled videos that got a prediction."""
    return videos[videos.label.notna() & videos.prediction.notna()]


def split_accuracy(videos: pd.DataFrame) -> list[dict[str, Any]]:
    """Per split: labelled, classified videos, how many are right, and the accuracy."""
    rows = []
    for split, group in judged_videos(videos).groupby("split", observed=True):
        right = int((group.prediction == group.label).sum())
        rows.append({"split": str(split), "videos": len(group), "right": right,
                     "accuracy": right / len(group)})
    return rows


def class_metrics(videos: pd.DataFrame) -> list[dict[str, Any]]:
    """Per class (labels and predictions seen): support, predicted count, precision, recall."""
    judged = judged_videos(videos)
    rows = []
    for name in sorted(set(judged.label) | set(judged.prediction)):
        true_positive = int(((judged.label == name) & (judged.prediction == name)).sum())
        support, predicted = int((judged.label == name).sum()), int((judged.prediction == name).sum())
        rows.append({"label": name, "support": support, "predicted": predicted,
                     "precision": true_positive / predicted if predicted else None,
                     "recall": true_positive / support if support else None})
    return rows


def failure_table(videos: pd.DataFrame) -> list[dict[str, Any]]:
    """Per error type of failed or partial videos: count, stages, and one example."""
    broken = videos[videos.error_type.notna()]
    rows = []
    for error_type, group in broken.groupby("error_type"):
        first = group.sort_values("uri").iloc[0]
        rows.append({"error_type": str(error_type), "videos": len(group),
                     "stages": sorted(set(group.error_stage.dropna())),
                     "statuses": sorted(set(group.status)), "example_uri": first.uri,
                     "example_message": first.error_message})
    return sorted(rows, key=lambda r: (-r["videos"], r["error_type"]))
