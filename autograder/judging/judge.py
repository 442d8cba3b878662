"""The judge: runs each hidden test in the grading process and records its verdict.

While a submission is graded, :class:`Judge` listens on a Unix socket in the kernel's runtime folder.
The executor opens a *window* for each graded test cell (:meth:`Judge.open`) and closes it when the
cell has run (:meth:`Judge.close`). The hidden block of the cell (``cs_lib.grading.judge_client.judge``)
connects during that window; the judge then runs the cell's spec (:mod:`autograder.judging.spec`)
with a :class:`RemoteFunction` that has the kernel call the student's function, receives the results
as plain data (:mod:`cs_lib.grading.wire`, no pickle, size-limited), computes the reference itself, compares,
diagnoses, and records a :class:`Verdict`. The cell's points come from that verdict only
(:mod:`autograder.execution.executor`): one connection per window, bound to the cell that is running,
whatever the kernel claims.

For a TA running the source notebook in Jupyter, :func:`judge_in_process` runs the same spec against
the function in-process, through :class:`LocalChannel`, which serializes every request and reply as the
socket does.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from autograder.judging.policy import Finding, runtime_findings, runtime_prefixes, static_findings
from autograder.judging.references import load_reference
from autograder.judging.solutions import load_solutions, variant
from autograder.judging.spec import GradedFunction, forbidden_of, load_specs, spec_for_grade_id, spec_module
from autograder.judging.toolkit import BUILTIN_ERRORS, Failure, StudentError, fresh_generator, run_spec
from cs_lib.grading import wire
from cs_lib.grading.judge_client import encode_reply, handle, recv_frame, send_frame
from cs_lib.rules import function_findings

#: Largest reply a kernel may send (bytes).
MAX_REPLY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Verdict:
    """What the judge decided for one test cell: the only source of that cell's points.

    ``wrong_answer`` and ``hint`` name the spec's wrong answer that the student's output matched, and
    ``finding`` a use of a library that the function's policy forbids; each is "" when there is none.
    They travel to ``tests.csv`` as data.
    """

    grade_id: str
    passed: bool
    message: str
    wrong_answer: str = ""
    hint: str = ""
    finding: str = ""


class ChannelError(Exception):
    """The kernel's side of a session broke: closed, timed out, or sent something malformed."""


class SocketChannel:
    """Requests to a kernel over a connected Unix socket."""

    def __init__(self, conn: socket.socket, max_bytes: int = MAX_REPLY_BYTES) -> None:
        self.conn = conn
        self.max_bytes = max_bytes

    def request(self, message: dict[str, Any]) -> Any:
        buffer = io.BytesIO()
        torch.save(message, buffer)
        try:
            send_frame(self.conn, buffer.getvalue())
            return wire.decode(recv_frame(self.conn, self.max_bytes), self.max_bytes)
        except wire.WireError as exc:
            raise ChannelError(f"the kernel sent a malformed or oversized result ({exc})") from None
        except TimeoutError:
            raise ChannelError("the function did not return in time") from None
        except (ConnectionError, OSError) as exc:
            raise ChannelError(f"the kernel stopped answering ({type(exc).__name__}); did it crash?") from None


