"""Ordinary notebook accidents keep their honest score (issue 15, item 4).

A student who pastes a cell twice, adds a cell with nbgrader metadata, or changes a cell's
metadata gets the score that the code they wrote earns: the grader applies the rule written in
:mod:`autograder.execution.tampering` (and ``autograder/README.md``), nbgrader never crashes, and
``tests.csv`` says what the grader did.

The fast tests check the rule on the notebook; the batch grades every accident with the real
pipeline (sandboxed kernel, judge in the grading process) beside an honest student.
"""

from __future__ import annotations

import copy
import csv
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import nbformat
import pytest
from nbformat import NotebookNode

from autograder import source_notebook
from autograder.batch.grading import GradingRun, grade
from autograder.batch.samples import correct_submission, with_answer_body, wrong_body
from autograder.execution.tampering import inspect_cells, restore_metadata
from autograder.execution.worker import Limits
from autograder.notebook_format import grade_id_of, nbgrader_meta
from autograder.releasing.course import generate_assignment, make_course_dir
from tests.corpus.build import without_demo_cells

RELEASE_IDS = ["imports", "softmax", "test_softmax", "top_k_accuracy", "test_top_k_accuracy"]


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory: pytest.TempPathFactory) -> tuple[NotebookNode, NotebookNode, NotebookNode]:
    """(source, release, correct submission without the demo cells) of ``example``."""
    course = make_course_dir(tmp_path_factory.mktemp("accidents") / "course", ["example"])
    release = nbformat.read(generate_assignment(course, "example") / "example.ipynb", as_version=4)
    source = nbformat.read(source_notebook("example"), as_version=4)
    return source, release, without_demo_cells(correct_submission(source, release))


# -- the accidents ---------------------------------------------------------------------------


def _index(nb: NotebookNode, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if grade_id_of(c) == grade_id)


def _cell(nb: NotebookNode, grade_id: str) -> NotebookNode:
    return nb.cells[_index(nb, grade_id)]


def _copy(cell: NotebookNode) -> NotebookNode:
    """A pasted copy of ``cell`` (Jupyter gives a pasted cell a new id)."""
    new = copy.deepcopy(cell)
    new["id"] = uuid.uuid4().hex[:8]
    return new


def _paste_after(nb: NotebookNode, grade_id: str, *cells: NotebookNode) -> None:
    at = _index(nb, grade_id) + 1
    nb.cells[at:at] = list(cells)


def dup_answer(nb: NotebookNode, src: NotebookNode) -> None:
    _paste_after(nb, "softmax", _copy(_cell(nb, "softmax")))


def dup_test(nb: NotebookNode, src: NotebookNode) -> None:
    _paste_after(nb, "test_softmax", _copy(_cell(nb, "test_softmax")))


def dup_both(nb: NotebookNode, src: NotebookNode) -> None:
    nb.cells += [_copy(_cell(nb, "top_k_accuracy")), _copy(_cell(nb, "test_top_k_accuracy"))]


def pasted_metadata(nb: NotebookNode, src: NotebookNode) -> None:
    """Scratch cells made by pasting a graded cell and editing it: they carry its nbgrader metadata."""
    scratch_test = _copy(_cell(nb, "test_softmax"))
    scratch_test.source = "print(softmax(torch.zeros(1, 3)))"
    scratch_answer = _copy(_cell(nb, "top_k_accuracy"))
    scratch_answer.source = "probe = top_k_accuracy(torch.eye(3), torch.arange(3), k=1)\nprint(probe)"
    _paste_after(nb, "test_softmax", scratch_test)
    _paste_after(nb, "test_top_k_accuracy", scratch_answer)


def invented_metadata(nb: NotebookNode, src: NotebookNode) -> None:
    cell = nbformat.v4.new_code_cell("assert abs(float(softmax(torch.zeros(1, 2)).sum()) - 1) < 1e-6")
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "my_own_test", "locked": False, "points": 5,
                                 "schema_version": 3, "solution": False, "task": False}
    broken = nbformat.v4.new_code_cell("x = 1")
    broken.metadata["nbgrader"] = {"solution": True}  # no grade_id: nbgrader's validator refuses it
    _paste_after(nb, "test_softmax", cell, broken)


def points_changed(nb: NotebookNode, src: NotebookNode) -> None:
    _cell(nb, "test_top_k_accuracy").metadata["nbgrader"]["points"] = 0
    _cell(nb, "softmax").metadata["nbgrader"]["points"] = "three"


def grade_id_changed(nb: NotebookNode, src: NotebookNode) -> None:
    _cell(nb, "softmax").metadata["nbgrader"]["grade_id"] = "my_softmax"
    _cell(nb, "test_top_k_accuracy").metadata["nbgrader"]["grade_id"] = "test_topk"


