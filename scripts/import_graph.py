"""Print the import graph between xsell's packages and check it: no cycles, no upward imports.

    python scripts/import_graph.py

Every import in every module (module level and inside functions) counts. The
layers, lowest first: recsys (the library, itself in four layers: its core
modules, the model components, the recommender, evaluation and training
periods), then training and service side by side (neither imports the other), then
the `xsell` console script (training/cli.py: its serve command starts the service),
then support (shared by the tests and benchmarks), then bench and tests
(neither imports the other). Exit status 1 on a cycle or an upward import.
"""

from __future__ import annotations

import ast
import os
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("recsys", "training", "service", "support", "bench", "tests")
# The `xsell` console script (training/cli.py) is the one entry point above both sides:
# its `serve` command starts the service, every other command runs the trainer.
CLI = "training.cli"
# What each package may import (besides itself and third-party code).
ALLOWED = {
    "recsys": set(),
    "training": {"recsys"},
    "cli": {"recsys", "training", "service"},
    "service": {"recsys"},
    "support": {"recsys", "training"},
    "bench": {"recsys", "training", "cli", "service", "support"},
    "tests": {"recsys", "training", "cli", "service", "support"},
}
# Inside the library: its layers, lowest first, each importing only those below it.
RECSYS_LAYERS = ("recsys.core", "recsys.models", "recsys.recommender", "recsys.evaluation")
_EVALUATION = ("recsys.evaluation", "recsys.baselines", "recsys.period")


def unit(module: str) -> str:
    """The package (or recsys layer) a dotted module name belongs to."""
    if module == CLI or module.startswith(CLI + "."):
        return "cli"
    if module.split(".")[0] != "recsys":
        return module.split(".")[0]
    for layer in ("recsys.models", "recsys.recommender", *_EVALUATION):
        if module == layer or module.startswith(layer + "."):
            return "recsys.evaluation" if layer in _EVALUATION else layer
    return "recsys.core"


def module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def imports(path: str, name: str):
    """Dotted names a module imports (``from a import b``: ``a.b`` and ``a``), at run time:
    imports under ``if TYPE_CHECKING:`` are for annotations only and are skipped."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, tuple(alias.name for alias in node.names)


def graph() -> tuple[Counter, dict]:
    edges, modules = Counter(), {}
    for top in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for file in files:
                if file.endswith(".py"):
                    path = os.path.join(folder, file)
                    name = module_name(path)
                    modules[name] = set()
                    for target, names in imports(path, name):
                        if target.split(".")[0] in PACKAGES:
                            modules[name].update([target] + [f"{target}.{n}" for n in names])
                            if target == "recsys":  # ``from recsys import x``: a module
                                continue
                            a, b = unit(name), unit(target)
                            if a != b:
                                edges[a, b] += 1
    return edges, modules


def module_cycles(modules: dict) -> list[list[str]]:
    """Groups of modules that import each other (strongly connected, Tarjan)."""
    graph = {}
    for m, targets in modules.items():
        # ``from a import b``: the module a.b when there is one, else a itself.
        subs = {t for t in targets if t in modules and t.rpartition(".")[0] in targets}
        plain = {t for t in targets if t in modules} - {t.rpartition(".")[0] for t in subs}
        graph[m] = (subs | plain) - {m}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def cycles(edges) -> list[list[str]]:
    nodes = sorted({n for e in edges for n in e})
    out = []

    def walk(path):
        for a, b in edges:
            if a == path[-1]:
                if b == path[0]:
                    out.append(path + [b])
                elif b not in path and b > path[0]:
                    walk(path + [b])

    for n in nodes:
        walk([n])
    return out


def main() -> int:
    edges, modules = graph()
    print("imports between packages (importer -> imported: import statements)")
    for (a, b), n in sorted(edges.items()):
        print(f"  {a:20s} -> {b:20s} {n:4d}")
    bad = []
    for (a, b) in edges:
        top_a, top_b = a.split(".")[0], b.split(".")[0]
        if top_a != top_b and top_b not in ALLOWED[top_a]:
            bad.append(f"{a} -> {b}")
        if top_a == top_b == "recsys" and RECSYS_LAYERS.index(b) > RECSYS_LAYERS.index(a):
            bad.append(f"{a} -> {b}")
    found = cycles(edges)
    print("cycles between packages:", "none" if not found
          else "; ".join(" -> ".join(c) for c in found))
    groups = module_cycles(modules)
    print("modules importing each other:", "none" if not groups
          else "; ".join(" <-> ".join(g) for g in groups))
    print("upward imports:", "none" if not bad else ", ".join(sorted(bad)))
    return 1 if found or groups or bad else 0


if __name__ == "__main__":
    sys.exit(main())
