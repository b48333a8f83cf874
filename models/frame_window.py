"""Frame labels that say what happens now: means of frame features over a window of recent frames.

A MoViNet stream head pools the backbone's features over every frame so far, so
a frame's cumulative output is the label of the video from its start to that
frame. ``FrameWindow`` keeps the features of the last ``seconds`` of sampled
frames across chunks and gives, for each frame at time t, the mean of the
features of the frames whose timestamps fall in (t - seconds, t]; the model's
classifier head (``MovinetStream.head``) then labels that stretch alone. The
window is in seconds of the frames' own timestamps, so it holds the same span
whatever the sampling (``fps``, ``uniform``, ``all``).

The running sum is taken in float64 over the carried frames and the chunk only,
so a frame's mean is exact to float32 however long the video.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FrameWindow"]

#: Timestamps closer than this count as equal (pts-derived times carry rounding).
_TOLERANCE_S = 1e-6


class FrameWindow:
    """One video's window of recent frame features, fed chunk after chunk in time order.

    Args:
        seconds: the window's span; a frame's mean covers the frames in (t - seconds, t],
            always at least the frame itself.
    """

    def __init__(self, seconds: float):
        if seconds <= 0:
            raise ValueError(f"a frame window spans a positive number of seconds, not {seconds}")
        self.seconds = float(seconds)
        self._features: np.ndarray | None = None  # float32 [m, F]: the frames still in the window
        self._times = np.zeros(0, np.float64)

    def means(self, features: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Each new frame's window mean.

        Args:
            features: float32 [t, F], the chunk's frames' own features, in time order.
            times: float64 [t], their timestamps in seconds.

        Returns:
            float32 [t, F]: row i the mean of the features of the frames within ``seconds``
            up to and including frame i of the chunk, earlier chunks included.
        """
        if len(features) == 0:
            return np.zeros((0, *features.shape[1:]), np.float32)
        held = 0 if self._features is None else len(self._features)
        every = features if self._features is None else np.concatenate([self._features, features])
        clock = np.maximum.accumulate(np.concatenate([self._times, np.asarray(times, np.float64)]))
        sums = np.zeros((len(every) + 1, every.shape[1]), np.float64)
        np.cumsum(every, axis=0, dtype=np.float64, out=sums[1:])
        ends = np.arange(held + 1, len(every) + 1)
        starts = np.searchsorted(clock, clock[ends - 1] - self.seconds + _TOLERANCE_S, side="left")
        starts = np.minimum(starts, ends - 1)
        means = (sums[ends] - sums[starts]) / (ends - starts)[:, np.newaxis]
        keep = np.searchsorted(clock, clock[-1] - self.seconds + _TOLERANCE_S, side="left")
        keep = min(keep, len(every) - 1)
        self._features, self._times = every[keep:], clock[keep:]
        return means.astype(np.float32)
