"""What a submission changed in the cells students must not change, and putting it back.

The release notebook is the reference: every cell with nbgrader metadata there carries a
``grade_id``; its locked cells (the test cells, the imports cell) carry a checksum of the
source students received. :func:`inspect_cells` lists every deleted, duplicated or
edited locked cell and every changed ``points`` or nbgrader flag, as human-readable
:class:`CellChange` records that :mod:`autograder.batch.results` puts in the per-test CSV.

:func:`restore_metadata` then gives every cell with a known ``grade_id`` its release
metadata back (so a test cell whose ``grade`` flag was removed is graded again). nbgrader's
own ``OverwriteCells`` step does the rest during autograding: it puts back the source of
locked cells (with the hidden tests) and the points from the gradebook, and, with
``add_missing_cells``, re-inserts deleted test cells.

:func:`notebook_problem` rejects what cannot be graded at all: an empty file, invalid JSON,
something that is not a notebook, or a notebook with none of the assignment's cells.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import nbformat
from nbformat import NotebookNode

from autograder.notebook_format import grade_id_of, is_graded, nbgrader_meta


@dataclass(frozen=True)
class CellChange:
    """One change a submission made to a protected cell."""

    grade_id: str
    kind: str  # deleted | duplicated | edited | points | metadata
    detail: str


def is_locked(cell: NotebookNode) -> bool:
    """True for cells whose source students must not change (nbgrader's definition)."""
    meta = nbgrader_meta(cell)
    if meta.get("solution"):
        return False
    return bool(meta.get("grade") or meta.get("locked"))


def graded_ids(nb: NotebookNode) -> list[str]:
    """grade_ids of the cells that carry points, in notebook order."""
    return [gid for c in nb.cells if is_graded(c) and (gid := grade_id_of(c))]


def notebook_problem(raw: bytes, release: NotebookNode, assignment: str) -> tuple[NotebookNode | None, str | None]:
    """Parse a submitted file; return ``(notebook, None)`` or ``(None, why it cannot be graded)``."""
    if not raw.strip():
        return None, "the submitted file is empty"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "the submitted file is not UTF-8 text (is it a notebook?)"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"the submitted file is not valid JSON ({exc.msg} at line {exc.lineno}); is it a notebook?"
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        return None, "the submitted file is JSON but not a Jupyter notebook"
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds
        return None, f"the submitted notebook cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
    for cell in nb.cells:  # nbformat tolerates some malformed cells; nbgrader does not
        if not isinstance(cell.get("source", ""), str) or not isinstance(cell.get("metadata", {}), dict):
            return None, "the submitted notebook has malformed cells"
    expected = set(graded_ids(release))
    found = {gid for c in nb.cells if (gid := grade_id_of(c))}
    if expected and not expected & found:
        if found:
            return None, (f"this notebook is not assignment '{assignment}': none of its graded cells "
                          f"({', '.join(sorted(expected))}) are there")
        return None, (f"this notebook has none of assignment '{assignment}''s cells (wrong notebook, or its "
                      "metadata was lost; copy the answers into a fresh copy of the release)")
    return nb, None


def inspect_cells(submission: NotebookNode, release: NotebookNode) -> list[CellChange]:
    """Every change ``submission`` made to the release's locked or graded cells."""
    by_id: dict[str, list[NotebookNode]] = {}
    for cell in submission.cells:
        if (gid := grade_id_of(cell)) is not None:
            by_id.setdefault(gid, []).append(cell)
    changes = []
    for ref in release.cells:
        gid = grade_id_of(ref)
        if gid is None or not (is_locked(ref) or is_graded(ref)):
            continue
        found = by_id.get(gid, [])
        what = "test cell" if is_graded(ref) and not nbgrader_meta(ref).get("solution") else "locked cell"
        if not found:
            restored = is_graded(ref)
            changes.append(CellChange(gid, "deleted", f"{what} '{gid}' was deleted"
                                      + ("; restored from the source" if restored else "; not restored")))
            continue
        if len(found) > 1:
            changes.append(CellChange(gid, "duplicated", f"{what} '{gid}' appears {len(found)} times; "
                                                         "the grader uses the last copy"))
        cell = found[-1]
        ref_meta, meta = nbgrader_meta(ref), nbgrader_meta(cell)
        if is_graded(ref) and _points(meta) != _points(ref_meta):
            changes.append(CellChange(gid, "points", f"points of '{gid}' changed from {_points(ref_meta)} to "
                                                     f"{_points(meta)}; restored"))
        flags = [k for k in ("grade", "solution", "locked") if bool(meta.get(k)) != bool(ref_meta.get(k))]
        if flags or cell.cell_type != ref.cell_type:
            changes.append(CellChange(gid, "metadata", f"nbgrader metadata of '{gid}' changed "
                                                       f"({', '.join(flags) or 'cell type'}); restored"))
        if is_locked(ref) and _normalized(cell.source) != _normalized(ref.source):
            changes.append(CellChange(gid, "edited", f"{what} '{gid}' was edited; the grader ran the original"))
    return changes


def restore_metadata(submission: NotebookNode, release: NotebookNode) -> None:
    """Give each cell with a release ``grade_id`` the release's nbgrader metadata and cell type."""
    reference = {gid: c for c in release.cells if (gid := grade_id_of(c))}
    for i, cell in enumerate(submission.cells):
        ref = reference.get(grade_id_of(cell) or "")
        if ref is None:
            continue
        if cell.cell_type != ref.cell_type:
            fresh = copy.deepcopy(ref)
            fresh.source = cell.source
            submission.cells[i] = cell = fresh
        cell.metadata["nbgrader"] = copy.deepcopy(ref.metadata["nbgrader"])


def _points(meta: dict) -> float | None:
    try:
        return float(meta.get("points"))
    except (TypeError, ValueError):
        return None


def _normalized(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())
