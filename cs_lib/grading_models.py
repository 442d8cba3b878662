"""Small models and probes the grader sends to the kernel; nothing secret.

The grading judge (``autograder.judging``) runs in its own process and sends the inputs of each
hidden test to the student's kernel with ``torch.save``. Models whose classes are not torch's or
torchvision's must therefore be importable in the kernel, which sees ``cs_lib`` but never
``autograder``: they live here. None of this reveals an answer.

- :class:`CountingModel` counts forward passes (``forward_calls``, an int that
  :func:`cs_lib.judge_client.module_report` reports back);
- :class:`FailingHead` raises in the middle of a forward pass (hooks and flags must be restored
  after an error);
- :func:`python_loops` lists the Python loops of a function, and :data:`LOOP_PROBE` is the source of a
  grader stand-in that runs it on the graded function inside the kernel (see :func:`raise_if_python_loops`).
"""

from __future__ import annotations

import ast
import dis
import inspect
import sys
import textwrap
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

#: Start of the message :func:`raise_if_python_loops` raises with; the grader looks for it.
LOOP_MARKER = "grader loop probe:"

#: A stand-in source (``RemoteFunction.with_stand_ins({LOOP_PROBE_NAME: LOOP_PROBE})``): before the call,
#: it raises ``RuntimeError(LOOP_MARKER + loops)`` if the graded function has Python loops.
LOOP_PROBE_NAME = "_grader_loop_probe"
LOOP_PROBE = (f"from cs_lib.grading_models import raise_if_python_loops\n"
              f"{LOOP_PROBE_NAME} = raise_if_python_loops()\n")


class CountingModel(nn.Module):
    """``model`` that counts its forward passes in the int attribute ``forward_calls``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forward_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``model(x)``; x: float (N, C, H, W) -> scores (N, K)."""
        self.forward_calls += 1
        return self.model(x)


class FailingHead(nn.Module):
    """A layer whose forward pass always raises RuntimeError (put after a model's ReLUs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raises RuntimeError whatever ``x`` is."""
        raise RuntimeError("the grader's model fails here on purpose, after its ReLUs ran")


def python_loops(fn: Callable[..., Any]) -> list[str]:
    """The Python loops (``for``, ``while``, comprehensions) in ``fn``'s own code.

    Reads the function's source (``inspect.getsource`` works for functions defined in notebook
    cells) and walks its AST; when there is no source, as for a function compiled from a string,
    it reads the bytecode instead (``FOR_ITER`` or a backward jump).

    Returns:
        One phrase per loop, e.g. ``["a `for` loop (line 3)"]``; empty without loops.
    """
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        code = getattr(fn, "__code__", None)
        return _bytecode_loops(code) if code is not None else []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.AsyncFor)):
            found.append(f"a `for` loop (line {node.lineno})")
        elif isinstance(node, ast.While):
            found.append(f"a `while` loop (line {node.lineno})")
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            found.append(f"a comprehension (line {node.lineno})")
    return found


def _bytecode_loops(code: types.CodeType) -> list[str]:
    found = []
    for instr in dis.get_instructions(code):
        is_jump = instr.opcode in dis.hasjrel or instr.opcode in dis.hasjabs
        if instr.opname == "FOR_ITER" or (is_jump and isinstance(instr.argval, int) and instr.argval < instr.offset):
            found.append(f"a loop in {code.co_name}")
            break
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found.extend(_bytecode_loops(const))
    return found


def raise_if_python_loops() -> None:
    """Raise ``RuntimeError(LOOP_MARKER ...)`` if the function being called for the grader has loops.

    Runs inside the kernel as a grader stand-in (:data:`LOOP_PROBE`), while
    ``cs_lib.judge_client`` swaps the stand-ins into the graded function's globals: the graded
    function is the ``fn`` of that caller. Like every kernel-side report, this is forgeable.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name in ("_swapped_globals", "handle") and callable(frame.f_locals.get("fn")):
            loops = python_loops(frame.f_locals["fn"])
            if loops:
                raise RuntimeError(f"{LOOP_MARKER} {', '.join(loops)}")
            return
        frame = frame.f_back
