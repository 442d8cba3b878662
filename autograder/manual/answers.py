"""Every student's answer to one written question, blank ones marked, identical ones grouped.

Answers come from the graded course: the students are those with a submission of the assignment in
``gradebook.db``; the text is the question's cell of ``autograded/<student>/<assignment>/<notebook>.ipynb``
(the notebook the grader scored, after the tampering repair). A student whose notebook or cell is missing
has a blank answer. Two answers are identical when they are equal after collapsing white space; a group
gets one score, which the page gives to each of its students.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.manual.questions import Question

#: what nbgrader's release leaves in a markdown answer cell (``ClearSolutions.text_stub``)
STUB = "YOUR ANSWER HERE"


@dataclass
class AnswerGroup:
    """Students who wrote the same answer (after white space is collapsed).

    Attributes:
        key: a short stable id of the text (``blank`` for the blank group).
        text: the answer's markdown, as the first of them wrote it.
        students: their ids, sorted.
        blank: no answer (empty, or the release's stub): pre-scored 0.
        score: a score already in the gradebook when all of them have the same one, else ``None``.
        comment: a comment already in the gradebook when all of them have the same one, else ``""``.
    """

    key: str
    text: str
    students: list[str] = field(default_factory=list)
    blank: bool = False
    score: float | None = None
    comment: str = ""


def normalize(text: str) -> str:
    """The text with runs of white space collapsed to one space, ends stripped."""
    return re.sub(r"\s+", " ", text).strip()


def is_blank(text: str) -> bool:
    """Empty, or nothing but the release's stub."""
    return normalize(text) in ("", STUB)


def read_answer(course: Path, question: Question, student: str) -> str:
    """The student's markdown for ``question`` in their graded notebook ("" when absent)."""
    path = course / "autograded" / student / question.assignment / f"{question.notebook}.ipynb"
    if not path.exists():
        return ""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable notebook is a blank answer here; grade reports why
        return ""
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == question.grade_id:
            return cell.source if cell.cell_type == "markdown" else ""
    return ""


def students_of(course: Path, assignment: str) -> list[str]:
    """Students with a submission of ``assignment`` in the course's gradebook, sorted."""
    from nbgrader.api import Gradebook, MissingEntry

    from autograder.batch.grading import db_url

    with Gradebook(db_url(course)) as gb:
        try:
            return sorted(s.student.id for s in gb.find_assignment(assignment).submissions)
        except MissingEntry:   # in source/ but never graded
            return []


def existing_grades(course: Path, question: Question) -> dict[str, tuple[float | None, str]]:
    """``student -> (manual_score, manual_comment)`` already in the gradebook for ``question``."""
    from nbgrader.api import Gradebook

    from autograder.batch.grading import db_url

    found: dict[str, tuple[float | None, str]] = {}
    if not students_of(course, question.assignment):
        return found
    with Gradebook(db_url(course)) as gb:
        for sub in gb.find_assignment(question.assignment).submissions:
            student = sub.student.id
            grade = gb.find_grade(question.grade_id, question.notebook, question.assignment, student)
            comment = gb.find_comment(question.grade_id, question.notebook, question.assignment, student)
            found[student] = (grade.manual_score, comment.manual_comment or "")
    return found


def group_answers(answers: dict[str, str], grades: dict[str, tuple[float | None, str]] | None = None
                  ) -> list[AnswerGroup]:
    """Group identical answers.

    Args:
        answers: ``student -> markdown``.
        grades: ``student -> (score, comment)`` already given (see :func:`existing_grades`).

    Returns:
        The groups, the largest first (ties by first student), the blank group last. A blank group's score
        is 0 unless the gradebook already holds one.
    """
    grades = grades or {}
    groups: dict[str, AnswerGroup] = {}
    for student in sorted(answers):
        text = answers[student]
        blank = is_blank(text)
        norm = "" if blank else normalize(text)
        key = "blank" if blank else hashlib.sha256(norm.encode()).hexdigest()[:10]
        group = groups.setdefault(key, AnswerGroup(key=key, text="" if blank else text, blank=blank))
        group.students.append(student)
    for group in groups.values():
        given = [grades.get(s, (None, "")) for s in group.students]
        scores = {score for score, _ in given}
        comments = {comment for _, comment in given}
        group.score = scores.pop() if len(scores) == 1 else None
        group.comment = comments.pop() if len(comments) == 1 else ""
        if group.blank and group.score is None:
            group.score = 0.0
    return sorted(groups.values(), key=lambda g: (g.blank, -len(g.students), g.students[0]))


def collect(course: Path, question: Question) -> list[AnswerGroup]:
    """The grouped answers of every student with a submission, with the grades already given."""
    students = students_of(course, question.assignment)
    answers = {s: read_answer(course, question, s) for s in students}
    return group_answers(answers, existing_grades(course, question))
