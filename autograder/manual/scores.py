"""The TA's scores, read back into the gradebook as nbgrader manual grades.

The CSV is what a page's **Export scores (CSV)** button writes (several pages' files can be read at once,
or concatenated): columns :data:`COLUMNS`, one row per student and question. ``score`` empty leaves the
question ungraded (its comment, if any, is still written); otherwise it must be a number from 0 to the
question's points. Every row is checked before anything is written: an unknown assignment, question or
student, a score out of range, or the same student and question twice with different scores, and nothing
is written; the error lists every bad row with its file and line.

A score goes to the cell's ``Grade.manual_score`` (nbgrader then counts it instead of the automatic score,
which is ``None`` for a markdown question) and clears ``needs_manual_grade``; a comment to
``Comment.manual_comment``. ``python -m autograder export`` and ``feedback`` then include them, exactly as
if the TA had used ``nbgrader formgrade``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from autograder.manual.questions import Question, load_questions

#: the CSV's columns, in the order the page writes them
COLUMNS = ("student", "assignment", "notebook", "grade_id", "score", "comment")
_REQUIRED = ("student", "assignment", "grade_id", "score")


class ScoreError(ValueError):
    """The scores file has rows that cannot be written; nothing was written."""


@dataclass(frozen=True)
class ManualScore:
    """One validated row: a student's score and comment on one question."""

    student: str
    question: Question
    score: float | None
    comment: str


def _parse_score(text: str, question: Question) -> tuple[float | None, str | None]:
    """``(score, problem)``: the score as a float (``None`` when empty), or why it is refused."""
    text = text.strip()
    if not text:
        return None, None
    try:
        value = float(text)
    except ValueError:
        return None, f"score {text!r} is not a number"
    if math.isnan(value) or not 0 <= value <= question.points:
        return None, f"score {text} is outside 0..{question.points:g} (the points of '{question.grade_id}')"
    return value, None


def parse_scores(course: Path, paths: list[Path]) -> list[ManualScore]:
    """Read and validate the scores files against the graded course.

    Args:
        course: the graded course (``--out`` of ``grade``).
        paths: CSV files with the columns :data:`COLUMNS` (``notebook`` and ``comment`` may be absent).

    Returns:
        One :class:`ManualScore` per distinct (student, question).

    Raises:
        ScoreError: any row is invalid; the message lists every problem as ``file:line: what``.
        FileNotFoundError: a file or the course's gradebook does not exist.
    """
    from autograder.manual.answers import students_of

    if not (course / "gradebook.db").exists():
        raise FileNotFoundError(f"no gradebook at {course / 'gradebook.db'}; run `python -m autograder grade` "
                                "first, and pass its --out folder")
    questions: dict[str, dict[str, Question]] = {}
    students: dict[str, set[str]] = {}
    known = {p.name for p in (course / "source").iterdir() if p.is_dir()} if (course / "source").exists() else set()
    problems: list[str] = []
    chosen: dict[tuple[str, str, str], tuple[ManualScore, str]] = {}
    for path in paths:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise ScoreError(f"{path}: no column {', '.join(missing)}; expected the columns "
                                 f"{', '.join(COLUMNS)} (the page's Export scores button writes them)")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                assignment, grade_id = row["assignment"].strip(), row["grade_id"].strip()
                student = row["student"].strip()
                if assignment not in known:
                    problems.append(f"{where}: unknown assignment {assignment!r}; this course has "
                                    f"{', '.join(sorted(known)) or 'none'}")
                    continue
                if assignment not in questions:
                    questions[assignment] = {q.grade_id: q for q in load_questions(course, assignment)}
                    students[assignment] = set(students_of(course, assignment))
                question = questions[assignment].get(grade_id)
                if question is None:
                    problems.append(f"{where}: {grade_id!r} is not a written question of {assignment}; its "
                                    f"questions are {', '.join(questions[assignment]) or 'none'}")
                    continue
                notebook = (row.get("notebook") or "").strip()
                if notebook and notebook != question.notebook:
                    problems.append(f"{where}: notebook {notebook!r}; '{grade_id}' is in {question.notebook!r}")
                    continue
                if student not in students[assignment]:
                    problems.append(f"{where}: student {student!r} has no submission of {assignment} in "
                                    f"{course / 'gradebook.db'}")
                    continue
                score, problem = _parse_score(row["score"] or "", question)
                if problem:
                    problems.append(f"{where}: {problem}")
                    continue
                entry = ManualScore(student, question, score, (row.get("comment") or "").strip())
                key = (assignment, grade_id, student)
                if key in chosen and (chosen[key][0].score, chosen[key][0].comment) != (score, entry.comment):
                    problems.append(f"{where}: {student}'s '{grade_id}' was already given "
                                    f"{_show(chosen[key][0].score)} at {chosen[key][1]}, here {_show(score)}; "
                                    "keep one row")
                    continue
                chosen[key] = (entry, where)
    if problems:
        raise ScoreError(f"nothing written: {len(problems)} problem(s) in the scores\n  " + "\n  ".join(problems))
    return [entry for entry, _ in chosen.values()]


def _show(score: float | None) -> str:
    return "no score" if score is None else f"{score:g}"


def write_scores(course: Path, scores: list[ManualScore]) -> int:
    """Write validated scores and comments into the course's gradebook as manual grades.

    Returns:
        How many scores were written (comments without a score are written too, not counted).
    """
    from nbgrader.api import Gradebook

    from autograder.batch.grading import db_url
    from autograder.execution.records import quiet_sqlalchemy

    written = 0
    with Gradebook(db_url(course)) as gb, quiet_sqlalchemy():
        for entry in scores:
            q = entry.question
            if entry.score is not None:
                grade = gb.find_grade(q.grade_id, q.notebook, q.assignment, entry.student)
                grade.manual_score = entry.score
                grade.needs_manual_grade = False
                written += 1
            if entry.comment:
                comment = gb.find_comment(q.grade_id, q.notebook, q.assignment, entry.student)
                comment.manual_comment = entry.comment
        gb.db.commit()
    return written
