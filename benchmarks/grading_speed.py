"""Grading speed: plain ``nbgrader autograde`` (serial) against ``python -m autograder grade --jobs N``.

Both grade the same copies of an assignment's correct solution, in the same run, on the
same machine; the script prints both wall times, their ratio (goal: at least 1.8 with
``--jobs 2`` on 2 cores), whether the two ``grades.csv`` files are identical, and, per
submission, how ``grade``'s time splits between start-up (process, temporary course,
kernel start, nbgrader's bookkeeping) and the notebook's own work (executing its cells).

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

        out = work / "ours"
        cmd = [sys.executable, "-m", "autograder", "grade", str(course / "submitted"), "--out", str(out),
               "--jobs", str(args.jobs), "--quiet"]
        start, cpu0 = time.perf_counter(), _children_cpu()
        proc = subprocess.run(cmd, cwd=ROOT, env=kit_environment(), capture_output=True, text=True, timeout=7200)
        ours, ours_cpu = time.perf_counter() - start, _children_cpu() - cpu0
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return 1
        print(f"python -m autograder grade --jobs {args.jobs}:        {ours:7.1f} s")
        print(f"speed-up: {plain / ours:.2f}x (goal >= 1.8x with --jobs 2 on 2 cores)")
        same = (out / "grades.csv").read_text() == (work / "plain.csv").read_text()
        print(f"grades.csv identical to nbgrader's: {'yes' if same else 'NO'}")

        timings = [json.loads(p.read_text())["timings"] for p in (out / "grading").glob("*/*.json")]
        cells = [t.get("cells", 0.0) for t in timings]
        startup = [t["total"] - t.get("cells", 0.0) for t in timings]
        kernel = [t.get("kernel_start", 0.0) for t in timings]
        print(f"per submission in grade (mean of {len(timings)}): {statistics.mean(t['total'] for t in timings):.1f} s "
              f"= notebook's own work {statistics.mean(cells):.1f} s + start-up {statistics.mean(startup):.1f} s "
              f"(of which kernel start {statistics.mean(kernel):.1f} s)")
        per_plain = plain / args.copies
        print(f"plain nbgrader: {per_plain:.1f} s per submission, all included")
        print(f"CPU time per submission (user+sys, all processes): plain {plain_cpu / args.copies:.1f} s, "
              f"grade {ours_cpu / args.copies:.1f} s; load average during the run: {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores (other work on the machine slows both)")
        return 0 if same else 1


def _children_cpu() -> float:
    """User + system CPU seconds of every finished child process (and their waited-for children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.exit(main())
