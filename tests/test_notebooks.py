"""Every source notebook (``autograder.assignments()``, so a new one is covered with no test edit): it runs top
to bottom in grading mode without stderr, its answer cells only define what is graded, every graded cell calls
its hidden test, and its release (``nbgrader generate_assignment``, built once per assignment) is the source
less the solutions and hidden tests, keeps points, locked visible checks and the given code, and fails every
graded test on its stubs (``nbgrader validate --invert``).

What differs between the notebooks is data, in :data:`NOTEBOOKS`; a notebook missing there gets the defaults.
Tests of one notebook only live in ``tests/test_<notebook>_notebook.py``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import nbformat
import pytest

from autograder import assignments, source_notebook
from autograder.notebook_format import grade_id_of, is_answer_cell, is_graded, is_test_cell, nbgrader_meta
from tests.nbutil import execute_notebook, graded_cells, graded_functions, graded_points, stderr_outputs, validate

pytestmark = pytest.mark.notebook

ASSIGNMENTS = assignments()


@dataclass(frozen=True)
class Notebook:
    """What one notebook's tests need beyond what its source and specs say."""

    #: Printed by the grading-mode run, besides ``<function>: visible check passed`` and ``hidden tests passed``.
    printed: tuple[str, ...] = ()
    #: Extra environment of the grading-mode run; ``{tmp_path}`` is the test's temporary folder.
    grading_env: dict[str, str] = field(default_factory=dict)
    #: Names the ``helpers`` cell defines (functions, or UPPER_CASE constants), exactly; () when it has none.
    helpers: tuple[str, ...] = ()
    #: Given code (outside the solution regions) that the release must keep, besides the helpers.
    given: tuple[str, ...] = ()
    #: Lines of the reference solutions that must not reach the release.
    leaks: tuple[str, ...] = ()
    #: ``raise NotImplementedError()`` stubs in the release; None: one per graded function.
    stubs: int | None = None
    #: What every visible check (a release test cell) calls.
    visible_check: str = "check_"
    #: Environment of the nbgrader kernels of ``validate --invert``.
    kernel_env: dict[str, str] = field(default_factory=dict)


NOTEBOOKS: dict[str, Notebook] = {
    "example": Notebook(
        leaks=("shifted = scores - scores.max", ".topk(k"),
        visible_check="check_close(",
    ),
    "mask_rcnn": Notebook(
        printed=("using a randomly initialised maskrcnn_resnet50_fpn_v2",  # no weights offline: the fallback
                 "largest differences with your pieces",  # the swap demo ran and asserted
                 "mask AP", "pycocotools:"),
        helpers=("COCO_IOU_THRESHOLDS", "COCO_RECALL_THRESHOLDS"),
        leaks=("intersection / (area1", "~(iou > iou_threshold)", "table[row_low + col_low]",
               "binary_cross_entropy_with_logits(logits, targets)", "rows @ padded @ cols", "cummax(dim=1)",
               "torch.log(gt_w / proposal_w)"),
    ),
    "network_visualization": Notebook(
        printed=("max |ours - captum| = 0.00e+00",),  # the Captum comparison ran and agrees
        given=("def create_class_visualization(", "def deep_dream("),
        leaks=("register_full_backward_hook(guide)", "grad_input[0].clamp(min=0)", "keep_activations",
               "window_cover", "g / g.norm()).detach()", "img += learning_rate * g / g.norm()"),
        # One intra-op thread per kernel, as on a grading server that runs one kernel per core. With two, torch
        # stalls whenever another process holds the second core (this halves the time on a shared 2-core machine).
        kernel_env={"OMP_NUM_THREADS": "1"},
    ),
    "style_transfer": Notebook(
        printed=("using a randomly initialised squeezenet1_1",),  # no weights offline: the grading fallback
        helpers=("extract_features", "image_to_tensor"),
        leaks=("torch.bmm(F, F.transpose", "optimizer.zero_grad()", "img.clamp_("),
        stubs=6,  # one per function, two in style_transfer (targets and initial image; the loop body)
    ),
    "triplet_embeddings": Notebook(
        printed=("scikit-learn digits (8x8): 1500 images",
                 *(f"\n{method} " for method in ("softmax", "contrastive", "triplet", "batch_all", "batch_hard"))),
        # Nothing downloaded (an empty data folder), as on a grading machine: the offline digits.
        grading_env={"DLCV_DATA": "{tmp_path}/no_data"},
        given=("class EmbeddingNet(", "def train_embedding(", "def random_partners(", "def __len__(self)",
               "self.indices_of_class = "),
        leaks=("masked_fill(zero, 1.0)", "amin(dim=1)", "(gap <= margin)", "cumsum(dim=1) > 0",
               "num_active.clamp(min=1)", "torch.randperm(len(members)", "F.relu(margin - d) ** 2"),
    ),
}

