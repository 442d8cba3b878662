"""The warm-up notebook's own test: nbgrader validate passes on its source (the tests every notebook shares are
in tests/test_notebooks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.releasing.course import make_course_dir
from tests.nbutil import validate

pytestmark = pytest.mark.notebook


def test_validate_passes_on_the_source_notebook(tmp_path: Path) -> None:
    course = make_course_dir(tmp_path / "course", ["example"])
    out = validate(course / "source" / "example" / "example.ipynb", course)
    assert "Success! Your notebook passes all the tests." in out, out[-2000:]
