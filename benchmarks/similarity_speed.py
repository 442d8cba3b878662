"""Similarity report speed: ``python -m autograder similarity`` on 300 submissions of network_visualization.

The submissions are generated variants (:mod:`tests.corpus.similarity_samples`): for each graded
function a student takes one of the implementations there are (the reference, or a hand-written
style), disguises it (locals renamed, nested functions moved, other comments), and adds a few
statements of their own between the given ones, so that two students who started from the same
implementation share some of their code but not all of it; about one in twenty answer cells is
left blank. ``--copies`` students then hand in another student's notebook, disguised again.

The command runs as an instructor types it (a fresh interpreter, its own release build and its
progress bar on stderr) with ``--jobs 2``, pinned to two cores where the OS allows. The script
prints the total wall time (goal: under 2 minutes), the time per pair of students, and how many
pairs were flagged.

Usage::

    python benchmarks/similarity_speed.py                  # 300 submissions
    python benchmarks/similarity_speed.py --students 50 --keep /tmp/sim
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder import source_notebook  # noqa: E402
from autograder.similarity.extract import load_release  # noqa: E402
from tests.corpus.similarity_samples import (  # noqa: E402
    ASSIGNMENT,
    STYLES,
    disguise,
    parameters,
    reference_bodies,
    submission,
)

#: Statements a student might add between the given ones (no effect on the result).
OWN_STATEMENTS = [
    "_checked_{n} = {a} + {b}",
    "assert {a} >= 0, 'sanity check {n}'",
    "_shape_note_{n} = ({a}, {b}, {c})",
    "if {a} > {b} * 1000:\n    pass",
    "_tries_{n} = [i * {a} for i in range({b})]",
    "_label_{n} = 'step {a} of {b}'",
    "_scale_{n} = float({a}) / ({b} + 1)",
]


def own_statements(body: str, rng: random.Random, rate: float) -> str:
    """``body`` with a random harmless statement after each statement (at any depth), with probability ``rate``."""
    body = textwrap.dedent(body).strip("\n") + "\n"
    lines = body.splitlines()
    after: dict[int, str] = {}  # line number -> indentation of a statement that ends there
    for node in ast.walk(ast.parse(body)):
        for block in (getattr(node, name, None) for name in ("body", "orelse", "finalbody")):
            if isinstance(block, list):
                for statement in block:
                    if isinstance(statement, ast.stmt) and not isinstance(statement, (ast.Return, ast.Raise)):
                        after.setdefault(statement.end_lineno, " " * statement.col_offset)
    out = []
    for number, line in enumerate(lines, start=1):
        out.append(line)
        if number in after and rng.random() < rate:
            template = rng.choice(OWN_STATEMENTS).format(n=rng.randrange(1000), a=rng.randrange(1, 99),
                                                         b=rng.randrange(1, 99), c=rng.randrange(1, 99))
            out.append(textwrap.indent(template, after[number]))
    return "\n".join(out) + "\n"


def parenthesize_names(body: str, rng: random.Random, rate: float) -> str:
    """``body`` with a random share ``rate`` of its names written ``(name)``: the same program, other tokens."""
    body = textwrap.dedent(body).strip("\n") + "\n"
    tree = ast.parse(body)
    inside_fstrings = {id(n) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for n in ast.walk(node)}
    spots = sorted(((n.lineno, n.col_offset, n.end_col_offset) for n in ast.walk(tree)
                    if isinstance(n, ast.Name) and id(n) not in inside_fstrings and n.lineno == n.end_lineno
                    and rng.random() < rate), reverse=True)
    lines = body.splitlines()
    for line, start, end in spots:
        text = lines[line - 1]
        lines[line - 1] = f"{text[:start]}({text[start:end]}){text[end:]}"
    return "\n".join(lines) + "\n"


def generate(folder: Path, students: int, copies: int, seed: int = 0) -> dict[str, str]:
    """Write ``students`` LMS-style notebooks into ``folder`` (the last ``copies`` copy an earlier one).

    Returns:
        ``student -> the student whose notebook they copied`` for the planted copies.
    """
    rng = random.Random(seed)
    source = nbformat.read(source_notebook(ASSIGNMENT), as_version=4)
    release = load_release(ASSIGNMENT).notebook
    pool = {g: [b, *(s[g] for s in STYLES.values() if g in s)] for g, b in reference_bodies(source).items()}
    keep = {g: parameters(source, g) for g in pool}
    chosen: list[dict[str, str]] = []
    copied: dict[str, str] = {}
    for number in range(students):
        if number >= students - copies:
            original = rng.randrange(students - copies)
            copied[f"student{number:03d}"] = f"student{original:03d}"
            bodies = {g: disguise(b, rng.randrange(10**6), keep[g]) for g, b in chosen[original].items()}
        else:
            bodies = {}
            for grade_id, options in pool.items():
                if rng.random() < 0.05:
                    continue
                body = disguise(rng.choice(options), rng.randrange(10**6), keep[grade_id])
                bodies[grade_id] = parenthesize_names(own_statements(body, rng, rate=0.8), rng, rate=0.35)
        chosen.append(bodies)
        nbformat.write(submission(source, release, bodies), folder / f"student{number:03d}_{ASSIGNMENT}.ipynb")
    return copied


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--copies", type=int, default=15, help="students who hand in another's notebook")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="write the submissions and the report here (default: a temp dir)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="similarity-bench-"))
    folder, out = work / "submissions", work / "report"
    folder.mkdir(parents=True, exist_ok=True)
    planted = folder / "planted_copies.json"
    if planted.exists() and len(list(folder.glob("*.ipynb"))) == args.students:  # --keep from an earlier run
        copied = json.loads(planted.read_text())
        print(f"reusing the {args.students} submissions under {folder}", flush=True)
    else:
        start = time.perf_counter()
        copied = generate(folder, args.students, args.copies)
        planted.write_text(json.dumps(copied, indent=1))
        print(f"generated {args.students} submissions in {time.perf_counter() - start:.1f} s under {folder}",
              flush=True)

    cores = sorted(os.sched_getaffinity(0))[: args.jobs] if hasattr(os, "sched_getaffinity") else None
    command = [sys.executable, "-m", "autograder", "similarity", str(folder), "--assignment", ASSIGNMENT,
               "--jobs", str(args.jobs), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start, cpu_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
                          preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)
    seconds = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if done.returncode != 0:
        print(done.stdout)
        print(f"the command failed (exit {done.returncode})")
        return 1
    print("\n".join(done.stdout.splitlines()[:12]))
    pairs = args.students * (args.students - 1) // 2
    with open(out / "similarity.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    students = sum(r["kind"] == "students" for r in rows)
    group = {name: copied.get(name, name) for name in copied.values()} | copied  # copies share their original
    explained = sum(r["kind"] == "students" and group.get(r["student_a"], r["student_a"])
                  == group.get(r["student_b"], r["student_b"]) for r in rows)
    print(f"\n{args.students} submissions ({pairs} pairs) on {len(cores) if cores else 'all'} cores, "
          f"--jobs {args.jobs}: "
          f"{seconds:.1f} s in all ({'under' if seconds < 120 else 'OVER'} the 2-minute goal), "
          f"{1e3 * seconds / pairs:.2f} ms per pair; flagged {students} pairs of students "
          f"({explained} of them between a planted copy and its original or another copy of it; {args.copies} "
          f"copies were planted) and {len(rows) - students} matches with known sources")
    print(f"CPU time of the command: {cpu:.1f} s ({1e3 * cpu / pairs:.2f} ms per pair); load average while it "
          f"ran: {os.getloadavg()[0]:.1f} (above {len(cores) if cores else os.cpu_count()}, other work shared "
          "these cores and the wall time overstates the command's)")
    return 0 if seconds < 120 else 1


if __name__ == "__main__":
    sys.exit(main())
