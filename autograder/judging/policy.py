"""What a graded function may not use, found from the submitted source and from what ran.

Each spec declares a policy (:attr:`autograder.judging.spec.GradedFunction.forbidden` and
``loops_allowed``; defaults per assignment in ``DEFAULT_FORBIDDEN`` of its hidden-test module). Two
independent sources of findings, both outside the student's reach:

1. **Static** (:func:`static_findings`): every code cell of the submission is parsed (never run) in
   the grading process. Module-level bindings across all cells (``import``, ``from ... import ... as``,
   ``x = torchvision.ops``, ``getattr(m, 'n' + 'ms')``, ``importlib.import_module('torch' + 'vision')``
   with constant strings) resolve every name and attribute chain in a function body to a dotted name;
   local imports and local aliases inside the body too. A graded function reaches the code of the
   student's own helpers (transitively), but not of other graded functions: those are judged on their
   own, and calling them is always allowed (``nms`` may call the student's ``box_iou``). Python loops
   (``for``, ``while``, comprehensions) are findings where the spec forbids them. References to the
   grader's client or to the interpreter's profiling hooks are tampering findings.
2. **Runtime** (:func:`runtime_findings`): ``cs_lib.judge_client`` records, during each judged call,
   which library functions (``module.qualname`` of each Python code object started) and dispatcher ops
   (``torch.ops.<ns>.<op>`` calls) ran, for the prefixes the judge asks about, and whether its profile
   hook was still in place at the end. That catches what the static pass cannot resolve
   (``getattr`` on computed names, ``exec``, ``sys.modules``). A missing record or a removed hook is a
   tampering finding.

A finding fails the function's test with 0 points and names the call and the cell
(``Verdict.finding``); a TA can still override it by a manual grade.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Names whose use anywhere in a student's code is tampering with the grader's record.
TAMPERING = ("sys.setprofile", "sys.settrace", "threading.setprofile", "threading.settrace",
             "cs_lib.judge_client.handle", "cs_lib.judge_client.encode_reply", "cs_lib.judge_client._Recorder",
             "cs_lib.judge_client.send_frame", "cs_lib.wire")

_DYNAMIC_IMPORTS = ("importlib.import_module", "__import__")


@dataclass(frozen=True)
class Finding:
    """One forbidden use: ``what`` (e.g. ``calls torchvision.ops.nms``), where (cell index, 1-based line)."""

    function: str
    what: str
    cell: int | None = None
    line: int | None = None
    tampering: bool = False

    def message(self) -> str:
        """One line for the student and the TA, e.g. ``nms calls torchvision.ops.nms (cell 12, line 3); ...``."""
        where = f" (cell {self.cell}, line {self.line})" if self.cell is not None else " (while the grader ran it)"
        if self.tampering:
            return (f"{self.function}: {self.what}{where}; the grader's record of what ran must stay untouched: "
                    "the grader gives 0 for this test (a TA reviews it)")
        if self.what.startswith("uses a"):
            return (f"{self.function} {self.what}{where}; the notebook asks for it without Python loops: the "
                    "grader gives 0 for this test")
        return f"{self.function} {self.what}{where}; write it yourself: the grader gives 0 for this test"


def matches(name: str, forbidden: Iterable[str]) -> str | None:
    """The forbidden entry that dotted ``name`` is, or lies under (``torchvision.ops`` covers ``.nms``)."""
    for entry in forbidden:
        if name == entry or name.startswith(entry + "."):
            return entry
    return None


# ------------------------------------------------------------------------------------------- static


@dataclass
class _Cell:
    index: int  # 1-based position in the notebook
    tree: ast.Module


def _parse_cells(notebook: Any) -> list[_Cell]:
    cells = []
    for i, cell in enumerate(notebook.cells):
        if cell.get("cell_type") != "code":
            continue
        lines = [("pass  # " + line) if line.lstrip().startswith(("%", "!")) else line
                 for line in str(cell.get("source", "")).splitlines()]
        try:
            cells.append(_Cell(i + 1, ast.parse("\n".join(lines))))
        except SyntaxError:
            continue
    return cells


def _constant_string(node: ast.AST) -> str | None:
    """The value of a string built from constants with ``+`` (``'torch' + 'vision'``), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _constant_string(node.left), _constant_string(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        parts = [_constant_string(v) if not isinstance(v, ast.FormattedValue) else _constant_string(v.value)
                 for v in node.values]
        return "".join(parts) if all(p is not None for p in parts) else None  # type: ignore[arg-type]
    return None


class _Scope:
    """Name -> dotted names it may stand for (an alias may be rebound: every binding counts)."""

    def __init__(self, parent: _Scope | None = None) -> None:
        self.names: dict[str, set[str]] = {}
        self.parent = parent

    def bind(self, name: str, targets: set[str]) -> None:
        if targets:
            self.names.setdefault(name, set()).update(targets)

    def lookup(self, name: str) -> set[str]:
        if name in self.names:
            return self.names[name]
        return self.parent.lookup(name) if self.parent is not None else set()


def _resolve(node: ast.AST, scope: _Scope) -> set[str]:
    """The dotted names an expression may stand for (empty when unknown)."""
    if isinstance(node, ast.Name):
        return scope.lookup(node.id) or ({node.id} if node.id in ("__import__", "getattr") else set())
    if isinstance(node, ast.Attribute):
        return {f"{base}.{node.attr}" for base in _resolve(node.value, scope)}
    if isinstance(node, ast.Call):
        funcs = _resolve(node.func, scope)
        if "getattr" in funcs and len(node.args) >= 2:
            attr = _constant_string(node.args[1])
            if attr is not None:
                return {f"{base}.{attr}" for base in _resolve(node.args[0], scope)}
        if funcs & set(_DYNAMIC_IMPORTS) and node.args:
            module = _constant_string(node.args[0])
            if module is not None:
                return {module} if "importlib.import_module" in funcs else {module.split(".")[0]}
    return set()


def _bind_import(node: ast.Import | ast.ImportFrom, scope: _Scope) -> None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                scope.bind(alias.asname, {alias.name})
            else:
                top = alias.name.split(".")[0]
                scope.bind(top, {top})
    elif node.module and not node.level:
        for alias in node.names:
            if alias.name != "*":
                scope.bind(alias.asname or alias.name, {f"{node.module}.{alias.name}"})


def _bind_assign(node: ast.AST, scope: _Scope) -> None:
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        values = _resolve(node.value, scope)
        for target in targets:
            if isinstance(target, ast.Name):
                scope.bind(target.id, values)
    elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
        scope.bind(node.target.id, _resolve(node.value, scope))


@dataclass
class _Def:
    name: str
    node: ast.AST
    cell: int


def _module_level(cells: list[_Cell]) -> tuple[_Scope, dict[str, list[_Def]]]:
    """Bindings of every cell's top level (imports, aliases), and the student's own functions and classes."""
    scope, defs = _Scope(), {}
    for cell in cells:
        for node in ast.walk(cell.tree):  # top-level statements, also inside if/try/with blocks
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)) and _top_level(node, cell.tree):
                _bind_import(node, scope)
        for node in _top_statements(cell.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs.setdefault(node.name, []).append(_Def(node.name, node, cell.index))
            else:
                for sub in ast.walk(node):
                    _bind_assign(sub, scope)
    for name in defs:
        scope.names.pop(name, None)  # the student's own definition shadows an alias of the same name
    return scope, defs


def _top_statements(tree: ast.Module) -> list[ast.stmt]:
    out: list[ast.stmt] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            out.append(node)
            if isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(node, field, []) or [])
                for handler in getattr(node, "handlers", []) or []:
                    visit(handler.body)

    visit(tree.body)
    return out


