"""The kit's grading side: hidden tests, reference outputs and the grading CLI.

This package is never part of a student release. Hidden test cells in the source
notebooks call into :mod:`autograder.specs`; reference solutions are read from the
source notebooks themselves (:mod:`autograder.judging.solutions`), and reference outputs on
fixed inputs are stored under ``autograder/references`` (:mod:`autograder.judging.references`).
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository (or grading bundle) root: it holds ``assignments/`` and ``cs_lib/``.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: The nbgrader course root; ``DLCV_COURSE_DIR`` overrides it.
COURSE_DIR = Path(os.environ.get("DLCV_COURSE_DIR", REPO_ROOT / "assignments"))

#: Where the source notebooks live: ``SOURCE_DIR/<assignment>/<assignment>.ipynb``.
SOURCE_DIR = Path(os.environ.get("DLCV_SOURCE_DIR", COURSE_DIR / "source"))


def source_notebook(assignment: str) -> Path:
    """The source notebook of ``assignment`` (solutions and hidden tests included)."""
    path = SOURCE_DIR / assignment / f"{assignment}.ipynb"
    if not path.exists():
        known = sorted(p.name for p in SOURCE_DIR.iterdir() if p.is_dir()) if SOURCE_DIR.is_dir() else []
        raise FileNotFoundError(f"no source notebook for assignment '{assignment}' at {path}; known: {known}")
    return path


def assignments() -> list[str]:
    """Names of the assignments that have a source notebook, sorted."""
    if not SOURCE_DIR.is_dir():
        return []
    return sorted(p.name for p in SOURCE_DIR.iterdir() if (p / f"{p.name}.ipynb").exists())
