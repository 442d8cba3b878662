"""Find the submissions to grade in a folder or a zip, in nbgrader's layout or an LMS export.

Two layouts are recognised, and may be mixed:

- **nbgrader**: ``[submitted/]<student>/<assignment>/<notebook>.ipynb`` (an optional
  ``timestamp.txt`` beside the notebook is passed on to nbgrader, as ``nbgrader collect``
  writes it). The notebook should be ``<assignment>.ipynb``; if it is not there but exactly
  one other ``.ipynb`` is, that one is graded (with a note).
- **LMS** (Canvas, Moodle, ... "download all submissions"): any ``.ipynb`` whose name is
  ``<student>_<anything>.ipynb``, e.g. Canvas's
  ``smithjohn_12345_67890_network_visualization.ipynb`` or
  ``smithjohn_LATE_12345_67890_network_visualization-1.ipynb``. The student id is
  everything before the first ``_`` (spaces and non-ASCII letters are kept). The
  assignment is ``--assignment`` if given, else the longest known assignment name found in
  the file name, else the assignment whose graded cells the notebook holds.

**Several submissions from one student** (same assignment): the newest wins, and the
result notes which files it superseded. Time stamps, in this order of preference:

1. a date and time in the file name: ``2024-03-01T14-05-59``, ``2024-03-01 14:05``,
   ``2024-03-01_140559`` (ISO 8601 order, seconds optional; read as UTC);
2. nbgrader's ``timestamp.txt``;
3. the zip entry's date (local time of the machine that made the zip, as zip stores it;
   Canvas writes the submission time there) or the file's modification time.

Ties are broken by the LMS resubmission suffix (``-1``, ``-2``: higher is newer), then by
name. Everything else (non-notebook files, ``.ipynb_checkpoints``) is skipped and counted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import nbformat

from autograder import assignments, source_notebook
from autograder.execution.records import Submission
from autograder.execution.tampering import graded_ids

_NAME_TIMESTAMP = re.compile(
    r"(?<!\d)(\d{4})-(\d{2})-(\d{2})[T _-](\d{2})[-:.h]?(\d{2})(?:[-:.m]?(\d{2}))?(?!\d)")
_RESUBMISSION = re.compile(r"-(\d+)$")


@dataclass
class Discovery:
    """What :func:`discover` found."""

    submissions: list[Submission]
    skipped: list[str]  # files that are not notebooks
    unassigned: list[Submission]  # notebooks whose assignment could not be told


def discover(path: Path, known: dict[str, set[str]], assignment: str | None = None) -> Discovery:
    """Every submission under ``path`` (a folder or a ``.zip``), newest per student and assignment.

    Args:
        path: the folder or zip to search.
        known: ``assignment -> its graded cells' grade_ids`` (from the source notebooks).
        assignment: grade every LMS-style notebook as this assignment.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no submissions at {path}")
    entries = list(_zip_entries(path) if zipfile.is_zipfile(path) and path.is_file() else _dir_entries(path))
    found, skipped, unassigned = [], [], []
    nbgrader_dirs: dict[tuple[str, str], list[_Entry]] = {}
    for entry in entries:
        parts = entry.parts
        if any(p.startswith(".") or p == "__MACOSX" for p in parts[:-1]) or parts[-1].startswith("."):
            continue
        if not parts[-1].endswith(".ipynb"):
            if parts[-1] != "timestamp.txt":
                skipped.append(entry.origin)
            continue
        if len(parts) == 3 and parts[1] in known and (assignment is None or parts[1] == assignment):
            nbgrader_dirs.setdefault((parts[-3], parts[-2]), []).append(entry)
            continue
        found.append(_lms_submission(entry, known, assignment))
    for (student, name), notebooks in sorted(nbgrader_dirs.items()):
        found.append(_nbgrader_submission(student, name, notebooks, entries))
    for sub in found:
        if sub.assignment is None:
            if assignment is not None:
                sub.assignment = assignment
            elif len(known) == 1:
                sub.assignment = next(iter(known))
            else:
                sub.assignment = _assignment_from_content(sub, known)
    unassigned = [s for s in found if s.assignment is None]
    chosen = newest_per_student([s for s in found if s.assignment is not None])
    return Discovery(chosen, skipped, unassigned)


def newest_per_student(subs: Iterable[Submission]) -> list[Submission]:
    """Keep the newest submission of each (student, assignment); note what it superseded."""
    groups: dict[tuple[str, str | None], list[Submission]] = {}
    for sub in subs:
        groups.setdefault((sub.student, sub.assignment), []).append(sub)
    chosen = []
    for key in sorted(groups, key=lambda k: (k[1] or "", k[0])):
        group = sorted(groups[key], key=_age_key)
        newest = group[-1]
        if len(group) > 1:
            older = ", ".join(Path(s.member or s.path).name for s in group[:-1])
            newest.notes.append(f"newest of {len(group)} submissions by {newest.timestamp_source or 'name'} "
                                f"(superseded: {older})")
        chosen.append(newest)
    return chosen


