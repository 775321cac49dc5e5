"""The suite's warning policy holds: a leaked resource fails the test that leaked it.

pyproject's filterwarnings turns every warning into an error, ResourceWarning included (it was
ignored globally, which hid leaks). Leaks seen only in ``__del__`` or in a thread reach pytest as
PytestUnraisableExceptionWarning / PytestUnhandledThreadExceptionWarning: errors too. Checked by
running pytest with this repository's configuration on small tests that leak each way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LEAKS = textwrap.dedent('''
    import gc
    import socket
    import threading


    def test_unclosed_file(tmp_path):
        f = open(tmp_path / "x", "w")
        del f
        gc.collect()


    def test_unclosed_socket():
        s = socket.socket()
        del s
        gc.collect()


    def test_exception_in_a_thread():
        t = threading.Thread(target=lambda: 1 / 0)
        t.start()
        t.join()


    def test_clean(tmp_path):
        with open(tmp_path / "x", "w") as f:
            f.write("closed")
''')


@pytest.mark.slow
def test_leaks_and_thread_exceptions_fail_under_the_suites_configuration(tmp_path):
    (tmp_path / "test_leaks.py").write_text(LEAKS)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
                           os.path.join(ROOT, "pyproject.toml"), "--rootdir", str(tmp_path), "-rfE",
                           str(tmp_path / "test_leaks.py")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 passed" in out, out  # test_clean
    for name in ("test_unclosed_file", "test_unclosed_socket", "test_exception_in_a_thread"):
        assert f"test_leaks.py::{name}" in out, out
