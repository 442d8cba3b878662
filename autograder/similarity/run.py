"""``python -m autograder similarity``: read the submissions, fingerprint them, score every pair, write the report.

The submissions are found exactly as ``grade`` finds them (:func:`autograder.batch.submissions.discover`:
a folder or zip, nbgrader or LMS layout, the newest file per student). Each assignment found is
compared on its own. Reading and fingerprinting run in ``jobs`` processes (Pygments' lexer is the
slow part); scoring every pair is a few sparse-matrix and cumulative-sum operations per function
(:func:`autograder.similarity.compare.overlap_tokens`).
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autograder.batch.submissions import discover
from autograder.execution.records import Submission
from autograder.similarity.compare import (
    DEFAULT_THRESHOLD,
    MIN_MATCHING_TOKENS,
    AnswerFingerprint,
    Pair,
    boilerplate_hashes,
    fingerprint,
    flagged_pairs,
    source_scores,
    student_scores,
)
from autograder.similarity.extract import (
    Answers,
    BadInput,
    Release,
    known_sources,
    load_release,
    read_answers,
    reference_answers,
)

#: Below this many submissions, fingerprinting runs in this process (a pool costs more than it saves).
SERIAL_BELOW = 16


@dataclass
class Author:
    """One student or known source: what it wrote and its fingerprints (None: no answer there)."""

    answers: Answers
    code: dict[str, AnswerFingerprint | None]
    markdown: dict[str, AnswerFingerprint | None]
    whole_code: AnswerFingerprint | None = None  # known sources: all code in one document
    whole_markdown: AnswerFingerprint | None = None


@dataclass
class SimilarityRun:
    """The result for one assignment.

    Attributes:
        code_pairs: flagged pairs of students, then students against known sources, each sorted by score.
        markdown_pairs: the same for written (markdown) answers.
        skipped: ``(file or source, reason)`` for every input that could not be compared.
    """

    assignment: str
    threshold: float
    min_tokens: int
    students: dict[str, Author]
    sources: dict[str, Author]
    code_pairs: list[Pair]
    markdown_pairs: list[Pair]
    skipped: list[tuple[str, str]]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds: release, reading, scoring

    @property
    def pairs_compared(self) -> int:
        """Pairs of students compared (known sources not counted)."""
        n = len(self.students)
        return n * (n - 1) // 2


def compare_submissions(submissions: Path, assignment: str | None = None, against: Iterable[Path] = (),
                        threshold: float = DEFAULT_THRESHOLD, min_tokens: int = MIN_MATCHING_TOKENS,
                        jobs: int | None = None, progress: bool = False) -> list[SimilarityRun]:
    """Compare every pair of submissions under ``submissions`` (and each against the known sources).

    Args:
        submissions: a folder or zip (nbgrader or LMS layout), as for ``grade``.
        assignment: read LMS-style files as this assignment (default: from the name or the cells).
        against: files or folders of known sources (solutions found online); the reference solution
            from the source notebook is always one.
        threshold: the score (0..1) from which a pair is flagged.
        min_tokens: shared tokens below which nothing is flagged.
        jobs: processes for reading and fingerprinting (default: the CPU cores).
        progress: draw a progress bar on stderr.

    Raises:
        FileNotFoundError: ``submissions`` does not exist, holds no notebook, or ``assignment`` is unknown.
    """
    from autograder.batch.scheduler import default_jobs
    from autograder.batch.submissions import known_assignments

    known = known_assignments()
    if assignment is not None and assignment not in known:
        raise FileNotFoundError(f"no source notebook for assignment '{assignment}'; known: {sorted(known)}")
    found = discover(Path(submissions), known, assignment)
    unassigned = [(s.origin, "could not tell the assignment of this notebook; pass --assignment")
                  for s in found.unassigned]
    if not found.submissions:
        if unassigned:
            raise FileNotFoundError(f"no notebook in {submissions} has a known assignment's cells; "
                                    f"pass --assignment ({len(unassigned)} notebooks)")
        raise FileNotFoundError(f"no submissions (.ipynb) found in {submissions}")
    runs = []
    for name in sorted({s.assignment for s in found.submissions}):
        subs = [s for s in found.submissions if s.assignment == name]
        runs.append(compare_assignment(name, subs, list(against), threshold, min_tokens, jobs or default_jobs(),
                                       progress, skipped=unassigned if not runs else []))
    return runs


def compare_assignment(assignment: str, submissions: list[Submission], against: list[Path],
                       threshold: float = DEFAULT_THRESHOLD, min_tokens: int = MIN_MATCHING_TOKENS, jobs: int = 1,
                       progress: bool = False, skipped: list[tuple[str, str]] | None = None) -> SimilarityRun:
    """Read, fingerprint and compare the ``submissions`` of one assignment."""
    start = time.perf_counter()
    release = load_release(assignment)
    timings = {"release": time.perf_counter() - start}
    skipped = list(skipped or [])
    state = _State(release, boilerplate_hashes(release.boilerplate_code, "python"),
                   boilerplate_hashes(release.boilerplate_text, None))
    students: dict[str, Author] = {}
    for sub, result in zip(submissions, _map(state, submissions, jobs, progress)):
        if isinstance(result, str):
            skipped.append((sub.origin, result))
        elif sub.student in students:  # the same id in two layouts: keep the first, say so
            skipped.append((sub.origin, f"a second submission of student '{sub.student}'"))
        else:
            result.answers.notes.extend(sub.notes)
            students[sub.student] = result
    students = dict(sorted(students.items()))
    timings["reading"] = time.perf_counter() - start - timings["release"]

    sources: dict[str, Author] = {}
    reference = reference_answers(release)
    found_sources, problems = known_sources(against, release)
    skipped.extend(problems)
    for answers in [reference, *found_sources]:
        author = state.fingerprint_source(answers)
        if author.whole_code is None and author.whole_markdown is None:
            skipped.append((answers.origin, "nothing in this known source is not already in the release"))
            continue
        name = answers.author
        while name in sources:
            name += "'"
        sources[name] = author

    code_ids, text_ids = list(release.code_stubs), list(release.markdown_stubs)
    names, source_names = list(students), list(sources)
    authors = list(students.values())
    code_pairs = flagged_pairs(student_scores([a.code for a in authors], code_ids, jobs), names, names, "students",
                               threshold, min_tokens)
    text_pairs = flagged_pairs(student_scores([a.markdown for a in authors], text_ids), names, names, "students",
                               threshold, min_tokens)
    if sources and authors:
        code_pairs += flagged_pairs(
            source_scores([a.code for a in authors], code_ids, [s.whole_code for s in sources.values()]),
            names, source_names, "known source", threshold, min_tokens)
        text_pairs += flagged_pairs(
            source_scores([a.markdown for a in authors], text_ids, [s.whole_markdown for s in sources.values()]),
            names, source_names, "known source", threshold, min_tokens)
    notes = [f"{s}: {note}" for s, a in students.items() for note in a.answers.notes]
    timings["scoring"] = time.perf_counter() - start - timings["release"] - timings["reading"]
    return SimilarityRun(assignment, threshold, min_tokens, students, sources, code_pairs, text_pairs,
                         sorted(skipped), notes, time.perf_counter() - start, timings)


@dataclass
class _State:
    """What each worker needs: the release and its boilerplate hashes (inherited by fork)."""

    release: Release
    code_boilerplate: np.ndarray
    text_boilerplate: np.ndarray

    def read(self, sub: Submission) -> Author | str:
        """One submission's fingerprints, or the reason it cannot be compared."""
        try:
            answers = read_answers(sub.read_bytes(), self.release, sub.student, sub.origin)
        except (BadInput, OSError) as exc:
            return str(exc)
        author = self.fingerprint_answers(answers)
        if not any(author.code.values()) and not any(author.markdown.values()):
            return "no answers: nothing in the answer cells is not already in the release"
        return author

    def fingerprint_answers(self, answers: Answers) -> Author:
        """Fingerprints of each code and markdown answer."""
        code = {g: fingerprint(text, f"{answers.author}/{g}", self.code_boilerplate)
                for g, text in answers.code.items()}
        text = {g: fingerprint(t, f"{answers.author}/{g}", self.text_boilerplate, prose=True)
                for g, t in answers.markdown.items()}
        return Author(answers, code, text)

    def fingerprint_source(self, answers: Answers) -> Author:
        """A known source: its answers, and all its code (and text) as one document each."""
        author = self.fingerprint_answers(answers)
        author.whole_code = fingerprint("\n\n".join(answers.code.values()), answers.author, self.code_boilerplate)
        author.whole_markdown = fingerprint("\n\n".join(dict.fromkeys(answers.markdown.values())), answers.author,
                                            self.text_boilerplate, prose=True)
        return author


