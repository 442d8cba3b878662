"""Helpers for tests that execute notebooks or build releases with nbgrader, and what an assignment grades.

A test that grades an assignment takes its functions, test cells, points and totals from
:func:`graded_functions`, :func:`graded_points` and :func:`max_score` (the specs and the source notebook's
nbgrader metadata), never from numbers of its own: a TA who adds a graded function changes the notebook and
one spec, and no test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder import source_notebook
from autograder.execution.nbgrader_run import kit_environment, run_nbgrader
from autograder.judging.spec import load_specs
from autograder.notebook_format import grade_id_of, is_graded, is_test_cell, nbgrader_meta
from autograder.releasing.course import generate_release, make_course_dir


def execute_notebook(path: Path, grading: bool = True, timeout: int = 300,
                     cwd: Path | None = None) -> tuple[nbformat.NotebookNode, float]:
    """Execute a notebook with nbclient, as nbgrader does while grading.

    Args:
        path: the notebook.
        grading: set ``NBGRADER_EXECUTION=autograde`` so ``cs_lib.budget`` picks the
            grading budgets and missing weights fall back to a random model.
        timeout: seconds per cell.
        cwd: working directory of the kernel (default: the notebook's folder).

    Returns:
        The executed notebook and the wall time in seconds. Raises
        ``nbclient.exceptions.CellExecutionError`` on the first failing cell.
    """
    nb = nbformat.read(path, as_version=4)
    env_extra = {"NBGRADER_EXECUTION": "autograde"} if grading else {}
    old = dict(os.environ)
    env = kit_environment(env_extra)
    if not grading:
        env.pop("NBGRADER_EXECUTION", None)
        env.pop("DLCV_GRADING", None)
    os.environ.clear()
    os.environ.update(env)
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd or path.parent)}})
        start = time.perf_counter()
        client.execute()
        return nb, time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(old)


def stderr_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """Every stderr stream output of the executed notebook, as ``"cell N: text"``."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                found.append(f"cell {i}: {out['text'][:300]}")
    return found


def build_release(assignment: str, workdir: Path) -> tuple[Path, Path]:
    """Generate ``assignment``'s release in a fresh course under ``workdir``.

    Returns:
        The course directory and the release notebook's path.
    """
    course = make_course_dir(workdir / "course", [assignment])
    release_dir = generate_release(course, assignment)
    return course, release_dir / f"{assignment}.ipynb"


def validate(notebook: Path, course: Path, invert: bool = False, timeout: float = 900) -> str:
    """``nbgrader validate [--invert] notebook``; returns its combined output."""
    args = ["validate", str(notebook)] + (["--invert"] if invert else [])
    proc = run_nbgrader(args, course, timeout=timeout, check=False)
    return proc.stdout + proc.stderr


def graded_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """Code cells with nbgrader ``grade: true`` (the test cells that carry points)."""
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]


def graded_functions(assignment: str) -> list[str]:
    """The graded functions of ``assignment``, in notebook order: the names of its specs (``load_specs``)."""
    return list(load_specs(assignment))


def graded_points(assignment: str, manual: bool = False) -> dict[str, float]:
    """``{grade_id: points}`` of the source notebook's autograded test cells, in notebook order.

    Each is ``test_<function>`` of one spec, in the specs' order (checked: a test that counts cells and
    one that counts specs agree). With ``manual``, the answers graded by hand (written questions) too.
    """
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    tests = {grade_id_of(c): float(nbgrader_meta(c)["points"]) for c in nb.cells if is_test_cell(c)}
    expected = [f"test_{name}" for name in graded_functions(assignment)]
    if list(tests) != expected:
        raise AssertionError(f"{assignment}: test cells {list(tests)}, but the specs ask for {expected}")
    if not manual:
        return tests
    return {grade_id_of(c): float(nbgrader_meta(c)["points"]) for c in nb.cells if is_graded(c)}


def max_score(assignment: str) -> float:
    """Every point of ``assignment`` (autograded and graded by hand): a full submission's ``max_score``."""
    return sum(graded_points(assignment, manual=True).values())


__all__ = ["build_release", "execute_notebook", "graded_cells", "graded_functions", "graded_points", "max_score",
           "source_notebook", "stderr_outputs", "validate"]
