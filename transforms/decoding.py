"""Decoding and frame sampling with PyAV: pure functions, no Beam.

Frames are decoded in order and the unwanted ones dropped; only sampled frames
are converted to RGB and resized (conversion costs more than decoding at small
sizes). Timestamps come from each frame's pts and the stream time base, relative
to the stream's first timestamp, never from index / fps.

Resizing keeps the aspect ratio and pads (letterbox, black bars) to an
``imgz x imgz`` square, so nothing at the edges of the picture is cut off.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import av
import numpy as np

from transforms.opening import container_options, unopenable_message, without_errno
from transforms.records import (
    ErrorStage,
    SamplingSpec,
    VideoError,
    VideoInfo,
    VideoMeta,
    VideoRef,
)

__all__ = [
    "DecodeReport",
    "clockwise_rotation",
    "SampledFrame",
    "frame_targets",
    "letterbox_size",
    "open_container",
    "probe",
    "probe_video",
    "sample_frames",
    "PacketScan",
    "scan_packets",
    "seeks_exactly",
    "should_seek",
    "select_nearest",
    "to_square",
    "video_stream",
]


class SampledFrame(NamedTuple):
    """One frame kept by sampling.

    Attributes:
        index: position of the frame in the decoded stream (0-based).
        time_s: presentation time in seconds from the stream start.
        image: uint8 RGB [imgz, imgz, 3], values 0-255.
    """

    index: int
    time_s: float
    image: np.ndarray


class DecodeReport:
    """Filled in while ``sample_frames`` runs: metadata, counts and the first error."""

    def __init__(self) -> None:
        self.meta: VideoMeta | None = None
        self.frames_decoded = 0
        self.frames_sampled = 0
        self.error: VideoError | None = None
        self.decode_s = 0.0
        self.transfer_s = 0.0

    def fail(self, stage: ErrorStage, exc_type: str, message: str) -> None:
        """Keeps the video's first error (FFmpeg's errno number left out of its message)."""
        if self.error is None:
            self.error = VideoError(stage, exc_type, without_errno(message))

    def info(self, ref: VideoRef) -> VideoInfo:
        """What this report knows of ``ref``'s video, as the record the output is made from."""
        return VideoInfo(ref, self.meta, self.frames_decoded, self.frames_sampled, self.error, self.decode_s,
                         self.transfer_s)


class VideoRejected(Exception):
    """A video a guard refuses (too big, too long, no video stream)."""


class TooLong(Exception):
    """Decoded frames ran past ``max_duration_s`` in a container that did not say how long it is."""


def open_container(uri: str, opener: Callable[[str], Any] | None = None):
    """Opens ``uri`` with PyAV, reading that file and nothing it names (``transforms.opening``).

    Local paths go to FFmpeg directly; other schemes (gs://) are read through
    ``opener`` (default: Beam's ``FileSystems.open``).
    """
    if "://" not in uri:
        return av.open(uri, mode="r", container_options=container_options())
    return av.open(_opener(opener)(uri), mode="r", container_options=container_options())


def _opener(opener: Callable[[str], Any] | None) -> Callable[[str], Any]:
    if opener is None:
        from apache_beam.io.filesystems import FileSystems
        opener = FileSystems.open
    return opener


def _head(uri: str, opener) -> tuple[bytes | None, int | None]:
    """The first 4 KiB of ``uri`` and its size (None if unknown); (None, None) if it cannot be read."""
    try:
        if "://" not in uri:
            with open(uri, "rb") as handle:
                return handle.read(4096), os.path.getsize(uri)
        with _opener(opener)(uri) as handle:
            return handle.read(4096), None
    except Exception:  # noqa: BLE001 - only to say more of an input that did not open
        return None, None


def video_stream(container):
    """The first video stream that is real video, not an attached picture (cover art).

    Raises:
        VideoRejected: there is none.
    """
    streams = list(container.streams.video)
    for stream in streams:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    if streams:
        raise VideoRejected("the only video stream is an attached picture (cover art), not video")
    raise VideoRejected("no video stream in the container")


