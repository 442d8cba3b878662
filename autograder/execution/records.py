"""What goes into grading one notebook and what comes out: the submission, its per-test results.

A worker (:mod:`autograder.execution.worker`) grades one :class:`Submission` in its own course directory
and returns a :class:`SubmissionResult`: the grades and comments nbgrader saved in that course's
gradebook (:func:`gradebook_rows`), and one :class:`TestResult` per graded cell (:func:`test_results`).
These types live below the batch layer, which finds submissions and merges results
(:mod:`autograder.batch`), so that the execution layer never imports upward.

Test statuses:

- ``passed``: the test cell's verdict passed and the cell earned its points;
- ``failed``: the judge found a wrong answer (or the cell's visible check did), or a policy finding;
  a markdown answer left as the stub ("no answer");
- ``error``: no verdict because the cell raised something else, timed out, or the kernel died in it
  (the reason says which);
- ``not_run``: the cell never ran (the notebook could not be graded, the kernel was given up on, the
  time budget was spent) or is graded by hand.
"""

from __future__ import annotations

import contextlib
import json
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from autograder.execution.redact import scrub_text
from autograder.execution.tampering import CellChange, grade_id_of, is_graded

#: Files larger than this are not read (a notebook with outputs is a few MB).
MAX_NOTEBOOK_BYTES = 512 * 1024**2

@dataclass
class Submission:
    """One notebook to grade, and where it came from."""

    student: str
    assignment: str | None
    path: str  # the file, or the zip holding it
    member: str | None = None  # the zip entry, if any
    timestamp: str | None = None  # ISO 8601 UTC, or the text of nbgrader's timestamp.txt
    timestamp_source: str = ""
    layout: str = "lms"  # "nbgrader" or "lms"
    notes: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        """Where the notebook is, for people: ``path`` or ``zip:member``."""
        return f"{self.path}:{self.member}" if self.member else self.path

    def read_bytes(self) -> bytes:
        """The notebook file's bytes.

        Raises:
            OSError: when the file cannot be read or is larger than :data:`MAX_NOTEBOOK_BYTES`.
        """
        if self.member is None:
            size = Path(self.path).stat().st_size
            if size > MAX_NOTEBOOK_BYTES:
                raise OSError(f"the file is {size / 1024**2:.0f} MB, more than a notebook can be")
            return Path(self.path).read_bytes()
        with zipfile.ZipFile(self.path) as zf:
            info = zf.getinfo(self.member)
            if info.file_size > MAX_NOTEBOOK_BYTES:
                raise OSError(f"the file is {info.file_size / 1024**2:.0f} MB, more than a notebook can be")
            return zf.read(info)



STATUSES = ("passed", "failed", "error", "not_run")
#: How a reason quoting the kernel's own error begins: what follows is the kernel's text, not the grader's word.
RAISED = "the cell raised "


def raised(error: NotebookNode) -> str:
    """A reason that quotes an error output of the kernel, marked as the kernel's own words."""
    return f"{RAISED}{error.get('ename', 'Error')}: {error.get('evalue', '')}"


_REASON_CHARS = 400


@dataclass
class TestResult:
    """The outcome of one graded cell."""

    grade_id: str
    points: float
    max_points: float
    status: str
    reason: str = ""
    tampering: str = ""
    manual: bool = False  # graded by hand (an answer cell, e.g. a markdown question)
    wrong_answer: str = ""  # the spec's wrong answer the output matched (the judge's verdict)
    hint: str = ""  # that wrong answer's hint
    finding: str = ""  # a use of a library the function's policy forbids


@dataclass
class SubmissionResult:
    """Everything the parent process needs from one graded submission (JSON-serializable)."""

    student: str
    assignment: str
    origin: str
    timestamp: str | None = None
    graded: bool = True  # False: rejected or crashed before nbgrader saved grades
    notes: list[str] = field(default_factory=list)
    tests: list[TestResult] = field(default_factory=list)
    #: nbgrader Grade rows: {notebook, cell, auto_score, manual_score, extra_credit, needs_manual_grade}
    grades: list[dict[str, Any]] = field(default_factory=list)
    #: nbgrader Comment rows: {notebook, cell, auto_comment, manual_comment}
    comments: list[dict[str, Any]] = field(default_factory=list)
    late_penalties: dict[str, float | None] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # "submitted"/"autograded"/"feedback" -> path

    @property
    def score(self) -> float:
        return sum(t.points for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_points for t in self.tests)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> SubmissionResult:
        data = json.loads(text)
        data["tests"] = [TestResult(**t) for t in data.get("tests", [])]
        return cls(**data)


def release_tests(release: NotebookNode) -> list[tuple[str, float]]:
    """``(grade_id, points)`` of the release's graded cells, in notebook order."""
    return [(gid, float(c.metadata["nbgrader"].get("points", 0))) for c in release.cells
            if is_graded(c) and (gid := grade_id_of(c))]


def rejected_result(student: str, assignment: str, origin: str, release: NotebookNode, reason: str,
                    timestamp: str | None = None, notes: list[str] | None = None) -> SubmissionResult:
    """A submission that could not be graded: every test ``not_run`` with 0 points and ``reason``."""
    tests = [TestResult(gid, 0.0, pts, "not_run", reason) for gid, pts in release_tests(release)]
    return SubmissionResult(student, assignment, origin, timestamp, graded=False, notes=[*(notes or []), reason],
                            tests=tests)


