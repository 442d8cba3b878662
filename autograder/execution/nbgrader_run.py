"""Run nbgrader's apps in a course directory, with the kit's environment.

nbgrader shells out to ``alembic`` and starts kernels with ``python``; both must come
from the interpreter that runs the kit, whether or not its virtual environment is
activated. :func:`run_nbgrader` sets that up and raises a clear error on failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from autograder import REPO_ROOT


class NbgraderError(RuntimeError):
    """An nbgrader command failed; the message holds the end of its log."""


def kit_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` with this interpreter's ``bin`` folder first on ``PATH``."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    # Kernels import cs_lib and autograder from this checkout, even when the cached virtual
    # environment's editable install points at another clone.
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("PYTHONWARNINGS", "ignore")
    env.setdefault("MPLBACKEND", "Agg")
    if extra:
        env.update(extra)
    return env


def use_kit_path() -> None:
    """Put this interpreter's ``bin`` folder first on this process's ``PATH``.

    nbgrader run in-process shells out to ``alembic`` when it creates a gradebook.
    """
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[:1] != [bindir]:
        os.environ["PATH"] = bindir + os.pathsep + path


def run_nbgrader(args: Sequence[str], course_dir: Path, timeout: float | None = None,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``nbgrader <args>`` with ``course_dir`` as working directory.

    Raises:
        NbgraderError: when the command exits non-zero (``check=True``) or times out.
    """
    cmd = [sys.executable, "-m", "nbgrader", *args]
    try:
        proc = subprocess.run(cmd, cwd=course_dir, env=kit_environment(), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise NbgraderError(f"`nbgrader {' '.join(args)}` timed out after {timeout} s") from exc
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise NbgraderError(f"`nbgrader {' '.join(args)}` failed (exit {proc.returncode}) in {course_dir}:\n{tail}")
    return proc
