"""What a submission changed in the release's nbgrader cells, and the one rule that repairs it.

The release notebook is the reference: every cell with nbgrader metadata there carries a
``grade_id``; its locked cells (the test cells, the imports cell) carry a checksum of the source
students received. Students paste cells twice, paste a graded cell to start a scratch cell, add
cells with nbgrader metadata, delete it, or change a flag or the cell type by accident. None of
that may crash nbgrader or cost points that the student's code earns, so before nbgrader sees the
submission the grader applies this rule (:func:`repair_plan`), in notebook order:

1. **Unknown metadata is dropped.** A cell whose nbgrader metadata has no ``grade_id``, or a
   ``grade_id`` that the release does not have, loses its nbgrader metadata and runs as an
   ordinary cell.
2. **One copy per release cell.** When several cells carry one release ``grade_id``, one of them
   keeps it and the others lose their nbgrader metadata and run, in order, as ordinary cells
   (so no code the student wrote is dropped):

   - an answer cell: the **last copy that defines the release's functions** (``def softmax``)
     **before its test cell**: the definition that the test uses when the notebook runs top to
     bottom (without one before the test, the last copy that defines them; without any, the last
     copy). Every copy still runs where it stands, so a test always uses the definition in force at
     its position, exactly as in the student's own run;
   - a locked cell (a test, the imports): the last copy whose source is the release's (the
     original, not a scratch cell pasted from it); without one, the last copy.
3. **Lost metadata is found again.** A release cell that no cell carries is looked for among the
   ordinary cells: a locked cell by its release source (the last such cell), an answer cell by the
   functions it defines (the last such cell before its test, as in rule 2). The cell found gets the
   release metadata back. Locked cells are settled before answer cells, so that an answer's test is
   known when its copy is chosen.
4. **A deleted test cell comes back.** A graded cell that is still missing is inserted from the
   release right after the nearest earlier release cell (at the end if none is there); nbgrader's
   ``OverwriteCells`` then gives it its hidden tests. A deleted answer or imports cell is not
   restored: its code is the student's to keep or delete.
5. **Metadata is the release's.** Every kept cell gets the release's nbgrader metadata and cell
   type back (changed ``points``, ``grade``, ``solution``, ``locked`` or ``cell_type``), and a
   markdown cell of the release that was turned into code, source unchanged, is markdown again.
   nbgrader's ``OverwriteCells`` then puts back the source of locked cells (with the hidden tests)
   and the points from the gradebook.

After the repair each release ``grade_id`` is on exactly one cell, with the release metadata, so
nbgrader's ``DeduplicateIds``, ``OverwriteCells`` (``add_missing_cells``) and ``CheckCellMetadata``
have nothing to refuse. Each action is one :class:`CellChange` (:func:`inspect_cells`); the worker
puts those of a test cell in its ``tampering`` column of ``tests.csv`` and the others in ``notes``.
:func:`restore_metadata` applies the rule.

:func:`notebook_problem` rejects what cannot be graded at all: an empty file, invalid JSON,
something that is not a notebook, or a notebook with none of the assignment's cells.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import dataclass, field

import nbformat
from nbformat import NotebookNode

from autograder.notebook_format import grade_id_of, is_graded, nbgrader_meta

#: nbgrader flags whose change is reported by name.
FLAGS = ("grade", "solution", "locked", "task")

_DEFINITION = re.compile(r"^(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z_]\w*)", re.MULTILINE)


@dataclass(frozen=True)
class CellChange:
    """One change a submission made to the release's nbgrader cells, and what the grader did about it."""

    grade_id: str  # the release cell concerned, or the unknown grade_id ("" when the cell had none)
    kind: str  # deleted | duplicated | edited | points | metadata | unknown | recovered | cell type
    detail: str


