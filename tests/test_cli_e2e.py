"""The ``hangar`` command line as a real process (``python -m hangar`` and the console script)."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # every test here starts a hangar server or runs the CLI in subprocesses

Image = pytest.importorskip("PIL.Image")


def run(*args: str, stderr=subprocess.PIPE, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hangar", *args], stdout=subprocess.PIPE, stderr=stderr,
                          text=True, check=False, timeout=120, env=env)


def ok(*args: str) -> str:
    proc = run(*args)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    assert proc.stderr == ""  # quiet when piped: no progress bar, no warnings
    return proc.stdout


def write_pngs(directory, images: dict[str, np.ndarray]) -> None:
    for rel, arr in images.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path)


def test_png_directory_import_then_export_round_trips_pixels(tmp_path):
    rng = np.random.default_rng(7)
    gray = {f"digit{i}.png": rng.integers(0, 256, (8, 8), dtype=np.uint8) for i in range(5)}
    gray.update({f"more/extra{i}.png": rng.integers(0, 256, (8, 8), dtype=np.uint8) for i in range(2)})
    rgb = {f"color{i}.png": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for i in range(3)}
    write_pngs(tmp_path / "gray", gray)
    write_pngs(tmp_path / "rgb", rgb)
    repo = str(tmp_path / "repo")

    ok("-C", repo, "init", "--name", "Ann", "--email", "ann@example.com")
    ok("-C", repo, "arrayset", "create", "digits", "--shape", "8,8", "--dtype", "uint8")
    ok("-C", repo, "arrayset", "create", "colors", "--shape", "8,8,3", "--dtype", "uint8")
    ok("-C", repo, "commit", "-m", "schemas")
    out = ok("-C", repo, "import", "digits", str(tmp_path / "gray"), "-m", "add digits")
    assert "imported 7 samples from 7 files into digits" in out
    ok("-C", repo, "import", "colors", str(tmp_path / "rgb"))
    log = ok("-C", repo, "log")
    assert log.splitlines()[0].endswith("import 3 samples into colors")
    assert "add digits" in log and "schemas" in log

    ok("-C", repo, "export", "digits", str(tmp_path / "out"), "--format", "png")
    ok("-C", repo, "export", "colors", str(tmp_path / "outc"), "--format", "png")
    ok("-C", repo, "export", "digits", str(tmp_path / "outnpy"))
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.path.basename(k) for k in gray)
    for rel, arr in gray.items():
        name = os.path.basename(rel)
        with Image.open(tmp_path / "out" / name) as img:
            np.testing.assert_array_equal(np.asarray(img), arr)
        np.testing.assert_array_equal(np.load(tmp_path / "outnpy" / name.replace(".png", ".npy")), arr)
    for name, arr in rgb.items():
        with Image.open(tmp_path / "outc" / name) as img:
            assert img.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(img), arr)

    view = ok("-C", repo, "view", "digits", "digit3").splitlines()
    assert view[:4] == ["arrayset: digits", "key: 'digit3'", "dtype: uint8", "shape: 8,8"]
    assert f"max: {gray['digit3.png'].max()}" in view


def test_jpeg_and_rgb_images_convert_to_the_arrayset_layout(tmp_path):
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg", quality=95)
    repo = str(tmp_path / "repo")
    ok("-C", repo, "init", "--name", "Ann", "--email", "ann@example.com")
    ok("-C", repo, "arrayset", "create", "gray", "--shape", "6,5", "--dtype", "uint8")
    ok("-C", repo, "commit", "-m", "schema")
    ok("-C", repo, "import", "gray", str(tmp_path / "photo.jpg"))
    assert ok("-C", repo, "view", "gray", "photo").splitlines()[3] == "shape: 6,5"


def test_failure_is_one_error_line_and_exit_1_and_debug_shows_traceback(tmp_path):
    proc = run("-C", str(tmp_path), "status")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: not a hangar repository")
    assert proc.stderr.count("\n") == 1
    proc = run("-C", str(tmp_path), "--debug", "status")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr


def test_console_script_is_installed_and_reports_the_version():
    from hangar import __version__

    exe = shutil.which("hangar")
    if exe is None:
        pytest.skip("the hangar console script is not on PATH (package not pip-installed)")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"hangar {__version__}"


def test_import_draws_a_progress_bar_when_stderr_is_a_terminal(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        np.save(src / f"s{i:02d}.npy", np.full(4, i, np.int32))
    repo = str(tmp_path / "repo")
    ok("-C", repo, "init", "--name", "Ann", "--email", "ann@example.com")
    ok("-C", repo, "arrayset", "create", "a", "--shape", "4", "--dtype", "int32")
    ok("-C", repo, "commit", "-m", "schema")

    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO once every writer of the slave side is gone
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    env = dict(os.environ, TERM="xterm", COLUMNS="100")
    env.pop("NO_COLOR", None)
    try:
        proc = run("-C", repo, "import", "a", str(src), stderr=slave, env=env)
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)
    assert proc.returncode == 0, proc.stdout
    assert "imported 30 samples" in proc.stdout
    drawn = b"".join(chunks).decode(errors="replace")
    assert "importing into a" in drawn
