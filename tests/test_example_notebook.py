"""The warm-up notebook: it runs, its release hides everything it must, and stubs fail."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder import source_notebook
from tests.nbutil import (
    build_release,
    execute_notebook,
    graded_cells,
    graded_functions,
    graded_points,
    stderr_outputs,
    validate,
)

pytestmark = pytest.mark.notebook


def test_example_source_notebook_executes_in_grading_mode_without_stderr() -> None:
    nb, _ = execute_notebook(source_notebook("example"), grading=True)
    assert not stderr_outputs(nb), stderr_outputs(nb)
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "softmax: visible check passed" in printed
    assert "top_k_accuracy: visible check passed" in printed


@pytest.fixture(scope="module")
def example_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_release("example", tmp_path_factory.mktemp("example_release"))


def test_release_contains_no_solution_code_hidden_test_or_reference_files(example_release) -> None:
    course, notebook = example_release
    text = notebook.read_text()
    for forbidden in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "autograder", "judge_client",
                      "shifted = scores - scores.max", ".topk(k"):
        assert forbidden not in text, f"release leaks {forbidden!r}"
    assert text.count("raise NotImplementedError()") == len(graded_functions("example"))  # one stub each
    files = sorted(p.name for p in notebook.parent.rglob("*") if p.is_file())
    assert files == ["example.ipynb"], files


def test_release_keeps_points_and_locked_visible_checks(example_release) -> None:
    _, notebook = example_release
    nb = nbformat.read(notebook, as_version=4)
    cells = graded_cells(nb)
    points = graded_points("example")  # the source notebook's
    assert [c.metadata["nbgrader"]["grade_id"] for c in cells] == list(points)
    assert all(c.metadata["nbgrader"]["points"] == points[c.metadata["nbgrader"]["grade_id"]]
               and c.metadata["nbgrader"]["locked"] for c in cells)
    assert all("check_close(" in c.source for c in cells)


def test_validate_invert_fails_every_graded_test_on_the_blank_release(example_release) -> None:
    course, notebook = example_release
    out = validate(notebook, course, invert=True)
    assert "Success! The notebook does not pass any tests." in out, out[-2000:]


def test_validate_passes_on_the_source_notebook(example_release) -> None:
    course, _ = example_release
    out = validate(course / "source" / "example" / "example.ipynb", course)
    assert "Success! Your notebook passes all the tests." in out, out[-2000:]


