"""Hidden tests of the warm-up notebook ``example``: ``softmax`` and ``top_k_accuracy``."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch

from autograder.grade.common import call_student, check_cases, fresh_generator
from autograder.references import load_reference
from autograder.solutions import load_solutions
from cs_lib.checks import check_close, check_tensor

ASSIGNMENT = "example"
REFERENCE_SEED = 231
# float64 references: agreement to round-off across machines.
REFERENCE_RTOL, REFERENCE_ATOL = 1e-10, 1e-12


def make_references(sol: SimpleNamespace) -> dict[str, list[dict[str, Any]]]:
    """Reference cases on seeded float64 inputs (stored by ``python -m autograder references``)."""
    g = torch.Generator().manual_seed(REFERENCE_SEED)
    softmax_cases, topk_cases = [], []
    for (n, c), scale in [((4, 10), 1.0), ((7, 3), 50.0), ((2, 1000), 5.0), ((5, 6), 1000.0)]:
        x = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
        softmax_cases.append({"inputs": {"args": (x,)}, "output": sol.softmax(x)})
    for n, c, k in [(20, 10, 1), (20, 10, 3), (50, 5, 5), (8, 1000, 10)]:
        scores = torch.randn(n, c, generator=g, dtype=torch.float64)
        y = torch.randint(0, c, (n,), generator=g)
        out = float(sol.top_k_accuracy(scores, y, k))
        topk_cases.append({"inputs": {"args": (scores, y), "kwargs": {"k": k}}, "output": out})
    return {"softmax": softmax_cases, "top_k_accuracy": topk_cases}


def softmax(student_softmax: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Hidden test of ``softmax``: stored cases, fresh inputs in float32 and float64, huge scores."""
    ref = load_solutions(ASSIGNMENT).softmax
    check_cases("softmax", student_softmax, load_reference(ASSIGNMENT)["cases"]["softmax"], 1e-7, 1e-12,
                hint="Normalize over dim=1 (the classes), after subtracting the row maximum.")
    g = fresh_generator()
    for dtype, rtol in [(torch.float32, 1e-5), (torch.float64, 1e-10)]:
        n, c = (int(v) for v in torch.randint(2, 40, (2,), generator=g))
        x = torch.randn(n, c, generator=g, dtype=dtype) * float(torch.empty(1).uniform_(1, 30, generator=g))
        got = call_student("softmax", student_softmax, x)
        check_tensor("softmax", got, shape=(n, c), dtype=dtype, device=x.device)
        check_close("softmax", got, ref(x), rtol=rtol, atol=1e-7)
    huge = torch.tensor([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -2000.0]])
    check_close("softmax", call_student("softmax", student_softmax, huge), ref(huge), rtol=1e-5, atol=1e-7,
                hint="exp(1000) overflows: subtract each row's maximum before exponentiating.")


def top_k_accuracy(student_top_k_accuracy: Callable[..., float]) -> None:
    """Hidden test of ``top_k_accuracy``: stored cases and fresh scores for several k."""
    ref = load_solutions(ASSIGNMENT).top_k_accuracy
    check_cases("top_k_accuracy", student_top_k_accuracy,
                load_reference(ASSIGNMENT)["cases"]["top_k_accuracy"], 1e-12, 1e-12)
    g = fresh_generator()
    for k in (1, 2, 5):
        n = int(torch.randint(10, 60, (1,), generator=g))
        scores = torch.randn(n, 10, generator=g)
        y = torch.randint(0, 10, (n,), generator=g)
        got = call_student("top_k_accuracy", student_top_k_accuracy, scores, y, k=k)
        if not isinstance(got, float):
            raise AssertionError(f"top_k_accuracy returned {type(got).__name__}; expected a Python float "
                                 "(use .item()).")
        check_close("top_k_accuracy", got, ref(scores, y, k=k), rtol=0, atol=1e-9,
                    hint=f"With k={k}, a sample counts when its label is among the {k} highest scores.")
