"""Shards, merge and resume without Slurm: the split, the environment, merging, missing shards, duplicates, resume.

Most submissions here are files that are not notebooks (rejected with a reason, no kernel), so
a grading run costs the template course and little else; one is a real notebook (the example's
release, answers blank, demo cell dropped) so that the merge also carries autograded notebooks,
feedback pages and nbgrader's scores. tests/test_slurm.py does the same on a real Slurm with the
demo's four samples.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import REPO_ROOT
from autograder.__main__ import main as cli
from autograder.batch.grading import GradingRun, grade, read_stamp, record_path
from autograder.batch.merge import merge
from autograder.batch.samples import blank_submission
from autograder.batch.shards import (
    GRACE_SECONDS,
    Manifest,
    Shard,
    parse_shard,
    shard_from_environment,
    shard_index,
    split,
    task_resources,
)
from autograder.execution.limits import Limits
from autograder.execution.records import Submission
from autograder.releasing.course import generate_assignment, make_course_dir
from tests.corpus.build import without_demo_cells
from tests.nbutil import graded_points

pytestmark = pytest.mark.notebook

GiB = 1024**3
REJECTED = ["ana", "ben", "chloé", "dev", "eve", "finn", "gus"]  # files that are not notebooks


# -- the split --------------------------------------------------------------------------------


def test_shard_index_is_sha256_of_the_id_whatever_the_process() -> None:
    ids = ["ana", "chloé", "smith john", "x" * 300, "0042"]
    for count in (1, 2, 3, 7):
        expected = [int(hashlib.sha256(i.encode()).hexdigest()[:16], 16) % count for i in ids]
        assert [shard_index(i, count) for i in ids] == expected
    # Not Python's hash(): another interpreter with another hash seed gives the same split.
    code = f"from autograder.batch.shards import shard_index; print([shard_index(i, 7) for i in {ids!r}])"
    other = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": "12345"},
                           capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert other.stdout.strip() == str([shard_index(i, 7) for i in ids]), other.stderr


def test_split_ignores_file_order_and_balances_a_class() -> None:
    subs = [Submission(f"student{i:04d}", "example", f"/x/{i}.ipynb") for i in range(3000)]
    shards = split(subs, 4)
    shuffled = subs[:]
    random.Random(0).shuffle(shuffled)
    again = split(shuffled, 4)
    assert [sorted(s.student for s in part) for part in shards] == [sorted(s.student for s in part) for part in again]
    assert sorted(s.student for part in shards for s in part) == sorted(s.student for s in subs)
    sizes = [len(part) for part in shards]
    assert max(sizes) < 1.1 * 3000 / 4 and min(sizes) > 0.9 * 3000 / 4, sizes
    # one student's assignments stay together
    two = split([Submission("ana", "a1", "p"), Submission("ana", "a2", "q")], 5)
    assert sorted(len(p) for p in two) == [0, 0, 0, 0, 2]


@pytest.mark.parametrize(("shard", "count", "env", "expected"), [
    ("1/4", None, {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "9"}, Shard(1, 4)),  # the option wins
    (None, None, {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0",
                  "SLURM_ARRAY_TASK_MAX": "2"}, Shard(2, 3)),
    (None, 5, {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "1", "SLURM_ARRAY_TASK_MIN": "4",
               "SLURM_ARRAY_TASK_MAX": "4"}, Shard(4, 5)),  # a resubmitted task: sbatch --array=4
    (None, 8, {"JOB_COMPLETION_INDEX": "7"}, Shard(7, 8)),  # a Kubernetes Indexed Job
    (None, None, {"JOB_COMPLETION_INDEX": "7"}, None),  # an index without a count: not sharded
    (None, None, {}, None),
])
def test_the_shard_comes_from_the_option_or_the_batch_system(shard, count, env, expected) -> None:
    assert shard_from_environment(shard, count, env) == expected


@pytest.mark.parametrize(("shard", "count", "env", "message"), [
    ("3/3", None, {}, "0 <= I < N"),
    ("1-3", None, {}, "expected I/N"),
    ("1/3", 4, {}, "disagree"),
    (None, 3, {}, "needs a shard index"),
    (None, None, {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "1", "SLURM_ARRAY_TASK_MIN": "4",
                  "SLURM_ARRAY_TASK_MAX": "4"}, "pass --shard-count"),  # would grade everything as 0/1
    (None, None, {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
                  "SLURM_ARRAY_TASK_MAX": "3"}, "not 0-2"),  # --array=1-3
    (None, None, {"SLURM_ARRAY_TASK_ID": "1"}, "SLURM_ARRAY_TASK_COUNT is not"),
    (None, 3, {"JOB_COMPLETION_INDEX": "3"}, "JOB_COMPLETION_INDEX=3"),
])
def test_contradictory_shard_settings_are_refused(shard, count, env, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        shard_from_environment(shard, count, env)


def test_parse_shard_round_trips() -> None:
    assert str(parse_shard("2/5")) == "2/5" and parse_shard("0/1") == Shard(0, 1)


def test_task_resources_follow_the_limits_and_the_sbatch_defaults_use_them() -> None:
    # 10 submissions, 2 at a time: 5 rounds of (1800 + 120) s, plus 10 min of set-up
    assert task_resources(10, 2, 1800, 4 * GiB) == ((5 * (1800 + GRACE_SECONDS) + 600) // 60, 10 * 1024)
    assert task_resources(11, 2, 1800, 4 * GiB)[0] == (6 * 1920 + 600) // 60
    assert task_resources(3, 1, 59, 3 * GiB) == (-(-(3 * (59 + GRACE_SECONDS) + 600) // 60), 5 * 1024)
    script = (REPO_ROOT / "slurm" / "grade_shards.sbatch").read_text()
    time_option = re.search(r"^#SBATCH --time=(\d+):(\d+):00$", script, re.MULTILINE)
    assert int(time_option.group(1)) * 60 + int(time_option.group(2)) == task_resources(10, 2, 1800, 4 * GiB)[0]
    assert "#SBATCH --mem=10G\n" in script and "#SBATCH --cpus-per-task=2\n" in script


# -- grading in shards, merging ------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Eight submissions graded on one machine and as three shards, and the shards merged."""
    work = tmp_path_factory.mktemp("shards")
    subs = work / "submissions"
    subs.mkdir()
    for i, student in enumerate(REJECTED):
        (subs / f"{student}_example.ipynb").write_text("" if i == 0 else f"not a notebook {i}")
    course = make_course_dir(work / "course", ["example"])
    release = nbformat.read(generate_assignment(course, "example") / "example.ipynb", as_version=4)
    nbformat.write(without_demo_cells(blank_submission(release)), subs / "real_example.ipynb")
    options = {"jobs": 2, "limits": Limits(timeout=300, memory=2 * GiB), "assignment": "example",
               "progress": False}
    single = grade(subs, work / "single", **options)
    shards = [grade(subs, work / f"shard_{i}", shard=Shard(i, 3), **options) for i in range(3)]
    merged = merge([work / f"shard_{i}" for i in range(3)], work / "merged")
    return {"work": work, "subs": subs, "options": options, "single": single, "shards": shards, "merged": merged}