_WORKER: _State | None = None


def _worker_read(sub: Submission) -> Author | str:
    assert _WORKER is not None
    return _WORKER.read(sub)


def _map(state: _State, submissions: list[Submission], jobs: int, progress: bool) -> list[Author | str]:
    """``state.read`` over the submissions, in ``jobs`` forked processes when there are enough of them."""
    global _WORKER
    bar = _bar(len(submissions), "reading", progress)
    results: list[Author | str] = []
    fork = "fork" in mp.get_all_start_methods()
    try:
        if jobs <= 1 or len(submissions) < SERIAL_BELOW or not fork:
            for sub in submissions:
                results.append(state.read(sub))
                bar(1)
            return results
        _WORKER = state
        with mp.get_context("fork").Pool(jobs) as pool:
            for result in pool.imap(_worker_read, submissions, chunksize=4):
                results.append(result)
                bar(1)
        return results
    finally:
        _WORKER = None
        bar(0, close=True)


def _bar(total: int, desc: str, enabled: bool) -> Callable[..., None]:
    """A tqdm bar on stderr (the CLI's; notebooks use cs_lib.runtime.progress), as an update function."""
    if not enabled:
        return lambda n, close=False: None
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: worker processes are forked from this one
    bar = tqdm(total=total, desc=desc, unit="notebook", file=sys.stderr, dynamic_ncols=True)

    def update(n: int, close: bool = False) -> None:
        bar.update(n)
        if close:
            bar.close()

    return update
