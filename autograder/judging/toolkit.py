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

from cs_lib.grading.judge_client import module_report

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


def error_text(exc: BaseException) -> str:
    """``"ValueError: message"`` (at most 300 characters of message) for what a student's function raised."""
    return str(exc)[:300] if isinstance(exc, StudentError) else f"{type(exc).__name__}: {str(exc)[:300]}"


def call_student(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """:func:`student_call` of ``fn(*args, **kwargs)``."""
    return student_call(name, fn, args, kwargs)


def student_call(name: str, fn: Callable[..., Any], args: tuple = (), kwargs: Mapping[str, Any] | None = None, *,
                 context: str = "", hint: str | Callable[[], str] = "") -> Any:
    """Call a student function on copies of the arguments, checking that it left them unchanged.

    Args:
        context: what the input was, put in parentheses after the student's error (``"on a small CNN"``).
        hint: the first thing to check, appended to the message when the function raised (or a function that
            works it out then).

    Raises:
        Failure: the function is still a stub, raised, or modified an argument in place.
    """
    cloned = [clone_args(a) for a in args]
    try:
        out = fn(*cloned, **dict(kwargs or {}))
    except NotImplementedError:
        raise Failure(f"{name} is not implemented yet (it raised NotImplementedError).") from None
    except Failure:
        raise
    except Exception as exc:  # noqa: BLE001 - the student's error becomes the message
        where = f" ({context})" if context else ""
        advice = hint() if callable(hint) else hint
        raise Failure(f"{name} raised {error_text(exc)}{where}. {advice}".rstrip()) from None
    for i, (orig, arg) in enumerate(zip(args, cloned)):
        if isinstance(orig, torch.Tensor) and not torch.equal(orig, arg):
            raise Failure(f"{name} modified its argument #{i + 1} in place; work on a copy.")
    return out


def call_expecting_error(name: str, fn: Callable[..., Any], args: tuple, kwargs: Mapping[str, Any] | None = None
                         ) -> tuple[bool, Any]:
    """``(True, None)`` when ``fn(*args, **kwargs)`` raised, else ``(False, its output)``: for inputs on which a
    function must (or may) raise. A stub still fails as "not implemented"."""
    try:
        return False, fn(*args, **dict(kwargs or {}))
    except NotImplementedError:
        raise Failure(f"{name} is not implemented yet (it raised NotImplementedError).") from None
    except Failure:
        raise
    except Exception:  # noqa: BLE001 - raising is what this call is about
        return True, None


def check_detached(name: str, student: Callable[..., Any], args: tuple, kwargs: Mapping[str, Any] | None,
                   advice: str) -> None:
    """The student's result must not be attached to the autograd graph.

    The kernel sends values only, so ask it to backpropagate through the result with respect to nothing
    (``student.backward(args, kwargs, wrt=())``): a detached result has no gradient to propagate (a TypeError
    that says so); an attached one reaches autograd, which refuses empty inputs.

    Raises:
        Failure: the result is attached; ``advice`` says what to return instead.
    """
    try:
        student.backward(args, dict(kwargs or {}), wrt=())
    except TypeError as exc:
        if "no gradient to propagate" in str(exc):
            return
    except Exception:  # noqa: BLE001 - autograd on an attached result with nothing to differentiate
        pass
    raise Failure(f"{name} returned a tensor that requires grad (attached to the autograd graph); {advice}")


# ------------------------------------------------------------------------------------------ comparing


def structure_problem(got: Any, expected: Any, where: str = "the result") -> str | None:
    """Why ``got`` does not have ``expected``'s structure (types, lengths, keys, shapes, dtypes), or None."""
    if isinstance(expected, torch.Tensor):
        if type(got) is not torch.Tensor:
            return f"{where} is {type(got).__name__}; expected a torch.Tensor"
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
        for finite, what in ((torch.isfinite, "NaN or inf"), (lambda t: ~torch.isnan(t), "NaN")):
            if not torch.equal(finite(g), finite(e)):
                index = tuple(int(i) for i in torch.nonzero(finite(g) != finite(e))[0]) if g.dim() else ()
                return f"{where} has {what} where the reference does not (or the reverse), first at index {index}"
        nan_g, nan_e = torch.isnan(g), torch.isnan(e)
        same_inf = (g == e) | (nan_g & nan_e)
        err = torch.where(same_inf, torch.zeros_like(g, dtype=torch.float64), (g - e).abs().to(torch.float64))
        allowed = atol + rtol * e.abs().to(torch.float64).nan_to_num(0.0)
        excess = err - allowed
        if bool((excess > 0).any()):
            flat = int(torch.argmax(excess.reshape(-1)))
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), g.shape)) if g.dim() else ()
            values = (f"{g.reshape(-1)[flat].item():.6g}; expected {e.reshape(-1)[flat].item():.6g} (error "
                      f"{err.reshape(-1)[flat].item():.3g}, allowed {allowed.reshape(-1)[flat].item():.3g})")
            if g.numel() == 1:
                return f"{where} is {values}"
            return (f"{int((excess > 0).sum())} of {g.numel()} values of {where} differ from the reference; the worst, "
                    f"at index {index}, is {values}")
        return None
    return None if got == expected else f"{where} is {got!r}; expected {expected!r}"


