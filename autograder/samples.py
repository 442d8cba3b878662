"""Sample submissions made from a source notebook, for the demo and the tests.

- :func:`correct_submission`: the release with every answer cell filled in with the
  reference solution (what a student who got everything right submits);
- :func:`blank_submission`: the release as students get it;
- :func:`with_one_answer_blank`: a correct submission with one answer cell reset to
  its stub.
"""

from __future__ import annotations

import copy
import re

import nbformat

_DELIMITER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)


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
