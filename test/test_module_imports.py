"""glace_core's import graph points one way: no import circles, none hidden in in-function imports.

The graph is read from the source (ast), so the check is cheap and covers every module; the modules
that used to form circles are also imported alone in a fresh interpreter.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "glace_core"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module-level imports, in-function imports) between glace_core modules."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    top: dict[str, set[str]] = {}
    inner: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        module_level = set(map(id, tree.body))
        top[name], inner[name] = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            found = {t for t in targets if t in modules and t != name}
            (top if id(node) in module_level else inner)[name].update(found)
    return top, inner


def _reachable(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def test_no_import_circle():
    top, inner = _import_graph()
    assert len(top) > 40  # the walk found the package
    circles = sorted(m for m in top if m in _reachable(m, top))
    assert circles == [], f"modules on a module-level import circle: {circles}"
    both = {m: top[m] | inner[m] for m in top}
    hidden = sorted(m for m in both if m in _reachable(m, both))
    assert hidden == [], f"modules on an import circle held by in-function imports: {hidden}"


@pytest.mark.parametrize("module", ["glace_core.encoder_registry", "glace_core.network", "glace_core.map_files",
                                    "glace_core.head_ensemble", "glace_core.dataset", "glace_core.devices"])
def test_module_imports_alone(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