def probe(container, *, max_pixels: int, max_duration_s: float) -> VideoMeta:
    """Reads the video stream's metadata and applies the size and length guards.

    Width and height are the coded size; ``sample_frames`` swaps them once it
    sees a 90 or 270 degree rotation. Duration is None when the container does
    not say.

    Raises:
        VideoRejected: no usable video stream, or a guard is exceeded.
    """
    stream = video_stream(container)
    if stream.codec_context is None:
        raise VideoRejected("video stream has no decoder context (unknown or damaged codec parameters)")
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise VideoRejected(f"video stream has no picture size ({width}x{height})")
    if width * height > max_pixels:
        raise VideoRejected(f"{width}x{height} is over max_pixels={max_pixels}")
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    if duration is not None and duration > max_duration_s:
        raise VideoRejected(f"duration {duration:.1f}s is over max_duration_s={max_duration_s:g}")
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else None
    return VideoMeta(duration_s=duration, fps=fps, width=width, height=height,
                     codec=stream.codec_context.name)


class PacketScan(NamedTuple):
    """What a demux-only pass over a video stream's packets tells.

    Attributes:
        duration_s: from the packets' timestamps, else the packet count at the
            declared rate; None if neither is known.
        pts: int64 [frames], every frame's presentation timestamp in increasing
            order (stream time base); None when packets carry no timestamps.
        keyframes: number of keyframe packets.
        packets: number of packets with data (about one per frame).
    """

    duration_s: float | None
    pts: np.ndarray | None
    keyframes: int
    packets: int


def scan_packets(container, stream) -> PacketScan:
    """Reads every packet of ``stream`` without decoding (a few percent of decode time)."""
    stamps: list[int] = []
    ends: list[int] = []
    keyframes = packets = 0
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        packets += 1
        keyframes += bool(packet.is_keyframe)
        if packet.pts is not None:
            stamps.append(packet.pts)
            ends.append(packet.pts + (packet.duration or 0))
    rate = stream.average_rate or stream.guessed_rate
    if len(stamps) == packets and stamps and max(ends) > min(stamps):
        pts = np.sort(np.array(stamps, dtype=np.int64))
        return PacketScan(float((max(ends) - pts[0]) * stream.time_base), pts, keyframes, packets)
    duration = packets / float(rate) if packets and rate else None
    return PacketScan(duration, None, keyframes, packets)


# Seeking to each sampled frame decodes from the keyframe before it; it beats one
# in-order pass only for a few frames in a stream with short GOPs
# (benchmarks/decode_speed.py measures the crossover; docs/DECODING.md has the figures).
SEEK_MAX_FRAMES = 16
SEEK_MAX_SHARE = 0.8


# FFmpeg format flags of containers without an index to seek by: AVFMT_TS_DISCONT (MPEG-TS,
# MPEG-PS, Ogg: seeking goes by byte position and lands near, not on, the frame asked for) and
# AVFMT_NOTIMESTAMPS (raw streams). Sampling decodes those in order.
_NO_EXACT_SEEK = 0x0200 | 0x0080


def seeks_exactly(container) -> bool:
    """Whether seeking in ``container`` lands on the keyframe before a timestamp (an indexed
    format: MP4/MOV, Matroska/WebM, AVI, FLV), so that seeking picks the frames an in-order pass would."""
    return not container.format.flags & _NO_EXACT_SEEK


def should_seek(n_frames: int, scan: PacketScan) -> bool:
    """Seek per sampled frame for at most 16 frames, when ``n_frames`` * GOP <= 0.8 x the frames."""
    if scan.pts is None or not scan.keyframes or n_frames > SEEK_MAX_FRAMES:
        return False
    gop = scan.packets / scan.keyframes
    return n_frames * gop <= SEEK_MAX_SHARE * scan.packets