def test_results(autograded: NotebookNode, release: NotebookNode, scores: dict[str, tuple[float | None, float]],
                 changes: list[CellChange], hidden: set[str]) -> list[TestResult]:
    """One :class:`TestResult` per graded cell of the release, from the gradebook and the executor's record.

    The points are the gradebook's (for a test cell: its verdict's). The status, the reason and the
    verdict's data come from ``metadata.autograder``, which only the executor writes (a submission's own
    copy is dropped before the kernel starts); no output's name or text is read.

    Args:
        autograded: the notebook after nbgrader's autograde (with the executor's
            ``metadata.autograder`` outcomes and verdicts).
        release: the release notebook (which tests exist, in which order).
        scores: ``grade_id -> (auto_score, max_score)`` from the gradebook.
        changes: tampering found before grading.
        hidden: hidden-test lines to keep out of the reasons.
    """
    cells = {gid: c for c in autograded.cells if (gid := grade_id_of(c))}
    tampering: dict[str, list[str]] = {}
    for change in changes:
        tampering.setdefault(change.grade_id, []).append(change.detail)
    results = []
    for gid, max_points in release_tests(release):
        auto, max_score = scores.get(gid, (None, max_points))
        cell = cells.get(gid)
        points = float(auto or 0.0)
        status, reason = _status(cell, auto, float(max_score))
        verdict = (cell.metadata.get("autograder", {}).get("verdict") if cell is not None else None) or {}
        manual = cell is not None and bool(cell.metadata.get("nbgrader", {}).get("solution"))
        results.append(TestResult(gid, points, float(max_score), status, scrub_text(reason, hidden)[:_REASON_CHARS],
                                  "; ".join(tampering.get(gid, [])), manual,
                                  str(verdict.get("wrong_answer", "")), str(verdict.get("hint", "")),
                                  str(verdict.get("finding", ""))))
    return results


def _status(cell: NotebookNode | None, auto: float | None, max_points: float) -> tuple[str, str]:
    if cell is None:
        return "not_run", "the test cell is missing from the graded notebook"
    points = float(auto or 0.0)
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("solution"):  # an answer graded by hand (e.g. a markdown question): nbgrader gives
        # 0 to an unchanged stub and leaves anything else to a human
        return ("failed", "no answer") if auto == 0 else ("not_run", "graded by hand")
    record = cell.metadata.get("autograder", {})
    kind, why = record.get("outcome"), _first_line(record.get("reason") or "")
    verdict = record.get("verdict") or {}
    if kind == "not_run" or kind is None:
        return "not_run", why or "the cell was not run"
    if kind == "died":
        return "error", f"the kernel died while running this test: {why}"
    if kind == "timeout":
        return "error", f"timed out: {why}"
    if verdict:
        message = _first_line(str(verdict.get("message", "")))
        if verdict.get("passed") and points >= max_points:
            return "passed", "wrote to stderr (not counted as a failure)" if record.get("stderr") else ""
        if verdict.get("passed"):
            return "failed", "the cell wrote to stderr, which --strict-stderr scores as a failure"
        if kind == "error" or message.startswith("no verdict"):
            # The cell's own code stopped before (or without) a passing verdict: its error is the story. A visible
            # check's assertion is a wrong answer. The label is the kernel's to choose, the points (0) are not.
            return ("failed" if why.startswith(f"{RAISED}AssertionError") else "error"), why or message
        return "failed", message or "a hidden test failed"
    if kind == "error":
        return "error", why
    if points >= max_points:
        return "passed", ""
    return "failed", f"partial credit {points:g}/{max_points:g}"


def _first_line(text: str) -> str:
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


# -- the gradebook --------------------------------------------------------------------------


def readable_timestamp(text: str | None) -> str | None:
    """``text`` if nbgrader can read it as a time stamp, else None."""
    from nbgrader.utils import parse_utc

    if not text:
        return None
    try:
        parse_utc(text)
    except (ValueError, OverflowError):
        return None
    return text


@contextlib.contextmanager
def quiet_sqlalchemy() -> Iterator[None]:
    """Silence the SAWarning nbgrader's ``add_submission`` triggers under SQLAlchemy 2 (harmless)."""
    from sqlalchemy.exc import SAWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        yield


def gradebook_rows(db_url: str, assignment: str, student: str) -> tuple[list[dict], list[dict], dict]:
    """Grades, comments and late penalties of one submission, as :class:`SubmissionResult` wants them."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        submission = gb.find_submission(assignment, student)
        grades, comments, penalties = [], [], {}
        for nb in submission.notebooks:
            penalties[nb.name] = nb.late_submission_penalty
            for g in nb.grades:
                grades.append({"notebook": nb.name, "cell": g.name, "auto_score": g.auto_score,
                               "manual_score": g.manual_score, "extra_credit": g.extra_credit,
                               "needs_manual_grade": bool(g.needs_manual_grade), "max_score": g.max_score})
            for c in nb.comments:
                comments.append({"notebook": nb.name, "cell": c.name, "auto_comment": c.auto_comment,
                                 "manual_comment": c.manual_comment})
    return grades, comments, penalties
