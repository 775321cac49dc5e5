"""The layering, checked: no module touches another module's private names; imports go only downward.

``lint-imports`` (import-linter, configured in pyproject.toml) checks the layers contract; this
file runs it when installed, and checks by itself what import-linter cannot: private names.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hangar"

#: private attributes of other libraries' objects that are public API there (namedtuple's
#: ``_fields``/``_replace``/``_asdict``/``_make``) or the documented way to do a thing (``os._exit``:
#: die without cleanup, the crash-test fault points)
ALLOWED_ATTRIBUTES = {"_fields", "_replace", "_asdict", "_make", "_exit"}


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines itself: its functions, classes, methods and attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)  # self._x = ..., obj._x = ... (the module's own attribute)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_")}


def private_reach_throughs(source: str, filename: str = "<source>") -> list[str]:
    """Every place in ``source`` that touches a private name another module defines.

    ``x._name`` where ``x`` is not ``self``, ``cls`` or ``super()`` and ``_name`` is not defined
    in this module (a module may use its own classes' private members on other instances), and
    ``from m import _name``. Dunder names are public protocol; ``from hangar._faults import`` is
    importing public names of a package-private module.
    """
    tree = ast.parse(source, filename)
    own = _own_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__") or attr in own or attr in ALLOWED_ATTRIBUTES:
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                continue
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{filename}:{node.lineno}: from {node.module} import {alias.name}")
    return found


def test_no_module_touches_another_modules_private_names():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += private_reach_throughs(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, "private reach-throughs (add a public method one layer down):\n" + "\n".join(found)


@pytest.mark.parametrize("code", [
    "repo._git.branch_head('m')",
    "checkout._state.base",
    "from hangar.integrity import _walk",
    "aset._table.pointers()",
    "self._repo._hangar_dir",
])
def test_the_check_finds_reach_throughs(code):
    assert private_reach_throughs(code)


@pytest.mark.parametrize("code", [
    "self._git = None",
    "cls._cache",
    "super()._on_update()",
    "Location._fields",
    "class A:\n    def _f(self, other):\n        return other._f",  # the module's own private member
    "from hangar._faults import crash_point",
])
def test_the_check_allows_own_private_names(code):
    assert private_reach_throughs(code) == []


def _module_imports() -> dict[str, set[str]]:
    """hangar module -> hangar modules it imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def test_no_import_cycle_among_porcelain_and_core_modules():
    # a cycle closed by a function-local or TYPE_CHECKING import is a cycle too. Not considered:
    # the package roots (hangar, hangar.dataloaders: lazy re-exports) and the subpackages whose
    # modules the layers contract takes as one (records, store, plumbing, cli)
    graph = _module_imports()

    def considered(m: str) -> bool:
        return m not in ("hangar", "hangar.dataloaders", "hangar.remote") and m.split(".")[1:2] not in (
            ["records"], ["store"], ["plumbing"], ["cli"])

    graph = {m: {d for d in deps if considered(d)} for m, deps in graph.items() if considered(m)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    assert cycles == []


def test_the_layers_contract_holds():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not os.path.exists(exe):
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout
