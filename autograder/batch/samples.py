"""Sample submissions made from a source notebook, for the demo, the benchmark and the tests.

- :func:`correct_submission`: the release with every answer cell filled in with the
  reference solution (what a student who got everything right submits);
- :func:`blank_submission`: the release as students get it;
- :func:`with_one_answer_blank`: a correct submission with one answer cell reset to its stub;
- :func:`with_answer_body`: a correct submission with one function's body replaced, e.g. by
  :func:`wrong_body` (a plausible wrong answer) or :data:`CRASH_BODY` (kills the kernel);
- :func:`wrong_body`: the first wrong answer of the function's spec, else ``return <first argument>``.
"""

from __future__ import annotations

import ast
import copy
import textwrap

import nbformat

from autograder.notebook_format import SOLUTION_DELIMITER as _DELIMITER
from autograder.notebook_format import SOLUTION_REGION as _REGION

#: A function body that ends the kernel process as soon as the function is called.
CRASH_BODY = "import os\nos._exit(3)  # a hard crash: the kernel process dies"


def answer_ids(nb: nbformat.NotebookNode) -> list[str]:
    """grade_ids of the autograded-answer code cells, in notebook order."""
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
            and not c.metadata["nbgrader"].get("grade")]


def correct_submission(source: nbformat.NotebookNode, release: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The release with each answer cell's source replaced by the solution, delimiters removed."""
    solutions = {c.metadata["nbgrader"]["grade_id"]: _DELIMITER.sub("", c.source) for c in source.cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in solutions:
            cell.source = solutions[grade_id]
    return nb


def blank_submission(release: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The release unchanged: every answer is still a stub."""
    return copy.deepcopy(release)


def with_one_answer_blank(correct: nbformat.NotebookNode, release: nbformat.NotebookNode,
                          grade_id: str) -> nbformat.NotebookNode:
    """``correct`` with answer cell ``grade_id`` reset to the release's stub."""
    stubs = {c.metadata["nbgrader"]["grade_id"]: c.source for c in release.cells
             if c.metadata.get("nbgrader", {}).get("solution")}
    if grade_id not in stubs:
        raise KeyError(f"no answer cell with grade_id '{grade_id}'; have {sorted(stubs)}")
    nb = copy.deepcopy(correct)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = stubs[grade_id]
    return nb


def with_answer_body(correct: nbformat.NotebookNode, source: nbformat.NotebookNode, grade_id: str,
                     body: str) -> nbformat.NotebookNode:
    """``correct`` with the solution region of answer ``grade_id`` replaced by ``body``.

    ``body`` is dedented and indented like the ``### BEGIN SOLUTION`` line it replaces.
    """
    cell_source = _source_cell(source, grade_id).source
    match = _REGION.search(cell_source)
    if match is None:
        raise ValueError(f"answer cell '{grade_id}' has no ### BEGIN/END SOLUTION region")
    indent = match.group(1)
    new_body = textwrap.indent(textwrap.dedent(body).strip("\n"), indent) + "\n"
    replaced = cell_source[: match.start()] + new_body + cell_source[match.end():]
    nb = copy.deepcopy(correct)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = _DELIMITER.sub("", replaced)
    return nb


def wrong_body(assignment: str, source: nbformat.NotebookNode, grade_id: str) -> str:
    """A plausible wrong body for answer ``grade_id``.

    The first :class:`~autograder.judging.spec.WrongAnswer` of the function's spec; without one, a
    body that returns the function's first argument unchanged.
    """
    from autograder.judging.spec import load_specs

    try:
        spec = load_specs(assignment).get(grade_id)
    except (KeyError, AttributeError):  # no hidden tests, or a module without SPECS
        spec = None
    if spec is not None and spec.wrong_answers:
        return spec.wrong_answers[0].body
    tree = ast.parse(_DELIMITER.sub("", _source_cell(source, grade_id).source))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            args = [a.arg for a in node.args.posonlyargs + node.args.args]
            return f"return {args[0]}" if args else "return None"
    return "pass"


def _source_cell(source: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    for cell in source.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return cell
    raise KeyError(f"no cell with grade_id '{grade_id}' in the source notebook")
