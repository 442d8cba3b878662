"""Nothing a submission leaves behind reaches its grade, the grader or another student (issue 15).

The hostile submissions of ``tests/corpus/leftovers.py`` are graded with the real pipeline
(:func:`autograder.batch.grading.grade`, two processes, sandboxed kernels, the judge in the grading
process) beside honest correct submissions, in two batches:

- ``leftovers``: classes 1, 2 and 5 and the privilege probe, graded once, then graded again without
  ``force`` on the same output folder (a resumed run) with two more students: ``reader`` looks for
  everything ``planter`` planted, ``late-honest`` is a plain correct submission;
- ``resources``: fork and thread bombs, full tmpfs, 100 MB of output, hostile judge frames, with a
  1.5 GiB memory limit.

Every student must get exactly its honest score, in ``tests.csv``'s results and in ``grades.csv``. Around
each batch the machine is compared before and after: a canary file and folder outside the sandbox
(content, mode, entries), the other submissions' files, the host name and a list of sysctls, a SysV
shared-memory segment and a ``/dev/shm`` file of the host (which the kernel must not see), and the
checkout (no file the kernel wrote; under CI, no change at all).
"""

from __future__ import annotations

import ast
import csv
import ctypes
import hashlib
import json
import os
import re
import secrets
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from autograder import REPO_ROOT, source_notebook
from autograder.batch.grading import GradingRun, grade
from autograder.batch.results import SubmissionResult
from autograder.batch.samples import correct_submission
from autograder.execution import sandbox
from autograder.execution.isolation import GiB
from autograder.execution.limits import Limits
from autograder.releasing.course import generate_assignment, make_course_dir
from tests.corpus.leftovers import (
    LEFTOVERS,
    MARKER,
    POINTS,
    READER,
    RESOURCE_ATTACKS,
    Leftover,
    Target,
    leftover_notebook,
)
from tests.nbutil import max_score

pytestmark = pytest.mark.notebook

VICTIM = "zz-honest"  # graded beside the attacks, and the target of the ones that aim at another student
SYSCTLS = ("kernel/hostname", "kernel/domainname", "kernel/sysrq", "kernel/core_pattern", "kernel/panic",
           "kernel/pid_max", "kernel/threads-max", "kernel/shmmax", "kernel/msgmax", "vm/overcommit_memory",
           "vm/swappiness", "fs/file-max")
CHECKOUT_TREES = ("autograder", "cs_lib", "assignments/source")
RESOURCE_LIMITS = Limits(timeout=240.0, cell_timeout=30.0, memory=int(1.5 * GiB), max_output_chars=200_000)


def _need_sandbox() -> None:
    if not sandbox.plan().files_isolated and not os.environ.get("CI"):
        pytest.skip(sandbox.plan().note)


# -- the machine, before and after ---------------------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkout_files() -> dict[str, str]:
    """``{path: sha256}`` of every file of the grader's trees in the checkout (untracked ones too)."""
    found = {}
    for tree in CHECKOUT_TREES:
        for path in sorted((REPO_ROOT / tree).rglob("*")):
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(REPO_ROOT))] = _sha(path)
    return found


def tracked_changes() -> str:
    """``git status`` of tracked files (empty when grading changed nothing and nobody else edits)."""
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=False).stdout


def machine_state(target: Target) -> dict[str, object]:
    """What no kernel may change: canaries, other students' files, host name, sysctls, host IPC."""
    state: dict[str, object] = {"hostname": socket.gethostname(), "nodename": os.uname().nodename}
    for name in SYSCTLS:
        path = Path("/proc/sys") / name
        if path.exists():
            state[str(path)] = path.read_text()
    for path in (Path(target.canary_file), Path(target.canary_dir), Path(target.host_shm)):
        info = path.lstat()
        state[str(path)] = (stat.filemode(info.st_mode), info.st_uid, info.st_nlink,
                            sorted(os.listdir(path)) if path.is_dir() else path.read_bytes())
    state["lms"] = {p.name: _sha(p) for p in sorted(Path(target.lms).iterdir())}
    if target.ipc_key is not None:
        state["ipc"] = str(target.ipc_key) in Path("/proc/sysvipc/shm").read_text().split()
    return state


def assert_machine_unchanged(before: dict[str, object], after: dict[str, object]) -> None:
    lms_before, lms_after = before["lms"], after["lms"]
    assert {k: v for k, v in lms_after.items() if k in lms_before} == lms_before, "a submission file changed"
    changed = {k: (before[k], after.get(k)) for k in before if k != "lms" and before[k] != after.get(k)}
    assert not changed, changed


