"""Everything hidden tests share: calling the student, comparing, diagnosing, the messages, model checks.

All of it runs in the grading process. The student's function arrives as a *student* callable
(:class:`autograder.judging.judge.RemoteFunction` while grading, a local stand-in for a TA in
Jupyter): calling it runs the function in the kernel and returns plain data, or raises what the
function raised (builtin exception types only; anything else is :class:`StudentError`).

:func:`run_spec` is the generic hidden test of a :class:`~autograder.judging.spec.GradedFunction`:
stored cases, fresh inputs, the reference computed here, a comparison, a diagnosis by wrong answers,
then the spec's extra checks. A failure raises :class:`Failure` with the message the student sees.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch

#: Exception types a student's function may raise that the judge re-raises as themselves.
BUILTIN_ERRORS: dict[str, type[BaseException]] = {
    e.__name__: e for e in (NotImplementedError, RuntimeError, ValueError, TypeError, IndexError, KeyError,
                            AssertionError, ZeroDivisionError, AttributeError, NameError, UnboundLocalError,
                            OverflowError, StopIteration)
}


class Failure(AssertionError):
    """A hidden test failed; the message is what the student sees.

    ``hint`` is the hint of the spec's wrong answer that the output matched ("" when none did), kept as
    data for ``tests.csv``.
    """

    def __init__(self, message: str = "", *, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class StudentError(RuntimeError):
    """The student's function raised an exception of a type the judge does not re-create."""


def fresh_generator() -> torch.Generator:
    """A CPU generator seeded from the OS at grading time, so that no answer can be hard-coded."""
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)


def clone_args(value: Any) -> Any:
    """A deep copy of tensors in nested lists/tuples/dicts (other values are shared)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return type(value)(clone_args(v) for v in value)
    if isinstance(value, dict):
        return {k: clone_args(v) for k, v in value.items()}
    return value


def call_student(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a student function on copies of the arguments, checking that it left them unchanged.

    Raises:
        Failure: the function is still a stub, raised, or modified an argument in place.
    """
    cloned = [clone_args(a) for a in args]
    try:
        out = fn(*cloned, **kwargs)
    except NotImplementedError:
        raise Failure(f"{name} is not implemented yet (it raised NotImplementedError).") from None
    except Failure:
        raise
    except Exception as exc:  # noqa: BLE001 - the student's error becomes the message
        raise Failure(f"{name} raised {type(exc).__name__}: {exc}") from None
    for i, (orig, arg) in enumerate(zip(args, cloned)):
        if isinstance(orig, torch.Tensor) and not torch.equal(orig, arg):
            raise Failure(f"{name} modified its argument #{i + 1} in place; work on a copy.")
    return out


# ------------------------------------------------------------------------------------------ comparing


def structure_problem(got: Any, expected: Any, where: str = "the result") -> str | None:
    """Why ``got`` does not have ``expected``'s structure (types, lengths, keys, shapes, dtypes), or None."""
    if isinstance(expected, torch.Tensor):
        if type(got) is not torch.Tensor:
            return f"{where} is {type(got).__name__}; expected a tensor"
        if tuple(got.shape) != tuple(expected.shape):
            return f"{where} has shape {tuple(got.shape)}; expected {tuple(expected.shape)}"
        if got.dtype != expected.dtype:
            return (f"{where} has dtype {got.dtype}; expected {expected.dtype}. Keep the input's dtype: don't "
                    "convert with .float(), .double() or .long() unless the docstring says so")
        return None
    if isinstance(expected, bool):
        return None if type(got) is bool else f"{where} is {type(got).__name__}; expected a bool"
    if isinstance(expected, (int, float)):
        if type(got) not in (int, float) and not (type(got) is torch.Tensor and got.numel() == 1):
            return f"{where} is {type(got).__name__}; expected a Python number (use .item())"
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"{where} is {type(got).__name__}; expected a {type(expected).__name__} of {len(expected)}"
        if len(got) != len(expected):
            return f"{where} has {len(got)} elements; expected {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = structure_problem(g, e, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return f"{where} is {type(got).__name__}; expected a dict with keys {sorted(expected)}"
        if set(got) != set(expected):
            return f"{where} has keys {sorted(got, key=str)}; expected {sorted(expected, key=str)}"
        for k in expected:
            problem = structure_problem(got[k], expected[k], f"{where}[{k!r}]")
            if problem:
                return problem
        return None
    return None if got == expected else f"{where} is {got!r}; expected {expected!r}"


