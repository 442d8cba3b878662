"""What each student wrote: the answer cells of a notebook, without the release's stub text.

A graded function's answer cell in the release holds its signature, its docstring and the stub
(``# YOUR CODE HERE`` / ``raise NotImplementedError()``); a markdown answer cell holds
``YOUR ANSWER HERE``. :func:`own_text` removes from a student's cell every line that the
release's cell already had (a line diff, so edits inside the docstring count as the student's),
which leaves the code the student wrote. Anything else the release contains (helper code, test
cells, demo cells) is removed later as fingerprint boilerplate (:mod:`autograder.similarity.compare`).

- :func:`load_release`: the release notebook's answer stubs and boilerplate, made with nbgrader
  (:func:`autograder.releasing.course.generate_assignment`);
- :func:`read_answers`: one submitted file -> :class:`Answers`, or :class:`BadInput` with the reason;
- :func:`reference_answers`: the reference solution, read from the source notebook;
- :func:`known_sources`: files given with ``--against`` (notebooks, ``.py`` files, folders of them).
"""

from __future__ import annotations

import ast
import difflib
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder import source_notebook

#: Lines that mark a solution region in the source notebook (dropped from the reference).
_DELIMITER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[^\n]*$\n?", re.MULTILINE)

#: File types read from an ``--against`` folder.
SOURCE_SUFFIXES = (".ipynb", ".py")


class BadInput(Exception):
    """A file that cannot be compared; ``str(exc)`` says why, for the report."""


@dataclass
class Release:
    """What students were given for one assignment.

    Attributes:
        assignment: its name.
        code_stubs: ``grade_id -> the release's answer cell`` for graded functions, notebook order.
        markdown_stubs: ``grade_id -> the release's cell`` for markdown (written) answers.
        boilerplate_code: every code cell of the release, joined: never counts as similarity.
        boilerplate_text: every markdown cell of the release, joined.
        functions: ``grade_id -> names of the functions its stub defines`` (to read known sources).
        notebook: the release notebook itself.
    """

    assignment: str
    code_stubs: dict[str, str]
    markdown_stubs: dict[str, str]
    boilerplate_code: str
    boilerplate_text: str
    functions: dict[str, list[str]]
    notebook: nbformat.NotebookNode


@dataclass
class Answers:
    """One author's own text, per answer cell.

    Attributes:
        author: the student id, or the known source's name.
        origin: where it was read from (file, or ``zip:member``).
        code: ``grade_id -> own code`` (stub lines removed); ``""`` where the stub is untouched.
        markdown: ``grade_id -> own text`` of the written answers.
        notes: what the reader noticed (superseded files, duplicated cells).
    """

    author: str
    origin: str
    code: dict[str, str]
    markdown: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def has_answers(self) -> bool:
        """True when at least one answer cell holds text of the author's own."""
        return any(text.strip() for text in (*self.code.values(), *self.markdown.values()))


def is_answer_cell(cell: nbformat.NotebookNode) -> bool:
    """nbgrader answer cells: code with ``solution`` and not ``grade``, or markdown with ``solution``."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if not meta.get("solution") or not meta.get("grade_id"):
        return False
    return cell.cell_type == "markdown" or not meta.get("grade")


def load_release(assignment: str, workdir: Path | None = None) -> Release:
    """Generate ``assignment``'s release with nbgrader (in a temporary course) and read its stubs.

    Raises:
        FileNotFoundError: no source notebook for ``assignment``.
    """
    from autograder.releasing.course import generate_assignment, make_course_dir

    source_notebook(assignment)
    with tempfile.TemporaryDirectory(prefix="similarity-release-", dir=workdir) as tmp:
        course = make_course_dir(Path(tmp) / "course", [assignment])
        release_dir = generate_assignment(course, assignment)
        nb = nbformat.read(release_dir / f"{assignment}.ipynb", as_version=4)
    code_stubs, markdown_stubs, functions = {}, {}, {}
    for cell in nb.cells:
        if not is_answer_cell(cell):
            continue
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        if cell.cell_type == "markdown":
            markdown_stubs[grade_id] = cell.source
        else:
            code_stubs[grade_id] = cell.source
            functions[grade_id] = _defined_functions(cell.source)
    return Release(
        assignment=assignment,
        code_stubs=code_stubs,
        markdown_stubs=markdown_stubs,
        boilerplate_code="\n\n".join(c.source for c in nb.cells if c.cell_type == "code"),
        boilerplate_text="\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown"),
        functions=functions,
        notebook=nb,
    )


def own_text(text: str, stub: str) -> str:
    """``text`` without the lines it shares with the release's ``stub`` (matched in order, by a line diff).

    Lines are compared without their trailing whitespace; the kept lines keep their text.
    """
    lines = text.splitlines()
    matcher = difflib.SequenceMatcher(None, [s.rstrip() for s in stub.splitlines()], [s.rstrip() for s in lines],
                                      autojunk=False)
    keep = [True] * len(lines)
    for block in matcher.get_matching_blocks():
        for j in range(block.b, block.b + block.size):
            keep[j] = False
    own = [line for line, kept in zip(lines, keep) if kept]
    return "\n".join(own).strip("\n") + ("\n" if any(s.strip() for s in own) else "")


def answers_from_notebook(nb: nbformat.NotebookNode, release: Release, author: str, origin: str) -> Answers:
    """The author's own text in each of ``release``'s answer cells (the last copy of a duplicated cell wins)."""
    code, markdown, notes, seen = {}, {}, [], set()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if grade_id in release.code_stubs and cell.cell_type == "code":
            target, stub = code, release.code_stubs[grade_id]
        elif grade_id in release.markdown_stubs and cell.cell_type == "markdown":
            target, stub = markdown, release.markdown_stubs[grade_id]
        else:
            continue
        if grade_id in seen:
            notes.append(f"answer cell '{grade_id}' appears more than once; compared the last copy")
        seen.add(grade_id)
        target[grade_id] = own_text(_DELIMITER.sub("", cell.source), stub)
    missing = [g for g in (*release.code_stubs, *release.markdown_stubs) if g not in seen]
    if missing:
        notes.append(f"answer cells missing: {', '.join(missing)}")
    return Answers(author, origin, code, markdown, notes)


def read_answers(raw: bytes, release: Release, author: str, origin: str) -> Answers:
    """Parse one submitted file and return what the student wrote.

    Raises:
        BadInput: the file is empty, not a notebook, of another assignment, or holds no answer.
    """
    from autograder.execution.tampering import notebook_problem, restore_metadata

    nb, problem = notebook_problem(raw, release.notebook, release.assignment)
    if problem is not None:
        raise BadInput(problem)
    restore_metadata(nb, release.notebook)  # the grader's rule: compare the copy of each answer that is graded
    answers = answers_from_notebook(nb, release, author, origin)
    if not set(answers.code) | set(answers.markdown):
        raise BadInput(f"none of assignment '{release.assignment}''s answer cells is in this notebook")
    if not answers.has_answers():
        raise BadInput("no answers: every answer cell is still the release's stub")
    return answers


def reference_answers(release: Release) -> Answers:
    """The reference solution: the source notebook's answer cells, delimiters and stub lines removed."""
    path = source_notebook(release.assignment)
    nb = nbformat.read(path, as_version=4)
    answers = answers_from_notebook(nb, release, "reference solution", str(path))
    answers.notes = []
    return answers


