"""Hidden tests of the warm-up notebook ``example``: ``softmax`` and ``top_k_accuracy``.

The model for every assignment: one :class:`~autograder.judging.spec.GradedFunction` per graded function.
"""

from __future__ import annotations

import torch

from autograder.judging.spec import Call, GradedFunction, WrongAnswer
from autograder.judging.toolkit import Failure

ASSIGNMENT = "example"
REFERENCE_SEED = 231
# float64 references: agreement to round-off across machines.
REFERENCE_RTOL, REFERENCE_ATOL = 1e-10, 1e-12


def _softmax_cases(g: torch.Generator) -> list[Call]:
    return [Call(torch.randn(n, c, generator=g, dtype=torch.float64) * scale, label=f"float64 scores {n}x{c} x{scale}")
            for (n, c), scale in [((4, 10), 1.0), ((7, 3), 50.0), ((2, 1000), 5.0), ((5, 6), 1000.0)]]


def _softmax_fresh(g: torch.Generator) -> list[Call]:
    calls = []
    for dtype in (torch.float32, torch.float64):
        n, c = (int(v) for v in torch.randint(2, 40, (2,), generator=g))
        scale = float(torch.empty(1).uniform_(1, 30, generator=g))
        calls.append(Call(torch.randn(n, c, generator=g, dtype=dtype) * scale, label=f"random {dtype} scores"))
    calls.append(Call(torch.tensor([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -2000.0]]),
                      label="scores near +-1000 (exp overflows unless you subtract the row maximum)"))
    calls.append(Call(torch.tensor([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]]), label="the visible check's scores"))
    return calls


def _top_k_cases(g: torch.Generator) -> list[Call]:
    calls = []
    for n, c, k in [(20, 10, 1), (20, 10, 3), (50, 5, 5), (8, 1000, 10)]:
        scores = torch.randn(n, c, generator=g, dtype=torch.float64)
        calls.append(Call(scores, torch.randint(0, c, (n,), generator=g), k=k, label=f"{n} samples, k={k}"))
    return calls


def _top_k_fresh(g: torch.Generator) -> list[Call]:
    calls = []
    for k in (1, 2, 5):
        n = int(torch.randint(10, 60, (1,), generator=g))
        calls.append(Call(torch.randn(n, 10, generator=g), torch.randint(0, 10, (n,), generator=g), k=k,
                          label=f"{n} random samples, k={k}"))
    visible = torch.tensor([[0.1, 0.7, 0.2], [0.9, 0.05, 0.05]]), torch.tensor([2, 0])
    calls += [Call(*visible, k=k, label=f"the visible check's scores, k={k}") for k in (1, 2)]
    return calls


def _returns_a_float(student, ref, g: torch.Generator) -> None:  # noqa: ANN001 - the spec's check signature
    got = student(torch.randn(6, 4, generator=g), torch.randint(0, 4, (6,), generator=g), k=2)
    if type(got) is not float:
        raise Failure(f"top_k_accuracy returned {type(got).__name__}; expected a Python float (use .item()).")


SPECS = (
    GradedFunction(
        name="softmax",
        cases=_softmax_cases,
        fresh=_softmax_fresh,
        # float32 scores up to |s| ~ 1000 have a spacing of 6e-5: equally correct formulations
        # (exp(s - logsumexp(s))) differ by ~1e-4 relative there; wrong answers differ by > 1e-2.
        rtol=5e-4, atol=1e-7,
        tolerance="float32 spacing at |s| = 1000 is 6.1e-5; wrong answers differ by more than 1e-2",
        wrong_answers=(
            WrongAnswer("over the batch",
                        "exp = (scores - scores.max()).exp()\nreturn exp / exp.sum(dim=0, keepdim=True)",
                        "normalizing over dim=0 (the batch) instead of dim=1 (the classes)"),
            WrongAnswer("no max subtraction", "exp = scores.exp()\nreturn exp / exp.sum(dim=1, keepdim=True)",
                        "exponentiating without subtracting each row's maximum first (exp overflows)"),
            WrongAnswer("log-softmax", "return scores.log_softmax(dim=1)", "the log-softmax instead of the softmax"),
        ),
    ),
    GradedFunction(
        name="top_k_accuracy",
        cases=_top_k_cases,
        fresh=_top_k_fresh,
        # An accuracy is a multiple of 1/N (N <= 1000 here); a float32 mean of N booleans is off by at most
        # ~N * 6e-8 relative, so 1e-6 accepts float32 and float64 answers and rejects any miscount.
        rtol=0.0, atol=1e-6,
        tolerance="multiples of 1/N: float32 means are exact to ~6e-5 relative; a miscount is >= 1/N",
        wrong_answers=(
            WrongAnswer("top-1 only", "return (scores.argmax(dim=1) == y).float().mean().item()",
                        "ignoring k (only the top-1 class counts)"),
            WrongAnswer("lowest scores", "top = scores.topk(k, dim=1, largest=False).indices\n"
                                         "return (top == y[:, None]).any(dim=1).float().mean().item()",
                        "taking the k lowest scores instead of the k highest"),
            WrongAnswer("count not fraction", "top = scores.topk(k, dim=1).indices\n"
                                              "return float((top == y[:, None]).any(dim=1).sum())",
                        "a count of correct samples instead of a fraction"),
        ),
        checks=(_returns_a_float,),
    ),
)

#: What the graded functions may not use: nothing is forbidden in the example (``autograder/judging/policy.py``).
DEFAULT_FORBIDDEN: tuple[str, ...] = ()
