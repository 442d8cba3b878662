"""The autograde pipeline: nbgrader's own steps, with the kit's steps swapped in.

nbgrader's ``Autograde`` converter runs two lists of preprocessors. The kit keeps both and
changes only this (:func:`autograde_config`):

- sanitizing (``sanitize_preprocessors``): unchanged, with ``OverwriteCells.add_missing_cells``
  on, so a deleted test cell is put back from the gradebook and run;
- autograding (``autograde_preprocessors``): ``Execute`` is replaced by
  :class:`~autograder.execution.executor.ResilientExecute`, :class:`StderrIsNotAFailure` runs after
  ``IgnorePattern`` unless ``strict_stderr`` is set, and ``SaveAutoGrades`` is replaced by
  :class:`ScoreFromVerdicts`, which scores each judged test cell from the judge's verdict instead of
  from the cell's outputs (nbgrader's rule: an error output is 0, an ``execute_result`` number is
  partial credit, anything else full marks; every one of those outputs is the kernel's to forge).

Everything else (``LimitOutput``, late penalties, metadata checks, the gradebook writes) is
nbgrader's, so a submission that plain nbgrader grades gets the same grades.
"""

from __future__ import annotations

from typing import Any

from nbformat import NotebookNode
from nbgrader.preprocessors import Execute, IgnorePattern, NbGraderPreprocessor, SaveAutoGrades
from traitlets import Bool
from traitlets.config import Config

from autograder.execution.executor import VERDICTS, ResilientExecute
from autograder.execution.limits import Limits
from autograder.notebook_format import grade_id_of, is_test_cell


class StderrIsNotAFailure(NbGraderPreprocessor):
    """Turn stderr output of graded cells into stdout, so that it does not zero the test.

    nbgrader scores a test cell that wrote anything to stderr as failed, even when every
    assertion passed: a student's progress bar or a library's log line costs the points.
    The text stays visible (as stdout, prefixed ``[stderr]``), and the cell's
    ``metadata.autograder.stderr`` records that it happened.
    """

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> tuple[NotebookNode, Any]:
        if cell.cell_type != "code" or not cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            return cell, resources
        moved = False
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                out["name"] = "stdout"
                out["text"] = "[stderr] " + out.get("text", "")
                moved = True
        if moved:
            cell.metadata.setdefault("autograder", {})["stderr"] = True
        return cell, resources


class ScoreFromVerdicts(SaveAutoGrades):
    """nbgrader's ``SaveAutoGrades``, with each judged test cell scored from its verdict alone.

    A test cell whose ``grade_id`` the executor judged (``resources["autograder_verdicts"]``) gets its full
    points if and only if the verdict passed, else 0, whatever its outputs say. With ``strict_stderr`` a
    passing cell that wrote to stderr gets 0 too (nbgrader's rule; the kernel can only lower its own
    score that way). Cells that were not judged (answer cells graded by hand, a run without a judge) are
    scored by nbgrader as usual.
    """

    strict_stderr = Bool(False, help="a test cell that wrote to stderr gets 0, as in plain nbgrader").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        self._verdicts = resources.get(VERDICTS)
        return super().preprocess(nb, resources)

    def _add_score(self, cell: NotebookNode, resources: Any) -> None:
        gid = grade_id_of(cell)
        if self._verdicts is None or not is_test_cell(cell) or gid is None:
            super()._add_score(cell, resources)
            return
        verdict = self._verdicts.get(gid)
        max_points = float(cell.metadata["nbgrader"]["points"])
        wrote_stderr = any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in cell.outputs)
        passed = verdict is not None and verdict.passed and not (self.strict_stderr and wrote_stderr)
        grade = self.gradebook.find_grade(gid, self.notebook_id, self.assignment_id, self.student_id)
        grade.auto_score = max_points if passed else 0.0
        grade.needs_manual_grade = grade.manual_score is not None
        self.gradebook.db.commit()


def autograde_preprocessors(strict_stderr: bool = False) -> list[type]:
    """nbgrader's default autograde steps with ``Execute`` and ``SaveAutoGrades`` swapped for the kit's."""
    from nbgrader.converters import Autograde

    swaps = {Execute: ResilientExecute, SaveAutoGrades: ScoreFromVerdicts}
    steps = []
    for step in Autograde.class_traits()["autograde_preprocessors"].default():
        steps.append(swaps.get(step, step))
        if step is IgnorePattern and not strict_stderr:
            steps.append(StderrIsNotAFailure)
    return steps


def autograde_config(base: Config, limits: Limits, *, judge_assignment: str = "", report_key: str = "",
                     kernel_template: str = "") -> Config:
    """``base`` (the course's nbgrader config) plus the kit's pipeline and ``limits``."""
    cfg = Config(base)
    cfg.Autograde.autograde_preprocessors = autograde_preprocessors(limits.strict_stderr)
    cfg.OverwriteCells.add_missing_cells = True
    if limits.cell_timeout:
        cfg.Execute.timeout = int(limits.cell_timeout)
    cfg.ResilientExecute.submission_timeout = float(limits.timeout)
    cfg.ResilientExecute.memory_limit = int(limits.memory)
    cfg.ResilientExecute.max_output_chars = int(limits.max_output_chars)
    cfg.ResilientExecute.max_kernel_restarts = int(limits.max_restarts)
    cfg.ResilientExecute.max_processes = int(limits.processes)
    cfg.ResilientExecute.network_isolation = bool(limits.network_isolation)
    cfg.ResilientExecute.file_isolation = bool(limits.sandbox)
    cfg.ResilientExecute.report_key = report_key
    cfg.ResilientExecute.kernel_template = kernel_template
    cfg.ResilientExecute.judge_assignment = judge_assignment
    cfg.ScoreFromVerdicts.strict_stderr = bool(limits.strict_stderr)
    return cfg
