"""``python -m autograder <command>``: the kit's grading command line.

Commands:
  references [ASSIGNMENT ...]  regenerate the hidden tests' reference files; say what changed
  release [ASSIGNMENT ...]     build the student release under assignments/release/
  demo                         build the release and autograde sample submissions (offline)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder import COURSE_DIR, assignments, source_notebook
from autograder.course import generate_release, make_course_dir
from autograder.nbgrader_run import NbgraderError, run_nbgrader
from autograder.samples import answer_ids, blank_submission, correct_submission, with_one_answer_blank

#: Assignments the demo grades (those with hidden-test modules and reference files).
DEMO_ASSIGNMENTS = ("example",)


def cmd_references(args: argparse.Namespace) -> int:
    from autograder.references import regenerate

    names = args.assignments or [a for a in assignments() if _has_grade_module(a)]
    changed = 0
    for name in names:
        path, changes = regenerate(name)
        if changes is None:
            print(f"{name}: new reference file {path}")
        elif changes:
            changed += 1
            print(f"{name}: CHANGED {path}")
            for line in changes:
                print(f"    {line}")
        else:
            print(f"{name}: unchanged (within tolerance) {path}")
    return 1 if (changed and args.check) else 0


def cmd_release(args: argparse.Namespace) -> int:
    names = args.assignments or assignments()
    for name in names:
        source_notebook(name)
        release = generate_release(COURSE_DIR, name)
        print(f"{name}: release written to {release}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dlcv-demo-"))
    if work.exists() and args.out:
        shutil.rmtree(work)
    course = make_course_dir(work / "course", list(DEMO_ASSIGNMENTS))
    for name in DEMO_ASSIGNMENTS:
        print(f"[{name}] building the student release ...", flush=True)
        release_dir = generate_release(course, name)
        source = nbformat.read(source_notebook(name), as_version=4)
        release = nbformat.read(release_dir / f"{name}.ipynb", as_version=4)
        correct = correct_submission(source, release)
        samples = {"correct": correct, "blank": blank_submission(release)}
        first = answer_ids(source)[0]
        samples[f"missing_{first}"] = with_one_answer_blank(correct, release, first)
        for student, nb in samples.items():
            dest = course / "submitted" / student / name
            dest.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, dest / f"{name}.ipynb")
        print(f"[{name}] autograding {len(samples)} sample submissions with nbgrader ...", flush=True)
        run_nbgrader(["autograde", name, "--force"], course)
    run_nbgrader(["export", "--to", str(work / "grades.csv")], course)
    _print_grade_table(work / "grades.csv")
    print(f"\ngrades.csv: {work / 'grades.csv'}  ({time.perf_counter() - start:.1f} s)")
    return 0


def _print_grade_table(csv_path: Path) -> None:
    import csv

    rows = list(csv.DictReader(open(csv_path, newline="")))
    print(f"\n{'assignment':<24}{'student':<28}{'score':>8}{'max':>8}")
    for r in sorted(rows, key=lambda r: (r["assignment"], r["student_id"])):
        print(f"{r['assignment']:<24}{r['student_id']:<28}{float(r['score']):>8.1f}{float(r['max_score']):>8.1f}")


def _has_grade_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"autograder.grade.{name}") is not None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("references", help="regenerate the hidden tests' reference files")
    p.add_argument("assignments", nargs="*", help="assignments (default: all with hidden tests)")
    p.add_argument("--check", action="store_true", help="exit 1 if a reference changed beyond tolerance")
    p.set_defaults(func=cmd_references)
    p = sub.add_parser("release", help="build the student release with nbgrader generate_assignment")
    p.add_argument("assignments", nargs="*", help="assignments (default: all)")
    p.set_defaults(func=cmd_release)
    p = sub.add_parser("demo", help="build the release and autograde sample submissions, offline")
    p.add_argument("--out", help="working folder (default: a new temporary folder)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (NbgraderError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
