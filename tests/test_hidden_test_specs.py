"""Generic tests of every hidden-test spec of every assignment: they iterate over the declarations.

For each :class:`~autograder.judging.spec.GradedFunction`: the reference solution passes, the stub fails
with "not implemented", and every listed wrong answer fails with its hint. Every graded test cell of every
source notebook has a spec, and its hidden block hands the function to the judge.
"""

from __future__ import annotations

import json
import re

import pytest

from autograder import source_notebook
from autograder.judging.judge import LocalChannel, RemoteFunction, run_test
from autograder.judging.references import load_reference
from autograder.judging.solutions import load_solutions, variant
from autograder.judging.spec import assignments_with_specs, load_specs, spec_module
from autograder.notebook_format import grade_id_of, is_test_cell

SPEC_ASSIGNMENTS = assignments_with_specs()
FUNCTIONS = [(a, name) for a in SPEC_ASSIGNMENTS for name in load_specs(a)]
WRONG = [(a, name, w.name) for a in SPEC_ASSIGNMENTS for name, s in load_specs(a).items() for w in s.wrong_answers]


def _verdict(assignment: str, name: str, fn):  # noqa: ANN001, ANN202
    spec = load_specs(assignment)[name]
    return run_test(assignment, spec, RemoteFunction(name, LocalChannel(fn), spec.adapter))


def test_every_assignment_with_a_spec_module_declares_specs() -> None:
    assert set(SPEC_ASSIGNMENTS) >= {"example"}, SPEC_ASSIGNMENTS


@pytest.mark.parametrize(("assignment", "name"), FUNCTIONS, ids=[f"{a}.{n}" for a, n in FUNCTIONS])
def test_reference_solution_passes_its_hidden_test(assignment: str, name: str, single_torch_thread: None) -> None:
    verdict = _verdict(assignment, name, getattr(load_solutions(assignment), name))
    assert verdict.passed, verdict.message


@pytest.mark.parametrize(("assignment", "name"), FUNCTIONS, ids=[f"{a}.{n}" for a, n in FUNCTIONS])
def test_release_stub_fails_its_hidden_test_as_not_implemented(assignment: str, name: str) -> None:
    def stub(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise NotImplementedError()

    verdict = _verdict(assignment, name, stub)
    assert not verdict.passed
    assert "not implemented" in verdict.message, verdict.message


@pytest.mark.parametrize(("assignment", "name", "wrong"), WRONG, ids=[f"{a}.{n}:{w}" for a, n, w in WRONG])
def test_each_listed_wrong_answer_fails_with_its_hint(assignment: str, name: str, wrong: str,
                                                      single_torch_thread: None) -> None:
    answer = next(w for w in load_specs(assignment)[name].wrong_answers if w.name == wrong)
    verdict = _verdict(assignment, name, variant(assignment, name, answer.body))
    assert not verdict.passed, f"the wrong answer '{wrong}' passed"
    assert answer.hint in verdict.message, verdict.message


@pytest.mark.parametrize("assignment", SPEC_ASSIGNMENTS)
def test_every_graded_test_cell_has_a_spec_and_hands_its_function_to_the_judge(assignment: str) -> None:
    nb = json.loads(source_notebook(assignment).read_text())
    specs = {s.grade_id: s for s in load_specs(assignment).values()}
    cells = [c for c in nb["cells"] if is_test_cell(c)]
    assert [grade_id_of(c) for c in cells] == list(specs), "test cells and specs must match, in notebook order"
    for cell in cells:
        source = "".join(cell["source"])
        name = specs[grade_id_of(cell)].name
        assert re.search(r"### BEGIN HIDDEN TESTS\nfrom cs_lib\.grading\.judge_client import judge\n\n?"
                         rf"judge\(\"{assignment}\", {name}\)\n### END HIDDEN TESTS", source), source


@pytest.mark.parametrize("assignment", SPEC_ASSIGNMENTS)
def test_stored_references_hold_exactly_the_specs_with_cases(assignment: str) -> None:
    module = spec_module(assignment)
    if hasattr(module, "make_references"):
        pytest.skip(f"{assignment} builds its own stored cases (make_references)")
    with_cases = {n for n, s in load_specs(assignment).items() if s.cases is not None}
    assert set(load_reference(assignment)["cases"]) == with_cases


def test_edited_answers_edit_the_reference_body_or_take_a_whole_one() -> None:
    """``edited_answers`` rows: ``(label, hint, (old, new), ...)`` edit the solution; ``(label, hint, body)`` is a
    whole body; an edit whose text left the solution fails loudly."""
    from autograder.judging.solutions import edited_answers, solution_body

    reference = solution_body("example", "softmax")
    edited, whole = edited_answers("example", "softmax",
                                   ("no shift", "subtract the row maximum", ("scores.max(dim=1, keepdim=True).values",
                                                                             "0")),
                                   ("constant", "a constant", "return scores * 0"))
    assert (edited.name, edited.hint) == ("no shift", "subtract the row maximum")
    assert edited.body == reference.replace("scores.max(dim=1, keepdim=True).values", "0") != reference
    assert whole.body == "return scores * 0"
    with pytest.raises(ValueError, match="expects `not in the solution`"):
        edited_answers("example", "softmax", ("stale", "a stale edit", ("not in the solution", "x")))
