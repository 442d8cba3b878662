"""Layers that only point down: the imports between the modules of ``autograder/`` and ``cs_lib/``.

The layer order is written once, in the ``layers`` block of ``autograder/README.md`` (section "Layers"),
and read from there: one line per layer, the lowest first, each line naming modules or packages. A module
may import from its own layer and the ones below it, never from a higher one, and no two modules may
import each other, however indirectly.

Every import statement counts: at module level and inside functions (lazy imports), with relative imports
resolved; an import under ``if TYPE_CHECKING:`` does not (it never runs). ``import a.b.c`` and
``from a.b import c`` name the module ``a.b.c`` (or ``a.b`` when ``c`` is not a module); the packages'
``__init__.py`` that Python runs on the way are not counted. Modules loaded by name
(``importlib.import_module``, as the judge loads ``autograder.specs``) are not imports here.

For a human: ``python tests/test_layers.py`` prints the current edges between the layers' packages with
their layers, the upward ones marked; ``--modules`` prints the module-level edges.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cs_lib", "autograder")
README = ROOT / "autograder" / "README.md"
LAYERS_BLOCK = re.compile(r"^```layers[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Edge:
    """``importer`` imports ``imported`` (both modules of the two packages), first at ``line``."""

    importer: str
    imported: str
    path: Path
    line: int
    lazy: bool  # inside a function

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}" + (" (inside a function)" if self.lazy else "")


def modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its own name: its ``__init__.py``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_statements(node: ast.AST, lazy: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """The import statements under ``node`` that can run, and whether each is inside a function."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node, lazy
        return
    children = node.orelse if isinstance(node, ast.If) and _is_type_checking(node.test) else ast.iter_child_nodes(node)
    lazy = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
    for child in children:
        yield from _import_statements(child, lazy)


def _imported_modules(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
                      known: dict[str, Path]) -> list[str]:
    """The modules of ``known`` that ``node``, a statement of ``module``, imports."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            prefix = ".".join([*base, *([node.module] if node.module else [])])
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in known else prefix for alias in node.names]
    out = []
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module and name not in out:
            out.append(name)
    return out


def import_edges() -> list[Edge]:
    """One edge per (importer, imported) pair of the packages' modules, at its first import statement."""
    known = modules()
    edges: dict[tuple[str, str], Edge] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        statements = sorted(_import_statements(tree), key=lambda s: s[0].lineno)
        for node, lazy in statements:
            for target in _imported_modules(node, module, path.name == "__init__.py", known):
                edges.setdefault((module, target), Edge(module, target, path, node.lineno, lazy))
    return sorted(edges.values(), key=lambda e: (e.importer, e.imported))


def read_layers(text: str | None = None) -> list[list[str]]:
    """The README's layers, the lowest first: the names on each line of its ``layers`` block (``#`` comments)."""
    text = README.read_text(encoding="utf-8") if text is None else text
    match = LAYERS_BLOCK.search(text)
    if match is None:
        raise AssertionError(f"{README.relative_to(ROOT)} has no ```layers block (section 'Layers')")
    layers = [line.split("#", 1)[0].split() for line in match.group(1).splitlines()]
    return [names for names in layers if names]


def place(module: str, layers: list[list[str]]) -> tuple[int, str] | None:
    """(layer index, the name that places it) of ``module``, or None when no line places it.

    A name places its module and, for a package, every module below it, unless a longer name places that
    module. A package with names below it on the list is split: it places only its own ``__init__.py``, so
    a new module of ``autograder/`` must be placed explicitly.
    """
    index = {name: i for i, names in enumerate(layers) for name in names}
    covering = [name for name in index if module == name or module.startswith(name + ".")]
    if not covering:
        return None
    best = max(covering, key=len)
    if best != module and any(name.startswith(best + ".") for name in index):
        return None
    return index[best], best


def describe(i: int, layers: list[list[str]]) -> str:
    return f"layer {i + 1} ({', '.join(layers[i])})"