def student_from_filename(name: str) -> str:
    """The LMS student id: the file name before its first ``_`` (the whole stem if none)."""
    stem = name[: -len(".ipynb")] if name.endswith(".ipynb") else name
    student = stem.split("_", 1)[0].strip()
    return safe_student_id(student or stem)


def safe_student_id(text: str) -> str:
    """``text`` usable as one folder name: no path separators or control characters, not ``.``/``..``."""
    cleaned = "".join("_" if ch in "/\\" or ord(ch) < 32 else ch for ch in text).strip()
    return cleaned if cleaned not in ("", ".", "..") else "unknown"


def timestamp_from_filename(name: str) -> str | None:
    """An ISO 8601 UTC time written in a file name (see the module docstring), or None."""
    m = _NAME_TIMESTAMP.search(name)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    try:
        return dt.datetime(y, mo, d, h, mi, s).isoformat()
    except ValueError:
        return None


# -- internals ------------------------------------------------------------------------------


@dataclass
class _Entry:
    parts: tuple[str, ...]  # path relative to the root, split
    path: str
    member: str | None
    mtime: dt.datetime

    @property
    def origin(self) -> str:
        return f"{self.path}:{self.member}" if self.member else self.path


def _dir_entries(root: Path) -> Iterable[_Entry]:
    base = root / "submitted" if (root / "submitted").is_dir() else root
    for p in sorted(base.rglob("*")):
        if p.is_file():
            mtime = dt.datetime.fromtimestamp(p.stat().st_mtime, tz=dt.timezone.utc).replace(tzinfo=None)
            yield _Entry(p.relative_to(base).parts, str(p), None, mtime)


def _zip_entries(path: Path) -> Iterable[_Entry]:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            parts = PurePosixPath(_zip_name(info)).parts
            if "submitted" in parts[:-1]:
                parts = parts[parts.index("submitted") + 1:]
            local = dt.datetime(*info.date_time)
            mtime = local.astimezone(dt.timezone.utc).replace(tzinfo=None)
            yield _Entry(tuple(parts), str(path), info.filename, mtime)


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The entry's name; UTF-8 names stored without zip's UTF-8 flag (Info-ZIP on Linux) are repaired."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _lms_submission(entry: _Entry, known: dict[str, set[str]], assignment: str | None) -> Submission:
    name = entry.parts[-1]
    stamp = timestamp_from_filename(name)
    source = "file name"
    if stamp is None:
        stamp, source = entry.mtime.isoformat(), ("zip entry date" if entry.member else "file mtime")
    if assignment is None:
        matches = [a for a in known if a in name]
        assignment = max(matches, key=len) if matches else None
    return Submission(student_from_filename(name), assignment, entry.path, entry.member, stamp, source, "lms")


def _nbgrader_submission(student: str, assignment: str, notebooks: list[_Entry],
                         entries: list[_Entry]) -> Submission:
    expected = [e for e in notebooks if e.parts[-1] == f"{assignment}.ipynb"]
    notes = []
    if expected:
        chosen = expected[0]
    else:
        chosen = max(notebooks, key=lambda e: e.mtime)
        if len(notebooks) > 1:
            notes.append(f"no {assignment}.ipynb; graded the newest notebook {chosen.parts[-1]}")
        else:
            notes.append(f"no {assignment}.ipynb; graded {chosen.parts[-1]}")
    stamp, source = None, ""
    stamp_parts = (*chosen.parts[:-1], "timestamp.txt")
    for e in entries:
        if e.parts == stamp_parts:
            text = (Path(e.path).read_text() if e.member is None else
                    zipfile.ZipFile(e.path).read(e.member).decode()).strip()
            stamp, source = (text or None), "timestamp.txt"
    return Submission(safe_student_id(student), assignment, chosen.path, chosen.member, stamp, source, "nbgrader",
                      notes)


def _age_key(sub: Submission) -> tuple:
    stem = Path(sub.member or sub.path).stem
    m = _RESUBMISSION.search(stem)
    return (_as_datetime(sub.timestamp), int(m.group(1)) if m else 0, stem)


def _as_datetime(stamp: str | None) -> dt.datetime:
    """A sortable UTC time for any time stamp text (the oldest possible when unreadable)."""
    if stamp:
        from nbgrader.utils import parse_utc

        try:
            return parse_utc(stamp)
        except (ValueError, OverflowError):
            pass
    return dt.datetime.min


def _assignment_from_content(sub: Submission, known: dict[str, set[str]]) -> str | None:
    try:
        data = json.loads(sub.read_bytes())
        ids = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in data.get("cells", [])}
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    overlap = {a: len(ids & g) for a, g in known.items()}
    best = max(overlap, key=overlap.get, default=None)
    return best if best is not None and overlap[best] > 0 else None


def known_assignments() -> dict[str, set[str]]:
    """Every assignment with a source notebook -> the grade_ids of its graded cells."""
    return {a: set(graded_ids(nbformat.read(source_notebook(a), as_version=4))) for a in assignments()}
