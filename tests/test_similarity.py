"""The similarity report on a corpus built from network_visualization's source notebook.

Students (LMS layout, ``<student>_network_visualization.ipynb``):

- ``indep-a`` and ``indep-b``: independent correct solutions of four functions, written apart
  (:data:`tests.corpus.similarity_samples.STYLES`, checked against the reference below): not flagged;
- ``copy-of-a``: ``indep-a``'s code with locals renamed, nested functions moved first and other
  comments (and its written answer re-wrapped): flagged with ``indep-a``;
- ``one-func``: its own saliency and fooling code, and ``indep-b``'s Grad-CAM: flagged with
  ``indep-b`` on ``compute_gradcam`` alone;
- ``ref-copy``: the reference solution: flagged against the known source; ``ref-disguised``: the
  reference disguised like ``copy-of-a``: flagged against it and with ``ref-copy``;
- ``blank`` (the release), ``given-code`` (answers that only repeat code the release gives),
  an empty file, a corrupt file and the ``example`` assignment's notebook: skipped, with reasons.

``found_online/solutions.py`` (an ``--against`` source) holds ``indep-b``'s saliency function.
"""

from __future__ import annotations

import ast
import csv
import io
import itertools
import os
import subprocess
import sys
import textwrap
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from copydetect import compare_files
from torch import nn

from autograder import REPO_ROOT, source_notebook
from autograder.batch.samples import correct_submission
from autograder.similarity import DEFAULT_THRESHOLD
from autograder.similarity.compare import flagged_pairs, overlap_tokens, source_scores, student_scores
from autograder.similarity.extract import load_release, own_text
from autograder.similarity.report import write_report
from autograder.similarity.run import SimilarityRun, compare_submissions
from tests.corpus.similarity_samples import (
    ASSIGNMENT,
    OWN_WRITTEN_ANSWER,
    STYLES,
    answer_source,
    disguise,
    parameters,
    reference_bodies,
    submission,
)

OCCLUSION_QUESTION = "inline_question_occlusion"
EXPECTED_STUDENT_PAIRS = {("copy-of-a", "indep-a"), ("indep-b", "one-func"), ("ref-copy", "ref-disguised")}
EXPECTED_SOURCE_PAIRS = {("ref-copy", "reference solution"), ("ref-disguised", "reference solution"),
                         ("indep-b", "found_online/solutions.py")}


