"""Building blocks shared by the hidden tests of every assignment."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from cs_lib.checks import check_close, check_tensor


def fresh_generator() -> torch.Generator:
    """A CPU generator seeded from the OS at grading time, so that no answer can be hard-coded."""
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)


def call_student(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a student function on cloned tensor arguments and check it left them unchanged.

    Raises:
        AssertionError: when ``fn`` is still a stub or modified one of its inputs in place.
    """
    cloned = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    try:
        out = fn(*cloned, **kwargs)
    except NotImplementedError:
        raise AssertionError(f"{name} is not implemented yet (it raised NotImplementedError).") from None
    for i, (orig, arg) in enumerate(zip(args, cloned)):
        if isinstance(orig, torch.Tensor) and not torch.equal(orig, arg):
            raise AssertionError(f"{name} modified its argument #{i + 1} in place; work on a copy.")
    return out


def check_cases(name: str, fn: Callable[..., Any], cases: list[dict[str, Any]], rtol: float, atol: float,
                hint: str = "") -> None:
    """Run ``fn`` on every stored reference case and compare with the stored output."""
    for case in cases:
        inputs = case["inputs"]
        got = call_student(name, fn, *inputs.get("args", ()), **inputs.get("kwargs", {}))
        expected = case["output"]
        if isinstance(expected, torch.Tensor):
            check_tensor(name, got, shape=tuple(expected.shape), dtype=expected.dtype,
                         hint="Keep the input's dtype: don't convert with .float() or .double().")
        check_close(name, got, case["output"], rtol=rtol, atol=atol, hint=hint)
