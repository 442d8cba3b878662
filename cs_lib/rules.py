"""What a graded function may not use, found from its source: one analysis for the grader and the student.

Each graded function has a rule: the libraries it may not call (``torchvision.ops`` for ``nms``,
``pytorch_metric_learning`` for the triplet losses, ``captum`` for the attributions) and whether it may
use Python loops. The grader's specs declare the rules; :mod:`cs_lib.policies` is generated from them, so
that a notebook can tell the student, in their own kernel and before they submit, that a function breaks
its rule (:func:`check_rules`, called by the visible checks). The grader runs the same analysis on the
submitted notebook outside the kernel (``autograder.judging.policy``) and gives 0 for the test.

The analysis (:func:`source_findings`) parses code cells and never runs them. Module-level bindings
across all cells (``import``, ``from ... import ... as``, ``x = torchvision.ops``, ``getattr(m, 'n' +
'ms')``, ``importlib.import_module('torch' + 'vision')`` with constant strings) resolve every name and
attribute chain in a function body to a dotted name; local imports and local aliases inside the body too.
A graded function reaches the code of the student's own helpers (transitively), but not of other graded
functions: those are judged on their own, and calling them is always allowed (``nms`` may call the
student's ``box_iou``). Python loops (``for``, ``while``, comprehensions) are findings where the rule
forbids them. References to the grader's client or to the interpreter's profiling hooks are tampering.
"""

from __future__ import annotations

import ast
import dis
import functools
import importlib
import inspect
import re
import sys
import textwrap
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: Names whose use anywhere in a student's code is tampering with the grader's record.
TAMPERING = ("sys.setprofile", "sys.settrace", "threading.setprofile", "threading.settrace",
             "cs_lib.grading.judge_client.handle", "cs_lib.grading.judge_client.encode_reply",
             "cs_lib.grading.judge_client._Recorder", "cs_lib.grading.judge_client.send_frame", "cs_lib.grading.wire")

_DYNAMIC_IMPORTS = ("importlib.import_module", "__import__")


@dataclass(frozen=True)
class Finding:
    """One forbidden use: ``what`` (e.g. ``calls torchvision.ops.nms``), where (cell index, 1-based line)."""

    function: str
    what: str
    cell: str | None = None
    line: int | None = None
    tampering: bool = False

    def message(self) -> str:
        """One line for the student and the TA, e.g. ``nms calls torchvision.ops.nms (cell 12, line 3); ...``."""
        if self.cell is None:
            where = " (while the grader ran it)"
        else:
            where = f" ({self.cell}, line {self.line})" if self.line is not None else f" ({self.cell})"
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
    label: str  # where a message says the cell is: "cell 12" (1-based, in the notebook), "In [7]" (a kernel)
    tree: ast.Module


def _parse_cells(cells: Iterable[tuple[str, str]]) -> list[_Cell]:
    """Parse ``(label, source)`` pairs; IPython's ``%magic`` and ``!shell`` lines become comments, and a
    cell that does not parse is left out (it defines nothing that could run)."""
    parsed = []
    for label, source in cells:
        tree = _parse(str(source))
        if tree is not None:
            parsed.append(_Cell(label, tree))
    return parsed