class LocalChannel:
    """Requests to a function in this process, serialized exactly as over the socket (TA mode)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def request(self, message: dict[str, Any]) -> Any:
        buffer = io.BytesIO()
        torch.save(message, buffer)
        buffer.seek(0)
        copy = torch.load(buffer, weights_only=False)
        return wire.decode(encode_reply(handle(self.fn, copy)))


class RemoteFunction:
    """The student's function as the hidden tests see it: call it, get plain data back.

    ``student(*args, **kwargs)`` returns the output, or raises what the student's function raised
    (re-created only for builtin exception types; others become :class:`StudentError`). A function
    that modified a tensor argument in place raises :class:`Failure`. :attr:`last_modules` holds the
    kernel's :func:`cs_lib.grading.judge_client.module_report` of every model argument after the last call.
    """

    def __init__(self, name: str, channel: SocketChannel | LocalChannel, adapter: str | None = None) -> None:
        self.__name__ = name
        self.channel = channel
        self.adapter = adapter
        self.stand_ins: dict[str, str] = {}
        self.last_modules: dict[str, Any] = {}
        self.calls = 0
        self.watch: list[str] = []  # runtime_prefixes of the function's policy, recorded in the kernel
        self.findings: list[Finding] = []  # shared with the views of with_stand_ins
        self.graded: list[str] = []  # the other graded functions: what runs inside them is not this one's

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(args, kwargs, None)

    def backward(self, args: tuple, kwargs: dict[str, Any] | None = None, wrt: tuple[int, ...] = (0,),
                 grad_output: torch.Tensor | None = None) -> tuple[Any, list[torch.Tensor | None]]:
        """Call on copies of ``args`` with gradients on the positions ``wrt``; backpropagate.

        Returns:
            ``(output, grads)``: one gradient (or None) per position in ``wrt``, of
            ``sum(output * grad_output)`` (``grad_output`` defaults to ones).
        """
        reply = self._call(args, kwargs or {}, {"wrt": list(wrt), "grad_output": grad_output}, full=True)
        return reply["output"], list(reply.get("grads") or [None] * len(wrt))

    def with_stand_ins(self, sources: dict[str, str]) -> RemoteFunction:
        """A view of this function whose calls run with globals replaced by ``sources``' functions."""
        other = RemoteFunction(self.__name__, self.channel, self.adapter)
        other.stand_ins = dict(sources)
        other.watch, other.findings, other.graded = self.watch, self.findings, self.graded
        return other

    def _call(self, args: tuple, kwargs: dict[str, Any], backward: dict[str, Any] | None, full: bool = False) -> Any:
        self.calls += 1
        request = {"op": "call", "args": tuple(args), "kwargs": dict(kwargs), "adapter": self.adapter,
                   "backward": backward, "globals": self.stand_ins, "watch": self.watch, "graded": self.graded}
        reply = self.channel.request(request)
        if type(reply) is not dict or type(reply.get("ok")) is not bool:
            raise ChannelError("the kernel sent a reply that is not a grader reply")
        if self.watch and not self.findings:
            self.findings.extend(runtime_findings(self.__name__, reply.get("record"), self.watch))
        modules = reply.get("modules")
        self.last_modules = modules if type(modules) is dict else {}
        if not reply["ok"]:
            error_type, message = str(reply.get("error_type", "Exception")), str(reply.get("message", ""))
            if error_type == "UnsendableResult":
                raise Failure(f"{self.__name__} returned something the grader cannot accept: {message}")
            raise BUILTIN_ERRORS.get(error_type, StudentError)(
                message if error_type in BUILTIN_ERRORS else f"{error_type}: {message}")
        modified = reply.get("modified") or []
        if type(modified) is list and modified:
            index = modified[0]
            raise Failure(f"{self.__name__} modified its argument #{int(index) + 1 if type(index) is int else '?'} "
                          "in place; work on a copy.")
        return reply if full else reply.get("output")


# ------------------------------------------------------------------------------------------- running


def wrong_answer_functions(assignment: str, spec: GradedFunction) -> dict[str, Callable[..., Any]]:
    """``{hint: function}`` of the spec's wrong answers, compiled in the notebook's namespace."""
    return {w.hint: variant(assignment, spec.name, w.body) for w in spec.wrong_answers}


def stored_cases(assignment: str, spec: GradedFunction) -> list[dict[str, Any]]:
    """The spec's stored cases from ``autograder/references/<assignment>.pt`` (empty without ``cases``)."""
    if spec.cases is None:
        return []
    return load_reference(assignment)["cases"].get(spec.name, [])


