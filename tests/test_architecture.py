"""The package's shape: no import circles, and the inner rooms never import fiftyone or ray."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ewc_fo"
INNER = ("ewc_fo.engine", "ewc_fo.models", "ewc_fo.segmenters", "ewc_fo.runtime", "ewc_fo.metrics")


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Every ewc_fo module ``name`` imports, at module level or inside functions."""
    out = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            cands = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            cands = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for c in cands:
            # a submodule importing its own package's __init__ is not a circle
            if c in mods and c != name and not name.startswith(c + "."):
                out.add(c)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_inner_rooms_point_inward():
    """engine -> models/segmenters -> runtime; nothing inner imports the FiftyOne layer, commands or Ray."""
    outer = ("ewc_fo.fo", "ewc_fo.distributed", "ewc_fo.commands", "ewc_fo.cli", "ewc_fo.demo")
    bad = [(m, d) for m, deps in _graph().items() if m.startswith(INNER)
           for d in deps if d.startswith(outer)
           or (m.startswith(("ewc_fo.models", "ewc_fo.segmenters", "ewc_fo.runtime")) and d.startswith("ewc_fo.engine"))
           or (m.startswith("ewc_fo.runtime") and not d.startswith("ewc_fo.runtime"))]
    assert bad == []


BLOCK = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("fiftyone", "ray", "pymongo"):
            raise ImportError(f"{name} is blocked for this test")
sys.meta_path.insert(0, Block())
import ewc_fo
for room in %r:
    mod = importlib.import_module(room)
    if hasattr(mod, "__path__"):
        for info in pkgutil.walk_packages(mod.__path__, room + "."):
            importlib.import_module(info.name)
print("ok")
"""


def test_inner_rooms_import_without_fiftyone_or_ray():
    p = subprocess.run([sys.executable, "-c", BLOCK % (INNER,)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().endswith("ok")