def assert_checkout_unchanged(before: dict[str, str], tracked_before: str) -> None:
    """No file of the checkout holds anything a kernel wrote; under CI (nobody else editing) nothing changed."""
    after = checkout_files()
    changed = [p for p in after if before.get(p) != after[p]]
    written = [p for p in changed if MARKER.encode() in (REPO_ROOT / p).read_bytes()
               or Path(p).name in ("sitecustomize.py", "usercustomize.py", "matplotlibrc", "dlcv_planted.pth")]
    assert not written, f"grading wrote into the checkout: {written}"
    if os.environ.get("CI"):
        assert changed == [] and tracked_changes() == tracked_before, changed


def _host_ipc_segment() -> tuple[int | None, int | None]:
    """A SysV shared-memory segment of the host (key, id), or (None, None) where SysV IPC is unavailable."""
    libc = ctypes.CDLL(None, use_errno=True)
    key = secrets.randbelow(1 << 30) + 1
    shmid = libc.shmget(ctypes.c_int(key), ctypes.c_size_t(4096), ctypes.c_int(0o1000 | 0o600))
    return (key, shmid) if shmid >= 0 else (None, None)


def _remove_ipc_segment(shmid: int | None) -> None:
    if shmid is not None:
        ctypes.CDLL(None, use_errno=True).shmctl(ctypes.c_int(shmid), ctypes.c_int(0), None)


@dataclass
class Batch:
    target: Target
    runs: list[GradingRun]
    before: dict[str, object]
    after: dict[str, object]
    checkout_before: dict[str, str]
    tracked_before: str

    def result(self, student: str, run: int = -1) -> SubmissionResult:
        return next(r for r in self.runs[run].results if r.student == student)


def _make_target(work: Path, memory: int) -> tuple[Target, int | None]:
    canary_dir = work / "canary"
    canary_dir.mkdir()
    canary = canary_dir / "canary.txt"
    canary.write_text("a file outside the sandbox\n")
    canary.chmod(0o640)
    canary_dir.chmod(0o750)
    host_shm = Path("/dev/shm") / f"dlcv-host-{secrets.token_hex(4)}"
    host_shm.write_text("the host's shared memory\n")
    key, shmid = _host_ipc_segment()
    target = Target(canary_file=str(canary), canary_dir=str(canary_dir), repo=str(REPO_ROOT.resolve()),
                    out=str(work / "out"), lms=str(work / "lms"), victim=VICTIM, hostname=socket.gethostname(),
                    unprivileged=os.geteuid() == 0, memory=memory, ipc_key=key, host_shm=str(host_shm))
    (work / "lms").mkdir()
    return target, shmid


def _notebooks(work: Path) -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    course = make_course_dir(work / "course", ["example"])
    release = nbformat.read(generate_assignment(course, "example") / "example.ipynb", as_version=4)
    source = nbformat.read(source_notebook("example"), as_version=4)
    return release, correct_submission(source, release)


def _grade_batch(work: Path, attacks: tuple[Leftover, ...], limits: Limits,
                 later: tuple[Leftover, ...] = ()) -> Batch:
    """Grade ``attacks`` beside the victim; with ``later``, grade again (resumed) with those added."""
    target, shmid = _make_target(work, limits.memory)
    release, correct = _notebooks(work)
    lms = Path(target.lms)
    for attack in attacks:
        nbformat.write(leftover_notebook(release, correct, attack, target), lms / f"{attack.student}_example.ipynb")
    nbformat.write(correct, lms / f"{VICTIM}_example.ipynb")
    before, checkout_before, tracked_before = machine_state(target), checkout_files(), tracked_changes()
    try:
        runs = [grade(lms, Path(target.out), jobs=2, limits=limits, progress=False)]
        if later:
            for attack in later:
                nbformat.write(leftover_notebook(release, correct, attack, target),
                               lms / f"{attack.student}_example.ipynb")
            nbformat.write(correct, lms / "late-honest_example.ipynb")
            runs.append(grade(lms, Path(target.out), jobs=2, limits=limits, progress=False))
        after = machine_state(target)
    finally:
        _remove_ipc_segment(shmid)
        Path(target.host_shm).unlink(missing_ok=True)
    return Batch(target, runs, before, after, checkout_before, tracked_before)


def grades_csv_scores(run: GradingRun) -> dict[str, float]:
    return {r["student_id"]: float(r["score"]) for r in csv.DictReader(open(run.grades_csv, encoding="utf-8"))}


def printed(result: SubmissionResult) -> str:
    """Everything the graded notebook's cells printed (streams and text outputs)."""
    nb = nbformat.read(result.files["autograded"], as_version=4)
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


def explain(result: SubmissionResult) -> list[tuple[str, float, str, str]]:
    return [(t.grade_id, t.points, t.status, t.reason[:300]) for t in result.tests]


