"""The faulty and hostile corpus (tests/corpus/build.py) graded in one parallel batch.

Every submission must be graded, in bounded time, with the score its honest part earns;
one submission's crash must cost no other submission anything; tampering is repaired and
reported; feedback never shows hidden tests.
"""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import nbformat
import pytest

from autograder import source_notebook
from autograder.batch.grading import GradingRun, grade
from autograder.execution.limits import Limits
from autograder.execution.redact import hidden_lines
from autograder.releasing.course import generate_assignment, make_course_dir
from tests.corpus.build import ASSIGNMENT, CASES, FULL, MEMORY_LIMIT, OLDER_TWICE, POINTS, Case, build_corpus
from tests.nbutil import max_score

pytestmark = pytest.mark.notebook

#: Per-submission limits of the corpus run (the infinite loop costs one cell timeout).
LIMITS = dict(timeout=150.0, cell_timeout=30.0, memory=MEMORY_LIMIT)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[GradingRun, float]:
    work = tmp_path_factory.mktemp("corpus")
    course = make_course_dir(work / "course", ["example"])
    release_dir = generate_assignment(course, "example")
    source = nbformat.read(source_notebook("example"), as_version=4)
    release = nbformat.read(release_dir / "example.ipynb", as_version=4)
    build_corpus(work / "lms", source, release)
    start = time.monotonic()
    run = grade(work / "lms", work / "out", jobs=2, limits=Limits(**LIMITS), progress=False)
    return run, time.monotonic() - start


def _result(run: GradingRun, student: str):
    return next(r for r in run.results if r.student == student)


@pytest.mark.parametrize("case", CASES, ids=[c.student for c in CASES])
def test_each_faulty_submission_gets_what_its_honest_part_earns(graded, case: Case) -> None:
    run, _ = graded
    result = _result(run, case.student)
    statuses = {t.grade_id: t.status for t in result.tests}
    assert statuses == case.statuses, [(t.grade_id, t.status, t.reason) for t in result.tests]
    assert result.score == case.score
    assert result.max_score == max_score(ASSIGNMENT)
    if case.reason:
        reasons = " ".join(t.reason for t in result.tests)
        assert any(option in reasons for option in case.reason.split("|")), reasons
    if case.tampering:
        assert any(case.tampering in t.tampering for t in result.tests), [t.tampering for t in result.tests]


def test_the_batch_finishes_in_bounded_time(graded) -> None:
    run, seconds = graded
    assert len(run.results) == len(CASES)
    # 16 submissions on 2 processes; one cell timeout (12 s) is the slowest attack.
    assert seconds < 600


def test_grades_csv_has_nbgrader_columns_and_one_row_per_student(graded) -> None:
    run, _ = graded
    rows = list(csv.DictReader(open(run.grades_csv, encoding="utf-8")))
    assert list(rows[0]) == ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name",
                             "email", "raw_score", "late_submission_penalty", "score", "max_score"]
    scores = {r["student_id"]: float(r["score"]) for r in rows}
    assert scores == {c.student: c.score for c in CASES}
    twice = next(r for r in rows if r["student_id"] == "twice")
    assert twice["timestamp"].startswith("2024-03-02 09:00:00")


def test_per_test_csv_records_status_and_reason(graded) -> None:
    run, _ = graded
    rows = list(csv.DictReader(open(run.tests_csv, encoding="utf-8")))
    assert list(rows[0])[:7] == ["student", "assignment", "grade_id", "points", "max_points", "status", "reason"]
    assert len(rows) == len(POINTS) * len(CASES)
    crash = next(r for r in rows if r["student"] == "segfault" and r["grade_id"] == "test_top_k_accuracy")
    assert crash["status"] == "error" and "kernel" in crash["reason"] and crash["points"] == "0"
    twice = [r for r in rows if r["student"] == "twice"]
    assert all(OLDER_TWICE in r["notes"] for r in twice)


def test_gradebook_is_an_nbgrader_gradebook_with_every_submission(graded) -> None:
    from nbgrader.api import Gradebook

    run, _ = graded
    with Gradebook(f"sqlite:///{run.out / 'gradebook.db'}") as gb:
        assert sorted(s.id for s in gb.students) == sorted(c.student for c in CASES)
        expected = {c.student: c.score for c in CASES}
        assert gb.find_submission("example", "José García").score == expected["José García"] == FULL
        assert gb.find_submission("example", "bigalloc").score == expected["bigalloc"] < FULL


def test_feedback_never_shows_a_hidden_test(graded) -> None:
    run, _ = graded
    source = nbformat.read(source_notebook("example"), as_version=4)
    secrets = {line for line in hidden_lines(source) if len(line) > 8}
    pages = sorted((run.out / "feedback").glob("*/example/example.html"))
    assert {p.parent.parent.name for p in pages} == {c.student for c in CASES}
    empty = (run.out / "feedback" / "empty" / "example" / "example.html").read_text(encoding="utf-8")
    assert "could not be graded: the submitted file is empty" in empty
    for page in pages:
        text = re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))
        assert "HIDDEN TESTS" not in text and "from autograder" not in text and "import grade" not in text
        assert not [s for s in secrets if s in text], page
    failed = (run.out / "feedback" / "editedtest" / "example" / "example.html").read_text(encoding="utf-8")
    assert "5 of 6 elements differ" in re.sub(r"<[^>]+>", "", failed)  # the student still sees why


def test_export_and_feedback_commands_rebuild_the_outputs(graded, tmp_path: Path) -> None:
    from autograder.__main__ import main

    run, _ = graded
    assert main(["export", "--out", str(run.out), "--to", str(tmp_path / "g.csv"),
                 "--tests-to", str(tmp_path / "t.csv")]) == 0
    assert (tmp_path / "g.csv").read_text() == run.grades_csv.read_text()
    assert (tmp_path / "t.csv").read_text() == run.tests_csv.read_text()
    page = run.out / "feedback" / "osexit" / "example" / "example.html"
    page.unlink()
    assert main(["feedback", "--out", str(run.out), "--student", "osexit"]) == 0
    assert "KernelDied" in page.read_text(encoding="utf-8")
