"""Written questions and ``python -m autograder manual``: every question carries a rubric that the release
hides; the grading pages show every answer inertly, grouped; the scores a TA types into the page in a real
headless Chromium come back through the exported CSV into the gradebook and ``grades.csv``."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import pytest

from autograder import assignments, source_notebook
from autograder.__main__ import build_parser, main
from autograder.manual.answers import STUB, group_answers
from autograder.manual.questions import QuestionError, questions_of_notebook, split_answer_cell
from autograder.manual.render import to_html
from autograder.manual.scores import COLUMNS, ScoreError, parse_scores

ASSIGNMENT = "network_visualization"
OCCLUSION = "inline_question_occlusion"
FOOLING = "inline_question_fooling"
HOSTILE = ("<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
           " [link](javascript:document.title='pwned')")
#: the graded batch's students and their answers (the rest of each notebook is the release's stubs)
ANSWERS = {
    "alice": {OCCLUSION: "One pass per window plus one: **730** for p=16, s=8.",
              FOOLING: "The gradient adds up over many pixels."},
    "bob": {OCCLUSION: "One pass per window plus one:   **730** for p=16, s=8.\n"},   # alice's, spaced out
    "carol": {OCCLUSION: HOSTILE},
    "dave": {},                                                                     # left blank
}
NEW_QUESTIONS = {"style_transfer": 2, "mask_rcnn": 2, "triplet_embeddings": 2, "network_visualization": 3}


# -- the questions in the source notebooks ------------------------------------------------------------


@pytest.mark.parametrize("assignment", assignments())
def test_every_written_question_has_a_rubric_that_adds_up_to_its_points(assignment: str) -> None:
    questions = questions_of_notebook(source_notebook(assignment), assignment)   # raises on a bad rubric
    assert len(questions) == NEW_QUESTIONS.get(assignment, 0)
    for q in questions:
        assert q.prompt.startswith("### Inline question"), (q.grade_id, q.prompt[:80])
        assert q.model_answer.startswith("**Answer.**") and "**Rubric**" not in q.model_answer
        assert len(q.rubric) >= 2 and sum(item.points for item in q.rubric) == q.points


def test_a_rubric_line_without_points_or_items_that_do_not_add_up_is_refused(tmp_path: Path) -> None:
    with pytest.raises(QuestionError, match="is not '- \\(points\\) text'"):
        split_answer_cell("**Answer.** x\n\n**Rubric**\n- the formula", "q1")
    answer, items = split_answer_cell("**Answer.** x\n\n**Rubric** (1 point)\n- (0.25) a\n* (0.75) b\n", "q1")
    assert answer == "**Answer.** x" and [(i.points, i.text) for i in items] == [(0.25, "a"), (0.75, "b")]
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_markdown_cell("**Answer.** x\n\n**Rubric**\n- (0.5) a")
    cell.metadata["nbgrader"] = {"grade": True, "solution": True, "grade_id": "q1", "points": 1,
                                 "locked": False, "schema_version": 3, "task": False}
    nb.cells = [nbformat.v4.new_markdown_cell("### Inline question"), cell]
    nbformat.write(nb, tmp_path / "a.ipynb")
    with pytest.raises(QuestionError, match="add up to 0.5 points; the cell is worth 1"):
        questions_of_notebook(tmp_path / "a.ipynb", "a")
    cell.source = "**Answer.** x"
    nbformat.write(nb, tmp_path / "a.ipynb")
    with pytest.raises(QuestionError, match="has no rubric"):
        questions_of_notebook(tmp_path / "a.ipynb", "a")


@pytest.mark.notebook
@pytest.mark.parametrize("assignment", sorted(NEW_QUESTIONS))
def test_release_replaces_model_answer_and_rubric_with_the_stub(assignment: str, tmp_path: Path) -> None:
    from autograder.releasing.course import generate_assignment, make_course_dir

    course = make_course_dir(tmp_path / "course", [assignment])
    text = (generate_assignment(course, assignment) / f"{assignment}.ipynb").read_text()
    questions = questions_of_notebook(source_notebook(assignment), assignment)
    assert "**Rubric**" not in text and "**Answer.**" not in text
    for q in questions:
        assert q.rubric[0].text[:40] not in text and q.model_answer[12:60] not in text
        assert q.prompt.splitlines()[0] in text   # the question itself stays
    release = nbformat.read(generate_assignment(course, assignment) / f"{assignment}.ipynb", as_version=4)
    stubs = [c for c in release.cells if c.metadata.get("nbgrader", {}).get("grade_id") in
             {q.grade_id for q in questions}]
    assert [c.source for c in stubs] == [STUB] * len(questions)


# -- rendering and grouping ---------------------------------------------------------------------------


def test_a_hostile_answer_renders_as_text_with_no_live_tag_link_or_image() -> None:
    out = to_html(HOSTILE + "\n\n**bold** ![t](http://tracker.example/x.png) <a href='http://x'>y</a> "
                  "$x<script>alert(1)</script>$\n\n$$\n<img src=x onerror=alert(1)>\n$$")
    assert "<script" not in out and "<img" not in out and "<a " not in out and "onerror=\"" not in out
    assert "&lt;script&gt;" in out and "<strong>bold</strong>" in out and "[image: t]" in out
    assert "javascript:document.title=&#x27;pwned&#x27;" in out or "javascript:document.title='pwned'" in out


def test_identical_answers_are_grouped_and_blank_ones_prescored_zero() -> None:
    groups = group_answers({"a": "x  y\n", "b": "x y", "c": STUB, "d": "", "e": "z"},
                           {"e": (0.5, "ok")})
    assert [(g.students, g.blank, g.score) for g in groups] == [
        (["a", "b"], False, None), (["e"], False, 0.5), (["c", "d"], True, 0.0)]
    assert groups[1].comment == "ok"


# -- a graded batch -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """network_visualization graded for four students: code stubs, and the written answers of ANSWERS."""
    from autograder.batch.grading import grade
    from autograder.execution.limits import Limits
    from autograder.releasing.course import generate_assignment, make_course_dir

    root = tmp_path_factory.mktemp("manual")
    release = generate_assignment(make_course_dir(root / "course", [ASSIGNMENT]), ASSIGNMENT)
    for student, answers in ANSWERS.items():
        nb = nbformat.read(release / f"{ASSIGNMENT}.ipynb", as_version=4)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                cell.source = answers[grade_id]
        dest = root / "submitted" / student / ASSIGNMENT
        dest.mkdir(parents=True)
        nbformat.write(nb, dest / f"{ASSIGNMENT}.ipynb")
    grade(root / "submitted", root / "out", jobs=2, limits=Limits(timeout=300), progress=False, feedback=False)
    assert main(["manual", "--out", str(root / "out"), "write"]) == 0
    return root / "out"


@pytest.fixture
def course(graded: Path, tmp_path: Path) -> Path:
    """A copy of the graded course, for a test that writes into its gradebook."""
    return Path(shutil.copytree(graded, tmp_path / "out"))


def _grades(course: Path) -> dict[str, float]:
    with open(course / "grades.csv", newline="") as fh:
        return {row["student_id"]: float(row["score"]) for row in csv.DictReader(fh)}


def _write_csv(path: Path, rows: list[list[str]], columns: tuple[str, ...] = COLUMNS) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def test_manual_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["manual", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: python -m autograder manual" in out and "write" in out and "read" in out


@pytest.mark.notebook
def test_write_makes_one_page_per_question_with_answers_grouped_and_escaped(graded: Path) -> None:
    pages = sorted(p.name for p in (graded / "manual" / ASSIGNMENT).glob("*.html"))
    assert pages == sorted(f"{q}.html" for q in (OCCLUSION, FOOLING, "inline_question_class_visualization"))
    page = (graded / "manual" / ASSIGNMENT / f"{OCCLUSION}.html").read_text()
    assert page.count('class="card') == 3                      # alice+bob, carol, dave (blank)
    assert "2 students: <b>alice</b>, <b>bob</b>" in page and "1 student: <b>dave</b>" in page
    assert "&lt;script&gt;document.title=" in page and "<img" not in page
    assert "**Rubric**" not in page and "730" in page and "(0.25)</span>" in page
    assert "http://" not in page and "https://" not in page   # nothing to fetch
    data = json.loads(page.split('id="page-data">')[1].split("</script>")[0])
    assert data["groups"]["blank"] == ["dave"] and data["points"] == 1


@pytest.mark.notebook
def test_read_writes_manual_grades_that_export_and_feedback_include(course: Path) -> None:
    from autograder.feedback.pages import generate_feedback

    before = _grades(course)
    scores = _write_csv(course / "s.csv", [["alice", ASSIGNMENT, ASSIGNMENT, OCCLUSION, "0.75", "good count"],
                                           ["bob", ASSIGNMENT, ASSIGNMENT, OCCLUSION, "0.75", "good count"],
                                           ["carol", ASSIGNMENT, ASSIGNMENT, OCCLUSION, "0", "no answer"],
                                           ["dave", ASSIGNMENT, ASSIGNMENT, OCCLUSION, "", ""],
                                           ["alice", ASSIGNMENT, ASSIGNMENT, FOOLING, "1", ""]])
    assert main(["manual", "--out", str(course), "read", str(scores)]) == 0
    after = _grades(course)
    assert {s: after[s] - before[s] for s in after} == {"alice": 1.75, "bob": 0.75, "carol": 0.0, "dave": 0.0}
    assert main(["export", "--out", str(course)]) == 0 and _grades(course) == after
    page = generate_feedback(course, ASSIGNMENT, "alice")
    assert page is not None and "good count" in page.read_text()
    # the page written again shows what is already graded
    assert main(["manual", "--out", str(course), "write"]) == 0
    rewritten = (course / "manual" / ASSIGNMENT / f"{OCCLUSION}.html").read_text()
    assert 'value="0.75"' in rewritten and ">good count</textarea>" in rewritten


@pytest.mark.notebook
def test_read_refuses_unknown_ids_and_scores_out_of_range_and_writes_nothing(course: Path) -> None:
    before = (course / "grades.csv").read_bytes()
    bad = _write_csv(course / "bad.csv", [
        ["alice", ASSIGNMENT, ASSIGNMENT, OCCLUSION, "1.5", ""],
        ["mallory", ASSIGNMENT, ASSIGNMENT, OCCLUSION, "1", ""],
        ["alice", ASSIGNMENT, ASSIGNMENT, "test_compute_saliency_maps", "2", ""],
        ["alice", "style_transfer", "style_transfer", OCCLUSION, "1", ""],
        ["bob", ASSIGNMENT, ASSIGNMENT, OCCLUSION, "lots", ""],
        ["bob", ASSIGNMENT, ASSIGNMENT, FOOLING, "-0.5", ""],
        ["carol", ASSIGNMENT, ASSIGNMENT, FOOLING, "1", ""],
        ["carol", ASSIGNMENT, ASSIGNMENT, FOOLING, "0", ""],
        ["dave", ASSIGNMENT, ASSIGNMENT, FOOLING, "1", ""]])
    with pytest.raises(ScoreError) as err:
        parse_scores(course, [bad])
    message = str(err.value)
    for expected in ("bad.csv:2: score 1.5 is outside 0..1", "bad.csv:3: student 'mallory' has no submission",
                     "bad.csv:4: 'test_compute_saliency_maps' is not a written question",
                     "bad.csv:5: unknown assignment 'style_transfer'", "bad.csv:6: score 'lots' is not a number",
                     "bad.csv:7: score -0.5 is outside 0..1", "bad.csv:9: carol's 'inline_question_fooling' was "
                     "already given 1 at"):
        assert expected in message, message
    assert "bad.csv:10" not in message and message.startswith("nothing written: 7 problem(s)")
    assert main(["manual", "--out", str(course), "read", str(bad)]) == 1
    assert (course / "grades.csv").read_bytes() == before
    with pytest.raises(ScoreError, match="no column score"):
        parse_scores(course, [_write_csv(course / "cols.csv", [["alice", ASSIGNMENT, OCCLUSION]],
                                         ("student", "assignment", "grade_id"))])


# -- the page in a real browser ------------------------------------------------------------------------


class Chromium:
    """Headless Chromium driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``):
    JSON messages separated by NUL bytes, written to its fd 3 and read from its fd 4."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        args = [binary, "--headless", "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run",
                "--disable-gpu", "--no-default-browser-check", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")   # Chromium refuses to run as root with its sandbox
        self.process = self._spawn(args, to_chrome_r, from_chrome_w)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next, self._buffer, self.events = 0, b"", []

    @staticmethod
    def _spawn(args: list[str], read_end: int, write_end: int) -> subprocess.Popen:
        def child() -> None:   # in the child before exec: our pipe ends become its fds 3 and 4
            r, w = os.dup(read_end), os.dup(write_end)   # above 4, so the dup2s below cannot clobber them
            os.dup2(r, 3)   # os.dup2 makes the copy inheritable; Python's other fds are not
            os.dup2(w, 4)

        # close_fds=False: Popen would close fds 3 and 4 after preexec_fn; only inheritable fds survive exec
        return subprocess.Popen(args, close_fds=False, preexec_fn=child, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium sent no DevTools message in time")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, timeout: float = 30, **params: object) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                self.events.remove(event)
                return event
        while True:
            event = self._read(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary is None:
        reason = "no chromium on PATH (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ", and CI=true: the browser test must run in CI")
        pytest.skip(reason)
    return binary


@pytest.mark.notebook
def test_scores_typed_into_the_page_in_chromium_export_and_round_trip_into_grades_csv(course: Path,
                                                                                     tmp_path: Path) -> None:
    page = course / "manual" / ASSIGNMENT / f"{OCCLUSION}.html"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = Chromium(_chromium(), tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        browser.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads),
                     eventsEnabled=True)
        browser.send("Page.enable", session)
        browser.send("Page.navigate", session, url=page.as_uri())
        browser.wait_for("Page.loadEventFired")

        def js(expression: str) -> object:
            reply = browser.send("Runtime.evaluate", session, expression=expression, returnByValue=True)
            assert "exceptionDetails" not in reply, reply
            return reply["result"].get("value")

        # the hostile answer did nothing: no title change, no image, no live link
        assert js("document.title") == f"{ASSIGNMENT}: {OCCLUSION} (1 point)"
        assert js("document.querySelectorAll('.answer img, .answer a, .answer script').length") == 0
        assert js("document.getElementById('status').textContent") == "1 of 4 students scored"   # dave: blank

        def type_into(selector: str, text: str) -> None:
            js(f"document.querySelector({json.dumps(selector)}).focus()")
            browser.send("Input.insertText", session, text=text)

        groups = js("Array.from(document.querySelectorAll('.card')).map(c => c.dataset.group)")
        first, hostile = (f'.card[data-group="{g}"]' for g in groups[:2])
        type_into(first + " input.score", "0.75")
        type_into(first + " textarea.comment", 'count right, "finite change" missing')
        type_into(hostile + " input.score", "2")                  # above the question's 1 point
        js("document.getElementById('export').click()")
        assert "Scores must be numbers from 0 to 1" in js("document.getElementById('errors').textContent")
        assert not list(downloads.iterdir())
        js(f"document.querySelector({json.dumps(hostile + ' input.score')}).select()")
        browser.send("Input.insertText", session, text="0")
        assert js("document.getElementById('status').textContent") == "4 of 4 students scored"
        js("document.getElementById('export').click()")
        deadline = time.monotonic() + 20
        while True:
            event = browser.wait_for("Browser.downloadProgress", timeout=20)
            if event["params"]["state"] == "completed" or time.monotonic() > deadline:
                break
        exported = downloads / f"{ASSIGNMENT}.{OCCLUSION}.scores.csv"
        assert exported.exists(), list(downloads.iterdir())
        assert exported.read_text() == js("document.getElementById('csv-out').value")
    finally:
        browser.close()

    rows = list(csv.DictReader(exported.open(newline="")))
    assert {r["student"]: (r["score"], r["comment"]) for r in rows} == {
        "alice": ("0.75", 'count right, "finite change" missing'),
        "bob": ("0.75", 'count right, "finite change" missing'),
        "carol": ("0", ""), "dave": ("0", "")}
    before = _grades(course)
    assert main(["manual", "--out", str(course), "read", str(exported)]) == 0
    after = _grades(course)
    assert {s: after[s] - before[s] for s in after} == {"alice": 0.75, "bob": 0.75, "carol": 0.0, "dave": 0.0}
