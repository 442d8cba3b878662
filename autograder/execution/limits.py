"""The per-submission limits, defined once: from the command line to the executor.

:class:`Limits` is immutable and validated when it is made. ``grade``, ``merge``'s shard planning,
Gradescope and the demo all build theirs here: the command-line options come from
:func:`add_arguments` and :func:`from_args`, whose defaults are the dataclass's own, and the pipeline
reads the object itself (:func:`autograder.execution.pipeline.autograde_config`).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from autograder.execution.isolation import GiB, parse_size


@dataclass(frozen=True)
class Limits:
    """Per-submission limits (see ``python -m autograder grade --help``).

    Raises:
        ValueError: on a non-positive time or size, or a cell timeout under one second (nbclient counts
            whole seconds: 0.5 s would silently mean "no limit").
    """

    timeout: float = 1800.0  # wall-clock seconds for the whole notebook
    cell_timeout: float | None = None  # None: the course's Execute.timeout
    memory: int = 4 * GiB  # everything the kernel holds: resident memory and its tmpfs (see sandbox.memory_split)
    max_output_chars: int = 1_000_000  # per cell, every message counted
    max_restarts: int = 3  # kernel deaths after which cells without points are skipped
    processes: int = 512  # RLIMIT_NPROC of the kernel's own uid (when the grader is root)
    network_isolation: bool = True
    sandbox: bool = True  # False only with --allow-unsandboxed: the kernel can then read every file
    kernel_threads: int | None = None  # OMP/MKL/torch threads per kernel; None: library default
    strict_stderr: bool = False  # True: stderr output fails a test, as in plain nbgrader

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"the submission timeout must be positive, got {self.timeout!r} s")
        if self.cell_timeout is not None and not self.cell_timeout >= 1:
            raise ValueError(f"--cell-timeout must be at least 1 s (the per-cell clock counts whole seconds), "
                             f"got {self.cell_timeout!r}")
        if self.memory <= 0 or self.max_output_chars <= 0:
            raise ValueError("--memory-limit and --max-output must be positive")
        if self.max_restarts < 0 or self.processes < 16:
            raise ValueError(f"--max-restarts must be >= 0 and --max-processes >= 16 (a kernel needs a dozen threads), "
                             f"got {self.max_restarts} and {self.processes}")

    def replace(self, **changes: object) -> Limits:
        """A copy with ``changes`` (the object itself never changes)."""
        return dataclasses.replace(self, **changes)


DEFAULTS = Limits()


def default_memory(jobs: int) -> int:
    """The default memory limit: :data:`DEFAULTS`, or less so that all parallel kernels stay within 80% of RAM."""
    import psutil

    return int(min(DEFAULTS.memory, 0.8 * psutil.virtual_memory().total / max(1, jobs)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The limit options of ``grade`` (and of the shard planner), with :data:`DEFAULTS` as defaults."""
    d = DEFAULTS
    parser.add_argument("--timeout", type=float, default=d.timeout,
                        help=f"wall-clock seconds per submission (default: {d.timeout:g})")
    parser.add_argument("--cell-timeout", type=float, default=None,
                        help="seconds per cell, at least 1 (default: Execute.timeout of "
                             "assignments/nbgrader_config.py)")
    parser.add_argument("--memory-limit", default=None,
                        help=f"everything one submission's kernel may hold, resident memory and its tmpfs, e.g. 3GiB "
                             f"(default: {d.memory / GiB:g}GiB or 80%% of RAM / jobs)")
    parser.add_argument("--max-output", type=int, default=d.max_output_chars,
                        help=f"output characters kept per cell, every message counted (default: {d.max_output_chars})")
    parser.add_argument("--max-restarts", type=int, default=d.max_restarts,
                        help="kernel restarts per submission after which cells without points (demos) are skipped; "
                             f"answer and test cells still get a fresh kernel each (default: {d.max_restarts})")
    parser.add_argument("--max-processes", type=int, default=d.processes,
                        help="processes and threads per kernel (RLIMIT_NPROC of its own uid, when grading as root; "
                             f"default: {d.processes})")
    parser.add_argument("--allow-network", action="store_true", help="do not cut the kernels off the network")
    parser.add_argument("--strict-stderr", action="store_true",
                        help="score stderr output in a test cell as a failure, as plain nbgrader does")


def from_args(args: argparse.Namespace, jobs: int) -> Limits:
    """The :class:`Limits` of parsed :func:`add_arguments` options (``ValueError`` with the option's name)."""
    return Limits(timeout=args.timeout, cell_timeout=args.cell_timeout,
                  memory=parse_size(args.memory_limit) if args.memory_limit else default_memory(jobs),
                  max_output_chars=args.max_output, max_restarts=args.max_restarts, processes=args.max_processes,
                  network_isolation=not args.allow_network, strict_stderr=args.strict_stderr)
