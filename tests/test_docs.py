"""Every code block of README.md and docs/*.md runs as pasted.

How a Markdown file is run (the convention is also described in docs/cli.md, "Examples in
these documents run as tests"):

- Each file runs in a fresh, empty directory, its blocks in order, with the ``hangar`` and
  ``python`` of the environment running the tests first on ``PATH``.
- ```` ```python ```` (or ``py``) blocks of one file share one interpreter and namespace,
  like cells of a notebook; ```` ```sh ```` / ``bash`` / ``shell`` blocks run each in its own
  ``bash -euo pipefail`` (a ``cd`` inside a block lasts to its end); ```` ```console ````
  blocks run the lines that start with ``$ `` and ignore the rest (output samples).
- ```` ```text ```` (also ``toml``, ``json``, ``yaml``, ``ini``, ``diff``) blocks are output,
  layouts or configuration: never run.
- A block that cannot run as pasted (a server that waits forever, a benchmark taking
  minutes) is preceded by the visible marker ``<!-- doc-test: skip: REASON -->`` on the
  line before its opening fence. A reason is required; keep these few.
- A fence without a language is an error: say what it is (``text`` or a language above).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_PYTHON = {"python", "py"}
RUN_SHELL = {"sh", "bash", "shell"}
RUN_CONSOLE = {"console"}
NOT_RUN = {"text", "toml", "json", "yaml", "ini", "diff"}
SKIP_RE = re.compile(r"<!--\s*doc-test:\s*skip:\s*(?P<reason>\S.*?)\s*-->")
FENCE_RE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
FILE_TIMEOUT_S = 600


@dataclass
class Block:
    path: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: Optional[str]  # reason given by a doc-test skip marker


def doc_files() -> list[Path]:
    """README.md, then docs/*.md sorted by name."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def parse_blocks(path: Path) -> list[Block]:
    """Fenced code blocks of a Markdown file, with the skip marker of the line before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent, start = m["fence"], len(m["indent"]), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            text = lines[i]
            body.append(text[indent:] if text[:indent].strip() == "" else text)
            i += 1
        i += 1  # the closing fence (or the end of the file)
        prev = lines[start - 1] if start > 0 else ""
        marker = SKIP_RE.search(prev)
        blocks.append(Block(rel, start + 1, m["info"].lower(), "\n".join(body) + "\n",
                            marker["reason"] if marker else None))
    return blocks


def check_tags(blocks: list[Block]) -> None:
    for b in blocks:
        known = RUN_PYTHON | RUN_SHELL | RUN_CONSOLE | NOT_RUN
        assert b.lang, (f"{b.path}:{b.line}: a code block without a language; tag it ```text (not run) or "
                        f"```python / ```sh / ```console (run by tests/test_docs.py)")
        assert b.lang in known, f"{b.path}:{b.line}: unknown block language {b.lang!r}; use one of {sorted(known)}"


def console_commands(code: str) -> str:
    """The ``$ `` lines of a console block (continuation lines ending in a backslash kept)."""
    out: list[str] = []
    cont = False
    for line in code.splitlines():
        if line.startswith("$ "):
            out.append(line[2:])
            cont = line.rstrip().endswith("\\")
        elif cont:
            out.append(line)
            cont = line.rstrip().endswith("\\")
    return "\n".join(out) + "\n"


# Runs a file's blocks in one process: python blocks share a namespace, shell blocks each get a bash.
DRIVER = r"""
import json, subprocess, sys, traceback
blocks = json.load(sys.stdin)
ns = {"__name__": "__main__"}
for b in blocks:
    where = f"{b['path']}:{b['line']}"
    print(f"--- running the {b['kind']} block at {where}", flush=True)
    if b["kind"] == "python":
        try:
            exec(compile(b["code"], where, "exec"), ns)
        except BaseException:
            traceback.print_exc()
            print(f"FAILED: the python block at {where}", flush=True)
            sys.exit(1)
        sys.stdout.flush()
    else:
        rc = subprocess.run(["bash", "-euo", "pipefail", "-c", b["code"]]).returncode
        if rc != 0:
            print(f"FAILED: the shell block at {where} exited {rc}", flush=True)
            sys.exit(1)
"""


def runnable(blocks: list[Block]) -> list[dict]:
    out = []
    for b in blocks:
        if b.skip is not None or b.lang in NOT_RUN:
            continue
        if b.lang in RUN_PYTHON:
            out.append({"path": b.path, "line": b.line, "kind": "python", "code": b.code})
        elif b.lang in RUN_SHELL:
            out.append({"path": b.path, "line": b.line, "kind": "shell", "code": b.code})
        else:
            out.append({"path": b.path, "line": b.line, "kind": "shell", "code": console_commands(b.code)})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_code_block_runs_as_pasted(doc: Path, tmp_path) -> None:
    blocks = parse_blocks(doc)
    check_tags(blocks)
    todo = runnable(blocks)
    if not todo:
        return  # only output, layouts and marked blocks: nothing to run
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)  # where pip put the `hangar` console script
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(todo), cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=FILE_TIMEOUT_S)
    assert proc.returncode == 0, f"{doc.name}:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"


def test_skip_markers_give_a_reason_and_are_few() -> None:
    skipped = [b for p in doc_files() for b in parse_blocks(p) if b.skip is not None]
    for b in skipped:
        assert len(b.skip) >= 10, f"{b.path}:{b.line}: say why the block cannot run"
    ran = [b for p in doc_files() for b in parse_blocks(p) if b.skip is None and b.lang not in NOT_RUN]
    assert len(skipped) <= len(ran), [f"{b.path}:{b.line}" for b in skipped]


def test_parser_reads_tags_markers_and_console_prompts(tmp_path) -> None:
    doc = tmp_path / "sample.md"
    text = ("x\n```python\nprint(1)\n```\n<!-- doc-test: skip: serves until Ctrl-C -->\n```sh\nhangar server\n```\n"
            "```console\n$ echo hi\nhi\n$ ls \\\n  -l\n```\n```\nuntagged\n```\n")
    doc.write_text(text)
    blocks = parse_blocks(doc)
    assert [(b.lang, b.skip) for b in blocks] == [("python", None), ("sh", "serves until Ctrl-C"),
                                                  ("console", None), ("", None)]
    assert console_commands(blocks[2].code) == "echo hi\nls \\\n  -l\n"
    with pytest.raises(AssertionError, match="without a language"):
        check_tags(blocks)
    assert [r["kind"] for r in runnable(blocks[:3])] == ["python", "shell"]
