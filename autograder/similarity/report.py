"""The similarity report: ``similarity.csv``, an HTML index with one page per pair, and a table for stdout.

Files written under ``out`` (under ``out/<assignment>/`` when several assignments were found):

- ``similarity.csv``: one row per flagged pair of code answers: ``kind`` (``students`` or
  ``known source``), ``student_a``, ``student_b`` (the source's name for a known source), ``score``
  (what the report is sorted by), ``score_a`` and ``score_b`` (the share of each side's answers in
  regions shared with the other), ``matching_tokens``, and ``functions``: each graded function that
  reaches the threshold, as ``name (a/b)`` with both directions' scores (``name (a)`` for a source);
- ``similarity_markdown.csv``: the same for the written (markdown) answers;
- ``skipped.csv``: every file or source that was not compared, with the reason;
- ``index.html``: the three tables sorted by score, linking ``pairs/<n>.html``, one page per pair
  with the matching regions of each function highlighted side by side (copydetect's
  ``compare_files`` and ``highlight_overlap``).

The CSV rows and the pages depend only on the inputs: two runs write the same bytes.
:func:`print_similarity` is the demo's part (``python -m autograder demo``): the samples compared, reported
and printed.
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

from copydetect import compare_files
from copydetect.utils import highlight_overlap

from autograder.similarity.compare import AnswerFingerprint, FunctionMatch, Pair
from autograder.similarity.run import SimilarityRun, compare_submissions

CSV_COLUMNS = ["kind", "student_a", "student_b", "score", "score_a", "score_b", "matching_tokens", "functions"]

#: Lines of context kept around highlighted regions of a known source on a pair page.
SOURCE_CONTEXT_LINES = 6


def write_report(run: SimilarityRun, out: Path) -> dict[str, Path]:
    """Write the CSVs, the index and the pair pages of ``run`` under ``out``; return their paths by name."""
    out.mkdir(parents=True, exist_ok=True)
    pages = out / "pairs"
    pages.mkdir(exist_ok=True)
    for old in pages.glob("*.html"):
        old.unlink()
    paths = {
        "csv": _write_text(out / "similarity.csv", pairs_csv(run.code_pairs)),
        "markdown_csv": _write_text(out / "similarity_markdown.csv", pairs_csv(run.markdown_pairs)),
        "skipped": _write_text(out / "skipped.csv", _csv([["file", "reason"], *map(list, run.skipped)])),
    }
    links: dict[int, str] = {}
    for number, pair in enumerate([*run.code_pairs, *run.markdown_pairs], start=1):
        prose = number > len(run.code_pairs)
        name = f"pairs/{number:04d}.html"
        _write_text(out / name, pair_page(run, pair, prose))
        links[id(pair)] = name
    paths["index"] = _write_text(out / "index.html", index_page(run, links))
    return paths


def pairs_csv(pairs: list[Pair]) -> str:
    """The CSV text of ``pairs`` (:data:`CSV_COLUMNS`)."""
    rows: list[list[object]] = [CSV_COLUMNS]
    for p in pairs:
        rows.append([p.kind, p.a, p.b, f"{p.score:.3f}", f"{p.score_a:.3f}", f"{p.score_b:.3f}", p.tokens,
                     "; ".join(_function_label(f) for f in p.functions)])
    return _csv(rows)


def summary_table(run: SimilarityRun, limit: int = 20) -> str:
    """The short table printed on stdout: the top pairs of each table, what was skipped, where the report is."""
    lines = [f"{run.assignment}: {len(run.students)} submissions, {run.pairs_compared} pairs, "
             f"{len(run.sources)} known sources; threshold {run.threshold:g} "
             f"(at least {run.min_tokens} shared tokens); {run.seconds:.1f} s ("
             + ", ".join(f"{k} {v:.1f} s" for k, v in run.timings.items()) + ")"]
    for title, pairs in _tables(run):
        lines.append(f"\n{title}: {len(pairs)} flagged")
        if not pairs:
            continue
        width_a = max(len(p.a) for p in pairs[:limit])
        width_b = max(len(p.b) for p in pairs[:limit])
        lines.append(f"  {'score':>5}  {'a in b':>6}  {'b in a':>6}  {'tokens':>6}  {'a':<{width_a}}  "
                     f"{'b':<{width_b}}  functions")
        for p in pairs[:limit]:
            lines.append(f"  {p.score:5.2f}  {p.score_a:6.2f}  {p.score_b:6.2f}  {p.tokens:6d}  {p.a:<{width_a}}  "
                         f"{p.b:<{width_b}}  {', '.join(f.grade_id for f in p.functions)}")
        if len(pairs) > limit:
            lines.append(f"  ... and {len(pairs) - limit} more")
    if run.skipped:
        lines.append(f"\nskipped {len(run.skipped)}:")
        lines.extend(f"  {where}: {why}" for where, why in run.skipped)
    return "\n".join(lines)


def print_similarity(work: Path) -> None:
    """Print the similarity table of the demo's samples, ``work/submitted``; report in ``work/similarity``.

    The samples share the reference's code, so ``correct``, ``wrong-*`` and ``crash-*`` are flagged with each
    other and against the reference solution; ``blank`` is listed as having no answers.
    """
    print("\nsimilarity of the sample submissions (python -m autograder similarity):")
    for result in compare_submissions(work / "submitted"):
        write_report(result, work / "similarity" / result.assignment)
        print(summary_table(result, limit=8))
    print(f"similarity reports: {work / 'similarity'}")


def index_page(run: SimilarityRun, links: dict[int, str]) -> str:
    """``index.html``: the flagged pairs of each table, highest score first, and the skipped inputs."""
    body = [f"<h1>Similarity report: {_e(run.assignment)}</h1>",
            f"<p>{len(run.students)} submissions ({run.pairs_compared} pairs), known sources: "
            f"{_e(', '.join(run.sources) or 'none')}. A pair is listed when, in either direction, at least "
            f"{run.threshold:.0%} of one side's answers (all of them, or one graded function's) lie in regions "
            f"that the other side also has, with at least {run.min_tokens} shared tokens. The release's own "
            "text (signatures, docstrings, given code) never counts.</p>"]
    for title, pairs in _tables(run):
        body.append(f"<h2>{_e(title)} ({len(pairs)})</h2>")
        if not pairs:
            body.append("<p>none</p>")
            continue
        body.append("<table><tr><th>#</th><th>score</th><th>a</th><th>b</th><th>share of a in b</th>"
                    "<th>share of b in a</th><th>tokens</th><th>functions (a/b)</th></tr>")
        for number, p in enumerate(pairs, start=1):
            link = links[id(p)]
            body.append(f"<tr><td>{number}</td><td><a href='{link}'>{p.score:.2f}</a></td><td>{_e(p.a)}</td>"
                        f"<td>{_e(p.b)}</td><td>{p.score_a:.2f}</td><td>{p.score_b:.2f}</td><td>{p.tokens}</td>"
                        f"<td>{_e(', '.join(_function_label(f) for f in p.functions))}</td></tr>")
        body.append("</table>")
    if run.notes:
        body.append(f"<h2>Notes ({len(run.notes)})</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in run.notes)
                    + "</ul>")
    body.append(f"<h2>Skipped ({len(run.skipped)})</h2>")
    if run.skipped:
        body.append("<table><tr><th>file</th><th>reason</th></tr>"
                    + "".join(f"<tr><td>{_e(w)}</td><td>{_e(r)}</td></tr>" for w, r in run.skipped) + "</table>")
    else:
        body.append("<p>none</p>")
    return _page(f"Similarity: {run.assignment}", "\n".join(body))


def pair_page(run: SimilarityRun, pair: Pair, prose: bool) -> str:
    """One pair's page: both names, the scores, and each matching function's code side by side."""
    left = run.students[pair.a]
    right = run.sources[pair.b] if pair.kind == "known source" else run.students[pair.b]
    what = "written answers" if prose else "code"
    body = [f"<h1 class='pair'><span class='student-a'>{_e(pair.a)}</span> and "
            f"<span class='student-b'>{_e(pair.b)}</span></h1>",
            f"<p>{_e(pair.kind)}, {what}: {pair.score_a:.0%} of {_e(pair.a)}'s answers lie in regions shared "
            f"with {_e(pair.b)}, and {pair.score_b:.0%} of {_e(pair.b)}'s with {_e(pair.a)}; {pair.tokens} shared "
            f"tokens. <a href='../index.html'>Back to the index</a>.</p>"]
    for match in pair.functions:
        fp_left = (left.markdown if prose else left.code).get(match.grade_id)
        if pair.kind == "known source":  # the source's own part for this function when it has one, else all of it
            fp_right = (right.markdown if prose else right.code).get(match.grade_id) \
                or (right.whole_markdown if prose else right.whole_code)
        else:
            fp_right = (right.markdown if prose else right.code).get(match.grade_id)
        if fp_left is None or fp_right is None:
            continue
        code_left, code_right = _highlighted(fp_left, fp_right, truncate_right=pair.kind == "known source")
        scores = f"{match.score_a:.2f}" + (f" / {match.score_b:.2f}" if match.score_b is not None else "")
        body.append(f"<h2>{_e(match.grade_id)}: score {scores}</h2>"
                    "<table class='side'><tr>"
                    f"<th>{_e(pair.a)}</th><th>{_e(pair.b)}</th></tr>"
                    f"<tr><td><pre>{code_left}</pre></td><td><pre>{code_right}</pre></td></tr></table>")
    return _page(f"{pair.a} and {pair.b}", "\n".join(body))


def _highlighted(left: AnswerFingerprint, right: AnswerFingerprint, truncate_right: bool) -> tuple[str, str]:
    """Both texts, HTML-escaped, with the regions they share wrapped in ``<mark>``."""
    _, _, (slices_left, slices_right) = compare_files(left, right)
    out = []
    for fp, slices, truncate in ((left, slices_left, False), (right, slices_right, truncate_right)):
        if len(slices) == 0 or slices.shape[-1] == 0:
            out.append(html.escape(fp.raw_code))
            continue
        text, _ = highlight_overlap(fp.raw_code, slices, "<mark>", "</mark>",
                                    truncate=SOURCE_CONTEXT_LINES if truncate else -1, escape_html=True)
        out.append(text)
    return out[0], out[1]


def _tables(run: SimilarityRun) -> list[tuple[str, list[Pair]]]:
    return [
        ("Students sharing code", [p for p in run.code_pairs if p.kind == "students"]),
        ("Code matching a known source", [p for p in run.code_pairs if p.kind == "known source"]),
        ("Students sharing written answers", [p for p in run.markdown_pairs if p.kind == "students"]),
        ("Written answers matching a known source", [p for p in run.markdown_pairs if p.kind == "known source"]),
    ]


def _function_label(match: FunctionMatch) -> str:
    both = f"{match.score_a:.2f}" + (f"/{match.score_b:.2f}" if match.score_b is not None else "")
    return f"{match.grade_id} ({both})"


def _csv(rows: list[list[object]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; vertical-align: top; text-align: left; }}
table.side {{ width: 100%; table-layout: fixed; }}
pre {{ white-space: pre-wrap; font-size: 0.85em; margin: 0; }}
mark {{ background: #ffd54f; }}
</style></head>
<body>
{body}
</body></html>
"""
