"""Hidden tests, one module per assignment: ``grade.<assignment>.<function>(student_fn)``.

A hidden test cell in a source notebook reads::

    ### BEGIN HIDDEN TESTS
    from autograder import grade
    grade.example.softmax(softmax)
    ### END HIDDEN TESTS

Each test raises ``AssertionError`` (through :mod:`cs_lib.checks`) with a message the
student can act on, and returns ``None`` on success. Submodules are imported on first
use, so a cell pays only for its own assignment.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def __getattr__(name: str) -> ModuleType:
    if name.startswith("_"):
        raise AttributeError(name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise AttributeError(f"autograder.hidden_tests has no tests for assignment '{name}'") from None
        raise
