"""Named crash points for the crash-safety tests; a no-op unless ``HANGAR_CRASH_AT`` is set.

``HANGAR_CRASH_AT=name:N`` makes the process die with ``os._exit(77)`` (no cleanup, no
flush, like ``kill -9``) at the N-th time it passes ``crash_point("name")``. The variable
is read once, at import; without it :func:`crash_point` does nothing but return.
"""

from __future__ import annotations

import os

from hangar.errors import InvalidArgumentError

CRASH_EXIT_CODE = 77
_SPEC = os.environ.get("HANGAR_CRASH_AT", "")
_hits: dict[str, int] = {}


def _parse(spec: str) -> tuple[str, int]:
    name, _, count = spec.rpartition(":")
    if not name or not count.isdigit() or int(count) < 1:
        raise InvalidArgumentError(f"HANGAR_CRASH_AT={spec!r}: expected NAME:N with N >= 1")
    return name, int(count)


if _SPEC:
    _TARGET, _AT = _parse(_SPEC)

    def crash_point(name: str) -> None:
        """Die here at the configured hit of ``name``."""
        if name != _TARGET:
            return
        n = _hits[name] = _hits.get(name, 0) + 1
        if n == _AT:
            os._exit(CRASH_EXIT_CODE)
else:
    def crash_point(name: str) -> None:
        """No fault injection configured: nothing to do."""
