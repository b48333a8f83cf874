"""The pose LSTM: windows of per-frame keypoint vectors -> class probabilities.

Input float32 [batch, n_frames, 51]: for each of ``n_frames`` evenly spaced
frames, MoveNet's 17 joints as (y, x, score) flattened (a joint not found is
zeros). Output float32 [batch, num_classes], softmax (two classes make a binary
classifier).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["EMBEDDING_LAYER", "POSE_FEATURES", "build_pose_lstm"]

POSE_FEATURES = 17 * 3

#: The layer whose output is a window's embedding (``output.write_embeddings``): the last LSTM's
#: state after the window's last frame, batch-normalised, float32 [units[-1]] (128 by default).
EMBEDDING_LAYER = "embedding"


def build_pose_lstm(num_classes: int, *, n_frames: int = 9, features: int = POSE_FEATURES,
                    units: Sequence[int] = (128, 128, 128), dropout: float = 0.2,
                    head_dropout: float = 0.1, dense: int = 32, bn_momentum: float = 0.9):
    """A stacked LSTM (tf_keras), each layer followed by batch normalisation.

    Args:
        num_classes: output width (>= 2).
        n_frames, features: the input window's shape.
        units: LSTM widths, first to last; all but the last return sequences.
        dropout: dropout after each LSTM but the last.
        head_dropout: dropout before the dense head.
        dense: width of the ReLU layer before the softmax.
        bn_momentum: batch-norm moving-average momentum. Keras's 0.99 needs
            hundreds of steps before the inference statistics settle; labelled
            video sets are often small (a few steps an epoch), so 0.9.
    """
    import tf_keras as keras

    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    layers = [keras.Input((n_frames, features), name="keypoints")]
    for i, width in enumerate(units):
        last = i == len(units) - 1
        layers.append(keras.layers.LSTM(width, return_sequences=not last, name=f"lstm_{i}"))
        layers.append(keras.layers.BatchNormalization(momentum=bn_momentum,
                                                      name=EMBEDDING_LAYER if last else f"norm_{i}"))
        layers.append(keras.layers.Dropout(head_dropout if last else dropout, name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(dense, activation="relu", name="dense"))
    layers.append(keras.layers.Dense(num_classes, activation="softmax", name="probs"))
    return keras.Sequential(layers, name="pose_lstm")