def _disguised(source: nbformat.NotebookNode, bodies: dict[str, str], seed: int) -> dict[str, str]:
    return {g: disguise(b, seed + i, parameters(source, g)) for i, (g, b) in enumerate(bodies.items())}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus folder: ``submissions/`` (LMS layout) and ``found_online/`` (a known source)."""
    root = tmp_path_factory.mktemp("similarity")
    folder = root / "submissions"
    folder.mkdir()
    source = nbformat.read(source_notebook(ASSIGNMENT), as_version=4)
    release = load_release(ASSIGNMENT).notebook
    reference = reference_bodies(source)
    given = next(c.source for c in release.cells if "imports" in c.metadata.get("tags", []))
    students = {
        "indep-a": submission(source, release, STYLES["a"], {OCCLUSION_QUESTION: OWN_WRITTEN_ANSWER}),
        "indep-b": submission(source, release, STYLES["b"]),
        "copy-of-a": submission(source, release, _disguised(source, STYLES["a"], 10),
                                {OCCLUSION_QUESTION: textwrap.fill(OWN_WRITTEN_ANSWER, 60)}),
        "one-func": submission(source, release, {**STYLES["c"], "compute_gradcam": STYLES["b"]["compute_gradcam"]}),
        "ref-copy": correct_submission(source, release),
        "ref-disguised": submission(source, release, _disguised(source, reference, 20)),
        "blank": release,
        "given-code": submission(source, release, {"compute_saliency_maps": given}),
    }
    for student, nb in students.items():
        nbformat.write(nb, folder / f"{student}_{ASSIGNMENT}.ipynb")
    (folder / f"empty_{ASSIGNMENT}.ipynb").write_bytes(b"")
    (folder / f"corrupt_{ASSIGNMENT}.ipynb").write_text('{"cells": [', encoding="utf-8")
    example = nbformat.read(source_notebook("example"), as_version=4)
    nbformat.write(example, folder / f"wrongassignment_{ASSIGNMENT}.ipynb")
    online = root / "found_online"
    online.mkdir()
    saliency = answer_source(source, "compute_saliency_maps", STYLES["b"]["compute_saliency_maps"])
    (online / "solutions.py").write_text("import torch\nimport torch.nn.functional as F\n\n\n" + saliency
                                         + "\n\ndef unrelated_helper(values):\n    return sorted(set(values))\n",
                                         encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def run(corpus: Path) -> SimilarityRun:
    (result,) = compare_submissions(corpus / "submissions", ASSIGNMENT, [corpus / "found_online"], jobs=1)
    return result


@pytest.fixture(scope="module")
def report(run: SimilarityRun, corpus: Path) -> Path:
    out = corpus / "report"
    write_report(run, out)
    return out


@pytest.fixture(scope="module")
def all_pairs(run: SimilarityRun) -> list:
    """Every pair of authors that shares any code, with its scores (threshold 0)."""
    names, authors = list(run.students), list(run.students.values())
    grade_ids = list(authors[0].code)
    pairs = flagged_pairs(student_scores([a.code for a in authors], grade_ids), names, names, "students", 0.0, 1)
    sources = source_scores([a.code for a in authors], grade_ids, [s.whole_code for s in run.sources.values()])
    return pairs + flagged_pairs(sources, names, list(run.sources), "known source", 0.0, 1)


def _pairs(run: SimilarityRun, kind: str, markdown: bool = False) -> dict[tuple[str, str], object]:
    pairs = run.markdown_pairs if markdown else run.code_pairs
    return {(p.a, p.b): p for p in pairs if p.kind == kind}


def test_print_corpus_scores(run: SimilarityRun, all_pairs: list) -> None:
    """The scores every pair got (code: all pairs; written answers: the flagged ones), for people (-s)."""
    for p in [*all_pairs, *run.markdown_pairs]:
        print(f"{p.kind:12s} {p.a:14s} {p.b:18s} score {p.score:.3f} ({p.score_a:.3f}/{p.score_b:.3f}) "
              f"{p.tokens} tokens: {', '.join(f'{f.grade_id} {f.score:.2f}' for f in p.functions)}")
    assert run.code_pairs


def test_flags_exactly_the_copies_and_nothing_independent(run: SimilarityRun) -> None:
    assert set(_pairs(run, "students")) == EXPECTED_STUDENT_PAIRS
    assert set(_pairs(run, "known source")) == EXPECTED_SOURCE_PAIRS


def test_renamed_reordered_recommented_copy_is_flagged_on_every_function(run: SimilarityRun) -> None:
    pair = _pairs(run, "students")[("copy-of-a", "indep-a")]
    assert [f.grade_id for f in pair.functions] == list(STYLES["a"])
    assert min(f.score for f in pair.functions) >= 0.9
    assert pair.score_a >= 0.9 and pair.score_b >= 0.9


def test_independent_solutions_stay_below_the_threshold(all_pairs: list) -> None:
    """The pairs that are not copies score well below the default threshold, even function by function."""
    copies = EXPECTED_STUDENT_PAIRS | EXPECTED_SOURCE_PAIRS
    others = [p for p in all_pairs if (p.a, p.b) not in copies]
    assert others  # independent solutions do share some code: they are scored, and stay low
    for pair in others:
        assert pair.score < DEFAULT_THRESHOLD - 0.1, pair


def test_one_copied_function_flags_the_pair_on_that_function_alone(run: SimilarityRun, all_pairs: list) -> None:
    pair = _pairs(run, "students")[("indep-b", "one-func")]
    assert [f.grade_id for f in pair.functions] == ["compute_gradcam"]
    assert pair.functions[0].score_a == pytest.approx(1.0) and pair.functions[0].score_b == pytest.approx(1.0)
    unfiltered = next(p for p in all_pairs if (p.a, p.b) == ("indep-b", "one-func"))
    assert [f.grade_id for f in unfiltered.functions] == ["compute_gradcam"]  # nothing else shared at all


def test_copy_of_the_reference_is_flagged_against_the_known_source(run: SimilarityRun) -> None:
    sources = _pairs(run, "known source")
    assert sources[("ref-copy", "reference solution")].score_a == pytest.approx(1.0)
    assert sources[("ref-disguised", "reference solution")].score_a >= 0.9
    online = sources[("indep-b", "found_online/solutions.py")]
    assert [f.grade_id for f in online.functions] == ["compute_saliency_maps"]


def test_blank_stubs_and_given_code_match_nothing_and_bad_files_are_listed(run: SimilarityRun) -> None:
    assert "blank" not in run.students and "given-code" not in run.students
    names = {name for p in [*run.code_pairs, *run.markdown_pairs] for name in (p.a, p.b)}
    assert not names & {"blank", "given-code", "empty", "corrupt", "wrongassignment"}
    reasons = {Path(where).name.split("_")[0]: why for where, why in run.skipped}
    assert set(reasons) == {"blank", "given-code", "empty", "corrupt", "wrongassignment"}
    assert "no answers" in reasons["blank"] and "stub" in reasons["blank"]
    assert "no answers" in reasons["given-code"] and "release" in reasons["given-code"]
    assert "empty" in reasons["empty"]
    assert "not valid JSON" in reasons["corrupt"]
    assert "not assignment 'network_visualization'" in reasons["wrongassignment"]


def test_written_answers_have_their_own_table(run: SimilarityRun, report: Path) -> None:
    students = _pairs(run, "students", markdown=True)
    assert set(students) == {("copy-of-a", "indep-a")}
    assert [f.grade_id for f in students[("copy-of-a", "indep-a")].functions] == [OCCLUSION_QUESTION]
    assert ("ref-copy", "reference solution") in _pairs(run, "known source", markdown=True)
    code_csv = (report / "similarity.csv").read_text()
    assert "inline_question" not in code_csv
    assert OCCLUSION_QUESTION in (report / "similarity_markdown.csv").read_text()


def test_vectorized_overlap_equals_copydetect_compare_files(run: SimilarityRun) -> None:
    authors = list(run.students.values())
    checked = 0
    for grade_id in STYLES["a"]:
        fps = [a.code.get(grade_id) for a in authors]
        matrix = overlap_tokens(fps, [fp.hash_array if fp is not None else None for fp in fps])
        for (i, a), (j, b) in itertools.permutations(enumerate(fps), 2):
            if a is None or b is None:
                continue
            tokens, (similarity, _), _ = compare_files(a, b)
            assert matrix[i, j] == tokens
            assert matrix[i, j] / a.token_coverage == pytest.approx(similarity)
            checked += 1
    assert checked > 40


class _PageParser(HTMLParser):
    """Collects links, the text of ``span.student-a`` / ``span.student-b``, table headers and ``<mark>`` count."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.names: dict[str, str] = {}
        self.headers: list[str] = []
        self.marks = 0
        self._capture: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and attributes.get("href", "").startswith("pairs/"):
            self.links.append(attributes["href"])
        if tag == "span" and attributes.get("class") in ("student-a", "student-b"):
            self._capture = attributes["class"]
        if tag == "th":
            self._capture = "th"
        if tag == "mark":
            self.marks += 1

    def handle_data(self, data: str) -> None:
        if self._capture == "th":
            self.headers.append(data)
        elif self._capture:
            self.names[self._capture] = self.names.get(self._capture, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("span", "th"):
            self._capture = None


def test_html_report_has_one_page_per_pair_naming_both_students(run: SimilarityRun, report: Path) -> None:
    index = _PageParser()
    index.feed((report / "index.html").read_text(encoding="utf-8"))
    pairs = [*run.code_pairs, *run.markdown_pairs]
    assert len(index.links) == len(pairs) == len(set(index.links))
    scores = [p.score for p in run.code_pairs if p.kind == "students"]
    assert scores == sorted(scores, reverse=True)
    for link, pair in zip(index.links, pairs):
        page = _PageParser()
        page.feed((report / link).read_text(encoding="utf-8"))
        assert page.names == {"student-a": pair.a, "student-b": pair.b}
        assert pair.a in page.headers and pair.b in page.headers
        assert page.marks >= 1
    index_text = (report / "index.html").read_text(encoding="utf-8")
    assert "not valid JSON" in index_text and "wrongassignment" in index_text


def test_command_gives_the_same_csv_as_another_run(corpus: Path, report: Path, tmp_path: Path) -> None:
    """The command in a fresh interpreter (another hash salt, two processes) writes the bytes this process wrote."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": "random"}
    done = subprocess.run([sys.executable, "-m", "autograder", "similarity", str(corpus / "submissions"),
                           "--assignment", ASSIGNMENT, "--against", str(corpus / "found_online"), "--quiet",
                           "--jobs", "2", "--out", str(tmp_path)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("similarity.csv", "similarity_markdown.csv", "skipped.csv"):
        assert (tmp_path / name).read_bytes() == (report / name).read_bytes()
    rows = list(csv.DictReader(io.StringIO((tmp_path / "similarity.csv").read_text())))
    assert {(r["student_a"], r["student_b"]) for r in rows if r["kind"] == "students"} == EXPECTED_STUDENT_PAIRS
    assert "Students sharing code: 3 flagged" in done.stdout and "copy-of-a" in done.stdout


def test_zip_with_both_layouts_compares_the_newest_file_per_student(corpus: Path, tmp_path: Path) -> None:
    """The inputs of ``grade``: a zip, LMS and nbgrader layouts mixed, an older resubmission superseded."""
    folder = corpus / "submissions"
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(folder / f"blank_{ASSIGNMENT}.ipynb", f"indep-a_2024-03-01T10-00-00_{ASSIGNMENT}.ipynb")
        zf.write(folder / f"indep-a_{ASSIGNMENT}.ipynb", f"indep-a_2024-03-02T10-00-00_{ASSIGNMENT}.ipynb")
        zf.write(folder / f"copy-of-a_{ASSIGNMENT}.ipynb", f"submitted/copy-of-a/{ASSIGNMENT}/{ASSIGNMENT}.ipynb")
        zf.write(folder / f"indep-b_{ASSIGNMENT}.ipynb", f"submitted/indep-b/{ASSIGNMENT}/{ASSIGNMENT}.ipynb")
    (result,) = compare_submissions(archive, jobs=1)
    assert sorted(result.students) == ["copy-of-a", "indep-a", "indep-b"]
    assert "2024-03-02" in result.students["indep-a"].answers.origin
    assert [(p.a, p.b) for p in result.code_pairs if p.kind == "students"] == [("copy-of-a", "indep-a")]


def test_own_text_drops_the_stub_but_keeps_edits() -> None:
    stub = 'def f(x):\n    """Docstring."""\n    # YOUR CODE HERE\n    raise NotImplementedError()\n'
    answer = 'def f(x):\n    """Docstring, edited."""\n    y = x + 1\n    return y\n'
    assert own_text(answer, stub) == '    """Docstring, edited."""\n    y = x + 1\n    return y\n'
    assert own_text(stub, stub) == ""


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(6, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).double().eval()


def _as_function(source: nbformat.NotebookNode, grade_id: str, body: str) -> object:
    namespace = {"torch": torch, "nn": nn, "F": torch.nn.functional, "math": __import__("math")}
    exec(compile(answer_source(source, grade_id, body), f"<{grade_id}>", "exec"), namespace)  # noqa: S102
    return namespace[grade_id]


@pytest.mark.usefixtures("single_torch_thread")
@pytest.mark.parametrize("style", ["a", "b", "c", "disguised reference"])
def test_corpus_implementations_are_correct(style: str) -> None:
    """Each hand-written style (and the disguised reference) gives the reference solution's outputs."""
    source = nbformat.read(source_notebook(ASSIGNMENT), as_version=4)
    reference = reference_bodies(source)
    bodies = _disguised(source, reference, 20) if style == "disguised reference" else STYLES[style]
    for grade_id, body in bodies.items():
        ast.parse(textwrap.dedent(body))
        mine, ref = _as_function(source, grade_id, body), _as_function(source, grade_id, reference[grade_id])
        model = _tiny_cnn()
        torch.manual_seed(1)
        X = torch.randn(2, 3, 12, 12, dtype=torch.float64)
        y = torch.tensor([1, 3])
        if grade_id == "compute_gradcam":
            got, want = mine(X, y, model, model[2]), ref(X, y, model, model[2])
        elif grade_id == "make_fooling_image":
            linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 5)).double().eval()  # easy to fool
            target = int(linear(X[:1]).argsort(dim=1, descending=True)[0, 1])  # the runner-up class
            got, want = mine(X[:1], target, linear, 1.0, 100), ref(X[:1], target, linear, 1.0, 100)
            assert int(linear(got).argmax()) == target
        elif grade_id == "class_visualization_update_step":
            got, want = X[:1].clone(), X[:1].clone()
            mine(got, model, 2, 1e-3, 0.5)
            ref(want, model, 2, 1e-3, 0.5)
        elif grade_id == "compute_occlusion_map":
            got, want = mine(X, y, model, patch=4, stride=2), ref(X, y, model, patch=4, stride=2)
        else:
            got, want = mine(X, y, model), ref(X, y, model)
        assert [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)] == [True, False]
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{style} {grade_id}")
