"""One status line for long work: redrawn in place on a terminal, a plain log line otherwise.

``videolabel run``'s progress line (``transforms.progress.ProgressLine``) and
``videolabel train``'s epoch line (``models.training``) both write through it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import TextIO

__all__ = ["StatusLine", "duration", "native_stderr_without"]


def duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3700`` -> ``1h01m``."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class StatusLine:
    """Writes status lines to ``stream`` (default stderr): on a terminal each one replaces the last,
    and ``final`` ends the line; otherwise each is a log line of its own."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def show(self, line: str, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


@contextlib.contextmanager
def native_stderr_without(noise: re.Pattern[str]) -> Iterator[None]:
    """For the ``with`` block, file descriptor 2 (where native code writes) goes to a temporary file;
    after it, every line written there except those ``noise`` matches is copied to the real fd 2.

    For native calls known to print a note once (LiteRT's XNNPACK delegate), made before a run's
    progress line is drawn, so the note never lands in it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = "".join(line for line in text.splitlines(keepends=True) if not noise.search(line))
            if kept:
                os.write(2, kept.encode("utf-8"))
