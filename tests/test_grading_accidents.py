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
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import nbformat
import pytest
from nbformat import NotebookNode

from autograder import source_notebook
from autograder.batch.grading import GradingRun, grade
from autograder.batch.samples import correct_submission, with_answer_body, wrong_body
from autograder.execution.limits import Limits
from autograder.execution.tampering import inspect_cells, restore_metadata
from autograder.notebook_format import grade_id_of, nbgrader_meta
from autograder.releasing.course import generate_assignment, make_course_dir
from tests.corpus.build import without_demo_cells
from tests.nbutil import graded_points, max_score

NV = "network_visualization"


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[NotebookNode, NotebookNode, NotebookNode]]:
    """assignment -> (source, release, correct submission without the demo cells), for ``example`` and NV."""
    root = make_course_dir(tmp_path_factory.mktemp("accidents") / "course", ["example", NV])
    out = {}
    for assignment in ("example", NV):
        release = nbformat.read(generate_assignment(root, assignment) / f"{assignment}.ipynb", as_version=4)
        source = nbformat.read(source_notebook(assignment), as_version=4)
        out[assignment] = (source, release, without_demo_cells(correct_submission(source, release)))
    return out


@pytest.fixture(scope="module")
def notebooks(course) -> tuple[NotebookNode, NotebookNode, NotebookNode]:
    """(source, release, correct submission without the demo cells) of ``example``."""
    return course["example"]


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


def wrong_after_its_test(nb: NotebookNode, src: NotebookNode) -> None:
    """A wrong copy pasted after the test: the test ran on the right definition, as in the student's own run."""
    wrong = _cell(with_answer_body(nb, src, "softmax", wrong_body("example", src, "softmax")), "softmax")
    _paste_after(nb, "test_softmax", _copy(wrong))


@dataclass(frozen=True)
class Accident:
    student: str
    make: Callable[[NotebookNode, NotebookNode], None]
    points: dict[str, float]  # test grade_id -> points
    notes: tuple[str, ...]  # texts that tests.csv (tampering or notes column) must hold


#: Every test of the example keeps its points, or every test but ``softmax``'s.
FULL = graded_points("example")
NO_SOFTMAX = {**FULL, "test_softmax": 0.0}

