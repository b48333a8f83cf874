"""Dataflow workers install videolabel from its sdist (``--setup_file``), where an editable install would
hide a sub-package that setup.py leaves out: build the sdist, install it apart, import every module."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

PACKAGES = ("beam_pipeline", "transforms", "models")
#: Files that are run, not imported: ``python -m beam_pipeline`` and the page ``streamlit run`` runs.
RUN_NOT_IMPORTED = {"beam_pipeline/__main__.py", "beam_pipeline/app/page.py"}


@pytest.mark.slow  # builds the sdist and imports TensorFlow and Beam
def test_the_sdist_holds_every_module_and_each_imports_from_it(tmp_path):
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")],
                   cwd=REPO, check=True, capture_output=True)
    (sdist,) = (tmp_path / "dist").glob("videolabel-*.tar.gz")
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(sdist)], check=True, capture_output=True)

    source = sorted(str(p.relative_to(REPO)) for top in PACKAGES for p in (REPO / top).rglob("*.py"))
    installed = sorted(str(p.relative_to(target)) for top in PACKAGES for p in (target / top).rglob("*.py"))
    assert installed == source  # every module of the checkout, sub-packages included
    assert (target / "models" / "labels" / "kinetics_600.txt").exists()
    assert (target / "beam_pipeline" / "job" / "beam_flags.txt").exists()

    modules = [p[:-3].replace("/", ".").removesuffix(".__init__") for p in installed
               if p not in RUN_NOT_IMPORTED]
    script = (f"import importlib, sys; sys.path.insert(0, {str(target)!r})\n"
              f"for name in {modules!r}:\n"
              f"    module = importlib.import_module(name)\n"
              f"    assert module.__file__.startswith({str(target)!r}), (name, module.__file__)\n"
              f"print(len({modules!r}))")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) == len(modules) > 60


def test_a_folder_with_its_own_models_and_transforms_folders_does_not_hide_the_packages(tmp_path):
    """Worker and decoder processes start as ``python -m ...`` in the user's folder, whose own ``models/``
    (a folder of model files) must not become the ``models`` package (``make install``'s editable mode)."""
    for name in PACKAGES:
        (tmp_path / name).mkdir()
    script = f"import importlib\nfor name in {PACKAGES!r}:\n    print(importlib.import_module(name).__file__)"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == [str(REPO / name / "__init__.py") for name in PACKAGES]
