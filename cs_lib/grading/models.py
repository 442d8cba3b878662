"""Small models and probes the grader sends to the kernel; nothing secret.

The grading judge (``autograder.judging``) runs in its own process and sends the inputs of each
hidden test to the student's kernel with ``torch.save``. Models whose classes are not torch's or
torchvision's must therefore be importable in the kernel, which sees ``cs_lib`` but never
``autograder``: they live here. None of this reveals an answer.

- :class:`CountingModel` counts forward passes (``forward_calls``, an int that
  :func:`cs_lib.grading.judge_client.module_report` reports back);
- :class:`FailingHead` raises in the middle of a forward pass (hooks and flags must be restored
  after an error).
"""

from __future__ import annotations

import torch
from torch import nn


class CountingModel(nn.Module):
    """``model`` that counts its forward passes in the int attribute ``forward_calls``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forward_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``model(x)``; x: float (N, C, H, W) -> scores (N, K)."""
        self.forward_calls += 1
        return self.model(x)


class FailingHead(nn.Module):
    """A layer whose forward pass always raises RuntimeError (put after a model's ReLUs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raises RuntimeError whatever ``x`` is."""
        raise RuntimeError("the grader's model fails here on purpose, after its ReLUs ran")
