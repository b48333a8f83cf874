"""MoViNet stream models on LiteRT, run through the same stream path as SavedModels.

Inputs are ``image`` [1, frames, h, w, 3] and the state tensors; outputs the new
states and ``frame_logits`` [1, frames, classes] or ``logits`` [1, classes], and
``frame_features`` [1, frames, F] where the model has them, with a ``head``
signature (features [rows, F] -> logits [rows, classes]) for means of them
(``TFLiteMovinet`` lists the layouts). Float and quantised (int8/uint8) tensors
both work: quantised inputs and outputs are converted with their scale and zero
point. Only ``ai_edge_litert`` is imported: workers that run these models never
load TensorFlow.
"""

from __future__ import annotations

import re

import numpy as np

from models.console import native_stderr_without

__all__ = ["TFLiteMovinet", "interpreter"]


#: What LiteRT prints once per interpreter when it applies its CPU delegate.
_DELEGATE_NOTE = re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$")


def interpreter(content: bytes, threads: int | None = None):
    """A LiteRT interpreter over model bytes (XNNPACK for float ops); TensorFlow is not imported."""
    from ai_edge_litert.interpreter import Interpreter

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


class _Signature:
    """One signature of the model: its runner, the frames it takes per call, and its tensors' details."""

    def __init__(self, runner):
        self.runner = runner
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        if "image" not in inputs or not ({"logits", "frame_logits"} & set(outputs)):
            raise ValueError("a TFLite MoViNet stream model needs an 'image' input and a 'logits' "
                             "or 'frame_logits' output")
        self.image = inputs["image"]
        shape = self.image["shape"]
        if len(shape) != 5 or shape[0] != 1 or shape[2] != shape[3]:
            raise ValueError(f"TFLite 'image' input is {shape.tolist()}; expected [1, frames, size, size, 3]")
        self.frames = int(shape[1])
        self.output = "frame_logits" if "frame_logits" in outputs else "logits"
        self.logits = outputs[self.output]
        self.features = outputs.get("frame_features")
        self.states = {k: v for k, v in inputs.items() if k != "image"}

    def __call__(self, frames: np.ndarray, states: dict) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """uint8 [frames, h, w, 3] -> (logits float32 [frames, C] or [1, C], features float32
        [frames, F] or None, new states)."""
        image = _quantise(frames[np.newaxis].astype(np.float32) / 255.0, self.image)
        out = self.runner(image=image, **states)
        logits = _dequantise(out[self.output], self.logits).reshape(-1, self.logits["shape"][-1])
        features = None
        if self.features is not None:
            features = _dequantise(out["frame_features"], self.features).reshape(len(frames), -1)
        return logits, features, {name: out[name] for name in self.states}