ACCIDENTS = [
    Accident("dupanswer", dup_answer, FULL, ("answer cell 'softmax' appears 2 times",)),
    Accident("duptest", dup_test, FULL, ("test cell 'test_softmax' appears 2 times",)),
    Accident("dupboth", dup_both, FULL, ("answer cell 'top_k_accuracy' appears 2 times",
                                         "test cell 'test_top_k_accuracy' appears 2 times")),
    Accident("pasted", pasted_metadata, FULL, ("test cell 'test_softmax' appears 2 times",
                                               "answer cell 'top_k_accuracy' appears 2 times")),
    Accident("invented", invented_metadata, FULL, ("grade_id 'my_own_test', which is not in the release",
                                                   "without a grade_id")),
    Accident("points", points_changed, FULL, (f"points of 'test_top_k_accuracy' changed from "
                                              f"{FULL['test_top_k_accuracy']} to ",
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
    Accident("wrongafter", wrong_after_its_test, FULL, ("the last copy that defines softmax before its test",
                                                        "a test uses the definition in force where it stands")),
]


# The same rule on a second assignment, with hand-graded markdown answers (graded_points(NV, manual=True)).


def nv_pair_pasted_again(nb: NotebookNode, src: NotebookNode) -> None:
    """A student who re-ran a fixed version pasted the Grad-CAM answer and its test at the end."""
    nb.cells += [_copy(_cell(nb, "compute_gradcam")), _copy(_cell(nb, "test_compute_gradcam"))]


def nv_inline_pasted_and_test_metadata_lost(nb: NotebookNode, src: NotebookNode) -> None:
    second = _copy(_cell(nb, "inline_question_fooling"))
    second.source = "**Answer, second try.** Many tiny aligned changes add up."
    _paste_after(nb, "inline_question_fooling", second)
    del _cell(nb, "test_compute_saliency_maps").metadata["nbgrader"]


def nv_wrong_duplicated(nb: NotebookNode, src: NotebookNode) -> None:
    nb.cells[:] = with_answer_body(nb, src, "compute_saliency_maps",
                                   wrong_body(NV, src, "compute_saliency_maps")).cells
    _paste_after(nb, "compute_saliency_maps", _copy(_cell(nb, "compute_saliency_maps")))


#: student -> (accident, the test whose points it loses (None: none), texts tests.csv must hold)
NV_ACCIDENTS = {
    "nvpair": (nv_pair_pasted_again, None, ("answer cell 'compute_gradcam' appears 2 times",
                                            "test cell 'test_compute_gradcam' appears 2 times")),
    "nvinline": (nv_inline_pasted_and_test_metadata_lost, None,
                 ("answer cell 'inline_question_fooling' appears 2 times",
                  "test cell 'test_compute_saliency_maps' has lost its nbgrader metadata")),
    "nvwrongdup": (nv_wrong_duplicated, "test_compute_saliency_maps",
                   ("answer cell 'compute_saliency_maps' appears 2 times",)),
}


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
    _assert_repaired(nb, release)


def _assert_repaired(nb: NotebookNode, release: NotebookNode) -> None:
    """Each release grade_id on exactly one cell, with the release's metadata and type, each test after its answer."""
    release_ids = [gid for c in release.cells if (gid := grade_id_of(c))]
    ids = [gid for c in nb.cells if (gid := grade_id_of(c))]
    assert sorted(ids) == sorted(release_ids), ids
    for gid in release_ids:
        if gid.startswith("test_") and gid.removeprefix("test_") in release_ids:
            assert ids.index(gid.removeprefix("test_")) < ids.index(gid), f"{gid} comes before its answer"
    release_cells = {grade_id_of(c): c for c in release.cells if grade_id_of(c)}
    for cell in nb.cells:
        if "nbgrader" in cell.metadata:
            ref = release_cells[grade_id_of(cell)]
            assert cell.metadata["nbgrader"] == ref.metadata["nbgrader"] and cell.cell_type == ref.cell_type
    nbformat.validate(nb)


@pytest.mark.parametrize("student", ["nvpair", "nvinline", "nvwrongdup"])
def test_the_rule_repairs_network_visualization_accidents_too(course, student: str) -> None:
    source, release, correct = course[NV]
    nb = copy.deepcopy(correct)
    make, _, notes = NV_ACCIDENTS[student]
    make(nb, source)
    details = " | ".join(c.detail for c in inspect_cells(nb, release))
    assert all(text in details for text in notes), details
    restore_metadata(nb, release)
    _assert_repaired(nb, release)


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



def test_a_notebook_without_cell_ids_stays_valid_after_repair(notebooks) -> None:
    """An nbformat 4.4 file (no cell ids) gets no ids from the cells the grader inserts or converts."""
    source, release, correct = notebooks
    data = json.loads(nbformat.writes(correct))
    data["nbformat_minor"] = 4
    for cell in data["cells"]:
        cell.pop("id", None)
    nb = nbformat.reads(json.dumps(data), as_version=4)
    nb.cells.pop(_index(nb, "test_softmax"))
    cell_types_changed(nb, source)
    for cell in nb.cells:
        cell.pop("id", None)
    restore_metadata(nb, release)
    assert nb.nbformat_minor == 4 and not any("id" in c for c in nb.cells)
    _assert_repaired(nb, release)


def _mutate(nb: NotebookNode, rng: random.Random) -> None:
    """One random accident: a pasted copy, lost or invented metadata, a changed flag, grade_id or cell type."""
    i = rng.randrange(len(nb.cells))
    cell = nb.cells[i]
    meta = cell.metadata.get("nbgrader")
    kind = rng.choice(["paste", "paste", "drop", "invent", "flag", "grade_id", "type", "delete", "garbage"])
    if kind == "paste":
        nb.cells.insert(rng.randrange(len(nb.cells) + 1), _copy(cell))
    elif kind == "drop":
        cell.metadata.pop("nbgrader", None)
    elif kind == "invent":
        new = nbformat.v4.new_code_cell("x = 1")
        new.metadata["nbgrader"] = {"grade": rng.random() < 0.5, "grade_id": rng.choice(["mine", "softmax", ""]),
                                    "points": rng.choice([1, -3, "x"]), "solution": rng.random() < 0.5}
        nb.cells.insert(i, new)
    elif kind == "flag" and isinstance(meta, dict):
        meta[rng.choice(["grade", "solution", "locked", "points", "task"])] = rng.choice([True, False, 7, None])
    elif kind == "grade_id" and isinstance(meta, dict):
        meta["grade_id"] = rng.choice(["other", "test_softmax", "top_k_accuracy", 5, None])
    elif kind == "type":
        kind_to = rng.choice(["code", "markdown", "raw"])
        nb.cells[i] = _as_cell_type(cell, kind_to)
    elif kind == "delete" and len(nb.cells) > 2:
        nb.cells.pop(i)
    elif kind == "garbage":
        cell.metadata["nbgrader"] = rng.choice(["text", [1, 2], {"grade_id": "softmax", "points": {}}])


def _as_cell_type(cell: NotebookNode, cell_type: str) -> NotebookNode:
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
            "raw": nbformat.v4.new_raw_cell}[cell_type]
    return make(cell.source, metadata=cell.metadata)


def test_random_accidents_always_leave_each_release_cell_once_with_valid_metadata(notebooks) -> None:
    """500 notebooks with 1 to 6 random accidents each: nbgrader's own validator accepts every repair."""
    from nbgrader.nbgraderformat import MetadataValidator

    source, release, correct = notebooks
    rng = random.Random(15)
    release_ids = sorted(gid for c in release.cells if (gid := grade_id_of(c)))
    for _ in range(500):
        nb = copy.deepcopy(correct)
        for _ in range(rng.randint(1, 6)):
            _mutate(nb, rng)
        nb = nbformat.reads(nbformat.writes(nb), as_version=4)  # what the grader reads from disk
        inspect_cells(nb, release)
        restore_metadata(nb, release)
        ids = [grade_id_of(c) for c in nb.cells if "nbgrader" in c.metadata]
        graded = [grade_id_of(c) for c in release.cells if nbgrader_meta(c).get("grade")]
        assert len(ids) == len(set(ids)) and set(ids) <= set(release_ids) and set(graded) <= set(ids), ids
        MetadataValidator().validate_nb(nb)
        nbformat.validate(nb)

# -- the batch --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory: pytest.TempPathFactory) -> GradingRun:
    """One batch: the example accidents, the NV accidents and an honest student of each."""
    work = tmp_path_factory.mktemp("accidents-batch")
    lms = work / "lms"
    lms.mkdir()
    source, release, correct = course["example"]
    for accident in ACCIDENTS:
        nbformat.write(accident_notebook(accident, source, correct), lms / f"{accident.student}_example.ipynb")
    nbformat.write(correct, lms / "honest_example.ipynb")
    source, release, correct = course[NV]
    for student, (make, _, _) in NV_ACCIDENTS.items():
        nb = copy.deepcopy(correct)
        make(nb, source)
        nbformat.write(nb, lms / f"{student}_{NV}.ipynb")
    nbformat.write(correct, lms / f"nvhonest_{NV}.ipynb")
    return grade(lms, work / "out", jobs=2, limits=Limits(timeout=600.0, cell_timeout=120.0), progress=False)


def _said(run: GradingRun, student: str) -> str:
    """Everything ``tests.csv`` says about ``student`` (tampering and notes columns)."""
    rows = [r for r in csv.DictReader(open(run.tests_csv, encoding="utf-8")) if r["student"] == student]
    return " | ".join(r["tampering"] + " | " + r["notes"] for r in rows)


@pytest.mark.notebook
@pytest.mark.parametrize("accident", ACCIDENTS, ids=[a.student for a in ACCIDENTS])
def test_each_accident_keeps_the_score_its_code_earns(graded: GradingRun, accident: Accident) -> None:
    result = next(r for r in graded.results if r.student == accident.student)
    assert result.graded, result.notes
    assert {t.grade_id: t.points for t in result.tests} == accident.points, \
        [(t.grade_id, t.points, t.status, t.reason, t.tampering) for t in result.tests]
    assert result.max_score == max_score("example")
    said = _said(graded, accident.student)
    for text in accident.notes:
        assert text in said, said


@pytest.mark.notebook
def test_the_honest_student_beside_the_accidents_keeps_full_marks_and_no_notes(graded: GradingRun) -> None:
    result = next(r for r in graded.results if r.student == "honest")
    assert result.score == result.max_score == max_score("example") and result.notes == []
    assert all(t.tampering == "" for t in result.tests)


@pytest.mark.notebook
@pytest.mark.parametrize("student", list(NV_ACCIDENTS))
def test_network_visualization_accidents_keep_the_honest_students_points(graded: GradingRun, student: str) -> None:
    """Every test scores what the honest student's does, except the one whose answer is wrong (0)."""
    _, wrong_test, notes = NV_ACCIDENTS[student]
    honest_result = next(r for r in graded.results if r.student == "nvhonest")
    honest = {t.grade_id: (t.points, t.status) for t in honest_result.tests}
    result = next(r for r in graded.results if r.student == student)
    assert result.graded, result.notes
    got = {t.grade_id: (t.points, t.status) for t in result.tests}
    expected = dict(honest)
    if wrong_test is not None:
        assert honest[wrong_test][0] > 0
        expected[wrong_test] = (0.0, got[wrong_test][1])
        assert got[wrong_test][1] in ("failed", "error")
    assert got == expected, [(t.grade_id, t.points, t.status, t.reason) for t in result.tests]
    said = _said(graded, student)
    for text in notes:
        assert text in said, said


@pytest.mark.notebook
def test_the_honest_network_visualization_student_passes_every_autograded_test(graded: GradingRun) -> None:
    result = next(r for r in graded.results if r.student == "nvhonest")
    auto = [t for t in result.tests if not t.manual]
    assert sorted(t.grade_id for t in auto) == sorted(graded_points(NV))
    assert all(t.status == "passed" and t.points == t.max_points for t in auto)
    assert result.notes == []
