"""``python -m autograder grade``: grade a batch of submissions in parallel into one nbgrader course.

:func:`grade` does, in order:

1. find the submissions (:mod:`autograder.batch.submissions`);
2. build a *template* course in a temporary folder: the course config, the sources of the
   assignments found, ``generate_assignment`` for each (in this process), so that its
   ``gradebook.db`` holds the assignments and no students;
3. make ``out`` an nbgrader course too (config, sources, gradebook with the assignments,
   release), or update it if it already is one;
4. grade every submission in its own process and temporary course
   (:mod:`autograder.batch.scheduler`, :mod:`autograder.execution.worker`), with a progress bar;
5. merge the results into ``out/gradebook.db`` in student order (as nbgrader's serial
   autograde would have created them), copy ``submitted/``, ``autograded/`` and
   ``feedback/`` files to their nbgrader places in ``out``, and keep each result as
   ``out/grading/<assignment>/<student>.json``;
6. write ``out/grades.csv`` (nbgrader's export) and ``out/tests.csv`` (per test), and return
   the results for the summary table.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder import assignments, source_notebook
from autograder.batch.results import (
    SubmissionResult,
    export_grades,
    merge_into_gradebook,
    readable_timestamp,
    summary_table,
    write_test_csv,
)
from autograder.batch.scheduler import default_jobs, run_jobs
from autograder.batch.submissions import Discovery, discover
from autograder.execution.tampering import graded_ids
from autograder.execution.worker import Job, Limits
from autograder.feedback.pages import rejected_page, warm_up
from autograder.releasing.course import generate_assignment, make_course_dir


@dataclass
class GradingRun:
    """What :func:`grade` did."""

    out: Path
    results: list[SubmissionResult]
    discovery: Discovery
    seconds: float
    grades_csv: Path
    tests_csv: Path
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The table printed at the end of ``grade``."""
        lines = [summary_table(self.results)] if self.results else ["no submissions graded"]
        if self.discovery.skipped:
            lines.append(f"skipped {len(self.discovery.skipped)} files that are not notebooks")
        for sub in self.discovery.unassigned:
            lines.append(f"could not tell the assignment of {sub.origin}; pass --assignment")
        lines.extend(self.notes)
        lines.append(f"graded {len(self.results)} submissions in {self.seconds:.1f} s; "
                     f"grades: {self.grades_csv}; per test: {self.tests_csv}")
        return "\n".join(lines)


def known_assignments() -> dict[str, set[str]]:
    """Every assignment with a source notebook -> the grade_ids of its graded cells."""
    return {a: set(graded_ids(nbformat.read(source_notebook(a), as_version=4))) for a in assignments()}


