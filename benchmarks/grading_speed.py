"""Grading speed: plain ``nbgrader autograde`` (serial) against ``python -m autograder grade --jobs N``.

All three grade the same copies of an assignment's correct solution, in the same run, on the
same machine: plain serial nbgrader, ``grade`` with ``--cold-kernels`` (every kernel a new
interpreter) and ``grade`` with warm kernels (forked from a template that has imported torch:
:mod:`autograder.execution.warm_kernels`). The script prints each wall time, the ratios (goal:
at least 3x with warm kernels, ``--jobs 2`` on 2 cores), whether each ``grades.csv`` is identical
to nbgrader's, and where a submission's seconds go (kernel start, cells and the judge's share,
nbgrader's bookkeeping, the feedback page).

Usage::

    python benchmarks/grading_speed.py                      # network_visualization if present, else example
    python benchmarks/grading_speed.py --assignment example --copies 6

Both timings include their command's interpreter start-up; the release
(``generate_assignment``) plain nbgrader needs is built before its clock starts, while
``grade`` builds its own inside its time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder import source_notebook  # noqa: E402
from autograder.batch.samples import correct_submission  # noqa: E402
from autograder.execution.nbgrader_run import kit_environment, run_nbgrader  # noqa: E402
from autograder.judging.spec import assignments_with_specs  # noqa: E402
from autograder.releasing.course import generate_release, make_course_dir  # noqa: E402


def default_assignment() -> str:
    """``network_visualization`` when it can be graded here, else ``example``."""
    names = assignments_with_specs()
    return "network_visualization" if "network_visualization" in names else "example"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", default=None, help="default: network_visualization, else example")
    parser.add_argument("--copies", type=int, default=20, help="submissions to grade (default: 20)")
    parser.add_argument("--jobs", type=int, default=2, help="grade's --jobs (default: 2)")
    args = parser.parse_args()
    assignment = args.assignment or default_assignment()

    with tempfile.TemporaryDirectory(prefix="grading-speed-") as tmp:
        work = Path(tmp)
        course = make_course_dir(work / "plain", [assignment])
        release = nbformat.read(generate_release(course, assignment) / f"{assignment}.ipynb", as_version=4)
        correct = correct_submission(nbformat.read(source_notebook(assignment), as_version=4), release)
        for i in range(args.copies):
            folder = course / "submitted" / f"student{i:03d}" / assignment
            folder.mkdir(parents=True)
            nbformat.write(correct, folder / f"{assignment}.ipynb")
        print(f"{assignment}: {args.copies} copies of the correct solution", flush=True)

        start, cpu0 = time.perf_counter(), _children_cpu()
        run_nbgrader(["autograde", assignment], course, timeout=7200)
        plain, plain_cpu = time.perf_counter() - start, _children_cpu() - cpu0
        print(f"plain nbgrader autograde (serial):          {plain:7.1f} s", flush=True)
        run_nbgrader(["export", "--to", str(work / "plain.csv")], course)

        per_plain = plain / args.copies
        print(f"plain nbgrader: {per_plain:.1f} s per submission, all included; CPU {plain_cpu / args.copies:.1f} s")
        same = True
        for label, extra in (("cold kernels", ["--cold-kernels"]), ("warm kernels", [])):
            out = work / label.replace(" ", "-")
            cmd = [sys.executable, "-m", "autograder", "grade", str(course / "submitted"), "--out", str(out),
                   "--jobs", str(args.jobs), "--quiet", *extra]
            start, cpu0 = time.perf_counter(), _children_cpu()
            proc = subprocess.run(cmd, cwd=ROOT, env=kit_environment(), capture_output=True, text=True, timeout=7200)
            ours, ours_cpu = time.perf_counter() - start, _children_cpu() - cpu0
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                return 1
            identical = (out / "grades.csv").read_text() == (work / "plain.csv").read_text()
            same = same and identical
            print(f"\ngrade --jobs {args.jobs}, {label}: {ours:7.1f} s, speed-up {plain / ours:.2f}x (goal >= 3x for "
                  f"warm kernels with --jobs 2 on 2 cores); grades.csv identical to nbgrader's: "
                  f"{'yes' if identical else 'NO'}")
            timings = [json.loads(p.read_text())["timings"] for p in (out / "grading").glob("*/*.json")]
            print(_where_time_goes(timings))
            print(f"  the batch's own start and end (release, judges' warm-up, template, gradebook): "
                  f"{ours - sum(t['total'] for t in timings) / args.jobs:.1f} s of wall time; CPU per submission, all "
                  f"processes that ended: {ours_cpu / args.copies:.1f} s")
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work on the "
              f"machine slows every run)")
        return 0 if same else 1


def _where_time_goes(timings: list[dict]) -> str:
    """Mean seconds per submission: kernel start, cells (of which the judge), nbgrader's own work, feedback."""
    def mean(key: str) -> float:
        return statistics.mean(t.get(key, 0.0) for t in timings)

    rest = mean("autograde") - mean("cells") - mean("kernel_start")
    return (f"  per submission (mean of {len(timings)}): {mean('total'):.2f} s = kernel start "
            f"{mean('kernel_start'):.2f}"
            f" + cells {mean('cells'):.2f} (judge {mean('judge'):.2f}) + nbgrader's bookkeeping {rest:.2f}"
            f" + feedback page {mean('feedback'):.2f} + set-up {mean('setup'):.2f}; warm kernel starts "
            f"{mean('warm_starts'):.0f} per submission")


def _children_cpu() -> float:
    """User + system CPU seconds of every finished child process (and their waited-for children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.exit(main())
