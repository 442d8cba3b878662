"""The style-transfer notebook: it runs in grading mode, its release hides what it must, and the
release's stubs fail every graded test."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from autograder import source_notebook
from tests.nbutil import build_release, execute_notebook, graded_cells, stderr_outputs, validate

pytestmark = pytest.mark.notebook

ASSIGNMENT = "style_transfer"
FUNCTIONS = ["content_loss", "gram_matrix", "style_loss", "tv_loss", "style_transfer"]


def test_source_notebook_executes_in_grading_mode_without_stderr() -> None:
    nb, _ = execute_notebook(source_notebook(ASSIGNMENT), grading=True)
    assert not stderr_outputs(nb), stderr_outputs(nb)
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    for name in FUNCTIONS:
        assert f"{name}: visible check passed" in printed
    assert "using a randomly initialised squeezenet1_1" in printed  # no weights offline: the grading fallback


def test_answer_cells_only_define_functions() -> None:
    """load_solutions executes them (and the helper cell) to get the reference; they must be cheap."""
    import ast

    nb = nbformat.read(source_notebook(ASSIGNMENT), as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") == "helpers"):
            body = ast.parse(cell.source).body
            assert all(isinstance(node, ast.FunctionDef) for node in body), meta["grade_id"]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_release(ASSIGNMENT, tmp_path_factory.mktemp("style_transfer_release"))


def test_release_contains_no_solution_code_hidden_test_or_references(release) -> None:
    _, notebook = release
    text = notebook.read_text()
    for forbidden in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "autograder", "judge_client",
                      "torch.bmm(F, F.transpose", "optimizer.zero_grad()", "img.clamp_("):
        assert forbidden not in text, f"release leaks {forbidden!r}"
    # One stub per function, two in style_transfer (targets and initial image; the loop body).
    assert text.count("raise NotImplementedError()") == 6
    assert sorted(p.name for p in notebook.parent.rglob("*") if p.is_file()) == [f"{ASSIGNMENT}.ipynb"]


def test_release_keeps_points_locked_visible_checks_and_the_given_helpers(release) -> None:
    _, notebook = release
    nb = nbformat.read(notebook, as_version=4)
    cells = graded_cells(nb)
    assert [c.metadata["nbgrader"]["grade_id"] for c in cells] == [f"test_{f}" for f in FUNCTIONS]
    assert [c.metadata["nbgrader"]["points"] for c in cells] == [2, 2, 2, 2, 4]
    assert all(c.metadata["nbgrader"]["locked"] for c in cells)
    assert all("check_" in c.source for c in cells)
    text = notebook.read_text()
    assert "def extract_features(" in text and "def image_to_tensor(" in text


def test_validate_invert_fails_every_graded_test_on_the_release_stubs(release) -> None:
    course, notebook = release
    out = validate(notebook, course, invert=True)
    assert "Success! The notebook does not pass any tests." in out, out[-2000:]


def test_every_graded_cell_of_the_source_calls_its_hidden_test() -> None:
    nb = json.loads(source_notebook(ASSIGNMENT).read_text())
    graded = [c for c in nb["cells"]
              if c["cell_type"] == "code" and c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    assert len(graded) == len(FUNCTIONS)
    for cell, name in zip(graded, FUNCTIONS):
        src = "".join(cell["source"])
        assert "### BEGIN HIDDEN TESTS" in src and f'judge("style_transfer", {name})' in src
