"""Fingerprints of each answer, and the scores of every pair of authors, with copydetect.

**Fingerprints** (:class:`AnswerFingerprint`, a :class:`copydetect.CodeFingerprint`): copydetect's
``filter_code`` lexes the code with Pygments and writes it as a string in which every name is
``V``, every function name ``F``, every string ``S``, with whitespace and comments dropped. Each
``k``-character window of that string (a "token" below is one character of it) is hashed, the
windows that the release also contains (its code cells: signatures, docstrings, given helpers)
are dropped as boilerplate, and copydetect's ``winnow`` keeps the fingerprints. Two changes to
copydetect's own constructor: the text comes from memory, and the hash is
:func:`stable_kgram_hashes` instead of Python's ``hash()``, which is salted per process (two runs,
or two worker processes, would pick different fingerprints). Markdown answers are fingerprinted
the same way without the lexer, on lower-cased text with whitespace collapsed.

**Scores** follow copydetect's ``compare_files``: the score of A against B is the share of A's
fingerprinted tokens that lie in a region A shares with B (so it is asymmetric: a short answer
inside a long one scores 1 one way). :func:`overlap_tokens` computes the shared tokens of every
author against every other at once (a sparse membership matrix and a cumulative sum instead of
one ``compare_files`` call per pair; ``tests/test_similarity.py`` checks that both agree exactly).
Students are compared function by function (the answer cell of one graded function with the same
cell of the other); a known source is compared whole with each of the student's functions.

A pair is **flagged** when, in either direction, the whole set of answers or one graded function
scores at least ``threshold`` with at least ``min_tokens`` shared tokens (so that two short answers
that can only be written one way do not flag on their own).
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse
from copydetect import CodeFingerprint
from copydetect.utils import filter_code, get_token_coverage, winnow

from autograder.similarity import DEFAULT_THRESHOLD, MIN_MATCHING_TOKENS

#: copydetect's defaults: matches shorter than NOISE_TOKENS filtered characters are ignored, and every
#: match of at least GUARANTEE_TOKENS is found (window = guarantee - noise + 1 = 1: every k-gram is kept).
NOISE_TOKENS = 25
GUARANTEE_TOKENS = 25

_HASH_BASE = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime
_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)  # splitmix64's finalizer


def stable_kgram_hashes(text: str, k: int) -> np.ndarray:
    """Hashes of every ``k``-character window of ``text``, the same in every process.

    Returns:
        int64 array (len(text) - k + 1,) (empty when the text is shorter than ``k``): a polynomial
        hash of the window's code points, modulo 2**64, passed through splitmix64's finalizer.
    """
    if len(text) < k:
        return np.zeros(0, dtype=np.int64)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    powers = _HASH_BASE ** np.arange(k - 1, -1, -1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        windows = np.lib.stride_tricks.sliding_window_view(codes, k)
        h = (windows * powers).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(30)
        h *= _MIX_1
        h ^= h >> np.uint64(27)
        h *= _MIX_2
        h ^= h >> np.uint64(31)
    return h.view(np.int64)


def normalize_prose(text: str) -> str:
    """Markdown answer text as compared: lower case, every run of whitespace one space."""
    return " ".join(text.lower().split())


class AnswerFingerprint(CodeFingerprint):
    """copydetect's fingerprint of one answer, read from memory with a stable hash.

    Attributes (besides :class:`copydetect.CodeFingerprint`'s ``filename``, ``raw_code``,
    ``filtered_code``, ``offsets``, ``hashes``, ``hash_idx``, ``k``, ``token_coverage``):
        positions: int64 (P,), sorted start indices in ``filtered_code`` of the kept fingerprints.
        position_hashes: int64 (P,), their hashes.
        hash_array: int64 (H,), the sorted distinct hashes (``hashes`` as an array).
    """

    def __init__(self, code: str, name: str, boilerplate: np.ndarray | None = None, language: str | None = "python",
                 k: int = NOISE_TOKENS, win_size: int = GUARANTEE_TOKENS - NOISE_TOKENS + 1) -> None:
        # CodeFingerprint.__init__ is not called: it reads a file and hashes with the salted hash().
        if language is not None:
            filtered, offsets = filter_code(code, name, language)
        else:
            filtered, offsets = code, np.array([])
        all_hashes = stable_kgram_hashes(filtered, k)
        hashes, idx = winnow(all_hashes, window_size=win_size, remove_duplicates=False)
        if boilerplate is not None and len(boilerplate) and len(hashes):  # boilerplate: sorted, distinct
            where = np.searchsorted(boilerplate, hashes).clip(max=len(boilerplate) - 1)
            keep = boilerplate[where] != hashes
            hashes, idx = hashes[keep], idx[keep]
        order = np.argsort(idx, kind="stable")
        self.filename = name
        self.raw_code = code
        self.filtered_code = filtered
        self.offsets = offsets
        self.k = k
        self.positions = np.asarray(idx, dtype=np.int64)[order]
        self.position_hashes = np.asarray(hashes, dtype=np.int64)[order]
        self.hash_array = np.unique(self.position_hashes)
        self.hashes = set(self.hash_array.tolist())
        self._hash_idx: dict[int, list[int]] | None = None
        self.token_coverage = int(get_token_coverage({0: self.positions}, k, len(filtered))) if len(hashes) else 0

    @property
    def hash_idx(self) -> dict[int, list[int]]:  # type: ignore[override]
        """``hash -> positions`` (what copydetect's ``compare_files`` reads)."""
        if self._hash_idx is None:
            index: dict[int, list[int]] = {}
            for h, i in zip(self.position_hashes.tolist(), self.positions.tolist()):
                index.setdefault(h, []).append(i)
            self._hash_idx = index
        return self._hash_idx

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_hash_idx"] = None
        state["hashes"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.hashes = set(self.hash_array.tolist())


def boilerplate_hashes(text: str, language: str | None) -> np.ndarray:
    """Every k-gram hash of the release's ``text`` (code cells, or markdown cells), sorted int64."""
    filtered = filter_code(text, "release.py", language)[0] if language else normalize_prose(text)
    return np.unique(stable_kgram_hashes(filtered, NOISE_TOKENS))


def fingerprint(text: str, name: str, boilerplate: np.ndarray, prose: bool = False) -> AnswerFingerprint | None:
    """The fingerprint of one answer, or None when nothing of it is left after the boilerplate."""
    if not text.strip():
        return None
    if prose:
        fp = AnswerFingerprint(normalize_prose(text), name, boilerplate, language=None)
    else:
        fp = AnswerFingerprint(text, name, boilerplate)
    return fp if fp.token_coverage > 0 else None


def overlap_tokens(queries: list[AnswerFingerprint | None], targets: list[np.ndarray | None]) -> np.ndarray:
    """Shared tokens of every query against every target hash set, as copydetect's ``compare_files`` counts them.

    For query ``q`` and target ``t``: the number of positions of ``q.filtered_code`` covered by a
    k-gram of ``q`` whose hash is in ``t`` (the length of the union of those k-grams).

    Args:
        queries: Q fingerprints (None: no answer; its row is 0).
        targets: T sorted int64 hash arrays (None or empty: no answer).

    Returns:
        int64 array (Q, T).
    """
    result = np.zeros((len(queries), len(targets)), dtype=np.int64)
    present = [t for t in targets if t is not None and len(t)]
    if not present or not any(q is not None for q in queries):
        return result
    vocabulary = np.unique(np.concatenate(present))
    rows, cols = [], []
    for j, target in enumerate(targets):
        if target is not None and len(target):
            rows.append(np.full(len(target), j))
            cols.append(np.searchsorted(vocabulary, target))
    rows_arr, cols_arr = np.concatenate(rows), np.concatenate(cols)
    membership = scipy.sparse.csc_matrix((np.ones(len(rows_arr), dtype=np.int32), (rows_arr, cols_arr)),
                                         shape=(len(targets), len(vocabulary)))
    for i, query in enumerate(queries):
        if query is None or not len(query.positions):
            continue
        k, length = query.k, len(query.filtered_code)
        if k >= 256:
            raise ValueError(f"k = {k}: overlap_tokens counts window starts in uint8 and needs k < 256")
        where = np.searchsorted(vocabulary, query.position_hashes).clip(max=len(vocabulary) - 1)
        known = vocabulary[where] == query.position_hashes
        if not known.any():
            continue
        shared = membership[:, where[known]].T.toarray().astype(np.uint8)  # (P', T): k-gram p' is in t
        columns = np.flatnonzero(shared.any(axis=0))  # targets sharing anything with this query
        # starts[p + 1, t] = 1 when the k-gram at p is in t. Token j is covered when a k-gram starts in
        # (j - k, j]: a windowed sum, taken as a difference of cumulative sums. uint8 wraps modulo 256, and a
        # window holds at most k < 256 starts, so the difference is still exact.
        starts = np.zeros((length + 1, len(columns)), dtype=np.uint8)
        starts[query.positions[known] + 1] = shared[:, columns]
        cumulative = np.cumsum(starts, axis=0, dtype=np.uint8)
        ends = np.arange(1, length + 1)
        covered = (cumulative[ends] - cumulative[np.clip(ends - k, 0, None)]) != 0  # (length, columns)
        result[i, columns] = covered.sum(axis=0)
    return result


_JOB_INPUTS: list[tuple[list[AnswerFingerprint | None], list[np.ndarray | None]]] = []


def _overlap_job(index: int) -> np.ndarray:
    return overlap_tokens(*_JOB_INPUTS[index])


def overlap_tokens_many(problems: list[tuple[list[AnswerFingerprint | None], list[np.ndarray | None]]],
                        jobs: int = 1) -> list[np.ndarray]:
    """:func:`overlap_tokens` of each ``(queries, targets)``, in up to ``jobs`` forked processes."""
    global _JOB_INPUTS
    if jobs <= 1 or len(problems) <= 1 or "fork" not in mp.get_all_start_methods():
        return [overlap_tokens(queries, targets) for queries, targets in problems]
    _JOB_INPUTS = problems  # inherited by the forked workers: nothing large is pickled
    try:
        with mp.get_context("fork").Pool(min(jobs, len(problems))) as pool:
            return pool.map(_overlap_job, range(len(problems)), chunksize=1)
    finally:
        _JOB_INPUTS = []


@dataclass
class FunctionMatch:
    """One graded function (or written answer) where a pair matches.

    ``score_b``/``tokens_b`` are None for a known source (compared whole, not per function).
    """

    grade_id: str
    score_a: float
    tokens_a: int
    score_b: float | None = None
    tokens_b: int | None = None

    @property
    def score(self) -> float:
        """The larger of the two directions."""
        return max(self.score_a, self.score_b or 0.0)


@dataclass
class Pair:
    """Two authors whose answers share code (``b`` is a known source when ``kind == "known source"``).

    Attributes:
        score_a: share of ``a``'s fingerprinted answers in regions shared with ``b`` (0..1).
        score_b: the same for ``b`` against ``a``.
        tokens: shared tokens (the larger of the two sides).
        functions: the graded functions that score at least the threshold, in notebook order.
    """

    kind: str
    a: str
    b: str
    score_a: float
    score_b: float
    tokens: int
    functions: list[FunctionMatch] = field(default_factory=list)

    @property
    def score(self) -> float:
        """What the report sorts by: the best of both directions, whole or per function."""
        return max([self.score_a, self.score_b, *(f.score for f in self.functions)])


@dataclass
class Scores:
    """Per-function shared tokens and coverage of every author (rows) against every other (columns)."""

    grade_ids: list[str]
    overlap: np.ndarray  # int64 (F, A, B): tokens of a's answer f shared with b
    coverage_a: np.ndarray  # int64 (F, A): fingerprinted tokens of a's answer f
    overlap_b: np.ndarray | None = None  # int64 (F, A, B) tokens of b shared with a (when b differs from a)
    coverage_b: np.ndarray | None = None  # int64 (F, B)

    def per_function(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores (F, A, B) float64 in each direction: a against b, and b against a (as (F, A, B))."""
        overlap_b = self.overlap.transpose(0, 2, 1) if self.overlap_b is None else self.overlap_b
        coverage_b = self.coverage_a if self.coverage_b is None else self.coverage_b
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.where(self.coverage_a[:, :, None] > 0, self.overlap / self.coverage_a[:, :, None], 0.0)
            b = np.where(coverage_b[:, None, :] > 0, overlap_b / coverage_b[:, None, :], 0.0)
        return a, b


def student_scores(fingerprints: list[dict[str, AnswerFingerprint | None]], grade_ids: list[str],
                   jobs: int = 1) -> Scores:
    """Every student against every other, function by function (the same grade_id on both sides).

    Args:
        fingerprints: per student, ``grade_id -> fingerprint`` (None or missing: no answer).
        grade_ids: the functions (or written answers) to compare.
        jobs: processes (one function per task).
    """
    n = len(fingerprints)
    overlap = np.zeros((len(grade_ids), n, n), dtype=np.int64)
    coverage = np.zeros((len(grade_ids), n), dtype=np.int64)
    problems = []
    for f, grade_id in enumerate(grade_ids):
        queries = [fps.get(grade_id) for fps in fingerprints]
        problems.append((queries, [q.hash_array if q is not None else None for q in queries]))
        coverage[f] = [q.token_coverage if q is not None else 0 for q in queries]
    for f, matrix in enumerate(overlap_tokens_many(problems, jobs)):
        overlap[f] = matrix
        np.fill_diagonal(overlap[f], 0)
    return Scores(grade_ids, overlap, coverage)


def source_scores(fingerprints: list[dict[str, AnswerFingerprint | None]], grade_ids: list[str],
                  sources: list[AnswerFingerprint | None]) -> Scores:
    """Every student's functions against every known source (whole), and each source against each student."""
    n, s = len(fingerprints), len(sources)
    overlap = np.zeros((len(grade_ids), n, s), dtype=np.int64)
    coverage = np.zeros((len(grade_ids), n), dtype=np.int64)
    targets = [src.hash_array if src is not None else None for src in sources]
    for f, grade_id in enumerate(grade_ids):
        queries = [fps.get(grade_id) for fps in fingerprints]
        overlap[f] = overlap_tokens(queries, targets)
        coverage[f] = [q.token_coverage if q is not None else 0 for q in queries]
    union = [_union_hashes(fps) for fps in fingerprints]
    source_side = overlap_tokens(sources, union).T  # (N, S): tokens of source s shared with student n
    source_coverage = np.array([src.token_coverage if src is not None else 0 for src in sources], dtype=np.int64)
    # The source side is whole: store it as one "function" row, broadcast in flagged_pairs.
    return Scores(grade_ids, overlap, coverage, source_side[None], source_coverage[None])


def flagged_pairs(scores: Scores, authors_a: list[str], authors_b: list[str], kind: str,
                  threshold: float = DEFAULT_THRESHOLD, min_tokens: int = MIN_MATCHING_TOKENS) -> list[Pair]:
    """The pairs that reach ``threshold``, sorted by score (highest first), then by names.

    ``kind == "students"``: ``authors_a == authors_b`` and each pair appears once; otherwise
    ``authors_b`` are known sources, compared whole on their side.
    """
    per_a, per_b = scores.per_function()
    students = kind == "students"
    total_a = scores.overlap.sum(axis=0)  # (A, B)
    cover_a = scores.coverage_a.sum(axis=0)  # (A,)
    if students:
        total_b, cover_b = total_a.T, cover_a
        tokens_b_f = scores.overlap.transpose(0, 2, 1)
    else:
        total_b, cover_b = scores.overlap_b[0], scores.coverage_b[0]
        tokens_b_f = np.broadcast_to(total_b, scores.overlap.shape)
        per_b = np.broadcast_to(per_b[0], per_a.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        whole_a = np.where(cover_a[:, None] > 0, total_a / np.maximum(cover_a[:, None], 1), 0.0)
        whole_b = np.where(cover_b[None, :] > 0, total_b / np.maximum(cover_b[None, :], 1), 0.0)
    function_score = per_a if not students else np.maximum(per_a, per_b)
    function_tokens = scores.overlap if not students else np.maximum(scores.overlap, tokens_b_f)
    function_hit = (function_score >= threshold) & (function_tokens >= min_tokens)  # (F, A, B)
    whole_hit = (np.maximum(whole_a, whole_b) >= threshold) & (np.maximum(total_a, total_b) >= min_tokens)
    hit = whole_hit | function_hit.any(axis=0)
    if students:
        hit = np.triu(hit, k=1)
    pairs = []
    for i, j in zip(*np.nonzero(hit)):
        matches = []
        for f, grade_id in enumerate(scores.grade_ids):
            if function_score[f, i, j] >= threshold and function_tokens[f, i, j] > 0:
                matches.append(FunctionMatch(grade_id, round(float(per_a[f, i, j]), 3), int(scores.overlap[f, i, j]),
                                             round(float(per_b[f, i, j]), 3) if students else None,
                                             int(tokens_b_f[f, i, j]) if students else None))
        pairs.append(Pair(kind, authors_a[i], authors_b[j], round(float(whole_a[i, j]), 3),
                          round(float(whole_b[i, j]), 3), int(max(total_a[i, j], total_b[i, j])), matches))
    pairs.sort(key=lambda p: (-p.score, p.a, p.b))
    return pairs


def _union_hashes(fps: dict[str, AnswerFingerprint | None]) -> np.ndarray | None:
    arrays = [fp.hash_array for fp in fps.values() if fp is not None]
    return np.unique(np.concatenate(arrays)) if arrays else None
