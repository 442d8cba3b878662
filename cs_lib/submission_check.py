"""Check a notebook before you submit it: is the file gradable, and do its visible checks pass?

Run it on the notebook you will hand in (from the bundle's folder)::

    python -m cs_lib.submission_check mask_rcnn.ipynb          # structure, then every visible check
    python -m cs_lib.submission_check mask_rcnn.ipynb --fast   # structure only (a second)

or run the last cell of the notebook, which checks the structure of the notebook itself.

**Structure.** The bundle holds one manifest per assignment (``cs_lib/manifests/<assignment>.json``,
written by the release from the release notebook): every cell with nbgrader metadata, its flags,
points and, for locked cells (the imports cell and the test cells), a sha256 of the source you
received. The check says, in plain words, whether every graded cell is present exactly once, with
its metadata and cell type intact and its locked source unedited. The grader repairs most of these
accidents itself (and puts the original test cells back), but a file that passes here is graded
exactly as you ran it.

**Visible checks** (not with ``--fast``). The notebook's code cells run in a fresh Python process,
in the notebook's folder, in grading mode (``DLCV_GRADING=1``: the demos shrink as they do while
grading), without Jupyter; lines starting with ``!`` or ``%`` are skipped. Each test cell is
reported as passed or failed with the first line of its error. The hidden tests are not in your
notebook: passing the visible checks does not guarantee the points.

**Rules** (always). Every graded function's rule (no library that does it for you, no Python loops where
the notebook says so) is checked in the notebook's code cells as the grader checks it, without running them.

Exit status: 0 gradable (and every visible check passed, and no function breaks its rule), 1 not gradable,
a visible check failed or a function breaks its rule, 2 the file or its manifest could not be read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The cells' nbgrader fields that must be as released.
CHECKED_FLAGS = ("solution", "grade", "locked", "points")
#: Where the bundle keeps the manifests: ``cs_lib/manifests/<assignment>.json``.
MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
#: Marks the line that calls this check, so that executing a notebook does not run it again.
SELF_CALL = "cs_lib.submission_check"


@dataclass
class Report:
    """What the check found. ``problems`` make the file not gradable; ``notes`` are for information."""

    notebook: str
    assignment: str | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    passed_checks: list[str] = field(default_factory=list)
    rule_breaks: list[str] = field(default_factory=list)
    executed: bool = False

    @property
    def gradable(self) -> bool:
        """True when nothing in the file's structure stands in the way of grading."""
        return not self.problems

    @property
    def ok(self) -> bool:
        """Gradable, no function breaking its rule, and (when executed) every visible check passed."""
        return self.gradable and not self.failed_checks and not self.rule_breaks

    def text(self) -> str:
        """The verdict in plain words, one finding per line."""
        lines = [f"{self.notebook} ({self.assignment or 'unknown assignment'}):"]
        if self.gradable:
            lines.append("  GRADABLE: every graded cell is present once, with its nbgrader metadata and "
                         "locked source as released.")
        else:
            lines.append(f"  NOT GRADABLE AS IT IS: {len(self.problems)} problem(s). Fix them, save, and run "
                         "this check again:")
            lines += [f"  - {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        if self.rule_breaks:
            lines.append(f"  RULES: {len(self.rule_breaks)} function(s) break the rule the introduction states; the "
                         "grader gives 0 for their tests:")
            lines += [f"  - {b}" for b in self.rule_breaks]
        if self.executed:
            total = len(self.passed_checks) + len(self.failed_checks)
            if self.failed_checks:
                lines.append(f"  VISIBLE CHECKS: {len(self.failed_checks)} of {total} failed:")
                lines += [f"  - {f}" for f in self.failed_checks]
            else:
                lines.append(f"  VISIBLE CHECKS: all {total} passed (the hidden tests still decide the points).")
        else:
            lines.append("  Visible checks not run here: `python -m cs_lib.submission_check "
                         f"{Path(self.notebook).name}` runs them all in a fresh process.")
        return "\n".join(lines)


def source_digest(source: str | list[str]) -> str:
    """sha256 of a cell's source, with line endings and trailing blank space normalised."""
    text = "".join(source) if isinstance(source, list) else str(source)
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_manifest(assignment: str, release: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a release notebook (its JSON as a dict): what :func:`check_structure` compares with.

    Returns:
        ``{"assignment": str, "cells": [{"grade_id", "cell_type", "solution", "grade", "locked",
        "points", "source_sha256" (locked cells only)}]}`` in notebook order.
    """
    cells = []
    for cell in release.get("cells", []):
        meta = _nbgrader(cell)
        if not meta.get("grade_id"):
            continue
        entry = {"grade_id": meta["grade_id"], "cell_type": cell.get("cell_type")}
        entry.update({flag: meta.get(flag, False if flag != "points" else 0) for flag in CHECKED_FLAGS})
        if meta.get("locked"):
            entry["source_sha256"] = source_digest(cell.get("source", ""))
        cells.append(entry)
    return {"assignment": assignment, "cells": cells}


def load_manifest(assignment: str | None, notebook: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of ``assignment``, or of the assignment whose grade_ids the notebook shares most."""
    if assignment is not None:
        path = MANIFEST_DIR / f"{assignment}.json"
        return json.loads(path.read_text()) if path.exists() else None
    ids = {_nbgrader(c).get("grade_id") for c in notebook.get("cells", [])} - {None, "imports"}
    best, best_shared = None, 0
    for path in sorted(MANIFEST_DIR.glob("*.json")):
        manifest = json.loads(path.read_text())
        shared = len(ids & {c["grade_id"] for c in manifest["cells"]})
        if shared > best_shared:
            best, best_shared = manifest, shared
    return best


def check_structure(notebook: dict[str, Any], manifest: dict[str, Any], report: Report) -> None:
    """Add to ``report`` every way the notebook's graded cells differ from the manifest."""
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        report.problems.append("the file is not a Jupyter notebook (no list of cells).")
        return
    where: dict[str, list[int]] = {}
    for index, cell in enumerate(cells):
        grade_id = _nbgrader(cell).get("grade_id")
        if grade_id:
            where.setdefault(grade_id, []).append(index)
    expected = {c["grade_id"]: c for c in manifest["cells"]}
    for grade_id, entry in expected.items():
        found = where.get(grade_id, [])
        what = _describe(entry)
        if not found:
            report.problems.append(
                f"{what} is missing (deleted, or its metadata was lost by copy-paste). Copy it back from a "
                "fresh copy of the notebook in the bundle, in the same place.")
            continue
        if len(found) > 1:
            report.problems.append(
                f"{what} appears {len(found)} times (cells {', '.join(str(i + 1) for i in found)}). Keep one; "
                "delete the copies, or paste your scratch code into a new cell (Insert > Code cell) instead.")
        cell = cells[found[-1]]
        if cell.get("cell_type") != entry["cell_type"]:
            report.problems.append(f"{what} (cell {found[-1] + 1}) was turned into a {cell.get('cell_type')} cell; "
                                   f"make it a {entry['cell_type']} cell again.")
        meta = _nbgrader(cell)
        changed = [f"{flag}: {meta.get(flag)!r} instead of {entry[flag]!r}" for flag in CHECKED_FLAGS
                   if meta.get(flag, False if flag != "points" else 0) != entry[flag]]
        if changed:
            report.problems.append(f"{what} (cell {found[-1] + 1}) has changed nbgrader metadata ("
                                   + "; ".join(changed) + "). Copy the cell from a fresh copy of the notebook.")
        if "source_sha256" in entry and source_digest(cell.get("source", "")) != entry["source_sha256"]:
            report.problems.append(
                f"{what} (cell {found[-1] + 1}) was edited. It is locked: the grader runs the original, so your "
                "edits there do not count. Undo them (copy the cell from a fresh copy of the notebook).")
        if entry["solution"] and not entry["grade"] and cell.get("cell_type") == "code" \
                and "raise NotImplementedError" in "".join(cell.get("source", "")):
            report.notes.append(f"{what} still raises NotImplementedError: not answered yet.")
    shell = [str(i + 1) for i, c in enumerate(cells) if c.get("cell_type") == "code" and any(
        line.lstrip().startswith("!") for line in "".join(c.get("source", "")).split("\n"))]
    if shell:
        report.notes.append(f"cell(s) {', '.join(shell)} run shell commands (`!...`), such as the setup cell: "
                            "delete them before you submit; the grader runs your notebook offline.")
    unknown = sorted(set(where) - set(expected))
    if unknown:
        report.notes.append(
            "cells with nbgrader metadata the release does not have (" + ", ".join(unknown) + "): the grader "
            "runs them as ordinary cells.")


def check_rules_of(notebook: dict[str, Any], report: Report) -> None:
    """Add to ``report`` each graded function that breaks its rule, found in the notebook's code cells exactly
    as the grader finds it (:func:`cs_lib.rules.source_findings`, never running the code)."""
    from cs_lib.policies import POLICIES
    from cs_lib.rules import source_findings

    policies = POLICIES.get(report.assignment or "")
    cells = notebook.get("cells")
    if not policies or not isinstance(cells, list):
        return
    sources = [(f"cell {i + 1}", "".join(c.get("source", ""))) for i, c in enumerate(cells)
               if isinstance(c, dict) and c.get("cell_type") == "code"]
    for findings in source_findings(sources, policies).values():
        report.rule_breaks.append(findings[0].message())


def run_visible_checks(path: Path, notebook: dict[str, Any], report: Report, timeout: float = 3600) -> None:
    """Run the notebook's code cells in a fresh Python process (grading mode); record each test cell's verdict."""
    cells = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell.get("source", ""))
        if SELF_CALL in source:
            continue
        code = "\n".join("pass" if line.lstrip().startswith(("!", "%")) else line for line in source.split("\n"))
        meta = _nbgrader(cell)
        cells.append({"code": code, "grade_id": meta.get("grade_id") if meta.get("grade") else None})
    bundle_root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as scratch:
        job = Path(scratch) / "cells.json"
        job.write_text(json.dumps(cells))
        env = {**os.environ, "DLCV_GRADING": "1", "MPLBACKEND": "Agg",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(bundle_root), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run([sys.executable, "-c", _RUNNER, str(job)], cwd=path.parent, env=env,
                              capture_output=True, text=True, timeout=timeout)
        results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"kit_result"')]
    report.executed = True
    for result in results:
        if result["grade_id"] is None:
            if result["error"]:
                report.notes.append(f"an ungraded cell failed ({result['error']}); later cells may fail because of it.")
            continue
        if result["error"]:
            report.failed_checks.append(f"{result['grade_id']}: {result['error']}")
        else:
            report.passed_checks.append(result["grade_id"])
    if proc.returncode != 0 and not results:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        report.failed_checks.append(f"the notebook's code could not run at all ({tail[0]})")


#: Executed in the fresh process: every cell in one namespace; one JSON line per cell.
_RUNNER = r"""
import json, os, sys
import matplotlib
matplotlib.use("Agg")
cells = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__", "In": [""]}  # In: the cells run so far, as IPython keeps them
real_stdout = sys.stdout
for number, cell in enumerate(cells, 1):
    error = ""
    namespace["In"].append(cell["code"])
    sys.stdout = open(os.devnull, "w")
    try:
        exec(compile(cell["code"], f"cell {number}", "exec"), namespace)
    except BaseException as exc:
        lines = str(exc).strip().splitlines()
        error = f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]
    finally:
        sys.stdout.close()
        sys.stdout = real_stdout
    try:
        import matplotlib.pyplot as plt
        plt.close("all")
    except Exception:
        pass
    print(json.dumps({"kit_result": number, "grade_id": cell["grade_id"], "error": error}), flush=True)
"""


def check_notebook(path: str | os.PathLike[str], assignment: str | None = None, execute: bool = True) -> Report:
    """Check the notebook at ``path``; see the module docstring. Never raises for a bad notebook: it reports.

    Args:
        path: the ``.ipynb`` file to check.
        assignment: its assignment; ``None`` picks the manifest whose grade_ids the notebook shares most.
        execute: also run every visible check (slow: minutes); ``False`` checks the structure only.
    """
    path = Path(path)
    report = Report(notebook=str(path), assignment=assignment)
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.problems.append(f"the file cannot be read as a notebook ({type(exc).__name__}: {exc}). Submit the "
                               ".ipynb file that Jupyter or Colab saved (File > Download > Download .ipynb).")
        return report
    if not isinstance(notebook, dict):
        report.problems.append("the file is JSON but not a Jupyter notebook.")
        return report
    return check_loaded(notebook, report, path if execute else None)


def check_loaded(notebook: dict[str, Any], report: Report, execute_from: Path | None) -> Report:
    """Check an already loaded notebook; run its visible checks from ``execute_from``'s folder when given."""
    manifest = load_manifest(report.assignment, notebook)
    if manifest is None:
        report.problems.append(
            f"no manifest for {report.assignment or 'this notebook'} in {MANIFEST_DIR}: run the check from the "
            "folder the assignment's bundle unzipped into (its cs_lib has the manifests).")
        return report
    report.assignment = manifest["assignment"]
    check_structure(notebook, manifest, report)
    check_rules_of(notebook, report)
    if execute_from is not None and report.gradable:
        run_visible_checks(execute_from, notebook, report)
    return report


def check_this_notebook(assignment: str) -> Report | None:
    """The notebook's last cell: check the structure of the notebook being edited and print the verdict.

    On Colab it checks the notebook as it is in the browser; elsewhere the file ``<assignment>.ipynb`` in
    the current folder or the bundle's folder, as last saved (save first). While grading it does nothing.
    """
    from cs_lib.runtime import in_grading

    if in_grading():
        print("submission check: skipped while grading")
        return None
    if not (MANIFEST_DIR / f"{assignment}.json").exists():
        print(f"submission check: {MANIFEST_DIR} has no {assignment}.json, so this is not a student bundle "
              "(the release writes it): nothing to check against.")
        return None
    notebook, where = _colab_notebook(), "the notebook open in Colab"
    if notebook is None:
        candidates = [Path.cwd() / f"{assignment}.ipynb", Path(__file__).resolve().parents[1] / f"{assignment}.ipynb"]
        found = next((p for p in candidates if p.exists()), None)
        if found is None:
            print(f"submission check: no {assignment}.ipynb in {candidates[0].parent} or {candidates[1].parent}. "
                  f"Save the notebook there, or run `python -m cs_lib.submission_check PATH` on the file.")
            return None
        print(f"Checking {found} as last saved (save first: File > Save).")
        report = check_notebook(found, assignment, execute=False)
    else:
        report = check_loaded(notebook, Report(notebook=where, assignment=assignment), None)
    print(report.text())
    return report


def _colab_notebook() -> dict[str, Any] | None:
    """The live notebook from Colab's frontend, or None outside Colab."""
    if "google.colab" not in sys.modules:
        return None
    try:
        from google.colab import _message  # type: ignore[import-not-found]

        reply = _message.blocking_request("get_ipynb", timeout_sec=30)
        return reply["ipynb"] if isinstance(reply, dict) and "ipynb" in reply else None
    except Exception:  # noqa: BLE001 - any failure: fall back to the saved file
        return None


def _nbgrader(cell: Any) -> dict[str, Any]:
    meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell, dict) else {}
    return meta if isinstance(meta, dict) else {}


def _describe(entry: dict[str, Any]) -> str:
    grade_id = entry["grade_id"]
    if entry["grade"] and not entry["solution"]:
        return f"the test cell '{grade_id}' ({entry['points']} point(s))"
    if entry["solution"] and entry["grade"]:
        return f"the written answer '{grade_id}' ({entry['points']} point(s))"
    if entry["solution"]:
        return f"the answer cell '{grade_id}'"
    return f"the cell '{grade_id}'"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m cs_lib.submission_check",
                                     description="Say whether a notebook is gradable before you submit it.")
    parser.add_argument("notebook", help="the .ipynb file you will submit")
    parser.add_argument("--assignment", help="its assignment (default: recognised from its cells)")
    parser.add_argument("--fast", action="store_true", help="check the structure only; do not run the notebook")
    args = parser.parse_args(argv)
    report = check_notebook(args.notebook, args.assignment, execute=not args.fast)
    print(report.text())
    if report.problems and report.problems[0].startswith(("the file cannot", "no manifest")):
        return 2
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
