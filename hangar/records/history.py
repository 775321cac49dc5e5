"""Commit history: ``log`` contents and an ASCII graph like ``git log --graph --oneline``."""

from __future__ import annotations

import time
from typing import Any

from hangar.plumbing.gitrepo import GitRepo
from hangar.records.snapshot import Snapshot


def commit_summary_lines(git: GitRepo, commit: str) -> list[str]:
    """The lines ``Repository.summary`` prints for ``commit``: author, time, message, arraysets, metadata."""
    info = git.commit_info(commit)
    snap = Snapshot(git, info.tree)
    lines = [f"commit: {commit}", f"  author: {info.author} <{info.email}>",
             f"  time: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(info.time))} UTC",
             f"  message: {info.message}", f"arraysets: {len(snap.arrayset_names())}"]
    for name in snap.arrayset_names():
        s = snap.schema(name)
        assert s is not None
        lines.append(f"  {name}: {snap.samples(name).count()} samples, dtype {s.np_dtype}, "
                     f"{'max ' if s.variable_shape else ''}shape {s.shape}, "
                     f"named_samples={s.named_samples}, backend={s.backend}")
    lines.append(f"metadata: {snap.metadata.count()} keys")
    return lines


def history(git: GitRepo, start: str) -> dict[str, Any]:
    """``{'head', 'order', 'ancestors', 'specs'}`` for every commit reachable from ``start``."""
    order: list[str] = []
    ancestors: dict[str, list[str]] = {}
    specs: dict[str, dict[str, object]] = {}
    for c in git.walk([start]):
        order.append(c.id)
        ancestors[c.id] = list(c.parents)
        specs[c.id] = {"commit_message": c.message, "commit_time": float(c.time),
                       "commit_user": c.author, "commit_email": c.email}
    return {"head": start, "order": order, "ancestors": ancestors, "specs": specs}


def format_graph(contents: dict[str, Any], branch_heads: dict[str, list[str]], *,
                 show_time: bool = False, show_user: bool = False) -> str:
    """Render ``contents`` (from :func:`history`) as lanes of ``*``, ``|``, ``/`` and ``\\``."""
    lanes: list[str] = []
    out: list[str] = []
    for c in contents["order"]:
        idxs = [i for i, lane in enumerate(lanes) if lane == c]
        if not idxs:
            lanes.append(c)
            idxs = [len(lanes) - 1]
        for j in reversed(idxs[1:]):
            out.append("| " * (j - 1) + "|/")
            del lanes[j]
        col = idxs[0]
        spec = contents["specs"][c]
        text = c[:7]
        names = branch_heads.get(c)
        if names:
            text += " (" + ", ".join(sorted(names)) + ")"
        if show_time:
            text += " " + time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(spec["commit_time"]))
        if show_user:
            text += f" <{spec['commit_user']}>"
        text += " " + spec["commit_message"].splitlines()[0] if spec["commit_message"] else ""
        out.append("".join("* " if i == col else "| " for i in range(len(lanes))) + text)
        parents = contents["ancestors"][c]
        if not parents:
            del lanes[col]
            continue
        lanes[col] = parents[0]
        new = [p for p in parents[1:] if p not in lanes]
        for k, p in enumerate(new):
            lanes.insert(col + 1 + k, p)
        if len(parents) > 1:
            out.append("| " * col + "|\\" + " |" * (len(lanes) - col - 2))
    return "\n".join(line.rstrip() for line in out)
