"""``python -m autograder <command>``: the kit's grading command line.

Commands (``python -m autograder <command> --help`` for each):
  release [ASSIGNMENT ...]     check the sources' nbgrader metadata, run generate_assignment, and write
                               the student bundle dist/<assignment>.zip
  grade SUBMISSIONS            grade a folder or zip of submissions (nbgrader or LMS layout) in
                               parallel into an nbgrader course: gradebook.db, grades.csv, tests.csv
  merge SHARD_OUT ... --out O  join the outputs of `grade --shard I/N` runs into one course
  feedback                     write each student's HTML feedback (hidden tests never shown)
  export                       write grades.csv (nbgrader's columns) and tests.csv (one row per test)
  manual write | read CSV ...  grade the written questions by question: one HTML page per question with
                               every student's answer; the exported scores back in as manual grades
  demo                         release, sample submissions, parallel grading, the grade table (offline)
  gradescope ASSIGNMENT        write dist/<assignment>-gradescope.zip for Gradescope
  references [ASSIGNMENT ...]  regenerate the hidden tests' reference files; say what changed
  similarity SUBMISSIONS       which submissions share code, and which match the reference or --against
                               sources: similarity.csv, an HTML report, a table on stdout
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autograder import COURSE_DIR, REPO_ROOT, assignments, source_notebook
from autograder.execution.nbgrader_run import NbgraderError

DEFAULT_OUT = "grading_out"


def cmd_references(args: argparse.Namespace) -> int:
    from autograder.judging.references import regenerate
    from autograder.judging.spec import assignments_with_specs

    names = args.assignments or assignments_with_specs()
    changed = 0
    for name in names:
        result = regenerate(name, write=not args.check)
        added = ", ".join(f"{f} ({n} cases)" for f, n in result.added.items())
        if result.new:
            print(f"{name}: new reference file {result.path}")
        elif result.changes:
            changed += 1
            print(f"{name}: CHANGED {result.path}")
            for line in result.changes:
                print(f"    {line}")
            if added:
                print(f"    added: {added}")
        elif added:  # a new spec's cases: nothing stored has moved
            print(f"{name}: added {added}; the other cases unchanged (within tolerance) {result.path}")
        else:
            print(f"{name}: unchanged (within tolerance) {result.path}")
    return 1 if (changed and args.check) else 0


def cmd_release(args: argparse.Namespace) -> int:
    from autograder.releasing.bundle import build_bundle
    from autograder.releasing.course import generate_assignment

    names = args.assignments or assignments()
    for name in names:
        source_notebook(name)
        release = generate_assignment(COURSE_DIR, name)
        bundle = build_bundle(name, release, Path(args.dist))
        print(f"{name}: release written to {release}; student bundle {bundle}")
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from autograder.batch.grading import grade
    from autograder.batch.scheduler import default_jobs
    from autograder.execution import sandbox
    from autograder.execution.limits import from_args

    jobs = args.jobs or default_jobs()
    try:
        limits = from_args(args, jobs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    plan = sandbox.plan(files=True, network=limits.network_isolation)
    if not plan.files_isolated:
        if not args.allow_unsandboxed:
            print(f"error: refusing to grade: {plan.note}", file=sys.stderr)
            return 2
        limits = limits.replace(sandbox=False)
        print(sandbox.UNSANDBOXED_WARNING, file=sys.stderr)
        plan = sandbox.plan(files=False, network=limits.network_isolation)
    if not args.quiet:
        from autograder.execution.warm_kernels import unavailable_reason

        why_cold = "--cold-kernels" if not args.warm_kernels else unavailable_reason(plan.files_isolated)
        kernels = f"kernels start cold ({why_cold})" if why_cold else "kernels are forked from a warm template"
        print(f"grading with {jobs} processes; per submission: {limits.timeout:.0f} s, "
              f"{limits.memory / 1024**3:.1f} GiB; {plan.note}; {kernels}", file=sys.stderr)
    from autograder.batch.shards import shard_from_environment

    shard = shard_from_environment(args.shard, args.shard_count)
    if shard is not None and not args.quiet:
        print(f"grading shard {shard} of the submissions", file=sys.stderr)
    run = grade(Path(args.submissions), Path(args.out), jobs=jobs, limits=limits, assignment=args.assignment,
                feedback=args.feedback, progress=not args.quiet, keep_work=args.keep_work, shard=shard,
                force=args.force, warm_kernels=args.warm_kernels)
    print(run.summary())
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from autograder.batch.merge import merge

    report = merge([Path(d) for d in args.shards], Path(args.out), partial=args.partial)
    print(report.summary())
    return 1 if report.problems and not args.partial else 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from autograder.feedback.pages import FeedbackLeakError, generate_feedback

    out = Path(args.out)
    folders = sorted(p for p in (out / "autograded").glob("*/*") if p.is_dir())
    written, failed = 0, 0
    for folder in folders:
        student, name = folder.parent.name, folder.name
        if (args.assignment and name != args.assignment) or (args.student and student != args.student):
            continue
        try:
            page = generate_feedback(out, name, student)
        except FeedbackLeakError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if page is not None:
            written += 1
            print(page)
    print(f"{written} feedback pages written under {out / 'feedback'}", file=sys.stderr)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from autograder.batch.grading import db_url, load_results
    from autograder.batch.results import export_grades, write_test_csv

    out = Path(args.out)
    if not (out / "gradebook.db").exists():
        raise FileNotFoundError(f"no gradebook at {out / 'gradebook.db'}; run `python -m autograder grade` first")
    grades = export_grades(db_url(out), Path(args.to) if args.to else out / "grades.csv")
    tests = write_test_csv(load_results(out), Path(args.tests_to) if args.tests_to else out / "tests.csv")
    print(f"{grades}\n{tests}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from autograder.batch.demo import main as demo_main
    from autograder.similarity.report import print_similarity

    return demo_main(Path(args.out) if args.out else None, args.jobs, args.assignments or None,
                     similarity=print_similarity)


def cmd_gradescope(args: argparse.Namespace) -> int:
    from autograder.execution.isolation import parse_size
    from autograder.releasing.gradescope import build

    path = build(args.assignment, Path(args.dist), timeout=args.timeout, memory=parse_size(args.memory_limit),
                 allow_unsandboxed=args.allow_unsandboxed)
    print(f"{args.assignment}: Gradescope autograder bundle {path}")
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    from autograder.similarity.report import summary_table, write_report
    from autograder.similarity.run import compare_submissions

    runs = compare_submissions(Path(args.submissions), args.assignment, [Path(p) for p in args.against],
                               threshold=args.threshold, min_tokens=args.min_tokens, jobs=args.jobs,
                               progress=not args.quiet)
    out = Path(args.out)
    for run in runs:
        folder = out if len(runs) == 1 else out / run.assignment
        paths = write_report(run, folder)
        print(summary_table(run))
        print(f"report: {paths['index']}; pairs: {paths['csv']}; written answers: {paths['markdown_csv']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from autograder.execution.limits import add_arguments as add_limit_arguments

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__, formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("references", help="regenerate the hidden tests' reference files",
                       description="Regenerate autograder/references/<assignment>.pt and say which changed.")
    p.add_argument("assignments", nargs="*", help="assignments (default: all with hidden tests)")
    p.add_argument("--check", action="store_true",
                   help="only compare, write nothing; exit 1 if a stored reference changed beyond tolerance (an "
                        "added function is no change)")
    p.set_defaults(func=cmd_references)

    p = sub.add_parser("release", help="build the student release and bundle", formatter_class=fmt,
                       description="Check each source notebook's nbgrader metadata (duplicate grade_ids, test "
                                   "cells without points, solution or hidden-test delimiters in the wrong cells), "
                                   "run nbgrader generate_assignment into assignments/release/, and write the "
                                   "student bundle <dist>/<assignment>.zip (release notebook, cs_lib, "
                                   "requirements-student.txt, setup_colab.sh, datasets/download.py).\n\n"
                                   "example: python -m autograder release network_visualization")
    p.add_argument("assignments", nargs="*", help="assignments (default: all)")
    p.add_argument("--dist", default=str(REPO_ROOT / "dist"), help="where the zips go (default: dist/)")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("grade", help="grade submissions in parallel", formatter_class=fmt,
                       description="Grade every notebook under SUBMISSIONS, each in its own process and temporary "
                                   "nbgrader course, and merge the grades into the nbgrader course --out "
                                   "(gradebook.db, submitted/, autograded/, grades.csv, tests.csv).\n\n"
                                   "SUBMISSIONS: a folder or .zip in nbgrader's layout "
                                   "(submitted/<student>/<assignment>/<assignment>.ipynb) or an LMS export "
                                   "(<student>_<anything>.ipynb; the newest file per student wins).\n\n"
                                   "examples:\n"
                                   "  python -m autograder grade submissions.zip --out grading_out\n"
                                   "  python -m autograder grade canvas/ --assignment style_transfer --jobs 8 "
                                   "--memory-limit 6GiB")
    p.add_argument("submissions", help="folder or zip of submissions")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output nbgrader course (default: {DEFAULT_OUT}/)")
    p.add_argument("--jobs", "-j", type=int, default=None, help="submissions graded at once (default: CPU cores)")
    p.add_argument("--assignment", help="grade LMS-style files as this assignment (default: from the file name "
                                        "or the notebook's cells)")
    add_limit_arguments(p)
    p.add_argument("--allow-unsandboxed", action="store_true",
                   help="grade even where the kernel cannot be sandboxed (macOS, Ubuntu 24.04 without user "
                        "namespaces): student code can then read the solutions and other students' files")
    p.add_argument("--no-feedback", dest="feedback", action="store_false",
                   help="skip the students' HTML feedback pages (written by default)")
    p.add_argument("--keep-work", action="store_true", help="keep the temporary per-submission courses")
    p.add_argument("--cold-kernels", dest="warm_kernels", action="store_false",
                   help="start every kernel as a new interpreter (default, as root with the sandbox: fork them from "
                        "a template that has imported torch, about 2.5 s less CPU per kernel)")
    p.add_argument("--shard", metavar="I/N",
                   help="grade only shard I (0-based) of N, split by a hash of the student id (default: from "
                        "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with --shard-count)")
    p.add_argument("--shard-count", type=int, metavar="N",
                   help="number of shards, with the index from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX")
    p.add_argument("--force", action="store_true",
                   help="regrade submissions whose result is already in --out with the same input (default: "
                        "skip them, so a rerun only grades what is new or changed)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("merge", help="join shard outputs into one course", formatter_class=fmt,
                       description="Merge the --out folders of `grade --shard I/N` runs into one nbgrader course "
                                   "with the same gradebook.db, grades.csv, tests.csv, submitted/, autograded/ "
                                   "and feedback/ as one single-machine `grade` of all the submissions. A shard "
                                   "that did not finish or is missing is reported with its students, and nothing "
                                   "is written (exit 1) unless --partial. A student with results in two folders "
                                   "keeps the newer one (reported).\n\n"
                                   "example: python -m autograder merge out/shard_0 out/shard_1 out/shard_2 "
                                   "--out out/merged")
    p.add_argument("shards", nargs="+", metavar="SHARD_OUT", help="the shards' --out folders")
    p.add_argument("--out", required=True, help="the merged course (a new folder, or one to update)")
    p.add_argument("--partial", action="store_true",
                   help="write the merged course even when students have no result (they are listed)")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("feedback", help="write HTML feedback without hidden tests", formatter_class=fmt,
                       description="Render <out>/autograded/<student>/<assignment> to "
                                   "<out>/feedback/<student>/<assignment>/<assignment>.html with nbgrader's feedback "
                                   "template and the gradebook's scores (manual grades included). Hidden-test code, "
                                   "and the frames and lines of hidden tests in tracebacks, are removed.\n\n"
                                   "example: python -m autograder feedback --out grading_out --student smithjohn")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"the graded course (default: {DEFAULT_OUT}/)")
    p.add_argument("--assignment", help="only this assignment")
    p.add_argument("--student", help="only this student")
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("export", help="write grades.csv and tests.csv", formatter_class=fmt,
                       description="Write grades.csv with nbgrader's CSV export (as `nbgrader export`; manual "
                                   "grades from formgrade included) and the per-test tests.csv.\n\n"
                                   "example: python -m autograder export --out grading_out --to final.csv")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"the graded course (default: {DEFAULT_OUT}/)")
    p.add_argument("--to", help="grades CSV path (default: <out>/grades.csv)")
    p.add_argument("--tests-to", help="per-test CSV path (default: <out>/tests.csv)")
    p.set_defaults(func=cmd_export)

    from autograder.manual.cli import add_parser as add_manual_parser

    add_manual_parser(sub, DEFAULT_OUT)

    p = sub.add_parser("demo", help="release, sample submissions, parallel grading (offline)",
                       description="Build every assignment's release (those with specs), "
                                   "make four sample submissions each (correct, blank, one wrong function, one "
                                   "that crashes its kernel halfway), grade them in parallel and print the table.")
    p.add_argument("assignments", nargs="*", help="assignments (default: all with specs)")
    p.add_argument("--out", help="working folder (default: a new temporary folder)")
    p.add_argument("--jobs", "-j", type=int, default=None, help="submissions graded at once (default: CPU cores)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("gradescope", help="write the Gradescope autograder zip", formatter_class=fmt,
                       description="Write <dist>/<assignment>-gradescope.zip (setup.sh, run_autograder, the "
                                   "grader). Upload it as a Gradescope programming assignment's autograder; "
                                   "students submit <assignment>.ipynb.\n\n"
                                   "example: python -m autograder gradescope style_transfer")
    p.add_argument("assignment")
    p.add_argument("--dist", default=str(REPO_ROOT / "dist"), help="where the zip goes (default: dist/)")
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds per submission (default: 1200)")
    p.add_argument("--memory-limit", default="3GiB", help="resident memory per submission (default: 3GiB)")
    p.add_argument("--allow-unsandboxed", action="store_true",
                   help="grade even if Gradescope's container forbids the kernel sandbox (results then say so)")
    p.set_defaults(func=cmd_gradescope)

    from autograder.similarity import DEFAULT_THRESHOLD, MIN_MATCHING_TOKENS

    p = sub.add_parser("similarity", help="find submissions that share code or copy a known solution",
                       formatter_class=fmt,
                       description="Compare what students wrote in the answer cells (the release's stubs, "
                                   "signatures, docstrings and given code never count) with copydetect's "
                                   "winnowing, every pair of students and every student against the known "
                                   "sources: the reference solution and any --against files. Writes "
                                   "<out>/similarity.csv (code), similarity_markdown.csv (written answers), "
                                   "skipped.csv and index.html with one page per pair; prints a table.\n\n"
                                   "A score is the share of one side's answers that lie in regions the other "
                                   "side also has (0..1, each direction).\n\n"
                                   "SUBMISSIONS: as for grade (folder or zip, nbgrader or LMS layout, newest "
                                   "file per student).\n\n"
                                   "example: python -m autograder similarity canvas.zip --against found_online/ "
                                   "--out similarity_out")
    p.add_argument("submissions", help="folder or zip of submissions")
    p.add_argument("--assignment", help="read LMS-style files as this assignment (default: from the file name "
                                        "or the notebook's cells)")
    p.add_argument("--against", nargs="+", default=[], metavar="PATH",
                   help="known sources that are not students (notebooks, .py files, folders of them)")
    p.add_argument("--out", default="similarity_out", help="report folder (default: similarity_out/)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"flag pairs whose score reaches this, in either direction (default: {DEFAULT_THRESHOLD})")
    p.add_argument("--min-tokens", type=int, default=MIN_MATCHING_TOKENS,
                   help=f"never flag fewer shared tokens than this (default: {MIN_MATCHING_TOKENS})")
    p.add_argument("--jobs", "-j", type=int, default=None, help="processes for reading (default: CPU cores)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_similarity)
    return parser


def main(argv: list[str] | None = None) -> int:
    # jsonschema (under nbformat) imports rfc3987_syntax where it is installed, which builds 39 parsers at
    # import: 0.7 s of every command. It checks the "iri" string format, which no notebook schema uses.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    args = build_parser().parse_args(argv)
    from autograder.releasing.bundle import BundleError
    from autograder.releasing.metadata_check import MetadataError

    try:
        return args.func(args)
    except (NbgraderError, FileNotFoundError, MetadataError, BundleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
