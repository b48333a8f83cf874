"""One status line for long work: redrawn in place on a terminal, a plain log line otherwise.

``videolabel run``'s progress line (``transforms.progress.ProgressLine``) and
``videolabel train``'s epoch line (``models.training``) both write through it.
"""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["StatusLine", "duration"]


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