def _as_float64(x: Any) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.tensor(x)
    return t.detach().to("cpu", torch.complex128 if t.is_complex() else torch.float64)


def mismatch(got: Any, expected: Any, rtol: float, atol: float, where: str = "the result") -> str | None:
    """Where ``got`` differs from ``expected`` beyond ``atol + rtol * |expected|`` (NaNs must match), or None."""
    problem = structure_problem(got, expected, where)
    if problem:
        return problem
    if isinstance(expected, (tuple, list)):
        for i, (g, e) in enumerate(zip(got, expected)):
            found = mismatch(g, e, rtol, atol, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(expected, Mapping):
        for k in expected:
            found = mismatch(got[k], expected[k], rtol, atol, f"{where}[{k!r}]")
            if found:
                return found
        return None
    if isinstance(expected, (torch.Tensor, int, float)) and not isinstance(expected, bool):
        g, e = _as_float64(got), _as_float64(expected)
        if g.numel() == 0:
            return None
        nan_g, nan_e = torch.isnan(g), torch.isnan(e)
        if not torch.equal(nan_g, nan_e):
            index = tuple(int(i) for i in torch.nonzero(nan_g != nan_e)[0]) if g.dim() else ()
            return f"{where} has NaN where the reference does not (or the reverse), first at index {index}"
        same_inf = (g == e) | (nan_g & nan_e)
        err = torch.where(same_inf, torch.zeros_like(g, dtype=torch.float64), (g - e).abs().to(torch.float64))
        allowed = atol + rtol * e.abs().to(torch.float64).nan_to_num(0.0)
        excess = err - allowed
        if bool((excess > 0).any()):
            flat = int(torch.argmax(excess.reshape(-1)))
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), g.shape)) if g.dim() else ()
            at = f" at index {index}" if index else ""
            return (f"{where}{at} is {g.reshape(-1)[flat].item():.6g}; expected {e.reshape(-1)[flat].item():.6g} "
                    f"(error {err.reshape(-1)[flat].item():.3g}, allowed {allowed.reshape(-1)[flat].item():.3g})")
        return None
    return None if got == expected else f"{where} is {got!r}; expected {expected!r}"


def compare(name: str, got: Any, expected: Any, rtol: float, atol: float, context: str = "",
            wrong: Mapping[str, Callable[[], Any]] | None = None, normalize: Callable[[Any], Any] | None = None
            ) -> None:
    """Raise :class:`Failure` unless ``got`` matches ``expected``; name the wrong answer it matches.

    Args:
        name: the graded function.
        got, expected: the student's and the reference's outputs (plain data).
        context: what the input was (``"on 6 points with a duplicate"``).
        wrong: ``{hint: thunk}``; each thunk computes one wrong answer's output on the same input.
        normalize: applied to both outputs (and each wrong answer's) before comparing.
    """
    if normalize is not None:
        try:
            got = normalize(got)
        except Exception as exc:  # noqa: BLE001 - the student's output is malformed
            raise Failure(f"{name} {context}: the result could not be read ({type(exc).__name__}: {exc})") from None
        expected = normalize(expected)
    found = mismatch(got, expected, rtol, atol)
    if found is None:
        return
    message = f"{name} {context}: {found}." if context else f"{name}: {found}."
    for hint, thunk in (wrong or {}).items():
        try:
            candidate = thunk()
            if normalize is not None:
                candidate = normalize(candidate)
        except Exception:  # noqa: BLE001 - a wrong answer that cannot run on this input matches nothing
            continue
        if mismatch(got, candidate, rtol, atol) is None:
            raise Failure(f"{message} This looks like {hint}.", hint=hint)
    raise Failure(message)


