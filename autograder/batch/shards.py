"""Split one batch of submissions over several machines: stable shards and the shard manifest.

``grade --shard I/N`` grades shard ``I`` (0-based) of ``N``: the submissions whose student id
hashes to ``I`` (:func:`shard_index`, SHA-256 of the id, so the split depends neither on the
order of the files nor on the machine; one student's assignments all land in the same shard).
Without ``--shard`` the shard comes from the environment (:func:`shard_from_environment`):

- a Slurm array task: ``SLURM_ARRAY_TASK_ID`` (and ``SLURM_ARRAY_TASK_COUNT``, or ``--shard-count``);
- a Kubernetes Indexed Job: ``JOB_COMPLETION_INDEX`` with ``--shard-count N``.

Each shard's output folder is a complete nbgrader course for its students, plus
``shard.json`` (:class:`Manifest`): which shard it is, the whole split (so that a merge can
name the students of a shard that never ran), when it started and whether it finished.
``python -m autograder merge`` (:mod:`autograder.batch.merge`) joins the shards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from autograder.execution.records import Submission

#: The manifest file in every shard's output folder.
MANIFEST_FILE = "shard.json"
_FORMAT = 1


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count} does not exist: the index must be 0 to count - 1 "
                             f"and the count at least 1")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_index(student: str, count: int) -> int:
    """The shard (0 to ``count`` - 1) of ``student``: the first 8 bytes of SHA-256(UTF-8 id), mod ``count``."""
    digest = hashlib.sha256(student.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> Shard:
    """``"I/N"`` -> :class:`Shard` (``I`` is 0-based).

    Raises:
        ValueError: not of the form ``I/N`` with 0 <= I < N.
    """
    index, sep, count = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return Shard(int(index), int(count))
    except ValueError as exc:
        detail = f": {exc}" if str(exc) else ""
        raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4 for the first of four "
                         f"shards{detail}") from None


def shard_from_environment(shard: str | None = None, shard_count: int | None = None,
                           environ: Mapping[str, str] | None = None) -> Shard | None:
    """The shard this process grades, or None for the whole batch.

    In order:

    1. ``shard`` (the ``--shard I/N`` option);
    2. ``SLURM_ARRAY_TASK_ID`` as the index, with ``shard_count`` as the count if given, else
       ``SLURM_ARRAY_TASK_COUNT`` (the array must then be ``0-(N-1)``);
    3. ``JOB_COMPLETION_INDEX`` (a Kubernetes Indexed Job) with ``shard_count``.

    A resubmitted single task (``sbatch --array=2``) has ``SLURM_ARRAY_TASK_COUNT=1``: without
    ``--shard-count`` that is refused rather than read as "everything" (shard 0/1). The kit's
    sbatch script always passes ``--shard-count``.

    Raises:
        ValueError: contradictory or incomplete settings (``--shard-count`` without an index,
            a non-contiguous array without ``--shard-count``, an index outside the count).
    """
    env = os.environ if environ is None else environ
    if shard is not None:
        parsed = parse_shard(shard)
        if shard_count is not None and shard_count != parsed.count:
            raise ValueError(f"--shard {shard} and --shard-count {shard_count} disagree")
        return parsed
    task = env.get("SLURM_ARRAY_TASK_ID")
    if task is not None and task.strip():
        if shard_count is not None:
            return _shard(task, shard_count, "SLURM_ARRAY_TASK_ID")
        count, low, high = (env.get(k) for k in ("SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
                                                  "SLURM_ARRAY_TASK_MAX"))
        if count is None:
            raise ValueError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard-count N")
        if int(low or 0) != 0 or (high is not None and int(high) != int(count) - 1):
            raise ValueError(f"the Slurm array is {low}-{high} ({count} tasks), not 0-{int(count) - 1}: the task ids "
                             f"do not number the shards (a resubmitted task?); pass --shard-count N")
        return _shard(task, int(count), "SLURM_ARRAY_TASK_ID")
    completion = env.get("JOB_COMPLETION_INDEX")
    if completion is not None and completion.strip() and shard_count is not None:
        return _shard(completion, shard_count, "JOB_COMPLETION_INDEX")
    if shard_count is not None:
        raise ValueError("--shard-count needs a shard index: --shard I/N, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX")
    return None


def _shard(index: str, count: int, source: str) -> Shard:
    try:
        return Shard(int(index), int(count))
    except ValueError as exc:
        raise ValueError(f"{source}={index} with {count} shards: {exc}") from None


def split(submissions: Iterable[Submission], count: int) -> list[list[Submission]]:
    """``submissions`` in ``count`` shards by :func:`shard_index` of the student id, each in input order."""
    shards: list[list[Submission]] = [[] for _ in range(count)]
    for sub in submissions:
        shards[shard_index(sub.student, count)].append(sub)
    return shards


def plan_of(shards: list[list[Submission]]) -> dict[int, list[tuple[str, str]]]:
    """Shard index -> its sorted ``(assignment, student)`` pairs."""
    return {i: sorted((s.assignment or "", s.student) for s in subs) for i, subs in enumerate(shards)}


def now_utc() -> str:
    """The current UTC time, ISO 8601 with microseconds (what the manifest and results record)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Manifest:
    """``shard.json``: what one shard run was asked to grade and how far it got."""

    shard: Shard
    #: every shard's (assignment, student) pairs: the whole split, not only this shard's
    plan: dict[int, list[tuple[str, str]]]
    assignments: list[str]
    started: str = field(default_factory=now_utc)
    finished: str | None = None  # None: still running, or the run died
    host: str = field(default_factory=socket.gethostname)
    graded: int = 0  # submissions graded by the last run
    resumed: int = 0  # submissions kept from an earlier run (same input)

    @property
    def students(self) -> list[tuple[str, str]]:
        """This shard's ``(assignment, student)`` pairs."""
        return self.plan.get(self.shard.index, [])

    def write(self, out: Path) -> Path:
        """Write ``out/shard.json`` (atomically)."""
        data = {"format": _FORMAT, "shard": str(self.shard), "assignments": self.assignments,
                "plan": {str(i): [list(p) for p in pairs] for i, pairs in sorted(self.plan.items())},
                "started": self.started, "finished": self.finished, "host": self.host, "graded": self.graded,
                "resumed": self.resumed}
        path = Path(out) / MANIFEST_FILE
        write_atomically(path, json.dumps(data, indent=1, ensure_ascii=False))
        return path

    @classmethod
    def read(cls, out: Path) -> Manifest:
        """Read ``out/shard.json``.

        Raises:
            FileNotFoundError: no manifest (not a shard's output, or the shard never started).
            ValueError: the file is not a readable manifest.
        """
        path = Path(out) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(parse_shard(data["shard"]),
                       {int(i): [(a, s) for a, s in pairs] for i, pairs in data["plan"].items()},
                       list(data["assignments"]), data["started"], data.get("finished"), data.get("host", ""),
                       int(data.get("graded", 0)), int(data.get("resumed", 0)))
        except FileNotFoundError:
            raise
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable shard manifest: {exc}") from None


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a killed job leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- sizing a Slurm array task ----------------------------------------------------------------

