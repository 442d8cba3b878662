"""Runtime switches shared by every notebook: device, seeds, grading mode, budgets.

nbgrader sets the environment variable ``NBGRADER_EXECUTION`` (to ``"autograde"`` or
``"validate"``) while it executes a notebook. Notebooks read it through
:func:`in_grading` and size their demos with :func:`budget`, so that autograding a
notebook takes seconds while a student's own run does the full work.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")

#: Environment variables that switch grading mode on. ``DLCV_GRADING=1`` lets a
#: student or a test try the grading-mode budgets without nbgrader.
GRADING_ENV_VARS = ("NBGRADER_EXECUTION", "DLCV_GRADING")


def get_device(prefer: str | None = None) -> torch.device:
    """Return the device the notebooks compute on: CUDA when present, else the CPU.

    Args:
        prefer: ``"cpu"`` or ``"cuda"`` to override; ``None`` picks automatically.
            The environment variable ``DLCV_DEVICE`` overrides both.

    Returns:
        A ``torch.device``.
    """
    choice = os.environ.get("DLCV_DEVICE") or prefer
    if choice is not None:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"get_device: '{choice}' was requested but torch.cuda.is_available() is False. "
                "On Colab, choose Runtime > Change runtime type > GPU, or use 'cpu'."
            )
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) random generators.

    Args:
        seed: the seed.
        deterministic: also ask cuDNN for deterministic kernels (slower on GPU).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def in_grading() -> bool:
    """True while nbgrader executes the notebook (autograde or validate)."""
    return any(os.environ.get(name) for name in GRADING_ENV_VARS)


def budget(normal: T, grading: T) -> T:
    """Pick an iteration count, image size or dataset size for the current mode.

    Example: ``num_iterations = budget(200, 5)`` runs 200 steps for a student and 5
    steps while nbgrader grades the notebook.
    """
    return grading if in_grading() else normal


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> Any:
    """A tqdm progress bar that works in notebooks and never writes to stderr.

    nbgrader counts any stderr output in a test cell as a failure, and tqdm writes to
    stderr by default, so the bar goes to stdout. While grading, the bar is disabled.

    Args:
        iterable: what to iterate over (or ``None`` with ``total=...``).
        **kwargs: passed to ``tqdm.auto.tqdm`` (``total``, ``desc``, ...).
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("file", sys.stdout)
    kwargs.setdefault("disable", in_grading())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
