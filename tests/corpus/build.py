"""Build the corpus of faulty and hostile submissions from the ``example`` release.

Each :class:`Case` is one LMS-style file (``<student>_<ids>_example.ipynb``) that a
student could hand in, with the score its honest part earns. The answers come from the
source notebook (:func:`autograder.batch.samples.correct_submission`); one function's body is then
replaced by the attack. To keep the tests fast, every notebook drops the example's ungraded
demo cell (students may delete unlocked cells; the graded cells are all there).

The attacks break ``softmax`` or ``top_k_accuracy`` by name; what every case earns is derived from the
example's specs and test cells (:func:`tests.nbutil.graded_points`), so that a graded function added to
``example`` is one more test that a case passes (or, where the whole file is rejected, does not run).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.batch.samples import correct_submission, with_answer_body
from tests.nbutil import graded_points

ASSIGNMENT = "example"
#: Memory limit the corpus is graded with; the allocation attack asks for 20 GiB.
MEMORY_LIMIT = 2 * 1024**3
#: ``{test grade_id: points}`` of the example's autograded tests, and what the correct answers earn.
POINTS = graded_points(ASSIGNMENT)
FULL = sum(POINTS.values())


@dataclass(frozen=True)
class Case:
    """One corpus submission and what grading it must give."""

    student: str
    filename: str
    score: float  # points the honest part earns (of FULL)
    statuses: dict[str, str]  # grade_id -> expected status
    reason: str = ""  # text expected in the per-test reasons ("a|b": either)
    tampering: str = ""  # text expected in the tampering column


def statuses(every: str, **broken: str) -> dict[str, str]:
    """grade_id -> expected status: ``broken``'s for the tests of the functions it names, ``every`` for the rest."""
    unknown = {f"test_{name}" for name in broken} - set(POINTS)
    assert not unknown, f"{ASSIGNMENT} has no test {sorted(unknown)}"
    return {gid: broken.get(gid.removeprefix("test_"), every) for gid in POINTS}


def without(*functions: str) -> float:
    """The score of a submission that loses exactly the tests of ``functions``."""
    return FULL - sum(POINTS[f"test_{name}"] for name in functions)


PASSED = statuses("passed")
TOPK_BROKEN = statuses("passed", top_k_accuracy="error")
SOFTMAX_WRONG = statuses("passed", softmax="failed")
NOT_RUN = statuses("not_run")

CASES = [
    Case("correct", "correct_1001_2001_example.ipynb", FULL, PASSED),
    Case("infiniteloop", "infiniteloop_1002_2002_example.ipynb", without("top_k_accuracy"), TOPK_BROKEN,
         reason="timed out"),
    Case("osexit", "osexit_1003_2003_example.ipynb", without("top_k_accuracy"), TOPK_BROKEN,
         reason="exited with code 1"),
    Case("sysexit", "sysexit_1004_2004_example.ipynb", without("top_k_accuracy"), TOPK_BROKEN, reason="SystemExit"),
    Case("segfault", "segfault_1005_2005_example.ipynb", without("top_k_accuracy"), TOPK_BROKEN, reason="SIGSEGV"),
    # Where the OS refuses to overcommit 20 GiB, Python raises MemoryError before the grader's limit.
    Case("bigalloc", "bigalloc_1006_2006_example.ipynb", without("top_k_accuracy"), TOPK_BROKEN,
         reason="memory limit exceeded|MemoryError"),
    Case("printflood", "printflood_1007_2007_example.ipynb", FULL, PASSED),
    Case("warns", "warns_1008_2008_example.ipynb", FULL, PASSED),
    Case("deletedtest", "deletedtest_1009_2009_example.ipynb", FULL, PASSED, tampering="was deleted"),
    Case("editedtest", "editedtest_1010_2010_example.ipynb", without("softmax"), SOFTMAX_WRONG,
         tampering="was edited"),
    Case("points", "points_1011_2011_example.ipynb", FULL, PASSED, tampering="points of 'test_softmax' changed"),
    Case("notjson", "notjson_1012_2012_example.ipynb", 0, NOT_RUN, reason="not valid JSON"),
    Case("empty", "empty_1013_2013_example.ipynb", 0, NOT_RUN, reason="empty"),
    Case("wrongassignment", "wrongassignment_1014_2014_example.ipynb", 0, NOT_RUN, reason="not assignment"),
    Case("José García", "José García_1015_2015_example.ipynb", FULL, PASSED),
    # Two submissions of one student: the newer (by the time in the name) has a wrong softmax.
    Case("twice", "twice_1016_2016_example_2024-03-02T09-00-00.ipynb", without("softmax"), SOFTMAX_WRONG),
]
#: The older submission of ``twice``, which must be superseded.
OLDER_TWICE = "twice_1016_2016_example_2024-03-01T09-00-00.ipynb"

