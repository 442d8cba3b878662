"""The Slurm recipe on a real, single-node Slurm: slurm/submit.sh, 3 array tasks, the merge job, a cancelled shard.

The module starts ``munged``, ``slurmctld`` and ``slurmd`` (Debian's ``munge`` and ``slurm-wlm``)
on localhost with a temporary ``slurm.conf`` (free ports, its own munge key and socket), submits
the repository's own scripts exactly as the README says, and stops every daemon it started, by
PID, at the end, even when a test fails. Without the packages (or without root, which slurmd
needs to start jobs) it skips with a one-line reason; when ``CI=true`` it fails instead.

Submissions: the ``example`` assignment's four demo samples (correct, blank, one wrong function,
one that crashes its kernel), without the demo cell so that each costs seconds. Their ids carry
the prefix ``s1-`` because the bare demo names all hash to shard 2 of 3; with it the shards hold
1, 2 and 1 students.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil
import pytest

from autograder import REPO_ROOT, source_notebook
from autograder.batch.demo import sample_submissions
from autograder.batch.merge import merge
from autograder.batch.shards import Manifest
from autograder.releasing.course import generate_assignment, make_course_dir
from tests.corpus.build import without_demo_cells
from tests.nbutil import graded_points

pytestmark = pytest.mark.notebook

SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo")
LIMITS = ["--timeout", "300", "--memory-limit", "2GiB"]


def _program(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def _require_slurm() -> None:
    missing = [p for p in PROGRAMS if _program(p) is None]
    reason = None
    if missing:
        reason = f"slurm-wlm and munge are not installed ({', '.join(missing)} missing; .ci/run installs them)"
    elif os.geteuid() != 0:
        reason = "a local slurmd must run as root to start jobs"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason + ", and CI=true: the Slurm test must run in CI")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalSlurm:
    """A single-node Slurm cluster in ``root``; ``daemons`` are the processes this test started."""

    root: Path
    env: dict[str, str]
    node: str
    daemons: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([_program(args[0]) or args[0], *args[1:]], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=check, cwd=REPO_ROOT)

    def submit(self, *args: str) -> tuple[int, int | None, str]:
        """Run slurm/submit.sh; return (array job id, merge job id or None, its output)."""
        proc = subprocess.run(["bash", str(REPO_ROOT / "slurm" / "submit.sh"), *args], env=self.env,
                              capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        array = re.search(r"^array job (\d+)", proc.stdout, re.MULTILINE)
        merge = re.search(r"^merge job (\d+)", proc.stdout, re.MULTILINE)
        assert array, proc.stdout
        return int(array.group(1)), int(merge.group(1)) if merge else None, proc.stdout

    def queued(self, job: int) -> bool:
        """True while any task of ``job`` is pending or running."""
        out = self.run("squeue", "-h", "-j", str(job), "-o", "%i %T", check=False).stdout
        return bool(out.strip())

    def wait(self, job: int, timeout: float = 300) -> float:
        """Wait until ``job`` (all its array tasks) has left the queue; return the time it did."""
        deadline = time.monotonic() + timeout
        while self.queued(job):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job} still queued after {timeout:.0f} s:\n{self.diagnostics()}")
            time.sleep(0.5)
        return time.perf_counter()

    def states(self, job: int) -> dict[str, tuple[str, str]]:
        """``JobId`` (``12_0`` for an array task) -> (JobState, ExitCode) from ``scontrol show job``."""
        out = self.run("scontrol", "-o", "show", "job", str(job), check=False).stdout
        states = {}
        for line in out.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            task = fields.get("ArrayTaskId")
            key = f"{fields.get('ArrayJobId')}_{task}" if task else fields.get("JobId", "?")
            states[key] = (fields.get("JobState", "?"), fields.get("ExitCode", "?"))
        return states

    def diagnostics(self) -> str:
        squeue = self.run("squeue", "-a", check=False).stdout
        logs = "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                       for p in sorted(self.root.glob("log/*")) if p.is_file())
        return squeue + logs

    def stop(self) -> None:
        """Cancel every job, let them end, then stop the daemons this test started, by PID (newest first)."""
        if self.daemons and all(d.poll() is None for d in self.daemons):
            self.run("scancel", "--full", "-u", "root", check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.run("squeue", "-h", check=False).stdout.strip():
                time.sleep(0.5)
        for daemon in reversed(self.daemons):
            if daemon.poll() is None:
                os.kill(daemon.pid, signal.SIGTERM)
                try:
                    daemon.wait(15)
                except subprocess.TimeoutExpired:
                    os.kill(daemon.pid, signal.SIGKILL)
                    daemon.wait(5)


def _start_cluster(root: Path) -> LocalSlurm:
    for sub in ("etc", "run", "state", "spool", "log"):
        (root / sub).mkdir(parents=True)
    os.chmod(root, 0o755)  # munged wants every directory above its socket searchable by all
    os.chmod(root / "run", 0o755)
    os.chmod(root / "etc", 0o700)
    key = root / "etc" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    node = socket.gethostname().split(".")[0]
    cpus = len(os.sched_getaffinity(0))
    memory_mb = int(psutil.virtual_memory().total / 1024**2 * 0.9)
    conf = root / "etc" / "slurm.conf"
    socket_path = root / "run" / "munge.socket"
    conf.write_text(f"""\
