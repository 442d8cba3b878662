"""``python -m autograder manual``: grade the written questions by question.

``manual write`` writes the pages (:mod:`autograder.manual.page`); ``manual read SCORES.csv ...`` writes the
scores into the gradebook (:mod:`autograder.manual.scores`) and rewrites ``grades.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Grade the written (markdown) questions by question, for every student at once.

  write   one HTML page per question under <out>/manual/<assignment>/<grade_id>.html: the question, the
          rubric and the model answer at the top, then every student's answer (identical answers grouped,
          blank ones pre-scored 0) with a score and a comment field, and a button that exports the scores
          as <assignment>.<grade_id>.scores.csv. The page works offline (open it with file://).
  read    check the exported CSV files (unknown students or questions, scores outside 0..points: nothing
          is written, every problem is listed) and write them into <out>/gradebook.db as nbgrader manual
          grades and comments; then rewrite <out>/grades.csv. Run `feedback` to update the feedback pages.

examples:
  python -m autograder manual --out grading_out write --assignment network_visualization
  python -m autograder manual --out grading_out read ~/Downloads/network_visualization.*.scores.csv
"""


def add_parser(sub: argparse._SubParsersAction, default_out: str) -> None:
    """Register ``manual`` and its ``write`` and ``read`` actions on the top-level subparsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("manual", help="grade written questions by question (HTML pages, scores CSV back in)",
                       description=DESCRIPTION, formatter_class=fmt)
    p.add_argument("--out", default=default_out, help=f"the graded course (default: {default_out}/)")
    actions = p.add_subparsers(dest="action", required=True)
    w = actions.add_parser("write", help="write one grading page per written question",
                           description="Write <out>/manual/<assignment>/<grade_id>.html and <out>/manual/index.html.")
    w.add_argument("--assignment", action="append",
                   help="only this assignment (repeatable; default: every assignment with submissions)")
    r = actions.add_parser("read", help="write exported scores into the gradebook as manual grades",
                           description="Validate the CSV files exported by the pages and write them into the "
                                       "gradebook as manual grades and comments; then rewrite grades.csv.")
    r.add_argument("scores", nargs="+", help="CSV files (columns student, assignment, notebook, grade_id, "
                                             "score, comment)")
    p.set_defaults(func=run)


def _graded_assignments(out: Path) -> list[str]:
    """Assignments with at least one graded submission in ``out``."""
    return sorted({p.name for p in (out / "autograded").glob("*/*") if p.is_dir()})


def run(args: argparse.Namespace) -> int:
    """Run ``manual write`` or ``manual read``; 0 on success, 1 when there was nothing to do."""
    from autograder.batch.grading import db_url
    from autograder.batch.results import export_grades

    out = Path(args.out)
    if not (out / "gradebook.db").exists():
        raise FileNotFoundError(f"no gradebook at {out / 'gradebook.db'}; pass the --out folder of "
                                "`python -m autograder grade`")
    if args.action == "write":
        from autograder.manual.page import write_pages

        names = args.assignment or _graded_assignments(out)
        pages = write_pages(out, names)
        for page in pages:
            print(page)
        print(f"{len(pages)} question pages for {', '.join(names) or 'no assignment'}; index: "
              f"{out / 'manual' / 'index.html'}", file=sys.stderr)
        return 0 if pages else 1
    from autograder.manual.scores import parse_scores, write_scores

    scores = parse_scores(out, [Path(p) for p in args.scores])
    written = write_scores(out, scores)
    grades = export_grades(db_url(out), out / "grades.csv")
    print(f"{written} manual scores written to {out / 'gradebook.db'}; {grades} rewritten. Run "
          f"`python -m autograder feedback --out {out}` to update the feedback pages.")
    return 0
