"""Whether a process id names a running process on this host (for stale locks and files)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists in this pid namespace (signal 0 only asks; nothing is sent).

    A process owned by another user answers ``PermissionError``: it exists, so it counts as alive.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
