"""``python -m autograder demo``: release, sample submissions, parallel grading, the grade table.

Every assignment that has a source notebook *and* a spec module
``autograder/specs/<assignment>.py`` takes part (:func:`~autograder.judging.spec.assignments_with_specs`), so a new
assignment joins the demo without code changes. For each, four students submit:

- ``correct``: the reference solutions (full marks);
- ``blank``: the release untouched (zero);
- ``wrong-<function>``: one plausible wrong answer (the spec's first ``WrongAnswer``, or a body
  that returns its first argument) in the most-used building block (:func:`building_blocks`, or
  the module's ``DEMO_WRONG_SAMPLE``): loses that function's test and nothing else;
- ``crash-<function>``: another building block (or the module's ``DEMO_CRASH_SAMPLE``) that kills
  the kernel whenever it is called: loses that test and nothing else.

Everything runs offline in a temporary folder (or ``--out``); the release bundle is written
there too. The demo checks every grade it can be sure of (:func:`check_demo`) and exits
non-zero if one differs.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat

from autograder import source_notebook
from autograder.batch.grading import GradingRun, grade
from autograder.batch.samples import (
    CRASH_BODY,
    answer_ids,
    blank_submission,
    correct_submission,
    with_answer_body,
    wrong_body,
)
from autograder.execution import sandbox
from autograder.execution.limits import Limits
from autograder.judging.spec import assignments_with_specs, spec_module
from autograder.notebook_format import grade_id_of, is_answer_cell
from autograder.releasing.bundle import build_bundle
from autograder.releasing.course import generate_assignment, make_course_dir


def building_blocks(source: nbformat.NotebookNode, ids: list[str]) -> list[str]:
    """Graded functions that other answer cells call, the most called first (ties: notebook order).

    A wrong or crashing building block is the demo's hardest case: the functions built on it are judged with
    the grader's stand-ins (hidden tests) and checked with correct stand-ins (visible checks), so it must
    cost only its own points.
    """
    sources = {grade_id_of(c): c.source for c in source.cells if is_answer_cell(c)}
    callers = {name: sum(bool(re.search(rf"\b{re.escape(name)}\s*\(", text)) for other, text in sources.items()
                         if other != name) for name in ids}
    return sorted((n for n in ids if callers[n]), key=lambda n: (-callers[n], ids.index(n)))


def sample_submissions(assignment: str, source: nbformat.NotebookNode,
                       release: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """The four demo students' notebooks for ``assignment``, by student id."""
    correct = correct_submission(source, release)
    ids = answer_ids(source)
    samples = {"correct": correct, "blank": blank_submission(release)}
    if ids:
        blocks = building_blocks(source, ids)
        declared = getattr(spec_module(assignment), "DEMO_WRONG_SAMPLE", None)
        wrong = declared if declared in ids else (blocks[0] if blocks else ids[0])
        samples[f"wrong-{wrong}"] = with_answer_body(correct, source, wrong, wrong_body(assignment, source, wrong))
        others = [b for b in blocks if b != wrong]
        declared = getattr(spec_module(assignment), "DEMO_CRASH_SAMPLE", None)
        crash = declared if declared in ids else (others[0] if others else ids[len(ids) // 2])
        samples[f"crash-{crash}"] = with_answer_body(correct, source, crash, CRASH_BODY)
    return samples


def run_demo(out: Path | None = None, jobs: int | None = None, limits: Limits | None = None,
             progress: bool = True, names: list[str] | None = None) -> tuple[GradingRun, list[str]]:
    """Build the releases and bundles, write the samples, grade them; return the run and any problems.

    Args:
        out: working folder (emptied first); default: a new temporary folder.
        jobs: grading processes at a time (default: the number of cores).
        limits: per-submission limits.
        progress: draw a progress bar.
        names: assignments (default: every one with specs).
    """
    limits = limits or Limits()
    plan = sandbox.plan(files=True, network=limits.network_isolation)
    if not plan.files_isolated:  # our own samples: safe to grade without a sandbox, but say so
        print(f"demo: grading without a sandbox ({plan.note.split('. ')[0]})", flush=True)
        limits = limits.replace(sandbox=False)
    work = Path(out) if out else Path(tempfile.mkdtemp(prefix="dlcv-demo-"))
    if out and work.exists():
        shutil.rmtree(work)
    names = names or assignments_with_specs()
    if not names:
        raise FileNotFoundError("no assignment has both a source notebook and an autograder/specs module")
    course = make_course_dir(work / "course", names)
    for name in names:
        print(f"[{name}] building the student release and bundle ...", flush=True)
        release_dir = generate_assignment(course, name)
        build_bundle(name, release_dir, work / "dist")
        source = nbformat.read(source_notebook(name), as_version=4)
        release = nbformat.read(release_dir / f"{name}.ipynb", as_version=4)
        for student, nb in sample_submissions(name, source, release).items():
            dest = work / "submitted" / student / name
            dest.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, dest / f"{name}.ipynb")
    print(f"grading the sample submissions of {', '.join(names)} in parallel ...", flush=True)
    run = grade(work / "submitted", work / "graded", jobs=jobs, limits=limits, feedback=True, progress=progress)
    return run, check_demo(run)


def check_demo(run: GradingRun) -> list[str]:
    """Problems with the demo's grades.

    - ``correct`` gets every autograded point and ``blank`` gets 0;
    - ``wrong-<f>`` and ``crash-<f>`` (its function kills the kernel whenever it is called) lose exactly the
      points of ``test_<f>``: a broken building block costs nothing else, as the functions built on it are
      judged and checked with stand-ins and the kernel is restarted with only the imports and answers.
    """
    problems = []
    for r in run.results:
        full = sum(t.max_points for t in r.tests if not t.manual)  # answers graded by hand score 0 here
        where = f"{r.assignment}/{r.student} got {r.score:g} of {full:g}"
        if r.student == "correct" and r.score != full:
            problems.append(where)
        elif r.student == "blank" and r.score != 0:
            problems.append(f"{where}, expected 0")
        elif r.student.startswith(("wrong-", "crash-")):
            function = r.student.split("-", 1)[1]
            ids = [t.grade_id for t in r.tests]
            if f"test_{function}" not in ids:
                if not 0 <= r.score < full:
                    problems.append(f"{where}, expected less")
                continue
            lost = r.tests[ids.index(f"test_{function}")].max_points
            if r.score != full - lost:
                others = [f"{t.grade_id} ({t.status}: {t.reason[:80]})" for t in r.tests
                          if not t.manual and t.grade_id != f"test_{function}" and t.points != t.max_points]
                problems.append(f"{where}, expected {full - lost:g} (only test_{function}'s points lost); also lost: "
                                + "; ".join(others))
    return problems


def main(out: Path | None, jobs: int | None, names: list[str] | None = None,
         similarity: Callable[[Path], None] | None = None) -> int:
    """The ``demo`` command: print the table and where everything is; 1 if a grade is off.

    ``similarity``: called with the demo's folder after grading, to compare the samples' code
    (:func:`autograder.similarity.report.print_similarity`, handed in by ``python -m autograder demo``).
    """
    start = time.perf_counter()
    run, problems = run_demo(out, jobs, names=names)
    print()
    print(run.summary())
    print(f"\nfeedback pages: {run.out / 'feedback'}\nstudent bundles: {run.out.parent / 'dist'}")
    if similarity is not None:
        similarity(run.out.parent)
    if problems:
        print("\nDEMO CHECK FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"demo check passed ({time.perf_counter() - start:.0f} s)")
    return 0
