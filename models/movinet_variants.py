"""MoViNet variants: ids, modes, native input sizes and TF Hub handles.

Pure data and string helpers; importing this module does not import TensorFlow.
"""

from __future__ import annotations

__all__ = ["MODEL_IDS", "MODEL_MODES", "feature_width", "hub_handle", "is_hub_url", "native_imgz"]

# Input side each variant was trained at (MoViNet paper, Table 1).
_NATIVE_IMGZ = {"a0": 172, "a1": 172, "a2": 224, "a3": 256, "a4": 290, "a5": 320}

# Channels of each variant's head projection (tf-models-official's ``HeadSpec.project_filters``): the
# features the classifier head pools, and the width of videolabel's embeddings of that variant.
_FEATURE_WIDTH = {"a0": 480, "a1": 600, "a2": 640, "a3": 744, "a4": 856, "a5": 992}

MODEL_IDS = tuple(_NATIVE_IMGZ)
MODEL_MODES = ("base", "stream")


def native_imgz(model_id: str) -> int:
    """Square input side, in pixels, that ``model_id`` was trained at."""
    return _NATIVE_IMGZ[model_id]


def feature_width(model_id: str) -> int:
    """F: the width of ``model_id``'s frame and clip features (its head projection's channels).

    >>> feature_width("a0")
    480
    """
    return _FEATURE_WIDTH[model_id]


def hub_handle(model_id: str, model_mode: str, hub_version: int) -> str:
    """The TF Hub Kinetics-600 classifier URL for a variant.

    >>> hub_handle("a0", "stream", 3)
    'https://tfhub.dev/tensorflow/movinet/a0/stream/kinetics-600/classification/3'
    """
    return (f"https://tfhub.dev/tensorflow/movinet/{model_id}/{model_mode}"
            f"/kinetics-600/classification/{hub_version}")


def is_hub_url(handle: str) -> bool:
    """Whether a model handle is a TF Hub (or other http/https) URL rather than a file or folder."""
    return handle.startswith(("http://", "https://"))
