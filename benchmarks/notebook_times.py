"""Time every source notebook end to end on this machine's device (CUDA where present), without Jupyter.

Runs each notebook's code cells in order in one namespace, with the solutions in place and the hidden
blocks cut out (what a student who solved everything runs), in normal mode or in grading mode
(``--grading``: ``NBGRADER_EXECUTION=autograde``, the budgets the autograder uses). Needs only torch,
torchvision and the notebooks' own imports, so it runs on a bare GPU machine where no Jupyter is
installed. Prints one line per notebook: device, seconds, and the first error if a cell failed; with
``--parts``, each part's seconds before it, as each part ends.

    python benchmarks/notebook_times.py                       # every assignment, normal mode
    python benchmarks/notebook_times.py --grading mask_rcnn   # one assignment, grading budgets
    python benchmarks/notebook_times.py --parts --random-weights style_transfer   # offline: random weights
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.MULTILINE | re.DOTALL)
MAGIC = re.compile(r"^\s*[%!].*$", re.MULTILINE)


def notebook_code(path: Path) -> list[str]:
    """The code cells of a source notebook, hidden blocks and IPython magics removed."""
    return [code for _, code in notebook_parts(path)]


def notebook_parts(path: Path) -> list[tuple[str, str]]:
    """``(part, code)`` for each code cell: part is the last ``## `` heading above it ("setup" before any)."""
    nb = json.loads(path.read_text())
    cells, part = [], "setup"
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            headings = [line[3:].strip() for line in source.splitlines() if line.startswith("## ")]
            part = headings[-1] if headings else part
        elif cell["cell_type"] == "code":
            cells.append((part, MAGIC.sub("", HIDDEN.sub("", source))))
    return cells


def run(assignment: str, grading: bool, parts: dict[str, float] | None = None,
        part_done: Callable[[str], None] | None = None) -> tuple[float, str]:
    """Execute one notebook's code in a fresh namespace; return (seconds, first error or '').

    ``parts``, when given, receives the seconds spent in each ``## `` part of the notebook, and
    ``parts["<part> (cpu)"]`` this process's CPU seconds there (user + system, all threads): on a busy
    machine the wall time grows with the load, the CPU time much less. ``part_done(part)`` is called as
    each part ends (the last one too, after an error), so that a run stopped at a time limit has
    reported the parts it finished.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = ROOT / "assignments" / "source" / assignment
    os.environ.pop("NBGRADER_EXECUTION", None)
    if grading:
        os.environ["NBGRADER_EXECUTION"] = "autograde"
    namespace: dict[str, object] = {"__name__": "__main__"}
    start = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(folder)
    error = ""
    current = None
    try:
        for i, (part, code) in enumerate(notebook_parts(folder / f"{assignment}.ipynb")):
            if part_done is not None and current is not None and part != current:
                part_done(current)
            current = part
            cell_start, cpu_start = time.perf_counter(), time.process_time()
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(code, f"{assignment}.ipynb cell {i}", "exec"), namespace)  # noqa: S102
            except Exception as exc:  # noqa: BLE001 - report the first failing cell and stop
                error = f"cell {i}: {type(exc).__name__}: {exc}"
                traceback.print_exc(limit=3)
                break
            finally:
                if parts is not None:
                    parts[part] = parts.get(part, 0.0) + time.perf_counter() - cell_start
                    cpu = f"{part} (cpu)"
                    parts[cpu] = parts.get(cpu, 0.0) + time.process_time() - cpu_start
            plt.close("all")
    finally:
        os.chdir(cwd)
    if part_done is not None and current is not None:
        part_done(current)
    return time.perf_counter() - start, error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignments", nargs="*", help="assignments (default: all source notebooks)")
    parser.add_argument("--grading", action="store_true", help="grading-mode budgets (NBGRADER_EXECUTION)")
    parser.add_argument("--parts", action="store_true", help="also print the seconds of each ## part")
    parser.add_argument("--random-weights", action="store_true",
                        help="where pretrained weights are missing (offline), use the seeded random initialisation "
                             "that grading uses: same architecture, same time, other pictures")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    if args.random_weights:
        _allow_random_weights()

    names = args.assignments or sorted(p.name for p in (ROOT / "assignments" / "source").iterdir()
                                       if (p / f"{p.name}.ipynb").exists())
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    failed = 0
    print(f"{'assignment':24s} {'mode':8s} {'device':24s} {'seconds':>8s}  error")
    for name in names:
        parts: dict[str, float] = {}

        def print_part(part: str, parts: dict[str, float] = parts) -> None:
            print(f"    {parts[part]:8.1f} s wall {parts[part + ' (cpu)']:8.1f} s cpu  {part}", flush=True)

        seconds, error = run(name, args.grading, parts, print_part if args.parts else None)
        failed += bool(error)
        print(f"{name:24s} {'grading' if args.grading else 'normal':8s} {device:24s} {seconds:8.1f}  {error}",
              flush=True)
    return 1 if failed else 0


def _allow_random_weights() -> None:
    """Make ``cs_lib.models`` fall back to random weights outside grading too (it says so when it does)."""
    from cs_lib import models

    build = models._build

    def build_allowing_random(name: str, weights: str, allow_random: bool | None, progress: bool) -> object:
        return build(name, weights, True if allow_random is None else allow_random, progress)

    models._build = build_allowing_random


if __name__ == "__main__":
    sys.exit(main())
