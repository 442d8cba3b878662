"""Self-checks that notebooks run on student functions.

Every check raises ``AssertionError`` with a message a student can act on: it names
the function, says what was expected and what came back, and, for numbers, where the
worst element is. Visible tests in the notebooks call these; so do the hidden tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
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
            why = _shape_diagnosis(tuple(value.shape), want)
            raise AssertionError(
                f"{name} returned shape {tuple(value.shape)}; expected {pretty}.{why}{suffix}"
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
        why = _shape_diagnosis(a.shape, b.shape)
        raise AssertionError(f"{name} returned shape {a.shape}; expected {b.shape}.{why}{suffix}")
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
        first = np.unravel_index(int(np.flatnonzero(excess > 0)[0]), a.shape)
        bad = int(np.sum(excess > 0))
        first_text = "" if first == idx else (
            f" First differing index {tuple(int(i) for i in first)}: got {a[first]:.6g}, expected {b[first]:.6g}.")
        raise AssertionError(
            f"{name}: {bad} of {a.size} elements differ from the reference (shape {a.shape}). Worst at index "
            f"{where}: got {a[idx]:.6g}, expected {b[idx]:.6g} (abs error {err[idx]:.3g}, "
            f"rel_error {rel_error(a, b):.3g}; tolerance rtol={rtol:g}, atol={atol:g}).{first_text}"
            f"{_value_diagnosis(a, b, rtol, atol)}{suffix}"
        )


def check_equal(name: str, got: Any, expected: ArrayLike, hint: str = "") -> None:
    """Assert that ``got`` equals ``expected`` exactly (indices, labels, counts, masks).

    A mismatch names the shapes, the first differing position with both values and, for 1-D results
    such as the indices that ``nms`` keeps, what is missing and what is extra.

    Args:
        name: the student function being checked.
        got: the student's result (tensor, array, list or number).
        expected: the reference result.
        hint: the first thing to check, appended to the message.
    """
    suffix = f" {hint}" if hint else ""
    if got is None:
        raise AssertionError(f"{name} returned None; did you forget to return?{suffix}")
    if isinstance(expected, torch.Tensor):
        check_tensor(name, got, device=expected.device, hint=hint)
        if got.dtype != expected.dtype:
            raise AssertionError(f"{name} returned dtype {got.dtype}; expected {expected.dtype}.{suffix}")
    a, b = _to_numpy(got), _to_numpy(expected)
    if a.shape == b.shape and np.array_equal(a, b):
        return
    if a.ndim == 1 and b.ndim == 1:
        n = min(len(a), len(b))
        diff = np.flatnonzero(a[:n] != b[:n])
        first = int(diff[0]) if len(diff) else n
        at = (f"position {first}: got {a[first]}, expected {b[first]}" if first < n
              else f"position {first}: " + ("got nothing more" if len(a) == n else f"got {a[first]} beyond the end"))
        missing = [x.item() for x in b if x not in a][:5]
        extra = [x.item() for x in a if x not in b][:5]
        detail = "".join([f" Missing: {missing}." if missing else "", f" Extra: {extra}." if extra else ""])
        if not missing and not extra and len(a) == len(b):
            detail = " Same elements in another order: check the order the result must have (e.g. by decreasing score)."
        raise AssertionError(f"{name} returned {len(a)} elements; expected {len(b)}. First difference at {at}."
                             f"{detail}{suffix}")
    if a.shape != b.shape:
        raise AssertionError(f"{name} returned shape {a.shape}; expected {b.shape}.{_shape_diagnosis(a.shape, b.shape)}"
                             f"{suffix}")
    diff = np.argwhere(a != b)
    idx = tuple(int(i) for i in diff[0])
    raise AssertionError(f"{name}: {len(diff)} of {a.size} elements differ. First at index {idx}: got {a[idx]}, "
                         f"expected {b[idx]}.{suffix}")


@contextlib.contextmanager
def stand_in(fn: Callable[..., Any], **building_blocks: Callable[..., Any]) -> Iterator[None]:
    """Run a visible check of ``fn`` with correct stand-ins for the building blocks it calls.

    A check of a function built on others (``nms`` on ``box_iou``) should measure that function alone:
    inside ``with stand_in(nms, box_iou=torchvision.ops.box_iou):`` the global ``box_iou`` that ``nms``
    sees is the stand-in (a library equivalent is fine inside a check), and the student's own is back
    afterwards, even when the check fails. The grader's hidden tests do the same (``autograder``).

    Raises:
        TypeError: ``fn`` is not a plain Python function (it has no globals to swap).
    """
    namespace = getattr(fn, "__globals__", None)
    if namespace is None:
        raise TypeError(f"stand_in: {getattr(fn, '__name__', fn)!r} is not a plain Python function; "
                        "pass the function the check calls")
    missing = object()
    saved = {name: namespace.get(name, missing) for name in building_blocks}
    try:
        namespace.update(building_blocks)
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def _shape_diagnosis(got: tuple, want: Sequence[int | None]) -> str:
    """The convention a wrong shape most likely missed, as a sentence (or '')."""
    want = tuple(want)
    if None in want:
        if len(got) != len(want):
            return f" It has {len(got)} dimensions; expected {len(want)}."
        return ""
    if len(got) == len(want) and sorted(got) == sorted(want):
        return " It holds the expected sizes in another order: are two dimensions swapped (transpose/permute)?"
    if tuple(d for d in got if d != 1) == tuple(d for d in want if d != 1):
        return " It differs only in dimensions of size 1: keepdim=True/False, or a missing squeeze/unsqueeze?"
    if int(np.prod(got)) == int(np.prod(want)):
        return " It has the expected number of elements: a reshape or view in the wrong layout?"
    if len(got) == len(want) - 1 and got == want[1:]:
        return " The batch dimension is missing: did you compute one example instead of the batch?"
    if len(got) == len(want) + 1 and got[1:] == want:
        return " There is an extra leading dimension: did you forget to reduce over it?"
    return ""


def _value_diagnosis(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> str:
    """The convention that a numeric mismatch most likely missed, as a sentence (or '')."""

    def close(x: np.ndarray, y: np.ndarray) -> bool:
        return x.shape == y.shape and x.size > 0 and bool(np.all(np.abs(x - y) <= 10 * (atol + rtol * np.abs(y))))

    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))) or a.size < 2:
        return ""
    if a.ndim == 2 and a.shape[0] == a.shape[1] and close(a, b.T):
        return " It equals the reference transposed: rows and columns swapped?"
    if close(a, -b):
        return (" It equals the reference with the opposite sign: a sign convention (gradient ascent vs descent, "
                "a - b vs b - a)?")
    denominator = float(np.sum(b * b))
    if denominator > 0:
        k = float(np.sum(a * b)) / denominator
        if abs(k - 1) > 1e-3 and k != 0 and close(a, k * b):
            return (f" Every element is {k:.4g} times the reference: a missing or extra normalisation (a mean "
                    "instead of a sum, a factor 1/2, dividing by N, C or H*W)?")
    offset = float(np.mean(a - b))
    if abs(offset) > atol and close(a, b + offset):
        return (f" Every element is off by {offset:+.4g}: an off-by-one or a half-pixel convention (+1 in widths, "
                "0.5 pixel offsets)?")
    for dim in range(a.ndim):
        if a.shape[dim] < 3:
            continue
        for shift in (1, -1):
            head = [slice(None)] * a.ndim
            tail = [slice(None)] * a.ndim
            head[dim], tail[dim] = (slice(shift, None), slice(None, -shift)) if shift > 0 else (slice(None, shift),
                                                                                                 slice(-shift, None))
            if close(a[tuple(head)], b[tuple(tail)]):
                return (f" It matches the reference shifted by {shift:+d} along dimension {dim}: an off-by-one "
                        "index, or a pixel-centre (half-pixel) alignment?")
        if close(a, np.flip(b, axis=dim)):
            return f" It equals the reference reversed along dimension {dim}: an index running the wrong way?"
    return ""


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        return t.numpy()
    return np.asarray(x)
