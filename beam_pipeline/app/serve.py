"""``videolabel app``: a local web app (Streamlit) to label one video and to browse a run.

``serve`` starts ``streamlit run`` on the page script (``beam_pipeline/app/page.py``)
with Streamlit's own flags: served on 127.0.0.1 unless ``host`` says otherwise,
headless, no usage statistics, no file watcher, an upload size limit, and errors
shown in the page as one line (no tracebacks). The page's own settings (the output
folder, the model handles to offer, a config, the folders it may read) follow ``--``
and are parsed by ``AppSettings.parse``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

__all__ = ["DEFAULT_MAX_UPLOAD_MB", "PAGE", "AppSettings", "serve", "streamlit_argv"]

#: The page script ``streamlit run`` runs.
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.py")
#: Largest upload, in MB, unless ``--max-upload-mb`` says otherwise.
DEFAULT_MAX_UPLOAD_MB = 200


@dataclasses.dataclass(frozen=True)
class AppSettings:
    """What the page is told at start.

    Attributes:
        output: a ``videolabel run`` output to browse (local or gs://), or None.
        models: model handles the page offers for labelling (``--model``, repeatable); the
            output's own model is offered too.
        config: a YAML config the page labels with (as ``run --config``).
        allow: folders (local or gs://) whose videos, models and configs the page may open by
            path; beside them it opens only the output and the videos its rows name.
        max_upload_mb: the upload size limit (Streamlit enforces it; the page says it).
    """

    output: str | None = None
    models: tuple[str, ...] = ()
    config: str | None = None
    allow: tuple[str, ...] = ()
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB

    def argv(self) -> list[str]:
        """These settings as the page's arguments (the inverse of ``parse``)."""
        args = [self.output] if self.output else []
        args += [f"--model={m}" for m in self.models] + [f"--allow={a}" for a in self.allow]
        if self.config:
            args.append(f"--config={self.config}")
        return [*args, f"--max-upload-mb={self.max_upload_mb}"]

    @classmethod
    def parse(cls, argv: Sequence[str]) -> AppSettings:
        """The settings from the page's arguments."""
        parser = argparse.ArgumentParser(prog="videolabel app page")
        parser.add_argument("output", nargs="?")
        parser.add_argument("--model", action="append", default=[])
        parser.add_argument("--allow", action="append", default=[])
        parser.add_argument("--config")
        parser.add_argument("--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB)
        args = parser.parse_args(list(argv))
        return cls(args.output, tuple(args.model), args.config, tuple(args.allow), args.max_upload_mb)


def streamlit_argv(settings: AppSettings, *, port: int = 8501, host: str = "127.0.0.1") -> list[str]:
    """The ``python -m streamlit run`` command line that serves the page."""
    flags = {
        "server.address": host,
        "server.port": port,
        "server.headless": "true",
        "server.maxUploadSize": settings.max_upload_mb,
        "server.fileWatcherType": "none",
        "server.runOnSave": "false",
        "browser.gatherUsageStats": "false",
        "browser.serverAddress": host,
        "client.showErrorDetails": "type",
        "client.toolbarMode": "viewer",
        "global.developmentMode": "false",
    }
    return [sys.executable, "-m", "streamlit", "run", PAGE, *(f"--{k}={v}" for k, v in flags.items()),
            "--", *settings.argv()]


def serve(settings: AppSettings, *, port: int = 8501, host: str = "127.0.0.1") -> None:
    """Replaces this process with the Streamlit server (it runs until stopped)."""
    argv = streamlit_argv(settings, port=port, host=host)
    print(f"videolabel app: http://{host}:{port}  (Ctrl+C stops it)", flush=True)
    os.execv(argv[0], argv)
