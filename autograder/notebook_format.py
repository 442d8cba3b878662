"""The kit's notebook conventions, defined once: nbgrader metadata accessors and the BEGIN/END markers.

- answer cell: a code cell with ``nbgrader.solution`` and not ``grade``; its ``grade_id`` is the
  function's name, and ``### BEGIN SOLUTION`` / ``### END SOLUTION`` wrap the reference body;
- test cell: a code cell with ``nbgrader.grade`` and not ``solution`` (``grade_id`` ``test_<name>``);
  its hidden block sits between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``;
- the ``imports`` cell: the first code cell, tagged ``imports``.
"""

from __future__ import annotations

import re
from typing import Any

BEGIN_SOLUTION = "BEGIN SOLUTION"
END_SOLUTION = "END SOLUTION"
BEGIN_HIDDEN = "BEGIN HIDDEN TESTS"
END_HIDDEN = "END HIDDEN TESTS"
SOLUTION_MARKERS = (BEGIN_SOLUTION, END_SOLUTION)
HIDDEN_MARKERS = (BEGIN_HIDDEN, END_HIDDEN)
ALL_MARKERS = (*SOLUTION_MARKERS, *HIDDEN_MARKERS)

#: One ``### BEGIN SOLUTION`` or ``### END SOLUTION`` line.
SOLUTION_DELIMITER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)
#: A whole solution region, delimiters included; group 1 is its indentation.
SOLUTION_REGION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n.*?^[ \t]*### END SOLUTION[^\n]*(\n|$)",
                             re.MULTILINE | re.DOTALL)


def nbgrader_meta(cell: Any) -> dict:
    """The cell's ``metadata.nbgrader`` dict (empty when absent or malformed)."""
    meta = cell.get("metadata", {}).get("nbgrader", {}) if hasattr(cell, "get") else {}
    return meta if isinstance(meta, dict) else {}


def grade_id_of(cell: Any) -> str | None:
    """The cell's nbgrader ``grade_id``, or None."""
    gid = nbgrader_meta(cell).get("grade_id")
    return gid if isinstance(gid, str) and gid else None


def is_graded(cell: Any) -> bool:
    """True for cells that carry points (nbgrader ``grade: true``)."""
    return bool(nbgrader_meta(cell).get("grade"))


def is_answer_cell(cell: Any) -> bool:
    """An autograded-answer code cell (``solution`` and not ``grade``)."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("solution")) and not meta.get("grade")


def is_test_cell(cell: Any) -> bool:
    """An autograded test code cell (``grade`` and not ``solution``): its points come from the judge."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")
