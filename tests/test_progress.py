"""hangar.progress: the one progress bar (command-line imports/exports, remote transfers)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    from hangar.progress import progress, progress_bar
    assert list(progress(iter(range(5)), 5, "importing things")) == [0, 1, 2, 3, 4]
    with progress_bar("sending bytes", 10, unit_bytes=True) as advance:
        advance(4)
        advance(6, 20)
    with progress_bar("nothing to do", 0) as advance:
        advance(1)
    print("done")
""")


def _run(stderr_tty: bool) -> tuple[str, bytes]:
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    if not stderr_tty:
        proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.decode(), proc.stderr
    leader, follower = os.openpty()
    try:
        proc = subprocess.run([sys.executable, "-c", _SCRIPT], stdout=subprocess.PIPE, stderr=follower, env=env,
                              timeout=120)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    return proc.stdout.decode(), b"".join(chunks)


def test_progress_is_silent_when_stderr_is_not_a_terminal_and_passes_items_through():
    out, err = _run(stderr_tty=False)
    assert out == "done\n"
    assert err == b""


def test_progress_draws_on_a_terminal():
    out, err = _run(stderr_tty=True)
    assert out == "done\n"
    assert b"importing things" in err
    assert b"sending bytes" in err
    assert b"nothing to do" not in err  # a bar of nothing is not drawn
