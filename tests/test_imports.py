"""The house's import rules (docs/architecture.md): no import circle between modules, and the
directions that must hold (the model never imports the stream, training, the command line or
media; the world and the judge never import the model; nothing outside routes/ imports a route's
module by name). Imports inside functions count too."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def import_graph() -> dict[str, set[str]]:
    files = {}
    for p in (SRC / "flowact").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = {}
    for mod, path in files.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
                name = ".".join(x for x in (base, node.module) if x)
                names = [f"{name}.{a.name}" for a in node.names] + [name]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for n in names:
                while n and n not in files:
                    n = n.rpartition(".")[0]
                if n and n != mod and n.startswith("flowact"):
                    deps.add(n)
        graph[mod] = deps
    return graph


def _circles(graph) -> list[list[str]]:
    """Strongly connected groups of modules (a package importing its own submodules is not a circle)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w.startswith(v + ".") or v.startswith(w + "."):
                continue
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

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _circles(import_graph()) == []


def test_the_circle_finder_finds_one():
    assert _circles({"flowact.a": {"flowact.b"}, "flowact.b": {"flowact.a"}}) == [["flowact.a", "flowact.b"]]


def test_imports_run_the_house_directions():
    never = {
        "flowact.model": ("flowact.stream", "flowact.train", "flowact.cli", "flowact.media", "flowact.routes"),
        "flowact.stream": ("flowact.train", "flowact.cli", "flowact.routes", "flowact.render"),
        "flowact.world": ("flowact.model", "flowact.stream"),
        "flowact.judge": ("flowact.model",),
        "flowact.photo": ("flowact.model", "flowact.train"),
    }
    broken = []
    for mod, deps in import_graph().items():
        for part, bad in never.items():
            if mod == part or mod.startswith(part + "."):
                broken += [f"{mod} -> {d}" for d in deps if d.startswith(bad)]
        if not mod.startswith("flowact.routes"):  # the route seam: only routes/ knows the routes' modules
            broken += [f"{mod} -> {d}" for d in deps if d in ("flowact.routes.toon", "flowact.routes.photo")]
    assert broken == [], broken
