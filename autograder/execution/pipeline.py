"""The autograde pipeline: nbgrader's own steps, with the kit's steps swapped in.

nbgrader's ``Autograde`` converter runs two lists of preprocessors. The kit keeps both and
changes only this (:func:`autograde_config`):

- sanitizing (``sanitize_preprocessors``): unchanged, with ``OverwriteCells.add_missing_cells``
  on, so a deleted test cell is put back from the gradebook and run;
- autograding (``autograde_preprocessors``): ``Execute`` is replaced by
  :class:`~autograder.execution.executor.ResilientExecute`, and :class:`StderrIsNotAFailure` runs after
  ``IgnorePattern`` unless ``strict_stderr`` is set.

Everything else (``SaveAutoGrades``, ``LimitOutput``, late penalties, metadata checks) is
nbgrader's, so a submission that plain nbgrader grades gets the same grades.
"""

from __future__ import annotations

from typing import Any

from nbformat import NotebookNode
from nbgrader.preprocessors import Execute, IgnorePattern, NbGraderPreprocessor
from traitlets.config import Config

from autograder.execution.executor import ResilientExecute


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


def autograde_preprocessors(strict_stderr: bool = False) -> list[type]:
    """nbgrader's default autograde steps with ``Execute`` swapped for ``ResilientExecute``."""
    from nbgrader.converters import Autograde

    steps = []
    for step in Autograde.class_traits()["autograde_preprocessors"].default():
        steps.append(ResilientExecute if step is Execute else step)
        if step is IgnorePattern and not strict_stderr:
            steps.append(StderrIsNotAFailure)
    return steps


def autograde_config(base: Config, *, timeout: float, cell_timeout: float | None, memory: int,
                     max_output_chars: int, max_restarts: int, network_isolation: bool, report_path: str,
                     strict_stderr: bool, file_isolation: bool = True, judge_assignment: str = "") -> Config:
    """``base`` (the course's nbgrader config) plus the kit's pipeline and limits."""
    cfg = Config(base)
    cfg.Autograde.autograde_preprocessors = autograde_preprocessors(strict_stderr)
    cfg.OverwriteCells.add_missing_cells = True
    if cell_timeout:
        cfg.Execute.timeout = int(cell_timeout)
    cfg.ResilientExecute.submission_timeout = float(timeout)
    cfg.ResilientExecute.memory_limit = int(memory)
    cfg.ResilientExecute.max_output_chars = int(max_output_chars)
    cfg.ResilientExecute.max_kernel_restarts = int(max_restarts)
    cfg.ResilientExecute.network_isolation = bool(network_isolation)
    cfg.ResilientExecute.report_path = report_path
    cfg.ResilientExecute.file_isolation = bool(file_isolation)
    cfg.ResilientExecute.judge_assignment = judge_assignment
    return cfg
