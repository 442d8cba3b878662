"""cs_lib.submission_check's structural verdicts on the example's release: what a student breaks by accident."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
import pytest

from autograder.releasing.course import generate_assignment, make_course_dir
from cs_lib import submission_check
from cs_lib.submission_check import Report, check_notebook, check_structure, make_manifest


@pytest.fixture(scope="module")
def release() -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        course = make_course_dir(Path(work) / "course", ["example"])
        return json.loads((generate_assignment(course, "example") / "example.ipynb").read_text())


def _verdict(nb: dict, release: dict) -> Report:
    report = Report(notebook="example.ipynb", assignment="example")
    check_structure(nb, make_manifest("example", release), report)
    return report


def _cell(nb: dict, grade_id: str) -> dict:
    return next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)


def test_the_release_itself_is_gradable_and_says_what_is_unanswered(release: dict) -> None:
    report = _verdict(release, release)
    assert report.gradable and report.problems == []
    assert "GRADABLE" in report.text()
    assert any("'softmax' still raises NotImplementedError" in n for n in report.notes)


def test_a_pasted_copy_of_a_test_cell_is_named_with_its_cells(release: dict) -> None:
    nb = copy.deepcopy(release)
    nb["cells"].append(copy.deepcopy(_cell(nb, "test_softmax")))
    report = _verdict(nb, release)
    assert not report.gradable
    assert any("test cell 'test_softmax'" in p and "appears 2 times" in p for p in report.problems), report.problems


def test_a_deleted_test_cell_is_missing(release: dict) -> None:
    nb = copy.deepcopy(release)
    nb["cells"].remove(_cell(nb, "test_top_k_accuracy"))
    assert any("'test_top_k_accuracy'" in p and "is missing" in p for p in _verdict(nb, release).problems)


def test_an_edited_locked_cell_and_changed_points_are_reported(release: dict) -> None:
    nb = copy.deepcopy(release)
    test = _cell(nb, "test_softmax")
    test["source"] = "".join(test["source"]) + "\nprint('my debugging')"
    test["metadata"]["nbgrader"]["points"] = 100
    problems = _verdict(nb, release).problems
    assert any("was edited" in p and "test_softmax" in p for p in problems), problems
    assert any("points: 100 instead of" in p for p in problems), problems


def test_whitespace_at_the_end_of_a_locked_cell_is_not_an_edit(release: dict) -> None:
    nb = copy.deepcopy(release)
    test = _cell(nb, "test_softmax")
    test["source"] = "".join(test["source"]) + "  \n\n"
    assert _verdict(nb, release).gradable


def test_a_cell_turned_into_markdown_is_reported(release: dict) -> None:
    nb = copy.deepcopy(release)
    _cell(nb, "softmax")["cell_type"] = "markdown"
    assert any("turned into a markdown cell" in p for p in _verdict(nb, release).problems)


def test_command_line_exit_status_and_unreadable_files(release: dict, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "example.json").write_text(json.dumps(make_manifest("example", release)))
    monkeypatch.setattr(submission_check, "MANIFEST_DIR", manifests)
    good = tmp_path / "good.ipynb"
    good.write_text(json.dumps(release))
    assert submission_check.main([str(good), "--fast"]) == 0
    nb = copy.deepcopy(release)
    nb["cells"].append(copy.deepcopy(_cell(nb, "test_softmax")))
    bad = tmp_path / "bad.ipynb"
    bad.write_text(json.dumps(nb))
    assert submission_check.main([str(bad), "--fast"]) == 1
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    assert submission_check.main([str(broken), "--fast"]) == 2
    assert "cannot be read as a notebook" in check_notebook(broken, execute=False).problems[0]


def test_the_notebooks_last_cell_does_nothing_while_grading(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DLCV_GRADING", "1")
    assert submission_check.check_this_notebook("example") is None
    assert "skipped while grading" in capsys.readouterr().out


def test_every_source_notebook_ends_with_the_check_of_its_own_assignment() -> None:
    from autograder import REPO_ROOT

    for path in sorted((REPO_ROOT / "assignments" / "source").glob("*/*.ipynb")):
        last = nbformat.read(path, as_version=4).cells[-1]
        assert last.cell_type == "code" and f'check_this_notebook("{path.stem}")' in last.source, path


def test_the_notebooks_last_cell_outside_a_bundle_says_there_is_nothing_to_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(submission_check, "MANIFEST_DIR", tmp_path)
    assert submission_check.check_this_notebook("example") is None
    assert "not a student bundle" in capsys.readouterr().out


def test_a_function_that_breaks_its_rule_is_named_with_its_cell_without_running_anything() -> None:
    """The rule check reads the cells as the grader does (an alias made in one cell, used in another)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Mask R-CNN"),
                nbformat.v4.new_code_cell("import torchvision\nfrom torchvision import ops as o"),
                nbformat.v4.new_code_cell("def nms(boxes, scores, t):\n    return o.nms(boxes, scores, t)"),
                nbformat.v4.new_code_cell("def box_iou(a, b):\n    return sum(x for x in a)")]
    report = Report(notebook="mask_rcnn.ipynb", assignment="mask_rcnn")
    submission_check.check_rules_of(json.loads(nbformat.writes(nb)), report)
    assert sorted(report.rule_breaks) == [
        "box_iou uses a comprehension (a Python loop) (cell 4, line 2); the notebook asks for it without Python "
        "loops: the grader gives 0 for this test",
        "nms calls torchvision.ops.nms (cell 3, line 2); write it yourself: the grader gives 0 for this test"]
    assert not report.ok and "RULES: 2 function(s) break the rule" in report.text()
    honest = Report(notebook="example.ipynb", assignment="example")
    submission_check.check_rules_of(json.loads(nbformat.writes(nb)), honest)
    assert honest.rule_breaks == []  # example's functions have no rule; nms is not one of them