def test_merged_shards_equal_one_single_machine_run(batch: dict) -> None:
    single, merged, work = batch["single"], batch["merged"], batch["work"]
    assert merged.written and merged.problems == [] and merged.duplicates == []
    shards: list[GradingRun] = batch["shards"]
    assert sorted(r.student for run in shards for r in run.results) == sorted([*REJECTED, "real"])
    assert all(run.results for run in shards), [len(run.results) for run in shards]  # no empty shard
    for name in ("grades.csv", "tests.csv"):
        assert (work / "merged" / name).read_text() == (single.out / name).read_text()
    softmax = graded_points("example")["test_softmax"]
    assert f"real,example,test_softmax,0,{softmax:g},error" in (work / "merged" / "tests.csv").read_text()
    for kind in ("submitted", "autograded", "feedback"):
        ours = sorted(p.relative_to(work / "merged" / kind) for p in (work / "merged" / kind).rglob("*"))
        theirs = sorted(p.relative_to(single.out / kind) for p in (single.out / kind).rglob("*"))
        assert ours == theirs, kind
    assert (work / "merged" / "autograded" / "real" / "example" / "example.ipynb").exists()
    assert (work / "merged" / "submitted" / "ben" / "example" / "example.ipynb").read_bytes() == \
        (batch["subs"] / "ben_example.ipynb").read_bytes()
    manifest = Manifest.read(work / "shard_1")
    assert manifest.finished and manifest.graded == len(manifest.students) and manifest.resumed == 0
    assert sorted(p for pairs in manifest.plan.values() for p in pairs) == \
        sorted(("example", s) for s in [*REJECTED, "real"])


def _copy(batch: dict, names: list[str], dest: str) -> list[Path]:
    target = batch["work"] / dest
    for name in names:
        shutil.copytree(batch["work"] / name, target / name)
    return [target / name for name in names]


