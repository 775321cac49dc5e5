"""get_batch from a script without ``if __name__ == "__main__":`` (issue 11, point 8)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hangar.processes import _is_main_guard, pool_start_method, unguarded_main_script

SCRIPT = """
import numpy as np
from hangar import Repository
repo = Repository({path!r})
co = repo.checkout()
batch = co.arraysets["foo"].get_batch(list(range(10)), n_cpus=2, start_method={method!r})
print("sum", int(sum(a.sum() for a in batch)))
co.close()
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_get_batch_in_a_script_without_main_guard_works(aset_repo, tmp_path, method):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(path=aset_repo.path, method=method))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    expected = sum(int((np.arange(5) + i).sum()) for i in range(10))
    assert proc.stdout.split() == ["sum", str(expected)]  # printed once: the script ran once
    assert "RuntimeError" not in proc.stderr


@pytest.mark.slow
def test_a_guarded_script_keeps_the_requested_start_method(aset_repo, tmp_path):
    script = tmp_path / "guarded.py"
    body = textwrap.indent(SCRIPT.format(path=aset_repo.path, method="spawn").strip(), "    ")
    script.write_text("import hangar.processes as p\nif __name__ == '__main__':\n"
                      "    print(p.pool_start_method('spawn'))\n" + body + "\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "spawn"


def test_main_guard_detection():
    import ast

    for src, guarded in (("if __name__ == '__main__':\n    pass", True), ("if '__main__' == __name__:\n    pass", True),
                         ("if __name__ != '__main__':\n    pass", False), ("x = 1", False)):
        assert _is_main_guard(ast.parse(src).body[0]) is guarded
    assert unguarded_main_script() is None  # pytest runs as a module/entry point here
    assert pool_start_method("spawn") == "spawn"
