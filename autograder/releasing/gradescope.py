"""Gradescope autograder bundle: ``python -m autograder gradescope ASSIGNMENT``.

:func:`build` writes ``dist/<assignment>-gradescope.zip``. Gradescope unpacks it into
``/autograder/source``, runs ``setup.sh`` once when building its image, then
``run_autograder`` for each submission. The zip holds:

- ``setup.sh``: installs ``requirements-grading.txt`` (the kit's requirements without the
  development tools) with pip;
- ``run_autograder``: ``python3 -m autograder.releasing.gradescope run``;
- the ``autograder`` package (hidden tests, this assignment's reference outputs), ``cs_lib``,
  ``assignments/nbgrader_config.py`` and ``assignments/source/<assignment>/``;
- ``gradescope.json``: the assignment and its limits.

:func:`run` grades the notebook found in ``<root>/submission`` with the same pipeline as
``grade`` (one job) and writes ``<root>/results/results.json`` in Gradescope's format: one
test per graded cell (name, score, max_score, status, output), tests that contain hidden
tests with ``visibility: after_published``. ``<root>`` is ``/autograder`` unless the
environment variable ``DLCV_GRADESCOPE_ROOT`` says otherwise (the tests fake the layout in a
temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import nbformat

from autograder import REPO_ROOT, source_notebook
from autograder.execution import sandbox
from autograder.execution.isolation import GiB
from autograder.execution.tampering import grade_id_of, is_graded
from autograder.feedback.redact import BEGIN_HIDDEN

ROOT_ENV = "DLCV_GRADESCOPE_ROOT"
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
exec "${PYTHON:-python3}" -m autograder.releasing.gradescope run --root "$ROOT"
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


def run(root: Path) -> dict:
    """Grade ``root/submission``'s notebook; write and return ``root/results/results.json``."""
    from autograder.batch.grading import grade
    from autograder.execution.limits import Limits

    config = json.loads((root / "source" / "gradescope.json").read_text())
    assignment = config["assignment"]
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    notebook = find_submission(root / "submission", assignment)
    if notebook is None:
        data = {"score": 0.0, "output": f"No notebook (.ipynb) found in the submission. Submit {assignment}.ipynb.",
                "tests": []}
    else:
        with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
            folder = Path(tmp) / "submitted" / "student" / assignment
            folder.mkdir(parents=True)
            shutil.copyfile(notebook, folder / f"{assignment}.ipynb")
            limits = Limits(timeout=float(config.get("timeout", 1200)), memory=int(config.get("memory", 3 * GiB)))
            plan = sandbox.plan(files=True, network=True)
            warning = None
            if not plan.files_isolated and config.get("allow_unsandboxed"):
                limits, warning = limits.replace(sandbox=False), sandbox.UNSANDBOXED_WARNING
            # Without a sandbox and without the opt-in the executor starts no kernel: every test then says why.
            graded = grade(Path(tmp) / "submitted", Path(tmp) / "out", jobs=1, limits=limits, progress=False)
            data = results_json(graded.results[0], hidden_test_ids(assignment))
            if warning:
                data["output"] = warning + "\n" + data["output"]
    (results_dir / "results.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))
    return data


def results_json(result, hidden: set[str]) -> dict:  # result: SubmissionResult
    """Gradescope's results.json for one graded submission.

    Written answers graded by hand are left out (grade them with Gradescope's manual questions); the summary
    says how many points they hold.
    """
    tests = []
    manual = [t for t in result.tests if t.manual]
    for t in result.tests:
        if t.manual:
            continue
        lines = [f"{t.status}: {t.reason}" if t.reason else t.status]
        if t.tampering:
            lines.append(f"Changes to locked cells: {t.tampering}")
        tests.append({"name": t.grade_id, "score": t.points, "max_score": t.max_points,
                      "status": "passed" if t.status == "passed" else "failed",
                      "output": "\n".join(lines),
                      "visibility": "after_published" if t.grade_id in hidden else "visible"})
    auto = [t for t in result.tests if not t.manual]
    summary = [f"Autograded score: {sum(t.points for t in auto):g} / {sum(t.max_points for t in auto):g}"]
    if manual:
        summary.append(f"{len(manual)} written answers ({sum(t.max_points for t in manual):g} points) are graded by "
                       "hand, outside this autograder.")
    summary += result.notes
    return {"score": sum(t.points for t in auto), "output": "\n".join(summary), "tests": tests,
            "visibility": "visible", "stdout_visibility": "hidden"}


def hidden_test_ids(assignment: str) -> set[str]:
    """grade_ids of the source's graded cells that contain hidden tests."""
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    return {gid for c in nb.cells if is_graded(c) and BEGIN_HIDDEN in c.source and (gid := grade_id_of(c))}


def find_submission(folder: Path, assignment: str) -> Path | None:
    """``<assignment>.ipynb`` anywhere under ``folder``, else its newest notebook, else None."""
    notebooks = [p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts] if folder.is_dir() else []
    exact = [p for p in notebooks if p.name == f"{assignment}.ipynb"]
    pool = exact or notebooks
    return max(pool, key=lambda p: p.stat().st_mtime) if pool else None


def _grading_requirements() -> str:
    lines = []
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        name = line.split("#")[0].strip().split(">")[0].split("=")[0].split("<")[0].strip()
        if name and name.lower() not in DEV_ONLY:
            lines.append(line.strip())
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m autograder.releasing.gradescope run [--root DIR]`` (what ``run_autograder`` calls)."""
    parser = argparse.ArgumentParser(prog="python -m autograder.releasing.gradescope")
    parser.add_argument("action", choices=["run"])
    parser.add_argument("--root", default=os.environ.get(ROOT_ENV, "/autograder"),
                        help=f"Gradescope's root folder (default: ${ROOT_ENV} or /autograder)")
    args = parser.parse_args(argv)
    data = run(Path(args.root))
    print(data["output"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