@dataclass
class RepairPlan:
    """What :func:`restore_metadata` does to a submission (indices are the submission's cells)."""

    keep: dict[int, str] = field(default_factory=dict)  # cell -> release grade_id it carries
    strip: set[int] = field(default_factory=set)  # cells that lose their nbgrader metadata
    to_markdown: set[int] = field(default_factory=set)  # release markdown cells turned into code
    insert: list[tuple[int, str]] = field(default_factory=list)  # (after cell, -1: at the end; grade_id)
    changes: list[CellChange] = field(default_factory=list)


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
    # Recognised by any graded or answer cell of the release (not by the locked cells every assignment shares,
    # such as ``imports``), so that a notebook whose test cells lost their metadata is still this assignment's.
    expected = {gid for c in release.cells
                if (gid := grade_id_of(c)) and (is_graded(c) or nbgrader_meta(c).get("solution"))}
    found = {gid for c in nb.cells if (gid := grade_id_of(c))}
    if expected and not expected & found:
        if found:
            return None, (f"this notebook is not assignment '{assignment}': none of its graded cells "
                          f"({', '.join(graded_ids(release))}) are there")
        return None, (f"this notebook has none of assignment '{assignment}''s cells (wrong notebook, or its "
                      "metadata was lost; copy the answers into a fresh copy of the release)")
    return nb, None


def inspect_cells(submission: NotebookNode, release: NotebookNode) -> list[CellChange]:
    """Every change ``submission`` made to the release's nbgrader cells, with what the grader does about it."""
    return repair_plan(submission, release).changes


def restore_metadata(submission: NotebookNode, release: NotebookNode) -> None:
    """Apply the module's rule to ``submission`` in place (see :func:`repair_plan`)."""
    plan = repair_plan(submission, release)
    reference = {gid: c for c in release.cells if (gid := grade_id_of(c))}
    used_ids = {c.get("id") for c in submission.cells}
    after: dict[int, list[NotebookNode]] = {}
    for where, gid in plan.insert:
        fresh = copy.deepcopy(reference[gid])
        fresh.pop("id", None)
        if submission.get("nbformat_minor", 5) >= 5:  # cell ids exist from nbformat 4.5 on
            fresh["id"] = _new_id(used_ids)  # a fresh one: the student's notebook may still hold the release's
        if fresh.cell_type == "code":
            fresh.outputs, fresh.execution_count = [], None
        after.setdefault(where, []).append(fresh)
    cells: list[NotebookNode] = []
    for i, cell in enumerate(submission.cells):
        if i in plan.strip:
            cell.metadata.pop("nbgrader", None)
        if i in plan.to_markdown:
            cell = _as_type(cell, "markdown")
        if i in plan.keep:
            ref = reference[plan.keep[i]]
            if cell.cell_type != ref.cell_type:
                cell = _as_type(cell, ref.cell_type)
            cell.metadata["nbgrader"] = copy.deepcopy(ref.metadata["nbgrader"])
        cells.append(cell)
        cells.extend(after.get(i, []))
    cells.extend(after.get(-1, []))
    submission.cells = cells


