"""Scores from model outputs: softmax over logits, and the k best classes of a probability vector."""

from __future__ import annotations

import numpy as np

__all__ = ["softmax", "top_k_arrays"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float logits [..., num_classes], as float32."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def top_k_arrays(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 [..., num_classes] -> (int32 [..., k] class indices best first, float32 [..., k] scores).

    Ties keep the lower class index first.
    """
    order = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    return order.astype(np.int32), np.take_along_axis(probs, order, axis=-1).astype(np.float32)
