"""Self-checks that notebooks run on student functions.

Every check raises ``AssertionError`` with a message a student can act on: it names
the function, says what was expected and what came back, and, for numbers, where the
worst element is. Visible tests in the notebooks call these; so do the hidden tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray | float | int


def rel_error(x: ArrayLike, y: ArrayLike) -> float:
    """CS231n's relative error: ``max(|x - y| / max(1e-8, |x| + |y|))``.

    Args:
        x, y: tensors, arrays or numbers of the same shape (any dtype, any device).

    Returns:
        The largest element-wise relative error, as a Python float.
    """
    a = _to_numpy(x).astype(np.float64)
    b = _to_numpy(y).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def check_tensor(
    name: str,
    value: Any,
    shape: Sequence[int | None] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    hint: str = "",
) -> None:
    """Assert that ``value`` is a tensor with the expected shape, dtype and device.

    Args:
        name: the student function being checked, e.g. ``"compute_saliency_maps"``.
        value: what the function returned.
        shape: the expected shape; ``None`` entries match any size.
        dtype: the expected dtype, or ``None`` to skip.
        device: the expected device (only its type, ``cpu``/``cuda``, is compared).
        hint: the first thing to check, appended to the message.
    """
    suffix = f" {hint}" if hint else ""
    if not isinstance(value, torch.Tensor):
        got = "None (did you forget to return?)" if value is None else type(value).__name__
        raise AssertionError(f"{name} returned {got}; expected a torch.Tensor.{suffix}")
    if shape is not None:
        want = tuple(shape)
        ok = value.dim() == len(want) and all(w is None or w == g for w, g in zip(want, value.shape))
        if not ok:
            pretty = "(" + ", ".join("*" if w is None else str(w) for w in want) + ")"
            raise AssertionError(
                f"{name} returned shape {tuple(value.shape)}; expected {pretty}.{suffix}"
            )
    if dtype is not None and value.dtype != dtype:
        raise AssertionError(f"{name} returned dtype {value.dtype}; expected {dtype}.{suffix}")
    if device is not None and value.device.type != torch.device(device).type:
        raise AssertionError(
            f"{name} returned a tensor on {value.device}; expected it on {torch.device(device)}. "
            f"Create new tensors with device=X.device.{suffix}"
        )


def check_close(
    name: str,
    got: Any,
    expected: ArrayLike,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    hint: str = "",
) -> None:
    """Assert ``|got - expected| <= atol + rtol * |expected|`` element-wise.

    Shape, dtype family and device are checked first, each with its own message; a
    numeric mismatch reports the worst element's index, both values and the error.

    Args:
        name: the student function being checked.
        got: the student's result (tensor, array or number).
        expected: the reference result.
        rtol, atol: tolerances, as in ``torch.allclose``.
        hint: the first thing to check, appended to the message.
    """
    suffix = f" {hint}" if hint else ""
    if got is None:
        raise AssertionError(f"{name} returned None; did you forget to return?{suffix}")
    if isinstance(expected, torch.Tensor):
        check_tensor(name, got, shape=tuple(expected.shape), device=expected.device, hint=hint)
        if got.is_floating_point() != expected.is_floating_point():
            raise AssertionError(
                f"{name} returned dtype {got.dtype}; expected a "
                f"{'floating-point' if expected.is_floating_point() else 'integer'} "
                f"tensor like {expected.dtype}.{suffix}"
            )
    a = _to_numpy(got).astype(np.float64)
    b = _to_numpy(expected).astype(np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"{name} returned shape {a.shape}; expected {b.shape}.{suffix}")
    if a.size == 0:
        return
    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(finite_a, finite_b):
        idx = np.unravel_index(np.argmax(finite_a != finite_b), a.shape)
        raise AssertionError(
            f"{name}: element {tuple(int(i) for i in idx)} is {a[idx]} but expected {b[idx]} "
            f"(NaN or inf where none was expected).{suffix}"
        )
    with np.errstate(invalid="ignore"):
        err = np.where(finite_b, np.abs(a - b), 0.0)
    tol = atol + rtol * np.abs(np.where(finite_b, b, 0.0))
    excess = err - tol
    if np.any(excess > 0):
        idx = np.unravel_index(np.argmax(excess), a.shape)
        where = tuple(int(i) for i in idx)
        bad = int(np.sum(excess > 0))
        raise AssertionError(
            f"{name}: {bad} of {a.size} elements differ from the reference. Worst at index "
            f"{where}: got {a[idx]:.6g}, expected {b[idx]:.6g} (abs error {err[idx]:.3g}, "
            f"rel_error {rel_error(a, b):.3g}; tolerance rtol={rtol:g}, atol={atol:g}).{suffix}"
        )


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        return t.numpy()
    return np.asarray(x)
