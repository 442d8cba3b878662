"""``python -m autograder merge OUT_0 ... OUT_{N-1} --out OUT``: join shard outputs into one course.

Each shard (``grade --shard I/N``, :mod:`autograder.batch.shards`) wrote a complete nbgrader
course for its students, with every result kept as ``grading/<assignment>/<student>.json``
and its :class:`~autograder.batch.grading.ResultStamp` beside it. :func:`merge` builds ``OUT``
exactly as one single-machine ``grade`` of all the submissions would have: a fresh course
(template, release, gradebook with the assignments), then every result in (assignment,
student) order into ``gradebook.db``, the students' ``submitted/``, ``autograded/`` and
``feedback/`` folders copied, and ``grades.csv`` (nbgrader's export) and ``tests.csv``
written from them. A test checks that both CSVs are byte-identical to a single-machine run.

What the merge checks:

- every folder given is a shard output (it has ``shard.json``);
- every student of the split (each manifest holds the whole split) has a result in one of
  the folders. Students without one are reported by shard: the shard did not finish
  (killed, node lost, time limit), or was not given / never started;
- a student with results in two folders (a shard re-run elsewhere, a different split) keeps
  the result graded last, and the merge says which it kept.

Without ``partial``, any problem (a folder that is not a shard output, a student without a
result) means nothing is written and the command exits 1; with it, the course is written
without the missing students (``tests.csv`` and ``grades.csv`` do not list them).

Manual grading (formgrade) belongs on the merged course: results carry the autograder's
scores only.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from autograder.batch.grading import (
    ResultStamp,
    add_to_gradebook,
    db_url,
    load_results,
    prepare_output_course,
    read_stamp,
    record_path,
    stamp_path,
)
from autograder.batch.results import export_grades, write_test_csv
from autograder.batch.shards import MANIFEST_FILE, Manifest, Shard, write_atomically
from autograder.execution.records import SubmissionResult
from autograder.releasing.course import generate_assignment, make_course_dir

_SHOWN_STUDENTS = 20


@dataclass
class _Found:
    """One stored result in one shard folder."""

    result: SubmissionResult
    stamp: ResultStamp
    folder: Path


@dataclass
class MergeReport:
    """What :func:`merge` found and did."""

    out: Path
    written: bool  # False: problems and not ``partial``: nothing was written
    results: list[SubmissionResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # missing or failed shards, with their students
    duplicates: list[str] = field(default_factory=list)  # students in two folders: which result was kept
    notes: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (assignment, student) without a result
    grades_csv: Path | None = None
    tests_csv: Path | None = None

    def summary(self) -> str:
        """What the ``merge`` command prints."""
        lines = [*(f"problem: {p}" for p in self.problems), *self.duplicates, *self.notes]
        if self.written:
            lines.append(f"merged {len(self.results)} results into {self.out}; grades: {self.grades_csv}; "
                         f"per test: {self.tests_csv}")
            if self.missing:
                lines.append(f"PARTIAL: {len(self.missing)} students have no result (see the problems above)")
        else:
            lines.append(f"nothing written to {self.out}: {len(self.missing)} students have no result; fix the "
                         f"shards (rerun the failed ones: finished students are kept) and merge again, or "
                         f"pass --partial")
        return "\n".join(lines)


def merge(shard_dirs: list[Path], out: Path, partial: bool = False) -> MergeReport:
    """Merge the shard outputs ``shard_dirs`` into the nbgrader course ``out``.

    Args:
        shard_dirs: the ``--out`` folders of ``grade --shard I/N`` runs.
        out: the merged course (created, or updated like ``grade`` updates one).
        partial: write ``out`` even when students are missing.

    Raises:
        ValueError: no folder is a shard output, or ``out`` is one of them.
    """
    out = Path(out)
    folders = [Path(d) for d in shard_dirs]
    if any(_same(out, d) for d in folders):
        raise ValueError(f"--out {out} is one of the shard folders; merge into a new folder")
    report = MergeReport(out, written=False)
    manifests: dict[Path, Manifest] = {}
    for folder in folders:
        if not folder.is_dir():
            report.problems.append(f"{folder}: no such folder (the shard never ran here?)")
            continue
        try:
            manifests[folder] = Manifest.read(folder)
        except FileNotFoundError:
            report.problems.append(f"{folder}: no {MANIFEST_FILE}: not the output of `grade --shard`, or the "
                                   f"shard never started")
        except ValueError as exc:
            report.problems.append(str(exc))
    if not manifests:
        raise ValueError("none of the folders is a shard output (no shard.json): " + " ".join(map(str, folders)))

    found = _collect(manifests, report)
    expected = _expected(manifests)
    report.missing = sorted(expected - set(found))
    report.problems.extend(_missing_by_shard(report.missing, manifests))
    for folder, manifest in manifests.items():
        if manifest.finished is None and not set(manifest.students) & set(report.missing):
            report.notes.append(f"shard {manifest.shard} ({folder}) did not finish, but every one of its students "
                                f"has a result")
    if report.problems and not partial:
        return report

    names = sorted({a for m in manifests.values() for a in m.assignments} | {a for a, _ in found})
    work = Path(tempfile.mkdtemp(prefix="autograder-merge-"))
    try:
        template = make_course_dir(work / "template", names)
        for name in names:
            generate_assignment(template, name)
        prepare_output_course(out, template, names)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    merged: list[tuple[SubmissionResult, ResultStamp]] = []
    for key in sorted(found):
        item = found[key]
        _copy_result(item, out)
        merged.append((item.result, item.stamp))
    add_to_gradebook(out, merged)
    report.grades_csv = export_grades(db_url(out), out / "grades.csv")
    report.tests_csv = write_test_csv(load_results(out), out / "tests.csv")
    report.results = [r for r, _ in merged]
    report.written = True
    return report


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _collect(manifests: dict[Path, Manifest], report: MergeReport) -> dict[tuple[str, str], _Found]:
    """Every stored result of every shard folder; the newer of two for the same student (noted)."""
    found: dict[tuple[str, str], _Found] = {}
    for folder in manifests:
        for record in sorted((folder / "grading").glob("*/*.json")):
            try:
                result = SubmissionResult.from_json(record.read_text(encoding="utf-8"))
            except (OSError, ValueError, TypeError) as exc:
                report.notes.append(f"{record}: unreadable result ignored ({exc})")
                continue
            stamp = read_stamp(folder, result.assignment, result.student)
            if stamp is None:  # storing was interrupted after the result: the file's time stands in
                mtime = dt.datetime.fromtimestamp(record.stat().st_mtime, tz=dt.timezone.utc)
                stamp = ResultStamp("", mtime.isoformat(timespec="microseconds"), str(manifests[folder].shard))
            item = _Found(result, stamp, folder)
            key = (result.assignment, result.student)
            if key in found:
                older, newer = sorted((found[key], item), key=lambda f: _graded_at(f.stamp))
                report.duplicates.append(
                    f"{result.student} ({result.assignment}) has results in {older.folder} (graded "
                    f"{older.stamp.graded_at}) and {newer.folder} (graded {newer.stamp.graded_at}): kept "
                    f"{newer.folder}'s, the newer")
                item = newer
            found[key] = item
    return found


def _graded_at(stamp: ResultStamp) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(stamp.graded_at)
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _expected(manifests: dict[Path, Manifest]) -> set[tuple[str, str]]:
    """Every (assignment, student) of every split the manifests record."""
    return {pair for m in manifests.values() for pairs in m.plan.values() for pair in pairs}


def _missing_by_shard(missing: list[tuple[str, str]], manifests: dict[Path, Manifest]) -> list[str]:
    """One line per shard that holds students without a result: which shard, where, why, who."""
    if not missing:
        return []
    given = {m.shard: folder for folder, m in manifests.items()}
    owner: dict[tuple[str, str], Shard] = {}
    for m in sorted(manifests.values(), key=lambda m: m.started):  # the first split that planned the student
        for index, pairs in m.plan.items():
            for pair in pairs:
                owner.setdefault(pair, Shard(index, m.shard.count))
    by_shard: dict[Shard, list[tuple[str, str]]] = {}
    for pair in missing:
        by_shard.setdefault(owner[pair], []).append(pair)
    lines = []
    for shard, pairs in sorted(by_shard.items(), key=lambda kv: (kv[0].count, kv[0].index)):
        who = _students(pairs)
        folder = given.get(shard)
        if folder is None:
            lines.append(f"shard {shard} is missing (not given, or it never started); its students: {who}")
            continue
        manifest = manifests[folder]
        total = len(manifest.students)
        if manifest.finished is None:
            lines.append(f"shard {shard} ({folder}) did not finish (started {manifest.started} on {manifest.host}): "
                         f"{total - len(pairs)} of {total} students graded; not graded: {who}")
        else:
            lines.append(f"shard {shard} ({folder}) finished but has no result for: {who}")
    return lines


def _students(pairs: list[tuple[str, str]]) -> str:
    names = [f"{s} ({a})" for a, s in pairs]
    more = f" and {len(names) - _SHOWN_STUDENTS} more" if len(names) > _SHOWN_STUDENTS else ""
    return ", ".join(names[:_SHOWN_STUDENTS]) + more


def _copy_result(item: _Found, out: Path) -> None:
    """Copy one result's submitted/autograded/feedback folders and its record into ``out``."""
    result, name, student = item.result, item.result.assignment, item.result.student
    stamp_path(out, name, student).unlink(missing_ok=True)
    for kind in ("submitted", "autograded", "feedback"):
        src, dest = item.folder / kind / student / name, out / kind / student / name
        if dest.exists():
            shutil.rmtree(dest)
        if src.is_dir():
            shutil.copytree(src, dest)
        old = result.files.get(kind)
        if old is not None:
            moved = dest / Path(old).name
            if moved.exists():
                result.files[kind] = str(moved)
            else:
                result.files.pop(kind)
    write_atomically(record_path(out, name, student), result.to_json())
    stamp = ResultStamp(item.stamp.input_sha256, item.stamp.graded_at, item.stamp.shard)
    write_atomically(stamp_path(out, name, student), stamp.to_json())
    item.stamp = stamp
