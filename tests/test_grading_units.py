"""Fast tests of the grading pipeline's parts: discovery, metadata checks, redaction, tampering, limits."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import source_notebook
from autograder.batch.samples import CRASH_BODY, correct_submission, with_answer_body, wrong_body
from autograder.batch.submissions import discover, student_from_filename, timestamp_from_filename
from autograder.execution.isolation import MemoryWatchdog, exit_description, parse_size, process_tree_rss
from autograder.execution.redact import hidden_lines, scrub_traceback, strip_hidden_test_regions
from autograder.execution.tampering import inspect_cells, notebook_problem, restore_metadata
from autograder.releasing.metadata_check import MetadataError, check_source, problems
from tests.nbutil import graded_points, max_score

KNOWN = {"example": {"test_softmax", "test_top_k_accuracy"},
         "network_visualization": {"test_compute_saliency_maps"}}


def _nb_bytes(grade_ids: list[str]) -> bytes:
    cells = [nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {"grade_id": g, "grade": True, "points": 1}})
             for g in grade_ids]
    return nbformat.writes(nbformat.v4.new_notebook(cells=cells)).encode()


# -- discovery ------------------------------------------------------------------------------


def test_canvas_file_names_give_student_and_assignment() -> None:
    assert student_from_filename("smithjohn_12345_67890_network_visualization.ipynb") == "smithjohn"
    assert student_from_filename("José García_1_2_example.ipynb") == "José García"
    assert "/" not in student_from_filename("../x.ipynb") and student_from_filename("..") == "unknown"
    assert timestamp_from_filename("a_1_2_example_2024-03-01T14-05-59.ipynb") == "2024-03-01T14:05:59"
    assert timestamp_from_filename("a_2024-03-01 14:05_example.ipynb") == "2024-03-01T14:05:00"
    assert timestamp_from_filename("smithjohn_12345678901234_example.ipynb") is None
    assert timestamp_from_filename("a_2024-13-45T10-00-00.ipynb") is None


def test_lms_folder_newest_submission_wins_by_name_then_mtime(tmp_path: Path) -> None:
    lms = tmp_path / "lms"
    lms.mkdir()
    (lms / "ann_1_2_example_2024-03-01T09-00-00.ipynb").write_bytes(_nb_bytes(["test_softmax"]))
    (lms / "ann_1_2_example_2024-03-02T09-00-00.ipynb").write_bytes(_nb_bytes(["test_softmax"]))
    old, new = lms / "bob_3_4_example.ipynb", lms / "bob_3_4_example-1.ipynb"
    old.write_bytes(_nb_bytes(["test_softmax"]))
    new.write_bytes(_nb_bytes(["test_softmax"]))
    os.utime(old, (1_700_000_000, 1_700_000_000))
    os.utime(new, (1_700_000_100, 1_700_000_100))
    (lms / "bob_3_4_notes.txt").write_text("not a notebook")
    found = discover(lms, KNOWN)
    by_student = {s.student: s for s in found.submissions}
    assert sorted(by_student) == ["ann", "bob"]
    assert by_student["ann"].path.endswith("2024-03-02T09-00-00.ipynb")
    assert by_student["ann"].timestamp_source == "file name"
    assert by_student["bob"].path.endswith("example-1.ipynb")
    assert by_student["bob"].timestamp_source == "file mtime"
    assert any("superseded" in n for n in by_student["bob"].notes)
    assert all(s.assignment == "example" for s in found.submissions)
    assert [Path(p).name for p in found.skipped] == ["bob_3_4_notes.txt"]


def test_zip_of_lms_files_uses_entry_dates_and_content_for_the_assignment(tmp_path: Path) -> None:
    archive = tmp_path / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo("cara_7_8_hw.ipynb", date_time=(2024, 3, 1, 10, 0, 0)),
                    _nb_bytes(["test_compute_saliency_maps"]))
        zf.writestr(zipfile.ZipInfo("cara_7_8_hw-1.ipynb", date_time=(2024, 3, 1, 9, 0, 0)),
                    _nb_bytes(["test_compute_saliency_maps"]))
        zf.writestr(zipfile.ZipInfo("dan_9_9_example.ipynb", date_time=(2024, 3, 1, 9, 0, 0)), b"")
    found = discover(archive, KNOWN)
    by_student = {s.student: s for s in found.submissions}
    assert by_student["cara"].assignment == "network_visualization"  # from the notebook's cells
    assert by_student["cara"].member == "cara_7_8_hw.ipynb"  # newer zip entry date beats the -1 suffix
    assert by_student["cara"].timestamp_source == "zip entry date"
    assert by_student["dan"].assignment == "example" and by_student["dan"].read_bytes() == b""


def test_utf8_names_zipped_without_the_utf8_flag_are_repaired(tmp_path: Path) -> None:
    name, placeholder = "José García_1_example.ipynb".encode(), b"JoseXXGarciaY_1_example.ipynb"
    assert len(name) == len(placeholder)
    archive = tmp_path / "infozip.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # ASCII name: no UTF-8 flag, as Info-ZIP writes it
        zf.writestr(placeholder.decode(), _nb_bytes(["test_softmax"]))
    archive.write_bytes(archive.read_bytes().replace(placeholder, name))
    (sub,) = discover(archive, KNOWN).submissions
    assert sub.student == "José García" and len(sub.read_bytes()) > 0


def test_nbgrader_layout_passes_timestamp_txt_through(tmp_path: Path) -> None:
    folder = tmp_path / "course" / "submitted" / "eve" / "example"
    folder.mkdir(parents=True)
    (folder / "example.ipynb").write_bytes(_nb_bytes(["test_softmax"]))
    (folder / "timestamp.txt").write_text("2024-03-01 10:00:00.000000 UTC")
    other = tmp_path / "course" / "submitted" / "fay" / "example"
    other.mkdir(parents=True)
    (other / "example (1).ipynb").write_bytes(_nb_bytes(["test_softmax"]))
    found = discover(tmp_path / "course", KNOWN)
    by_student = {s.student: s for s in found.submissions}
    assert by_student["eve"].layout == "nbgrader"
    assert by_student["eve"].timestamp == "2024-03-01 10:00:00.000000 UTC"
    assert by_student["fay"].path.endswith("example (1).ipynb") and by_student["fay"].notes


def test_forced_assignment_applies_to_lms_files(tmp_path: Path) -> None:
    (tmp_path / "gus_1_2_homework.ipynb").write_bytes(_nb_bytes(["unrelated"]))
    found = discover(tmp_path, KNOWN, assignment="example")
    assert [(s.student, s.assignment) for s in found.submissions] == [("gus", "example")]


# -- metadata checks ------------------------------------------------------------------------


def _cell(source: str, **nbgrader: object) -> dict:
    return {"cell_type": "code", "source": source, "metadata": {"nbgrader": nbgrader} if nbgrader else {},
            "outputs": [], "execution_count": None}


def test_example_source_has_no_metadata_problems() -> None:
    check_source(source_notebook("example"))


@pytest.mark.parametrize("cells, expected", [
    ([_cell("x = 1", grade_id="a", solution=True), _cell("y", grade_id="a", grade=True, points=1)],
     "duplicate grade_id 'a'"),
    ([_cell("assert True", grade_id="t", grade=True)], "graded cell without points"),
    ([_cell("assert True", grade_id="t", grade=True, points=0)], "graded cell without points"),
    ([_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")], "outside a solution cell"),
    ([_cell("### BEGIN HIDDEN TESTS\nassert x\n### END HIDDEN TESTS", grade_id="s", solution=True)],
     "outside a graded test cell"),
    ([_cell("### BEGIN SOLUTION\nx = 1", grade_id="s", solution=True)], "without a matching"),
    ([_cell("x", grade=True, points=1)], "without a grade_id"),
])
def test_broken_metadata_is_reported(cells: list[dict], expected: str) -> None:
    found = problems({"cells": cells})
    assert any(expected in p for p in found), found


def test_check_source_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    cells = [_cell("a", grade_id="t", grade=True), _cell("b", grade_id="t", grade=True, points=1)]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(MetadataError) as err:
        check_source(path)
    assert "cell 1" in str(err.value) and "cell 2" in str(err.value) and "duplicate" in str(err.value)


# -- redaction ------------------------------------------------------------------------------


SOURCE = "check(x)\n### BEGIN HIDDEN TESTS\nfrom cs_lib.grading.judge_client import judge\n" \
         "judge(\"example\", softmax)\n### END HIDDEN TESTS\n"


def test_strip_hidden_test_regions_removes_the_region_and_an_unterminated_one() -> None:
    assert strip_hidden_test_regions(SOURCE) == "check(x)"
    assert strip_hidden_test_regions("a\n### BEGIN HIDDEN TESTS\nsecret()") == "a"


def test_scrub_traceback_drops_grader_frames_and_hidden_lines() -> None:
    hidden = hidden_lines(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SOURCE)]))
    tb = [
        "\x1b[31m-----\x1b[39m\n\x1b[31mAssertionError\x1b[39m   Traceback (most recent call last)",
        "Cell \x1b[32mIn[3], line 4\x1b[39m\n      1 check(x)\n      2 ### BEGIN HIDDEN TESTS\n"
        "      3 from cs_lib.grading.judge_client import judge\n----> 4 judge(\"example\", softmax)\n"
        "      5 ### END HIDDEN TESTS",
        "File \x1b[32m/somewhere/site-packages/cs_lib/grading/judge_client.py:60\x1b[39m, in judge(assignment, fn)\n"
        "     59 if not request[\"passed\"]:\n---> 60     raise AssertionError(request[\"message\"])",
        "File \x1b[32m/somewhere/site-packages/autograder/specs/example.py:43\x1b[39m, in softmax(f)\n"
        "     42 ref = load_solutions(ASSIGNMENT).softmax\n---> 43 check_cases(...)",
        "Cell In[2], line 3, in softmax(scores)\n      2 def softmax(scores):\n----> 3     return scores",
        "\x1b[31mAssertionError\x1b[39m: softmax: 5 of 6 elements differ",
    ]
    text = "\n".join(scrub_traceback(tb, hidden))
    for secret in ("BEGIN HIDDEN", "judge_client", "judge(", "request[", "load_solutions", "check_cases"):
        assert secret not in text
    assert "(hidden test)" in text and "return scores" in text and "5 of 6 elements differ" in text


# -- tampering ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_notebooks(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from autograder.releasing.course import generate_assignment, make_course_dir

    course = make_course_dir(tmp_path_factory.mktemp("units") / "course", ["example"])
    release_dir = generate_assignment(course, "example")
    source = nbformat.read(source_notebook("example"), as_version=4)
    release = nbformat.read(release_dir / "example.ipynb", as_version=4)
    return source, release


def test_inspect_cells_reports_deleted_edited_points_and_flags(example_notebooks: tuple) -> None:
    source, release = example_notebooks
    nb = correct_submission(source, release)
    assert inspect_cells(nb, release) == []
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_top_k_accuracy"]
    test = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_softmax")
    test.source = "pass"
    test.metadata["nbgrader"]["points"] = 50
    test.metadata["nbgrader"]["grade"] = False
    kinds = {(c.grade_id, c.kind) for c in inspect_cells(nb, release)}
    assert kinds == {("test_top_k_accuracy", "deleted"), ("test_softmax", "edited"), ("test_softmax", "points"),
                     ("test_softmax", "metadata")}
    restore_metadata(nb, release)
    assert test.metadata["nbgrader"]["points"] == graded_points("example")["test_softmax"]
    assert test.metadata["nbgrader"]["grade"] is True


def test_notebook_problem_rejects_what_cannot_be_graded(example_notebooks: tuple) -> None:
    source, release = example_notebooks
    assert notebook_problem(b"", release, "example")[1] == "the submitted file is empty"
    assert "not valid JSON" in notebook_problem(b"{oops", release, "example")[1]
    assert "not a Jupyter notebook" in notebook_problem(b"[1, 2]", release, "example")[1]
    assert "not assignment 'example'" in notebook_problem(_nb_bytes(["other"]), release, "example")[1]
    good = nbformat.writes(correct_submission(source, release)).encode()
    assert notebook_problem(good, release, "example")[1] is None


def test_sample_bodies_replace_only_the_solution_region(example_notebooks: tuple) -> None:
    source, release = example_notebooks
    correct = correct_submission(source, release)
    wrong = with_answer_body(correct, source, "softmax", wrong_body("example", source, "softmax"))
    crash = with_answer_body(correct, source, "top_k_accuracy", CRASH_BODY)
    cell = {c.metadata["nbgrader"]["grade_id"]: c.source for c in wrong.cells if c.metadata.get("nbgrader")}
    assert "def softmax(scores: torch.Tensor) -> torch.Tensor:" in cell["softmax"]
    # The demo's wrong sample is the first wrong answer of the spec, indented into the function.
    assert "    return exp / exp.sum(dim=0, keepdim=True)" in cell["softmax"]
    assert "BEGIN SOLUTION" not in cell["softmax"]
    crashed = next(c.source for c in crash.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "top_k_accuracy")
    assert "    os._exit(3)" in crashed
    compile(cell["softmax"], "softmax", "exec")
    compile(crashed, "top_k", "exec")
    assert copy.deepcopy(correct) == correct  # the inputs are not modified


# -- limits ---------------------------------------------------------------------------------


def test_parse_size_and_exit_descriptions() -> None:
    assert parse_size("2GiB") == 2 * 1024**3 and parse_size("512MiB") == 512 * 1024**2 and parse_size(10) == 10
    with pytest.raises(ValueError):
        parse_size("-1G")
    assert "SIGSEGV" in exit_description(-11) and "code 1" in exit_description(1)


def test_memory_watchdog_kills_a_process_over_the_limit() -> None:
    import subprocess
    import sys
    import time

    hog = subprocess.Popen([sys.executable, "-c", "import time; x = b'x' * (400 * 1024**2); time.sleep(60)"])
    watchdog = MemoryWatchdog(limit_bytes=200 * 1024**2)
    try:
        watchdog.watch(hog.pid)
        start = time.monotonic()
        assert hog.wait(timeout=30) != 0
        assert time.monotonic() - start < 30
        assert watchdog.reason is not None and "memory limit exceeded" in watchdog.reason
        assert process_tree_rss(hog.pid) == 0
    finally:
        watchdog.stop()
        hog.kill()


def test_discovery_records_times_in_utc(tmp_path: Path) -> None:
    path = tmp_path / "hal_1_example.ipynb"
    path.write_bytes(_nb_bytes(["test_softmax"]))
    os.utime(path, (1_700_000_000, 1_700_000_000))
    (sub,) = discover(tmp_path, KNOWN).submissions
    assert sub.timestamp == dt.datetime(2023, 11, 14, 22, 13, 20).isoformat()


def test_rejected_submissions_merge_as_zero_even_with_an_unreadable_time_stamp(tmp_path: Path,
                                                                               example_notebooks: tuple) -> None:
    from nbgrader.api import Gradebook

    from autograder.batch.results import export_grades, merge_into_gradebook
    from autograder.execution.records import rejected_result
    from autograder.releasing.course import generate_assignment, make_course_dir

    _, release = example_notebooks
    course = make_course_dir(tmp_path / "course", ["example"])
    generate_assignment(course, "example")
    url = f"sqlite:///{course / 'gradebook.db'}"
    bad = rejected_result("ivy", "example", "x.ipynb", release, "the submitted file is empty", timestamp="yesterday?")
    good = rejected_result("jo", "example", "y.ipynb", release, "the submitted file is empty",
                           timestamp="2024-03-01T10:00:00")
    for result in (bad, good, good):  # merging again replaces the earlier submission
        merge_into_gradebook(url, result, ["example"])
    with Gradebook(url) as gb:
        assert gb.find_submission("example", "ivy").score == 0
        assert str(gb.find_submission("example", "jo").timestamp) == "2024-03-01 10:00:00"
    rows = export_grades(url, tmp_path / "grades.csv").read_text().splitlines()
    full = float(max_score("example"))
    assert rows[1:] == [f"example,,,ivy,,,,0.0,0.0,0.0,{full}",
                        f"example,,2024-03-01 10:00:00,jo,,,,0.0,0.0,0.0,{full}"]


def test_demo_breaks_the_building_blocks_that_other_answers_call_most() -> None:
    from autograder.batch.demo import building_blocks
    from autograder.batch.samples import answer_ids

    for assignment, block in [("mask_rcnn", "box_iou"), ("triplet_embeddings", "pairwise_distances")]:
        source = nbformat.read(source_notebook(assignment), as_version=4)
        blocks = building_blocks(source, answer_ids(source))
        assert blocks[0] == block, blocks
    example = nbformat.read(source_notebook("example"), as_version=4)
    assert building_blocks(example, answer_ids(example)) == []  # softmax and top_k_accuracy call nothing of each other


def test_gradescope_results_leave_written_answers_to_be_graded_by_hand() -> None:
    from autograder.batch.gradescope import results_json
    from autograder.execution.records import SubmissionResult, TestResult

    result = SubmissionResult("s", "network_visualization", "s.ipynb", tests=[
        TestResult("test_f", 2.0, 2.0, "passed"), TestResult("inline_question", 0.0, 1.5, "not_run", manual=True)])
    data = results_json(result, {"test_f"})
    assert [t["name"] for t in data["tests"]] == ["test_f"]
    assert data["score"] == 2.0 and "Autograded score: 2 / 2" in data["output"]
    assert "1 written answers (1.5 points) are graded by hand" in data["output"]


def test_the_grade_table_lists_students_with_policy_findings_for_review() -> None:
    from autograder.batch.results import summary_table
    from autograder.execution.records import SubmissionResult, TestResult

    results = [SubmissionResult("ann", "mask_rcnn", "a.ipynb", tests=[
                   TestResult("test_nms", 0.0, 2.0, "failed", finding="nms calls torchvision.ops.nms (cell 12)")]),
               SubmissionResult("bo", "mask_rcnn", "b.ipynb", tests=[TestResult("test_nms", 2.0, 2.0, "passed")])]
    table = summary_table(results)
    assert "policy findings to review (1 students" in table
    assert "mask_rcnn/ann test_nms: nms calls torchvision.ops.nms (cell 12)" in table and "bo test_nms" not in table
