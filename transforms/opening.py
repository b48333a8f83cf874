"""Opening an input with FFmpeg so that it reads that file and nothing else, and saying what an input
that does not open is.

Untrusted media must not make FFmpeg read anything but itself: an HLS playlist
(``.m3u8``) whose segments are ``file:///...`` elsewhere on the machine, an
``ffconcat`` list or a DASH manifest would otherwise be decoded as the video it
names. ``CONTAINER_OPTIONS`` allow every demuxer but those that open what an input
names (``REFERRING_DEMUXERS``), and only the ``file`` protocol, whatever the name or
the content of the input. Such an input fails to open, and ``unopenable_message``
says what it is from its first bytes, as for other files that are not video (an
empty file, text, an MP4 cut before its index was written).
"""

from __future__ import annotations

import functools
import re
import struct

import av

__all__ = ["REFERRING_DEMUXERS", "container_options", "unopenable_message", "without_errno"]

#: Demuxers that read other files or URLs an input names: playlists, manifests, concat lists, filter
#: graphs, image sequences, network sessions.
REFERRING_DEMUXERS = frozenset({"concat", "dash", "hls", "imf", "lavfi", "image2", "rtp", "rtsp", "sap",
                                "sdp", "webm_dash_manifest"})

_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")
_HEAD_BYTES = 4096


@functools.cache
def container_options() -> dict[str, str]:
    """FFmpeg's options for opening an input: the file protocol only, no referring demuxer."""
    allowed = []
    for name in sorted(av.formats_available):
        if name in REFERRING_DEMUXERS:
            continue
        try:
            av.format.ContainerFormat(name, "r")
        except ValueError:  # a muxer only
            continue
        allowed.append(name)
    return {"protocol_whitelist": "file", "format_whitelist": ",".join(allowed)}


def _top_level_boxes(head: bytes) -> list[bytes]:
    """The types of the ISO-BMFF (MP4/MOV) boxes at the start of ``head``, as far as it reaches."""
    boxes, at = [], 0
    while at + 8 <= len(head):
        size, kind = struct.unpack(">I4s", head[at:at + 8])
        boxes.append(kind)
        if size == 1 and at + 16 <= len(head):
            size = struct.unpack(">Q", head[at + 8:at + 16])[0]
        if size < 8:
            break
        at += size
    return boxes


def _what_it_is(head: bytes, size: int | None) -> str | None:
    """What a file that FFmpeg could not open is, from its first bytes; None if nothing is known."""
    if size == 0 or not head:
        return "empty file (0 bytes)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"#EXTM3U") or text.startswith(b"#EXT-X-"):
        return ("an HLS playlist (m3u8): videolabel opens only the file it is given, never the media a "
                "playlist names")
    if text.startswith(b"ffconcat"):
        return "an ffconcat list: videolabel opens only the file it is given, never the files a list names"
    if text.startswith(b"<?xml") and b"<MPD" in text[:1024]:
        return ("a DASH manifest (mpd): videolabel opens only the file it is given, never the media a "
                "manifest names")
    boxes = _top_level_boxes(head)
    if boxes[:1] == [b"ftyp"] and b"moov" not in boxes:
        return "MP4 without its index (moov): cut before the end was written"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut by the end of the head
            return None
    return "a text file, not a video"


def without_errno(message: str) -> str:
    """``message`` less the errno number PyAV puts before FFmpeg's own words (``[Errno 1094995529] ``),
    wherever in it that stands."""
    return _ERRNO.sub("", message)


def unopenable_message(exc: Exception, head: bytes | None = None, size: int | None = None) -> str:
    """The error message of an input that could not be opened: what it is when its first bytes tell
    (``head``: up to its first 4 KiB, None if not read; ``size``: its length in bytes, if known),
    then the error's own message without FFmpeg's errno number."""
    said = without_errno((str(exc) or repr(exc)).splitlines()[0])[:500]
    known = None if head is None else _what_it_is(head[:_HEAD_BYTES], size)
    return f"{known} ({said})" if known else said
