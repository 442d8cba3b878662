"""One self-contained HTML page per written question, to grade it for every student at once.

``manual/<assignment>/<grade_id>.html`` under the graded course shows, at the top, the question, the
rubric and the model answer; below, one card per group of identical answers (the largest group first, the
blank answers last and pre-scored 0), each with its students, the rendered answer, a score field
(0..points) and a comment field. The button **Export scores (CSV)** downloads
``<assignment>.<grade_id>.scores.csv`` (one row per student, columns :data:`autograder.manual.scores.COLUMNS`)
and shows the same text in a box to copy. The page keeps the TA's entries in the browser's
``localStorage`` (keyed by the course's path, assignment and question) while it is open or reopened.
It loads nothing: no CDN, no font, no image; its one script is inline and carries a nonce that the
page's Content-Security-Policy requires.
"""

from __future__ import annotations

import html
import json
import secrets
from pathlib import Path

from autograder.manual.answers import AnswerGroup, collect
from autograder.manual.questions import Question, load_questions
from autograder.manual.render import to_html, to_inline_html

_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d232a;background:#f4f5f7}
header{position:sticky;top:0;background:#1d3557;color:#fff;padding:.6em 1.2em;display:flex;gap:1em;
 align-items:center;z-index:1}
header h1{font-size:1.1em;margin:0;flex:1}
header button{font:inherit;padding:.35em .9em;border:0;border-radius:4px;background:#f1c40f;cursor:pointer}
main{padding:1em 1.2em;max-width:1400px;margin:auto}
.top{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.box{background:#fff;border:1px solid #d5d9de;border-radius:6px;padding:.6em 1em}
.box h2{font-size:1em;margin:.2em 0 .4em;color:#1d3557}
.rubric li{margin:.2em 0}.pts{font-weight:600;color:#1d3557}
.groups{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1em;margin-top:1em}
.card{background:#fff;border:1px solid #d5d9de;border-radius:6px;padding:.6em 1em;display:flex;
 flex-direction:column}
.card.blank{background:#f9f9f9;color:#667}.card.done{border-left:5px solid #2a9d8f}
.who{font-size:.85em;color:#556}.who b{color:#1d232a}
.answer{flex:1;border-top:1px solid #eee;margin:.4em 0;overflow-wrap:anywhere}
.answer pre{background:#f4f5f7;padding:.4em;overflow:auto}.url{color:#667;font-size:.85em}
.grade{display:flex;gap:.6em;align-items:flex-start}
.grade input{width:5em;font:inherit}.grade textarea{flex:1;font:inherit;min-height:2.2em}
.bad{outline:2px solid #e63946}
.math{font-family:ui-monospace,monospace;font-size:.9em;color:#20466b}
#status{font-size:.9em}#csv-out{width:100%;min-height:6em;display:none;margin-top:1em}
#errors{color:#e63946;font-weight:600}
"""

_SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById("page-data").textContent);
  // every file:// page shares one origin: the course's path keeps two courses' entries apart
  const store = "autograder-manual:" + data.course + ":" + data.assignment + ":" + data.grade_id;
  const cards = Array.from(document.querySelectorAll(".card"));
  function fields(card) {
    return {score: card.querySelector("input.score"), comment: card.querySelector("textarea.comment")};
  }
  function valid(text) {
    if (text.trim() === "") return true;
    const x = Number(text);
    return Number.isFinite(x) && x >= 0 && x <= data.points;
  }
  function refresh() {
    let done = 0, saved = {};
    for (const card of cards) {
      const f = fields(card), n = data.groups[card.dataset.group].length;
      f.score.classList.toggle("bad", !valid(f.score.value));
      const graded = f.score.value.trim() !== "" && valid(f.score.value);
      card.classList.toggle("done", graded);
      if (graded) done += n;
      saved[card.dataset.group] = [f.score.value, f.comment.value];
    }
    document.getElementById("status").textContent = done + " of " + data.students + " students scored";
    try { localStorage.setItem(store, JSON.stringify(saved)); } catch (e) { /* file:// may refuse */ }
  }
  function restore() {
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(store) || "null"); } catch (e) { saved = null; }
    if (!saved) return;
    for (const card of cards) {
      const s = saved[card.dataset.group];
      if (s) { fields(card).score.value = s[0]; fields(card).comment.value = s[1]; }
    }
  }
  function quote(v) { return '"' + String(v).replace(/"/g, '""') + '"'; }
  function csv() {
    const bad = [], rows = [data.columns.join(",")];
    for (const card of cards) {
      const f = fields(card);
      if (!valid(f.score.value)) bad.push(data.groups[card.dataset.group].join(", "));
      const score = f.score.value.trim() === "" ? "" : String(Number(f.score.value));
      for (const student of data.groups[card.dataset.group]) {
        rows.push([student, data.assignment, data.notebook, data.grade_id, score, f.comment.value]
                  .map(quote).join(","));
      }
    }
    return {bad: bad, text: rows.join("\r\n") + "\r\n"};
  }
  function exportScores() {
    const out = csv(), errors = document.getElementById("errors");
    if (out.bad.length) {
      errors.textContent = "Scores must be numbers from 0 to " + data.points + "; fix: " + out.bad.join("; ");
      return;
    }
    errors.textContent = "";
    const box = document.getElementById("csv-out");
    box.value = out.text;
    box.style.display = "block";
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([out.text], {type: "text/csv"}));
    link.download = data.assignment + "." + data.grade_id + ".scores.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
  }
  restore();
  document.addEventListener("input", refresh);
  document.getElementById("export").addEventListener("click", exportScores);
  refresh();
})();
"""


def _json_for_script(value: object) -> str:
    """JSON that cannot close its ``<script>`` element (``<``, ``>`` and ``&`` as \\u escapes)."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _score_text(score: float | None) -> str:
    return "" if score is None else f"{score:g}"


def _card(group: AnswerGroup, points: float) -> str:
    names = ", ".join(f"<b>{html.escape(s)}</b>" for s in group.students)
    count = f"{len(group.students)} student{'s' if len(group.students) != 1 else ''}"
    body = "<p><i>(no answer)</i></p>" if group.blank else to_html(group.text)
    return (f'<section class="card{" blank" if group.blank else ""}" data-group="{html.escape(group.key)}">'
            f'<div class="who">{count}: {names}</div><div class="answer">{body}</div>'
            f'<div class="grade"><label>score <input class="score" type="text" inputmode="decimal" '
            f'value="{_score_text(group.score)}" aria-label="score (0 to {points:g})"> / {points:g}</label>'
            f'<textarea class="comment" placeholder="comment for these students">{html.escape(group.comment)}'
            f"</textarea></div></section>")


def render_page(question: Question, groups: list[AnswerGroup], course: str = "") -> str:
    """The HTML of one question's grading page (``course``: the course's path, keys the saved entries)."""
    from autograder.manual.scores import COLUMNS

    nonce = secrets.token_urlsafe(16)
    data = {"course": course, "assignment": question.assignment, "notebook": question.notebook,
            "grade_id": question.grade_id,
            "points": question.points, "columns": list(COLUMNS), "students": sum(len(g.students) for g in groups),
            "groups": {g.key: g.students for g in groups}}
    rubric = "".join(f'<li><span class="pts">({item.points:g})</span> {to_inline_html(item.text)}</li>'
                     for item in question.rubric)
    plural = "" if question.points == 1 else "s"
    title = f"{question.assignment}: {question.grade_id} ({question.points:g} point{plural})"
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src 'none'; "
           "base-uri 'none'; form-action 'none'")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body><header><h1>{html.escape(title)}</h1><span id="status"></span>
<button id="export" type="button">Export scores (CSV)</button></header>
<main><div id="errors"></div>
<div class="top"><div class="box"><h2>Question</h2>{to_html(question.prompt)}</div>
<div class="box"><h2>Rubric</h2><ul class="rubric">{rubric}</ul></div></div>
<details class="box" open><summary><b>Model answer</b></summary>{to_html(question.model_answer)}</details>
<textarea id="csv-out" readonly aria-label="exported scores"></textarea>
<div class="groups">{"".join(_card(g, question.points) for g in groups)}</div></main>
<script type="application/json" id="page-data">{_json_for_script(data)}</script>
<script nonce="{nonce}">{_SCRIPT}</script></body></html>
"""


def write_pages(course: Path, assignments: list[str]) -> list[Path]:
    """Write ``course/manual/<assignment>/<grade_id>.html`` for every written question, and an index.

    Args:
        course: the graded course (``--out`` of ``grade``).
        assignments: the assignments to write pages for.

    Returns:
        The pages written, in assignment and notebook order.
    """
    pages: list[Path] = []
    links = []
    for assignment in assignments:
        for question in load_questions(course, assignment):
            groups = collect(course, question)
            page = course / "manual" / assignment / f"{question.grade_id}.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(render_page(question, groups, str(course.resolve())), encoding="utf-8")
            pages.append(page)
            blank = sum(len(g.students) for g in groups if g.blank)
            links.append(f'<li><a href="{html.escape(assignment)}/{html.escape(question.grade_id)}.html">'
                         f"{html.escape(assignment)}: {html.escape(question.grade_id)}</a> "
                         f"({question.points:g} points; {len(groups)} distinct answers, {blank} blank)</li>")
    index = course / "manual" / "index.html"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Written questions"
                     f"</title></head><body><h1>Written questions</h1><ul>{''.join(links)}</ul></body></html>\n",
                     encoding="utf-8")
    return pages
