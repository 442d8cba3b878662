"""Conventions every source notebook keeps (new assignments are checked automatically)."""

from __future__ import annotations

import nbformat
import pytest

from autograder import assignments, source_notebook


@pytest.mark.parametrize("assignment", assignments())
def test_source_notebook_is_committed_without_outputs_and_with_fixed_seeds(assignment: str) -> None:
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert "seed_everything(0)" in code[0].source and "imports" in code[0].metadata.get("tags", [])
    assert "pretrained=" not in "".join(c.source for c in code), "use the torchvision weights API"


@pytest.mark.parametrize("assignment", assignments())
def test_every_graded_cell_has_points_and_a_hidden_test(assignment: str) -> None:
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    tests = [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]
    assert tests
    for cell in tests:
        meta = cell.metadata["nbgrader"]
        assert meta["locked"] and meta["points"] > 0, meta["grade_id"]
        assert "### BEGIN HIDDEN TESTS" in cell.source and f'judge("{assignment}", ' in cell.source, meta["grade_id"]