#: Seconds a grading process may outlive its submission's time limit (the scheduler's ``grace``).
GRACE_SECONDS = 120
#: Seconds per task besides grading: the venv check, nbgrader's release of each assignment, the CSVs.
SETUP_SECONDS = 600
#: Memory of the grading processes besides the kernels: the CLI and its workers (nbgrader, the judges, the feedback
#: exporter, copy-on-write from the CLI) and the warm kernel template (about 0.5 GiB: torch, torchvision, ipykernel).
GRADER_MEMORY = 2 * 1024**3


def task_resources(largest_shard: int, jobs: int, timeout: float, memory: int) -> tuple[int, int]:
    """``(--time in minutes, --mem in MiB)`` for one array task, from the per-submission limits.

    - time: the worst case. The task grades ``jobs`` submissions at a time, so
      ``ceil(largest_shard / jobs)`` rounds of at most ``timeout + GRACE_SECONDS`` each, plus
      ``SETUP_SECONDS``. (A task killed at its limit keeps what it finished: resubmit it.)
    - memory: ``jobs`` kernels at their limit (``--memory-limit``) plus ``GRADER_MEMORY``.

    Args:
        largest_shard: submissions in the largest shard.
        jobs: submissions graded at once per task (``--jobs``, ``--cpus-per-task``).
        timeout: seconds per submission (``--timeout``).
        memory: bytes per submission (``--memory-limit``).
    """
    rounds = -(-max(largest_shard, 0) // max(jobs, 1))
    seconds = rounds * (timeout + GRACE_SECONDS) + SETUP_SECONDS
    return -(-int(seconds) // 60), -(-(max(jobs, 1) * memory + GRADER_MEMORY) // 1024**2)


def main(argv: list[str] | None = None) -> int:
    """``python -m autograder.batch.shards SUBMISSIONS --shard-count N``: shard sizes and one task's resources.

    Prints ``sizes``, ``time_minutes`` and ``mem_mb`` lines (what ``slurm/submit.sh`` reads). Other
    ``grade`` options may follow; only ``--assignment`` matters here.
    """
    import argparse

    from autograder.batch.submissions import discover, known_assignments
    from autograder.execution.limits import add_arguments, from_args

    parser = argparse.ArgumentParser(prog="python -m autograder.batch.shards", description=main.__doc__)
    parser.add_argument("submissions")
    parser.add_argument("--shard-count", type=int, required=True)
    parser.add_argument("--assignment")
    parser.add_argument("--jobs", type=int, default=1)
    add_arguments(parser)  # grade's own limit options and defaults
    args, _ = parser.parse_known_args(argv)
    limits = from_args(args, args.jobs)
    found = discover(Path(args.submissions), known_assignments(), args.assignment)
    sizes = [len(s) for s in split(found.submissions, args.shard_count)]
    minutes, mem_mb = task_resources(max(sizes), args.jobs, limits.timeout, limits.memory)
    print("sizes " + " ".join(map(str, sizes)))
    print(f"time_minutes {minutes}")
    print(f"mem_mb {mem_mb}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
