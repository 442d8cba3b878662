"""Reference solutions, read from the source notebooks (the single source of truth).

A source notebook's reference implementation is the code between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` in its autograded-answer cells.
:func:`load_solutions` executes, in a fresh namespace and in notebook order:

1. the code cells tagged ``imports`` (the notebook's import cell), then
2. every autograded-answer cell (nbgrader metadata ``solution: true, grade: false``).

Answer cells must therefore only define functions and constants: no heavy work, no
plotting. The hidden tests compare student functions with these references on
inputs drawn at grading time.
"""

from __future__ import annotations

import functools
import types

import nbformat

from autograder import source_notebook


def answer_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The code cells that :func:`load_solutions` executes, in notebook order."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        tags = cell.metadata.get("tags", [])
        if "imports" in tags or (meta.get("solution") and not meta.get("grade")):
            cells.append(cell)
    return cells


@functools.cache
def load_solutions(assignment: str) -> types.SimpleNamespace:
    """Execute ``assignment``'s import and answer cells; return what they define.

    Returns:
        A namespace whose attributes are the notebook's reference functions, e.g.
        ``load_solutions("example").softmax``.
    """
    path = source_notebook(assignment)
    nb = nbformat.read(path, as_version=4)
    namespace: dict[str, object] = {"__name__": f"autograder.judging.solutions.{assignment}"}
    for cell in answer_cells(nb):
        code = compile(cell.source, f"{path.name}:{cell.metadata.get('nbgrader', {}).get('grade_id', 'imports')}",
                       "exec")
        exec(code, namespace)  # noqa: S102 - our own source notebook
    return types.SimpleNamespace(**{k: v for k, v in namespace.items() if not k.startswith("__")})