# --------------------------------------------------------------------------------------- generic test


def run_spec(spec: Any, student: Callable[..., Any], ref: Callable[..., Any],
             wrong: Mapping[str, Callable[..., Any]], stored: list[dict[str, Any]], g: torch.Generator) -> None:
    """The generic hidden test of ``spec`` (see :class:`~autograder.judging.spec.GradedFunction`).

    Args:
        student: the student's function (called in the kernel while grading).
        ref: the reference solution.
        wrong: ``{hint: wrong-answer function}`` for the diagnosis.
        stored: the stored cases ``{"inputs": {"args", "kwargs", "label"}, "output"}``.
        g: the fresh generator.
    """
    if spec.test is not None:
        spec.test(student, ref, spec, g)
    else:
        for case in stored:
            inputs = case["inputs"]
            _check_call(spec, student, ref, wrong, inputs.get("args", ()), inputs.get("kwargs", {}),
                        inputs.get("label", ""), case["output"])
        for call in spec.fresh(g) if spec.fresh else ():
            _check_call(spec, student, ref, wrong, call.args, call.kwargs, call.describe(), None)
    for check in spec.checks:
        check(student, ref, g)


def adapted(spec: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with the spec's adapter applied (``"list"``: ``list(fn(...))``), for grader-side calls."""
    if spec.adapter == "list":
        return lambda *a, **k: list(fn(*a, **k))
    return fn


def _check_call(spec: Any, student: Callable[..., Any], ref: Callable[..., Any],
                wrong: Mapping[str, Callable[..., Any]], args: tuple, kwargs: dict, label: str,
                expected: Any) -> None:
    context = f"on {label}" if label else ""
    got = call_student(spec.name, student, *args, **kwargs)
    if expected is None:
        expected = adapted(spec, ref)(*clone_args(args), **clone_args(kwargs))
    thunks = {hint: (lambda f=f: adapted(spec, f)(*clone_args(args), **clone_args(kwargs)))
              for hint, f in wrong.items()}
    compare(spec.name, got, expected, spec.rtol, spec.atol, context, thunks, spec.normalize)


# ------------------------------------------------------------------------------------- model checks


def check_model_report(name: str, expected: Mapping[str, Any], got: Mapping[str, Any] | None,
                       after_error: bool = False) -> None:
    """Compare the kernel's report on a model after a call with the pristine model's report.

    Both come from :func:`cs_lib.grading.judge_client.module_report`. This is the forgeable part of a hidden
    test: the report is made inside the kernel (``autograder/README.md``).
    """
    when = " after it raised" if after_error else ""
    if got is None:
        raise Failure(f"{name}: the grader got no report on the model{when}.")
    if got.get("hooks"):
        where = ", ".join(f"{k or 'the model'} ({v})" for k, v in sorted(got["hooks"].items()))
        raise Failure(f"{name} left hooks on the model{when}: {where}. Remove every hook you register "
                      "(handle.remove()), also when an exception is raised (try/finally).")
    if got.get("global_hooks", 0) != expected.get("global_hooks", 0):
        raise Failure(f"{name} left a global module hook registered{when}; remove it (try/finally).")
    if got.get("parameters") != expected.get("parameters"):
        raise Failure(f"{name} changed the model's weights{when}; the model must be left as it was.")
    if got.get("requires_grad") != expected.get("requires_grad"):
        raise Failure(f"{name} changed requires_grad of the model's parameters{when}; restore the flags you change.")
    if got.get("inplace") != expected.get("inplace"):
        changed = [k for k in expected.get("inplace", {}) if got.get("inplace", {}).get(k) != expected["inplace"][k]]
        raise Failure(f"{name} changed the ReLU inplace flags{when} ({', '.join(changed)}); restore them.")
    if got.get("training") != expected.get("training"):
        raise Failure(f"{name} changed the model's train/eval mode{when}; leave it in the mode you found it.")
