"""The import graph of `src/opencharacter`: no cycle, and no upward import between the rooms.

Data flows one way (sources → stages → engine → executors → pipeline → CLI) and the shared
vocabulary sits below everything. Read from the source with `ast`, so lazy imports inside
functions count too (they are still dependencies); `if TYPE_CHECKING:` imports count as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "opencharacter"

VOCABULARY = {"errors", "hashing", "registry", "records", "fileio", "config"}
FORBIDDEN = {
    # room: the rooms it must never import
    **dict.fromkeys(VOCABULARY, "every room but the vocabulary"),
    "stages": {"backends", "engine", "executors", "store", "pipeline", "cli", "train", "eval", "serve", "models"},
    "store": {"backends", "engine", "executors", "stages", "pipeline", "export", "cli", "train", "eval", "serve"},
    "engine": {"executors", "stages", "pipeline", "cli", "train", "eval", "serve", "filters"},
    "executors": {"pipeline", "export", "cli", "train", "eval", "serve", "filters", "selection"},
    "backends": {"engine", "executors", "stages", "store", "pipeline", "cli", "train", "eval", "export"},
    "sources": {"backends", "engine", "executors", "stages", "store", "pipeline", "cli"},
    "prompts": {"backends", "engine", "executors", "stages", "store", "pipeline", "cli"},
    "pipeline": {"cli", "train", "eval", "serve", "chat", "recipe"},
    "filters": {"pipeline", "cli", "executors", "engine", "backends"},
    "export": {"pipeline", "cli", "executors"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            submodules = {f"{module}.{alias.name}" for alias in node.names} & modules.keys()
            # `from package import submodule` needs the submodule; anything else needs the module itself.
            found.update(submodules if len(submodules) == len(node.names) else {module, *submodules})
    return {module for module in found if module in modules and module != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # The package facade re-exports the public API lazily (PEP 562): what it names under TYPE_CHECKING is
    # for type checkers and is never imported at run time, so it is no edge (modules do import
    # `opencharacter.__version__` from it).
    graph["opencharacter"] = set()
    return graph


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(package)"


def test_no_module_imports_one_that_imports_it_back():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def test_no_room_reaches_up():
    """The core never reaches the CLI, stages never reach backends, the vocabulary reaches nothing."""
    wrong = []
    for module, imported in sorted(_graph().items()):
        room = _room(module)
        forbidden = FORBIDDEN.get(room, set())
        for other in sorted(imported):
            target = _room(other)
            if target == room:
                continue
            if forbidden == "every room but the vocabulary":
                if target not in VOCABULARY:
                    wrong.append(f"{module} → {other}")
            elif target in forbidden or (target == "cli" and room not in {"cli", "__main__"}):
                wrong.append(f"{module} → {other}")
    assert wrong == []


def test_the_package_top_holds_only_the_vocabulary():
    loose = sorted(p.stem for p in ROOT.glob("*.py") if p.stem not in {"__init__", "__main__"})
    assert set(loose) <= VOCABULARY, loose
