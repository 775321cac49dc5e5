"""Markers of in-flight transfers (fetch, clone) that garbage collection must not race.

A fetch writes git packs first and moves its remote-tracking refs afterwards; between the
two, its new objects are reachable from no ref. ``gc`` lists the packs it may delete, then
refuses if any live transfer marker exists, and only then walks what is reachable: a
transfer that finished before the check has moved its refs (its objects are found), one
that starts after it writes packs gc did not list (they are kept).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from hangar.plumbing.pids import pid_alive
from hangar.plumbing.regular import MAX_STATE_BYTES, read_regular

MARKER_DIR = "transfers"


@contextmanager
def transfer_marker(hangar_dir: str, what: str) -> Iterator[None]:
    """Mark a transfer into the repository at ``hangar_dir`` as in flight for the block's duration."""
    d = os.path.join(hangar_dir, MARKER_DIR)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{os.getpid()}-{uuid.uuid4().hex[:12]}.json")
    with open(path, "w") as f:
        json.dump({"what": what, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}, f)
    try:
        yield
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def active_transfers(hangar_dir: str) -> list[dict]:
    """Live transfer markers; markers of dead processes on this host are removed."""
    d = os.path.join(hangar_dir, MARKER_DIR)
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        return []
    live = []
    for n in names:
        path = os.path.join(d, n)
        try:
            info = json.loads(read_regular(path, hangar_dir, MAX_STATE_BYTES))
        except (OSError, ValueError):
            continue  # being written or removed right now
        if info.get("host") == socket.gethostname() and not pid_alive(int(info.get("pid", -1))):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            continue
        live.append(info)
    return live