def _top_level(node: ast.AST, tree: ast.Module) -> bool:
    return node in _top_statements(tree)


def _loops(node: ast.AST) -> list[tuple[str, int]]:
    found = []
    for sub in ast.walk(node):
        if isinstance(sub, (ast.For, ast.AsyncFor)):
            found.append(("a Python `for` loop", sub.lineno))
        elif isinstance(sub, ast.While):
            found.append(("a Python `while` loop", sub.lineno))
        elif isinstance(sub, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            found.append(("a comprehension (a Python loop)", sub.lineno))
    return found


def _body_names(fn: ast.AST, module_scope: _Scope) -> list[tuple[set[str], str | None, int]]:
    """Every maximal name/attribute chain in ``fn``: (dotted names it may be, plain name if a Name, line)."""
    scope = _Scope(module_scope)
    params = set()
    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = fn.args
        params = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x is not None}
        for param in params:
            scope.names[param] = set()  # a parameter shadows any module-level alias of its name
    for sub in ast.walk(fn):  # local imports and aliases first (a use may precede its binding in the source)
        if isinstance(sub, (ast.Import, ast.ImportFrom)):
            _bind_import(sub, scope)
        else:
            _bind_assign(sub, scope)
    out = []
    inner: set[int] = set()
    for sub in ast.walk(fn):
        if id(sub) in inner:
            continue
        if isinstance(sub, (ast.Attribute, ast.Name, ast.Call)) and not isinstance(sub, ast.Call):
            child = sub
            while isinstance(child, ast.Attribute):  # the longest chain only: torchvision.ops.nms, not torchvision
                child = child.value
                inner.add(id(child))
            names: set[str] = set()
            node: ast.AST = sub
            # the longest resolvable prefix of the chain
            while True:
                names = _resolve(node, scope)
                if names or not isinstance(node, ast.Attribute):
                    break
                node = node.value
            plain = sub.id if isinstance(sub, ast.Name) and sub.id not in params else None
            out.append((names, plain, getattr(sub, "lineno", 0)))
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "getattr":
            names = _resolve(sub, scope)
            if names:
                out.append((names, None, sub.lineno))
        elif isinstance(sub, ast.Call) and _resolve(sub.func, scope) & set(_DYNAMIC_IMPORTS):
            names = _resolve(sub, scope)
            if names:
                out.append((names, None, sub.lineno))
    return out


