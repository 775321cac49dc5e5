"""Choosing how worker processes start, so a script without a ``__main__`` guard still works.

``spawn`` (and ``forkserver``) start each worker by importing the main script again. A
script that calls ``get_batch`` at its top level, outside ``if __name__ == "__main__":``,
would call it again in every worker, which Python stops with a bootstrapping
``RuntimeError`` (followed by a ``FileNotFoundError`` from the broken pool). Such scripts
are detected from their source; where ``fork`` exists (Linux, macOS) workers are forked
instead, which re-runs nothing; elsewhere the error says what to add.
"""

from __future__ import annotations

import ast
import multiprocessing
import sys
from typing import Optional

from hangar.errors import MainGuardError


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either operand order)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    names = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    main = any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)
    return names and main and len(node.test.ops) == 1 and isinstance(node.test.ops[0], ast.Eq)


def unguarded_main_script() -> Optional[str]:
    """Path of the main script when it has no top-level ``__main__`` guard, else None.

    None too when there is no script file (an interactive session, ``python -c``, a
    notebook) or ``python -m`` ran a package's ``__main__``: nothing is re-run by ``spawn``
    then. A plain module run with ``python -m NAME`` is re-run (as ``__mp_main__``) and is
    checked like a script.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if spec is not None and (spec.name == "__main__" or spec.name.endswith(".__main__")):
        return None  # multiprocessing skips these when it prepares a spawned worker
    if not path or not str(path).endswith(".py"):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None
    return None if any(_is_main_guard(node) for node in tree.body) else str(path)


def pool_start_method(requested: str) -> str:
    """The start method to use for a worker pool ``requested`` with.

    Raises
    ------
    MainGuardError
        (a ``RuntimeError``) If the main script has no ``__main__`` guard, ``requested``
        would re-run it, and the platform cannot ``fork``.
    """
    if requested == "fork":
        return requested
    script = unguarded_main_script()
    if script is None:
        return requested
    if "fork" in multiprocessing.get_all_start_methods():
        return "fork"  # forked workers run nothing of the script again
    raise MainGuardError(
        f"get_batch reads with worker processes, and start method {requested!r} starts each by running "
        f"{script} again from the top, which has no `if __name__ == \"__main__\":` guard; put the script's "
        "code under that guard (see docs/loaders.md), or pass n_cpus=1 to read in this process")
