"""The commands end to end on the example: release bundle, demo, grades equal to plain nbgrader's, Gradescope."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import REPO_ROOT, source_notebook
from autograder.__main__ import build_parser
from autograder.batch.demo import run_demo
from autograder.execution.limits import Limits
from autograder.execution.nbgrader_run import kit_environment, run_nbgrader
from autograder.releasing.bundle import build_bundle
from autograder.releasing.course import generate_assignment, make_course_dir
from tests.corpus.build import without_demo_cells
from tests.nbutil import graded_functions, graded_points, max_score

pytestmark = pytest.mark.notebook

COMMANDS = ["references", "release", "grade", "merge", "feedback", "export", "demo", "gradescope", "similarity"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: python -m autograder " + command in capsys.readouterr().out


# -- release --------------------------------------------------------------------------------


def test_student_bundle_has_what_students_need_and_nothing_else(tmp_path: Path) -> None:
    course = make_course_dir(tmp_path / "course", ["example"])
    release = generate_assignment(course, "example")
    (release / "reference_outputs.pt").write_bytes(b"not for students")
    bundle = build_bundle("example", release, tmp_path / "dist")
    assert bundle == tmp_path / "dist" / "example.zip"
    names = zipfile.ZipFile(bundle).namelist()
    for needed in ("example/example.ipynb", "example/cs_lib/__init__.py", "example/cs_lib/checks.py",
                   "example/requirements-student.txt", "example/setup_colab.sh", "example/datasets/download.py",
                   "example/datasets/README.md"):
        assert needed in names
    assert not [n for n in names if "autograder" in n or n.endswith((".pt", ".pyc")) or "source" in n]
    text = zipfile.ZipFile(bundle).read("example/example.ipynb").decode()
    for secret in ("BEGIN SOLUTION", "HIDDEN TESTS", "autograder", "shifted = scores - scores.max"):
        assert secret not in text


def test_release_command_writes_bundles_and_refuses_broken_metadata(tmp_path: Path) -> None:
    course = make_course_dir(tmp_path / "course", ["example"])
    nb = json.loads(source_notebook("example").read_text())
    test_cells = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
    first = test_cells[0]["metadata"]["nbgrader"]["grade_id"]
    test_cells[1]["metadata"]["nbgrader"]["grade_id"] = first
    del test_cells[0]["metadata"]["nbgrader"]["points"]
    (course / "source" / "broken").mkdir()
    (course / "source" / "broken" / "broken.ipynb").write_text(json.dumps(nb))
    env = kit_environment({"DLCV_COURSE_DIR": str(course)})
    proc = subprocess.run([sys.executable, "-m", "autograder", "release", "example", "broken",
                           "--dist", str(tmp_path / "dist")], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    assert (tmp_path / "dist" / "example.zip").exists() and not (tmp_path / "dist" / "broken.zip").exists()
    assert "broken.ipynb has broken nbgrader metadata" in proc.stderr
    assert f"duplicate grade_id '{first}'" in proc.stderr and "graded cell without points" in proc.stderr


# -- demo and equality with plain nbgrader ----------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("demo")
    run, problems = run_demo(work / "demo", jobs=2, limits=Limits(timeout=300, memory=3 * 1024**3), progress=False,
                             names=["example"])
    return work, run, problems


def test_demo_grades_the_four_samples_as_expected(demo) -> None:
    work, run, problems = demo
    assert problems == []
    scores = {r.student: r.score for r in run.results}
    (wrong,) = [s.removeprefix("wrong-") for s in scores if s.startswith("wrong-")]
    (crash,) = [s.removeprefix("crash-") for s in scores if s.startswith("crash-")]
    functions, points = graded_functions("example"), graded_points("example")
    full = sum(points.values())  # what the correct answers earn
    assert wrong in functions and crash in functions and wrong != crash, (wrong, crash, functions)
    assert scores == {"correct": full, "blank": 0, f"wrong-{wrong}": full - points[f"test_{wrong}"],
                      f"crash-{crash}": full - points[f"test_{crash}"]}
    crashed = next(r for r in run.results if r.student == f"crash-{crash}")
    assert {t.grade_id: t.status for t in crashed.tests} == \
        {gid: "error" if gid == f"test_{crash}" else "passed" for gid in points}
    assert (work / "demo" / "dist" / "example.zip").exists()


def test_each_submission_reports_where_its_time_went_without_a_file(demo) -> None:
    """The executor hands its timing report to the worker in the process (executor.take_report), not in a file."""
    work, run, _ = demo
    correct = next(r for r in run.results if r.student == "correct")
    assert {"setup", "total", "kernel_start", "cells", "judge", "restarts", "peak_rss"} <= set(correct.timings)
    assert 0 < correct.timings["kernel_start"] < correct.timings["cells"] < correct.timings["total"]
    assert correct.timings["judge"] > 0 and correct.timings["restarts"] == 0
    crashed = next(r for r in run.results if r.student.startswith("crash-"))
    assert crashed.timings["restarts"] >= 1
    assert not list(work.rglob("execution.json"))


def test_grades_csv_equals_plain_nbgrader_where_nbgrader_survives(tmp_path: Path) -> None:
    """Same submissions, same config: ``grade``'s grades.csv is byte-identical to nbgrader's."""
    from autograder.batch.grading import grade
    from autograder.batch.samples import blank_submission, correct_submission, with_answer_body

    course = make_course_dir(tmp_path / "plain", ["example"])
    # The release is built in-process (same converter, no interpreter start-up); grading and
    # export below are the plain nbgrader commands.
    release = nbformat.read(generate_assignment(course, "example") / "example.ipynb", as_version=4)
    source = nbformat.read(source_notebook("example"), as_version=4)
    correct = without_demo_cells(correct_submission(source, release))
    points = without_demo_cells(correct_submission(source, release))
    next(c for c in points.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_softmax") \
        .metadata["nbgrader"]["points"] = 50
    samples = {"ann": with_answer_body(correct, source, "top_k_accuracy", "return 0.5"),
               "bo": without_demo_cells(blank_submission(release)), "di": points}
    for student, nb in samples.items():
        folder = course / "submitted" / student / "example"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "example.ipynb")
    (course / "submitted" / "di" / "example" / "timestamp.txt").write_text("2024-03-01 10:00:00.000000 UTC")
    ours = grade(course / "submitted", tmp_path / "ours", jobs=2, limits=Limits(timeout=300), progress=False)
    run_nbgrader(["autograde", "example"], course, timeout=900)
    run_nbgrader(["export", "--to", str(tmp_path / "plain.csv")], course)
    assert ours.grades_csv.read_text() == (tmp_path / "plain.csv").read_text()
    points = graded_points("example")
    full = sum(points.values())
    assert [r.score for r in ours.results] == [full - points["test_top_k_accuracy"], 0, full]
    assert [r.max_score for r in ours.results] == [max_score("example")] * 3


# -- Gradescope ----------------------------------------------------------------------------


def test_gradescope_bundle_grades_one_submission_in_a_faked_autograder_root(tmp_path: Path) -> None:
    from autograder.releasing.gradescope import build

    bundle = build("example", tmp_path / "dist", timeout=300, memory=3 * 1024**3)
    assert bundle.name == "example-gradescope.zip"
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
        zf.extractall(root / "source")
    assert {"setup.sh", "run_autograder", "autograder/specs/example.py", "autograder/references/example.pt",
            "autograder/execution/sandbox.sh", "cs_lib/checks.py", "cs_lib/grading/judge_client.py",
            "assignments/source/example/example.ipynb"} <= set(names)
    course = make_course_dir(tmp_path / "course", ["example"])
    release = nbformat.read(generate_assignment(course, "example") / "example.ipynb", as_version=4)
    from autograder.batch.samples import correct_submission, with_answer_body

    source = nbformat.read(source_notebook("example"), as_version=4)
    wrong = with_answer_body(without_demo_cells(correct_submission(source, release)), source, "softmax",
                             "return scores")
    (root / "submission").mkdir(parents=True)
    nbformat.write(wrong, root / "submission" / "example.ipynb")
    env = {**os.environ, "DLCV_GRADESCOPE_ROOT": str(root), "PYTHON": sys.executable,
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    points = graded_points("example")
    assert results["score"] == sum(points.values()) - points["test_softmax"], json.dumps(results, indent=1)[:3000]
    tests = {t["name"]: t for t in results["tests"]}
    assert set(tests) == set(points)
    assert tests["test_softmax"]["score"] == 0 and tests["test_softmax"]["max_score"] == points["test_softmax"]
    for gid in points.keys() - {"test_softmax"}:
        assert tests[gid]["score"] == tests[gid]["max_score"] == points[gid] and tests[gid]["status"] == "passed", gid
    assert all(t["visibility"] == "after_published" for t in results["tests"])
    assert "differ from the reference" in tests["test_softmax"]["output"]  # the visible check's own message
    assert "autograder" not in json.dumps(results["tests"]) and "HIDDEN" not in json.dumps(results)
