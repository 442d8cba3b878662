"""The kernel's side of a hidden test: call the student's function when the grader asks, nothing more.

A hidden test cell of a source notebook ends with::

    ### BEGIN HIDDEN TESTS
    from cs_lib.grading.judge_client import judge
    judge("example", softmax)
    ### END HIDDEN TESTS

While a submission is graded, the grader's judge listens on the Unix socket named by
``DLCV_JUDGE_SOCKET``. :func:`judge` connects and serves the judge's requests ("call the function on
these inputs", optionally with a backward pass) until the judge says it is done. It never sees the
reference solution, the expected outputs or the verdict's reasons beyond the final message, and the
grade is decided by the judge from what it received, not from anything this process prints or raises.

Without ``DLCV_JUDGE_SOCKET`` (a TA running the source notebook in Jupyter) the same judge runs in this
process: the installed kit declares it as the entry point :data:`IN_PROCESS_JUDGE` (``pyproject.toml``), so
``cs_lib`` never imports the grader that sits above it.

Requests come from the grader (trusted) and are read with ``torch.load``; replies go back in the
pickle-free :mod:`cs_lib.grading.wire` format, which the grader decodes as plain data only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import struct
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from cs_lib.checks import stand_in
from cs_lib.grading import wire

SOCKET_ENV = "DLCV_JUDGE_SOCKET"
#: The entry point group under which the grader declares its in-process judge (``pyproject.toml``).
IN_PROCESS_JUDGE = "dlcv_kit.in_process_judge"
#: Longest exception message sent back (characters).
MAX_MESSAGE = 2000


def judge(assignment: str, fn: Callable[..., Any]) -> None:
    """Have the grader's judge test ``fn`` (a graded function or class of ``assignment``).

    Raises:
        AssertionError: with the judge's message when the hidden test fails.
    """
    path = os.environ.get(SOCKET_ENV)
    if not path:
        in_process_judge()(assignment, fn)
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        send_frame(conn, wire.encode({"op": "hello", "assignment": assignment,
                                      "name": getattr(fn, "__name__", "?")}))
        while True:
            request = torch.load(io.BytesIO(recv_frame(conn)), weights_only=False)
            if request["op"] == "done":
                if not request["passed"]:
                    raise AssertionError(request["message"])
                print(request["message"])
                return
            send_frame(conn, encode_reply(handle(fn, request)))


def in_process_judge() -> Callable[[str, Callable[..., Any]], None]:
    """The judge that the installed grader declares under the entry point group :data:`IN_PROCESS_JUDGE`.

    Raises:
        RuntimeError: no installed package declares one (a student's bundle has no grader).
    """
    from importlib.metadata import entry_points

    found = list(entry_points(group=IN_PROCESS_JUDGE))
    if not found:
        raise RuntimeError("Hidden tests run only when the grader grades this notebook, or in the source notebook "
                           "of a checkout whose kit is installed (pip install -e . ; make test does it).")
    return found[0].load()


def handle(fn: Callable[..., Any], request: dict[str, Any]) -> dict[str, Any]:
    """Serve one ``call`` request: run ``fn`` and describe what happened as plain data.

    The request: ``args``, ``kwargs``; ``adapter`` (``"list"``: return ``list(fn(...))``; ``"in_place"``:
    for a function that works in place, return ``{"returned": fn(...), "arguments": [each positional
    tensor argument after the call, else None]}`` and report no argument as modified);
    ``backward`` (``{"wrt": [i, ...], "grad_output": tensor or None}``); ``globals`` (``{name: source}``:
    functions defined by ``source`` replace those globals of ``fn`` during the call); ``watch`` (the
    library prefixes and dispatcher ops to record while ``fn`` runs, :class:`_Recorder`); ``graded`` (the
    notebook's other graded functions, whose own calls are not recorded).

    Returns:
        ``{"ok": True, "output", "grads", "modified", "modules"}`` or ``{"ok": False, "error_type", "message",
        "traceback"}``. ``modified`` lists the positional tensor arguments that ``fn`` changed in place;
        ``modules`` describes every ``nn.Module`` argument after the call (:func:`module_report`);
        ``record`` is :meth:`_Recorder.report` (what of ``watch`` ran, and whether the hook stayed).
    """
    args, kwargs = list(request.get("args", ())), dict(request.get("kwargs", {}))
    backward = request.get("backward")
    if backward:
        for i in backward["wrt"]:
            args[i] = args[i].detach().clone().requires_grad_(True)
    originals = {i: a.detach().clone() for i, a in enumerate(args) if isinstance(a, torch.Tensor)}
    grads = None
    recorder = _Recorder(request.get("watch") or (), request.get("graded") or (), getattr(fn, "__globals__", None))
    try:
        with _swapped_globals(fn, request.get("globals") or {}), recorder:
            output = fn(*args, **kwargs)
            if request.get("adapter") == "list":
                output = list(output)
            elif request.get("adapter") == "in_place":
                output = {"returned": output,
                          "arguments": [a if isinstance(a, torch.Tensor) else None for a in args]}
            if backward:
                target = output[0] if isinstance(output, (tuple, list)) else output
                if not isinstance(target, torch.Tensor) or not target.requires_grad:
                    raise TypeError(f"the output ({type(target).__name__}) has no gradient to propagate; "
                                    "compute it from the inputs with differentiable torch operations")
                grad_output = backward.get("grad_output")
                grad_output = torch.ones_like(target) if grad_output is None else grad_output.to(target)
                inputs = [args[i] for i in backward["wrt"]]
                grads = list(torch.autograd.grad(target, inputs, grad_outputs=grad_output, allow_unused=True))
    except Exception as exc:  # noqa: BLE001 - every failure of the student's code is reported as data
        return {"ok": False, "error_type": type(exc).__name__, "message": str(exc)[:MAX_MESSAGE],
                "traceback": "".join(traceback.format_exception(exc, limit=-8))[-4 * MAX_MESSAGE:],
                "modules": _module_reports(args, kwargs), "record": recorder.report()}
    modified = [i for i, before in originals.items() if request.get("adapter") != "in_place"
                and (args[i].shape != before.shape or not torch.equal(args[i].detach(), before))]
    return {"ok": True, "output": output, "grads": grads, "modified": modified,
            "modules": _module_reports(args, kwargs), "record": recorder.report()}


class _Recorder:
    """Which watched library functions and dispatcher ops ran during one judged call (``sys.setprofile``).

    ``watch`` holds dotted prefixes (``torchvision.ops.boxes.nms``, ``captum``) and ``ns::op`` names,
    sent by the judge. A Python function is named ``module.qualname`` (its code's globals' ``__name__``),
    a builtin ``module.name``, and a call through ``torch.ops`` by its op (``torchvision::nms``). Calls
    made inside the grader's own stand-ins, or inside the notebook's other graded functions (``graded``:
    judged on their own), are not this function's and are not recorded. Each code object
    is named once per call, so the cost is one dictionary lookup per Python call. :meth:`report` says
    whether the hook was still in place at the end (``intact``); the judge decides what it means.
    """

    _OPS = ("OpOverloadPacket.__call__", "OpOverload.__call__")

    def __init__(self, watch: Any, graded: Any = (), namespace: Any = None) -> None:
        self.watch = tuple(str(w) for w in watch)
        self.graded = frozenset(str(g) for g in graded)
        self.namespace = namespace
        self.ran: list[str] = []
        self.codes: dict[Any, bool] = {}
        self.intact = True
        self.previous: Any = None

    def __enter__(self) -> _Recorder:
        if self.watch:
            self.previous = sys.getprofile()
            sys.setprofile(self._event)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.watch:
            self.intact = sys.getprofile() == self._event
            sys.setprofile(self.previous)

    def report(self) -> dict[str, Any]:
        return {"ran": self.ran[:64], "intact": self.intact}

    def _watched(self, name: str) -> bool:
        return any(name == w or name.startswith(w + ".") for w in self.watch)

    def _event(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            watched = self.codes.get(code)
            if watched is None:
                qualname = getattr(code, "co_qualname", code.co_name)  # Python < 3.11: the plain name
                name = f"{frame.f_globals.get('__name__', '?')}.{qualname}"
                watched = self.codes[code] = qualname in self._OPS or self._watched(name)
            if watched:
                if getattr(code, "co_qualname", "") in self._OPS:
                    op = getattr(frame.f_locals.get("self"), "_qualified_op_name", None) or getattr(
                        frame.f_locals.get("self"), "_name", None)
                    if isinstance(op, str) and op in self.watch:
                        self._add(op, frame)
                else:
                    self._add(f"{frame.f_globals.get('__name__', '?')}.{getattr(code, 'co_qualname', code.co_name)}",
                              frame)
        elif event == "c_call":
            module = getattr(arg, "__module__", None)
            if isinstance(module, str) and module.startswith("torch"):
                name = f"{module}.{getattr(arg, '__name__', '?')}"
                if self._watched(name):
                    self._add(name, frame)

    def _add(self, name: str, frame: Any) -> None:
        if name in self.ran:
            return
        while frame is not None:  # inside a grader stand-in or another graded function: not this one's call
            code = frame.f_code
            if code.co_filename.startswith("<grader stand-in") or (
                    frame.f_globals is self.namespace
                    and getattr(code, "co_qualname", code.co_name).split(".")[0] in self.graded):
                return
            frame = frame.f_back
        self.ran.append(name)


def _module_reports(args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """:func:`module_report` of every model argument: ``{"arg0": ..., "<kwarg name>": ...}``."""
    reports = {f"arg{i}": module_report(a) for i, a in enumerate(args) if isinstance(a, nn.Module)}
    reports.update({k: module_report(v) for k, v in kwargs.items() if isinstance(v, nn.Module)})
    return reports


def encode_reply(reply: dict[str, Any]) -> bytes:
    """:func:`cs_lib.grading.wire.encode` the reply; an output that cannot be sent becomes an error reply."""
    try:
        return wire.encode(reply)
    except wire.WireError as exc:
        return wire.encode({"ok": False, "error_type": "UnsendableResult", "message": str(exc)[:MAX_MESSAGE],
                            "traceback": ""})


def module_report(model: nn.Module) -> dict[str, Any]:
    """What a hidden test needs to know of a model after a call, as plain data.

    Returns:
        ``{"parameters": sha256 of every parameter and buffer's bytes, "requires_grad": {name: bool},
        "training": {name: bool}, "inplace": {name: bool}, "hooks": {name: count}, "global_hooks": count,
        "forward_calls": int or None}``; module names as in ``named_modules`` (``""`` is the model).
    """
    digest = hashlib.sha256()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        t = tensor.detach().to("cpu").contiguous()
        digest.update(name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    hooks, training, inplace = {}, {}, {}
    for name, module in model.named_modules():
        count = sum(len(getattr(module, d, {}) or {}) for d in
                    ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"))
        if count:
            hooks[name] = count
        training[name] = bool(module.training)
        if hasattr(module, "inplace"):
            inplace[name] = bool(module.inplace)
    from torch.nn.modules import module as module_globals

    global_hooks = sum(len(getattr(module_globals, d, {}) or {}) for d in
                       ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                        "_global_backward_pre_hooks"))
    counter = getattr(model, "forward_calls", None)
    return {"parameters": digest.hexdigest(),
            "requires_grad": {n: bool(p.requires_grad) for n, p in model.named_parameters()},
            "training": training, "inplace": inplace, "hooks": hooks, "global_hooks": global_hooks,
            "forward_calls": counter if type(counter) is int else None}


@contextlib.contextmanager
def _swapped_globals(fn: Callable[..., Any], sources: dict[str, str]) -> Iterator[None]:
    """Replace globals of ``fn`` by the functions that ``sources`` define, for the duration of a call.

    The sources run in order (the last may seed torch's generator right before the call); the swap itself is
    :func:`cs_lib.checks.stand_in`'s, the one the visible checks use.
    """
    if not sources:
        yield
        return
    if getattr(fn, "__globals__", None) is None:
        raise TypeError("this graded function must be a plain Python function")
    compiled = {}
    for name, source in sources.items():
        scope: dict[str, Any] = {"torch": torch, "nn": nn, "F": torch.nn.functional}
        exec(compile(source, f"<grader stand-in {name}>", "exec"), scope)  # noqa: S102 - the grader's code
        compiled[name] = scope[name]
    with stand_in(fn, **compiled):
        yield
_LENGTH = struct.Struct("<Q")


def send_frame(conn: socket.socket, payload: bytes) -> None:
    """Send one length-prefixed frame."""
    conn.sendall(_LENGTH.pack(len(payload)) + payload)


def recv_frame(conn: socket.socket, max_bytes: int = wire.DEFAULT_MAX_BYTES) -> bytes:
    """Receive one length-prefixed frame of at most ``max_bytes`` bytes.

    Raises:
        ConnectionError: the peer closed the connection.
        wire.WireError: the announced frame is larger than ``max_bytes``.
    """
    (size,) = _LENGTH.unpack(_recv_exactly(conn, _LENGTH.size))
    if size > max_bytes:
        raise wire.WireError(f"the message announces {size} bytes; the limit is {max_bytes}")
    return _recv_exactly(conn, size)


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = conn.recv(min(size - got, 1 << 20))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
