"""The one lazy-export mechanism of hangar's packages (PEP 562).

A package lists ``name -> module`` for what it exports; each name is imported from its module on
first access and then kept in the package's namespace, so ``import hangar`` (and the command
line's ``hangar --help``) loads neither numpy, pygit2 nor a framework (torch, tensorflow, dask)
until something that needs them is used.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` exporting ``exports`` (name -> module imported on first use)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # imported once: later lookups skip this hook
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
