"""The written questions of an assignment: prompt, model answer, rubric and points.

The source notebook is the single source of truth. A question is a markdown cell with nbgrader
``solution: true`` and ``grade: true``; its prompt is the markdown cell just above it. The answer cell's
source is the model answer, then the rubric::

    **Answer.** ... the model answer ...

    **Rubric** (2 points)
    - (0.5) the first thing that earns points
    - (1.5) the second

Each item starts with its points in parentheses; the items add up to the cell's points
(``tests/test_manual_grading.py`` checks this for every question of every assignment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

#: the line that starts the rubric inside a model answer cell
RUBRIC_HEADING = "**Rubric**"
_ITEM = re.compile(r"^\s*[-*]\s+\((\d+(?:\.\d+)?)\)\s+(.+)$")


class QuestionError(ValueError):
    """A written question's cell is malformed (no rubric, items that do not add up)."""


@dataclass(frozen=True)
class RubricItem:
    """One point-earning item of a rubric."""

    points: float
    text: str


@dataclass(frozen=True)
class Question:
    """One manually graded markdown cell.

    Attributes:
        assignment: the assignment's name.
        notebook: the notebook's name without ``.ipynb`` (nbgrader's notebook id).
        grade_id: the cell's nbgrader ``grade_id``.
        points: its maximum score.
        prompt: markdown of the cell above it (the question as the student reads it).
        model_answer: markdown of the model answer (the cell's source without the rubric).
        rubric: the point-earning items, in order.
    """

    assignment: str
    notebook: str
    grade_id: str
    points: float
    prompt: str
    model_answer: str
    rubric: tuple[RubricItem, ...]


def split_answer_cell(source: str, grade_id: str = "?") -> tuple[str, tuple[RubricItem, ...]]:
    """Split a model answer cell's source into the model answer and its rubric items.

    Args:
        source: the markdown answer cell's source in the source notebook.
        grade_id: its grade_id, for error messages.

    Returns:
        ``(model_answer, items)``; ``items`` is empty when the cell has no ``**Rubric**`` heading.

    Raises:
        QuestionError: a rubric line under the heading is not ``- (points) text``.
    """
    head, sep, tail = source.partition(RUBRIC_HEADING)
    if not sep:
        return source.strip(), ()
    items = []
    for line in tail.splitlines()[1:]:
        if not line.strip():
            continue
        match = _ITEM.match(line)
        if not match:
            raise QuestionError(f"question '{grade_id}': rubric line {line.strip()!r} is not '- (points) text'; "
                                "each item under **Rubric** starts with its points in parentheses")
        items.append(RubricItem(float(match.group(1)), match.group(2).strip()))
    return head.strip(), tuple(items)


def is_question(cell: nbformat.NotebookNode) -> bool:
    """A manually graded markdown answer cell (nbgrader ``solution`` and ``grade``)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.cell_type == "markdown" and bool(meta.get("solution")) and bool(meta.get("grade"))


def questions_of_notebook(path: Path, assignment: str) -> list[Question]:
    """Every written question of one source notebook, in notebook order.

    Raises:
        QuestionError: a question has no rubric, or its items do not add up to its points.
    """
    nb = nbformat.read(path, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        if not is_question(cell):
            continue
        meta = cell.metadata["nbgrader"]
        grade_id, points = meta["grade_id"], float(meta.get("points", 0))
        answer, items = split_answer_cell(cell.source, grade_id)
        if not items:
            raise QuestionError(f"question '{grade_id}' of {path.name} has no rubric: add a '{RUBRIC_HEADING}' "
                                "line and '- (points) item' lines at the end of its model answer cell")
        total = sum(item.points for item in items)
        if abs(total - points) > 1e-9:
            raise QuestionError(f"question '{grade_id}' of {path.name}: its rubric items add up to {total:g} "
                                f"points; the cell is worth {points:g}. Fix the items or the cell's points")
        prompt = nb.cells[i - 1].source if i > 0 and nb.cells[i - 1].cell_type == "markdown" else ""
        found.append(Question(assignment, path.stem, grade_id, points, prompt.strip(), answer, items))
    return found


def load_questions(course: Path, assignment: str) -> list[Question]:
    """The written questions of ``assignment`` in the graded course ``course`` (its ``source/`` copy).

    Args:
        course: a graded course folder (the ``--out`` of ``python -m autograder grade``).
        assignment: the assignment's name.

    Raises:
        FileNotFoundError: the course has no source notebook for the assignment.
    """
    notebooks = sorted((course / "source" / assignment).glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no source notebook under {course / 'source' / assignment}; is {course} the "
                                "--out folder of `python -m autograder grade`?")
    return [q for path in notebooks for q in questions_of_notebook(path, assignment)]