def repair_plan(submission: NotebookNode, release: NotebookNode) -> RepairPlan:
    """What the module's rule does to ``submission``: which cell keeps which ``grade_id``, and why."""
    plan = RepairPlan()
    release_cells = [(gid, c) for c in release.cells if (gid := grade_id_of(c))]
    reference = dict(release_cells)
    cells = submission.cells
    carriers: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):  # 1. unknown metadata is dropped
        if "nbgrader" not in cell.get("metadata", {}):
            continue
        gid = grade_id_of(cell)
        if gid in reference:
            carriers.setdefault(gid, []).append(i)
            continue
        plan.strip.add(i)
        said = f"has nbgrader metadata for grade_id '{gid}', which is not in the release" if gid \
            else "has nbgrader metadata without a grade_id"
        plan.changes.append(CellChange(gid or "", "unknown", f"cell {i + 1} {said}; the metadata was removed "
                                                             "and the cell runs as an ordinary cell"))
    tests = _tests_of_answers(release_cells)
    for locked in (True, False):  # 2-3, locked cells first: an answer's copy is chosen knowing where its test is
        for gid, ref in release_cells:
            if is_locked(ref) != locked:
                continue
            found = carriers.get(gid, [])
            test = carriers.get(tests.get(gid, ""), [])
            before = test[0] if len(test) == 1 else None  # the answer whose definition the test uses
            if len(found) > 1:  # 2. one copy per release cell
                keep, why = _choose(ref, [(i, cells[i]) for i in found], before)
                plan.strip.update(i for i in found if i != keep)
                carriers[gid] = [keep]
                role = ("keeps its nbgrader metadata; all copies run in order, so a test uses the definition in "
                        "force where it stands" if nbgrader_meta(ref).get("solution") else
                        "is the test; the other copies run as ordinary cells")
                plan.changes.append(CellChange(gid, "duplicated", (
                    f"{_what(ref)} '{gid}' appears {len(found)} times (cells {', '.join(str(i + 1) for i in found)});"
                    f" cell {keep + 1} ({why}) {role}")))
            elif not found:  # 3. lost metadata is found again
                claimed = {i for kept in carriers.values() for i in kept}
                ordinary = [(i, c) for i, c in enumerate(cells) if i not in claimed
                            and ("nbgrader" not in c.get("metadata", {}) or i in plan.strip)]
                match = _recover(ref, ordinary, before)
                if match is None:
                    continue
                carriers[gid] = [match]
                plan.strip.discard(match)
                how = "which has its release source" if is_locked(ref) else \
                    f"which defines {', '.join(sorted(_definitions(ref.source)))}"
                plan.changes.append(CellChange(gid, "recovered", (
                    f"{_what(ref)} '{gid}' has lost its nbgrader metadata (or its grade_id was changed); cell "
                    f"{match + 1}, {how}, gets it back")))
    claimed = {i for kept in carriers.values() for i in kept}
    position = {gid: found[0] for gid, found in carriers.items() if found}
    for n, (gid, ref) in enumerate(release_cells):  # 4. a deleted test cell comes back
        if gid in position:
            continue
        if is_graded(ref):
            earlier = [position[g] for g, _ in release_cells[:n] if g in position]
            where = max(earlier) if earlier else -1
            plan.insert.append((where, gid))
            plan.changes.append(CellChange(gid, "deleted", (
                f"{_what(ref)} '{gid}' was deleted (or lost its nbgrader metadata and was edited); restored "
                "from the source " + (f"after cell {where + 1}" if where >= 0 else "at the end of the notebook"))))
        elif is_locked(ref):
            plan.changes.append(CellChange(gid, "deleted", f"{_what(ref)} '{gid}' was deleted; not restored"))
        else:
            plan.changes.append(CellChange(gid, "deleted", (
                f"{_what(ref)} '{gid}' is missing (deleted, or its metadata lost and no cell defines "
                f"{', '.join(sorted(_definitions(ref.source))) or 'its functions'}); not restored")))
    for gid, ref in release_cells:  # 5. metadata is the release's
        if gid not in position:
            continue
        cell = cells[position[gid]]
        ref_meta, meta = nbgrader_meta(ref), nbgrader_meta(cell)
        if gid in {c.grade_id for c in plan.changes if c.kind == "recovered"}:
            meta = ref_meta  # it had none: reported as recovered
        if is_graded(ref) and meta is not ref_meta and _points(meta) != _points(ref_meta):
            plan.changes.append(CellChange(gid, "points", f"points of '{gid}' changed from {_points(ref_meta)} to "
                                                          f"{_points(meta)}; restored"))
        flags = [k for k in FLAGS if bool(meta.get(k)) != bool(ref_meta.get(k))]
        if not is_graded(ref) and meta.get("points") != ref_meta.get("points"):
            flags.append("points")
        if cell.cell_type != ref.cell_type:
            flags.append("cell type")
        if flags:
            plan.changes.append(CellChange(gid, "metadata", f"nbgrader metadata of '{gid}' changed "
                                                            f"({', '.join(flags)}); restored"))
        if is_locked(ref) and _normalized(cell.source) != _normalized(ref.source):
            plan.changes.append(CellChange(gid, "edited", f"{_what(ref)} '{gid}' was edited; the grader ran the "
                                                          "original"))
    markdown = {_normalized(c.source) for c in release.cells if c.cell_type == "markdown" and c.source.strip()}
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and i not in claimed and _normalized(cell.source) in markdown:
            plan.to_markdown.add(i)
            plan.changes.append(CellChange("", "cell type", f"a markdown cell of the release was turned into code "
                                                            f"(cell {i + 1}); it is markdown again"))
    plan.keep = {found[0]: gid for gid, found in carriers.items() if found}
    return plan