def grade(submissions: Path, out: Path, jobs: int | None = None, limits: Limits | None = None,
          assignment: str | None = None, feedback: bool = True, progress: bool = True,
          keep_work: bool = False) -> GradingRun:
    """Grade every submission under ``submissions`` into the nbgrader course ``out``.

    Args:
        submissions: a folder or zip, in nbgrader's or an LMS's layout.
        out: the output course (created or updated).
        jobs: grading processes at a time (default: the number of cores).
        limits: per-submission limits (default: :class:`~autograder.execution.worker.Limits`).
        assignment: grade LMS-style notebooks as this assignment.
        feedback: also write each student's HTML feedback.
        progress: draw a progress bar on stderr.
        keep_work: keep the temporary course folders (for debugging).
    """
    start = time.perf_counter()
    jobs = jobs or default_jobs()
    limits = limits or Limits()
    if limits.kernel_threads is None and jobs > 1:
        limits.kernel_threads = max(1, default_jobs() // jobs)
    known = known_assignments()
    if assignment is not None and assignment not in known:
        raise FileNotFoundError(f"no source notebook for assignment '{assignment}'; known: {sorted(known)}")
    found = discover(Path(submissions), known, assignment)
    if not found.submissions:
        extra = f" ({len(found.unassigned)} notebooks of unknown assignment: pass --assignment)" \
            if found.unassigned else ""
        raise FileNotFoundError(f"no submissions (.ipynb) found in {submissions}{extra}")
    names = sorted({s.assignment for s in found.submissions})
    work = Path(tempfile.mkdtemp(prefix="autograder-"))
    try:
        template = make_course_dir(work / "template", names)
        for name in names:
            generate_assignment(template, name)
        prepare_output_course(Path(out), template, names)
        releases = {n: nbformat.read(template / "release" / n / f"{n}.ipynb", as_version=4) for n in names}
        job_list = [Job(i, sub, template, work / f"job{i:05d}", limits, feedback)
                    for i, sub in enumerate(found.submissions)]
        if feedback and len(job_list) > 1:
            try:
                warm_up(template, names[0], work)
            except Exception:  # noqa: BLE001 - only an optimization
                pass
        bar = _progress_bar(len(job_list)) if progress and job_list else None

        def on_result(result: SubmissionResult) -> None:
            if bar is not None:
                bar.set_postfix_str(f"{result.student[:20]}: {result.score:g}/{result.max_score:g}", refresh=False)
                bar.update(1)

        try:
            results = run_jobs(job_list, jobs, releases.__getitem__, on_result)
        finally:
            if bar is not None:
                bar.close()
        store_results(Path(out), results, job_list)
        grades_csv = export_grades(db_url(Path(out)), Path(out) / "grades.csv")
        tests_csv = write_test_csv(load_results(Path(out)), Path(out) / "tests.csv")
    finally:
        if keep_work:
            print(f"work folders kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return GradingRun(Path(out), results, found, time.perf_counter() - start, grades_csv, tests_csv)


def db_url(course: Path) -> str:
    """The sqlite URL of ``course/gradebook.db``."""
    return f"sqlite:///{(course / 'gradebook.db').resolve()}"


def prepare_output_course(out: Path, template: Path, names: list[str]) -> None:
    """Make ``out`` an nbgrader course holding ``names`` (new: copy the template; existing: update)."""
    out.mkdir(parents=True, exist_ok=True)
    fresh = not (out / "gradebook.db").exists()
    make_course_dir(out, names)
    if fresh:
        shutil.copy2(template / "gradebook.db", out / "gradebook.db")
        for name in names:
            dest = out / "release" / name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(template / "release" / name, dest)
    else:
        for name in names:
            generate_assignment(out, name)


def store_results(out: Path, results: list[SubmissionResult], jobs: list[Job]) -> None:
    """Merge results into ``out``'s gradebook (in student order) and put the files in nbgrader's places.

    ``submitted/`` gets the file as the student sent it; ``autograded/`` and ``feedback/`` what
    grading produced (a rejected submission has neither).
    """
    url = db_url(out)
    by_index = dict(zip((j.index for j in jobs), results))
    for job in sorted(jobs, key=lambda j: (j.submission.assignment, j.submission.student)):
        result, sub = by_index[job.index], job.submission
        student, name = result.student, result.assignment
        merge_into_gradebook(url, result, [name])
        submitted = _fresh_dir(out / "submitted" / student / name)
        try:
            (submitted / f"{name}.ipynb").write_bytes(sub.read_bytes())
        except OSError:
            pass
        if readable_timestamp(sub.timestamp):
            (submitted / "timestamp.txt").write_text(sub.timestamp)
        result.files["submitted"] = str(submitted / f"{name}.ipynb")
        for kind, suffix in (("autograded", ".ipynb"), ("feedback", ".html")):
            dest_dir = _fresh_dir(out / kind / student / name, create=False)
            src = result.files.pop(kind, None)
            if src is not None and Path(src).exists():
                dest_dir.mkdir(parents=True)
                shutil.copyfile(src, dest_dir / f"{name}{suffix}")
                result.files[kind] = str(dest_dir / f"{name}{suffix}")
        if job.feedback and not result.graded:
            page = _fresh_dir(out / "feedback" / student / name) / f"{name}.html"
            reason = result.tests[0].reason if result.tests else (result.notes or ["unknown"])[-1]
            page.write_text(rejected_page(student, name, reason, result.notes), encoding="utf-8")
            result.files["feedback"] = str(page)
        record = out / "grading" / name / f"{student}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(result.to_json(), encoding="utf-8")


def _fresh_dir(path: Path, create: bool = True) -> Path:
    if path.exists():
        shutil.rmtree(path)
    if create:
        path.mkdir(parents=True)
    return path


def load_results(out: Path) -> list[SubmissionResult]:
    """Every stored result of ``out`` (``out/grading/<assignment>/<student>.json``)."""
    return [SubmissionResult.from_json(p.read_text(encoding="utf-8"))
            for p in sorted((out / "grading").glob("*/*.json"))]


def _progress_bar(total: int):  # -> tqdm
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: grading processes are forked from this one
    return tqdm(total=total, desc="grading", unit="submission", file=sys.stderr, dynamic_ncols=True)
