"""cs_lib.runtime: device choice, seeding, grading mode, budgets and progress bars."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cs_lib.runtime import budget, get_device, in_grading, progress, seed_everything


def test_get_device_picks_cuda_only_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("DLCV_DEVICE", "cpu")
    assert get_device("cuda") == torch.device("cpu")


def test_get_device_explains_a_missing_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="Change runtime type"):
        get_device("cuda")


def test_seed_everything_makes_torch_numpy_and_python_repeatable() -> None:
    import random

    seed_everything(123)
    a = (torch.rand(3), np.random.rand(3), random.random())
    seed_everything(123)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_grading_mode_follows_nbgrader_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not in_grading() and budget(200, 5) == 200
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert in_grading() and budget(200, 5) == 5
    monkeypatch.delenv("NBGRADER_EXECUTION")
    monkeypatch.setenv("DLCV_GRADING", "1")
    assert in_grading()


def test_progress_writes_to_stdout_never_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress(range(3), desc="work", ascii=True)) == [0, 1, 2]
    out, err = capsys.readouterr()
    assert "work" in out and err == ""


def test_progress_is_silent_while_grading(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert sum(progress(range(4), desc="work")) == 6
    out, err = capsys.readouterr()
    assert out == "" and err == ""
