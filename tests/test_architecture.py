"""The layering of the package: no import cycles between spoofrl's packages, nor between its modules
(imports inside functions count too: a lazy import still ties two modules together)."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_imports() -> dict[str, set[str]]:
    """spoofrl module -> the spoofrl modules it imports (a `from pkg import submodule` names the submodule)."""
    files = {}
    for path in (SRC / "spoofrl").rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        files[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spoofrl"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in files else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("spoofrl.")}
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_import_cycle_between_modules():
    assert cycles(module_imports()) == []


def test_no_import_cycle_between_packages():
    packages: dict[str, set[str]] = {}
    for module, deps in module_imports().items():
        own = package_of(module)
        packages.setdefault(own, set()).update(package_of(d) for d in deps if package_of(d) != own)
    assert cycles(packages) == []


def test_the_cycle_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
