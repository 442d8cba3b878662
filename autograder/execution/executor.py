"""The execution step of the grading pipeline: run a submission cell by cell and never lose a grade.

:class:`ResilientExecute` replaces nbgrader's ``Execute`` preprocessor in the autograde
pipeline (:mod:`autograder.execution.worker` configures it). nbgrader's step runs the whole notebook
in one kernel; when that kernel dies (``os._exit``, a segfault, the OOM killer) or hangs,
nbgrader deletes the autograded notebook and every grade the submission had earned is
lost (nbgrader#567). This step instead:

1. executes code cells one at a time, each with the course's per-cell timeout, cut to what
   is left of the submission's wall-clock budget (``submission_timeout``);
2. watches the kernel's resident memory (:class:`~autograder.execution.isolation.MemoryWatchdog`)
   and kills it above ``memory_limit``; starts it without network where the OS allows;
3. when the kernel dies in a cell, records why as an error output of that cell
   (``KernelDied``), starts a fresh kernel, silently *replays* only what the remaining tests
   need: the ``imports`` cell, the answer cells and the set-up cells that call no graded function
   (a model, an image) that had succeeded; never demos or training loops, which call graded
   functions and could kill the kernel again. The cell that killed the kernel is not retried;
4. when a cell times out, interrupts it; if the kernel does not answer within
   ``interrupt_grace`` seconds (code that ignores ``KeyboardInterrupt``), kills it and
   restarts as in 3;
5. after ``max_kernel_restarts`` restarts, skips the remaining cells that call graded functions
   without points of their own (demos) but still runs every remaining set-up, answer and test
   cell, restarting as often as they need: a
   broken building block never leaves an independent test unrun. When the time budget is spent,
   the remaining cells get a ``CellNotRun`` error output;
6. keeps at most ``max_output_chars`` of output per cell, counting every message (streams,
   display data and its metadata, errors and their tracebacks), so a submission cannot make the
   graded notebook, the feedback page or the grading process grow without bound.

**Points come from the judge alone.** Each test cell's verdict (:class:`~autograder.judging.judge.Verdict`)
is recorded in ``resources["autograder_verdicts"]`` by ``grade_id``, in every outcome (passed, failed,
error, the kernel died, timed out, restarted, not run: no verdict is a failure), and
:class:`~autograder.execution.pipeline.ScoreFromVerdicts` writes the gradebook's score from it. The
kernel's outputs are rewritten to show the verdict, but no output can change a score. How the executor
knows that a cell timed out or that the kernel died is its own bookkeeping (the client's timeout, the
kernel process's exit), never an output's name or text.

**Nothing the kernel leaves behind is followed.** The kernel works in a scratch folder inside its
sandbox (a tmpfs seeded with a grader-made copy of the assignment's files), its sockets live in a
fresh runtime folder per kernel start, and the judge's socket in a grader-owned folder the kernel sees
read-only. The grader writes the graded notebook in nbgrader's folder, which the kernel never sees,
and afterwards only removes the runtime folders (``shutil.rmtree``, which follows no link).

Each code cell gets ``metadata.autograder = {"outcome": ..., "reason": ..., "verdict": ...}`` (any
such metadata in the submission is removed first), which :mod:`autograder.batch.results` turns into
the per-test CSV; timings are kept under ``report_key`` for :func:`take_report` (same process, no file).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import tempfile
import time
import uuid
from dataclasses import asdict
from typing import Any

from nbclient.client import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbclient.util import run_sync
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Bool, Float, Integer, Unicode

from autograder.execution import sandbox, warm_kernels
from autograder.execution.isolation import (
    MemoryWatchdog,
    SandboxedKernelManager,
    exit_description,
    kill_process_tree,
)
from autograder.execution.limits import DEFAULTS
from autograder.execution.records import raised
from autograder.execution.redact import strip_hidden_test_regions
from autograder.notebook_format import BEGIN_HIDDEN, END_HIDDEN, grade_id_of, is_answer_cell, is_graded, is_test_cell

#: ``ename`` of the error outputs this step adds.
KERNEL_DIED = "KernelDied"
NOT_RUN = "CellNotRun"
TIMEOUT = "CellTimeoutError"  # the name nbgrader's Execute uses too
NO_VERDICT = "NoVerdict"
HIDDEN_TEST_FAILED = "AssertionError"
#: ``resources`` key of the verdicts, ``{grade_id: Verdict}``, that score the test cells.
VERDICTS = "autograder_verdicts"
#: Kernel environment variables passed through from the grader's environment (everything else is dropped,
#: so the kernel learns nothing of the grader's paths: checkout, output folder, gradebook).
KERNEL_ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "PYTHONWARNINGS", "MPLBACKEND",
                   "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                   "OPENBLAS_L2_SIZE", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "DLCV_DEVICE",
                   "DLCV_GRADING", "DLCV_DATA", "TORCH_HOME", "NBGRADER_EXECUTION", "NBGRADER_VALIDATING")


def error_output(ename: str, evalue: str) -> NotebookNode:
    """An nbformat error output with a one-line traceback."""
    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"])


#: The timing reports of finished runs, by ``report_key``, until the caller in this process takes them.
_REPORTS: dict[str, dict[str, Any]] = {}


def take_report(key: str) -> dict[str, Any] | None:
    """The timing report that the run configured with ``report_key=key`` kept (once), or None."""
    return _REPORTS.pop(key, None)


class ResilientExecute(Execute):
    """Execute a submission cell by cell, surviving kernel deaths, hangs and memory blow-ups."""

    submission_timeout = Float(DEFAULTS.timeout, help="wall-clock seconds for the whole notebook").tag(config=True)
    memory_limit = Integer(DEFAULTS.memory, help="everything the kernel may hold (resident memory and tmpfs), in "
                                                 "bytes").tag(config=True)
    max_kernel_restarts = Integer(DEFAULTS.max_restarts, help="kernel restarts after which cells without points "
                                                              "are skipped").tag(config=True)
    max_output_chars = Integer(DEFAULTS.max_output_chars, help="output characters kept per cell").tag(config=True)
    interrupt_grace = Float(5.0, help="seconds a timed-out kernel has to answer after an interrupt").tag(
        config=True)
    network_isolation = Bool(True, help="start the kernel without network where the OS allows").tag(config=True)
    file_isolation = Bool(True, help="start the kernel in the file-system sandbox (autograder.execution.sandbox)"
                          ).tag(config=True)
    judge_assignment = Unicode("", help="the assignment whose judge decides the test cells (empty: no judge, "
                                        "nbgrader's own rule from the outputs)").tag(config=True)
    report_key = Unicode("", help="key under which take_report() returns the timing report (empty: not kept)"
                         ).tag(config=True)
    kernel_template = Unicode("", help="socket of the warm kernel template of this run "
                                       "(autograder.execution.warm_kernels; empty: kernels start cold)"
                              ).tag(config=True)

    max_processes = Integer(DEFAULTS.processes, help="processes and threads a kernel may have (RLIMIT_NPROC, when "
                                                     "the grader is root and the kernel runs as a uid of its own)"
                            ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        # Widget state would go into the graded notebook's metadata, outside every output cap; grading needs none.
        kwargs.setdefault("store_widget_state", False)
        super().__init__(**kwargs)
        self._configured_timeout = self.timeout  # ``timeout`` is changed per cell below

    # -- the pipeline step -------------------------------------------------------------------

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None
                   ) -> tuple[NotebookNode, dict[str, Any]]:
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        # A late IOPub message must not turn into an exception that hides the cell's status.
        self.raise_on_iopub_timeout = False
        self._iopub_timeout = self.iopub_timeout
        self.shell_timeout_interval = 1  # how often a wait for a reply checks its own timeout
        configured = self._configured_timeout
        self._cell_timeout = float(configured) if configured and configured > 0 else None
        self._deadline = time.monotonic() + self.submission_timeout
        self._output_used: dict[int, int] = {}
        self._truncated: set[int] = set()
        self._count = 0
        self.restarts = 0
        self._demos_off = False
        for cell in self.nb.cells:  # only this step writes it: a submission's own copy is dropped
            if "autograder" in cell.get("metadata", {}):
                del cell.metadata["autograder"]
        self._verdicts: dict[str, Any] = {}
        self.resources[VERDICTS] = self._verdicts
        self._graded_names = {name for c in self.nb.cells if is_answer_cell(c)
                              for name in (_names_defined(c.source) | {grade_id_of(c)}) if name}
        self._scratch = tempfile.mkdtemp(prefix="dlcv-grader-")
        self._seed = self._seed_folder()
        self._runtime: str | None = None
        self._watchdog = MemoryWatchdog(self.memory_limit)
        self._judge = self._start_judge()
        report: dict[str, Any] = {"restarts": 0, "kernel_start_seconds": [], "cell_seconds": 0.0, "warm_starts": 0}
        succeeded: list[int] = []
        alive = True
        try:
            alive = self._start_kernel(report)
            if alive:
                self._language_info()
            previous = None
            for index, cell in enumerate(self.nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                remaining = self._deadline - time.monotonic()
                if self._demos_off and not self._needed_for_tests(cell):
                    self._mark(cell, "not_run", f"not run: the kernel died {self.restarts} times, so the grader "
                                                "skipped the cells without points to keep time for the tests")
                    continue
                if alive and not self._kernel_alive():
                    # Died between cells (a timer or thread the previous cell started): do not
                    # blame this cell, and do not replay the previous one.
                    if previous in succeeded:
                        succeeded.remove(previous)
                    alive = self._recover(succeeded, report)
                if not alive:
                    self._mark(cell, "not_run", self._gave_up_reason)
                    continue
                if remaining <= 0:
                    self._mark(cell, "not_run", f"not run: the submission's time limit of "
                                                f"{self.submission_timeout:.0f} s was used up")
                    continue
                start = time.monotonic()
                outcome = self._run_cell(cell, index, remaining)
                previous = index
                if outcome == "ok":
                    succeeded.append(index)
                elif outcome in ("died", "hung"):
                    alive = self._recover(succeeded, report)
                stopped = cell.metadata.get("autograder", {}).get("outcome") in ("error", "died")  # not timeouts
                if alive and stopped and self._judge_alone(cell, index) == "died":
                    alive = self._recover(succeeded, report)
                report["cell_seconds"] += time.monotonic() - start
        finally:
            self._watchdog.stop()
            if self._judge is not None:
                self._judge.shutdown()
                report["judge_seconds"] = self._judge.seconds
            report["restarts"] = self.restarts
            report["peak_rss"] = self._watchdog.peak
            report["network"] = self._network_note
            self._shutdown_kernel()
            shutil.rmtree(self._scratch, ignore_errors=True)
        self._record_missing_verdicts()
        self.set_widgets_metadata()
        if self.report_key:
            _REPORTS[self.report_key] = report
        return self.nb, self.resources

    def _needed_for_tests(self, cell: NotebookNode) -> bool:
        """The cells a test can depend on: imports, answers, graded cells, and set-up that calls no graded function."""
        return is_graded(cell) or self._replayable(cell)

    def _replayable(self, cell: NotebookNode) -> bool:
        """Whether a restart replays ``cell``: what defines the state the remaining tests need.

        The ``imports`` cell and the answer cells, and any other cell that calls none of the notebook's graded
        functions (loading a model, an image, constants). Demos and training loops call graded functions, and a
        broken one would only kill the new kernel again; test cells define nothing.
        """
        if "imports" in cell.get("metadata", {}).get("tags", []) or is_answer_cell(cell):
            return True
        if is_graded(cell):
            return False
        names = _names_used(cell.source)
        return names is not None and not names & self._graded_names

    def _judge_alone(self, cell: NotebookNode, index: int) -> str | None:
        """Judge a test cell whose own code stopped before its hidden test reported; return the run's outcome.

        A visible check that fails or kills the kernel because of a broken *building block* (a crashing
        ``gram_matrix`` under ``style_loss``'s check) would otherwise cost the function built on it its points.
        So the cell's hidden block alone (the grader's code, restored from the source) runs once more, and the
        judge, which calls the function with its own stand-ins for the building blocks, decides. A function that
        is itself wrong or crashing fails this judgement too. Returns None when nothing was run.
        """
        gid = grade_id_of(cell)
        if self._judge is None or not is_test_cell(cell) or gid is None:
            return None
        previous = self._verdicts.get(gid)
        if previous is None or not previous.message.startswith("no verdict"):
            return None
        hidden = hidden_block(cell.source)
        remaining = self._deadline - time.monotonic()
        if not hidden or remaining <= 1:
            return None
        scratch = copy.deepcopy(cell)
        scratch.source, scratch.outputs = hidden, []
        self.timeout = max(1, int(min(remaining, self._cell_timeout or remaining) + 0.999))
        self._running_index = index
        self._timed_out = False
        self._judge.open(gid, timeout=self.timeout + 5)
        outcome = "ok"
        try:
            self.execute_cell(scratch, index, store_history=False)
            if self._timed_out and not self._responsive():
                outcome = "died"
        except Exception:  # noqa: BLE001 - the function itself killed the kernel
            outcome = "died"
        finally:
            verdict = self._judge.close()
            self.nb.cells[index] = cell  # nbclient puts the cell it ran in the notebook: the original goes back
        if verdict is None:
            return outcome
        from autograder.judging.judge import Verdict

        meta = cell.metadata.setdefault("autograder", {})
        before = meta.get("reason") or meta.get("outcome")
        message = (f"{verdict.message} (the cell's own code stopped first: {before}; the grader then ran the hidden "
                   "test alone, with its stand-ins for the building blocks)")
        verdict = Verdict(verdict.grade_id, verdict.passed, message, verdict.wrong_answer, verdict.hint,
                          verdict.finding)
        self._verdicts[gid] = verdict
        cell.metadata["autograder"]["verdict"] = asdict(verdict)
        if outcome == "died":
            return outcome  # the function itself kills the kernel: the death stays the cell's story
        cell.outputs.append(NotebookNode(output_type="stream", name="stdout", text=f"[grader] {message}\n"))
        if verdict.passed:  # the function is right; what stopped the cell was a building block
            self._mark(cell, "ok", None)
            cell.metadata["autograder"]["verdict"] = asdict(verdict)
        return outcome

    def _seed_folder(self) -> str:
        """A grader-made copy of the assignment's files (not notebooks) for the kernel's working folder.

        Only regular files are copied, from the notebook's folder as nbgrader laid it out before any kernel
        ran (the course's files and the submission), and links are skipped.
        """
        seed = os.path.join(self._scratch, "seed")
        os.mkdir(seed)
        origin = (self.resources or {}).get("metadata", {}).get("path") or ""
        if not origin or not os.path.isdir(origin):
            return seed
        for folder, dirs, files in os.walk(origin, followlinks=False):
            dirs[:] = [d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(folder, d))]
            for name in files:
                path = os.path.join(folder, name)
                if name.endswith(".ipynb") or name == "timestamp.txt" or not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                dest = os.path.join(seed, os.path.relpath(path, origin))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copyfile(path, dest, follow_symlinks=False)
        return seed

    def _record_missing_verdicts(self) -> None:
        """Every judged test cell ends with a recorded verdict: no report from the judge is a failure."""
        from autograder.judging.judge import Verdict

        if self._judge is None:
            return
        for cell in self.nb.cells:
            gid = grade_id_of(cell)
            if is_test_cell(cell) and gid is not None and gid not in self._verdicts:
                meta = cell.metadata.setdefault("autograder", {})
                reason = meta.get("reason") or "the cell was not run"
                self._verdicts[gid] = Verdict(gid, False, f"no verdict: {reason}")
                meta["verdict"] = asdict(self._verdicts[gid])

    # -- one cell ----------------------------------------------------------------------------

    def _run_cell(self, cell: NotebookNode, index: int, remaining: float) -> str:
        """Execute ``cell``; return ``"ok"``, ``"error"``, ``"died"`` or ``"hung"``."""
        limit = remaining if self._cell_timeout is None else min(self._cell_timeout, remaining)
        cut_by_budget = self._cell_timeout is None or remaining < self._cell_timeout
        self.timeout = max(1, int(limit + 0.999))
        self._output_used[index] = 0
        self._running_index = index
        self._count += 1
        self.iopub_timeout = self._iopub_timeout
        judged = self._judge is not None and is_test_cell(cell) and grade_id_of(cell) is not None
        if judged:
            self._judge.open(grade_id_of(cell), timeout=self.timeout + 5)
        try:
            outcome = self._execute_and_classify(cell, index, cut_by_budget)
        finally:
            if judged:
                self._apply_verdict(cell, self._judge.close())
        return outcome

    def _execute_and_classify(self, cell: NotebookNode, index: int, cut_by_budget: bool) -> str:
        """Run one cell and classify it from the executor's own bookkeeping (never from an output's name)."""
        self._timed_out = False
        try:
            self.execute_cell(cell, index, execution_count=self._count, store_history=True)
        except Exception as exc:  # noqa: BLE001 - whatever breaks, the grade survives
            reason = self._death_reason() if isinstance(exc, DeadKernelError) or not self._kernel_alive() else \
                f"the grader lost the kernel ({type(exc).__name__}: {str(exc)[:200]})"
            cell.outputs.append(error_output(KERNEL_DIED, f"{reason}; the grader restarted the kernel "
                                                          "and went on with the next cell"))
            self._mark(cell, "died", reason)
            return "died"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if self._timed_out:  # set by _async_handle_timeout: the client's own clock, not an output
            what = (f"the submission's time limit of {self.submission_timeout:.0f} s ran out in this cell"
                    if cut_by_budget else f"the cell did not finish within {self.timeout} s")
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "error" and o.ename == TIMEOUT)]
            cell.outputs.append(error_output(TIMEOUT, what))
            self._mark(cell, "timeout", what)
            return "error" if self._responsive() else "hung"
        if errors:
            self._mark(cell, "error", raised(errors[-1]))
            return "error"
        self._mark(cell, "ok", None)
        return "ok"

    def _apply_verdict(self, cell: NotebookNode, verdict: Any) -> None:
        """Record the judge's verdict for a test cell, and make its outputs say it.

        The verdict alone scores the cell (:class:`~autograder.execution.pipeline.ScoreFromVerdicts`): no
        verdict (the hidden test never reported: the cell was blanked, transformed or skipped, an earlier
        line raised, the kernel died or the cell timed out first) is a failure. The outputs are only what the
        student reads: the kernel's error and ``execute_result`` outputs are dropped and the verdict's message
        shown (a cell whose kernel died or timed out keeps the executor's own error output).
        """
        from autograder.judging.judge import Verdict

        gid = grade_id_of(cell)
        meta = cell.metadata.setdefault("autograder", {})
        outcome = meta.get("outcome")
        if verdict is None:
            errors = [o for o in cell.outputs if o.output_type == "error"]
            if outcome in ("died", "timeout", "not_run"):
                message = f"no verdict: {meta.get('reason')}"
            elif errors:
                message = f"no verdict: the cell raised {errors[-1].ename} before the hidden test reported"
            else:
                message = ("no verdict: the hidden test did not report to the grader (the cell's code did not run "
                           "as written: was it changed, skipped or emptied?); no points")
            verdict = Verdict(gid, False, message)
        self._verdicts[gid] = verdict
        meta["verdict"] = asdict(verdict)
        if outcome in ("died", "timeout", "not_run"):
            return
        kept = [o for o in cell.outputs if o.output_type not in ("error", "execute_result")]
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if verdict.passed:
            cell.outputs = kept
            self._mark(cell, "ok", None)
        elif verdict.message.startswith("no verdict"):
            shown = errors[-1] if errors else error_output(NO_VERDICT, verdict.message)
            cell.outputs = [*kept, shown]
            self._mark(cell, "error", verdict.message if not errors else raised(shown))
        else:
            cell.outputs = [*kept, error_output(HIDDEN_TEST_FAILED, verdict.message)]
            self._mark(cell, "failed", verdict.message)

    def _start_judge(self) -> Any:
        """The judge of this submission (None without ``judge_assignment``).

        Its socket lives in a folder of the grader's own that the sandbox shows read-only: the kernel can
        connect, but never unlink, replace or redirect it.
        """
        if not self.judge_assignment:
            return None
        from autograder.judging.judge import Judge

        folder = os.path.join(self._scratch, "judge")
        os.mkdir(folder)
        os.chmod(folder, 0o755)
        path = os.path.join(folder, "judge.sock")
        judge = Judge(self.judge_assignment, path, notebook=self.nb)
        os.chmod(path, 0o666)  # the kernel's unprivileged uid must be able to connect
        return judge

    def _kernel_environment(self, sandboxed: bool) -> dict[str, str]:
        """The kernel's whole environment: what it needs, and no path of the grader's."""
        repo = str(sandbox.REPO_ROOT.resolve())
        env = {k: v for k, v in os.environ.items() if k in KERNEL_ENV_KEEP and repo not in v}
        env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if repo not in p)
        env.update(HOME=sandbox.WORK_DIR if sandboxed else self._scratch, USER="student", LOGNAME="student",
                   PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
        env.setdefault("MPLBACKEND", "Agg")
        env.setdefault("PYTHONWARNINGS", "ignore")
        env["PYTHONPATH"] = sandbox.KIT_DIR if sandboxed else str(sandbox.REPO_ROOT)
        for name, value in sandbox.cache_environment().items():
            env.setdefault(name, value)
        if self._judge is not None:
            env["DLCV_JUDGE_SOCKET"] = self._judge.socket_path
        return env

    async def _async_handle_timeout(self, timeout: int, cell: NotebookNode | None = None) -> Any:
        self._timed_out = True
        # After a timeout the cell's remaining output is not worth waiting for.
        self.iopub_timeout = 1
        return await super()._async_handle_timeout(timeout, cell)

    def _language_info(self) -> None:
        try:
            info = self.wait_for_reply(self.kc.kernel_info())
        except Exception:  # noqa: BLE001 - a kernel that dies here is handled at the first cell
            return
        if info and "language_info" in info["content"]:
            self.nb.metadata["language_info"] = info["content"]["language_info"]

    def _kernel_alive(self) -> bool:
        try:
            return bool(run_sync(self.km.is_alive)()) if self.km is not None else False
        except Exception:  # noqa: BLE001
            return False

    def _responsive(self) -> bool:
        """After an interrupt: does the kernel answer within ``interrupt_grace`` seconds?"""
        saved = self.timeout
        self.timeout = max(1, int(self.interrupt_grace))
        try:
            return self.wait_for_reply(self.kc.kernel_info()) is not None
        except Exception:  # noqa: BLE001 - dead or broken: either way, restart
            return False
        finally:
            self.timeout = saved

    # -- kernel life cycle -------------------------------------------------------------------

    def _start_kernel(self, report: dict[str, Any]) -> bool:
        """Start a kernel (and its client); False, with :attr:`_gave_up_reason`, if it cannot start."""
        start = time.monotonic()
        plan = sandbox.plan(files=self.file_isolation, network=self.network_isolation)
        self._network_note = plan.note
        if self.file_isolation and not plan.files_isolated:  # fail closed: never an unsandboxed kernel by accident
            self._gave_up_reason = f"not run: {plan.note}"
            return False
        # A fresh runtime folder per kernel: nothing an earlier kernel left there is ever reused.
        self._runtime = tempfile.mkdtemp(prefix="rt-", dir=self._scratch)
        try:
            self.km = self.create_kernel_manager()
            cwd = self._runtime
            if isinstance(self.km, SandboxedKernelManager):
                self.km.transport = "ipc"
                # Absolute socket path prefix, shared by the client and the kernel.
                name = f"kernel-{uuid.uuid4().hex[:8]}"
                self.km.ip = os.path.join(self._runtime, f"{name}-ipc")
                self.km.connection_file = os.path.join(self._runtime, f"{name}.json")
            if plan.files_isolated:
                rss, tmp, shm, work = sandbox.memory_split(self.memory_limit)
                self._watchdog.limit = rss
                box = sandbox.KernelBox(uid=sandbox.kernel_uid(), tmp_bytes=tmp, shm_bytes=shm, work_bytes=work,
                                        processes=self.max_processes, seed=self._seed,
                                        shown=(os.path.dirname(self._judge.socket_path),) if self._judge else ())
                self.km.command_prefix = sandbox.kernel_prefix(plan, [self._runtime], box)
                if self.kernel_template and box.uid is not None:
                    self.km.warm_template = self.kernel_template
                    self.km.warm_request = warm_kernels.kernel_request(plan, [self._runtime], box)
                # In its own PID namespace the kernel is not the process the manager started, so
                # interrupts go over the control channel instead of as a signal.
                self.km.kernel_spec.interrupt_mode = "message"
            else:
                if plan.prefix and isinstance(self.km, SandboxedKernelManager):
                    self.km.command_prefix = list(plan.prefix)
                cwd = tempfile.mkdtemp(prefix="work-", dir=self._scratch)
                shutil.copytree(self._seed, cwd, dirs_exist_ok=True)
            self.start_new_kernel(cwd=cwd, env=self._kernel_environment(plan.files_isolated))
            self.start_new_kernel_client()
        except Exception as exc:  # noqa: BLE001 - any failure to start is reported per cell
            self._gave_up_reason = f"not run: the kernel could not start ({type(exc).__name__}: {exc})"
            self._shutdown_kernel()
            return False
        self._watchdog.watch(self._kernel_pid(), self._runtime)
        report["kernel_start_seconds"].append(time.monotonic() - start)
        report["warm_starts"] += isinstance(self.km.provisioner.process, warm_kernels.WarmKernel)
        return True

    def _recover(self, succeeded: list[int], report: dict[str, Any]) -> bool:
        """Restart the kernel and replay what the tests need of ``succeeded``; False when giving up.

        After ``max_kernel_restarts`` restarts the cells without points are skipped from then on, but the
        kernel is still restarted for the answer and test cells (one death costs one test), until the time
        budget is spent.
        """
        self._shutdown_kernel()
        if self.restarts >= self.max_kernel_restarts:
            self._demos_off = True
        needed = sum(1 for c in self.nb.cells if c.cell_type == "code" and self._needed_for_tests(c))
        if self.restarts >= self.max_kernel_restarts + needed:  # every cell a test needs had its chance
            self._gave_up_reason = (f"not run: the kernel died or hung {self.restarts + 1} times; "
                                    "the grader stopped restarting it")
            return False
        self.restarts += 1
        if not self._start_kernel(report):
            return False
        for index in succeeded:
            original = self.nb.cells[index]
            if not self._replayable(original):
                continue  # demos, training loops and tests: nothing the remaining tests need
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                break
            scratch = copy.deepcopy(original)
            scratch.source = strip_hidden_test_regions(scratch.source)
            self.timeout = max(1, int(min(remaining, self._cell_timeout or remaining) + 0.999))
            self._output_used[index] = 0
            self._timed_out = False
            try:
                self.execute_cell(scratch, index, store_history=False)
                broken = self._timed_out and not self._responsive()
            except Exception:  # noqa: BLE001 - died during the replay
                broken = True
            finally:
                self.nb.cells[index] = original
            if broken:  # go on with a fresh kernel without the replayed state
                self._shutdown_kernel()
                return self._start_kernel(report)
        return True

    def _kernel_pid(self) -> int | None:
        """The kernel's process as this machine sees it (a warm kernel's, not its keeper's: the keeper is a copy of
        the template, whose memory is not the kernel's)."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return getattr(process, "kernel_pid", getattr(process, "pid", None))

    def _death_reason(self) -> str:
        if self._watchdog.reason:
            return self._watchdog.reason
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        code = process.poll() if process is not None else None
        return exit_description(code)

    def _shutdown_kernel(self) -> None:
        """Stop the kernel and its client, whatever state they are in; remove its runtime folder."""
        self._watchdog.watch(None)
        pid = self._kernel_pid()
        if pid is not None:
            kill_process_tree(pid)
        if self.km is not None:
            try:
                self._cleanup_kernel()
            except Exception:  # noqa: BLE001 - a half-dead kernel must not stop grading
                pass
        self.km = None
        self.kc = None
        if self._runtime is not None:
            shutil.rmtree(self._runtime, ignore_errors=True)  # follows no link the kernel left there
            self._runtime = None

    # -- bookkeeping -------------------------------------------------------------------------

    _gave_up_reason = "not run"
    _network_note = ""
    _runtime: str | None = None
    _timed_out = False
    _running_index = -1

    def _mark(self, cell: NotebookNode, outcome: str, reason: str | None) -> None:
        """Record the cell's outcome in its metadata; a not-run cell also gets an error output."""
        if outcome == "not_run":
            cell.outputs = [error_output(NOT_RUN, reason or "not run")]
            cell.execution_count = None
        previous = cell.metadata.get("autograder", {})
        cell.metadata["autograder"] = {"outcome": outcome, "reason": reason,
                                       **({"verdict": previous["verdict"]} if "verdict" in previous else {})}

    def output(self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None,
               cell_index: int) -> NotebookNode | None:
        """Keep at most ``max_output_chars`` characters of output per cell, counting every message.

        Streams, display data with its metadata, errors with their tracebacks: each costs the size of its
        content. An error past the cap is still recorded (its name, and its text cut short), so that the
        cell's outcome stays right; other messages past the cap are dropped, with one note.
        """
        kind = msg["msg_type"]
        content = msg["content"]
        size = _message_size(content)
        used = self._output_used.get(cell_index, 0)
        if used + size <= self.max_output_chars:
            self._output_used[cell_index] = used + size
            return super().output(outs, msg, display_id, cell_index)
        self._output_used[cell_index] = self.max_output_chars
        first_cut = cell_index not in self._truncated
        self._truncated.add(cell_index)
        if kind == "error":
            short = copy.deepcopy(msg)
            short["content"] = {"ename": str(content.get("ename", "Error"))[:200],
                                "evalue": str(content.get("evalue", ""))[:1000], "traceback": []}
            super().output(outs, short, None, cell_index)
        elif kind == "stream" and first_cut and used < self.max_output_chars:
            head = copy.deepcopy(msg)
            head["content"]["text"] = str(content.get("text", ""))[: self.max_output_chars - used]
            super().output(outs, head, display_id, cell_index)
        if not first_cut:
            return None
        note = copy.deepcopy(msg)
        note["msg_type"] = "stream"
        note["header"] = {**msg.get("header", {}), "msg_type": "stream"}
        note["content"] = {"name": "stdout", "text": f"\n[grader: output cut after {self.max_output_chars} "
                                                    "characters]\n"}
        return super().output(outs, note, None, cell_index)


    def _update_display_id(self, display_id: str, msg: dict[str, Any]) -> None:
        """An update of an earlier display counts against the running cell's cap, once per output it rewrites.

        nbclient writes ``update_display_data`` into every output shown with that ``display_id`` (in any cell)
        without passing through :meth:`output`; unbounded, a kernel could grow the graded notebook by
        re-sending one large display.
        """
        targets = sum(len(indices) for indices in self._display_id_map.get(display_id, {}).values())
        index = self._running_index
        size = _message_size(msg.get("content", {})) * max(1, targets)
        used = self._output_used.get(index, 0)
        if used + size > self.max_output_chars:
            self._output_used[index] = self.max_output_chars
            return
        self._output_used[index] = used + size
        super()._update_display_id(display_id, msg)


def hidden_block(source: str) -> str:
    """The hidden-test region of a test cell's source (delimiters dropped), or ""."""
    lines, inside = [], False
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line:
            inside = True
        elif END_HIDDEN in line:
            inside = False
        elif inside:
            lines.append(line)
    return "\n".join(lines).strip()


def _names_defined(source: str) -> set[str]:
    """The functions and classes a cell defines at its top level."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _names_used(source: str) -> set[str] | None:
    """Every name and attribute a cell's code mentions (None when it is not plain Python)."""
    import ast

    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return None
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
        {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}


def _message_size(content: Any) -> int:
    """Characters a message's content would take in the notebook (its JSON, bounded work for huge ones)."""
    try:
        return len(json.dumps(content, default=str))
    except (TypeError, ValueError, RecursionError):
        return 1 << 40  # unreadable: counts as over any cap
