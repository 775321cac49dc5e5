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


#: a temporary file whose writer is gone is removed once this old (s): a writer between its
#: create and its rename is alive, and a pid reused since is caught by the age
TEMP_MIN_AGE = 60.0
#: a temporary file naming no pid (hangar before pid-named temporaries) is removed at this age (s)
TEMP_UNNAMED_AGE = 3600.0


def remove_stale_temps(directory: str, min_age: float = TEMP_MIN_AGE, unnamed_age: float = TEMP_UNNAMED_AGE) -> int:
    """Remove ``*.tmp`` files a killed writer left in ``directory``; return how many.

    Ours are named ``<name>.<pid>.tmp`` or ``<name>.<pid>-<hex>.tmp``: removed when that pid is
    not running on this host and the file was not modified for ``min_age`` seconds; a ``.tmp``
    naming no pid only after ``unnamed_age``. Links and anything not a regular file are left
    alone (never followed), as is every other name.
    """
    import stat
    import time

    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    now, removed = time.time(), 0
    for name in names:
        if not name.endswith(".tmp"):
            continue
        head, _, last = name[:-4].rpartition(".")
        first = last.partition("-")[0]
        # pids are at most 2**22 on Linux: a longer run of digits is an older name's random part
        pid = int(first) if head and first.isdigit() and len(first) <= 7 and int(first) <= 1 << 22 else None
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                continue
            age = now - st.st_mtime
            if pid is None:
                if age < unnamed_age:
                    continue
            elif age < min_age or pid_alive(pid):
                continue
            os.unlink(path)
            removed += 1
        except OSError:
            continue
    return removed
