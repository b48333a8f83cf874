"""MoViNet stream models in TFLite, run through the same stream path as SavedModels.

The layout is that of MoViNet's own TFLite export: one signature whose inputs
are ``image`` [1, 1, h, w, 3] and the state tensors, and whose outputs are
``logits`` [1, classes] and the new states; one frame per call, so every frame
gets its own causal output. Float and quantised (int8/uint8) tensors both work:
quantised inputs and outputs are converted with their scale and zero point.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TFLiteMovinet", "interpreter"]


def interpreter(content: bytes, threads: int | None = None):
    """A TFLite interpreter over model bytes (LiteRT when installed)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # older TensorFlow without LiteRT
        from tensorflow.lite import Interpreter
    return Interpreter(model_content=content, num_threads=threads)


def _quantise(x: np.ndarray, detail: dict) -> np.ndarray:
    """float -> the tensor's dtype (identity for float tensors)."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantise(x: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((x.astype(np.float32) - zero) * scale).astype(np.float32)


class TFLiteMovinet:
    """A loaded TFLite MoViNet stream model with the ``init_states``/``step`` interface.

    Args:
        content: the .tflite file's bytes.
        threads: interpreter threads; None lets it decide.
    """

    per_frame = True

    def __init__(self, content: bytes, threads: int | None = None):
        self._interpreter = interpreter(content, threads)
        signatures = self._interpreter.get_signature_list()
        if len(signatures) != 1:
            raise ValueError(f"expected one signature in the TFLite model, found {sorted(signatures)}")
        self._runner = self._interpreter.get_signature_runner(next(iter(signatures)))
        inputs = self._runner.get_input_details()
        if "image" not in inputs or "logits" not in self._runner.get_output_details():
            raise ValueError("a TFLite MoViNet stream model needs an 'image' input and a 'logits' output")
        self._image = inputs["image"]
        self._logits = self._runner.get_output_details()["logits"]
        self._states = {k: v for k, v in inputs.items() if k != "image"}
        shape = self._image["shape"]
        if len(shape) != 5 or shape[0] != 1 or shape[1] != 1 or shape[2] != shape[3]:
            raise ValueError(f"TFLite 'image' input is {shape.tolist()}; expected [1, 1, size, size, 3]")

    @property
    def image_size(self) -> int:
        """The square input side the model was converted for."""
        return int(self._image["shape"][2])

    def init_states(self, imgz: int) -> dict[str, np.ndarray]:
        """Zero states; ``imgz`` must be the converted input size."""
        if imgz != self.image_size:
            raise ValueError(f"the TFLite model takes {self.image_size}x{self.image_size} frames, "
                             f"not {imgz}; set sampling.imgz={self.image_size}")
        return {k: np.zeros(v["shape"], v["dtype"]) for k, v in self._states.items()}

    def step(self, frames: np.ndarray, states: dict) -> tuple[np.ndarray, dict]:
        """frames uint8 [t, h, w, 3] -> (logits float32 [t, classes], new states), one call a frame."""
        rows = []
        for frame in frames:
            image = _quantise(frame[np.newaxis, np.newaxis].astype(np.float32) / 255.0, self._image)
            out = self._runner(image=image, **states)
            rows.append(_dequantise(out.pop("logits"), self._logits)[0])
            states = out
        return np.stack(rows), states