@functools.lru_cache(maxsize=1024)
def _parse(source: str) -> ast.Module | None:
    """The cell's syntax tree (cached: a kernel's checks parse the same cells again; trees are never changed)."""
    lines = [("pass  # " + line) if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


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
    cell: str


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
                defs.setdefault(node.name, []).append(_Def(node.name, node, cell.label))
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


def source_findings(cells: Iterable[tuple[str, str]], policies: dict[str, tuple[tuple[str, ...], bool]],
                    bindings: dict[str, str] | None = None, tampering: bool = True,
                    only: str | None = None) -> dict[str, list[Finding]]:
    """Findings per graded function, from the source of a notebook's code cells (never run here).

    Args:
        cells: ``(label, source)`` of every code cell in order (a later definition replaces an earlier one).
        policies: ``{graded function: (forbidden dotted names, loops allowed)}``.
        bindings: module-level names known from elsewhere (a live kernel's globals: ``{"ops": "torchvision.ops"}``).
        tampering: also look for references to the grader's client and the profiling hooks (the grader does;
            the student's own check of one function's rule does not need to).
        only: the one function to report on (the others still count as graded: calling them is allowed).

    Returns:
        ``{function: [Finding, ...]}`` for the functions with findings (the first one is the message).
    """
    cells = _parse_cells(cells)
    scope, defs = _module_level(cells)
    for name, dotted in (bindings or {}).items():
        if name not in defs:
            scope.bind(name, {dotted})
    graded = set(policies)
    tampering_anywhere: list[Finding] = []
    for cell in cells if tampering else []:
        for names, _plain, line in _body_names(cell.tree, scope):
            for name in names:
                hit = matches(name, TAMPERING)
                if hit:
                    tampering_anywhere.append(Finding("", f"the notebook uses {name}", cell.label, line, True))
    result: dict[str, list[Finding]] = {}
    for function, (forbidden, loops_allowed) in policies.items():
        if only is not None and function != only:
            continue
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


# ------------------------------------------------------------------------------------------- names that run


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


# ------------------------------------------------------------------------------------------- in the kernel


def check_rules(assignment: str, fn: Callable[..., Any]) -> None:
    """Raise ``AssertionError`` if the graded function ``fn`` of ``assignment`` breaks its rule.

    Visible checks call this first, so that a student learns before submitting what the grader would
    give 0 for: ``nms calls torchvision.ops.nms (In [12], line 3); write it yourself: the grader gives 0
    for this test``. It reads the source of the cells this kernel ran (IPython's ``In``; otherwise the
    source of the functions of ``fn``'s module) and resolves the names they bind, plus the names the
    kernel's globals hold now (an alias made in a cell that was deleted since). It never calls ``fn``.

    Raises:
        AssertionError: ``fn`` calls something its rule forbids, or has a Python loop where its rule
            forbids loops; the message names the call and the cell.
        KeyError: ``assignment`` has no rules, or ``fn`` is not one of its graded functions.
    """
    from cs_lib.policies import POLICIES

    name = getattr(fn, "__name__", "")
    if assignment not in POLICIES or name not in POLICIES[assignment]:
        raise KeyError(f"check_rules: no rule for {name!r} in {assignment!r}; "
                       f"known: {sorted(POLICIES.get(assignment, {})) or sorted(POLICIES)}")
    findings = function_findings(fn, POLICIES[assignment], name)
    if findings:
        raise AssertionError(findings[0].message())


def function_findings(fn: Callable[..., Any], policies: dict[str, tuple[tuple[str, ...], bool]],
                      name: str | None = None) -> list[Finding]:
    """:func:`source_findings` of the live function ``fn`` (as ``name``; default ``fn.__name__``).

    ``policies`` holds every graded function of the notebook (calls to the others are always allowed).
    Without any source for ``fn`` (compiled from a string), loops are read from its bytecode.
    """
    name = name or getattr(fn, "__name__", "")
    namespace = getattr(fn, "__globals__", None)  # a class: the globals of the module that defines it
    if namespace is None:
        namespace = getattr(sys.modules.get(getattr(fn, "__module__", "")), "__dict__", None)
    if namespace is None:
        return []
    forbidden, loops_allowed = policies[name]
    watched = {**policies, name: (tuple(runtime_prefixes(forbidden)), loops_allowed)}
    cells = _kernel_cells(namespace, fn, name)
    findings = source_findings(cells, watched, _live_bindings(namespace), tampering=False, only=name).get(name, [])
    if not findings and not loops_allowed and not any(_defines(source, name) for _, source in cells):
        findings = [Finding(name, f"uses {loop}", "its compiled code") for loop in python_loops(fn)]
    return findings


def _kernel_cells(namespace: dict[str, Any], fn: Callable[..., Any], name: str) -> list[tuple[str, str]]:
    """``(label, source)`` of the cells this kernel ran (IPython's ``In``), else of every function defined
    in ``namespace``; and ``fn``'s own source, as ``name``, if no cell defines ``name``."""
    history = namespace.get("In")
    cells = []
    if isinstance(history, list) and all(isinstance(s, str) for s in history):
        cells = [(f"In [{i}]", source) for i, source in enumerate(history) if source]
    else:
        for value in list(namespace.values()):
            if isinstance(value, types.FunctionType) and value.__globals__ is namespace and value is not fn:
                source = _source(value)
                if source is not None:
                    cells.append((f"the cell of {value.__name__}", source))
    if not any(_defines(source, name) for _, source in cells):
        source = _source(fn)
        if source is not None:  # defined under another name, or by a cell the history no longer has
            own = getattr(getattr(fn, "__code__", None), "co_name", name)  # the name its source defines
            cells.append((f"the cell of {name}", re.sub(rf"\b(def|class)\s+{re.escape(own)}\b", rf"\1 {name}",
                                                         source, count=1)))
    return cells


def _source(fn: Callable[..., Any]) -> str | None:
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None


def _defines(source: str, name: str) -> bool:
    return re.search(rf"\b(def|class)\s+{re.escape(name)}\b", source) is not None


def _live_bindings(namespace: dict[str, Any]) -> dict[str, str]:
    """``{global name: dotted name}`` of the modules, functions and classes a kernel's globals hold from
    libraries (``F`` -> ``torch.nn.functional``, ``nms`` -> ``torchvision.ops.boxes.nms``)."""
    own = namespace.get("__name__")
    out = {}
    for key, value in list(namespace.items()):
        if key.startswith("__"):
            continue
        try:  # a student's object may answer any attribute lookup with an error: then it is no library name
            if isinstance(value, types.ModuleType):
                out[key] = value.__name__
                continue
            module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
        except Exception:  # noqa: BLE001
            continue
        if isinstance(module, str) and isinstance(qualname, str) and module != own and "<" not in qualname:
            out[key] = f"{module}.{qualname}"
    return out


def python_loops(fn: Callable[..., Any]) -> list[str]:
    """The Python loops (``for``, ``while``, comprehensions) in ``fn``'s own code, read from its bytecode.

    For a function without source (compiled from a string); with source, :func:`source_findings` names
    each loop and its line.

    Returns:
        One phrase per code object with a loop, e.g. ``["a Python loop (in f)"]``; empty without loops.
    """
    code = getattr(fn, "__code__", None)
    return _bytecode_loops(code) if code is not None else []


def _bytecode_loops(code: types.CodeType) -> list[str]:
    found = []
    for instr in dis.get_instructions(code):
        is_jump = instr.opcode in dis.hasjrel or instr.opcode in dis.hasjabs
        if instr.opname == "FOR_ITER" or (is_jump and isinstance(instr.argval, int) and instr.argval < instr.offset):
            found.append(f"a Python loop (in {code.co_name})")
            break
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found.extend(_bytecode_loops(const))
    return found
