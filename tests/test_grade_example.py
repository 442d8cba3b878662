"""The example's hidden tests, run by the judge in-process: the reference passes; wrong and hard-coded answers fail."""

from __future__ import annotations

import types
from collections.abc import Callable

import pytest
import torch

from autograder.judging.judge import judge_in_process
from autograder.judging.solutions import load_solutions

sol = load_solutions("example")


def _as(name: str, fn: Callable) -> Callable:
    """``fn`` under the graded function's name (the judge finds the spec by ``__name__``)."""
    if isinstance(fn, types.FunctionType):
        return types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)

    def named(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        return fn(*args, **kwargs)

    named.__name__ = name
    return named


def test_reference_solutions_match_independent_peers() -> None:
    from sklearn.metrics import top_k_accuracy_score

    g = torch.Generator().manual_seed(0)
    x = torch.randn(13, 7, generator=g, dtype=torch.float64) * 20
    torch.testing.assert_close(sol.softmax(x), torch.nn.functional.softmax(x, dim=1), rtol=1e-12, atol=1e-15)
    y = torch.randint(0, 7, (13,), generator=g)
    for k in (1, 2, 3, 6):
        expected = top_k_accuracy_score(y.numpy(), x.numpy(), k=k, labels=list(range(7)))
        assert sol.top_k_accuracy(x, y, k) == pytest.approx(expected, abs=1e-6)


def test_reference_passes_every_hidden_test() -> None:
    judge_in_process("example", sol.softmax)
    judge_in_process("example", sol.top_k_accuracy)


def test_correct_alternative_formulations_pass() -> None:
    """Correct students who write it differently must get the points (float64 mean, logsumexp)."""
    judge_in_process("example", _as("softmax", lambda s: (s - s.logsumexp(dim=1, keepdim=True)).exp()))
    judge_in_process("example", _as("top_k_accuracy", lambda s, y, k=1: float(
        (s.topk(k, dim=1).indices == y[:, None]).any(1).double().sum() / len(y))))


def _softmax_wrong_dim(s):
    e = (s - s.max()).exp()
    return e / e.sum(dim=0, keepdim=True)


def _softmax_unstable(s):
    return s.exp() / s.exp().sum(dim=1, keepdim=True)


def _softmax_in_place(s):
    s -= s.max(dim=1, keepdim=True).values
    s.exp_()
    return s / s.sum(dim=1, keepdim=True)


def _softmax_stub(s):
    raise NotImplementedError()


@pytest.mark.parametrize("wrong, message", [
    (_softmax_wrong_dim, "normalizing over dim=0"),
    (_softmax_unstable, "NaN"),
    (_softmax_in_place, "in place"),
    (_softmax_stub, "not implemented"),
    (lambda s: torch.softmax(s.float(), 1), "dtype"),
])
def test_hidden_softmax_test_rejects_common_wrong_answers(wrong, message) -> None:
    with pytest.raises(AssertionError, match=message):
        judge_in_process("example", _as("softmax", wrong))


@pytest.mark.parametrize("wrong", [
    lambda s, y, k=1: (s.argmax(1) == y).float().mean().item(),              # ignores k
    lambda s, y, k=1: (s.topk(k, dim=1).indices == y[:, None]).float().mean(),  # tensor, and wrong mean
    lambda s, y, k=1: 0.5,                                                      # hard-coded
])
def test_hidden_top_k_test_rejects_wrong_and_hard_coded_answers(wrong) -> None:
    with pytest.raises(AssertionError):
        judge_in_process("example", _as("top_k_accuracy", wrong))


def test_a_function_without_a_spec_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="has no spec for 'nope'"):
        judge_in_process("example", _as("nope", lambda s: s))


def test_unknown_assignment_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="no hidden tests for assignment 'nope'"):
        judge_in_process("nope", sol.softmax)
