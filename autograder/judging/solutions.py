"""Reference solutions, read from the source notebooks (the single source of truth).

A source notebook's reference implementation is the code between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` in its autograded-answer cells.
:func:`load_solutions` executes, in a fresh namespace and in notebook order:

1. the code cells tagged ``imports`` (the notebook's import cell), then
2. every autograded-answer cell (nbgrader metadata ``solution: true, grade: false``).

Answer cells must therefore only define functions and constants: no heavy work, no
plotting. The hidden tests compare student functions with these references on
inputs drawn at grading time.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import re
import textwrap
import types
from collections.abc import Callable
from typing import Any

import nbformat

from autograder import source_notebook
from autograder.judging.spec import WrongAnswer
from autograder.notebook_format import SOLUTION_REGION


def answer_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The code cells that :func:`load_solutions` executes, in notebook order."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        tags = cell.metadata.get("tags", [])
        if "imports" in tags or (meta.get("solution") and not meta.get("grade")):
            cells.append(cell)
    return cells


@functools.cache
def load_namespace(assignment: str) -> dict[str, Any]:
    """The globals after executing ``assignment``'s import and answer cells (see :func:`load_solutions`)."""
    path = source_notebook(assignment)
    nb = nbformat.read(path, as_version=4)
    namespace: dict[str, Any] = {"__name__": f"autograder.solutions.{assignment}"}
    # The imports cell prints (the device, say): that belongs in the notebook, not in the grader's output.
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in answer_cells(nb):
            name = cell.metadata.get("nbgrader", {}).get("grade_id", "imports")
            exec(compile(cell.source, f"{path.name}:{name}", "exec"), namespace)  # noqa: S102 - our own notebook
    return namespace


@functools.cache
def function_source(assignment: str, name: str) -> str:
    """The source of the top-level function ``name`` that the notebook's import or answer cells define.

    For a grader stand-in that must be exactly the release's helper (the student sees that helper in the
    notebook; the grader swaps it back in): one home, the notebook.

    Raises:
        KeyError: no such function in those cells.
    """
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    for cell in answer_cells(nb):
        tree = ast.parse(cell.source)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return ast.get_source_segment(cell.source, node) + "\n"
    raise KeyError(f"{assignment}'s notebook defines no function '{name}' in its import or answer cells")


@functools.cache
def _answer_cell(assignment: str, name: str) -> tuple[str, re.Match[str]]:
    """The source of answer cell ``name`` and its (first) solution region.

    Raises:
        KeyError: no such answer cell. ValueError: it has no solution region.
    """
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    cells = [c for c in answer_cells(nb) if c.metadata.get("nbgrader", {}).get("grade_id") == name]
    if not cells:
        raise KeyError(f"{assignment} has no answer cell '{name}'")
    match = SOLUTION_REGION.search(cells[0].source)
    if match is None:
        raise ValueError(f"answer cell '{name}' of {assignment} has no solution region")
    return cells[0].source, match


def solution_body(assignment: str, name: str) -> str:
    """The reference body of answer cell ``name``: the code of its first solution region, flush-left."""
    _, match = _answer_cell(assignment, name)
    return textwrap.dedent("\n".join(match.group(0).splitlines()[1:-1])) + "\n"


def edited_solution(assignment: str, name: str, *edits: tuple[str, str]) -> str:
    """:func:`solution_body` with each ``(old, new)`` replaced: one mistake, declared against the reference.

    Raises:
        ValueError: the reference no longer contains ``old`` (update the wrong answer with the solution).
    """
    body = solution_body(assignment, name)
    for old, new in edits:
        if old not in body:
            raise ValueError(f"{assignment}: the wrong answer of {name} expects `{old}` in the reference solution")
        body = body.replace(old, new)
    return body


def edited_answers(assignment: str, name: str, *mistakes: tuple[Any, ...]) -> tuple[WrongAnswer, ...]:
    """One :class:`~autograder.judging.spec.WrongAnswer` per ``(label, hint, edit, ...)`` row: the reference body of
    ``name`` with each ``(old, new)`` edit (:func:`edited_solution`), or, for a row ``(label, hint, body)``, that
    whole body (a mistake that is no edit of the solution)."""
    answers = []
    for label, hint, *edits in mistakes:
        whole = len(edits) == 1 and isinstance(edits[0], str)
        answers.append(WrongAnswer(label, edits[0] if whole else edited_solution(assignment, name, *edits), hint))
    return tuple(answers)


@functools.cache
def variant(assignment: str, name: str, body: str) -> Callable[..., Any]:
    """The reference function ``name`` with its solution region replaced by ``body`` (a wrong answer).

    The variant runs in a copy of the notebook's namespace, so that it sees the imports and the other
    reference functions, and its own name resolves to itself.
    """
    cell_source, match = _answer_cell(assignment, name)
    indented = textwrap.indent(textwrap.dedent(body).strip("\n"), match.group(1)) + "\n"
    source = cell_source[: match.start()] + indented + cell_source[match.end():]
    namespace = dict(load_namespace(assignment))
    exec(compile(source, f"<wrong answer for {name}>", "exec"), namespace)  # noqa: S102 - our own spec
    return namespace[name]


@functools.cache
def load_solutions(assignment: str) -> types.SimpleNamespace:
    """Execute ``assignment``'s import and answer cells; return what they define.

    Returns:
        A namespace whose attributes are the notebook's reference functions, e.g.
        ``load_solutions("example").softmax``.
    """
    namespace = load_namespace(assignment)
    return types.SimpleNamespace(**{k: v for k, v in namespace.items() if not k.startswith("__")})


def value_diagnoses(assignment: str, spec: Any) -> dict[str, Callable[..., Any]]:
    """``{hint: function}`` of the wrong answers of ``spec`` (a :class:`~autograder.judging.spec.GradedFunction`)
    that diagnose a value (:attr:`~autograder.judging.spec.WrongAnswer.diagnoses_value`), compiled by
    :func:`variant`: what a custom test runs on the student's inputs when the output is wrong."""
    return {w.hint: variant(assignment, spec.name, w.body) for w in spec.wrong_answers if w.diagnoses_value}
