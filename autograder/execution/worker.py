"""Grade one submission in its own temporary nbgrader course (run in a child process).

:func:`grade_job` is what each grading process runs (:mod:`autograder.batch.scheduler` forks one
per submission). It

1. reads the file and rejects what is not a notebook of the assignment
   (:func:`autograder.execution.tampering.notebook_problem`): such a submission gets 0 points and a
   reason, and never reaches a kernel;
2. lists the changes made to locked cells and puts their nbgrader metadata back
   (:mod:`autograder.execution.tampering`);
3. builds a course directory of its own: the course's ``nbgrader_config.py``, a copy of the
   prepared gradebook (assignment structure, no students), the assignment's non-notebook
   files, and the submission under ``submitted/<internal id>/<assignment>/``. The student
   id inside that course is always :data:`INTERNAL_STUDENT`, so a student id with spaces,
   accents or glob characters never meets nbgrader's path handling; the real id is used
   again when the parent merges the result;
4. runs nbgrader's ``Autograde`` converter in this process with the kit's pipeline
   (:mod:`autograder.execution.pipeline`): the kernel is a child of this process;
5. reads the grades back from that gradebook, turns the autograded notebook into per-test
   results (:mod:`autograder.execution.records`) and, if the job carries a feedback renderer
   (:func:`autograder.feedback.pages.generate_feedback`, handed in by :mod:`autograder.batch.grading`),
   writes the student's HTML feedback.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder import REPO_ROOT
from autograder.execution.limits import Limits
from autograder.execution.nbgrader_run import kit_environment
from autograder.execution.records import (
    Submission,
    SubmissionResult,
    gradebook_rows,
    readable_timestamp,
    rejected_result,
    test_results,
)
from autograder.execution.redact import hidden_lines
from autograder.execution.tampering import inspect_cells, is_graded, notebook_problem, restore_metadata
from autograder.judging.digest import verify

#: The student id of every submission inside its own temporary course.
INTERNAL_STUDENT = "submission"

#: Writes a student's HTML feedback page: ``(course, assignment, student, release) -> the page, or None``
#: (:func:`autograder.feedback.pages.generate_feedback`).
FeedbackRenderer = Callable[[Path, str, str, nbformat.NotebookNode], Path | None]


@dataclass
class Job:
    """One submission for one grading process."""

    index: int
    submission: Submission
    template: Path  # the prepared course: nbgrader_config.py, gradebook.db, release/, source/
    workdir: Path  # an empty folder of this job's own
    limits: Limits = field(default_factory=Limits)
    feedback: FeedbackRenderer | None = None  # write the student's feedback page with it
    grader_digest: str | None = None  # the assignment's grader files when the batch started (judging.digest)
    kernel_template: str | None = None  # socket of the run's warm kernel template (execution.warm_kernels)


def grade_job(job: Job) -> SubmissionResult:
    """Grade ``job.submission``; never raises for anything the submission does.

    Raises:
        GraderFilesChanged: the assignment's grader files no longer match ``job.grader_digest``
            (checked before the judge loads anything); the batch stops.
    """
    if job.grader_digest is not None:
        verify(job.submission.assignment, job.grader_digest)
    return _grade_job(job)


def _grade_job(job: Job) -> SubmissionResult:
    start = time.monotonic()
    sub, assignment = job.submission, job.submission.assignment
    release = nbformat.read(job.template / "release" / assignment / f"{assignment}.ipynb", as_version=4)
    try:
        raw = sub.read_bytes()
    except OSError as exc:
        return rejected_result(sub.student, assignment, sub.origin, release, f"the file cannot be read: {exc}",
                               timestamp=sub.timestamp, notes=sub.notes)
    nb, problem = notebook_problem(raw, release, assignment)
    if problem is not None:
        return rejected_result(sub.student, assignment, sub.origin, release, problem, timestamp=sub.timestamp,
                               notes=sub.notes)
    changes = inspect_cells(nb, release)
    restore_metadata(nb, release)

    root = job.workdir
    submitted = root / "submitted" / INTERNAL_STUDENT / assignment
    submitted.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, submitted / f"{assignment}.ipynb")
    if sub.timestamp:
        if readable_timestamp(sub.timestamp):
            (submitted / "timestamp.txt").write_text(sub.timestamp)
        else:
            sub.notes.append(f"unreadable time stamp {sub.timestamp[:40]!r} ignored")
    shutil.copy2(job.template / "nbgrader_config.py", root / "nbgrader_config.py")
    shutil.copy2(job.template / "gradebook.db", root / "gradebook.db")
    source = job.template / "source" / assignment
    for path in source.rglob("*") if source.is_dir() else []:
        if path.is_file() and path.suffix != ".ipynb" and ".ipynb_checkpoints" not in path.parts:
            dest = root / "source" / assignment / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    (root / "source" / assignment).mkdir(parents=True, exist_ok=True)
    _prepare_environment(job.limits, root)
    setup_seconds = time.monotonic() - start

    notes = [*sub.notes, *(c.detail for c in changes if not _is_graded_id(release, c.grade_id))]
    autograde_start = time.monotonic()
    try:
        _run_autograde(root, assignment, job.limits, job.kernel_template)
    except Exception as exc:  # noqa: BLE001 - nbgrader refused the notebook
        traceback.print_exc()
        _take_report(root)  # a report the executor may have kept is not needed: do not keep it in memory
        reason = f"nbgrader could not grade this notebook: {type(exc).__name__}: {_log_tail(root) or exc}"
        return rejected_result(sub.student, assignment, sub.origin, release, reason, timestamp=sub.timestamp,
                               notes=notes)

    autograde_seconds = time.monotonic() - autograde_start
    db_url = f"sqlite:///{root / 'gradebook.db'}"
    grades, comments, penalties = gradebook_rows(db_url, assignment, INTERNAL_STUDENT)
    autograded_path = root / "autograded" / INTERNAL_STUDENT / assignment / f"{assignment}.ipynb"
    autograded = nbformat.read(autograded_path, as_version=4)
    scores = {g["cell"]: (g["auto_score"], g["max_score"]) for g in grades}
    tests = test_results(autograded, release, scores, changes, hidden_lines(autograded))
    result = SubmissionResult(sub.student, assignment, sub.origin, _db_timestamp(db_url, assignment),
                              notes=notes, tests=tests, grades=grades, comments=comments, late_penalties=penalties)
    result.files = {"submitted": str(submitted / f"{assignment}.ipynb"), "autograded": str(autograded_path)}
    feedback_start = time.monotonic()
    if job.feedback is not None:
        try:
            html = job.feedback(root, assignment, INTERNAL_STUDENT, release)
        except Exception as exc:  # noqa: BLE001 - a grade must not be lost to its feedback page
            traceback.print_exc()
            result.notes.append(f"no feedback page: {type(exc).__name__}: {str(exc)[:200]}")
        else:
            if html is not None:
                result.files["feedback"] = str(html)
    result.timings = _timings(root, setup_seconds, time.monotonic() - start)
    result.timings["autograde"] = autograde_seconds
    result.timings["feedback"] = time.monotonic() - feedback_start
    return result


def _is_graded_id(release: nbformat.NotebookNode, grade_id: str) -> bool:
    return any(is_graded(c) and c.metadata["nbgrader"].get("grade_id") == grade_id for c in release.cells)


def _prepare_environment(limits: Limits, root: Path) -> None:
    """Environment of the kernels this process starts (they inherit ``os.environ``)."""
    env = kit_environment()
    path = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    if limits.kernel_threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(limits.kernel_threads)
    # The grader's own Jupyter runtime folder (each kernel gets a fresh one of its own: see the executor).
    runtime = root / "rt"
    runtime.mkdir(parents=True, exist_ok=True)
    env["JUPYTER_RUNTIME_DIR"] = str(runtime)
    os.environ.clear()
    os.environ.update(env)


def _run_autograde(root: Path, assignment: str, limits: Limits, kernel_template: str | None = None) -> None:
    """nbgrader's ``Autograde`` converter, in this process, with the kit's pipeline."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    from autograder.execution.pipeline import autograde_config

    base = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    base.CourseDirectory.root = str(root)
    cfg = autograde_config(base, limits, judge_assignment=assignment, report_key=str(root),
                           kernel_template=kernel_template or "")
    handler = logging.FileHandler(root / "nbgrader.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("traitlets")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    coursedir = CourseDirectory(config=cfg)
    coursedir.assignment_id = assignment
    coursedir.student_id = INTERNAL_STUDENT
    app = Autograde(coursedir=coursedir, config=cfg)
    app.force = True
    app.create_student = True
    try:
        app.start()
    finally:
        logger.removeHandler(handler)
        handler.close()


def _db_timestamp(db_url: str, assignment: str) -> str | None:
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        stamp = gb.find_submission(assignment, INTERNAL_STUDENT).timestamp
    return stamp.isoformat() if stamp else None


def _take_report(root: Path) -> dict | None:
    """The executor's timing report, kept in this process under the course folder's name (or None)."""
    from autograder.execution.executor import take_report

    return take_report(str(root))


def _timings(root: Path, setup: float, total: float) -> dict[str, float]:
    timings = {"setup": setup, "total": total}
    data = _take_report(root)
    if data is not None:
        timings["kernel_start"] = float(sum(data.get("kernel_start_seconds", [])))
        timings["cells"] = float(data.get("cell_seconds", 0.0))
        timings["restarts"] = float(data.get("restarts", 0))
        timings["peak_rss"] = float(data.get("peak_rss", 0))
        timings["judge"] = float(data.get("judge_seconds", 0.0))
        timings["warm_starts"] = float(data.get("warm_starts", 0))
    return timings


def _log_tail(root: Path, lines: int = 3) -> str:
    log = root / "nbgrader.log"
    if not log.exists():
        return ""
    errors = [line for line in log.read_text(errors="replace").splitlines() if " ERROR " in line]
    return " | ".join(e.split(" ERROR ", 1)[1] for e in errors[-lines:])[:500]
