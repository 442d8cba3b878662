"""Grading on Gradescope: what a Gradescope bundle's ``run_autograder`` runs for each submission.

``run_autograder`` (written by :mod:`autograder.releasing.gradescope`, which builds the bundle) calls
``python3 -m autograder.batch.gradescope run``. :func:`run` grades the notebook found in
``<root>/submission`` with the same pipeline as ``grade`` (one job) and writes ``<root>/results/results.json``
in Gradescope's format: one test per graded cell (name, score, max_score, status, output), tests that
contain hidden tests with ``visibility: after_published``. ``<root>`` is ``/autograder`` unless the
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
from pathlib import Path

import nbformat

from autograder import source_notebook
from autograder.batch.grading import grade
from autograder.execution import sandbox
from autograder.execution.isolation import GiB
from autograder.execution.limits import Limits
from autograder.execution.records import SubmissionResult
from autograder.notebook_format import BEGIN_HIDDEN, grade_id_of, is_graded

ROOT_ENV = "DLCV_GRADESCOPE_ROOT"


def run(root: Path) -> dict:
    """Grade ``root/submission``'s notebook; write and return ``root/results/results.json``."""
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


def results_json(result: SubmissionResult, hidden: set[str]) -> dict:
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


def main(argv: list[str] | None = None) -> int:
    """``python -m autograder.batch.gradescope run [--root DIR]`` (what ``run_autograder`` calls)."""
    parser = argparse.ArgumentParser(prog="python -m autograder.batch.gradescope")
    parser.add_argument("action", choices=["run"])
    parser.add_argument("--root", default=os.environ.get(ROOT_ENV, "/autograder"),
                        help=f"Gradescope's root folder (default: ${ROOT_ENV} or /autograder)")
    args = parser.parse_args(argv)
    data = run(Path(args.root))
    print(data["output"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
