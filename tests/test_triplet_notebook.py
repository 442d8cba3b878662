"""The triplet_embeddings notebook: it runs in grading mode in under a minute without stderr, its release hides
the solutions and hidden tests, and the release's stubs fail every graded test."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from autograder import source_notebook
from tests.nbutil import build_release, execute_notebook, graded_cells, stderr_outputs, validate

pytestmark = pytest.mark.notebook

ASSIGNMENT = "triplet_embeddings"
FUNCTIONS = ["pairwise_distances", "contrastive_loss", "triplet_loss", "batch_all_triplet_loss",
             "batch_hard_triplet_loss", "semi_hard_triplets", "PKSampler", "recall_at_k"]
POINTS = [2, 2, 2, 3, 3, 2, 2, 2]
#: Lines of the reference solutions that must not reach students.
SOLUTION_SNIPPETS = ["masked_fill(zero, 1.0)", "amin(dim=1)", "(gap <= margin)", "cumsum(dim=1) > 0",
                     "num_active.clamp(min=1)", "torch.randperm(len(members)", "F.relu(margin - d) ** 2"]


def test_source_notebook_executes_in_grading_mode_without_stderr(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Nothing downloaded (an empty data folder), as on a grading machine: the offline digits.
    monkeypatch.setenv("DLCV_DATA", str(tmp_path / "no_data"))
    nb, _ = execute_notebook(source_notebook(ASSIGNMENT), grading=True)
    assert not stderr_outputs(nb), stderr_outputs(nb)
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    for name in FUNCTIONS:
        assert f"{name}: visible check passed" in printed
        assert f"{name}: hidden tests passed" in printed
    assert "scikit-learn digits (8x8): 1500 images" in printed
    for method in ("softmax", "contrastive", "triplet", "batch_all", "batch_hard"):
        assert f"\n{method} " in printed, f"no row for {method} in the comparison table"


def test_answer_cells_only_define_functions_and_classes() -> None:
    """load_solutions executes them to get the reference; they must be cheap."""
    nb = nbformat.read(source_notebook(ASSIGNMENT), as_version=4)
    answers = [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
    assert [c.metadata["nbgrader"]["grade_id"] for c in answers] == FUNCTIONS
    for cell in answers:
        assert all(isinstance(node, (ast.FunctionDef, ast.ClassDef)) for node in ast.parse(cell.source).body)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_release(ASSIGNMENT, tmp_path_factory.mktemp("triplet_release"))


def test_release_contains_no_solution_code_hidden_test_or_references(release) -> None:
    _, notebook = release
    text = notebook.read_text()
    for forbidden in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "autograder", "judge_client",
                      *SOLUTION_SNIPPETS):
        assert forbidden not in text, f"release leaks {forbidden!r}"
    assert text.count("raise NotImplementedError()") == len(FUNCTIONS)
    assert sorted(p.name for p in notebook.parent.rglob("*") if p.is_file()) == [f"{ASSIGNMENT}.ipynb"]


def test_release_keeps_points_locked_visible_checks_and_the_given_code(release) -> None:
    _, notebook = release
    nb = nbformat.read(notebook, as_version=4)
    cells = graded_cells(nb)
    assert [c.metadata["nbgrader"]["grade_id"] for c in cells] == [f"test_{f}" for f in FUNCTIONS]
    assert [c.metadata["nbgrader"]["points"] for c in cells] == POINTS
    assert all(c.metadata["nbgrader"]["locked"] for c in cells)
    assert all("visible check passed" in c.source for c in cells)
    text = notebook.read_text()
    for given in ("class EmbeddingNet(", "def train_embedding(", "def random_partners(", "def __len__(self)",
                  "self.indices_of_class = "):
        assert given in text, f"the release lost the given code {given!r}"


def test_validate_invert_fails_every_graded_test_on_the_release_stubs(release) -> None:
    course, notebook = release
    out = validate(notebook, course, invert=True)
    assert "Success! The notebook does not pass any tests." in out, out[-2000:]
