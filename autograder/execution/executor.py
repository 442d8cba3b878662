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
   (``KernelDied``), starts a fresh kernel, silently *replays* the cells that had succeeded
   before (outputs discarded, so later cells find their variables; test cells without their
   hidden tests, which define nothing and take most of the time), and goes on with the
   next cell. The cell that killed the kernel is not retried;
4. when a cell times out, interrupts it; if the kernel does not answer within
   ``interrupt_grace`` seconds (code that ignores ``KeyboardInterrupt``), kills it and
   restarts as in 3;
5. after ``max_kernel_restarts`` restarts, or when the budget is spent, marks every
   remaining code cell with a ``CellNotRun`` error output, so that its test scores 0
   instead of the full points nbgrader gives a test cell without outputs;
6. keeps at most ``max_output_chars`` of output per cell (a submission printing 10 million
   lines costs the grader a bounded amount of memory).

Outputs that arrived before a crash stay in the notebook, so every test that passed keeps
its points: nbgrader's ``SaveAutoGrades`` runs afterwards on the notebook as usual. Each
code cell gets ``metadata.autograder = {"outcome": ..., "reason": ...}``, which
:mod:`autograder.batch.results` turns into the per-test CSV; timings go to ``report_path``.
"""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_runtime_dir
from nbclient.client import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbclient.util import run_sync
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Bool, Float, Integer, Unicode

from autograder.execution import sandbox
from autograder.execution.isolation import (
    GiB,
    MemoryWatchdog,
    SandboxedKernelManager,
    exit_description,
    kill_process_tree,
)
from autograder.feedback.redact import strip_hidden_tests
from autograder.notebook_format import grade_id_of, is_test_cell

#: ``ename`` of the error outputs this step adds.
KERNEL_DIED = "KernelDied"
NOT_RUN = "CellNotRun"
TIMEOUT = "CellTimeoutError"  # the name nbgrader's Execute uses too
NO_VERDICT = "NoVerdict"
HIDDEN_TEST_FAILED = "AssertionError"


def error_output(ename: str, evalue: str) -> NotebookNode:
    """An nbformat error output with a one-line traceback."""
    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"])


class ResilientExecute(Execute):
    """Execute a submission cell by cell, surviving kernel deaths, hangs and memory blow-ups."""

    submission_timeout = Float(1800.0, help="wall-clock seconds for the whole notebook").tag(config=True)
    memory_limit = Integer(4 * GiB, help="resident memory limit of the kernel, in bytes").tag(config=True)
    max_kernel_restarts = Integer(3, help="kernel restarts after a death or a hang before giving up").tag(
        config=True)
    max_output_chars = Integer(1_000_000, help="output characters kept per cell").tag(config=True)
    interrupt_grace = Float(5.0, help="seconds a timed-out kernel has to answer after an interrupt").tag(
        config=True)
    network_isolation = Bool(True, help="start the kernel without network where the OS allows").tag(config=True)
    file_isolation = Bool(True, help="start the kernel in the file-system sandbox (autograder.execution.sandbox)"
                          ).tag(config=True)
    judge_assignment = Unicode("", help="the assignment whose judge decides the test cells (empty: no judge, "
                                        "nbgrader's own rule from the outputs)").tag(config=True)
    report_path = Unicode("", help="where to write the JSON timing report (empty: nowhere)").tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
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
        self._watchdog = MemoryWatchdog(self.memory_limit)
        self._judge = self._start_judge()
        report: dict[str, Any] = {"restarts": 0, "kernel_start_seconds": [], "cell_seconds": 0.0}
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
                report["cell_seconds"] += time.monotonic() - start
                previous = index
                if outcome == "ok":
                    succeeded.append(index)
                elif outcome in ("died", "hung"):
                    alive = self._recover(succeeded, report)
        finally:
            self._watchdog.stop()
            if self._judge is not None:
                self._judge.shutdown()
                report["judge_seconds"] = self._judge.seconds
            report["restarts"] = self.restarts
            report["peak_rss"] = self._watchdog.peak
            report["network"] = self._network_note
            self._shutdown_kernel()
        self.set_widgets_metadata()
        if self.report_path:
            Path(self.report_path).write_text(json.dumps(report, indent=1))
        return self.nb, self.resources

    # -- one cell ----------------------------------------------------------------------------

    def _run_cell(self, cell: NotebookNode, index: int, remaining: float) -> str:
        """Execute ``cell``; return ``"ok"``, ``"error"``, ``"died"`` or ``"hung"``."""
        limit = remaining if self._cell_timeout is None else min(self._cell_timeout, remaining)
        cut_by_budget = self._cell_timeout is None or remaining < self._cell_timeout
        self.timeout = max(1, int(limit + 0.999))
        self._output_used[index] = 0
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
        if any(o.ename == TIMEOUT for o in errors):
            what = (f"the submission's time limit of {self.submission_timeout:.0f} s ran out in this cell"
                    if cut_by_budget else f"the cell did not finish within {self.timeout} s")
            for o in errors:
                if o.ename == TIMEOUT:
                    o.evalue = what
                    o.traceback = [f"\x1b[0;31m{TIMEOUT}\x1b[0m: {what}"]
            self._mark(cell, "timeout", what)
            return "error" if self._responsive() else "hung"
        if errors:
            self._mark(cell, "error", f"{errors[-1].ename}: {errors[-1].evalue}")
            return "error"
        self._mark(cell, "ok", None)
        return "ok"

    def _apply_verdict(self, cell: NotebookNode, verdict: Any) -> None:
        """Make a test cell's outputs say what the judge decided, and nothing the kernel claimed.

        nbgrader scores a test cell from its outputs: full points without an error output, 0 with one
        (or the number of an ``execute_result``, as partial credit). So the kernel's error and
        ``execute_result`` outputs are dropped, and the verdict decides: passed, no error; failed, the
        judge's message as an ``AssertionError``; no verdict (the hidden test never reported: the cell
        was blanked, transformed or skipped, or an earlier line raised), an error (the cell's own
        error if it had one, else ``NoVerdict``). A cell whose kernel died or timed out keeps its outputs.
        """
        meta = cell.metadata.get("autograder", {})
        if meta.get("outcome") in ("died", "timeout", "not_run"):
            return
        errors = [o for o in cell.outputs if o.output_type == "error"]
        kept = [o for o in cell.outputs if o.output_type not in ("error", "execute_result")]
        if verdict is None:
            if errors:
                cell.outputs = [*kept, errors[-1]]
                return
            reason = ("the hidden test did not report to the grader (the cell's code did not run as written: "
                      "was it changed, skipped or emptied?); no points")
            cell.outputs = [*kept, error_output(NO_VERDICT, reason)]
            self._mark(cell, "error", f"{NO_VERDICT}: {reason}")
        elif verdict.passed:
            cell.outputs = kept
            self._mark(cell, "ok", None)
        else:
            cell.outputs = [*kept, error_output(HIDDEN_TEST_FAILED, verdict.message)]
            self._mark(cell, "error", f"{HIDDEN_TEST_FAILED}: {verdict.message}")

    def _start_judge(self) -> Any:
        """The judge of this submission, listening in the runtime folder (None without ``judge_assignment``)."""
        if not self.judge_assignment:
            os.environ.pop("DLCV_JUDGE_SOCKET", None)
            return None
        from autograder.judging.judge import Judge

        runtime = jupyter_runtime_dir()
        os.makedirs(runtime, exist_ok=True)
        path = os.path.join(runtime, f"judge-{uuid.uuid4().hex[:12]}.sock")
        judge = Judge(self.judge_assignment, path)
        os.environ["DLCV_JUDGE_SOCKET"] = path  # the kernel inherits it
        return judge

    async def _async_handle_timeout(self, timeout: int, cell: NotebookNode | None = None) -> Any:
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
        try:
            self.km = self.create_kernel_manager()
            if plan.prefix and isinstance(self.km, SandboxedKernelManager):
                runtime = jupyter_runtime_dir()
                os.makedirs(runtime, exist_ok=True)
                cwd = (self.resources or {}).get("metadata", {}).get("path") or os.getcwd()
                self.km.command_prefix = sandbox.kernel_prefix(plan, [os.path.abspath(cwd), runtime])
                self.km.transport = "ipc"
                # Absolute socket path prefix, shared by the client and the kernel (cwds differ).
                name = f"kernel-{uuid.uuid4().hex[:12]}"
                self.km.ip = os.path.join(runtime, f"{name}-ipc")
                # The connection file too: the sandboxed kernel sees the runtime folder, not the grader's /tmp.
                self.km.connection_file = os.path.join(runtime, f"{name}.json")
                if plan.files_isolated:
                    # In its own PID namespace the kernel is not the process the manager started, so
                    # interrupts go over the control channel instead of as a signal.
                    self.km.kernel_spec.interrupt_mode = "message"
            self.start_new_kernel()
            self.start_new_kernel_client()
        except Exception as exc:  # noqa: BLE001 - any failure to start is reported per cell
            self._gave_up_reason = f"not run: the kernel could not start ({type(exc).__name__}: {exc})"
            self._shutdown_kernel()
            return False
        self._watchdog.watch(self._kernel_pid())
        report["kernel_start_seconds"].append(time.monotonic() - start)
        return True

    def _recover(self, succeeded: list[int], report: dict[str, Any]) -> bool:
        """Restart the kernel and replay the cells in ``succeeded``; False when giving up."""
        self._shutdown_kernel()
        if self.restarts >= self.max_kernel_restarts:
            self._gave_up_reason = (f"not run: the kernel died or hung {self.restarts + 1} times; "
                                    "the grader stopped restarting it")
            return False
        self.restarts += 1
        if not self._start_kernel(report):
            return False
        for index in succeeded:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                break
            original = self.nb.cells[index]
            scratch = copy.deepcopy(original)
            # Hidden tests only check; they define nothing later cells need, and they are slow.
            scratch.source = strip_hidden_tests(scratch.source)
            self.timeout = max(1, int(min(remaining, self._cell_timeout or remaining) + 0.999))
            self._output_used[index] = 0
            try:
                self.execute_cell(scratch, index, store_history=False)
                broken = any(o.output_type == "error" and o.ename == TIMEOUT for o in scratch.outputs) \
                    and not self._responsive()
            except Exception:  # noqa: BLE001 - died during the replay
                broken = True
            finally:
                self.nb.cells[index] = original
            if broken:  # go on with a fresh kernel without the replayed state
                self._shutdown_kernel()
                return self._start_kernel(report)
        return True

    def _kernel_pid(self) -> int | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return getattr(process, "pid", None)

    def _death_reason(self) -> str:
        if self._watchdog.reason:
            return self._watchdog.reason
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        code = process.poll() if process is not None else None
        return exit_description(code)

    def _shutdown_kernel(self) -> None:
        """Stop the kernel and its client, whatever state they are in."""
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

    # -- bookkeeping -------------------------------------------------------------------------

    _gave_up_reason = "not run"
    _network_note = ""

    def _mark(self, cell: NotebookNode, outcome: str, reason: str | None) -> None:
        """Record the cell's outcome in its metadata; a not-run cell also gets an error output."""
        if outcome == "not_run":
            cell.outputs = [error_output(NOT_RUN, reason or "not run")]
            cell.execution_count = None
        cell.metadata["autograder"] = {"outcome": outcome, "reason": reason}

    def output(self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None,
               cell_index: int) -> NotebookNode | None:
        """Keep at most ``max_output_chars`` characters of output per cell; note the cut once."""
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "error":
            return super().output(outs, msg, display_id, cell_index)
        if kind == "stream":
            size = len(content.get("text", ""))
        else:
            size = sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in content.get("data", {}).values())
        used = self._output_used.get(cell_index, 0)
        if used + size <= self.max_output_chars:
            self._output_used[cell_index] = used + size
            return super().output(outs, msg, display_id, cell_index)
        if cell_index in self._truncated:
            return None
        self._truncated.add(cell_index)
        self._output_used[cell_index] = self.max_output_chars
        if kind == "stream" and used < self.max_output_chars:
            head = copy.deepcopy(msg)
            head["content"]["text"] = content["text"][: self.max_output_chars - used]
            super().output(outs, head, display_id, cell_index)
        note = copy.deepcopy(msg)
        note["msg_type"] = "stream"
        note["header"] = {**msg.get("header", {}), "msg_type": "stream"}
        note["content"] = {"name": "stdout", "text": f"\n[grader: output cut after {self.max_output_chars} "
                                                    "characters]\n"}
        return super().output(outs, note, None, cell_index)
