"""Per-student HTML feedback that shows the visible tests' results and never the hidden tests.

nbgrader's ``generate_feedback`` renders the *autograded* notebook, into which the hidden
tests were restored for grading, so its HTML shows them and their tracebacks (nbgrader#917,
#1363). The kit runs the same converter (``GenerateFeedback``, with its feedback template
and grades from the gradebook) with two more steps in front:

- :class:`ScrubTracebacks`: tracebacks lose the frames of the grading code and every hidden
  line; the student's own frames and the assertion message stay;
- :class:`HideHiddenTests`: the hidden-test regions are cut from every cell's source.

After rendering, :func:`leaks` checks the text of the HTML for the hidden-test markers, the
``autograder`` import and every hidden line; a page that fails the check is deleted and
reported, never left for students.
"""

from __future__ import annotations

import glob
import html as html_lib
import re
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor

from autograder.execution.redact import hidden_lines, scrub_text, scrub_traceback, strip_hidden_test_regions
from autograder.notebook_format import BEGIN_HIDDEN, END_HIDDEN


class FeedbackLeakError(RuntimeError):
    """A feedback page would have shown hidden-test content; it was deleted."""


class ScrubTracebacks(NbGraderPreprocessor):
    """Remove grading-code frames and hidden lines from error outputs and printed text."""

    def preprocess(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        self._hidden = hidden_lines(nb)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> tuple[NotebookNode, Any]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                out["traceback"] = scrub_traceback(list(out.get("traceback", [])), self._hidden)
                out["evalue"] = scrub_text(str(out.get("evalue", "")), self._hidden)
            elif out.get("output_type") == "stream":
                out["text"] = scrub_text(out.get("text", ""), self._hidden)
        return cell, resources


class HideHiddenTests(NbGraderPreprocessor):
    """Cut ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` from every cell's source."""

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> tuple[NotebookNode, Any]:
        if BEGIN_HIDDEN in cell.source or END_HIDDEN in cell.source:
            cell.source = strip_hidden_test_regions(cell.source)
        return cell, resources


def feedback_preprocessors() -> list[type]:
    """nbgrader's feedback steps with the two hiding steps in front."""
    from nbgrader.converters import GenerateFeedback

    return [ScrubTracebacks, HideHiddenTests,
            *GenerateFeedback.class_traits()["preprocessors"].default()]


def generate_feedback(course: Path, assignment: str, student: str,
                      release: NotebookNode | None = None) -> Path | None:
    """Render ``autograded/<student>/<assignment>`` of ``course`` to ``feedback/.../<notebook>.html``.

    Returns:
        The HTML path, or None when there is no autograded notebook.

    Raises:
        FeedbackLeakError: the page would show hidden-test content (it is deleted).
    """
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory

    from autograder.releasing.course import captured_log, load_course_config

    autograded = course / "autograded" / student / assignment
    notebooks = sorted(autograded.glob("*.ipynb"))
    if not notebooks:
        return None
    cfg = load_course_config(course)
    cfg.GenerateFeedback.preprocessors = feedback_preprocessors()
    with captured_log():
        coursedir = CourseDirectory(config=cfg)
        coursedir.assignment_id = glob.escape(assignment)
        coursedir.student_id = glob.escape(student)
        app = GenerateFeedback(coursedir=coursedir, config=cfg)
        app.force = True
        app.start()
    out = None
    for notebook in notebooks:
        page = course / "feedback" / student / assignment / f"{notebook.stem}.html"
        graded_nb = nbformat.read(notebook, as_version=4)
        visible = {line.strip() for c in graded_nb.cells for line in strip_hidden_test_regions(c.source).split("\n")}
        found = leaks(page.read_text(encoding="utf-8"), hidden_lines(graded_nb) - visible)
        if found:
            page.unlink()
            raise FeedbackLeakError(f"feedback for {student}/{assignment} would show hidden tests ({found[:3]}); "
                                    "it was not written")
        out = page
    return out


def warm_up(template: Path, assignment: str, scratch: Path) -> None:
    """Render one throw-away feedback page in this process.

    The first page a process renders costs about a second more than the next ones
    (compiling regular expressions, importing lexers). Grading processes are forked from
    this one, so they start warm.
    """
    import shutil

    from nbgrader.api import Gradebook

    from autograder.execution.records import quiet_sqlalchemy

    course = scratch / "feedback-warm-up"
    (course / "autograded" / "warmup" / assignment).mkdir(parents=True, exist_ok=True)
    shutil.copy2(template / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copy2(template / "gradebook.db", course / "gradebook.db")
    shutil.copy2(template / "release" / assignment / f"{assignment}.ipynb",
                 course / "autograded" / "warmup" / assignment / f"{assignment}.ipynb")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb, quiet_sqlalchemy():
        gb.update_or_create_student("warmup")
        gb.add_submission(assignment, "warmup")
    generate_feedback(course, assignment, "warmup")
    shutil.rmtree(course, ignore_errors=True)


def leaks(page: str, hidden: set[str]) -> list[str]:
    """Hidden-test content found in the visible text of an HTML page (empty: none)."""
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", page))
    text = re.sub(r"[ \t]+", " ", text)
    found = [marker for marker in (BEGIN_HIDDEN, END_HIDDEN, "from autograder", "import autograder") if marker in text]
    found += [line for line in hidden if len(line) >= 8 and re.sub(r"[ \t]+", " ", line) in text]
    return found


def rejected_page(student: str, assignment: str, reason: str, notes: list[str]) -> str:
    """A small HTML page for a submission that could not be graded at all (empty, not a notebook...)."""
    items = "".join(f"<li>{html_lib.escape(n)}</li>" for n in notes if n != reason)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html_lib.escape(assignment)}</title></head>"
            f"<body><h2>{html_lib.escape(assignment)}: not graded (Score: 0)</h2>"
            f"<p>Your submission could not be graded: {html_lib.escape(reason)}.</p>"
            + (f"<ul>{items}</ul>" if items else "")
            + "<p>Submit the assignment's notebook (<code>.ipynb</code>), saved from Jupyter or Colab.</p>"
            "</body></html>\n")

