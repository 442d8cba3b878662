"""Policies per graded function (autograder/judging/policy.py): static findings from the submitted source,
runtime findings from the kernel's record, no false positive on any reference, and the README's table."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import nbformat
import pytest
import torch

from autograder import assignments, source_notebook
from autograder.batch.samples import with_answer_body
from autograder.judging.judge import LocalChannel, RemoteFunction, run_test
from autograder.judging.policy import policy_table, readme_with_table, static_findings
from autograder.judging.solutions import answer_cells, load_solutions
from autograder.judging.spec import forbidden_of, load_specs
from tests.corpus.policy import CASES as POLICY_CASES
from tests.corpus.policy import PolicyCase, case_bodies, policy_notebook

MASK = "mask_rcnn"
TRIPLET = "triplet_embeddings"


def _policies(assignment: str) -> dict[str, tuple[tuple[str, ...], bool]]:
    return {n: (forbidden_of(assignment, s), s.loops_allowed) for n, s in load_specs(assignment).items()}


def _notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def _found(assignment: str, *sources: str) -> dict[str, list[str]]:
    return {k: [f.message() for f in v]
            for k, v in static_findings(_notebook(*sources), _policies(assignment)).items()}


@pytest.mark.parametrize("assignment", assignments())
def test_no_reference_solution_has_a_static_finding(assignment: str) -> None:
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    assert static_findings(nb, _policies(assignment)) == {}


def test_one_liner_is_found_and_named_with_its_cell() -> None:
    found = _found(MASK, "import torchvision",
                   "def nms(boxes, scores, t):\n    return torchvision.ops.nms(boxes, scores, t)")
    assert list(found) == ["nms"]
    assert found["nms"][0].startswith("nms calls torchvision.ops.nms (cell 2, line 2); write it yourself")


def test_alias_made_in_another_cell_is_resolved() -> None:
    found = _found(MASK, "from torchvision import ops as O\nra = O.roi_align",
                   "def roi_align(x, b, s, r, n):\n    return ra(x, b, s, r, n)")
    assert "calls torchvision.ops.roi_align" in found["roi_align"][0]


def test_obfuscated_import_with_constant_strings_is_resolved() -> None:
    found = _found(MASK, "import importlib\ndef nms(b, s, t):\n"
                         "    return getattr(importlib.import_module('torch' + 'vision.ops'), 'n' + 'ms')(b, s, t)")
    assert "calls torchvision.ops.nms" in found["nms"][0]


def test_local_import_and_box_coder_are_found() -> None:
    found = _found(MASK, "def encode_boxes(r, p, w=(1., 1., 1., 1.)):\n"
                         "    from torchvision.models.detection._utils import BoxCoder\n"
                         "    return BoxCoder(w).encode_single(r, p)")
    assert "calls torchvision.models.detection._utils.BoxCoder" in found["encode_boxes"][0]


def test_own_helpers_are_allowed_and_a_delegating_helper_is_followed() -> None:
    honest = _found(MASK, "import torch\ndef box_iou(a, b):\n    return torch.zeros(len(a), len(b))",
                    "def nms(b, s, t):\n    iou = box_iou(b, b)\n    keep = []\n"
                    "    for i in range(len(b)):\n        keep.append(i)\n    return torch.tensor(keep)")
    assert honest == {}
    hidden = _found(MASK, "import torchvision\ndef _helper(b, s, t):\n    return torchvision.ops.nms(b, s, t)",
                    "def nms(b, s, t):\n    return _helper(b, s, t)")
    assert "calls torchvision.ops.nms (through _helper)" in hidden["nms"][0]


def test_graded_function_calling_a_delegating_graded_function_is_not_charged_for_it() -> None:
    found = _found(MASK, "import torchvision\ndef box_iou(a, b):\n    return torchvision.ops.box_iou(a, b)",
                   "def nms(b, s, t):\n    return box_iou(b, b)[0] > t")
    assert list(found) == ["box_iou"]


def test_loop_where_loops_are_forbidden_and_not_where_allowed() -> None:
    found = _found(MASK, "import torch\ndef box_iou(a, b):\n    return torch.stack([x for x in a])",
                   "def nms(b, s, t):\n    while True:\n        break")
    assert list(found) == ["box_iou"]
    assert "box_iou uses a comprehension (a Python loop) (cell 1, line 3)" in found["box_iou"][0]


def test_triplet_policies_cdist_only_where_allowed() -> None:
    found = _found(TRIPLET, "import torch\nimport torch.nn.functional as F",
                   "def pairwise_distances(X, squared=False):\n    return torch.cdist(X, X)",
                   "def recall_at_k(X, y, ks):\n    return torch.cdist(X, X)",
                   "def triplet_loss(a, p, n, margin=1.0):\n    return F.triplet_margin_loss(a, p, n, margin=margin)")
    assert sorted(found) == ["pairwise_distances", "triplet_loss"]
    assert "calls torch.nn.functional.triplet_margin_loss" in found["triplet_loss"][0]


def test_tampering_with_the_profile_hook_is_a_finding_for_every_function() -> None:
    found = _found("network_visualization", "import sys\nsys.setprofile(None)")
    assert set(found) == set(load_specs("network_visualization"))
    assert "sys.setprofile" in found["compute_saliency_maps"][0]


def _verdict(assignment: str, name: str, fn):  # noqa: ANN001, ANN202
    spec = load_specs(assignment)[name]
    return run_test(assignment, spec, RemoteFunction(name, LocalChannel(fn), spec.adapter))


def test_runtime_record_catches_a_computed_name_that_the_source_hides(single_torch_thread: None) -> None:
    def pairwise_distances(X: torch.Tensor, squared: bool = False) -> torch.Tensor:
        name = "".join(["cd", "ist"])
        d = getattr(torch, name)(X, X)
        return d ** 2 if squared else d

    verdict = _verdict(TRIPLET, "pairwise_distances", pairwise_distances)
    assert not verdict.passed
    assert verdict.finding.startswith("pairwise_distances calls torch.functional.cdist (while the grader ran it)")


def test_runtime_record_catches_a_dispatcher_op_through_exec(single_torch_thread: None) -> None:
    scope: dict = {}
    exec("import torch, torchvision\ndef nms(b, s, t):\n"  # noqa: S102 - a student's obfuscation, on purpose
         "    return torch.ops.torchvision.nms(b, s, t)", scope)
    verdict = _verdict(MASK, "nms", scope["nms"])
    assert not verdict.passed
    assert "nms calls torch.ops.torchvision.nms" in verdict.finding


def test_removing_the_profile_hook_is_a_finding(single_torch_thread: None) -> None:
    import sys

    ref = load_solutions(MASK).box_iou

    def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sys.setprofile(None)
        return ref(a, b)

    verdict = _verdict(MASK, "box_iou", box_iou)
    assert not verdict.passed and "removed or replaced the grader's profile hook" in verdict.finding


def test_generated_rules_for_the_kernel_match_the_specs() -> None:
    from autograder.judging.policy import POLICIES_MODULE, policies_source

    assert POLICIES_MODULE.read_text() == policies_source(assignments()), (
        "cs_lib/policies.py is stale: run python -m autograder.judging.policy")


# ------------------------------------------------------------------------------------------- the kernel's check

def _kernel_namespace(nb: nbformat.NotebookNode) -> dict:
    """The globals of a kernel that ran ``nb``'s imports and answer cells, with IPython's ``In`` history."""
    namespace: dict = {"__name__": "__main__", "In": [""]}
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in answer_cells(nb):
            namespace["In"].append(cell.source)
            exec(compile(cell.source, f"<In [{len(namespace['In']) - 1}]>", "exec"), namespace)  # noqa: S102
    return namespace


def _case_notebook(case: PolicyCase) -> nbformat.NotebookNode:
    source = nbformat.read(source_notebook(case.assignment), as_version=4)
    nb = source
    for grade_id, body in case_bodies(case, source).items():
        nb = with_answer_body(nb, source, grade_id, body)
    for grade_id, line in case.after.items():
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        cell.source = cell.source.rstrip("\n") + "\n\n" + line + "\n"
    return nb


KERNEL_CASES = [*POLICY_CASES, *(PolicyCase(a, "reference") for a in assignments())]


@pytest.mark.parametrize("case", KERNEL_CASES, ids=[f"{c.assignment}-{c.student}" for c in KERNEL_CASES])
def test_the_kernels_check_warns_of_what_the_grader_finds_and_nothing_else(case: PolicyCase) -> None:
    """check_rules, as the visible checks call it in the student's kernel: every function that the grader's
    static pass would give 0 is named, with the call and the cell, and no other function is."""
    from cs_lib.policies import POLICIES
    from cs_lib.rules import check_rules

    nb = _case_notebook(case)
    namespace = _kernel_namespace(nb)
    warned = {}
    for name in POLICIES[case.assignment]:
        try:
            check_rules(case.assignment, namespace[name])
        except AssertionError as exc:
            warned[f"test_{name}"] = str(exc)
    static = {f"test_{name}" for name in static_findings(nb, _policies(case.assignment))}
    assert static <= set(warned) <= set(case.findings), (static, warned)
    for grade_id, message in warned.items():
        expected = case.findings[grade_id].split(" (")[0]
        assert message.startswith(expected) and "(In [" in message and "the grader gives 0" in message, message


def test_check_rules_names_an_unknown_function_and_accepts_a_class() -> None:
    from cs_lib.rules import check_rules

    def softmax(x: torch.Tensor) -> torch.Tensor:
        return x

    with pytest.raises(KeyError, match="no rule for 'softmax' in 'mask_rcnn'"):
        check_rules("mask_rcnn", softmax)  # graded in example, not in mask_rcnn
    namespace = _kernel_namespace(nbformat.read(source_notebook(TRIPLET), as_version=4))
    check_rules(TRIPLET, namespace["PKSampler"])  # a graded class: its module's cells are read


def test_readme_policy_table_matches_the_specs() -> None:
    readme = (Path(__file__).resolve().parents[1] / "autograder" / "README.md").read_text()
    assert readme_with_table(readme, policy_table(assignments())) == readme, (
        "autograder/README.md's policy table is stale: run python -m autograder.judging.policy")


# ------------------------------------------------------------------------------------------- batches

BATCH_ASSIGNMENTS = sorted({c.assignment for c in POLICY_CASES})


def _points(assignment: str) -> dict[str, float]:
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"]) for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("points")}


@pytest.fixture(scope="module", params=BATCH_ASSIGNMENTS)
def policy_batch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from autograder.batch.grading import grade
    from autograder.execution.limits import Limits
    from autograder.releasing.course import generate_assignment, make_course_dir

    assignment = request.param
    work = tmp_path_factory.mktemp(f"policy_{assignment}")
    course = make_course_dir(work / "course", [assignment])
    release = nbformat.read(generate_assignment(course, assignment) / f"{assignment}.ipynb", as_version=4)
    source = nbformat.read(source_notebook(assignment), as_version=4)
    lms = work / "lms"
    lms.mkdir()
    for i, case in enumerate(c for c in POLICY_CASES if c.assignment == assignment):
        (lms / f"{case.student}_{3000 + i}_{4000 + i}_{assignment}.ipynb").write_text(
            policy_notebook(case, source, release), encoding="utf-8")
    run = grade(lms, work / "out", jobs=2, limits=Limits(timeout=600.0, cell_timeout=300.0), progress=False)
    return assignment, run


@pytest.mark.notebook
def test_each_policy_submission_earns_its_honest_score(policy_batch) -> None:  # noqa: ANN001
    assignment, run = policy_batch
    points = _points(assignment)
    for case in (c for c in POLICY_CASES if c.assignment == assignment):
        result = next(r for r in run.results if r.student == case.student)
        tests = {t.grade_id: t for t in result.tests if t.grade_id in points}
        for grade_id, full in points.items():
            t = tests[grade_id]
            if grade_id in case.broken:  # its own answer crashes or is wrong: 0, and no finding
                assert (t.points, t.finding) == (0, ""), (case.student, grade_id, t.status, t.reason)
            elif grade_id in case.findings:
                # "failed" (the judge's verdict), or "error" when the visible check raised first and the judge then
                # gave its verdict on the hidden block alone
                assert t.points == 0 and t.status in ("failed", "error"), (case.student, grade_id, t)
                assert case.findings[grade_id] in t.finding, (case.student, grade_id, t.finding)
                # a failed test's reason quotes the visible check's warning (check_rules, in the kernel) or the
                # grader's finding; an errored one quotes what the cell raised (the finding is in its own column)
                assert t.status == "error" or t.finding.split(" (")[0] in t.reason, (case.student, grade_id, t.reason)
            else:
                assert (t.points, t.finding) == (full, ""), (case.student, grade_id, t.status, t.reason)
        expected = sum(full for g, full in points.items() if g not in case.findings and g not in case.broken)
        assert result.score == expected, (case.student, result.score, expected)


@pytest.mark.parametrize("assignment", assignments())
def test_notebook_states_each_functions_rule_as_the_specs_declare(assignment: str) -> None:
    from autograder.judging.policy import notebook_rules, notebook_with_rules

    nb = nbformat.read(source_notebook(assignment), as_version=4)
    intro = next(c for c in nb.cells if c.cell_type == "markdown")
    assert notebook_with_rules(intro.source, notebook_rules(assignment)) == intro.source, (
        f"{assignment}'s introduction does not state the specs' rules: run python -m autograder.judging.policy")


def test_stand_in_swaps_a_building_block_during_a_check_and_restores_it_after_a_failure() -> None:
    from cs_lib.checks import stand_in

    scope: dict = {}
    exec("def box_iou(a, b):\n    raise RuntimeError('broken')\n"  # noqa: S102 - a student's cells
         "def nms(a):\n    return box_iou(a, a)\n", scope)
    with stand_in(scope["nms"], box_iou=lambda a, b: a + b):
        assert scope["nms"](1) == 2
    with pytest.raises(AssertionError, match="check failed"), stand_in(scope["nms"], box_iou=lambda a, b: 0):
        raise AssertionError("check failed")
    with pytest.raises(RuntimeError, match="broken"):
        scope["nms"](1)
    with pytest.raises(TypeError, match="not a plain Python function"), stand_in(len, box_iou=abs):
        pass


def test_check_rules_ignores_a_global_that_raises_on_every_attribute_lookup() -> None:
    """An object of the student's that answers every lookup with an error is no library name (no crash)."""
    from cs_lib.rules import check_rules

    namespace = _kernel_namespace(nbformat.read(source_notebook(MASK), as_version=4))

    class Opaque:
        def __getattribute__(self, name: str) -> object:
            raise RuntimeError("nothing to see")

    namespace["opaque"] = Opaque()
    check_rules(MASK, namespace["nms"])  # the reference: no finding, and no RuntimeError
    cell = "def nms(boxes, scores, t):\n    return torchvision.ops.nms(boxes, scores, t)\n"
    namespace["In"].append(cell)  # a cell the student runs next
    exec(cell, namespace)  # noqa: S102
    with pytest.raises(AssertionError, match="nms calls torchvision.ops.nms"):
        check_rules(MASK, namespace["nms"])
