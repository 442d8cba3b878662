"""One declaration per graded function: what the judge calls, compares and diagnoses.

Each ``autograder/specs/<assignment>.py`` defines ``ASSIGNMENT``, ``REFERENCE_SEED`` and
``SPECS``, a tuple of :class:`GradedFunction`. Everything else (calling the student in the kernel,
comparing, diagnosing, messages, model-state checks) lives once in :mod:`autograder.judging.toolkit`,
and :mod:`autograder.judging.references`, the demo's samples and the generic tests iterate over
``SPECS``. A TA who adds a graded function writes its notebook cells and one spec, then runs
``make references`` (see ``autograder/README.md``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch


class Call:
    """One invocation of a graded function: ``Call(x, squared=True, label="with duplicates")``."""

    def __init__(self, *args: Any, label: str = "", **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.label = label

    def describe(self) -> str:
        """The label, else a short description of the arguments (shapes and dtypes)."""
        if self.label:
            return self.label
        parts = [_short(a) for a in self.args] + [f"{k}={_short(v)}" for k, v in self.kwargs.items()]
        return "input (" + ", ".join(parts) + ")"

    def __repr__(self) -> str:
        return f"Call({self.describe()})"


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')} tensor {tuple(value.shape)}"
    if isinstance(value, torch.nn.Module):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class WrongAnswer:
    """A plausible mistake, as code, and the phrase the student's message must contain for it.

    ``body`` replaces the solution region of the answer cell (written flush-left); it runs in the
    notebook's namespace. The judge runs it on the same inputs as the student, and names ``hint``
    when the student's output matches it. The generic tests check that it fails with that hint. A mistake that
    is an edit of the solution is declared as one: :func:`autograder.judging.solutions.edited_answers`.
    """

    name: str
    body: str
    hint: str

    @property
    def diagnoses_value(self) -> bool:
        """False for a mistake named ``"state: ..."``: one that a property check catches (hooks left behind, a
        result attached to the graph), not the value comparison, so it is not tried as a diagnosis of a value."""
        return not self.name.startswith(STATE)


#: The name prefix of the wrong answers that a property check catches (:attr:`WrongAnswer.diagnoses_value`).
STATE = "state: "
Check = Callable[..., None]  # (student, ref, g) -> None, raises toolkit.Failure
CustomTest = Callable[..., None]  # (student, ref, spec, g) -> None, raises toolkit.Failure


@dataclass(frozen=True)
class GradedFunction:
    """The hidden test of one graded function (see the module docstring and ``autograder/README.md``).

    Attributes:
        name: the notebook's function (or class) name; its test cell's grade_id is ``test_<name>``.
        cases: ``(g) -> [Call]`` on a generator seeded with ``REFERENCE_SEED``: the stored cases
            (inputs and the reference's outputs are written by ``python -m autograder references``).
        fresh: ``(g) -> [Call]`` on a generator seeded from the OS at grading time.
        rtol, atol: tolerances of the comparison with the reference; ``tolerance`` says why. Where the
            notebook does not ask for float64, they admit a correct implementation that computes in float32
            (``tests/test_float32_specs.py``).
        float64_required: why the function must compute in float64, in one sentence a student understands
            ("" when float32 is fine). The notebook's text and visible check say so too, and the judge adds
            the sentence to a failure that names no wrong answer.
        wrong_answers: mistakes the judge diagnoses by name (the first is the demo's wrong sample).
        checks: extra property checks ``(student, ref, g) -> None``.
        normalize: ``(output) -> output`` applied to both outputs before comparing (e.g. sort a set).
        test: a whole custom test ``(student, ref, spec, g) -> None`` instead of the generic comparison.
        stand_ins: ``{global name: source}`` swapped into the student's globals during every call of the test
            (``RemoteFunction.with_stand_ins``): the grader's own building blocks, so that a wrong or crashing
            building block the function calls costs only its own points.
        adapter: ``"list"``: the kernel returns ``list(fn(*args))`` (for generators and samplers);
            ``"in_place"``: it returns ``{"returned": ..., "arguments": [the tensor arguments after the call]}``
            for functions that update their input in place on purpose (a gradient-ascent step).
        forgeable: the properties this spec takes from the kernel's own report (``autograder/README.md``).
        forbidden: what the function may not use (dotted modules, functions and classes, and dispatcher
            ops as ``ns::op``); None: the assignment's ``DEFAULT_FORBIDDEN``. The student's own
            functions are always allowed (:mod:`autograder.judging.policy`).
        loops_allowed: False where the notebook asks for the function without Python loops.
        policy: one line for the notebook and the README's policy table (what the text says).
    """

    name: str
    cases: Callable[[torch.Generator], list[Call]] | None = None
    fresh: Callable[[torch.Generator], list[Call]] | None = None
    rtol: float = 1e-6
    atol: float = 1e-9
    tolerance: str = ""
    float64_required: str = ""
    wrong_answers: tuple[WrongAnswer, ...] = ()
    checks: tuple[Check, ...] = ()
    normalize: Callable[[Any], Any] | None = None
    test: CustomTest | None = None
    stand_ins: dict[str, str] | None = None
    adapter: str | None = None
    forgeable: tuple[str, ...] = field(default_factory=tuple)
    forbidden: tuple[str, ...] | None = None
    loops_allowed: bool = True
    policy: str = ""

    @property
    def grade_id(self) -> str:
        return f"test_{self.name}"


def assignments_with_specs() -> list[str]:
    """The assignments (source notebooks) that have an ``autograder/specs/<assignment>.py`` module, in order."""
    from autograder import assignments

    return [a for a in assignments() if importlib.util.find_spec(f"autograder.specs.{a}") is not None]


def spec_module(assignment: str) -> ModuleType:
    """``autograder.specs.<assignment>``.

    Raises:
        KeyError: when the assignment has no hidden tests.
    """
    try:
        return importlib.import_module(f"autograder.specs.{assignment}")
    except ModuleNotFoundError as exc:
        if exc.name == f"autograder.specs.{assignment}":
            raise KeyError(f"no hidden tests for assignment '{assignment}' (autograder/specs/{assignment}.py)"
                           ) from None
        raise


@functools.cache
def load_specs(assignment: str) -> dict[str, GradedFunction]:
    """``{function name: spec}`` of ``assignment``, in notebook order."""
    module = spec_module(assignment)
    specs = {spec.name: spec for spec in module.SPECS}
    if len(specs) != len(module.SPECS):
        raise ValueError(f"autograder/specs/{assignment}.py declares a function twice")
    return specs


def with_policies(specs: tuple[GradedFunction, ...], *, no_loops: tuple[str, ...] = (),
                  forbidden: dict[str, tuple[str, ...]] | None = None) -> tuple[GradedFunction, ...]:
    """``specs`` with their policies declared: ``no_loops`` names the functions that the notebook asks for
    without Python loops, ``forbidden`` gives a function its own list (instead of ``DEFAULT_FORBIDDEN``).

    Raises:
        KeyError: a name that is not one of ``specs``' functions (a typo would silently allow everything).
    """
    names = {s.name for s in specs}
    unknown = (set(no_loops) | set(forbidden or {})) - names
    if unknown:
        raise KeyError(f"with_policies: no spec named {sorted(unknown)}; have {sorted(names)}")
    return tuple(dataclasses.replace(s, loops_allowed=s.name not in no_loops,
                                     forbidden=(forbidden or {}).get(s.name, s.forbidden)) for s in specs)


def forbidden_of(assignment: str, spec: GradedFunction) -> tuple[str, ...]:
    """What ``spec``'s function may not use: its own ``forbidden``, else the assignment's default."""
    if spec.forbidden is not None:
        return spec.forbidden
    return tuple(getattr(spec_module(assignment), "DEFAULT_FORBIDDEN", ()))


def spec_for_grade_id(assignment: str, grade_id: str) -> GradedFunction | None:
    """The spec whose test cell is ``grade_id`` (``test_<name>``), or None."""
    for spec in load_specs(assignment).values():
        if spec.grade_id == grade_id:
            return spec
    return None
