"""Merging graded submissions into one course: the gradebook, the CSVs, the summary.

:func:`merge_into_gradebook` writes each worker's :class:`~autograder.execution.records.SubmissionResult`
into the output course's ``gradebook.db`` through nbgrader's Gradebook API, so ``nbgrader export``,
``formgrade`` and ``generate_feedback`` work on the result as on any nbgrader course.
:func:`export_grades` writes ``grades.csv`` with nbgrader's own CSV export plugin (the same columns and
formatting as ``nbgrader export``), :func:`write_test_csv` the per-test CSV (the statuses are
:mod:`autograder.execution.records`').
"""

from __future__ import annotations

import csv
from pathlib import Path

from autograder.execution.records import STATUSES, SubmissionResult, quiet_sqlalchemy, readable_timestamp

TEST_COLUMNS = ("student", "assignment", "grade_id", "points", "max_points", "status", "reason", "tampering",
                "notes", "wrong_answer", "hint", "finding")


def merge_into_gradebook(db_url: str, result: SubmissionResult, notebook_ids: list[str]) -> None:
    """Write one submission into the output gradebook, replacing an earlier one of that student.

    Args:
        db_url: the output course's gradebook.
        result: the worker's result.
        notebook_ids: the assignment's notebook names (to zero a rejected submission).
    """
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb, quiet_sqlalchemy():
        gb.update_or_create_student(result.student)
        try:
            gb.remove_submission(result.assignment, result.student)
        except MissingEntry:
            pass
        stamp = readable_timestamp(result.timestamp)
        kwargs = {"timestamp": stamp} if stamp else {}
        gb.add_submission(result.assignment, result.student, **kwargs)
        if result.graded:
            for row in result.grades:
                grade = gb.find_grade(row["cell"], row["notebook"], result.assignment, result.student)
                grade.auto_score = row["auto_score"]
                grade.manual_score = row["manual_score"]
                grade.extra_credit = row["extra_credit"]
                grade.needs_manual_grade = row["needs_manual_grade"]
            for row in result.comments:
                comment = gb.find_comment(row["cell"], row["notebook"], result.assignment, result.student)
                comment.auto_comment = row["auto_comment"]
                comment.manual_comment = row["manual_comment"]
            for notebook, penalty in result.late_penalties.items():
                gb.find_submission_notebook(notebook, result.assignment, result.student) \
                    .late_submission_penalty = penalty
        else:  # what nbgrader does for a notebook that was not submitted: zero, nothing to grade by hand
            for notebook in notebook_ids:
                for grade in gb.find_submission_notebook(notebook, result.assignment, result.student).grades:
                    grade.auto_score = 0
                    grade.needs_manual_grade = False
        gb.db.commit()


def export_grades(db_url: str, dest: Path) -> Path:
    """``grades.csv`` by nbgrader's CSV export plugin (what ``nbgrader export`` writes)."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    dest.parent.mkdir(parents=True, exist_ok=True)
    with Gradebook(db_url) as gb:
        CsvExportPlugin(to=str(dest)).export(gb)
    return dest


def write_test_csv(results: list[SubmissionResult], dest: Path) -> Path:
    """The per-test CSV: one row per (submission, graded cell); columns :data:`TEST_COLUMNS`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(TEST_COLUMNS)
        for r in sorted(results, key=lambda r: (r.assignment, r.student)):
            notes = "; ".join(r.notes)
            for t in r.tests:
                writer.writerow([r.student, r.assignment, t.grade_id, f"{t.points:g}", f"{t.max_points:g}",
                                 t.status, t.reason, t.tampering, notes, t.wrong_answer, t.hint, t.finding])
    return dest


def summary_table(results: list[SubmissionResult]) -> str:
    """A plain-text table: one line per submission with its score and test statuses."""
    rows = sorted(results, key=lambda r: (r.assignment, r.student))
    width = max([len(r.student) for r in rows] + [7])
    awidth = max([len(r.assignment) for r in rows] + [10])
    head = (f"{'assignment':<{awidth}}  {'student':<{width}}  {'score':>6} {'max':>5}  "
            f"{'pass':>4} {'fail':>4} {'err':>4} {'skip':>4}  notes")
    lines = [head, "-" * len(head)]
    for r in rows:
        counts = {s: sum(t.status == s for t in r.tests) for s in STATUSES}
        note = _short_note(r)
        lines.append(f"{r.assignment:<{awidth}}  {r.student:<{width}}  {r.score:>6.1f} {r.max_score:>5.1f}  "
                     f"{counts['passed']:>4} {counts['failed']:>4} {counts['error']:>4} {counts['not_run']:>4}  "
                     f"{note}")
    flagged = [(r, t) for r in rows for t in r.tests if t.finding]
    if flagged:
        lines.append(f"\npolicy findings to review ({len({(r.assignment, r.student) for r, _ in flagged})} students; "
                     "a TA can overrule one with a manual grade):")
        lines.extend(f"  {r.assignment}/{r.student} {t.grade_id}: {t.finding[:100]}" for r, t in flagged)
    return "\n".join(lines)


def _short_note(r: SubmissionResult) -> str:
    bits = []
    if not r.graded:
        bits.append(r.notes[-1] if r.notes else "not graded")
    else:
        problems = [f"{t.grade_id}: {t.reason}" for t in r.tests if t.status == "error"]
        bits.extend(problems[:1])
        if any(t.tampering for t in r.tests) or any("locked cell" in n for n in r.notes):
            bits.append("tampering repaired")
        bits.extend(n for n in r.notes if n.startswith("newest of"))
    text = "; ".join(bits)
    return text if len(text) <= 90 else text[:87] + "..."
