"""Merging branches (fast-forward and 3-way)."""

from __future__ import annotations

from typing import Any


def merge_into_writer(checkout: Any, message: str, dev_branch: str, **kwargs: Any) -> str:
    raise NotImplementedError("merge is not implemented yet")


def merge_branches(repo: Any, message: str, master_branch: str, dev_branch: str, **kwargs: Any) -> str:
    raise NotImplementedError("merge is not implemented yet")