def test_a_missing_shard_is_named_with_its_students_and_stops_the_merge(batch: dict, capsys) -> None:
    folders = _copy(batch, ["shard_0", "shard_2"], "missing")
    students = [s for _, s in Manifest.read(folders[0]).plan[1]]
    out = batch["work"] / "missing" / "merged"
    assert cli(["merge", *map(str, folders), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "shard 1/3 is missing (not given, or it never started); its students: " in printed
    assert all(f"{s} (example)" in printed for s in students) and not out.exists()
    assert cli(["merge", *map(str, folders), "--out", str(out), "--partial"]) == 0
    graded = {line.split(",")[3] for line in (out / "grades.csv").read_text().splitlines()[1:]}
    assert graded == {s for s in [*REJECTED, "real"] if s not in students}


def test_an_unfinished_shard_and_a_folder_without_a_manifest_are_reported(batch: dict) -> None:
    folders = _copy(batch, ["shard_0", "shard_1", "shard_2"], "unfinished")
    manifest = Manifest.read(folders[2])
    manifest.finished = None  # the job died: one result never came
    manifest.write(folders[2])
    lost = manifest.students[-1][1]
    record_path(folders[2], "example", lost).unlink()
    (folders[0] / "shard.json").unlink()
    report = merge(folders, batch["work"] / "unfinished" / "merged")
    assert not report.written
    assert f"{folders[0]}: no shard.json" in report.problems[0]
    shard0 = [s for _, s in manifest.plan[0]]
    assert any(p.startswith("shard 0/3 is missing") and all(f"{s} (example)" in p for s in shard0)
               for p in report.problems), report.problems
    total = len(manifest.students)
    assert f"shard 2/3 ({folders[2]}) did not finish (started {manifest.started} on {manifest.host}): " \
           f"{total - 1} of {total} students graded; not graded: {lost} (example)" in report.problems


def test_a_student_in_two_shards_keeps_the_newer_result(batch: dict) -> None:
    folders = _copy(batch, ["shard_0", "shard_1", "shard_2"], "duplicates")
    rerun = batch["work"] / "duplicates" / "rerun"
    student = Manifest.read(folders[1]).students[0][1]
    (rerun / "grading" / "example").mkdir(parents=True)
    shutil.copytree(folders[1] / "submitted", rerun / "submitted")
    Manifest(Shard(0, 1), {0: [("example", student)]}, ["example"], finished="2099-01-01T00:00:00+00:00") \
        .write(rerun)
    record = json.loads(record_path(folders[1], "example", student).read_text())
    record["tests"][0]["reason"] = "regraded by the rerun"
    record_path(rerun, "example", student).write_text(json.dumps(record))
    stamp = read_stamp(folders[1], "example", student)
    for graded_at, kept in (("2099-01-01T00:00:00+00:00", rerun), ("2000-01-01T00:00:00+00:00", folders[1])):
        stamp.graded_at = graded_at
        (rerun / "grading" / "example" / f"{student}.input").write_text(stamp.to_json())
        out = batch["work"] / "duplicates" / f"merged-{graded_at[:4]}"
        report = merge([*folders, rerun], out)
        assert report.written and report.problems == []
        assert len(report.duplicates) == 1 and report.duplicates[0].startswith(f"{student} (example) has results in")
        assert report.duplicates[0].endswith(f"kept {kept}'s, the newer")
        assert ("regraded by the rerun" in (out / "tests.csv").read_text()) == (kept == rerun)
    with pytest.raises(ValueError, match="one of the shard folders"):
        merge(folders, folders[0])


# -- resume ---------------------------------------------------------------------------------------


def test_a_rerun_skips_unchanged_submissions_and_regrades_changed_ones_forced_ones_and_new_limits(batch: dict) -> None:
    work, options = batch["work"], batch["options"]
    index = next(i for i, run in enumerate(batch["shards"]) if all(r.student != "real" for r in run.results))
    (out,) = _copy(batch, [f"shard_{index}"], "resume")
    students = sorted(r.student for r in batch["shards"][index].results)
    before = {s: read_stamp(out, "example", s) for s in students}
    subs = work / "resume" / "submissions"
    shutil.copytree(batch["subs"], subs)

    (out / "gradebook.db").unlink()  # as if the run had died before its gradebook step
    again = grade(subs, out, shard=Shard(index, 3), **options)
    assert (again.graded, again.resumed) == (0, len(students))
    assert f"({len(students)} kept from an earlier run with the same input" in again.summary()
    assert {s: read_stamp(out, "example", s) for s in students} == before
    for name in ("tests.csv", "grades.csv"):  # the kept results went back into the gradebook
        assert (out / name).read_text() == (work / f"shard_{index}" / name).read_text()

    changed = students[0]
    (subs / f"{changed}_example.ipynb").write_text("another wrong file")
    again = grade(subs, out, shard=Shard(index, 3), **options)
    assert (again.graded, again.resumed) == (1, len(students) - 1)
    after = {s: read_stamp(out, "example", s) for s in students}
    assert after[changed].graded_at > before[changed].graded_at
    assert after[changed].input_sha256 != before[changed].input_sha256
    assert all(after[s] == before[s] for s in students[1:])

    forced = grade(subs, out, shard=Shard(index, 3), force=True, **options)
    assert (forced.graded, forced.resumed) == (len(students), 0)
    assert all(read_stamp(out, "example", s).graded_at > after[s].graded_at for s in students)

    longer = grade(subs, out, shard=Shard(index, 3), **{**options, "limits": Limits(timeout=299, memory=2 * GiB)})
    assert (longer.graded, longer.resumed) == (len(students), 0)  # another limit can change a grade


def test_grade_and_merge_command_lines(batch: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    index = 1
    args = ["grade", str(batch["subs"]), "--assignment", "example", "--out", str(tmp_path / "k8s"), "--jobs", "2",
            "--timeout", "300", "--memory-limit", "2GiB", "--quiet"]
    assert cli([*args, "--shard-count", "3"]) == 0
    assert Manifest.read(tmp_path / "k8s").shard == Shard(index, 3)
    assert f"shard {index}/3: graded 2 submissions" in capsys.readouterr().out
    assert cli([*args, "--shard", "1/2", "--shard-count", "3"]) == 1
    assert "disagree" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["merge", "--help"])
    assert "--partial" in capsys.readouterr().out