ClusterName=dlcvtest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={socket_path}
CredType=cred/munge
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "run" / "slurmctld.pid"}
SlurmdPidFile={root / "run" / "slurmd.pid"}
SlurmctldLogFile={root / "log" / "slurmctld.log"}
SlurmdLogFile={root / "log" / "slurmd.log"}
PlugStackConfig=/dev/null
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "DLCV_"))}
    env.update(SLURM_CONF=str(conf), DLCV_VENV=sys.prefix)  # the suite's venv: .ci/venv.sh already made it
    cluster = LocalSlurm(root, env, node)

    def start(*argv: str) -> None:
        log = open(root / "log" / f"{Path(argv[0]).name}.out", "wb")  # noqa: SIM115 - the daemon keeps it
        cluster.daemons.append(subprocess.Popen([_program(argv[0]), *argv[1:]], stdout=log, stderr=subprocess.STDOUT,
                                                env=env, start_new_session=True))

    start("munged", "--foreground", f"--socket={socket_path}", f"--key-file={key}",
          f"--log-file={root / 'log' / 'munged.log'}", f"--pid-file={root / 'run' / 'munged.pid'}",
          f"--seed-file={root / 'etc' / 'munged.seed'}")
    _until(lambda: socket_path.exists(), 15, "munged did not create its socket", cluster)
    start("slurmctld", "-D", "-c", "-f", str(conf))
    start("slurmd", "-D", "-N", node, "-f", str(conf))

    def idle() -> bool:
        out = cluster.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
        return out == "idle"

    _until(idle, 60, "the node did not become idle", cluster)
    return cluster


