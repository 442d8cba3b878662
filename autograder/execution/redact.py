"""Keep hidden tests hidden in everything students see: cell sources, tracebacks, messages.

An autograded notebook holds the hidden tests: nbgrader restores them into the test cells
before running them. Feedback built from it must not show them (nbgrader#917, #1363), and
neither may the tracebacks of failed hidden tests, which quote the hidden lines and the
grading code around them. This module works on plain strings and lists:

- :func:`strip_hidden_test_regions` removes each ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN
  TESTS`` region from a cell source (an unterminated region is removed to the end);
- :func:`hidden_lines` collects the lines of those regions in a notebook;
- :func:`scrub_traceback` drops the frames of files inside the ``autograder`` package and,
  in notebook-cell frames, every context line that is a hidden line (the ``--->`` line then
  reads ``---> (hidden test)``). The student's own frames, library frames and the final
  ``AssertionError: <message for the student>`` stay.
"""

from __future__ import annotations

import re
from pathlib import Path

from nbformat import NotebookNode

from autograder.notebook_format import BEGIN_HIDDEN, END_HIDDEN

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)
# Frames of the grading code, wherever a copy of the package lives (a Gradescope image, say).
_GRADER_FILE = re.compile(r"[/\\]autograder[/\\](specs|judging|__init__\.py)"
                          r"|[/\\]cs_lib[/\\]grading[/\\]judge_client\.py")
_CELL_FRAME = re.compile(r"^\s*(Cell In\s*\[|Input In\s*\[|<ipython-input-)")
_FILE_FRAME = re.compile(r"^\s*File\s")
_CONTEXT_LINE = re.compile(r"^(\s*(?:-+>)?\s*)(\d+)(\s?)(.*)$")

HIDDEN_NOTE = "(hidden test)"


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes."""
    return _ANSI.sub("", text)


def strip_hidden_test_regions(source: str) -> str:
    """``source`` without its hidden-test regions (delimiter lines included)."""
    kept, hiding = [], False
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line:
            hiding = True
        elif END_HIDDEN in line and hiding:
            hiding = False
        elif not hiding:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept)


def hidden_region_lines(source: str) -> list[str]:
    """The stripped, non-empty lines of ``source``'s hidden regions, delimiters included."""
    lines, hiding = [], False
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line:
            hiding = True
        if hiding and line.strip():
            lines.append(line.strip())
        if END_HIDDEN in line:
            hiding = False
    return lines


def hidden_lines(nb: NotebookNode) -> set[str]:
    """Every stripped line inside a hidden-test region of ``nb``'s code cells."""
    return {line for cell in nb.cells if cell.cell_type == "code" for line in hidden_region_lines(cell.source)}


def is_grader_frame(frame: str) -> bool:
    """True when a traceback entry is a frame of a file in the ``autograder`` package."""
    first = strip_ansi(frame).lstrip().split("\n", 1)[0]
    return bool(_FILE_FRAME.match(first)) and (_PACKAGE_DIR in first or bool(_GRADER_FILE.search(first)))


def scrub_frame(frame: str, hidden: set[str]) -> str:
    """A notebook-cell frame with its hidden context lines removed."""
    out = []
    for line in frame.split("\n"):
        plain = strip_ansi(line)
        m = _CONTEXT_LINE.match(plain)
        if m and m.group(4).strip() in hidden:
            if "->" in m.group(1):
                out.append(f"{m.group(1)}{m.group(2)} {HIDDEN_NOTE}")
            continue
        if plain.strip() in hidden:
            continue
        out.append(line)
    return "\n".join(out)


def scrub_traceback(traceback: list[str], hidden: set[str]) -> list[str]:
    """``traceback`` (an error output's list) without grader frames or hidden lines."""
    scrubbed, dropped = [], False
    for entry in traceback:
        if is_grader_frame(entry):
            if not dropped:
                scrubbed.append("(frames of the hidden tests are not shown)\n")
                dropped = True
            continue
        if _CELL_FRAME.match(strip_ansi(entry)):
            entry = scrub_frame(entry, hidden)
        elif any(line.strip() in hidden for line in strip_ansi(entry).split("\n") if line.strip()):
            entry = scrub_frame(entry, hidden)
        scrubbed.append(entry)
    return scrubbed


def scrub_text(text: str, hidden: set[str]) -> str:
    """Free text (a reason, a log line) without hidden lines or grader file paths."""
    lines = [line for line in text.split("\n") if line.strip() not in hidden]
    return _GRADER_FILE.sub("/<grader>/", "\n".join(lines)).replace(_PACKAGE_DIR, "<grader>")