BODIES = {
    "infiniteloop": ("top_k_accuracy", "while True:\n    pass"),
    "osexit": ("top_k_accuracy", "import os\nos._exit(1)"),
    "sysexit": ("top_k_accuracy", "import sys\nsys.exit()"),
    "segfault": ("top_k_accuracy", "import ctypes\nctypes.string_at(0)"),
    "bigalloc": ("top_k_accuracy", "hog = b'x' * (20 * 1024**3)\nreturn 0.0"),
    "warns": ("softmax", "import warnings\nwarnings.warn('a solution that warns')\n"
                         "shifted = scores - scores.max(dim=1, keepdim=True).values\n"
                         "exp = shifted.exp()\nreturn exp / exp.sum(dim=1, keepdim=True)"),
    "editedtest": ("softmax", "return scores"),
    "twice": ("softmax", "return scores.exp()"),
}

# Ten million lines in one write (about 79 MB through the kernel's output channel).
PRINT_FLOOD = "\nimport sys\nsys.stdout.write('\\n'.join(map(str, range(10_000_000))))\n"


def without_demo_cells(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` without its ungraded code cells (the example's demo), to keep the tests fast."""
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.cell_type != "code" or c.metadata.get("nbgrader")]
    return nb


def _cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def case_notebook(student: str, source: nbformat.NotebookNode, release: nbformat.NotebookNode) -> str:
    """The file content of ``student``'s submission."""
    correct = without_demo_cells(correct_submission(source, release))
    nb = correct
    if student in BODIES:
        fn, body = BODIES[student]
        nb = with_answer_body(correct, source, fn, body)
    if student == "printflood":
        _cell(nb, "top_k_accuracy").source += PRINT_FLOOD
    elif student == "deletedtest":
        nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_top_k_accuracy"]
    elif student == "editedtest":
        _cell(nb, "test_softmax").source = 'print("softmax: all good")'
    elif student == "points":
        _cell(nb, "test_softmax").metadata["nbgrader"]["points"] = 100
    elif student == "notjson":
        return '{"cells": [ this is not json'
    elif student == "empty":
        return ""
    elif student == "wrongassignment":
        nb = copy.deepcopy(correct)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader")
            if meta and meta.get("grade_id"):
                meta["grade_id"] = "other_" + meta["grade_id"]
    return nbformat.writes(nb)


def build_corpus(folder: Path, source: nbformat.NotebookNode, release: nbformat.NotebookNode) -> Path:
    """Write every case (and the older ``twice`` file, with an older mtime) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        (folder / case.filename).write_text(case_notebook(case.student, source, release), encoding="utf-8")
    older = folder / OLDER_TWICE
    older.write_text(nbformat.writes(without_demo_cells(correct_submission(source, release))), encoding="utf-8")
    newer = folder / next(c.filename for c in CASES if c.student == "twice")
    os.utime(older, (newer.stat().st_mtime + 3600,) * 2)  # the name's time must win over the mtime
    return folder
