"""Helpers for tests that execute notebooks or build releases with nbgrader."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder import source_notebook
from autograder.execution.nbgrader_run import kit_environment, run_nbgrader
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
        env.pop("CS_KIT_GRADING", None)
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


__all__ = ["build_release", "execute_notebook", "graded_cells", "source_notebook", "stderr_outputs", "validate"]