def static_findings(notebook: Any, policies: dict[str, tuple[tuple[str, ...], bool]]) -> dict[str, list[Finding]]:
    """Findings per graded function, from the submission's code cells (never run here).

    Args:
        notebook: the submission (an nbformat notebook, or anything with ``.cells``).
        policies: ``{graded function: (forbidden dotted names, loops allowed)}``.

    Returns:
        ``{function: [Finding, ...]}`` for the functions with findings (the first one is the message).
    """
    cells = _parse_cells(notebook)
    scope, defs = _module_level(cells)
    graded = set(policies)
    tampering_anywhere: list[Finding] = []
    for cell in cells:
        for names, _plain, line in _body_names(cell.tree, scope):
            for name in names:
                hit = matches(name, TAMPERING)
                if hit:
                    tampering_anywhere.append(Finding("", f"the notebook uses {name}", cell.index, line, True))
    result: dict[str, list[Finding]] = {}
    for function, (forbidden, loops_allowed) in policies.items():
        # the record matters only where something is watched
        findings = [Finding(function, f.what, f.cell, f.line, True) for f in tampering_anywhere[:1] if forbidden]
        seen: set[str] = set()
        todo = [(d, function) for d in defs.get(function, [])[-1:]]
        while todo:
            definition, via = todo.pop()
            if definition.name in seen:
                continue
            seen.add(definition.name)
            through = "" if via == function and definition.name == function else f" (through {definition.name})"
            if not loops_allowed:
                for what, line in _loops(definition.node):
                    findings.append(Finding(function, f"uses {what}{through}", definition.cell, line))
            for names, plain, line in _body_names(definition.node, scope):
                if plain is not None and plain in defs and plain not in graded and plain not in seen:
                    todo.extend((d, function) for d in defs[plain][-1:])  # the student's own helper
                    continue
                for name in sorted(names):
                    if plain is not None and plain in defs:
                        break  # a graded function or a helper of the student's: always allowed
                    hit = matches(name, forbidden)
                    if hit:
                        findings.append(Finding(function, f"calls {name}{through}", definition.cell, line))
                        break
        if findings:
            result[function] = findings
    return result


# ------------------------------------------------------------------------------------------- runtime


def runtime_prefixes(forbidden: Iterable[str]) -> list[str]:
    """See :func:`_runtime_prefixes` (cached per policy)."""
    return list(_runtime_prefixes(tuple(forbidden)))


@functools.cache
def _runtime_prefixes(forbidden: tuple[str, ...]) -> tuple[str, ...]:
    """The ``module.qualname`` prefixes (and ``ns::op`` names) that the kernel's record watches.

    A public name (``torchvision.ops.nms``) is resolved here, in the grading process, to where its code
    lives (``torchvision.ops.boxes.nms``); a module stays a prefix; ``torch.ops.torchvision.nms`` and
    ``torchvision::nms`` both become the dispatcher op ``torchvision::nms``.
    """
    out: list[str] = []
    for entry in forbidden:
        if "::" in entry:
            out.append(entry)
            continue
        if entry.startswith("torch.ops."):
            parts = entry.split(".")
            if len(parts) >= 4:
                out.append(f"{parts[2]}::{parts[3]}")
            continue
        out.append(entry)
        target = _import_dotted(entry)
        if target is None:
            continue
        module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
        if isinstance(module, str) and isinstance(qualname, str) and f"{module}.{qualname}" != entry:
            out.append(f"{module}.{qualname}")
    return tuple(sorted(set(out)))


def _import_dotted(name: str) -> Any:
    """The object ``name`` names, if its package is already imported here (never imports a new package:
    a package the grader has not loaded stays a plain prefix, which the record matches by module)."""
    parts = name.split(".")
    if parts[0] not in sys.modules:
        return None
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # noqa: BLE001 - not a module (or not installed): try a shorter prefix
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


