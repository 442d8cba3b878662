"""Hidden tests of ``triplet_embeddings``: distances, contrastive and triplet losses, mining, P×K batches, Recall@K.

One :class:`~autograder.judging.spec.GradedFunction` per graded function. The stored and fresh inputs are
float64 (any correct formula agrees to ~1e-12 there; the tolerances absorb how a formula is written, and the
round-off of a computation in float32, which the notebook allows), with the situations the lecture warns
about: duplicate embeddings (zero distances), a class with a single sample, a batch of one class. Every
mistake the issue lists is a :class:`WrongAnswer` whose hint names it; the NaN-gradient mistakes compute the
right values, so the gradient checks name them.

``batch_all_triplet_loss``, ``batch_hard_triplet_loss``, ``semi_hard_triplets`` and ``recall_at_k`` usually
call the student's own ``pairwise_distances``. They are graded on their own (their specs' ``stand_ins``): while
the judge calls them, the kernel's ``pairwise_distances`` is swapped for a grader stand-in, ``torch.cdist`` without
its matrix-product shortcut (:data:`DISTANCE_STAND_IN`), so a wrong ``pairwise_distances`` costs only its own
points. The stand-in is exact at duplicates where the reference's Gram form leaves ~1e-7, hence their
tolerances of 1e-6.

The conventions (checked against pytorch-metric-learning, ``torch.nn`` and scikit-learn in
``tests/test_triplet_reference.py``): non-squared Euclidean distances on the embeddings as they are
(``LpDistance(normalize_embeddings=False)``), batch-all averaged over the active triplets
(``AvgNonZeroReducer``), batch-hard over the anchors with a positive and a negative (``MeanReducer``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from autograder.judging.solutions import edited_answers, solution_body
from autograder.judging.spec import Call, GradedFunction, WrongAnswer, with_policies
from autograder.judging.toolkit import Failure

ASSIGNMENT = "triplet_embeddings"
REFERENCE_SEED = 2017
# float64 references: agreement to round-off across machines.
REFERENCE_RTOL, REFERENCE_ATOL = 1e-9, 1e-12

F64 = torch.float64

# ------------------------------------------------------------------------------------------ the mistakes

SQUARED = "squared instead of non-squared distances"
ALL_TRIPLETS = "averaging over all triplets instead of the active ones (those with a positive loss)"
OWN_POSITIVE = "the anchor taken as its own positive (a positive must be another sample, a != p)"
NAN_GRADIENT = "a NaN gradient at zero distance"
ARGMAX = "argmax where argmin was meant"
NORMALISED = "normalising the embeddings when the function should not"

_NORMALISE = "embeddings = F.normalize(embeddings, dim=1)\n"
_DIFFERENCES = "sq = ((embeddings.unsqueeze(1) - embeddings.unsqueeze(0)) ** 2).sum(dim=2)\n"
_NAIVE_DISTANCES = _DIFFERENCES + "return sq if squared else sq.sqrt()"


#: A graded function's wrong answers, one ``(label, hint, (old, new), ...)`` row each: edits of its reference body.
_mistakes = functools.partial(edited_answers, ASSIGNMENT)
#: The batch functions' reference bodies, as the notebook has them (tests/test_triplet_reference.py).
BATCH_BODIES = {name: solution_body(ASSIGNMENT, name)
                for name in ("batch_all_triplet_loss", "batch_hard_triplet_loss", "semi_hard_triplets")}
_HADSELL = "0.5 * s * d_sq + 0.5 * (1 - s) * F.relu(margin - d) ** 2"
_SAFE_SQRT = "torch.sqrt({0}.masked_fill(zero, 1.0)).masked_fill(zero, 0.0)"
_SQUARED_MATRIX = ("distances = pairwise_distances(embeddings)",
                   "distances = pairwise_distances(embeddings, squared=True)")


# ------------------------------------------------------------------------------------------ inputs


def _points(g: torch.Generator, n: int, d: int, duplicates: int = 2, dtype: torch.dtype = F64) -> torch.Tensor:
    """``(n, d)`` standard normal points; the last ``duplicates`` rows copy earlier rows (zero distances)."""
    x = torch.randn(n, d, generator=g, dtype=dtype)
    for i in range(duplicates):
        x[n - 1 - i] = x[int(torch.randint(0, n - duplicates, (1,), generator=g))]
    return x


def _labelled_batch(g: torch.Generator, n: int, d: int, classes: int, duplicates: int = 2,
                    singleton: bool = True, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points around per-class centres, with duplicate rows (same label) and optionally a one-sample class.

    Returns:
        float64 ``(n, d)`` embeddings and int64 ``(n,)`` labels; the labels are not sorted.
    """
    labels = torch.randint(0, classes, (n,), generator=g)
    labels[: classes] = torch.arange(classes)           # every class present
    if singleton:
        labels[classes] = classes + 3                    # one sample of its class
    centres = torch.randn(classes + 4, d, generator=g, dtype=F64) * scale
    x = centres[labels] + torch.randn(n, d, generator=g, dtype=F64)
    for i in range(duplicates):
        j = int(torch.randint(0, n - duplicates, (1,), generator=g))
        if singleton and j == classes:
            j = 0
        x[n - 1 - i], labels[n - 1 - i] = x[j], labels[j]
    perm = torch.randperm(n, generator=g)
    return x[perm], labels[perm]


