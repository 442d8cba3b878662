"""Hidden tests of the warm-up notebook ``example``: ``softmax`` and ``top_k_accuracy``."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch

from autograder.judging.references import load_reference
from autograder.judging.solutions import load_solutions
from autograder.judging.toolkit import call_student, check_cases, fresh_generator
from cs_lib.checks import check_close, check_tensor

ASSIGNMENT = "example"
REFERENCE_SEED = 231
# float64 references: agreement to round-off across machines.
REFERENCE_RTOL, REFERENCE_ATOL = 1e-10, 1e-12
# An accuracy is a multiple of 1/N (N <= 1000 here); a float32 mean of N booleans is off by at
# most ~N * 6e-8 relative, so 1e-6 accepts float32 and float64 answers and rejects any miscount.
TOP_K_ATOL = 1e-6


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
    # float32: scores up to |s| ~ 30 * 4 have a spacing of ~1e-5, so an equally correct
    # formulation (exp(s - logsumexp(s))) differs by that much relative; wrong answers differ by >1e-2.
    for dtype, rtol in [(torch.float32, 1e-4), (torch.float64, 1e-10)]:
        n, c = (int(v) for v in torch.randint(2, 40, (2,), generator=g))
        x = torch.randn(n, c, generator=g, dtype=dtype) * float(torch.empty(1).uniform_(1, 30, generator=g))
        got = call_student("softmax", student_softmax, x)
        check_tensor("softmax", got, shape=(n, c), dtype=dtype, device=x.device)
        check_close("softmax", got, ref(x), rtol=rtol, atol=1e-7)
    huge = torch.tensor([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -2000.0]])
    # float32 spacing at |s| = 1000 is 6.1e-5: stable formulations agree to ~1e-4 relative there.
    check_close("softmax", call_student("softmax", student_softmax, huge), ref(huge), rtol=5e-4, atol=1e-7,
                hint="exp(1000) overflows: subtract each row's maximum before exponentiating.")


def top_k_accuracy(student_top_k_accuracy: Callable[..., float]) -> None:
    """Hidden test of ``top_k_accuracy``: stored cases and fresh scores for several k."""
    ref = load_solutions(ASSIGNMENT).top_k_accuracy
    check_cases("top_k_accuracy", student_top_k_accuracy,
                load_reference(ASSIGNMENT)["cases"]["top_k_accuracy"], 0, TOP_K_ATOL)
    g = fresh_generator()
    for k in (1, 2, 5):
        n = int(torch.randint(10, 60, (1,), generator=g))
        scores = torch.randn(n, 10, generator=g)
        y = torch.randint(0, 10, (n,), generator=g)
        got = call_student("top_k_accuracy", student_top_k_accuracy, scores, y, k=k)
        if not isinstance(got, float):
            raise AssertionError(f"top_k_accuracy returned {type(got).__name__}; expected a Python float "
                                 "(use .item()).")
        check_close("top_k_accuracy", got, ref(scores, y, k=k), rtol=0, atol=TOP_K_ATOL,
                    hint=f"With k={k}, a sample counts when its label is among the {k} highest scores.")
