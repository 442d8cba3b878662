"""``python -m autograder grade``: grade a batch of submissions in parallel into one nbgrader course.

:func:`grade` does, in order:

1. find the submissions (:mod:`autograder.batch.submissions`) and, with ``--shard I/N`` (or a
   Slurm array task / Kubernetes indexed job), keep this shard's students
   (:mod:`autograder.batch.shards`; ``out/shard.json`` records the split);
2. build a *template* course in a temporary folder: the course config, the sources of the
   assignments found, ``generate_assignment`` for each (in this process), so that its
   ``gradebook.db`` holds the assignments and no students;
3. make ``out`` an nbgrader course too (config, sources, gradebook with the assignments,
   release), or update it if it already is one;
4. **resume**: skip each submission whose result is already in ``out`` with the same input
   hash (:func:`input_hash`: the file, its time stamp, the assignment's grader files and the
   grading options), unless ``force``;
5. grade the others, each in its own process and temporary course
   (:mod:`autograder.batch.scheduler`, :mod:`autograder.execution.worker`), with a progress bar.
   As each result arrives it is stored for good: ``submitted/``, ``autograded/`` and
   ``feedback/`` files in their nbgrader places, the result as
   ``out/grading/<assignment>/<student>.json`` and its :class:`ResultStamp` beside it. A
   job killed halfway (Slurm's ``scancel``, a node that died) therefore loses only the
   submissions still being graded;
6. merge the results into ``out/gradebook.db`` in student order (as nbgrader's serial
   autograde would have created them);
7. write ``out/grades.csv`` (nbgrader's export) and ``out/tests.csv`` (per test), and return
   the results for the summary table.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from autograder.batch.results import export_grades, merge_into_gradebook, summary_table, write_test_csv
from autograder.batch.scheduler import default_jobs, run_jobs
from autograder.batch.shards import Manifest, Shard, now_utc, plan_of, split, write_atomically
from autograder.batch.submissions import Discovery, discover, known_assignments
from autograder.execution import sandbox
from autograder.execution.limits import Limits
from autograder.execution.records import Submission, SubmissionResult, readable_timestamp
from autograder.execution.warm_kernels import launch_template
from autograder.execution.worker import Job
from autograder.feedback.pages import generate_feedback, rejected_page, warm_up
from autograder.judging.digest import grader_digest, verify
from autograder.releasing.course import generate_assignment, make_course_dir

#: Suffix of the file beside each result that says what input it was graded from (:class:`ResultStamp`).
STAMP_SUFFIX = ".input"


@dataclass
class GradingRun:
    """What :func:`grade` did."""

    out: Path
    results: list[SubmissionResult]  # every submission of this run (or shard), graded now or kept
    discovery: Discovery
    seconds: float
    grades_csv: Path
    tests_csv: Path
    notes: list[str] = field(default_factory=list)
    shard: Shard | None = None
    graded: int = 0  # graded by this run
    resumed: int = 0  # kept from an earlier run with the same input

    def summary(self) -> str:
        """The table printed at the end of ``grade``."""
        lines = [summary_table(self.results)] if self.results else ["no submissions graded"]
        if self.discovery.skipped:
            lines.append(f"skipped {len(self.discovery.skipped)} files that are not notebooks")
        for sub in self.discovery.unassigned:
            lines.append(f"could not tell the assignment of {sub.origin}; pass --assignment")
        lines.extend(self.notes)
        where = f"shard {self.shard}: " if self.shard else ""
        kept = (f" ({self.resumed} kept from an earlier run with the same input; --force regrades them)"
                if self.resumed else "")
        lines.append(f"{where}graded {self.graded} submissions in {self.seconds:.1f} s{kept}; "
                     f"grades: {self.grades_csv}; per test: {self.tests_csv}")
        return "\n".join(lines)


@dataclass
class ResultStamp:
    """``grading/<assignment>/<student>.input``: the input a stored result was graded from.

    ``grade`` skips a submission whose stored stamp has the same ``input_sha256``; ``merge``
    keeps the result with the later ``graded_at`` when a student is in two shards.
    """

    input_sha256: str
    graded_at: str  # ISO 8601 UTC
    shard: str | None = None  # "I/N", or None for an unsharded run
    in_gradebook: bool = False  # merged into this course's gradebook.db

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ResultStamp:
        data = json.loads(text)
        return cls(str(data["input_sha256"]), str(data["graded_at"]), data.get("shard"),
                   bool(data.get("in_gradebook", False)))


def grade(submissions: Path, out: Path, jobs: int | None = None, limits: Limits | None = None,
          assignment: str | None = None, feedback: bool = True, progress: bool = True,
          keep_work: bool = False, shard: Shard | None = None, force: bool = False,
          warm_kernels: bool = True) -> GradingRun:
    """Grade every submission under ``submissions`` (or one shard of them) into the nbgrader course ``out``.

    Args:
        submissions: a folder or zip, in nbgrader's or an LMS's layout.
        out: the output course (created or updated).
        jobs: grading processes at a time (default: the number of cores).
        limits: per-submission limits (default: :class:`~autograder.execution.limits.Limits`).
        assignment: grade LMS-style notebooks as this assignment.
        feedback: also write each student's HTML feedback.
        progress: draw a progress bar on stderr.
        keep_work: keep the temporary course folders (for debugging).
        shard: grade only this shard's students (:mod:`autograder.batch.shards`).
        force: regrade submissions whose result is already in ``out`` with the same input.
        warm_kernels: fork kernels from a template that has imported torch
            (:mod:`autograder.execution.warm_kernels`) where possible; False: every kernel starts cold.
    """
    start = time.perf_counter()
    out = Path(out)
    jobs = jobs or default_jobs()
    limits = limits or Limits()
    if limits.kernel_threads is None and jobs > 1:
        limits = limits.replace(kernel_threads=max(1, default_jobs() // jobs))
    known = known_assignments()
    if assignment is not None and assignment not in known:
        raise FileNotFoundError(f"no source notebook for assignment '{assignment}'; known: {sorted(known)}")
    found = discover(Path(submissions), known, assignment)
    if not found.submissions:
        extra = f" ({len(found.unassigned)} notebooks of unknown assignment: pass --assignment)" \
            if found.unassigned else ""
        raise FileNotFoundError(f"no submissions (.ipynb) found in {submissions}{extra}")
    names = sorted({s.assignment for s in found.submissions})  # every shard's course holds them all
    selected, manifest = found.submissions, None
    if shard is not None:
        parts = split(found.submissions, shard.count)
        selected = parts[shard.index]
        manifest = Manifest(shard, plan_of(parts), names)
        out.mkdir(parents=True, exist_ok=True)
        manifest.write(out)  # first: a shard that dies from here on is known to have started
    grader_digests = {n: grader_digest(n) for n in names}
    work = Path(tempfile.mkdtemp(prefix="autograder-"))
    warm = None
    try:
        with sigterm_as_exit():
            todo: list[tuple[Submission, str]] = []
            kept: list[tuple[SubmissionResult, ResultStamp]] = []
            for sub in selected:
                digest = input_hash(sub, limits, feedback, grader_digests[sub.assignment])
                previous = None if force else stored_result(out, sub.assignment, sub.student, digest)
                if previous is None:
                    todo.append((sub, digest))
                else:
                    kept.append(previous)
            if warm_kernels and todo and limits.sandbox:
                warm = launch_template()  # first: it imports torch on one core while this process prepares below
            template = make_course_dir(work / "template", names)
            for name in names:
                generate_assignment(template, name)
            prepare_output_course(out, template, names)
            releases = {n: nbformat.read(template / "release" / n / f"{n}.ipynb", as_version=4) for n in names}
            if todo and limits.sandbox and not sandbox.warm_up(limits.network_isolation).files_isolated \
                    and warm is not None:
                warm.close()  # no sandbox here: the executor refuses every kernel and says why
                warm = None
            if feedback and len(todo) > 1:
                try:
                    warm_up(template, names[0], work)
                except Exception:  # noqa: BLE001 - only an optimization
                    pass
            if todo:
                from autograder.judging.judge import warm_up as warm_up_judges

                warm_up_judges(sorted({sub.assignment for sub, _ in todo}))
                for name in names:  # what the judges just loaded is what the batch started with
                    verify(name, grader_digests[name])
            if warm is not None and not warm.ready():
                print(f"warm kernel template did not start ({warm.failure}); kernels start cold", file=sys.stderr)
                warm = None
            job_list = [Job(i, sub, template, work / f"job{i:05d}", limits, generate_feedback if feedback else None,
                            grader_digests[sub.assignment], warm.socket_path if warm is not None else None)
                        for i, (sub, _) in enumerate(todo)]
            by_key = {(job.submission.assignment, job.submission.student): (job, digest)
                      for job, (_, digest) in zip(job_list, todo)}
            bar = _progress_bar(len(job_list)) if progress and job_list else None
            stamps: dict[tuple[str, str], ResultStamp] = {}

            def on_result(result: SubmissionResult) -> None:
                job, digest = by_key[(result.assignment, result.student)]
                stamp = ResultStamp(digest, now_utc(), str(shard) if shard else None)
                store_result(out, result, job.submission, job.feedback is not None, stamp)
                stamps[(result.assignment, result.student)] = stamp
                if bar is not None:
                    bar.set_postfix_str(f"{result.student[:20]}: {result.score:g}/{result.max_score:g}",
                                        refresh=False)
                    bar.update(1)

            try:
                results = run_jobs(job_list, jobs, releases.__getitem__, on_result)
            finally:
                if bar is not None:
                    bar.close()
            pending = [(r, stamps[(r.assignment, r.student)]) for r in results]
            present = gradebook_submissions(out)  # a killed run may have stored results it never merged
            pending += [(r, s) for r, s in kept if not s.in_gradebook or (r.assignment, r.student) not in present]
            add_to_gradebook(out, pending)
            grades_csv = export_grades(db_url(out), out / "grades.csv")
            tests_csv = write_test_csv(load_results(out), out / "tests.csv")
            if manifest is not None:
                manifest.graded, manifest.resumed, manifest.finished = len(results), len(kept), now_utc()
                manifest.write(out)
    finally:
        if warm is not None:
            warm.close()
        if keep_work:
            print(f"work folders kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    everything = sorted([*results, *(r for r, _ in kept)], key=lambda r: (r.assignment, r.student))
    return GradingRun(out, everything, found, time.perf_counter() - start, grades_csv, tests_csv, shard=shard,
                      graded=len(results), resumed=len(kept))


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


# -- resume: what each stored result was graded from ----------------------------------------


def record_path(out: Path, assignment: str, student: str) -> Path:
    """``out/grading/<assignment>/<student>.json``: the stored :class:`SubmissionResult`."""
    return Path(out) / "grading" / assignment / f"{student}.json"


def stamp_path(out: Path, assignment: str, student: str) -> Path:
    """``out/grading/<assignment>/<student>.input``: the stored result's :class:`ResultStamp`."""
    return Path(out) / "grading" / assignment / f"{student}{STAMP_SUFFIX}"


