"""The mask_rcnn notebook: it runs in grading mode, its release hides what it must, and the release's
stubs fail every graded test."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from autograder import source_notebook
from tests.nbutil import build_release, execute_notebook, graded_cells, stderr_outputs, validate

pytestmark = pytest.mark.notebook

ASSIGNMENT = "mask_rcnn"
FUNCTIONS = ["box_iou", "encode_boxes", "decode_boxes", "nms", "roi_align", "project_masks_on_boxes", "maskrcnn_loss",
             "paste_masks_in_image", "mask_average_precision"]
POINTS = [1, 1, 1, 2, 4, 2, 2, 3, 4]


def test_source_notebook_executes_in_grading_mode_without_stderr() -> None:
    nb, _ = execute_notebook(source_notebook(ASSIGNMENT), grading=True)
    assert not stderr_outputs(nb), stderr_outputs(nb)
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    for name in FUNCTIONS:
        assert f"{name}: visible check passed" in printed
        assert f"{name}: hidden tests passed" in printed
    assert "using a randomly initialised maskrcnn_resnet50_fpn_v2" in printed  # no weights offline: the fallback
    assert "largest differences with your pieces" in printed                  # the swap demo ran and asserted
    assert "mask AP" in printed and "pycocotools:" in printed


def test_answer_and_helper_cells_only_define_functions_and_constants() -> None:
    """load_solutions executes them (and the imports and helper cells) to get the reference; they must be cheap."""
    nb = nbformat.read(source_notebook(ASSIGNMENT), as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") == "helpers"):
            body = ast.parse(cell.source).body
            assert all(isinstance(node, (ast.FunctionDef, ast.Assign)) for node in body), meta["grade_id"]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_release(ASSIGNMENT, tmp_path_factory.mktemp("mask_rcnn_release"))


def test_release_contains_no_solution_code_hidden_test_or_references(release) -> None:  # noqa: ANN001
    _, notebook = release
    text = notebook.read_text()
    for forbidden in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "autograder", "judge(",
                      "intersection / (area1", "~(iou > iou_threshold)", "table[row_low + col_low]",
                      "binary_cross_entropy_with_logits(logits, targets)", "rows @ padded @ cols",
                      "cummax(dim=1)", "torch.log(gt_w / proposal_w)"):
        assert forbidden not in text, f"release leaks {forbidden!r}"
    assert text.count("raise NotImplementedError()") == len(FUNCTIONS)
    assert sorted(p.name for p in notebook.parent.rglob("*") if p.is_file()) == [f"{ASSIGNMENT}.ipynb"]


def test_release_keeps_points_locked_visible_checks_and_the_given_constants(release) -> None:  # noqa: ANN001
    _, notebook = release
    nb = nbformat.read(notebook, as_version=4)
    cells = graded_cells(nb)
    assert [c.metadata["nbgrader"]["grade_id"] for c in cells] == [f"test_{f}" for f in FUNCTIONS]
    assert [c.metadata["nbgrader"]["points"] for c in cells] == POINTS
    assert all(c.metadata["nbgrader"]["locked"] for c in cells)
    assert all("check_" in c.source for c in cells)
    text = notebook.read_text()
    assert "COCO_IOU_THRESHOLDS = " in text and "COCO_RECALL_THRESHOLDS = " in text
    for name in FUNCTIONS:
        assert f"def {name}(" in text


def test_validate_invert_fails_every_graded_test_on_the_release_stubs(release) -> None:  # noqa: ANN001
    course, notebook = release
    out = validate(notebook, course, invert=True)
    assert "Success! The notebook does not pass any tests." in out, out[-2000:]
