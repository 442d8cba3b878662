"""Temporary nbgrader course directories, and the student release built in them.

Grading and release building never write into the repository: each run copies the
nbgrader configuration and the source notebooks into a fresh course directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from autograder import COURSE_DIR, SOURCE_DIR
from autograder.nbgrader_run import run_nbgrader


def make_course_dir(root: Path, assignments: list[str]) -> Path:
    """Create ``root`` as an nbgrader course with the config and the named sources."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(COURSE_DIR / "nbgrader_config.py", root / "nbgrader_config.py")
    for name in assignments:
        dest = root / "source" / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(SOURCE_DIR / name, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return root


def generate_release(course: Path, assignment: str) -> Path:
    """Run ``nbgrader generate_assignment``; return the release folder of ``assignment``."""
    run_nbgrader(["generate_assignment", assignment, "--force"], course)
    return course / "release" / assignment