def run_test(assignment: str, spec: GradedFunction, student: RemoteFunction,
             findings: list[Finding] | None = None) -> Verdict:
    """Run ``spec``'s hidden test against ``student``; never raises.

    ``findings`` are the static policy findings of the function (:func:`policy.static_findings`); with
    any, or with a runtime finding during the test, the test fails with the first finding's message.
    """
    if findings:
        return Verdict(spec.grade_id, False, findings[0].message(), finding=findings[0].message())
    student.watch = runtime_prefixes(forbidden_of(assignment, spec))
    student.graded = [name for name in load_specs(assignment) if name != spec.name]
    verdict = _run_spec(assignment, spec, student)
    if student.findings:
        message = student.findings[0].message()
        return Verdict(spec.grade_id, False, message, finding=message)
    return verdict


def _run_spec(assignment: str, spec: GradedFunction, student: RemoteFunction) -> Verdict:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small inputs: one thread is as fast, and never stalls on a busy machine
    try:
        ref = getattr(load_solutions(assignment), spec.name)
        run_spec(spec, student, ref, wrong_answer_functions(assignment, spec), stored_cases(assignment, spec),
                 fresh_generator())
    except Failure as exc:
        matched = next((w.name for w in spec.wrong_answers if exc.hint and w.hint == exc.hint), "")
        return Verdict(spec.grade_id, False, _float64_note(spec, str(exc), exc.hint), wrong_answer=matched,
                       hint=exc.hint)
    except ChannelError as exc:
        return Verdict(spec.grade_id, False, f"{spec.name}: {exc}")
    except NotImplementedError:
        return Verdict(spec.grade_id, False, f"{spec.name} is not implemented yet (it raised NotImplementedError).")
    except AssertionError as exc:
        return Verdict(spec.grade_id, False, _float64_note(spec, str(exc) or f"{spec.name}: a hidden test failed."))
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the verdict is a clear failure
        return Verdict(spec.grade_id, False, f"{spec.name} raised {type(exc).__name__}: {exc}")
    finally:
        torch.set_num_threads(before)
    return Verdict(spec.grade_id, True, f"{spec.name}: hidden tests passed")


def _float64_note(spec: GradedFunction, message: str, hint: str = "") -> str:
    """``message`` with the spec's reason for float64 added, when it has one and the failure names no mistake."""
    if not spec.float64_required or hint or "is not implemented yet" in message:
        return message
    return f"{message} Note: {spec.name} must compute in float64: {spec.float64_required}"


def warm_up(assignments: Iterable[str]) -> None:
    """Load what the judges of ``assignments`` need (torch, specs, solutions, wrong answers, stored cases).

    The grading processes are forked from the one that calls this, so each starts with all of it
    loaded instead of importing and compiling it again per submission. Runs with one torch thread, so
    that no thread pool exists at fork time.
    """
    import torchvision.models  # noqa: F401 - imports torchvision.ops and torch._dynamo: seconds, once

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for assignment in assignments:
            try:
                specs = load_specs(assignment)
            except (KeyError, AttributeError):
                continue
            load_solutions(assignment)
            own_warm_up = getattr(spec_module(assignment), "warm_up", None)
            if callable(own_warm_up):  # models and stand-ins a module builds once
                own_warm_up()
            for spec in specs.values():
                wrong_answer_functions(assignment, spec)
                stored_cases(assignment, spec)
                runtime_prefixes(forbidden_of(assignment, spec))  # the policy's record, resolved once
                if spec.fresh is not None:  # fills the specs' own caches (models built once, say)
                    spec.fresh(torch.Generator().manual_seed(0))
    finally:
        torch.set_num_threads(before)


def judge_in_process(assignment: str, fn: Callable[..., Any]) -> None:
    """The TA's path: run the hidden test of ``fn`` here (``cs_lib.grading.judge_client.judge`` calls it).

    The policy is checked on the live function's source (:func:`cs_lib.rules.function_findings`), as the
    notebook's visible checks do; the grader checks the submitted notebook's cells instead.

    Raises:
        AssertionError: with the judge's message when the test fails.
    """
    name = getattr(fn, "__name__", "")
    specs = load_specs(assignment)
    if name not in specs:
        raise KeyError(f"autograder/specs/{assignment}.py has no spec for '{name}'; have {sorted(specs)}")
    spec = specs[name]
    policies = {n: (forbidden_of(assignment, s), s.loops_allowed) for n, s in specs.items()}
    findings = function_findings(fn, policies, name)  # no notebook here: the live function's source
    verdict = run_test(assignment, spec, RemoteFunction(name, LocalChannel(fn), spec.adapter), findings)
    if not verdict.passed:
        raise AssertionError(verdict.message)
    print(verdict.message)