def unlocked(nb: NotebookNode, src: NotebookNode) -> None:
    for gid in ("imports", "test_softmax"):
        _cell(nb, gid).metadata["nbgrader"]["locked"] = False
    _cell(nb, "test_top_k_accuracy").metadata["nbgrader"]["grade"] = False


def cell_types_changed(nb: NotebookNode, src: NotebookNode) -> None:
    """A markdown cell turned into code, and a test cell turned into markdown."""
    heading = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## 1."))
    md = nb.cells[heading]
    nb.cells[heading] = nbformat.v4.new_code_cell(md.source, metadata=md.metadata)
    test = _cell(nb, "test_top_k_accuracy")
    nb.cells[_index(nb, "test_top_k_accuracy")] = nbformat.v4.new_markdown_cell(test.source, metadata=test.metadata)


def metadata_deleted(nb: NotebookNode, src: NotebookNode) -> None:
    """nbgrader metadata deleted from an answer cell and a test cell, and from an edited test cell."""
    for gid in ("softmax", "test_softmax"):
        del _cell(nb, gid).metadata["nbgrader"]
    edited = _cell(nb, "test_top_k_accuracy")
    edited.source = "print('I checked it myself')"
    del edited.metadata["nbgrader"]


def wrong_duplicated(nb: NotebookNode, src: NotebookNode) -> None:
    nb.cells[:] = with_answer_body(nb, src, "softmax", wrong_body("example", src, "softmax")).cells
    _paste_after(nb, "softmax", _copy(_cell(nb, "softmax")))


def right_then_wrong(nb: NotebookNode, src: NotebookNode) -> None:
    """The last copy, which a student running top to bottom has, is wrong."""
    wrong = _cell(with_answer_body(nb, src, "softmax", wrong_body("example", src, "softmax")), "softmax")
    _paste_after(nb, "softmax", _copy(wrong))


def wrong_then_right(nb: NotebookNode, src: NotebookNode) -> None:
    """A fixed version pasted below a wrong one: the last copy is right."""
    right = _copy(_cell(nb, "softmax"))
    nb.cells[:] = with_answer_body(nb, src, "softmax", wrong_body("example", src, "softmax")).cells
    _paste_after(nb, "softmax", right)


@dataclass(frozen=True)
class Accident:
    student: str
    make: Callable[[NotebookNode, NotebookNode], None]
    points: dict[str, float]  # test grade_id -> points
    notes: tuple[str, ...]  # texts that tests.csv (tampering or notes column) must hold


FULL = {"test_softmax": 2.0, "test_top_k_accuracy": 2.0}
NO_SOFTMAX = {"test_softmax": 0.0, "test_top_k_accuracy": 2.0}

ACCIDENTS = [
    Accident("dupanswer", dup_answer, FULL, ("answer cell 'softmax' appears 2 times",)),
    Accident("duptest", dup_test, FULL, ("test cell 'test_softmax' appears 2 times",)),
    Accident("dupboth", dup_both, FULL, ("answer cell 'top_k_accuracy' appears 2 times",
                                         "test cell 'test_top_k_accuracy' appears 2 times")),
    Accident("pasted", pasted_metadata, FULL, ("test cell 'test_softmax' appears 2 times",
                                               "answer cell 'top_k_accuracy' appears 2 times")),
    Accident("invented", invented_metadata, FULL, ("grade_id 'my_own_test', which is not in the release",
                                                   "without a grade_id")),
    Accident("points", points_changed, FULL, ("points of 'test_top_k_accuracy' changed from 2",
                                              "nbgrader metadata of 'softmax' changed")),
    Accident("gradeid", grade_id_changed, FULL, ("grade_id 'my_softmax', which is not in the release",
                                                 "grade_id 'test_topk', which is not in the release",
                                                 "test cell 'test_top_k_accuracy' has lost its nbgrader metadata")),
    Accident("unlocked", unlocked, FULL, ("nbgrader metadata of 'test_softmax' changed (locked)",
                                          "nbgrader metadata of 'imports' changed (locked)",
                                          "nbgrader metadata of 'test_top_k_accuracy' changed (grade)")),
    Accident("celltypes", cell_types_changed, FULL, ("a markdown cell of the release was turned into code",
                                                     "nbgrader metadata of 'test_top_k_accuracy' changed (cell type)")),
    Accident("nometadata", metadata_deleted, FULL, ("answer cell 'softmax' has lost its nbgrader metadata",
                                                    "test cell 'test_softmax' has lost its nbgrader metadata",
                                                    "test cell 'test_top_k_accuracy' was deleted")),
    Accident("wrongdup", wrong_duplicated, NO_SOFTMAX, ("answer cell 'softmax' appears 2 times",)),
    Accident("rightthenwrong", right_then_wrong, NO_SOFTMAX, ("answer cell 'softmax' appears 2 times",)),
    Accident("wrongthenright", wrong_then_right, FULL, ("answer cell 'softmax' appears 2 times",)),
]