# ------------------------------------------------------------------------------------------ checks


def _finite_gradients(name: str, args: tuple, wrt: tuple[int, ...], situation: str,
                      **kwargs: Any) -> Callable[..., None]:
    """A check: the student's gradients w.r.t. ``args[wrt]`` are finite (and present) on ``args``."""

    def check(student: Any, ref: Callable[..., Any], g: torch.Generator) -> None:
        _, grads = student.backward(args, kwargs, wrt=wrt)
        for position, grad in zip(wrt, grads):
            if grad is None:
                raise Failure(f"{name}: no gradient reaches argument #{position + 1}; compute the result from "
                              "the inputs with differentiable torch operations (no .detach(), .item() or NumPy).")
            if not bool(torch.isfinite(grad).all()):
                raise Failure(f"{name} gives {NAN_GRADIENT} ({situation}): the derivative of sqrt(s) is "
                              "infinite at s = 0. Take the square root only where s > 0 and put exact zeros "
                              "elsewhere (masked_fill), so that the gradient there is 0.")
    check.__name__ = f"finite_gradients_of_{name}"
    return check


def _duplicate_rows(*rows: int) -> torch.Tensor:
    """Five float64 3-D points; rows 2 and 4 repeat rows 0 and 1. ``rows`` selects some (default: all)."""
    x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5], [0.5, -1.0, 2.0], [-2.0, 1.0, 0.0], [1.5, 0.0, -0.5]],
                     dtype=F64)
    return x[list(rows)] if rows else x


# ------------------------------------------------------------------------------------------ pairwise_distances


def _pairwise_cases(g: torch.Generator) -> list[Call]:
    x = _points(g, 6, 3)
    return [
        Call(x, label="6 float64 points, two of them duplicates"),
        Call(x, squared=True, label="the same points, squared=True"),
        Call(_points(g, 40, 16, duplicates=3) * 3.0, label="40 float64 points in 16-D with 3 duplicates"),
        Call(torch.randn(1, 5, generator=g, dtype=F64), label="a single point"),
        Call(torch.randn(9, 4, generator=g, dtype=F64) + 4.0, label="9 points away from the origin"),
    ]


def _pairwise_fresh(g: torch.Generator) -> list[Call]:
    n, d = int(torch.randint(5, 30, (1,), generator=g)), int(torch.randint(2, 20, (1,), generator=g))
    return [
        Call(_points(g, n, d, duplicates=2), label=f"{n} random float64 points in {d}-D with duplicates"),
        Call(_points(g, n, d, duplicates=1), squared=True, label=f"{n} random float64 points, squared=True"),
        # Small integers: every formula is exact in float32, so float32 keeps the dtype without round-off.
        Call(torch.randint(-4, 5, (12, 5), generator=g).float(), label="12 float32 points with integer coordinates"),
    ]


