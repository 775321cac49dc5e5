"""The runnable examples run to the end (each checks its own results as it goes)."""

from __future__ import annotations

import os
import subprocess
import sys

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def test_hangar03_tutorial_runs_to_the_end(tmp_path):
    # Hangar 0.3's Tutorial-001/002/003 steps (issue 10); warnings are errors, as in the suite
    proc = subprocess.run([sys.executable, "-W", "error", os.path.join(EXAMPLES, "hangar03_tutorial.py"),
                           str(tmp_path / "work")], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "all three tutorials ran" in proc.stdout


def test_dask_cluster_example_runs_to_the_end(tmp_path):
    # issue 15, point 3: per-sample means on a LocalCluster of two worker processes
    proc = subprocess.run([sys.executable, "-W", "error", os.path.join(EXAMPLES, "dask_cluster.py"),
                           str(tmp_path / "work")], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "they match the in-process means" in proc.stdout
