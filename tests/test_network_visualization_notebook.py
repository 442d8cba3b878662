"""The network-visualization notebook: it runs in grading mode, its release hides what it must, and
nbgrader's autograde gives the solution full marks, the blank release zero, and one wrong function
exactly that function's points less."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import nbformat
import pytest

from autograder import source_notebook
from autograder.batch.samples import blank_submission, correct_submission
from autograder.execution.nbgrader_run import run_nbgrader
from tests.nbutil import build_release, execute_notebook, graded_cells, stderr_outputs, validate

pytestmark = pytest.mark.notebook

ASSIGNMENT = "network_visualization"
FUNCTIONS = ("compute_saliency_maps", "compute_guided_backprop", "compute_gradcam", "compute_occlusion_map",
             "make_fooling_image", "class_visualization_update_step")
POINTS = {"test_compute_saliency_maps": 2, "test_compute_guided_backprop": 3, "test_compute_gradcam": 3,
          "test_compute_occlusion_map": 3, "test_make_fooling_image": 2, "test_class_visualization_update_step": 2}
MANUAL = ("inline_question_occlusion", "inline_question_fooling", "inline_question_class_visualization")


def test_source_notebook_executes_in_grading_mode_without_stderr() -> None:
    nb, _ = execute_notebook(source_notebook(ASSIGNMENT), grading=True)
    assert not stderr_outputs(nb), stderr_outputs(nb)
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    for name in FUNCTIONS:
        assert f"{name}: visible check passed" in printed, name
    assert "max |ours - captum| = 0.00e+00" in printed  # the Captum comparison ran and agrees


def test_answer_cells_only_define_functions() -> None:
    nb = nbformat.read(source_notebook(ASSIGNMENT), as_version=4)
    answers = [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
    assert [c.metadata["nbgrader"]["grade_id"] for c in answers] == list(FUNCTIONS)
    for cell in answers:
        body = ast.parse(cell.source).body
        assert [type(node) for node in body] == [ast.FunctionDef], cell.metadata["nbgrader"]["grade_id"]


def test_every_graded_cell_calls_its_hidden_test_and_markdown_answers_carry_points() -> None:
    nb = json.loads(source_notebook(ASSIGNMENT).read_text())
    graded = {c["metadata"]["nbgrader"]["grade_id"]: c for c in nb["cells"]
              if c.get("metadata", {}).get("nbgrader", {}).get("grade")}
    assert set(graded) == set(POINTS) | set(MANUAL)
    for grade_id, points in POINTS.items():
        cell = graded[grade_id]
        src = "".join(cell["source"])
        function = grade_id.removeprefix("test_")
        assert cell["metadata"]["nbgrader"]["points"] == points and cell["metadata"]["nbgrader"]["locked"]
        assert "### BEGIN HIDDEN TESTS\nfrom cs_lib.grading.judge_client import judge\n\n" \
               f'judge("{ASSIGNMENT}", {function})\n### END HIDDEN TESTS' in src
    for grade_id in MANUAL:
        cell = graded[grade_id]
        assert cell["cell_type"] == "markdown" and cell["metadata"]["nbgrader"]["solution"]
        assert cell["metadata"]["nbgrader"]["points"] == 1


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_release(ASSIGNMENT, tmp_path_factory.mktemp("network_visualization_release"))


def test_release_contains_no_solution_code_hidden_test_or_answers(release) -> None:
    course, notebook = release
    text = notebook.read_text()
    for forbidden in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "autograder", "judge_client",
                      "register_full_backward_hook(guide)", "grad_input[0].clamp(min=0)", "keep_activations",
                      "window_cover", "g / g.norm()).detach()", "img += learning_rate * g / g.norm()",
                      "**Answer.**"):
        assert forbidden not in text, f"release leaks {forbidden!r}"
    assert text.count("raise NotImplementedError()") == len(FUNCTIONS)
    assert text.count("YOUR ANSWER HERE") == len(MANUAL)
    files = sorted(p.name for p in notebook.parent.rglob("*") if p.is_file())
    assert files == [f"{ASSIGNMENT}.ipynb"], files


def test_release_keeps_signatures_docstrings_points_and_locked_visible_checks(release) -> None:
    _, notebook = release
    nb = nbformat.read(notebook, as_version=4)
    text = notebook.read_text()
    for name in FUNCTIONS:
        assert f"def {name}(" in text, name
    assert "def create_class_visualization(" in text and "def deep_dream(" in text
    cells = [c for c in graded_cells(nb) if c.metadata["nbgrader"]["grade_id"].startswith("test_")]
    assert {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"] for c in cells} == POINTS
    assert all(c.metadata["nbgrader"]["locked"] and "check_" in c.source for c in cells)


@pytest.fixture
def one_thread_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """nbgrader's kernels inherit this: one intra-op thread per kernel, as on a grading server that runs
    one kernel per core. With two threads, torch stalls whenever another process holds the second core
    (this halves the time of these tests on a shared 2-core machine)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_validate_invert_fails_every_graded_test_on_the_blank_release(release, one_thread_kernels) -> None:
    course, notebook = release
    out = validate(notebook, course, invert=True)
    assert "Success! The notebook does not pass any tests." in out, out[-2000:]


def _wrong_saliency(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The source with compute_saliency_maps summing |gradient| over the channels instead of the max."""
    nb = copy.deepcopy(source)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "compute_saliency_maps")
    assert "grad.abs().amax(dim=1)" in cell.source
    cell.source = cell.source.replace("grad.abs().amax(dim=1)", "grad.abs().sum(dim=1)")
    return nb


def test_autograde_gives_full_marks_zero_and_loses_exactly_the_wrong_functions_points(release,
                                                                                     one_thread_kernels) -> None:
    from nbgrader.api import Gradebook

    course, release_notebook = release
    source = nbformat.read(source_notebook(ASSIGNMENT), as_version=4)
    blank_release = nbformat.read(release_notebook, as_version=4)
    correct = correct_submission(source, blank_release)
    submissions = {"correct": correct, "blank": blank_submission(blank_release),
                   "wrong_saliency": correct_submission(_wrong_saliency(source), blank_release)}
    for student, nb in submissions.items():
        dest = course / "submitted" / student / ASSIGNMENT
        dest.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest / f"{ASSIGNMENT}.ipynb")
    run_nbgrader(["autograde", ASSIGNMENT, "--force"], course, timeout=600)
    scores: dict[str, dict[str, float | None]] = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in submissions:
            nb = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            scores[student] = {g.name: g.auto_score for g in nb.grades}
    full = sum(POINTS.values())
    assert {k: scores["correct"][k] for k in POINTS} == POINTS
    assert all(scores["correct"][k] is None for k in MANUAL)  # inline questions await a human
    assert {k: scores["blank"][k] for k in POINTS} == dict.fromkeys(POINTS, 0)
    expected = dict(POINTS, test_compute_saliency_maps=0)
    assert {k: scores["wrong_saliency"][k] for k in POINTS} == expected
    assert sum(scores["wrong_saliency"][k] for k in POINTS) == full - POINTS["test_compute_saliency_maps"]