def known_sources(paths: list[Path], release: Release) -> tuple[list[Answers], list[tuple[str, str]]]:
    """Read ``--against`` files: notebooks and ``.py`` files, or folders holding them.

    A notebook with the assignment's answer cells is read like a submission; any other notebook
    or Python file is one document, split into the graded functions it defines by name (its
    other code goes under ``"(other code)"``).

    Returns:
        ``(sources, problems)``: the readable sources, and ``(path, reason)`` for the others.
    """
    files: list[tuple[Path, str]] = []  # (file, its name in the report)
    problems: list[tuple[str, str]] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files.extend((p, f"{path.name}/{p.relative_to(path).as_posix()}") for p in sorted(path.rglob("*"))
                         if p.suffix in SOURCE_SUFFIXES and p.is_file()
                         and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            files.append((path, path.name))
        else:
            problems.append((str(path), "no such file or folder"))
    sources = []
    for file, name in files:
        try:
            sources.append(_read_source(file, release, name))
        except (BadInput, OSError, UnicodeDecodeError) as exc:
            problems.append((str(file), str(exc)))
    return sources, problems


#: The key under which a known source's code outside the graded functions is kept.
OTHER_CODE = "(other code)"


def _read_source(file: Path, release: Release, name: str) -> Answers:
    raw = file.read_bytes()
    if not raw.strip():
        raise BadInput("empty file")
    if file.suffix == ".ipynb":
        try:
            data = json.loads(raw.decode("utf-8-sig"))
            nb = nbformat.from_dict(data)
            cells = nb.get("cells", [])
        except (ValueError, AttributeError) as exc:
            raise BadInput(f"not a readable notebook ({exc})") from exc
        if any(is_answer_cell(c) and c.metadata["nbgrader"]["grade_id"] in release.code_stubs for c in cells):
            return answers_from_notebook(nb, release, name, str(file))
        code = "\n\n".join(c.get("source", "") for c in cells if c.get("cell_type") == "code")
        text = "\n\n".join(c.get("source", "") for c in cells if c.get("cell_type") == "markdown")
    else:
        code, text = raw.decode("utf-8-sig"), ""
    answers = Answers(name, str(file), split_by_function(code, release), {})
    if text.strip():
        answers.markdown = {g: text for g in release.markdown_stubs}
    if not answers.has_answers():
        raise BadInput("no code in this file")
    return answers


def split_by_function(code: str, release: Release) -> dict[str, str]:
    """``grade_id -> the source of the top-level functions it defines``; the rest under :data:`OTHER_CODE`.

    Code that does not parse (a notebook with shell magics, Python 2) stays whole under
    :data:`OTHER_CODE`.
    """
    by_name = {name: grade_id for grade_id, names in release.functions.items() for name in names}
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return {OTHER_CODE: code}
    lines = code.splitlines()
    parts: dict[str, list[str]] = {}
    used = [False] * len(lines)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in by_name:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            parts.setdefault(by_name[node.name], []).append("\n".join(lines[first:node.end_lineno]))
            used[first:node.end_lineno] = [True] * (node.end_lineno - first)
    other = "\n".join(line for line, u in zip(lines, used) if not u).strip()
    result = {grade_id: "\n\n".join(chunks) + "\n" for grade_id, chunks in parts.items()}
    if other:
        result[OTHER_CODE] = other + "\n"
    return result


def _defined_functions(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
