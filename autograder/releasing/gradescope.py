"""Gradescope autograder bundle: ``python -m autograder gradescope ASSIGNMENT``.

:func:`build` writes ``dist/<assignment>-gradescope.zip``. Gradescope unpacks it into
``/autograder/source``, runs ``setup.sh`` once when building its image, then
``run_autograder`` for each submission. The zip holds:

- ``setup.sh``: installs ``requirements-grading.txt`` (the kit's requirements without the
  development tools) with pip;
- ``run_autograder``: ``python3 -m autograder.batch.gradescope run``, which grades the submission
  (:mod:`autograder.batch.gradescope`);
- the ``autograder`` package (hidden tests, this assignment's reference outputs), ``cs_lib``,
  ``assignments/nbgrader_config.py`` and ``assignments/source/<assignment>/``;
- ``gradescope.json``: the assignment and its limits.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from autograder import REPO_ROOT, source_notebook
from autograder.execution.isolation import GiB

#: Requirements lines left out of the grading image (development tools).
DEV_ONLY = ("pytest", "ruff", "nbval", "jupyterlab")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope image set-up: Python packages for grading (CPU torch is enough).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
apt-get update -qq && apt-get install -y -qq python3-pip util-linux >/dev/null || true
python3 -m pip install -q --upgrade pip
python3 -m pip install -q --extra-index-url https://download.pytorch.org/whl/cpu -r requirements-grading.txt
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this once per submission; results go to $ROOT/results/results.json.
set -uo pipefail
ROOT="${DLCV_GRADESCOPE_ROOT:-/autograder}"
cd "$ROOT/source"
exec "${PYTHON:-python3}" -m autograder.batch.gradescope run --root "$ROOT"
"""


def build(assignment: str, dist: Path, timeout: float = 1200.0, memory: int = 3 * GiB,
          allow_unsandboxed: bool = False) -> Path:
    """Write ``dist/<assignment>-gradescope.zip``; return its path.

    ``allow_unsandboxed``: grade even where Gradescope's container forbids the kernel sandbox (Linux
    namespaces); every results page then says that student code could read the grader's files.
    """
    source_notebook(assignment)
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / f"{assignment}-gradescope.zip"
    files: dict[str, bytes] = {
        "setup.sh": SETUP_SH.encode(),
        "run_autograder": RUN_AUTOGRADER.encode(),
        "gradescope.json": json.dumps({"assignment": assignment, "timeout": timeout, "memory": memory,
                                       "allow_unsandboxed": allow_unsandboxed},
                                      indent=1).encode(),
        "requirements-grading.txt": _grading_requirements().encode(),
        "assignments/nbgrader_config.py": (REPO_ROOT / "assignments" / "nbgrader_config.py").read_bytes(),
    }
    for package in ("autograder", "cs_lib"):
        for path in sorted([*(REPO_ROOT / package).rglob("*.py"), *(REPO_ROOT / package).rglob("*.sh")]):
            if "__pycache__" not in path.parts:
                files[path.relative_to(REPO_ROOT).as_posix()] = path.read_bytes()
    reference = REPO_ROOT / "autograder" / "references" / f"{assignment}.pt"
    if reference.exists():
        files[reference.relative_to(REPO_ROOT).as_posix()] = reference.read_bytes()
    source_dir = REPO_ROOT / "assignments" / "source" / assignment
    for path in sorted(source_dir.rglob("*")):
        if path.is_file() and ".ipynb_checkpoints" not in path.parts:
            files[path.relative_to(REPO_ROOT).as_posix()] = path.read_bytes()
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
            zf.writestr(info, data)
    return target


def _grading_requirements() -> str:
    lines = []
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        name = line.split("#")[0].strip().split(">")[0].split("=")[0].split("<")[0].strip()
        if name and name.lower() not in DEV_ONLY:
            lines.append(line.strip())
    return "\n".join(lines) + "\n"
