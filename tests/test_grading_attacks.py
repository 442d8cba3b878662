"""Grades cannot be forged from a notebook: each attack gets exactly its honest score.

The attack corpus (``tests/corpus/attacks.py``) is graded in one batch with the real pipeline (sandboxed
kernel, judge in the grading process) beside an honest correct submission, which must keep full marks.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from autograder import source_notebook
from autograder.batch.grading import GradingRun, grade
from autograder.batch.samples import correct_submission
from autograder.execution import sandbox
from autograder.execution.limits import Limits
from autograder.releasing.course import generate_assignment, make_course_dir
from tests.corpus.attacks import ATTACKS, Attack, attack_notebook
from tests.nbutil import max_score

pytestmark = pytest.mark.notebook

PICKLE_MARKER = Path("/tmp/dlcv-attack-pickle-ran")


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> GradingRun:
    if not sandbox.plan().files_isolated and not os.environ.get("CI"):
        pytest.skip(sandbox.plan().note)
    PICKLE_MARKER.unlink(missing_ok=True)
    work = tmp_path_factory.mktemp("attacks")
    course = make_course_dir(work / "course", ["example"])
    release = nbformat.read(generate_assignment(course, "example") / "example.ipynb", as_version=4)
    source = nbformat.read(source_notebook("example"), as_version=4)
    lms = work / "lms"
    lms.mkdir()
    for attack in ATTACKS:
        nbformat.write(attack_notebook(release, attack), lms / f"{attack.student}_example.ipynb")
    nbformat.write(correct_submission(source, release), lms / "honest_example.ipynb")
    return grade(lms, work / "out", jobs=2, limits=Limits(timeout=240.0, cell_timeout=60.0), progress=False)


def test_the_corpus_covers_every_attack_class() -> None:
    classes = {a.attack_class for a in ATTACKS}
    assert len(ATTACKS) >= 12 and len(classes) == 9, classes


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.student for a in ATTACKS])
def test_attack_gets_exactly_its_honest_score(graded: GradingRun, attack: Attack) -> None:
    result = next(r for r in graded.results if r.student == attack.student)
    assert result.score == attack.honest_score, [(t.grade_id, t.points, t.status, t.reason) for t in result.tests]


def test_an_honest_student_graded_beside_the_attacks_keeps_full_marks(graded: GradingRun) -> None:
    result = next(r for r in graded.results if r.student == "honest")
    assert result.score == result.max_score == max_score("example"), [(t.grade_id, t.status, t.reason)
                                                                      for t in result.tests]


def test_no_kernel_payload_was_ever_unpickled_by_the_grader(graded: GradingRun) -> None:
    assert not PICKLE_MARKER.exists()


def test_unsendable_results_fail_with_a_clear_message_and_run_nothing() -> None:
    """Objects with ``__reduce__``, tensor subclasses and always-equal floats never reach the judge."""
    import torch

    from autograder.judging.judge import LocalChannel, RemoteFunction, run_test
    from autograder.judging.spec import load_specs

    class Boom:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, (f"touch {PICKLE_MARKER}",))

    class AlwaysClose(torch.Tensor):
        def __eq__(self, other):  # noqa: ANN001, ANN204
            return True

    class AlwaysEqual(float):
        def __eq__(self, other):  # noqa: ANN001, ANN204
            return True

    spec = load_specs("example")["softmax"]
    for returned, expected in [(lambda s: {"x": Boom()}, "Boom"), (lambda s: s.as_subclass(AlwaysClose), "subclass"),
                               (lambda s: AlwaysEqual(1.0), "AlwaysEqual")]:
        def softmax(scores, _returned=returned):  # noqa: ANN001, ANN202
            return _returned(scores)

        verdict = run_test("example", spec, RemoteFunction("softmax", LocalChannel(softmax)))
        assert not verdict.passed and "cannot accept" in verdict.message and expected in verdict.message, verdict
    assert not PICKLE_MARKER.exists()