#: Never in a release: solution and hidden-test markers, the grader, the judge, a markdown answer.
NEVER_RELEASED = ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "autograder", "judge_client", "judge(",
                  "**Answer.**")
#: The stubs of assignments/nbgrader_config.py (ClearSolutions.code_stub and text_stub).
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
TEXT_STUB = "YOUR ANSWER HERE"
SOLUTION_REGION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION[ \t]*(\n|$)", re.S | re.M)
HIDDEN_TESTS = "### BEGIN HIDDEN TESTS"


def facts(assignment: str) -> Notebook:
    return NOTEBOOKS.get(assignment, Notebook())


def _source(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(source_notebook(assignment), as_version=4)


def _printed(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_the_table_names_only_assignments_that_exist() -> None:
    assert set(NOTEBOOKS) <= set(ASSIGNMENTS), set(NOTEBOOKS) - set(ASSIGNMENTS)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_notebook_executes_in_grading_mode_without_stderr(assignment: str, monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    for name, value in facts(assignment).grading_env.items():
        monkeypatch.setenv(name, value.format(tmp_path=tmp_path))
    nb, _ = execute_notebook(source_notebook(assignment), grading=True)
    assert not stderr_outputs(nb), stderr_outputs(nb)
    printed = _printed(nb)
    for name in graded_functions(assignment):
        assert f"{name}: visible check passed" in printed, name
        assert f"{name}: hidden tests passed" in printed, name
    for text in facts(assignment).printed:
        assert text in printed, text


def _defined_names(node: ast.stmt) -> list[str] | None:
    """The names a function, class or constant definition binds; None for any other statement."""
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if all(isinstance(t, ast.Name) and t.id.isupper() for t in targets):
            return [t.id for t in targets]
    return None


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_answer_and_helper_cells_only_define_functions_classes_and_constants(assignment: str) -> None:
    """load_solutions executes them (and the imports and helpers cells) to get the reference; they must be cheap.

    Each answer cell defines exactly its graded function (a class when the name is CapWords), in the specs'
    order; the helpers cell defines exactly the table's helpers.
    """
    nb = _source(assignment)
    answers = [c for c in nb.cells if is_answer_cell(c)]
    assert [grade_id_of(c) for c in answers] == graded_functions(assignment)
    for cell in answers:
        name = grade_id_of(cell)
        body = ast.parse(cell.source).body
        kind = ast.ClassDef if name[:1].isupper() else ast.FunctionDef
        assert [type(node) for node in body] == [kind] and body[0].name == name, name
    defined = []
    for cell in nb.cells:
        if cell.cell_type == "code" and grade_id_of(cell) == "helpers":
            for node in ast.parse(cell.source).body:
                names = _defined_names(node)
                assert names is not None, f"helpers: {ast.unparse(node)[:200]}"
                defined += names
    assert defined == list(facts(assignment).helpers)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_graded_cell_calls_its_hidden_test_and_markdown_answers_carry_points(assignment: str) -> None:
    nb = _source(assignment)
    functions = graded_functions(assignment)
    graded_points(assignment, manual=True)  # raises unless the test cells are test_<function>, in notebook order
    tests = [c for c in nb.cells if is_test_cell(c)]
    assert [grade_id_of(c) for c in tests] == [f"test_{f}" for f in functions]
    for cell, function in zip(tests, functions):
        meta = nbgrader_meta(cell)
        assert meta["locked"] and meta["points"] > 0, meta["grade_id"]
        assert cell.source.count(HIDDEN_TESTS) == 1
        assert cell.source.endswith(f"{HIDDEN_TESTS}\nfrom cs_lib.grading.judge_client import judge\n\n"
                                    f'judge("{assignment}", {function})\n### END HIDDEN TESTS'), meta["grade_id"]
    for cell in nb.cells:
        if is_graded(cell) and not is_test_cell(cell):
            meta = nbgrader_meta(cell)
            assert cell.cell_type == "markdown" and meta["solution"] and meta["points"] > 0, meta["grade_id"]


class Release(NamedTuple):
    assignment: str
    course: Path
    notebook: Path


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def release(request: pytest.FixtureRequest, releases: Callable[[str], tuple[Path, Path]]) -> Release:
    """The assignment's release, generated once (conftest's ``releases``) for all the tests that read it."""
    return Release(request.param, *releases(request.param))


def test_release_contains_no_solution_code_hidden_test_or_reference_files(release: Release) -> None:
    text = release.notebook.read_text()
    for forbidden in (*NEVER_RELEASED, *facts(release.assignment).leaks):
        assert forbidden not in text, f"release leaks {forbidden!r}"
    functions = graded_functions(release.assignment)
    assert text.count(CODE_STUB[1]) == (facts(release.assignment).stubs or len(functions))
    manual = [g for g in graded_points(release.assignment, manual=True) if g not in graded_points(release.assignment)]
    assert text.count(TEXT_STUB) == len(manual)
    files = sorted(p.name for p in release.notebook.parent.rglob("*") if p.is_file())
    assert files == [f"{release.assignment}.ipynb"], files


def test_release_keeps_signatures_points_locked_visible_checks_and_the_given_code(release: Release) -> None:
    nb = nbformat.read(release.notebook, as_version=4)
    text = release.notebook.read_text()
    functions = graded_functions(release.assignment)
    for name in functions:
        assert (f"class {name}" if name[:1].isupper() else f"def {name}(") in text, name
    points = graded_points(release.assignment)  # the source notebook's
    cells = graded_cells(nb)
    assert [grade_id_of(c) for c in cells] == list(points)
    for cell, name in zip(cells, functions):
        meta = nbgrader_meta(cell)
        assert meta["points"] == points[meta["grade_id"]] and meta["locked"], meta["grade_id"]
        assert facts(release.assignment).visible_check in cell.source, meta["grade_id"]
        assert f"{name}: visible check passed" in cell.source, meta["grade_id"]
    answers = {grade_id_of(c): nbgrader_meta(c)["points"] for c in nb.cells if is_graded(c) and not is_test_cell(c)}
    assert answers == {g: p for g, p in graded_points(release.assignment, manual=True).items() if g not in points}
    for name in facts(release.assignment).helpers:
        assert (f"{name} = " if name.isupper() else f"def {name}(") in text, f"the release lost the helper {name!r}"
    for given in facts(release.assignment).given:
        assert given in text, f"the release lost the given code {given!r}"


def _released(cell: nbformat.NotebookNode) -> str:
    """What nbgrader generate_assignment makes of a source cell: solution regions become the code stub, markdown
    answers the text stub, hidden tests go; every other line stays as it is."""
    if is_answer_cell(cell):
        return SOLUTION_REGION.sub(lambda m: f"{m[1]}{CODE_STUB[0]}\n{m[1]}{CODE_STUB[1]}{m[2]}", cell.source)
    if cell.cell_type == "markdown" and nbgrader_meta(cell).get("solution"):
        return TEXT_STUB
    if is_test_cell(cell):
        return cell.source[:cell.source.index(HIDDEN_TESTS)].rstrip()
    return cell.source


def test_release_is_the_source_less_solutions_and_hidden_tests(release: Release) -> None:
    """Signatures, docstrings, given code (in answer cells too), markdown and visible checks reach students."""
    source = _source(release.assignment)
    nb = nbformat.read(release.notebook, as_version=4)
    assert [(c.cell_type, grade_id_of(c)) for c in nb.cells] == [(c.cell_type, grade_id_of(c)) for c in source.cells]
    for i, (ours, theirs) in enumerate(zip(nb.cells, source.cells)):
        assert ours.source == _released(theirs), f"cell {i} ({grade_id_of(theirs)})"


def test_validate_invert_fails_every_graded_test_on_the_release_stubs(release: Release,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in facts(release.assignment).kernel_env.items():
        monkeypatch.setenv(name, value)  # nbgrader's kernels inherit it
    out = validate(release.notebook, release.course, invert=True)
    assert "Success! The notebook does not pass any tests." in out, out[-2000:]