# -- the batches -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leftovers(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    _need_sandbox()
    limits = Limits(timeout=240.0, cell_timeout=30.0)
    return _grade_batch(tmp_path_factory.mktemp("leftovers"), LEFTOVERS, limits, later=(READER,))


@pytest.fixture(scope="module")
def resources(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    _need_sandbox()
    if os.geteuid() != 0:
        pytest.skip("the resource attacks need the kernel's own uid (RLIMIT_NPROC bounds the fork bomb), which "
                    "only a grader running as root gives it")
    return _grade_batch(tmp_path_factory.mktemp("resources"), RESOURCE_ATTACKS, RESOURCE_LIMITS)


# -- the corpus ---------------------------------------------------------------------------------------------


def test_the_corpus_covers_classes_1_2_3_and_5_with_three_attacks_each() -> None:
    every = (*LEFTOVERS, READER, *RESOURCE_ATTACKS)
    assert len(every) >= 13 and len({a.student for a in every}) == len(every)
    for cls in (1, 2, 3, 5):
        assert sum(a.attack_class == cls for a in every) >= 3, cls


# -- classes 1, 2 and 5: the leftovers batch -----------------------------------------------------------------

@pytest.mark.parametrize("attack", [pytest.param(a, id=a.student) for a in (*LEFTOVERS, READER)])
def test_each_leftover_attack_gets_exactly_its_honest_score(leftovers: Batch, attack: Leftover) -> None:
    result = leftovers.result(attack.student)
    assert result.score == attack.honest_score, (explain(result), printed(result)[-3000:])
    assert grades_csv_scores(leftovers.runs[-1])[attack.student] == attack.honest_score


def test_honest_students_beside_the_leftovers_keep_full_marks(leftovers: Batch) -> None:
    for student in (VICTIM, "late-honest"):
        result = leftovers.result(student)
        assert result.score == result.max_score == max_score("example"), (student, explain(result))


def test_the_resumed_run_keeps_every_score_and_grades_only_the_new_students(leftovers: Batch) -> None:
    first, resumed = leftovers.runs
    assert (resumed.graded, resumed.resumed) == (2, len(first.results)), (resumed.graded, resumed.resumed)
    assert {r.student: r.score for r in first.results} == \
        {r.student: r.score for r in resumed.results if r.student not in (READER.student, "late-honest")}
    assert grades_csv_scores(first).items() <= grades_csv_scores(resumed).items()


def test_the_test_cells_of_class_1_attacks_score_nothing_whatever_their_outcome(leftovers: Batch) -> None:
    """Died, timed out, errors named like the grader's, forged metadata: every test cell gets 0, with a reason."""
    reasons = {}
    for attack in (a for a in LEFTOVERS if a.attack_class == 1):
        for test in leftovers.result(attack.student).tests:
            assert test.points == 0 and test.status in ("error", "failed", "not_run"), (attack.student, test)
            reasons[attack.student, test.grade_id] = test.reason
    # The executor's own bookkeeping, not the outputs' names, says what happened.
    assert "died" in reasons["forge-then-exit", "test_softmax"], reasons
    assert "did not finish" in reasons["forge-then-hang-ignoring-interrupt", "test_softmax"], reasons
    named = leftovers.result("grader-named-exceptions")
    nb = nbformat.read(named.files["autograded"], as_version=4)
    outcomes = [c.metadata["autograder"]["outcome"] for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    assert outcomes == ["error"] * len(POINTS) and named.timings.get("restarts") == 0, (outcomes, named.timings)


def test_nothing_outside_the_sandbox_changed(leftovers: Batch) -> None:
    """The canary file and folder, other students' files, host name, sysctls and host IPC are as they were."""
    assert_machine_unchanged(leftovers.before, leftovers.after)


def test_grading_never_changed_the_checkout(leftovers: Batch) -> None:
    assert_checkout_unchanged(leftovers.checkout_before, leftovers.tracked_before)


def test_the_output_folder_holds_no_link_fifo_socket_or_device(leftovers: Batch) -> None:
    """Nothing the kernel made was copied into ``out``: every entry there is a plain file or folder."""
    odd = []
    for folder, dirs, files in os.walk(leftovers.target.out):
        for name in dirs + files:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                odd.append((os.path.join(folder, name), stat.filemode(mode)))
    assert not odd, odd
    for result in leftovers.runs[-1].results:
        nb = nbformat.read(result.files["autograded"], as_version=4)
        assert MARKER not in json.dumps(nb.metadata), f"{result.student}: the kernel's notebook reached out"
        assert not (result.timestamp or "").startswith("2020-01-01"), f"{result.student}: the kernel's timestamp"


def test_the_planter_planted_and_the_reader_found_nothing(leftovers: Batch) -> None:
    """The planting attack really wrote files (in its own scratch folders), and a later kernel saw none."""
    planted = re.search(r"planted (\d+) files", printed(leftovers.result("planter")))
    assert planted and int(planted.group(1)) > 0, printed(leftovers.result("planter"))[-2000:]
    # Everything it managed to write is in its own scratch folders (tmpfs, or the runtime folder under /tmp).
    paths = ast.literal_eval(printed(leftovers.result("planter")).split("files: ", 1)[1].splitlines()[0])
    paths = [os.path.normpath(os.path.join(sandbox.WORK_DIR, p)) for p in paths]  # relative: the working folder
    outside = [p for p in paths if not p.startswith(("/tmp/", "/dev/shm/", sandbox.WORK_DIR + "/"))]
    assert not outside, outside
    assert "found: []" in printed(leftovers.result(READER.student))


def test_a_kernel_sees_no_judge_socket_but_its_own(leftovers: Batch) -> None:
    judges = re.search(r"JUDGES (\[.*\])", printed(leftovers.result("judge-socket-thief")))
    assert judges, printed(leftovers.result("judge-socket-thief"))[-2000:]
    seen = json.loads(judges.group(1))
    assert len([p for p in seen if p.endswith(".sock")]) <= 1, seen


# -- class 3: the resources batch ----------------------------------------------------------------------------


@pytest.mark.parametrize("attack", [pytest.param(a, id=a.student) for a in RESOURCE_ATTACKS])
def test_each_resource_attack_gets_exactly_its_honest_score(resources: Batch, attack: Leftover) -> None:
    result = resources.result(attack.student)
    assert result.score == attack.honest_score, (explain(result), printed(result)[-3000:])
    assert grades_csv_scores(resources.runs[-1])[attack.student] == attack.honest_score


def test_an_honest_student_beside_the_resource_attacks_keeps_full_marks(resources: Batch) -> None:
    result = resources.result(VICTIM)
    assert result.score == result.max_score == max_score("example"), explain(result)


def test_no_bomb_process_outlives_the_batch(resources: Batch) -> None:
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "dlcv-bomb":
                left.append(pid)
        except OSError:
            pass
    assert not left, f"fork-bomb processes still running: {left}"
    forks = re.search(r"fork refused after (\d+) children", printed(resources.result("fork-bomb")))
    assert forks is None or int(forks.group(1)) <= RESOURCE_LIMITS.processes


def test_threads_are_bounded_by_the_process_limit(resources: Batch) -> None:
    threads = re.search(r"THREADS (\d+)", printed(resources.result("thread-bomb")))
    assert threads, printed(resources.result("thread-bomb"))[-2000:]
    assert 0 < int(threads.group(1)) <= RESOURCE_LIMITS.processes


def test_every_tmpfs_is_bounded_and_the_runtime_folder_is_watched(resources: Batch) -> None:
    result = resources.result("fill-every-tmpfs")
    written = re.search(r"WRITTEN (\{.*\})", printed(result))
    assert written, printed(result)[-2000:]
    sizes = json.loads(written.group(1))
    _, tmp, shm, work = sandbox.memory_split(RESOURCE_LIMITS.memory)
    assert sizes["/tmp"] <= tmp and sizes["/dev/shm"] <= shm and sizes[sandbox.WORK_DIR] <= work, sizes
    nb = nbformat.read(result.files["autograded"], as_version=4)
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "softmax")
    assert answer.metadata["autograder"]["outcome"] == "died", answer.metadata["autograder"]
    assert "runtime folder" in answer.metadata["autograder"]["reason"], answer.metadata["autograder"]


@pytest.mark.parametrize("student", ["huge-outputs", "display-updates-and-widgets"])
def test_huge_outputs_leave_small_files(resources: Batch, student: str) -> None:
    """Errors, display metadata, HTML, stderr, display updates, widget state: the graded files stay small."""
    result = resources.result(student)
    cells = len(nbformat.read(result.files["autograded"], as_version=4).cells)
    bound = cells * RESOURCE_LIMITS.max_output_chars * 2 + 2_000_000
    for kind in ("autograded", "feedback"):
        assert os.path.getsize(result.files[kind]) < bound, (kind, os.path.getsize(result.files[kind]), bound)
    assert len(result.to_json()) < 200_000


def test_hostile_judge_frames_fail_fast(resources: Batch) -> None:
    result = resources.result("hostile-judge-frames")
    assert [t.status for t in result.tests] == ["failed"] * len(POINTS), explain(result)
    assert all("malformed or oversized" in t.reason for t in result.tests), explain(result)
    assert result.timings.get("judge", 0.0) < 10.0, result.timings


def test_the_resource_attacks_changed_nothing_outside_the_sandbox(resources: Batch) -> None:
    assert_machine_unchanged(resources.before, resources.after)
    assert_checkout_unchanged(resources.checkout_before, resources.tracked_before)