def compare(name: str, got: Any, expected: Any, rtol: float, atol: float, context: str = "",
            wrong: Mapping[str, Callable[[], Any]] | None = None, normalize: Callable[[Any], Any] | None = None, *,
            advice: str = "", shape_advice: str | None = None, diagnosis: str = "This looks like {}.") -> None:
    """Raise :class:`Failure` unless ``got`` matches ``expected``; name the wrong answer it matches.

    Args:
        name: the graded function.
        got, expected: the student's and the reference's outputs (plain data).
        rtol, atol: ``|got - expected| <= atol + rtol * |expected|`` element-wise (see :func:`scaled_atol` for an
            atol relative to the largest expected value).
        context: what the input was (``"on 6 points with a duplicate"``).
        wrong: ``{hint: thunk}``; each thunk computes one wrong answer's output on the same input.
        normalize: applied to both outputs (and each wrong answer's) before comparing.
        advice: appended to a message that names no wrong answer (what to check first).
        shape_advice: appended instead of ``advice`` when the structure (type, shape, dtype) is wrong.
        diagnosis: the sentence that names the matched wrong answer's hint (``{}``).
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
            raise Failure(f"{message} {diagnosis.format(hint)}", hint=hint)
    if shape_advice is not None and structure_problem(got, expected) is not None:
        advice = shape_advice
    raise Failure(f"{message} {advice}".rstrip())


def scaled_atol(expected: Any, atol: float) -> float:
    """``atol`` times the largest finite ``|expected|`` (1e-12 when that is 0): an absolute tolerance for values
    whose scale varies (gradients, losses), so that entries near zero, which carry only absolute accuracy, do not
    fail a correct answer."""
    values = torch.as_tensor(expected).detach().to("cpu", torch.float64)
    finite = values[torch.isfinite(values)]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    return atol * scale if scale > 0 else 1e-12


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
    if spec.stand_ins:
        student = student.with_stand_ins(spec.stand_ins)
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
    wrong_outputs = thunks(wrong, lambda f: adapted(spec, f)(*clone_args(args), **clone_args(kwargs)))
    compare(spec.name, got, expected, spec.rtol, spec.atol, context, wrong_outputs, spec.normalize)


def thunks(functions: Mapping[str, Callable[..., Any]], call: Callable[[Callable[..., Any]], Any]
           ) -> dict[str, Callable[[], Any]]:
    """``{hint: thunk}`` for :func:`compare`: each thunk is ``call(function)``, one wrong answer run on the inputs
    (``call`` must run it on copies)."""
    return {hint: (lambda f=f: call(f)) for hint, f in functions.items()}


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
        raise Failure(f"{name} changed requires_grad of the model's parameters{when}; leave the model as you found "
                      "it: take gradients with respect to the inputs only (torch.autograd.grad(score, X)).")
    if got.get("inplace") != expected.get("inplace"):
        changed = [k for k in expected.get("inplace", {}) if got.get("inplace", {}).get(k) != expected["inplace"][k]]
        raise Failure(f"{name} changed the ReLU inplace flags{when} ({', '.join(changed)}); if you turn in-place "
                      "ReLUs off, restore the old flags afterwards (in a finally block).")
    if got.get("training") != expected.get("training"):
        raise Failure(f"{name} changed the model's train/eval mode{when}; leave it in the mode you found it.")


def check_model(name: str, pristine: torch.nn.Module, student: Any, at: int, after_error: bool = False) -> None:
    """:func:`check_model_report` of the model argument ``at`` of the student's last call (the kernel's report,
    ``student.last_modules``) against the grader's untouched copy ``pristine``."""
    check_model_report(name, module_report(pristine), student.last_modules.get(f"arg{at}"), after_error)


def model_call(name: str, student: Any, args: tuple, at: int, *, context: str = "",
               hint: str | Callable[[], str] = "") -> Any:
    """:func:`student_call` of a function that takes a model (``args[at]``), then :func:`check_model`."""
    out = student_call(name, student, args, context=context, hint=hint)
    check_model(name, args[at], student, at)
    return out