def runtime_findings(function: str, record: Any, prefixes: Iterable[str]) -> list[Finding]:
    """Findings from the kernel's record of one judged call (``cs_lib.judge_client`` ``"record"``).

    ``record`` must be ``{"ran": [names], "intact": bool}``; anything else is tampering.
    """
    if type(record) is not dict or type(record.get("ran")) is not list or type(record.get("intact")) is not bool:
        return [Finding(function, "sent no record of what ran (was the grader's client changed?)", tampering=True)]
    findings = []
    if not record["intact"]:
        findings.append(Finding(function, "removed or replaced the grader's profile hook while it ran", tampering=True))
    prefixes = list(prefixes)
    for name in record["ran"]:
        if type(name) is str and matches(name, prefixes):
            shown = re.sub(r"^(\w+)::(\w+)$", r"torch.ops.\1.\2", name)
            findings.append(Finding(function, f"calls {shown}"))
            break
    return findings


# ------------------------------------------------------------------------------------------- README

TABLE_START = "<!-- policy table: generated by `python -m autograder.judging.policy`; do not edit -->"
TABLE_END = "<!-- end of policy table -->"


def policy_table(assignments: Iterable[str]) -> str:
    """The Markdown table of every graded function's policy (what a TA sees in ``autograder/README.md``)."""
    from autograder.judging.spec import forbidden_of, load_specs

    rows = ["| Assignment | Function | May not use | Python loops |", "|---|---|---|---|"]
    for assignment in assignments:
        try:
            specs = load_specs(assignment)
        except (KeyError, AttributeError):
            continue
        for name, spec in specs.items():
            forbidden = ", ".join(f"`{f}`" for f in forbidden_of(assignment, spec)) or "(nothing)"
            rows.append(f"| {assignment} | `{name}` | {forbidden} | {'allowed' if spec.loops_allowed else 'no'} |")
    return "\n".join([TABLE_START, *rows, TABLE_END])


def readme_with_table(readme: str, table: str) -> str:
    """``readme`` with its generated table replaced by ``table`` (appended when it has none yet)."""
    if TABLE_START in readme and TABLE_END in readme:
        before, rest = readme.split(TABLE_START, 1)
        return before + table + rest.split(TABLE_END, 1)[1]
    return readme.rstrip("\n") + "\n\n" + table + "\n"


# ------------------------------------------------------------------------------------------- notebooks

RULES_MARK = "<!-- policy rules: generated from the grader's specs; edit the specs, not this paragraph -->"


def notebook_rules(assignment: str) -> str:
    """The paragraph that states each graded function's rule in the notebook's introduction ("" if none)."""
    from autograder.judging.spec import forbidden_of, load_specs

    specs = load_specs(assignment)
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, spec in specs.items():
        groups.setdefault(forbidden_of(assignment, spec), []).append(f"`{name}`")
    lines = []
    for forbidden, names in groups.items():
        if forbidden:
            shown = ", ".join(f"`{f}`" for f in forbidden if not _internal(f))
            lines.append(f"- {', '.join(names)} may not use {shown} (your own functions are always fine).")
    no_loops = [f"`{n}`" for n, s in specs.items() if not s.loops_allowed]
    if no_loops:
        lines.append(f"- {', '.join(no_loops)}: no Python loops (`for`, `while`, comprehensions).")
    if not lines:
        return ""
    return "\n".join([RULES_MARK, "**What the grader checks besides the values.** A graded function that breaks "
                      "its rule gets 0 points for its test, with a message that names the call and the cell:",
                      *lines])


def _internal(name: str) -> bool:
    """A name a student never writes (a dispatcher op, a private or defining module): left out of the text."""
    return "::" in name or "._" in name or ".modules." in name or name.startswith("torch.functional.")


def notebook_with_rules(intro: str, rules: str) -> str:
    """The introduction's markdown with its rules paragraph replaced by ``rules`` (appended if absent)."""
    if RULES_MARK in intro:
        intro = intro.split(RULES_MARK, 1)[0].rstrip("\n")
    return intro.rstrip("\n") + ("\n\n" + rules if rules else "")


if __name__ == "__main__":
    from pathlib import Path

    import nbformat

    from autograder import assignments as _assignments
    from autograder import source_notebook

    path = Path(__file__).resolve().parents[1] / "README.md"
    path.write_text(readme_with_table(path.read_text(), policy_table(_assignments())))
    print(f"wrote the policy table into {path}")
    for name in _assignments():  # read, change the introduction cell, write at once (shared notebooks)
        nb = nbformat.read(source_notebook(name), as_version=4)
        intro = next(c for c in nb.cells if c.cell_type == "markdown")
        updated = notebook_with_rules(intro.source, notebook_rules(name))
        if updated != intro.source:
            intro.source = updated
            nbformat.write(nb, source_notebook(name))
            print(f"wrote the rules into {source_notebook(name)}")
