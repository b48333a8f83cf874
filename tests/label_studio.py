"""A real Label Studio for the tests: ``make label-studio``'s own virtualenv, started on loopback with a data
folder of its own, a known admin and API token, and nothing that calls home (version check, Sentry,
analytics). ``LabelStudio`` is a small client over its HTTP API (``requests``); the server is one process
in a session of its own, stopped with its whole process group.

A fresh data folder costs about 30 s of Django migrations at the first start, so ``make label-studio``
prepares one once (``python -m tests.label_studio``: ``label-studio init``, the same admin and token),
and each test starts from a copy of it (4-6 s to answering)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, free_port
from tests.helpers import stop_group

LABEL_STUDIO = REPO / ".venv-labelstudio" / "bin" / "label-studio"
#: A migrated data folder with the admin and token, copied for each server (``prepare``).
TEMPLATE = REPO / ".venv-labelstudio" / "data-template"
TOKEN = "videolabel-tests-0123456789abcdef01234567"


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()  # Label Studio also reads these bare names as its settings
           if k not in ("USERNAME", "PASSWORD", "USER_TOKEN", "PORT", "HOST", "DEBUG", "LOG_LEVEL")}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data), "LABEL_STUDIO_USERNAME": "admin@example.com",
        "LABEL_STUDIO_PASSWORD": "videolabel-tests", "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LATEST_VERSION_CHECK": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "CONVERTER_DOWNLOAD_RESOURCES": "false", "PYTHONUNBUFFERED": "1",
    })
    return env


class LabelStudio:
    """A running Label Studio's API: ``url`` and authenticated ``get`` / ``post``."""

    def __init__(self, url: str):
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {TOKEN}"

    def get(self, path: str, **params):
        response = self.session.get(self.url + path, params=params, timeout=60)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body):
        response = self.session.post(self.url + path, json=body, timeout=60)
        assert response.status_code in (200, 201), response.text[:500]
        return response.json()


def prepare() -> None:
    """Makes ``TEMPLATE``: a data folder migrated, with the admin and the token (``label-studio init``)."""
    partial = TEMPLATE.with_name(TEMPLATE.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    done = subprocess.run([str(LABEL_STUDIO), "init", "--data-dir", str(partial)], env=_env(partial),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode:
        raise SystemExit(f"label-studio init failed ({done.returncode}):\n{done.stderr[-3000:]}")
    (partial / ".env").unlink(missing_ok=True)  # a secret key of its own for each copy
    shutil.rmtree(TEMPLATE, ignore_errors=True)
    partial.rename(TEMPLATE)


@contextlib.contextmanager
def label_studio(data: Path, timeout_s: float = 240) -> Iterator[LabelStudio]:
    """Starts Label Studio on a free loopback port with ``data`` as its folder (a copy of ``TEMPLATE``
    when there is one, else migrated at the first start: about 40 s), waits for its API, and stops it
    (and anything it started) on exit."""
    if not LABEL_STUDIO.exists():
        pytest.skip(f"{LABEL_STUDIO} is absent: run `make label-studio` (make test does)")
    if TEMPLATE.exists():
        shutil.copytree(TEMPLATE, data)
    port = free_port()
    log = open(data.parent / "label-studio.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(LABEL_STUDIO), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data)], env=_env(data), stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert server.poll() is None, f"Label Studio exited ({server.returncode}): see {log.name}"
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + "/api/version", timeout=2).ok:
                    break
            assert time.monotonic() < deadline, f"Label Studio silent for {timeout_s} s: see {log.name}"
            time.sleep(0.25)
        yield LabelStudio(url)
    finally:
        stop_group(server)
        log.close()


if __name__ == "__main__":
    prepare()
