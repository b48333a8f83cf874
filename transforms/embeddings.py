"""Embeddings, without Beam: L2-normalised means of frame features, for a video and for its segments.

A frame's features (``ClipPrediction.features``, float32 [F]) are what the model pools before its
classifier: a stream MoViNet's head projection of that frame averaged over the picture (F = 480 for
A0, ``models.movinet_variants.feature_width``); a base MoViNet's pooled projection of the clip that
writes the frame; the pose LSTM's last layer (``models.lstm.EMBEDDING_LAYER``) on the frame's clip
(128). A video's embedding is the mean over its sampled frames (for a stream MoViNet, exactly what
its head pools over the whole video), a segment's the mean over the frames in its span, each scaled
to unit length so that a dot product is a cosine similarity.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["embedding_column", "l2_normalised", "span_embeddings"]


def l2_normalised(vectors: np.ndarray) -> np.ndarray:
    """float [n, F] -> float32 [n, F], each row divided by its L2 norm (an all-zero row stays zero)."""
    vectors = np.asarray(vectors, np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def span_embeddings(features: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The embeddings of frame spans: row i the normalised mean of ``features[starts[i]:stops[i]]``.

    Args:
        features: float32 [n, F], one video's frames' features in time order.
        starts, stops: int [s], each span's first frame and one past its last (non-empty spans).

    Returns:
        float32 [s, F]; the mean is taken in float64, so it is exact to float32 however long the span.
    """
    sums = np.zeros((len(features) + 1, features.shape[1]), np.float64)
    np.cumsum(features, axis=0, dtype=np.float64, out=sums[1:])
    starts, stops = np.asarray(starts, np.int64), np.asarray(stops, np.int64)
    return l2_normalised((sums[stops] - sums[starts]) / (stops - starts)[:, np.newaxis])


def embedding_column(vectors: np.ndarray | None, rows: int, width: int) -> pa.FixedSizeListArray:
    """An ``embedding`` column: ``vectors`` float32 [rows, width] as fixed-size lists, or ``rows`` nulls.

    Raises:
        ValueError: vectors of another width than the run declared (the model gave another F).
    """
    if vectors is None:
        return pa.nulls(rows, pa.list_(pa.float32(), width))
    if vectors.shape != (rows, width):
        raise ValueError(f"embeddings of shape {list(vectors.shape)}, but the run writes {rows} of {width} "
                         "floats (output.write_embeddings): the model's features are not the width its "
                         "model_id gives")
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1)),
                                             width)
