"""cs_lib.checks: CS231n's rel_error and the messages students read."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cs_lib.checks import check_close, check_tensor, rel_error


def test_rel_error_matches_cs231n_definition() -> None:
    x = np.array([1.0, 2.0, 0.0, -3.0])
    y = np.array([1.1, 2.0, 0.0, -2.0])
    expected = np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y)))
    assert rel_error(x, y) == pytest.approx(expected, rel=1e-15)
    assert rel_error(torch.tensor(x), torch.tensor(y)) == pytest.approx(1 / 5)
    assert rel_error(x, x) == 0.0
    assert rel_error(3.0, 1.0) == pytest.approx(0.5)


def test_rel_error_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.zeros(3), np.zeros(4))


def test_check_close_passes_within_tolerance_and_reports_worst_element() -> None:
    expected = torch.arange(12, dtype=torch.float32).view(3, 4)
    check_close("f", expected + 1e-7, expected, rtol=1e-5, atol=1e-6)
    got = expected.clone()
    got[2, 1] += 0.5
    got[0, 0] += 0.1
    with pytest.raises(AssertionError) as info:
        check_close("compute_thing", got, expected, rtol=1e-5, atol=1e-6, hint="Check the sign.")
    msg = str(info.value)
    assert "compute_thing" in msg and "2 of 12 elements" in msg and "(2, 1)" in msg
    assert "got 9.5" in msg and "expected 9" in msg and "Check the sign." in msg


def test_check_close_names_shape_dtype_device_and_none_problems() -> None:
    expected = torch.zeros(2, 224, 224)
    with pytest.raises(AssertionError, match=r"returned shape \(2, 3, 224, 224\); expected \(2, 224, 224\)"):
        check_close("compute_saliency_maps", torch.zeros(2, 3, 224, 224), expected)
    with pytest.raises(AssertionError, match="floating-point"):
        check_close("f", torch.zeros(2, 224, 224, dtype=torch.long), expected)
    with pytest.raises(AssertionError, match="forget to return"):
        check_close("f", None, expected)
    with pytest.raises(AssertionError, match="expected it on meta"):
        check_close("f", torch.zeros(2, 224, 224), torch.zeros(2, 224, 224, device="meta"))


def test_check_close_flags_nan_where_reference_is_finite() -> None:
    with pytest.raises(AssertionError, match="NaN or inf"):
        check_close("softmax", torch.tensor([0.5, float("nan")]), torch.tensor([0.5, 0.5]))
    check_close("f", torch.tensor([float("inf")]), torch.tensor([float("inf")]))


def test_check_close_accepts_numbers_and_half_precision() -> None:
    check_close("acc", 0.5, 0.5)
    with pytest.raises(AssertionError):
        check_close("acc", 0.25, 0.5, atol=1e-9)
    check_close("f", torch.ones(3, dtype=torch.bfloat16), torch.ones(3, dtype=torch.bfloat16))


def test_check_tensor_shape_wildcards_dtype_and_type() -> None:
    x = torch.zeros(4, 3, dtype=torch.float64)
    check_tensor("f", x, shape=(None, 3), dtype=torch.float64, device="cpu")
    with pytest.raises(AssertionError, match=r"expected \(\*, 4\)"):
        check_tensor("f", x, shape=(None, 4))
    with pytest.raises(AssertionError, match="dtype torch.float64; expected torch.float32"):
        check_tensor("f", x, dtype=torch.float32)
    with pytest.raises(AssertionError, match="returned ndarray; expected a torch.Tensor"):
        check_tensor("f", np.zeros(3))