class _Head:
    """The ``head`` signature: features float32 [rows, F] -> logits float32 [rows, C], ``rows`` per call."""

    def __init__(self, runner):
        self.runner = runner
        self.input = runner.get_input_details()["features"]
        self.output = runner.get_output_details()["logits"]
        self.rows = int(self.input["shape"][0])

    def __call__(self, features: np.ndarray) -> np.ndarray:
        n = len(features)
        padded = np.zeros((-(-n // self.rows) * self.rows, features.shape[1]), np.float32)
        padded[:n] = features
        logits = [_dequantise(self.runner(features=_quantise(padded[i:i + self.rows], self.input))["logits"],
                              self.output) for i in range(0, len(padded), self.rows)]
        return np.concatenate(logits)[:n] if logits else np.zeros((0, self.output["shape"][-1]), np.float32)


class TFLiteMovinet:
    """A loaded TFLite MoViNet stream model with the ``init_states``/``step`` interface.

    Two layouts load:

    * ``models.movinet_convert``'s: a ``frames_N`` signature (N frames per call)
      and a ``frame_1`` signature, both over the same states; a step takes as
      many N-frame calls as fit, then one-frame calls, so the outputs do not
      depend on how frames are split into steps;
    * MoViNet's own export: one signature of one frame per call, ``logits`` out.

    ``per_frame``: every frame gets its own causal output (``frame_logits``, or one
    frame per call); otherwise (a TF Hub model converted) every frame of a step
    gets the output after the step's last frame, as the SavedModel gives it.
    ``features``: the model also gives each frame's features and has a ``head``
    signature (``models.movinet_convert``'s layout since frame windows).

    Args:
        content: the .tflite file's bytes.
        threads: interpreter threads (XNNPACK); None means 1.
    """

    def __init__(self, content: bytes, threads: int | None = None):
        self._interpreter = interpreter(content, threads)
        keys = self._interpreter.get_signature_list()
        found = [_Signature(self._interpreter.get_signature_runner(key)) for key in keys if key != "head"]
        self._by_frames = {s.frames: s for s in found}
        if 1 not in self._by_frames or len(self._by_frames) != len(found):
            raise ValueError("a TFLite MoViNet stream model needs one signature of 1 frame per call "
                             f"(and at most one per other length); found {sorted(s.frames for s in found)}")
        self._one = self._by_frames[1]
        self._long = max(self._by_frames.values(), key=lambda s: s.frames)
        self.per_frame = self._long.frames == 1 or self._long.output == "frame_logits"
        has_head = "head" in keys and all(sig.features is not None for sig in found)
        self._head = _Head(self._interpreter.get_signature_runner("head")) if has_head else None
        self.features = self._head is not None
        self._warm()

    def _warm(self) -> None:
        """One call of each signature on zeros, now: LiteRT applies its XNNPACK delegate on a signature's
        first call and says so on fd 2 (kept off, ``_DELEGATE_NOTE``), and the first real video does
        not pay the allocation."""
        with native_stderr_without(_DELEGATE_NOTE):
            for signature in self._by_frames.values():
                side = int(signature.image["shape"][2])
                signature(np.zeros((signature.frames, side, side, 3), np.uint8),
                          {k: np.zeros(v["shape"], v["dtype"]) for k, v in signature.states.items()})
            if self._head is not None:
                self._head(np.zeros((1, self._head.input["shape"][1]), np.float32))

    @property
    def image_size(self) -> int:
        """The square input side the model was converted for."""
        return int(self._one.image["shape"][2])

    def init_states(self, imgz: int) -> dict[str, np.ndarray]:
        """Zero states; ``imgz`` must be the converted input size."""
        if imgz != self.image_size:
            raise ValueError(f"the TFLite model takes {self.image_size}x{self.image_size} frames, "
                             f"not {imgz}; set sampling.imgz={self.image_size}")
        return {k: np.zeros(v["shape"], v["dtype"]) for k, v in self._one.states.items()}

    def step(self, frames: np.ndarray, states: dict) -> tuple[np.ndarray, dict]:
        """frames uint8 [t, h, w, 3] -> (logits float32 [t, classes], new states).

        Full ``frames_N`` calls first, then one frame per call for the rest.
        """
        logits, _, states = self.step_with_features(frames, states)
        return logits, states

    def step_with_features(self, frames: np.ndarray,
                           states: dict) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """As ``step``, plus each frame's features float32 [t, F] (None without ``features``)."""
        rows, features, start, n = [], [], 0, len(frames)
        while start < n:
            call = self._long if n - start >= self._long.frames else self._one
            logits, own, states = call(frames[start:start + call.frames], states)
            rows.append(logits)
            features.append(own)
            start += call.frames
        together = np.concatenate(features) if self.features and features else None
        if self.per_frame:
            return np.concatenate(rows), together, states
        return np.repeat(rows[-1][-1:], n, axis=0), together, states

    def head(self, features: np.ndarray) -> np.ndarray:
        """features float32 [n, F] (means of frame features) -> logits float32 [n, classes]."""
        if self._head is None:
            raise ValueError("this TFLite model has no head signature: convert it again "
                             "(videolabel export-movinet) for frame windows")
        return self._head(features)
