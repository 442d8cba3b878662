"""What grades an assignment, fingerprinted: the batch stops if it changes while grading.

The judge in every grading process loads the assignment's solutions from the source notebook, its specs
from ``autograder/specs/<a>.py`` and its stored cases from ``autograder/references/<a>.pt``.
:func:`grader_digest` hashes those three files when a batch starts; :func:`verify` checks them again
before a grading process judges anything, so that no submission is ever graded against files that were
changed (by an editor, a ``git pull``, or anything else) halfway through a batch. A mismatch raises
:class:`GraderFilesChanged`, which stops the whole batch with a clear error.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from autograder import REPO_ROOT, source_notebook


class GraderFilesChanged(RuntimeError):
    """The files that grade an assignment changed after the batch started."""


def grader_files(assignment: str) -> list[Path | None]:
    """The source notebook, spec module and reference file of ``assignment`` (None where absent)."""
    spec = importlib.util.find_spec(f"autograder.specs.{assignment}")
    return [source_notebook(assignment), Path(spec.origin) if spec and spec.origin else None,
            REPO_ROOT / "autograder" / "references" / f"{assignment}.pt"]


def grader_digest(assignment: str) -> str:
    """SHA-256 of what grades ``assignment``: its source notebook, spec module and reference file."""
    h = hashlib.sha256()
    for path in grader_files(assignment):
        data = path.read_bytes() if path and path.exists() else b""
        name = str(path.name if path else None).encode()
        h.update(name + b"\0" + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def verify(assignment: str, expected: str) -> None:
    """Raise :class:`GraderFilesChanged` unless ``assignment``'s grader files still hash to ``expected``."""
    if grader_digest(assignment) != expected:
        files = ", ".join(str(p) for p in grader_files(assignment) if p is not None)
        raise GraderFilesChanged(
            f"the files that grade '{assignment}' changed after this batch started ({files}); grading stopped so "
            "that no submission is judged against a half-edited grader. Results stored so far are kept: run "
            "`grade` again (without --force) to grade the rest against the files as they are now.")
