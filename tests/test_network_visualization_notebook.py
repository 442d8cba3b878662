"""The network-visualization notebook's own test: nbgrader's autograde gives the solution full marks, the blank
release zero, and one wrong function exactly that function's points less (the tests every notebook shares are in
tests/test_notebooks.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from autograder import source_notebook
from autograder.batch.samples import blank_submission, correct_submission
from autograder.execution.nbgrader_run import run_nbgrader

pytestmark = pytest.mark.notebook

ASSIGNMENT = "network_visualization"
POINTS = {"test_compute_saliency_maps": 2, "test_compute_guided_backprop": 3, "test_compute_gradcam": 3,
          "test_compute_occlusion_map": 3, "test_make_fooling_image": 2, "test_class_visualization_update_step": 2}
MANUAL = ("inline_question_occlusion", "inline_question_fooling", "inline_question_class_visualization")


@pytest.fixture(scope="module")
def release(releases: Callable[[str], tuple[Path, Path]]) -> tuple[Path, Path]:
    """The release of tests/test_notebooks.py (built once per session); autograde adds to its course."""
    return releases(ASSIGNMENT)


@pytest.fixture
def one_thread_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """nbgrader's kernels inherit this: one intra-op thread per kernel, as on a grading server that runs
    one kernel per core. With two threads, torch stalls whenever another process holds the second core
    (this halves the time of these tests on a shared 2-core machine)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


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
