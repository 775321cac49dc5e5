"""scripts/test.sh, scripts/demo.sh, pyproject.toml and the examples as a new user meets them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A stand-in for the venv's python: records each call (PATH and arguments) and succeeds.
FAKE_PYTHON = """#!/bin/sh
printf '%s\\t%s\\n' "$PATH" "$*" >> "$(dirname "$0")/calls.log"
exit 0
"""


def _fake_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text(FAKE_PYTHON)
    py.chmod(0o755)
    return venv


def _calls(venv: Path) -> list[tuple[str, str]]:
    log = venv / "bin" / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [tuple(line.split("\t", 1)) for line in lines]  # type: ignore[misc]


def test_test_script_puts_the_venv_bin_first_on_path_for_pytest(tmp_path):
    venv = _fake_venv(tmp_path)
    env = {**os.environ, "HANGAR_VENV": str(venv)}
    subprocess.run(["bash", str(ROOT / "scripts" / "test.sh"), "-k", "nothing"], env=env, check=True,
                   capture_output=True, timeout=60)
    path, args = _calls(venv)[-1]
    assert args.startswith("-m pytest")
    assert path.split(os.pathsep)[0] == str(venv / "bin")


def test_demo_installs_the_package_only_when_missing_or_pyproject_changed(tmp_path):
    venv = _fake_venv(tmp_path)
    env = {**os.environ, "HANGAR_VENV": str(venv)}
    demo = str(ROOT / "scripts" / "demo.sh")
    subprocess.run(["bash", demo], env=env, check=True, capture_output=True, timeout=60)
    first = [a for _, a in _calls(venv)]
    assert any(a.startswith("-m pip install -q -e .") for a in first)
    (venv / "bin" / "calls.log").unlink()
    subprocess.run(["bash", demo], env=env, check=True, capture_output=True, timeout=60)
    second = [a for _, a in _calls(venv)]
    assert not any("pip" in a for a in second), second
    assert second[-1].endswith("examples/tour.py")


@pytest.mark.slow
def test_pyproject_metadata_raises_no_setuptools_deprecation_warning():
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), str(ROOT / "pyproject.toml"))
    assert dist.metadata.license_expression == "Apache-2.0"


@pytest.mark.slow
def test_examples_print_their_temporary_folder_and_remove_it():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    workdir = re.search(r"^working in (\S+) \(removed at the end", out, re.M)
    assert workdir, out
    assert f"removed {workdir[1]}" in out
    assert not os.path.exists(workdir[1])