def letterbox_size(width: int, height: int, imgz: int) -> tuple[int, int]:
    """Size (w, h) that fits ``width x height`` into an ``imgz`` square, aspect kept."""
    scale = imgz / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def clockwise_rotation(frame) -> int:
    """Degrees (0, 90, 180, 270) to turn a frame clockwise to show it upright (display matrix)."""
    return int(-round((frame.rotation or 0) / 90.0) * 90) % 360


def to_square(frame, imgz: int) -> np.ndarray:
    """A decoded frame as upright uint8 RGB [imgz, imgz, 3]: rotated, aspect kept, padded black.

    Alpha, if any, is dropped. Only this function converts pixels, so only
    sampled frames pay for conversion and resizing.
    """
    turn = clockwise_rotation(frame)
    sideways = turn in (90, 270)
    upright_w, upright_h = (frame.height, frame.width) if sideways else (frame.width, frame.height)
    w, h = letterbox_size(upright_w, upright_h, imgz)
    rgb = frame.to_ndarray(width=h if sideways else w, height=w if sideways else h, format="rgb24")
    if turn:
        rgb = np.rot90(rgb, k=-turn // 90)
    if w == imgz and h == imgz:
        return np.ascontiguousarray(rgb)
    out = np.zeros((imgz, imgz, 3), dtype=np.uint8)
    top, left = (imgz - h) // 2, (imgz - w) // 2
    out[top:top + h, left:left + w] = rgb
    return out


def frame_targets(strategy: str, *, fps: float, n_frames: int,
                  duration_s: float | None, video_fps: float | None) -> Iterator[float] | None:
    """Target times in seconds, increasing, for a strategy; None means every frame.

    ``fps``: 0, 1/fps, 2/fps, ... (unbounded; decoding ends the list).
    ``uniform``: ``n_frames`` times evenly spaced from the first to the last frame
    (the duration comes from a demux-only scan of the packet timestamps).
    """
    if strategy == "all":
        return None
    if strategy == "fps":
        return (k / fps for k in itertools.count())
    if duration_s is None:
        raise VideoRejected("uniform sampling needs the video duration, which no timestamp gives")
    last = max(0.0, duration_s - (1.0 / video_fps if video_fps else 0.0))
    return iter(np.linspace(0.0, last, n_frames).tolist())


def select_nearest(items: Iterable[tuple[float, Any]],
                   targets: Iterator[float] | None) -> Iterator[tuple[float, Any]]:
    """Yields the item nearest to each target time, each item at most once.

    Args:
        items: ``(time_s, payload)`` in increasing time order (decode order).
        targets: increasing target times; None selects every item.

    Ties go to the earlier item. Targets after the last item are dropped.
    """
    if targets is None:
        yield from items
        return
    target = next(targets, None)
    prev: tuple[float, Any] | None = None
    last_yielded: tuple[float, Any] | None = None
    for item in items:
        while target is not None and target <= item[0]:
            pick = item
            if prev is not None and target - prev[0] <= item[0] - target:
                pick = prev
            if pick is not last_yielded:
                last_yielded = pick
                yield pick
            target = next(targets, None)
        if target is None:
            return
        prev = item


class _Clock:
    """Frame times from pts and the stream time base, relative to the stream start.

    A frame without pts (raw elementary streams) gets the previous time plus one
    frame interval of the declared rate.
    """

    def __init__(self, stream, fps: float | None):
        self._start = stream.start_time
        self._base = stream.time_base
        self._step = 1.0 / fps if fps else 0.04
        self.last = -math.inf

    def time_of(self, frame) -> float:
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None or self._base is None:
            t = 0.0 if self.last == -math.inf else self.last + self._step
        else:
            if self._start is None:
                self._start = pts
            t = float((pts - self._start) * self._base)
        self.last = t
        return t


def _decoded_frames(container, stream, report: DecodeReport, clock: _Clock, max_duration_s: float):
    """Yields ``(time_s, (index, frame))`` in order; skips packets FFmpeg cannot decode."""
    index = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            report.fail(ErrorStage.DECODE, type(exc).__name__,
                        f"data FFmpeg cannot decode after frame {index} (damaged, or cut short): {exc}")
            continue
        for frame in frames:
            t = clock.time_of(frame)
            if t > max_duration_s:
                raise TooLong(f"frames run past max_duration_s={max_duration_s:g}")
            report.frames_decoded += 1
            yield t, (index, frame)
            index += 1


def _seek_frames(container, stream, targets: Iterator[float], scan: PacketScan, report: DecodeReport):
    """Yields ``(time_s, (index, frame))`` nearest each target by seeking to the keyframe before it.

    Indices come from the scanned timestamps, so they match the in-order path's.
    """
    start = int(scan.pts[0])
    base = stream.time_base
    last_index = -1
    for target in targets:
        container.seek(start + int(target / base), stream=stream, backward=True, any_frame=False)
        prev = pick = None
        for frame in container.decode(stream):
            report.frames_decoded += 1
            if frame.pts is None:
                continue
            item = (float((frame.pts - start) * base), frame)
            if item[0] >= target:  # nearest as select_nearest decides it: ties go to the earlier
                pick = prev if prev is not None and target - prev[0] <= item[0] - target else item
                break
            prev = item
        pick = pick or prev
        if pick is None:
            continue
        index = int(np.searchsorted(scan.pts, pick[1].pts))
        if index > last_index:
            last_index = index
            yield pick[0], (index, pick[1])


def _check_complete(report: DecodeReport, clock: _Clock, declared_s: float | None,
                    declared_frames: int) -> None:
    """Marks a stream whose decoded frames end well short of the length its container declares:
    its duration, or its frame count at the stream's rate (an AVI cut short keeps its header's
    count, while FFmpeg shortens its duration to what is left).

    Only where the stream ends counts, not how many frames it held: a variable-rate AVI
    declares an index slot per frame period and leaves most of them empty (dropped
    frames), and is complete when its last frame reaches the end.

    Also lengthens a duration that the decoded frames outrun (no duration, or a
    bitrate estimate as in MPEG-PS), so timestamps always lie within it.
    """
    meta = report.meta
    if clock.last == -math.inf:
        return
    decoded_end = clock.last + (1.0 / meta.fps if meta.fps else 0.0)
    if meta.duration_s is None or decoded_end > meta.duration_s:
        report.meta = meta._replace(duration_s=round(decoded_end, 6))
    counted_s = declared_frames / meta.fps if declared_frames and meta.fps else None
    declared = [(declared_s, f"the {declared_s or 0:.2f}s its container declares"),
                (counted_s, f"the {declared_frames} frames ({counted_s or 0:.2f}s at {meta.fps:g} fps) its "
                            "container declares")]
    for length, what in declared:
        if length and decoded_end < 0.9 * length and length - decoded_end > 0.5:
            report.fail(ErrorStage.DECODE, "Truncated", f"stream ends at {decoded_end:.2f}s "
                                                        f"({report.frames_decoded} frames decoded) of {what}")
            return


def _rewound(container, uri: str, opener):
    """``container`` back at its start to decode; one that cannot seek (raw elementary streams
    such as .h264) is closed and opened again."""
    try:
        container.seek(0)
        return container
    except (av.error.FFmpegError, OSError):
        container.close()
        return open_container(uri, opener)


def _open_and_probe(uri: str, spec: SamplingSpec, report: DecodeReport, opener):
    """The open container with ``report.meta`` set, or None with ``report.error`` set.

    A ``report.meta`` already set is the video's probe from an earlier step (the guards passed
    there): it is kept, and the container is only opened.
    """
    try:
        container = open_container(uri, opener)
    except av.error.FFmpegError as exc:  # what it is, when its first bytes tell
        report.fail(ErrorStage.OPEN, type(exc).__name__, unopenable_message(exc, *_head(uri, opener)))
        return None
    except Exception as exc:  # FFmpeg, OS and storage errors (a gs:// object missing: NotFound) alike
        report.fail(ErrorStage.OPEN, type(exc).__name__, unopenable_message(exc))
        return None
    if report.meta is not None:
        return container
    try:
        report.meta = probe(container, max_pixels=spec.max_pixels, max_duration_s=spec.max_duration_s)
    except (VideoRejected, av.error.FFmpegError, OSError) as exc:
        container.close()
        report.fail(ErrorStage.PROBE, type(exc).__name__, str(exc))
        return None
    return container


def probe_video(uri: str, spec: SamplingSpec, report: DecodeReport, opener=None) -> None:
    """Opens and probes ``uri`` (guards included) without decoding; fills ``report``."""
    container = _open_and_probe(uri, spec, report, opener)
    if container is not None:
        container.close()


def sample_frames(uri: str, spec: SamplingSpec, report: DecodeReport, opener=None,
                  seek: bool | None = None) -> Iterator[SampledFrame]:
    """Decodes ``uri`` and yields the sampled frames, upright, resized to ``spec.imgz``.

    Frames are decoded in order and the unwanted ones dropped, except that
    ``uniform`` sampling seeks to each frame where ``should_seek`` says it pays and
    the container seeks exactly (``seeks_exactly``; ``seek`` True or False forces the
    choice for ``uniform``; benchmarks use it).
    Bad input that FFmpeg reports lands in ``report.error`` (with the stage it
    happened at) and the frames decoded before or around it are kept; anything
    else raised, a crash or a hang are caught around it by ``transforms.decoder_process``,
    which runs this in a child process. ``spec.decode_timeout_s`` is enforced there too.
    With ``report.meta`` already set (the probe of an earlier step), the video is
    opened once and not probed again; ``uniform`` sampling scans the packets of the
    same container before decoding it (``_rewound``). Memory holds one decoded
    frame and one pending candidate at a time. The time spent here, not counting
    the consumer's time between frames, adds to ``report.decode_s``.
    """
    frames = _sample_frames(uri, spec, report, opener, seek)
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        report.decode_s += time.perf_counter() - start
        if frame is None:
            return
        yield frame


def _sample_frames(uri: str, spec: SamplingSpec, report: DecodeReport, opener,
                   seek: bool | None) -> Iterator[SampledFrame]:
    container = _open_and_probe(uri, spec, report, opener)
    if container is None:
        return
    try:
        declared_s = report.meta.duration_s
        scan = None
        try:
            if spec.strategy == "uniform":
                # containers may lack a duration or only estimate it (MPEG-PS): read the packets',
                # then decode the same container from its start
                scan = scan_packets(container, video_stream(container))
                container = _rewound(container, uri, opener)
                report.meta = report.meta._replace(duration_s=scan.duration_s or report.meta.duration_s)
            stream = video_stream(container)
            stream.codec_context.thread_count = spec.decode_threads
            targets = frame_targets(spec.strategy, fps=spec.fps, n_frames=spec.n_frames,
                                    duration_s=report.meta.duration_s, video_fps=report.meta.fps)
        except (VideoRejected, av.error.FFmpegError, OSError) as exc:
            report.fail(ErrorStage.PROBE, type(exc).__name__, str(exc))
            return
        clock = _Clock(stream, report.meta.fps)
        seeking = scan is not None and scan.pts is not None and (
            should_seek(spec.n_frames, scan) and seeks_exactly(container) if seek is None else seek)
        if seeking:
            chosen = _seek_frames(container, stream, targets, scan, report)
        else:
            frames = _decoded_frames(container, stream, report, clock, spec.max_duration_s)
            chosen = select_nearest(frames, targets)
        try:
            for t, (index, frame) in chosen:
                if report.frames_sampled == 0 and clockwise_rotation(frame) in (90, 270):
                    report.meta = report.meta._replace(width=report.meta.height, height=report.meta.width)
                report.frames_sampled += 1
                yield SampledFrame(index, t, to_square(frame, spec.imgz))
        except (TooLong, av.error.FFmpegError, OSError) as exc:
            report.fail(ErrorStage.DECODE, type(exc).__name__, str(exc))
            return
        if not seeking:
            _check_complete(report, clock, declared_s, stream.frames)
    finally:
        container.close()
