"""Training and evaluation plots as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["confusion_matrix", "plot_confusion", "plot_counts", "plot_loss_curve", "plot_timeline"]


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int], num_classes: int) -> np.ndarray:
    """int64 [num_classes, num_classes]: rows are true classes, columns predictions."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth, int), np.asarray(predicted, int)), 1)
    return matrix


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curve(history: Mapping[str, Sequence[float]], path: str, best_epoch: int | None = None) -> None:
    """Train and validation loss (and accuracy, if present) per epoch."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if "accuracy" in history else 1, figsize=(10, 4), squeeze=False)
    for ax, metric in zip(axes[0], ("loss", "accuracy")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], style, label=key)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linewidth=0.8, label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: str, title: str) -> None:
    """A confusion matrix with counts in the cells."""
    plt = _pyplot()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * n + 2), max(3.5, 0.6 * n + 1.5)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = matrix.max() or 1
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_timeline(times: Sequence[float], predictions: Sequence[str], scores: Sequence[float],
                  labels: Sequence[str | None], path: str, title: str,
                  segments: Sequence[tuple[float, float, str]] = ()) -> None:
    """One video's frame predictions over time: the predicted class (dots, the true label as a line
    where known) above, the top-1 score below, and under that curve the video's ``segments``
    (``(start_s, end_s, label)``, the ``segments`` table) as spans coloured by class, each labelled."""
    plt = _pyplot()
    classes = sorted({*predictions, *(label for label in labels if label is not None),
                      *(label for _, _, label in segments)})
    row = {name: i for i, name in enumerate(classes)}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 2.2 + 0.3 * len(classes)), sharex=True,
                                      gridspec_kw={"height_ratios": [max(2, len(classes)), 2]})
    known = [(t, row[label]) for t, label in zip(times, labels) if label is not None]
    if known:
        top.step(*zip(*known), where="post", color="green", linewidth=3, alpha=0.4, label="label")
    top.scatter(times, [row[p] for p in predictions], s=12, color="C0", label="prediction", zorder=3)
    top.set_yticks(range(len(classes)), classes)
    top.set_title(title)
    top.legend(loc="upper right", fontsize=8)
    for start, end, label in segments:
        colour = f"C{(row[label] + 2) % 10}"  # C0 and C1 draw the dots and the score
        bottom.axvspan(start, end, ymin=0, ymax=0.35, color=colour, alpha=0.35, linewidth=0)
        bottom.text((start + end) / 2, 0.17, label, ha="center", va="center", fontsize=7, clip_on=True)
    bottom.plot(times, scores, color="C1", zorder=3)
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("score" + (" / segments" if segments else ""))
    bottom.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_counts(counts: Mapping[str, int], path: str, title: str) -> None:
    """A horizontal bar chart of counts per name, largest first."""
    plt = _pyplot()
    names = sorted(counts, key=lambda n: (-counts[n], n))
    fig, ax = plt.subplots(figsize=(7, 1 + 0.3 * len(names)))
    ax.barh(range(len(names)), [counts[n] for n in names], color="C0")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("videos")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
