"""Refuse a source notebook whose nbgrader metadata would make grading silently wrong.

nbgrader accepts, or fails late with a traceback on, notebooks that a TA can easily produce
by copying cells around. :func:`problems` lists every one of these, with the cell number
and what to do:

- a cell with nbgrader metadata but no ``grade_id``, or two cells with the same
  ``grade_id`` (nbgrader would silently drop one copy's metadata and its points);
- a graded cell (``grade: true``) without a positive number of ``points``;
- ``### BEGIN SOLUTION`` / ``### END SOLUTION`` outside a solution cell (the solution would
  ship in the release), unbalanced or nested;
- ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` outside a graded test cell (a code
  cell with ``grade: true`` and no ``solution``), unbalanced or nested.

:func:`check_source` raises :class:`MetadataError` listing them all.
"""

from __future__ import annotations

import json
from pathlib import Path

from autograder.notebook_format import HIDDEN_MARKERS as HIDDEN
from autograder.notebook_format import SOLUTION_MARKERS as SOLUTION


class MetadataError(ValueError):
    """A source notebook's nbgrader metadata is broken; the message lists every problem."""


def problems(nb: dict) -> list[str]:
    """Human-readable problems of a notebook given as parsed JSON (``json.load``)."""
    found: list[str] = []
    first_cell: dict[str, int] = {}
    for number, cell in enumerate(nb.get("cells", []), start=1):
        meta = cell.get("metadata", {}).get("nbgrader")
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        where = f"cell {number}"
        graded = solution = False
        if isinstance(meta, dict) and meta:
            graded, solution = bool(meta.get("grade")), bool(meta.get("solution"))
            task, locked = bool(meta.get("task")), bool(meta.get("locked"))
            grade_id = meta.get("grade_id")
            if grade_id:
                where = f"cell {number} (grade_id '{grade_id}')"
            if (graded or solution or task or locked) and not (isinstance(grade_id, str) and grade_id.strip()):
                found.append(f"{where}: nbgrader cell without a grade_id")
            elif isinstance(grade_id, str) and grade_id:
                if grade_id in first_cell:
                    found.append(f"{where}: duplicate grade_id '{grade_id}' (also cell {first_cell[grade_id]}); "
                                 "every nbgrader cell needs its own id")
                else:
                    first_cell[grade_id] = number
            if graded or task:
                points = meta.get("points")
                if isinstance(points, bool) or not isinstance(points, (int, float)) or points <= 0:
                    found.append(f"{where}: graded cell without points (points={points!r}); set a positive "
                                 "number in the nbgrader metadata")
        found.extend(_delimiter_problems(where, source, SOLUTION, allowed=solution,
                                         place="a solution cell (nbgrader 'solution': true)"))
        test_cell = graded and not solution and cell.get("cell_type") == "code"
        found.extend(_delimiter_problems(where, source, HIDDEN, allowed=test_cell,
                                         place="a graded test cell (a code cell with 'grade': true)"))
    return found


def check_source(path: Path) -> None:
    """Raise :class:`MetadataError` if the notebook at ``path`` has any of :func:`problems`."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{path} is not valid JSON: {exc}") from None
    found = problems(nb)
    if found:
        listing = "\n".join(f"  - {p}" for p in found)
        raise MetadataError(f"{path} has broken nbgrader metadata; fix it before releasing:\n{listing}")


def _delimiter_problems(where: str, source: str, delimiters: tuple[str, str], allowed: bool,
                        place: str) -> list[str]:
    begin, end = delimiters
    depth, found, seen = 0, [], False
    for line in source.split("\n"):
        if begin in line:
            seen = True
            if depth:
                found.append(f"{where}: nested '### {begin}'")
            depth += 1
        elif end in line:
            seen = True
            if not depth:
                found.append(f"{where}: '### {end}' without a '### {begin}' before it")
            depth = max(0, depth - 1)
    if depth:
        found.append(f"{where}: '### {begin}' without a matching '### {end}'")
    if seen and not allowed:
        found.insert(0, f"{where}: '### {begin}' / '### {end}' outside {place}")
    return found
