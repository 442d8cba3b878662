"""Run grading jobs in parallel, one fresh process per submission, with a hard deadline each.

Each job runs in a process forked from this one (:func:`run_jobs`), so the cost of importing
nbgrader, nbclient and friends is paid once, not once per submission. The child writes its
:class:`~autograder.execution.records.SubmissionResult` as JSON into its work folder and exits; its
stdout and stderr (nbgrader's log, the kernel's own messages) go to ``worker.log`` there.

The executor inside the child enforces the submission's limits. The scheduler is the
backstop: a child still alive ``grace`` seconds after its submission's time limit (a bug in
the grader, a kernel that cannot be killed) is killed with its whole process tree, and the
submission gets an ``error`` result saying so. Nothing a child does can reach another
child's results.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path

from autograder.execution.isolation import kill_process_tree
from autograder.execution.records import SubmissionResult, rejected_result
from autograder.execution.worker import Job, grade_job
from autograder.judging.digest import GraderFilesChanged

RESULT_FILE = "result.json"
#: Exit code of a grading process that found the grader's files changed (:class:`GraderFilesChanged`).
GRADER_CHANGED_EXIT = 3


def default_jobs() -> int:
    """The number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _context() -> mp.context.BaseContext:
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def _child(job: Job) -> None:
    """Entry point of a grading process: grade, write the result, exit without cleanup handlers."""
    code = 0
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler (grading.sigterm_as_exit) is not ours
        log = os.open(job.workdir / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        result = grade_job(job)
        (job.workdir / RESULT_FILE).write_text(result.to_json(), encoding="utf-8")
    except GraderFilesChanged as exc:
        print(exc)
        code = GRADER_CHANGED_EXIT
    except BaseException:  # noqa: BLE001 - report anything, never hang
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_jobs(jobs: list[Job], n_jobs: int, release_of: Callable[[str], object],
             on_result: Callable[[SubmissionResult], None] | None = None, grace: float = 120.0
             ) -> list[SubmissionResult]:
    """Grade ``jobs`` with at most ``n_jobs`` processes at a time; return results in job order.

    Args:
        jobs: the jobs; each has its own empty ``workdir``.
        n_jobs: processes at a time.
        release_of: assignment -> release notebook (to build the result of a lost process).
        on_result: called in this process as each result arrives (progress bars).
        grace: seconds past a submission's time limit before its process is killed.
    """
    ctx = _context()
    pending = list(reversed(jobs))
    running: dict[int, tuple[mp.process.BaseProcess, Job, float]] = {}
    results: dict[int, SubmissionResult] = {}
    try:
        while pending or running:
            while pending and len(running) < max(1, n_jobs):
                job = pending.pop()
                job.workdir.mkdir(parents=True, exist_ok=True)
                proc = ctx.Process(target=_child, args=(job,), name=f"grade-{job.index}", daemon=False)
                proc.start()
                running[proc.sentinel] = (proc, job, time.monotonic() + job.limits.timeout + grace)
            ready = wait(list(running), timeout=0.5)
            now = time.monotonic()
            for sentinel in list(running):
                proc, job, deadline = running[sentinel]
                if sentinel not in ready and now < deadline:
                    continue
                if sentinel not in ready:
                    kill_process_tree(proc.pid)
                    proc.join(5)
                    why = (f"the grading process was still running {grace:.0f} s after the submission's time "
                           f"limit and was killed")
                else:
                    proc.join()
                    if proc.exitcode == GRADER_CHANGED_EXIT:
                        raise GraderFilesChanged(worker_log_tail(job.workdir, 1))
                    why = f"the grading process failed (exit code {proc.exitcode}); see {job.workdir / 'worker.log'}"
                del running[sentinel]
                kill_process_tree(proc.pid)  # nothing of a finished job may linger
                result = _read_result(job, why, release_of)
                results[job.index] = result
                if on_result is not None:
                    on_result(result)
    finally:
        for proc, _, _ in running.values():
            kill_process_tree(proc.pid)
    return [results[j.index] for j in jobs]


def _read_result(job: Job, why: str, release_of: Callable[[str], object]) -> SubmissionResult:
    path = job.workdir / RESULT_FILE
    if path.exists():
        try:
            return SubmissionResult.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, TypeError):
            why = f"the grading process wrote an unreadable result; see {job.workdir / 'worker.log'}"
    sub = job.submission
    return rejected_result(sub.student, sub.assignment, sub.origin, release_of(sub.assignment), why,
                           timestamp=sub.timestamp, notes=list(sub.notes))


def worker_log_tail(workdir: Path, lines: int = 20) -> str:
    """The end of a job's ``worker.log`` (for error messages)."""
    log = workdir / "worker.log"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""