def read_stamp(out: Path, assignment: str, student: str) -> ResultStamp | None:
    """The stamp of a stored result, or None (none, unreadable, or the result itself is missing)."""
    path = stamp_path(out, assignment, student)
    if not path.exists() or not record_path(out, assignment, student).exists():
        return None
    try:
        return ResultStamp.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stored_result(out: Path, assignment: str, student: str, digest: str
                  ) -> tuple[SubmissionResult, ResultStamp] | None:
    """The stored result of ``student`` and its stamp if it was graded from input ``digest``, else None."""
    stamp = read_stamp(out, assignment, student)
    if stamp is None or stamp.input_sha256 != digest:
        return None
    try:
        result = SubmissionResult.from_json(record_path(out, assignment, student).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None
    return result, stamp


def input_hash(sub: Submission, limits: Limits, feedback: bool, grader: str) -> str:
    """SHA-256 of everything a submission's result depends on.

    The notebook's bytes, its time stamp (late penalties) and discovery notes, the student and
    assignment, ``grader`` (:func:`grader_digest`) and the options that can change a grade
    (limits, feedback; not the number of parallel jobs). Not the file's path: a resumed shard
    may see the submissions under another mount point.
    """
    h = hashlib.sha256()
    try:
        data = sub.read_bytes()
    except OSError as exc:
        data = f"unreadable: {exc}".encode()
    options = {k: v for k, v in asdict(limits).items() if k != "kernel_threads"}
    for label, value in (("format", b"1"), ("assignment", sub.assignment or ""), ("student", sub.student),
                         ("submission", data), ("timestamp", sub.timestamp or ""), ("notes", "\n".join(sub.notes)),
                         ("grader", grader), ("options", json.dumps(options, sort_keys=True)),
                         ("feedback", str(bool(feedback)))):
        _hash_part(h, label, value)
    return h.hexdigest()


def _hash_part(h: hashlib._Hash, label: str, value: str | bytes) -> None:
    data = value.encode("utf-8") if isinstance(value, str) else value
    h.update(label.encode() + b"\0" + len(data).to_bytes(8, "big") + data)


# -- storing results ------------------------------------------------------------------------


def store_result(out: Path, result: SubmissionResult, sub: Submission, feedback: bool, stamp: ResultStamp) -> None:
    """Put one result's files in nbgrader's places in ``out`` and keep the result and its stamp.

    ``submitted/`` gets the file as the student sent it; ``autograded/`` and ``feedback/`` what
    grading produced (a rejected submission has neither). The stamp is removed first and written
    last, so a result whose storing was interrupted is graded again on resume.
    """
    student, name = result.student, result.assignment
    stamp_path(out, name, student).unlink(missing_ok=True)
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
    if feedback and not result.graded:
        page = _fresh_dir(out / "feedback" / student / name) / f"{name}.html"
        reason = result.tests[0].reason if result.tests else (result.notes or ["unknown"])[-1]
        page.write_text(rejected_page(student, name, reason, result.notes), encoding="utf-8")
        result.files["feedback"] = str(page)
    write_atomically(record_path(out, name, student), result.to_json())
    write_atomically(stamp_path(out, name, student), stamp.to_json())


def add_to_gradebook(out: Path, results: list[tuple[SubmissionResult, ResultStamp]]) -> None:
    """Merge results into ``out``'s gradebook in (assignment, student) order; mark their stamps as merged."""
    url = db_url(out)
    for result, stamp in sorted(results, key=lambda rs: (rs[0].assignment, rs[0].student)):
        merge_into_gradebook(url, result, [result.assignment])
        stamp.in_gradebook = True
        write_atomically(stamp_path(out, result.assignment, result.student), stamp.to_json())


def gradebook_submissions(out: Path) -> set[tuple[str, str]]:
    """The (assignment, student) pairs that have a submission in ``out``'s gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url(out)) as gb:
        return {(a.name, sub.student.id) for a in gb.assignments for sub in a.submissions}


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


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM (``scancel``, a batch system's time limit, ``kill``) into ``SystemExit(143)``.

    The ``finally`` clauses then run: the running grading processes are killed with their
    kernels and the temporary folders removed; results stored so far stay. Only in the main
    thread (elsewhere Python cannot set handlers); forked grading processes reset it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _progress_bar(total: int):  # -> tqdm
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: grading processes are forked from this one
    return tqdm(total=total, desc="grading", unit="submission", file=sys.stderr, dynamic_ncols=True)
