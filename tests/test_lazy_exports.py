"""Issue 13/14: one lazy-export mechanism (hangar._lazy) for the package and its loaders."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_import_hangar_and_the_cli_load_neither_numpy_nor_pygit2():
    out = _run("import sys, hangar, hangar.dataloaders, hangar.cli\n"
               "print(sorted(m for m in ('numpy', 'pygit2', 'torch', 'tensorflow', 'dask') if m in sys.modules))")
    assert out.split("\n")[0] == "[]"


def test_both_packages_export_through_the_same_mechanism_and_keep_what_they_imported():
    out = _run("import hangar, hangar.dataloaders as d\n"
               "print(hangar.__getattr__.__module__, d.__getattr__.__module__)\n"
               "print('Repository' in dir(hangar), 'dask_array' in dir(d))\n"
               "r = hangar.Repository\n"
               "print(vars(hangar)['Repository'] is r, r.__module__)\n"
               "try:\n    hangar.nope\nexcept AttributeError as e:\n    print(e)")
    lines = out.split("\n")
    assert lines[0] == "hangar._lazy hangar._lazy"
    assert lines[1] == "True True"
    assert lines[2] == "True hangar.repository"
    assert lines[3] == "module 'hangar' has no attribute 'nope'"