def _until(condition, timeout: float, what: str, cluster: LocalSlurm) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [d.args[0] for d in cluster.daemons if d.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"{what} (exited: {dead}){cluster.diagnostics()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def slurm() -> Iterator[LocalSlurm]:
    _require_slurm()
    root = Path(tempfile.mkdtemp(prefix="dlcv-slurm-", dir="/tmp"))
    cluster = LocalSlurm(root, {}, "")
    try:
        cluster = _start_cluster(root)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def clean_run(slurm: LocalSlurm) -> dict:
    """The demo samples graded once by ``grade --jobs 2`` and once by a 3-task array plus its merge job."""
    work = slurm.root / "work"
    course = make_course_dir(work / "course", ["example"])
    release = nbformat.read(generate_assignment(course, "example") / "example.ipynb", as_version=4)
    source = nbformat.read(source_notebook("example"), as_version=4)
    submissions = work / "submitted"
    for name, nb in sample_submissions("example", source, release).items():
        student = f"s1-{name}"
        (submissions / student / "example").mkdir(parents=True)
        nbformat.write(without_demo_cells(nb), submissions / student / "example" / "example.ipynb")

    start = time.perf_counter()
    single = subprocess.run([sys.executable, "-m", "autograder", "grade", str(submissions), "--out",
                             str(work / "single"), "--jobs", "2", "--quiet", *LIMITS], cwd=REPO_ROOT,
                            env=slurm.env, capture_output=True, text=True, timeout=600)
    single_seconds = time.perf_counter() - start
    assert single.returncode == 0, single.stdout + single.stderr

    start = time.perf_counter()
    array, merge_job, _ = slurm.submit("--shards", "3", "--jobs", "1", *LIMITS, str(submissions),
                                       str(work / "slurm"))
    array_seconds = slurm.wait(array) - start
    merged_seconds = slurm.wait(merge_job) - start
    return {"work": work, "submissions": submissions, "single": work / "single", "out": work / "slurm",
            "array": array, "merge": merge_job, "single_seconds": single_seconds, "array_seconds": array_seconds,
            "merged_seconds": merged_seconds}


def test_three_array_tasks_and_the_merge_job_give_the_single_machine_grades(slurm: LocalSlurm,
                                                                              clean_run: dict) -> None:
    out = clean_run["out"]
    states = slurm.states(clean_run["array"])
    assert sorted(states) == [f"{clean_run['array']}_{i}" for i in range(3)], states
    assert {s for s, _ in states.values()} == {"COMPLETED"}, f"{states}{slurm.diagnostics()}"
    assert slurm.states(clean_run["merge"]) == {str(clean_run["merge"]): ("COMPLETED", "0:0")}

    manifests = [Manifest.read(out / f"shard_{i}") for i in range(3)]
    assert [str(m.shard) for m in manifests] == ["0/3", "1/3", "2/3"]
    assert all(m.finished for m in manifests)
    held = sorted(pair for m in manifests for pair in m.students)
    assert held == sorted(("example", p.name) for p in clean_run["submissions"].iterdir())
    assert sorted(len(m.students) for m in manifests) == [1, 1, 2]

    single, merged = clean_run["single"], out / "merged"
    assert (merged / "grades.csv").read_text() == (single / "grades.csv").read_text()
    assert (merged / "tests.csv").read_text() == (single / "tests.csv").read_text()
    tests = len(graded_points("example"))
    assert len((merged / "tests.csv").read_text().splitlines()) == 1 + 4 * tests  # 4 students, one row per test
    for student in (p.name for p in clean_run["submissions"].iterdir()):  # all graded by a kernel
        assert (merged / "feedback" / student / "example" / "example.html").exists()
        assert (merged / "autograded" / student / "example" / "example.ipynb").exists()
    grading = []  # per task: (submissions, seconds inside grade) from the task's log
    for i in range(3):
        log = (out / "logs" / f"dlcv-grade-{clean_run['array']}_{i}.out").read_text()
        graded = re.search(r"shard \d/3: graded (\d+) submissions in ([\d.]+) s", log)
        assert graded, log
        grading.append(f"{graded.group(1)} in {float(graded.group(2)):.0f} s")
    print(f"\nSlurm: grade --jobs 2 {clean_run['single_seconds']:.1f} s; 3 array tasks (1 core each) "
          f"{clean_run['array_seconds']:.1f} s (inside grade: {', '.join(grading)}); with the merge job "
          f"{clean_run['merged_seconds']:.1f} s")


def test_a_cancelled_shard_resumes_without_regrading_its_finished_students(slurm: LocalSlurm,
                                                                           clean_run: dict) -> None:
    clean = clean_run["out"]
    manifests = {i: Manifest.read(clean / f"shard_{i}") for i in range(3)}
    index = max(manifests, key=lambda i: len(manifests[i].students))
    students = [s for _, s in manifests[index].students]
    assert len(students) >= 2  # four students in three shards
    out = clean_run["work"] / "resume"
    for i in manifests:
        if i != index:
            shutil.copytree(clean / f"shard_{i}", out / f"shard_{i}")
    shard_out = out / f"shard_{index}"
    (out / "logs").mkdir()
    # The shard's students but its first wait in a free cell of their own for longer than the test waits, so the
    # cancel always lands with exactly one student finished (whether the shard grades one or two at a time).
    # The rerun grades them from their notebooks as submitted: an unfinished student's input may change.
    submissions = out / "submitted"
    shutil.copytree(clean_run["submissions"], submissions)
    slow = students[1:]
    for student in slow:
        path = submissions / student / "example" / "example.ipynb"
        nb = nbformat.read(path, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell("import time\ntime.sleep(3600)"))
        nbformat.write(nb, path)
    # A rerun of one shard, as slurm/grade_shards.sbatch documents it: sbatch --array=I ... N
    rerun = ["sbatch", "--parsable", f"--array={index}", "--cpus-per-task=1", "--mem=4G",
             f"--output={out}/logs/%x-%A_%a.out", str(REPO_ROOT / "slurm" / "grade_shards.sbatch"),
             str(submissions), str(out), "3", *LIMITS]

    job = int(slurm.run(*rerun).stdout.strip().split(";")[0])
    stamps = shard_out / "grading" / "example"
    deadline = time.monotonic() + 240
    while not list(stamps.glob("*.input")):
        assert slurm.queued(job) and time.monotonic() < deadline, f"no result before the job ended{slurm.diagnostics()}"
        time.sleep(0.1)
    slurm.run("scancel", str(job))
    slurm.wait(job, timeout=60)
    finished = {p.stem: json.loads(p.read_text()) for p in stamps.glob("*.input")}
    assert sorted(finished) == [students[0]], f"finished when cancelled: {sorted(finished)} of {students}"
    for student in slow:
        shutil.copy2(clean_run["submissions"] / student / "example" / "example.ipynb",
                     submissions / student / "example" / "example.ipynb")
    assert Manifest.read(shard_out).finished is None
    leftovers = [p.pid for p in psutil.process_iter() if _job_of(p) == str(job)]
    assert leftovers == [], f"processes of the cancelled job still running: {leftovers}"

    early = merge([out / f"shard_{i}" for i in range(3)], out / "early")
    assert not early.written and not (out / "early").exists()
    unfinished = sorted(set(students) - set(finished))
    assert early.missing == [("example", s) for s in unfinished]
    assert [p for p in early.problems if f"shard {index}/3 ({shard_out}) did not finish" in p
            and all(f"{s} (example)" in p for s in unfinished)], early.problems

    job = int(slurm.run(*rerun).stdout.strip().split(";")[0])
    slurm.wait(job)
    assert slurm.states(job) == {f"{job}_{index}": ("COMPLETED", "0:0")}, slurm.diagnostics()
    log = (out / "logs" / f"dlcv-grade-{job}_{index}.out").read_text()
    regraded = int(re.search(r"graded (\d+) submissions", log).group(1))
    kept = int(re.search(r"\((\d+) kept from an earlier run", log).group(1))
    assert (regraded, kept) == (len(unfinished), len(finished)), log
    for student, stamp in finished.items():  # the finished students' results were not touched
        assert json.loads((stamps / f"{student}.input").read_text())["graded_at"] == stamp["graded_at"]
    report = merge([out / f"shard_{i}" for i in range(3)], out / "merged")  # the merge job is tested above
    assert report.written and report.problems == []
    assert (out / "merged" / "grades.csv").read_text() == (clean_run["single"] / "grades.csv").read_text()
    assert (out / "merged" / "tests.csv").read_text() == (clean_run["single"] / "tests.csv").read_text()
    print(f"\nresume: shard {index}/3 cancelled after {len(finished)} of {len(students)} students; "
          f"the rerun graded {regraded} and kept {kept}")


def _job_of(process: psutil.Process) -> str | None:
    try:
        return process.environ().get("SLURM_ARRAY_JOB_ID")
    except (psutil.Error, OSError):
        return None