# ------------------------------------------------------------------------------------------ contrastive_loss


def _pair_inputs(g: torch.Generator, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    e1 = torch.randn(n, d, generator=g, dtype=F64)
    e2 = e1 + torch.randn(n, d, generator=g, dtype=F64) * torch.rand(n, 1, generator=g, dtype=F64)
    e2[0], e2[1] = e1[0], e1[1]                         # zero distance: one similar, one dissimilar pair
    is_same = torch.rand(n, generator=g) < 0.5
    is_same[0], is_same[1] = True, False
    return e1, e2, is_same


def _contrastive_cases(g: torch.Generator) -> list[Call]:
    e1, e2, s = _pair_inputs(g, 12, 4)
    f1, f2, t = _pair_inputs(g, 20, 8)
    return [
        Call(e1, e2, s, label="12 float64 pairs, two at zero distance"),
        Call(e1, e2, s, margin=2.5, label="the same pairs, margin=2.5"),
        Call(f1, f2, t, margin=0.7, label="20 float64 pairs in 8-D, margin=0.7"),
        Call(f1[:5], f2[:5], torch.ones(5, dtype=torch.bool), label="5 similar pairs"),
    ]


def _contrastive_fresh(g: torch.Generator) -> list[Call]:
    n = int(torch.randint(4, 40, (1,), generator=g))
    margin = round(float(torch.empty(1, dtype=F64).uniform_(0.5, 3.0, generator=g)), 3)
    e1, e2, s = _pair_inputs(g, n, 6)
    return [Call(e1, e2, s, margin=margin, label=f"{n} random float64 pairs, margin={margin}")]


# ------------------------------------------------------------------------------------------ triplet_loss


def _triplet_inputs(g: torch.Generator, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a = torch.randn(n, d, generator=g, dtype=F64)
    p = a + 0.7 * torch.randn(n, d, generator=g, dtype=F64)
    neg = a + 1.2 * torch.randn(n, d, generator=g, dtype=F64)
    p[0] = a[0]                                         # d(a, p) = 0
    neg[1] = a[1]                                       # d(a, n) = 0
    return a, p, neg


def _triplet_cases(g: torch.Generator) -> list[Call]:
    a, p, n = _triplet_inputs(g, 16, 5)
    return [
        Call(a, p, n, label="16 float64 triplets, one with a = p and one with a = n"),
        Call(a, p, n, margin=0.2, label="the same triplets, margin=0.2"),
        Call(*_triplet_inputs(g, 30, 3), margin=2.0, label="30 float64 triplets in 3-D, margin=2.0"),
    ]


def _triplet_fresh(g: torch.Generator) -> list[Call]:
    n = int(torch.randint(4, 40, (1,), generator=g))
    margin = round(float(torch.empty(1, dtype=F64).uniform_(0.2, 2.0, generator=g)), 3)
    return [Call(*_triplet_inputs(g, n, 8), margin=margin, label=f"{n} random float64 triplets, margin={margin}")]


# ------------------------------------------------------------------------------------------ batch functions


def _batch_cases(g: torch.Generator) -> list[Call]:
    x, y = _labelled_batch(g, 16, 4, classes=4)
    x2, y2 = _labelled_batch(g, 30, 8, classes=5, duplicates=3, scale=2.0)
    return [
        Call(x, y, margin=2.0, label="16 float64 embeddings, 4 classes, a one-sample class and duplicates"),
        Call(x, y, margin=1.0, label="the same batch, margin=1.0"),
        Call(x2, y2, margin=0.5, label="30 float64 embeddings, 5 classes, a one-sample class, margin=0.5"),
        Call(x[:6], torch.full((6,), 3), margin=1.0, label="a batch of one class (no valid triplet)"),
        Call(*_labelled_batch(g, 12, 3, classes=3, duplicates=0, singleton=False, scale=30.0), margin=0.5,
             label="three classes far apart (no active triplet)"),
    ]


def _batch_fresh(g: torch.Generator) -> list[Call]:
    n = int(torch.randint(10, 40, (1,), generator=g))
    c = int(torch.randint(2, 6, (1,), generator=g))
    margin = round(float(torch.empty(1, dtype=F64).uniform_(0.3, 2.0, generator=g)), 3)
    x, y = _labelled_batch(g, n, 6, classes=c, duplicates=2)
    return [Call(x, y, margin=margin, label=f"{n} random float64 embeddings of {c} classes, margin={margin}")]


def _sorted_triplets(output: Any) -> torch.Tensor:
    """``(a, p, n)`` -> ``(T, 3)`` int64 rows in lexicographic order (the set, whatever the order)."""
    if not isinstance(output, (tuple, list)) or len(output) != 3:
        raise TypeError("expected a tuple (a, p, n) of three index tensors")
    rows = torch.stack([torch.as_tensor(t).reshape(-1).to(torch.int64) for t in output], dim=1)
    for column in (2, 1, 0):                            # stable sorts, last key first
        rows = rows[torch.argsort(rows[:, column], stable=True)]
    return rows


# ------------------------------------------------------------------------------------------ PKSampler


def _labels_with_a_small_class(g: torch.Generator) -> torch.Tensor:
    """6 classes of 5 to 12 samples, and class 4 with 2 samples, shuffled: int64 ``(N,)``."""
    sizes = torch.randint(5, 13, (6,), generator=g)
    sizes[4] = 2
    labels = torch.repeat_interleave(torch.arange(6), sizes)
    return labels[torch.randperm(len(labels), generator=g)]


def _sampler_test(student: Any, ref: Callable[..., Any], spec: GradedFunction, g: torch.Generator) -> None:
    labels = _labels_with_a_small_class(g)
    P, K, num_batches = 4, 4, 30
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    batches = _batches(student(labels, P, K, num_batches=num_batches, seed=seed))
    if len(batches) != num_batches:
        raise Failure(f"PKSampler with num_batches={num_batches} yielded {len(batches)} batches.")
    sizes = torch.bincount(labels)
    chosen_sets = set()
    for b, batch in enumerate(batches):
        if any(not 0 <= i < len(labels) for i in batch):
            raise Failure(f"PKSampler: batch {b} has an index outside [0, {len(labels)}).")
        counts = torch.bincount(labels[torch.tensor(batch, dtype=torch.int64)], minlength=len(sizes))
        present = torch.nonzero(counts).flatten().tolist()
        short = [c for c in present if counts[c] < K]
        if short and all(sizes[c] < K for c in short):
            raise Failure(f"PKSampler: batch {b} has only {int(counts[short[0]])} samples of class {short[0]}, "
                          f"which has {int(sizes[short[0]])} samples: classes with fewer than K samples must be "
                          "sampled with replacement (torch.randint), so that every class has K samples.")
        if len(present) != P or any(counts[c] != K for c in present):
            raise Failure(f"PKSampler: batch {b} has class counts {dict(zip(present, counts[present].tolist()))}; "
                          f"expected P = {P} distinct classes with K = {K} samples each (draw the classes "
                          "without replacement: torch.randperm).")
        for c in present:
            members = [i for i in batch if int(labels[i]) == c]
            if sizes[c] >= K and len(set(members)) != K:
                raise Failure(f"PKSampler: batch {b} repeats a sample of class {c}, which has {int(sizes[c])} >= K "
                              "samples: sample those without replacement (torch.randperm).")
        chosen_sets.add(tuple(present))
    if len(chosen_sets) == 1:
        raise Failure(f"PKSampler: all {num_batches} batches have the same classes; draw P random classes "
                      "for every batch.")
    again = _batches(student(labels, P, K, num_batches=num_batches, seed=seed))
    if again != batches:
        raise Failure("PKSampler: two samplers with the same seed gave different batches; draw every random "
                      "number from self.generator (e.g. torch.randperm(n, generator=self.generator)).")
    other = _batches(student(labels, P, K, num_batches=num_batches, seed=seed + 1))
    if other == batches:
        raise Failure("PKSampler: different seeds gave the same batches; draw every random number from "
                      "self.generator.")
    default = _batches(student(labels, P, K, seed=seed))
    if len(default) != max(1, len(labels) // (P * K)):
        raise Failure(f"PKSampler without num_batches yielded {len(default)} batches; an epoch is "
                      f"len(labels) // (P * K) = {len(labels) // (P * K)} batches.")


def _batches(output: Any) -> list[list[int]]:
    """The sampler's output as lists of ints; a Failure naming the problem otherwise."""
    if not isinstance(output, list):
        raise Failure(f"PKSampler: iterating over it gave {type(output).__name__}; expected batches.")
    batches = []
    for b, batch in enumerate(output):
        values = batch.tolist() if isinstance(batch, torch.Tensor) else batch
        if not isinstance(values, (list, tuple)) or not all(type(i) is int for i in values):
            raise Failure(f"PKSampler: batch {b} is {type(batch).__name__}; yield a list of int indices.")
        batches.append(list(values))
    return batches


# ------------------------------------------------------------------------------------------ recall_at_k


def _recall_inputs(g: torch.Generator, n: int, d: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clustered float64 points with duplicates that share their labels (ties between neighbours of
    different classes would make Recall@K depend on how ties are broken)."""
    x, y = _labelled_batch(g, n, d, classes=classes, duplicates=2, singleton=True, scale=1.5)
    return x, y


def _recall_cases(g: torch.Generator) -> list[Call]:
    x, y = _recall_inputs(g, 30, 4, 4)
    return [
        Call(x, y, label="30 float64 embeddings of 4 classes (and a one-sample class), with duplicates"),
        Call(x, y, ks=(1, 5), label="the same embeddings, ks=(1, 5)"),
        Call(*_recall_inputs(g, 60, 16, 6), ks=(1, 2, 4, 8, 16), label="60 float64 embeddings in 16-D"),
        Call(torch.randn(3, 2, generator=g, dtype=F64), torch.tensor([0, 1, 0]), ks=(1, 2, 4),
             label="3 embeddings, ks up to 4 (> N - 1)"),
    ]


def _recall_fresh(g: torch.Generator) -> list[Call]:
    n = int(torch.randint(15, 80, (1,), generator=g))
    return [Call(*_recall_inputs(g, n, 8, 5), label=f"{n} random float64 embeddings of 5 classes")]


# ------------------------------------------------------------------------------------------ graded alone

#: The distance matrix swapped into the globals of the functions that call ``pairwise_distances`` while they
#: are judged: torch.cdist (not the reference's code), exact zeros at duplicates and finite gradients there.
DISTANCE_STAND_IN = {"pairwise_distances": '''
def pairwise_distances(embeddings, squared=False):
    """Grader stand-in: torch.cdist without its matrix-product shortcut."""
    distances = torch.cdist(embeddings, embeddings, compute_mode="donot_use_mm_for_euclid_dist")
    return distances ** 2 if squared else distances
'''}


# ------------------------------------------------------------------------------------------ the specs

#: The batch functions' inputs, with the grader's distances (DISTANCE_STAND_IN); the losses' tolerances.
_BATCH: dict[str, Any] = {"stand_ins": DISTANCE_STAND_IN, "cases": _batch_cases, "fresh": _batch_fresh}
_BATCH_LOSS: dict[str, Any] = {**_BATCH, "rtol": 1e-6, "atol": 1e-6, "tolerance": "float64; the stand-in distances "
                               "differ from the reference's by ~1e-7 at duplicates; mistakes differ by > 1e-2"}


def _batch_gradients(name: str) -> Callable[..., None]:
    """The batch losses' check: finite gradients with duplicate embeddings (zero distances)."""
    return _finite_gradients(name, (_duplicate_rows(), torch.tensor([0, 1, 0, 1, 2])), (0,),
                             "with duplicate embeddings", margin=1.0)


def _matrix_mistakes(name: str, squared: tuple[str, str] = _SQUARED_MATRIX) -> tuple[tuple[Any, ...], ...]:
    """The rows of the mistakes every batch function can make with its distance matrix: squared distances (the
    edit ``squared`` of its body), and normalised embeddings."""
    return (("squared distances", SQUARED, squared),
            ("normalised embeddings", NORMALISED, _NORMALISE + solution_body(ASSIGNMENT, name)))


_OWN_POSITIVE = ("anchor as its own positive", OWN_POSITIVE, ("valid = (same & not_self)", "valid = (same)"))

SPECS = (
    GradedFunction(
        name="pairwise_distances", cases=_pairwise_cases, fresh=_pairwise_fresh,
        # The Gram form sqrt(|x|^2 - 2 x.y + |y|^2) leaves up to sqrt(eps) |x| at duplicates where the difference
        # form gives 0: ~1e-7 in float64, up to 3.4e-3 in float32 (2000 draws). Wrong answers differ by more than 1e-1.
        rtol=1e-5, atol=2e-2,
        tolerance="the Gram form in float32 leaves up to sqrt(eps32) |x| ~ 3.4e-3 at duplicates (2000 draws), "
                  "1e-7 in float64; mistakes differ by > 0.1",
        wrong_answers=(
            # written without torch.cdist, which pairwise_distances' policy forbids
            WrongAnswer("squared distances", _DIFFERENCES + "return sq", SQUARED),
            WrongAnswer("normalised embeddings",
                        _NORMALISE + _DIFFERENCES
                        + "d = sq.masked_fill(sq == 0, 1.0).sqrt().masked_fill(sq == 0, 0.0)\n"
                        + "return sq if squared else d",
                        NORMALISED),
            WrongAnswer("plain sqrt", _NAIVE_DISTANCES, NAN_GRADIENT),
        ),
        checks=(_finite_gradients("pairwise_distances", (_duplicate_rows(),), (0,),
                                  "on the diagonal and between duplicate rows"),),
    ),
    GradedFunction(
        name="contrastive_loss", cases=_contrastive_cases, fresh=_contrastive_fresh, rtol=1e-5, atol=1e-6,
        tolerance="means of a few terms: float32 arithmetic is off by up to 4e-7 (1000 draws), float64 by ~1e-15; "
                  "mistakes differ by > 1e-2",
        wrong_answers=_mistakes(
            "contrastive_loss",
            ("hinge on squared distance", "the hinge on the squared distance: max(0, m - d)^2 uses the distance d, "
                                          "not d^2", ("relu(margin - d)", "relu(margin - d_sq)")),
            ("unsquared (PML)", "pytorch-metric-learning's unsquared contrastive loss (Hadsell et al. square both "
                                "terms and halve them)", (_HADSELL, "s * d + (1 - s) * F.relu(margin - d)")),
            ("swapped labels", "is_same used the wrong way round: similar pairs (s = 1) are pulled together by "
                               "s * d^2", ("s = is_same", "s = 1 - is_same")),
            ("no one half", "the loss without the factors 1/2",
             ("0.5 * s * d_sq + 0.5 * (1 - s)", "s * d_sq + (1 - s)")),
            ("plain sqrt", NAN_GRADIENT, (_SAFE_SQRT.format("d_sq"), "d_sq.sqrt()")),
        ),
        checks=(_finite_gradients("contrastive_loss",
                                  (_duplicate_rows(0, 1), _duplicate_rows(2, 4), torch.tensor([True, False])),
                                  (0, 1), "for a similar and a dissimilar pair with e1 == e2"),),
    ),
    GradedFunction(
        name="triplet_loss", cases=_triplet_cases, fresh=_triplet_fresh, rtol=1e-5, atol=1e-6,
        tolerance="means of a few terms: float32 arithmetic is off by up to 3e-7 (1000 draws), float64 by ~1e-15; "
                  "mistakes differ by > 1e-2",
        wrong_answers=_mistakes(
            "triplet_loss",
            ("squared distances", SQUARED, ("return " + _SAFE_SQRT.format("sq"), "return sq")),
            # not nn.TripletMarginLoss(reduction='sum'), which the policy forbids
            ("sum", "summing over the triplets instead of averaging", (").mean()", ").sum()")),
            ("no hinge", "the loss without the hinge max(0, .)",
             ("F.relu(distance(anchor, positive)", "(distance(anchor, positive)")),
            ("plain sqrt", NAN_GRADIENT, (_SAFE_SQRT.format("sq"), "sq.sqrt()")),
        ),
        checks=(_finite_gradients("triplet_loss", (_duplicate_rows(0, 1), _duplicate_rows(2, 3), _duplicate_rows(3, 4)),
                                  (0, 1, 2), "for triplets with a == p and with a == n"),),
    ),
    GradedFunction(
        name="batch_all_triplet_loss",
        **_BATCH_LOSS,
        wrong_answers=_mistakes(
            "batch_all_triplet_loss",
            ("mean over all valid triplets", ALL_TRIPLETS,
             ("losses.sum() / num_active.clamp(min=1)", "losses.sum() / max(num_valid, 1)")),
            _OWN_POSITIVE,
            *_matrix_mistakes("batch_all_triplet_loss"),
            ("fraction of all index triples", "fraction_active over all B^3 index triples instead of the valid "
                                              "triplets",
             ("int(num_active) / num_valid if num_valid else 0.0", "int(num_active) / len(labels) ** 3")),
        ),
        checks=(_batch_gradients("batch_all_triplet_loss"),),
    ),
    GradedFunction(
        name="batch_hard_triplet_loss",
        **_BATCH_LOSS,
        wrong_answers=_mistakes(
            "batch_hard_triplet_loss",
            ("farthest negative", f"{ARGMAX} (the hardest negative is the CLOSEST sample of another class)",
             ("squared.masked_fill(same, math.inf).amin(dim=1)",
              "squared.masked_fill(same, -math.inf).amax(dim=1)")),
            ("closest positive", "argmin where argmax was meant (the hardest positive is the FARTHEST sample of the "
                                 "class)", ("squared.masked_fill(~positive, -math.inf).amax(dim=1)",
                                            "squared.masked_fill(~positive, math.inf).amin(dim=1)")),
            ("anchor as its own positive", OWN_POSITIVE,
             ("positive = same.clone().fill_diagonal_(False)", "positive = same")),
            # the reference picks on squared distances and takes the roots of the picked ones: no root is the mistake
            *_matrix_mistakes("batch_hard_triplet_loss", squared=("d_ap, d_an = " + _SAFE_SQRT.format("picked"),
                                                                  "d_ap, d_an = picked")),
            ("mean over every anchor", "averaging over every anchor instead of those with a positive and a negative",
             ("F.relu(d_ap - d_an + margin).mean()", "F.relu(d_ap - d_an + margin).sum() / len(labels)")),
            ("plain sqrt", NAN_GRADIENT, (_SAFE_SQRT.format("picked"), "picked.sqrt()")),
        ),
        checks=(_batch_gradients("batch_hard_triplet_loss"),),
    ),
    GradedFunction(
        name="semi_hard_triplets",
        **_BATCH,
        rtol=0.0, atol=0.0,
        tolerance="index sets compared exactly after sorting; float64 inputs without near-ties at the boundaries",
        normalize=_sorted_triplets,
        wrong_answers=_mistakes(
            "semi_hard_triplets",
            _OWN_POSITIVE,
            ("every triplet inside the margin", "every triplet inside the margin, hard ones included: semi-hard "
                                                "negatives are FARTHER than the positive, d(a, p) < d(a, n)",
             ("valid & (gap > 0) & (gap <= margin)", "valid & (gap <= margin)")),
            ("hard negatives", "hard negatives (closer than the positive) instead of semi-hard ones",
             ("valid & (gap > 0) & (gap <= margin)", "valid & (gap < 0)")),
            *_matrix_mistakes("semi_hard_triplets"),
        ),
    ),
    GradedFunction(
        name="PKSampler",
        test=_sampler_test,
        adapter="list",
        tolerance="properties of the batches (counts, distinct classes, replacement, seeds), not equality",
        wrong_answers=_mistakes(
            "PKSampler",
            ("small classes without replacement", "classes with fewer than K samples must be sampled with replacement",
             ("if len(members) >= self.K:", "if True:")),
            ("classes with replacement", "distinct classes",
             ("torch.randperm(len(self.classes), generator=self.generator)[: self.P]",
              "torch.randint(len(self.classes), (self.P,), generator=self.generator)")),
            ("global random generator", "draw every random number from self.generator",
             (", generator=self.generator", "")),
        ),
    ),
    GradedFunction(
        name="recall_at_k",
        stand_ins=DISTANCE_STAND_IN,
        cases=_recall_cases,
        fresh=_recall_fresh,
        # Recalls are multiples of 1/N; a float32 mean is off by ~1e-7 relative, a miscount by >= 1/N.
        rtol=1e-6, atol=0.0,
        tolerance="multiples of 1/N (N <= 80); float32 means are off by ~1e-7 relative",
        wrong_answers=_mistakes(
            "recall_at_k",
            ("query is its own neighbour", "the query counted as its own nearest neighbour (leave it out: +inf on the "
                                           "diagonal)", (".fill_diagonal_(math.inf)", ""),
             ("len(labels) - 1", "len(labels)")),
            ("precision at k", "precision@k (the fraction of the k neighbours of the class) instead of recall@k (at "
                               "least one of the k)", (").cumsum(dim=1) > 0", ")"),
             ("int(found[:, min(k, k_max) - 1].sum()) / len(labels)", "found[:, :k].double().mean().item()")),
            ("farthest neighbours", f"the farthest neighbours instead of the nearest ({ARGMAX})",
             ("(math.inf)", "(-math.inf)"), ("largest=False", "largest=True")),
            ("cosine neighbours", NORMALISED, _NORMALISE + solution_body(ASSIGNMENT, "recall_at_k")),
        ),
    ),
)

#: What the graded functions may not use (``autograder/judging/policy.py``): pytorch-metric-learning,
#: PyTorch's own triplet losses and scikit-learn's neighbours; ``pairwise_distances`` is the matrix-product
#: form, so it may not call ``torch.cdist`` (the others may, though the text suggests ``pairwise_distances``).
DEFAULT_FORBIDDEN = ("pytorch_metric_learning", "torch.nn.TripletMarginLoss", "torch.nn.TripletMarginWithDistanceLoss",
                     "torch.nn.modules.loss.TripletMarginLoss", "torch.nn.modules.loss.TripletMarginWithDistanceLoss",
                     "torch.nn.functional.triplet_margin_loss", "torch.nn.functional.triplet_margin_with_distance_loss",
                     "torch.triplet_margin_loss", "sklearn.neighbors", "faiss")
#: "No Python loops over samples, pairs or triplets": the sampler (a loop over the P classes) and
#: Recall@K (over the K values) may loop.
SPECS = with_policies(SPECS, no_loops=("pairwise_distances", "contrastive_loss", "triplet_loss",
                                       "batch_all_triplet_loss", "batch_hard_triplet_loss", "semi_hard_triplets"),
                      forbidden={"pairwise_distances": (*DEFAULT_FORBIDDEN, "torch.cdist", "torch.pdist",
                                                        "torch.functional.cdist", "torch._C._cdist_forward")})