# ------------------------------------------------------------------------------------------- serving


@dataclass
class _Window:
    grade_id: str
    deadline: float
    claimed: bool = False
    verdict: Verdict | None = None
    thread: threading.Thread | None = None


class Judge:
    """Serves one submission's hidden tests from the grading process (see the module docstring)."""

    def __init__(self, assignment: str, socket_path: str, max_reply_bytes: int = MAX_REPLY_BYTES,
                 notebook: Any = None) -> None:
        """``notebook``: the submission, whose code cells the policy analyses (none: runtime record only)."""
        self.assignment = assignment
        self.findings: dict[str, list[Finding]] = {}
        if notebook is not None:
            try:
                specs = load_specs(assignment)
            except KeyError:
                specs = {}
            policies = {name: (forbidden_of(assignment, spec), spec.loops_allowed) for name, spec in specs.items()}
            try:
                self.findings = static_findings(notebook, policies)
            except Exception:  # noqa: BLE001 - an analysis bug must not cost the submission: runtime record only
                self.findings = {}
        self.socket_path = socket_path
        self.max_reply_bytes = max_reply_bytes
        self.verdicts: dict[str, Verdict] = {}
        self.seconds = 0.0  # spent judging (reference, comparison, and waiting for the kernel's answers)
        self._lock = threading.Lock()
        self._window: _Window | None = None
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(socket_path)
        self._server.listen(8)
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name="judge", daemon=True)
        self._thread.start()

    def open(self, grade_id: str, timeout: float) -> None:
        """Accept one session for test cell ``grade_id`` during the next ``timeout`` seconds."""
        with self._lock:
            self._window = _Window(grade_id, time.monotonic() + timeout)

    def close(self, wait: float = 10.0) -> Verdict | None:
        """End the window; return its verdict, or None when no hidden test reported."""
        with self._lock:
            window, self._window = self._window, None
        if window is None or not window.claimed:
            return None
        if window.thread is not None:
            window.thread.join(wait)
        return window.verdict

    def shutdown(self) -> None:
        self._closed = True
        try:
            self._server.close()
        except OSError:
            pass

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                window = self._window
                if window is None or window.claimed or time.monotonic() > window.deadline:
                    window = None
                else:
                    window.claimed = True
                    window.thread = threading.Thread(target=self._serve, args=(conn, window), daemon=True)
            if window is None:
                conn.close()  # outside a test cell, or a second connection in the same cell: refused
                continue
            window.thread.start()

    def _serve(self, conn: socket.socket, window: _Window) -> None:
        spec = spec_for_grade_id(self.assignment, window.grade_id)
        with conn:
            conn.settimeout(max(1.0, window.deadline - time.monotonic()))
            try:
                wire.decode(recv_frame(conn, 4096), 4096)  # the kernel's hello: read, and not trusted
            except Exception:  # noqa: BLE001 - no valid hello: no verdict
                return
            if spec is None:
                verdict = Verdict(window.grade_id, False, f"the grader has no hidden test for {window.grade_id}")
            else:
                channel = SocketChannel(conn, self.max_reply_bytes)
                start = time.monotonic()
                verdict = run_test(self.assignment, spec, RemoteFunction(spec.name, channel, spec.adapter),
                                   self.findings.get(spec.name))
                self.seconds += time.monotonic() - start
            window.verdict = verdict
            self.verdicts[window.grade_id] = verdict
            try:
                buffer = io.BytesIO()
                torch.save({"op": "done", "passed": verdict.passed, "message": verdict.message}, buffer)
                send_frame(conn, buffer.getvalue())
            except OSError:
                pass