def _choose(ref: NotebookNode, copies: list[tuple[int, NotebookNode]], before: int | None) -> tuple[int, str]:
    """The copy of a duplicated release cell that keeps its ``grade_id``, and why (rule 2).

    ``before`` is the position of the answer's test cell, if known: the definition in force there wins.
    """
    if is_locked(ref):
        same = [i for i, c in copies if _normalized(c.source) == _normalized(ref.source)]
        if same:
            return same[-1], "the last copy with the release's source"
    elif names := _definitions(ref.source):
        defining = [i for i, c in copies if c.cell_type == "code" and names <= _definitions(c.source)]
        prior = [i for i in defining if before is not None and i < before]
        if prior:
            return prior[-1], f"the last copy that defines {', '.join(sorted(names))} before its test"
        if defining:
            return defining[-1], f"the last copy that defines {', '.join(sorted(names))}"
    return copies[-1][0], "the last copy"


def _recover(ref: NotebookNode, ordinary: list[tuple[int, NotebookNode]], before: int | None) -> int | None:
    """The ordinary cell that is ``ref`` without its metadata (rule 3), or None."""
    if is_locked(ref):
        same = [i for i, c in ordinary if _normalized(c.source) == _normalized(ref.source)]
        return same[-1] if same and ref.source.strip() else None
    names = _definitions(ref.source)
    if ref.cell_type != "code" or not names:
        return None
    defining = [i for i, c in ordinary if c.cell_type == "code" and names <= _definitions(c.source)]
    prior = [i for i in defining if before is not None and i < before]
    return (prior or defining or [None])[-1]


def _tests_of_answers(release_cells: list[tuple[str, NotebookNode]]) -> dict[str, str]:
    """answer grade_id -> the grade_id of the first test cell after it in the release (before the next answer)."""
    tests, answer = {}, None
    for gid, cell in release_cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution"):
            answer = gid if not meta.get("grade") else None
        elif meta.get("grade") and answer is not None:
            tests[answer], answer = gid, None
    return tests


def _definitions(source: str) -> set[str]:
    """Names of the functions and classes that a cell defines at its top level."""
    return set(_DEFINITION.findall(source))


def _what(ref: NotebookNode) -> str:
    if is_graded(ref) and not nbgrader_meta(ref).get("solution"):
        return "test cell"
    if nbgrader_meta(ref).get("solution"):
        return "answer cell"
    return "locked cell"


def _as_type(cell: NotebookNode, cell_type: str) -> NotebookNode:
    """``cell`` as a ``cell_type`` cell, with its id, source and metadata."""
    new = nbformat.v4.new_code_cell() if cell_type == "code" else \
        nbformat.v4.new_markdown_cell() if cell_type == "markdown" else nbformat.v4.new_raw_cell()
    new.source, new.metadata = cell.source, cell.metadata
    if "id" in cell:
        new["id"] = cell["id"]
    else:
        new.pop("id", None)
    return new


def _new_id(used: set) -> str:
    while (new := uuid.uuid4().hex[:8]) in used:
        pass
    used.add(new)
    return new


def _points(meta: dict) -> float | None:
    try:
        return float(meta.get("points"))
    except (TypeError, ValueError):
        return None


def _normalized(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())