def cycles(edges: list[Edge]) -> list[list[str]]:
    """One shortest cycle ``[a, b, ..., a]`` through the first module of each strongly connected component."""
    graph: dict[str, list[str]] = defaultdict(list)
    for e in edges:
        graph[e.importer].append(e.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    found = []
    for component in components:
        if len(component) < 2:
            continue
        start = min(component)
        came_from: dict[str, str] = {}
        queue = deque([start])
        while queue:
            v = queue.popleft()
            if start in graph[v]:
                chain = [v]
                while chain[-1] != start:
                    chain.append(came_from[chain[-1]])
                found.append([*reversed(chain), start])
                break
            for w in sorted(graph[v]):
                if w in component and w not in came_from and w != start:
                    came_from[w] = v
                    queue.append(w)
    return sorted(found)


def test_the_readme_places_every_module_once() -> None:
    layers = read_layers()
    known = modules()
    names = [name for line in layers for name in line]
    problems = [f"{name} is on more than one line" for name in sorted({n for n in names if names.count(n) > 1})]
    problems += [f"{name} is no module or package of {' or '.join(PACKAGES)}" for name in names if name not in known]
    problems += [f"{module} ({known[module].relative_to(ROOT).as_posix()}) is on no line: add it or its package"
                 for module in known if place(module, layers) is None]
    assert not problems, "the layers block of autograder/README.md:\n  " + "\n  ".join(problems)


def test_no_import_cycles() -> None:
    edges = import_edges()
    first = {(e.importer, e.imported): e for e in edges}
    found = cycles(edges)
    assert not found, f"{len(found)} import cycle(s):\n" + "\n".join(
        "  " + " -> ".join(chain) + "\n" + "".join(f"      {a} -> {b}: {first[(a, b)].where()}\n"
                                                  for a, b in zip(chain, chain[1:]))
        for chain in found)


def test_no_upward_imports() -> None:
    layers = read_layers()
    problems = []
    for e in import_edges():
        here, there = place(e.importer, layers), place(e.imported, layers)
        if here is None or there is None:
            continue  # test_the_readme_places_every_module_once says which
        if there[0] > here[0]:
            problems.append(f"{e.importer} [{describe(here[0], layers)}] imports {e.imported} "
                            f"[{describe(there[0], layers)}], a higher layer, at {e.where()}")
    assert not problems, (f"{len(problems)} upward import(s); the order is in the layers block of "
                          "autograder/README.md:\n  " + "\n  ".join(problems))


def test_the_layers_block_is_parsed_as_written() -> None:
    text = "x\n```layers\n# comment\na   # the lowest\nb c\n```\n```layers\nnot read\n```\n"
    assert read_layers(text) == [["a"], ["b", "c"]]
    layers = [["p"], ["p.q"], ["r"]]
    assert place("p", layers) == (0, "p")
    assert place("p.q.m", layers) == (1, "p.q")
    assert place("p.other", layers) is None  # p is split: it places only its __init__.py
    assert place("r.s.t", layers) == (2, "r")


def test_relative_and_lazy_imports_are_resolved() -> None:
    known = {name: Path() for name in ("p", "p.a", "p.b", "p.q", "p.q.c")}
    tree = ast.parse("from . import a\nfrom .. import b\nimport os\nif TYPE_CHECKING:\n    import p.b\n"
                     "def f():\n    from ..a import x\n")
    statements = list(_import_statements(tree))
    assert [lazy for _, lazy in statements] == [False, False, False, True]
    found = [_imported_modules(node, "p.q.c", False, known) for node, _ in statements]
    assert found == [["p.q"], ["p.b"], [], ["p.a"]]  # ``from . import a`` in p.q.c: p.q.a is no module, so p.q
    assert _imported_modules(statements[0][0], "p", True, known) == ["p.a"]
    edges = [Edge(a, b, ROOT, 1, False) for a, b in (("x", "y"), ("y", "z"), ("z", "x"), ("z", "w"))]
    assert cycles(edges) == [["x", "y", "z", "x"]]


def main(argv: list[str]) -> int:
    """Print the edges between the layers' packages (``--modules``: between modules), upward ones marked."""
    layers = read_layers()
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for e in import_edges():
        a, b = e.importer, e.imported
        if "--modules" not in argv:
            a, b = ((place(m, layers) or (-1, m))[1] for m in (a, b))
        if a != b:
            counts[(a, b)] += 1
    for (a, b), n in sorted(counts.items()):
        la, lb = ((place(m, layers) or (-1, m))[0] for m in (a, b))
        mark = "   UPWARD" if lb > la else ""
        print(f"{a} [{la + 1}] -> {b} [{lb + 1}]" + (f"  {n} modules" if n > 1 else "") + mark)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
