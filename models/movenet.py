"""MoveNet single-pose keypoints: 17 COCO joints as (y, x, score) per frame.

Loads a TFLite model (``.tflite``: uint8 or float input [1, size, size, 3]) or a
SavedModel / TF Hub handle (``serving_default``, int32 input). Coordinates are
fractions of the (letterboxed, square) frame the model saw, y down from the
top, x from the left. A joint whose score is under the threshold becomes zeros.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COCO_JOINTS", "MoveNet", "load_movenet"]

COCO_JOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)


class MoveNet:
    """A loaded MoveNet; ``keypoints`` runs it frame by frame.

    Args:
        run: one call of the model: int32 or uint8 [1, size, size, 3] -> float32 [1, 1, 17, 3].
        size: the model's square input side.
        dtype: the input dtype it takes.
    """

    def __init__(self, run, size: int, dtype):
        self._run = run
        self.size = size
        self._dtype = dtype

    def keypoints(self, frames: np.ndarray, threshold: float) -> np.ndarray:
        """uint8 RGB [n, h, w, 3] -> float32 [n, 17, 3] (y, x, score), weak joints zeroed."""
        frames = _resize(frames, self.size)
        out = np.stack([self._run(f[np.newaxis].astype(self._dtype))[0, 0] for f in frames])
        out = out.astype(np.float32)
        out[out[..., 2] < threshold] = 0.0
        return out


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[1:3] == (size, size):
        return frames
    import tensorflow as tf

    return tf.cast(tf.image.resize(frames, (size, size)), tf.uint8).numpy()


def load_movenet(handle: str, threads: int | None = None) -> MoveNet:
    """A MoveNet from a .tflite file or a SavedModel / TF Hub handle (local or gs://)."""
    from models.storage import local_copy

    path = local_copy(handle)  # a gs:// model is copied once per machine, through Beam's FileSystems
    if handle.endswith(".tflite"):
        from models.movinet_tflite import interpreter

        with open(path, "rb") as f:
            tflite = interpreter(f.read(), threads)
        runner = tflite.get_signature_runner()
        (name, detail), = runner.get_input_details().items()
        (output,) = runner.get_output_details()

        def run(image):
            return runner(**{name: image})[output]

        return MoveNet(run, int(detail["shape"][1]), detail["dtype"])
    import tensorflow as tf
    import tensorflow_hub as hub

    serve = hub.load(path).signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()

    def run(image):
        return next(iter(serve(tf.constant(image)).values())).numpy()

    return MoveNet(run, int(spec.shape[1] or 192), spec.dtype.as_numpy_dtype)