def accident_notebook(accident: Accident, source: NotebookNode, correct: NotebookNode) -> NotebookNode:
    nb = copy.deepcopy(correct)
    accident.make(nb, source)
    return nb


# -- the rule, on the notebook (fast) ---------------------------------------------------------


@pytest.mark.parametrize("accident", ACCIDENTS, ids=[a.student for a in ACCIDENTS])
def test_after_repair_each_release_cell_is_there_once_with_its_release_metadata(notebooks, accident) -> None:
    source, release, correct = notebooks
    nb = accident_notebook(accident, source, correct)
    changes = inspect_cells(nb, release)
    restore_metadata(nb, release)
    details = " | ".join(c.detail for c in changes)
    for text in accident.notes:
        assert text in details, details
    ids = [gid for c in nb.cells if (gid := grade_id_of(c))]
    assert sorted(ids) == sorted(RELEASE_IDS), ids
    release_cells = {grade_id_of(c): c for c in release.cells if grade_id_of(c)}
    for cell in nb.cells:
        if "nbgrader" in cell.metadata:
            ref = release_cells[grade_id_of(cell)]
            assert cell.metadata["nbgrader"] == ref.metadata["nbgrader"] and cell.cell_type == ref.cell_type
    order = [gid for gid in ids if gid in RELEASE_IDS]
    assert order == RELEASE_IDS, "each test cell stays after its answer cell"
    nbformat.validate(nb)


def test_an_untouched_submission_needs_no_repair(notebooks) -> None:
    source, release, correct = notebooks
    nb = copy.deepcopy(correct)
    assert inspect_cells(nb, release) == []
    restore_metadata(nb, release)
    assert nb == correct


def test_the_last_copy_of_a_duplicated_answer_is_the_answer_and_the_others_still_run(notebooks) -> None:
    source, release, correct = notebooks
    nb = accident_notebook(next(a for a in ACCIDENTS if a.student == "rightthenwrong"), source, correct)
    first, last = [c.source for c in nb.cells if grade_id_of(c) == "softmax"]
    restore_metadata(nb, release)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.source for c in code if grade_id_of(c) == "softmax"] == [last]
    assert any(c.source == first and not nbgrader_meta(c) for c in code), "the first copy runs as ordinary code"


def test_a_pasted_scratch_cell_runs_its_own_code_and_the_original_test_keeps_its_metadata(notebooks) -> None:
    source, release, correct = notebooks
    nb = accident_notebook(next(a for a in ACCIDENTS if a.student == "pasted"), source, correct)
    restore_metadata(nb, release)
    scratch = next(c for c in nb.cells if c.source == "print(softmax(torch.zeros(1, 3)))")
    assert "nbgrader" not in scratch.metadata
    assert _cell(nb, "test_softmax").source == _cell(release, "test_softmax").source
    answer = _cell(nb, "top_k_accuracy")
    assert answer.source.startswith("def top_k_accuracy"), "the copy that defines the function is the answer"


# -- the batch --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graded(notebooks, tmp_path_factory: pytest.TempPathFactory) -> GradingRun:
    source, release, correct = notebooks
    work = tmp_path_factory.mktemp("accidents-batch")
    lms = work / "lms"
    lms.mkdir()
    for accident in ACCIDENTS:
        nbformat.write(accident_notebook(accident, source, correct), lms / f"{accident.student}_example.ipynb")
    nbformat.write(correct, lms / "honest_example.ipynb")
    return grade(lms, work / "out", jobs=2, limits=Limits(timeout=240.0, cell_timeout=60.0), progress=False)


@pytest.mark.notebook
@pytest.mark.parametrize("accident", ACCIDENTS, ids=[a.student for a in ACCIDENTS])
def test_each_accident_keeps_the_score_its_code_earns(graded: GradingRun, accident: Accident) -> None:
    result = next(r for r in graded.results if r.student == accident.student)
    assert result.graded, result.notes
    assert {t.grade_id: t.points for t in result.tests} == accident.points, \
        [(t.grade_id, t.points, t.status, t.reason, t.tampering) for t in result.tests]
    assert result.max_score == 4
    rows = [r for r in csv.DictReader(open(graded.tests_csv, encoding="utf-8")) if r["student"] == accident.student]
    said = " | ".join(r["tampering"] + " | " + r["notes"] for r in rows)
    for text in accident.notes:
        assert text in said, said


@pytest.mark.notebook
def test_the_honest_student_beside_the_accidents_keeps_full_marks_and_no_notes(graded: GradingRun) -> None:
    result = next(r for r in graded.results if r.student == "honest")
    assert result.score == result.max_score == 4 and result.notes == []
    assert all(t.tampering == "" for t in result.tests)
