"""Hidden tests of ``style_transfer``: the content, Gram, style and TV losses, and the Adam loop.

Each loss test (:func:`_loss_test`) compares the student's loss on the spec's ``fresh`` inputs, then on the
stored cases (random float64 tensors, and float32 features of a seeded random-init SqueezeNet 1.1, built by
:func:`make_references` with their provenance), with the notebook's solution, norm-wise (below).

The loop (``style_transfer``) is graded on its own: it runs with **stand-in losses** that are not the
assignment's answers (:data:`STAND_INS`: a Huber content loss, channel mean and mean-square statistics
instead of Gram matrices, a Huber TV penalty) swapped into its globals in the kernel, and is compared with
the reference loop run here with the same stand-ins. A wrong ``content_loss`` therefore costs only
``content_loss``'s points, and no answer travels to the kernel. ``style_loss`` is judged the same way: its
``gram_matrix`` is the stand-in statistic (stored and fresh targets are that statistic's), so a broken
``gram_matrix`` costs only its own points.

Tolerances
----------
Float comparisons are norm-wise: ``max|got - expected| <= rtol * max|expected|``, so that entries
near zero (which carry only absolute accuracy) do not fail a correct answer.

- float64 inputs: :data:`FLOAT64_RTOL` = 1e-5, so that a loss computed in float32 passes (the notebook asks
  for the input's dtype, not float64 accuracy): float32 arithmetic on the float64 inputs, sums of at most
  10^4 terms, is off by a small multiple of sqrt(10^4) * u = 6e-6, and by at most 2.9e-7 over 200 draws
  (float64 round-off is ~1e-12); the wrong answers differ by far more (they are named within 1e-4).
- float32 inputs: :data:`FLOAT32_RTOL` = 1e-4. float32's unit roundoff is u = 2^-24 = 6.0e-8. A
  loss is a chain of sums: up to nine SqueezeNet convolutions of at most 576 terms each (the 3x3
  "expand" of a Fire module with 64 squeeze channels), a Gram matrix summing H*W <= 345 products,
  and a loss summing at most 256^2 = 65,536 squared differences. With rounding errors that behave
  like independent random variables, an n-term sum is off by a small multiple of sqrt(n) * u
  (Higham & Mary, SIAM J. Sci. Comput. 41(5), 2019), and the stages add up:
  (9 * 24 + 19 + 256) * u = 491 u = 2.9e-5. 1e-4 leaves a factor 3 on that estimate; the largest
  float32-vs-float64 difference measured on SqueezeNet features of the style images at 64-192 px
  is 6e-7 (``tests/test_style_transfer_reference.py`` asserts the 1e-4 bound).
- the optimisation loop runs in **float64** (the model cast with ``.double()``; ``style_transfer`` computes
  in its model's dtype). In float32 it is chaotic: Adam's first step moves each pixel by the learning
  rate times the *sign* of its gradient, so a gradient within rounding error of zero can flip a pixel
  by 2 x 3.0, and the difference grows. Over 60 random draws with the assignment's losses, a correct but
  differently rounded implementation (einsum Gram, ``F.mse_loss`` losses, ``torch.diff`` TV) differed
  from the reference by up to 1.2e-3 in its loss history and in 19% of the pixels by more than 0.01 in
  float32, against 2.1e-14 and at most 5.2e-10 per value in float64. So float64 runs must agree to
  ``LOOP_LOSS_RTOL`` = 1e-8 in every loss and ``LOOP_IMAGE_ATOL`` = 1e-6 in every value of the result
  (margins of 5e5 and 2e3), while the wrong loops tried (no learning-rate decay, keeping Adam's
  moments at the decay, clamping before the step or not at all, no ``zero_grad``) differ by far more in
  their losses. The stand-ins are smooth (Huber, squares), so the same argument holds for them. A float32
  run with a small learning rate only has to lower the loss.
"""

from __future__ import annotations

import copy
import functools
import math
import types
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autograder.judging.references import load_reference
from autograder.judging.solutions import edited_answers, function_source, load_namespace, value_diagnoses
from autograder.judging.spec import STATE, Call, GradedFunction, load_specs, with_policies
from autograder.judging.toolkit import (
    Failure,
    check_detached,
    clone_args,
    compare,
    scaled_atol,
    structure_problem,
    student_call,
    thunks,
)

ASSIGNMENT = "style_transfer"
#: A graded function's wrong answers, one ``(label, hint, (old, new), ...)`` row each: edits of its reference body.
_mistakes = functools.partial(edited_answers, ASSIGNMENT)
REFERENCE_SEED = 231
#: The demo's wrong sample: a wrong content loss must cost only its own points, since the loop is judged
#: with stand-in losses (autograder/batch/demo.py).
DEMO_WRONG_SAMPLE = "content_loss"
#: The demo's crashing building block: gram_matrix, which style_loss and the loop call. style_loss is judged with
#: the grader's stand-in statistic for gram_matrix (and its visible check with hand-computed Gram matrices), the
#: loop with stand-in losses, so a crashing gram_matrix costs only its own points.
DEMO_CRASH_SAMPLE = "gram_matrix"
#: float32 tolerance (module docstring); float64 comparisons use FLOAT64_RTOL.
FLOAT32_RTOL = 1e-4
FLOAT64_RTOL = 1e-5
#: ``python -m autograder references`` compares regenerated cases element-wise (``torch.allclose``):
#: rtol is the float32 bound; atol covers float32 values near zero, which were summed from terms as
#: large as the stored SqueezeNet features (|f| <= 22): 1e-3 is 77 times the largest absolute
#: float32-vs-float64 feature difference measured (1.3e-5).
REFERENCE_RTOL, REFERENCE_ATOL = FLOAT32_RTOL, 1e-3
LOOP_LOSS_RTOL = 1e-8
LOOP_IMAGE_ATOL = 1e-6
#: The CS231n layers and weights (Starry Night preset) that the loop tests start from.
STYLE_LAYERS = (1, 4, 6, 7)
STYLE_WEIGHTS = (300000.0, 1000.0, 15.0, 3.0)

Student = Any  # autograder.judging.judge.RemoteFunction: calls the student's function in the kernel


# ----------------------------------------------------------------------------------------------
# Reference cases
# ----------------------------------------------------------------------------------------------


@functools.cache
def squeezenet_features(seed: int = REFERENCE_SEED) -> torch.nn.Sequential:
    """SqueezeNet 1.1's ``.features`` with torchvision's random initialisation under ``seed``.

    No pretrained weights are involved, so the model is the same on every machine with the same
    torchvision version. Eval mode, frozen, non-inplace ReLUs (as ``cs_lib.models`` builds it).
    """
    import torchvision

    from cs_lib.models import freeze, make_relus_non_inplace

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.squeezenet1_1(weights=None)
    return freeze(make_relus_non_inplace(model.features))


@functools.cache
def _float64_features(seed: int = REFERENCE_SEED) -> torch.nn.Sequential:
    return copy.deepcopy(squeezenet_features(seed)).double()


def make_references(sol: SimpleNamespace) -> dict[str, list[dict[str, Any]]]:
    """Reference cases: seeded float64 tensors, and float32 SqueezeNet features of sample photos.

    The photos ship with scikit-image (Chelsea the cat, a coffee cup, a brick wall), so the cases
    can be regenerated anywhere; the network is :func:`squeezenet_features` (random init,
    ``REFERENCE_SEED``). Each case records where its inputs came from under ``"provenance"``.
    """
    from cs_lib.data import load_style_image

    g = torch.Generator().manual_seed(REFERENCE_SEED)
    f64 = {"dtype": torch.float64, "generator": g}
    rand = "torch.randn, torch.Generator().manual_seed(REFERENCE_SEED), float64"
    net = squeezenet_features(REFERENCE_SEED)
    photos = {name: sol.image_to_tensor(load_style_image(name), 32) for name in ("chelsea", "coffee", "brick")}
    with torch.no_grad():
        feats = {name: sol.extract_features(x, net)[:8] for name, x in photos.items()}
    squeeze = ("SqueezeNet 1.1 features (torchvision random init, torch.manual_seed(REFERENCE_SEED)) of "
               "scikit-image's {} at 32 px (shorter side), float32")

    def case(args: tuple, output: Any, provenance: str, **kwargs: Any) -> dict[str, Any]:
        return {"inputs": {"args": args, "kwargs": kwargs}, "output": output, "provenance": provenance}

    content = []
    for shape, weight in [((1, 4, 5, 6), 0.3), ((2, 3, 7, 5), 7.5)]:
        a, b = torch.randn(shape, **f64), torch.randn(shape, **f64)
        content.append(case((weight, a, b), sol.content_loss(weight, a, b), rand))
    a, b = feats["coffee"][3], feats["chelsea"][3]
    content.append(case((6e-2, a, b), sol.content_loss(6e-2, a, b),
                        squeeze.format("coffee (current) and chelsea (original), layer 3")))

    gram = []
    for shape, normalize in [((3, 4, 5, 6), True), ((2, 5, 3, 7), False)]:
        x = torch.randn(shape, **f64) * 3.0
        gram.append(case((x,), sol.gram_matrix(x, normalize=normalize), rand, normalize=normalize))
    for name, layer, normalize in [("brick", 1, False), ("brick", 4, False), ("coffee", 4, True)]:
        x = feats[name][layer]
        gram.append(case((x,), sol.gram_matrix(x, normalize=normalize), squeeze.format(f"{name}, layer {layer}"),
                         normalize=normalize))

    # style_loss is judged with the grader's stand-in for gram_matrix (_STYLE_GRAM): targets and outputs use it too.
    style = []
    statistic, style_loss = stand_in_functions()["gram_matrix"], with_stand_ins(sol.style_loss)
    shapes = [(1, 3, 9, 8), (1, 4, 7, 6), (1, 2, 5, 5), (1, 5, 4, 6), (1, 6, 3, 4), (1, 3, 2, 3)]
    layers, weights = (1, 3, 4), (3.0, 0.2, 11.0)
    fs = [torch.randn(s, **f64) for s in shapes]
    targets = [statistic(torch.randn(shapes[i], **f64)) for i in layers]
    style.append(case((fs, layers, targets, weights), style_loss(fs, layers, targets, weights), rand))
    layers, weights = STYLE_LAYERS, STYLE_WEIGHTS
    current = feats["brick"][: max(layers) + 1]
    targets = [statistic(feats["chelsea"][i]) for i in layers]
    style.append(case((current, layers, targets, weights), style_loss(current, layers, targets, weights),
                      squeeze.format("brick (current, layers 0-7) and chelsea (targets of the stand-in statistic)")))

    tv = []
    x = torch.randn((2, 3, 6, 7), **f64)
    tv.append(case((x, 0.7), sol.tv_loss(x, 0.7), rand))
    tv.append(case((photos["chelsea"], 2e-2), sol.tv_loss(photos["chelsea"], 2e-2),
                   "scikit-image's chelsea at 32 px, preprocessed (ImageNet normalisation), float32"))
    return {"content_loss": content, "gram_matrix": gram, "style_loss": style, "tv_loss": tv}


# ----------------------------------------------------------------------------------------------
# Comparing
# ----------------------------------------------------------------------------------------------


def _rtol(dtype: torch.dtype) -> float:
    return FLOAT64_RTOL if dtype == torch.float64 else FLOAT32_RTOL


def _max_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|got - expected| / max|expected|`` in float64 (inf when the shapes differ)."""
    if tuple(got.shape) != tuple(expected.shape):
        return math.inf
    a, b = got.detach().double().cpu(), expected.detach().double().cpu()
    scale = float(b.abs().max()) if b.numel() else 0.0
    return float((a - b).abs().max()) / max(scale, 1e-300) if b.numel() else 0.0


def _input_dtype(args: tuple) -> torch.dtype:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.dtype
        if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor):
            return a[0].dtype
    return torch.float64


#: Per loss: the hint for any mismatch, and the hint for a wrong shape.
_HINTS: dict[str, tuple[str, str]] = {
    "content_loss": ("Return content_weight * sum((current - original) ** 2).",
                     "Return a 0-dim tensor (torch.sum(...)), not a Python float or a per-element tensor."),
    "gram_matrix": ("G[n] = F_n F_n^T, divided by H * W * C when normalize=True.",
                    "Return one C x C Gram matrix per image of the batch, shape (N, C, C)."),
    "style_loss": ("Pair feats[style_layers[i]] with style_targets[i] and style_weights[i].",
                   "Return a 0-dim tensor (a sum of torch.sum(...) terms)."),
    "tv_loss": ("Sum the squared differences along both the height (dim 2) and the width (dim 3).",
                "Return a 0-dim tensor."),
}


#: What style_loss is judged with instead of the student's gram_matrix: the grader's stand-in statistic (not a
#: Gram matrix), in the kernel and in the reference alike, so that a broken gram_matrix costs only its own points.
_STYLE_GRAM = "gram_matrix"


def _loss_test(student: Student, ref: Callable[..., torch.Tensor], spec: GradedFunction, g: torch.Generator) -> None:
    """Hidden test of a loss: the spec's fresh inputs, then the stored cases, each compared norm-wise."""
    stored = [(tuple(c["inputs"].get("args", ())), c["inputs"].get("kwargs", {}), f"stored case {i}", c["output"])
              for i, c in enumerate(load_reference(ASSIGNMENT)["cases"][spec.name])]
    if spec.name != "style_loss":
        _check_losses(spec, student, ref, spec.fresh(g) + stored)
        return
    try:
        _check_losses(spec, student.with_stand_ins({_STYLE_GRAM: STAND_INS[_STYLE_GRAM]}), with_stand_ins(ref),
                      spec.fresh(g) + stored, stand_ins=True)
    except AssertionError as with_stand_in:
        # A correct style_loss that computes its Gram matrices without calling gram_matrix ignores the stand-in:
        # it passes on true Gram targets with its own code. Otherwise the diagnosis that names a mistake stands.
        try:
            _check_losses(spec, student, ref, _style_calls(g, load_namespace(ASSIGNMENT)["gram_matrix"]))
        except AssertionError as on_its_own:
            named = [exc for exc in (with_stand_in, on_its_own) if getattr(exc, "hint", "")]
            raise (named or [with_stand_in])[0] from None


def _check_losses(spec: GradedFunction, student: Student, ref: Callable[..., torch.Tensor],
                  calls: list[Call | tuple[tuple, dict[str, Any], str, Any]], stand_ins: bool = False) -> None:
    """Each call (or stored ``(args, kwargs, label, output)``) compared norm-wise (:func:`_rtol` of its dtype times
    the largest |expected|) with the reference's output, and diagnosed by the value mistakes (run with the grader's
    stand-ins when ``stand_ins``)."""
    name, (hint, shape_hint) = spec.name, _HINTS[spec.name]
    wrong = {h: with_stand_ins(f) if stand_ins else f for h, f in value_diagnoses(ASSIGNMENT, spec).items()}
    for call in calls:
        args, kwargs, label, expected = (call.args, call.kwargs, call.describe(), None) if isinstance(call, Call) \
            else call
        got = student_call(name, student, args, kwargs, hint=hint)
        if expected is None:
            expected = ref(*clone_args(args), **clone_args(kwargs))
        compare(name, got, expected, 0.0, scaled_atol(expected, _rtol(_input_dtype(args))), f"on {label}",
                thunks(wrong, lambda f, a=args, k=kwargs: f(*clone_args(a), **clone_args(k))), advice=hint,
                shape_advice=shape_hint, diagnosis="Diagnosis: {}")


def _weight(g: torch.Generator) -> float:
    """A loss weight at least a factor 2 away from 1 (so that a forgotten weight shows)."""
    magnitude = 10 ** float(torch.empty(()).uniform_(0.3, 1.5, generator=g))
    return magnitude if bool(torch.rand((), generator=g) < 0.5) else 1.0 / magnitude


def _randint(g: torch.Generator, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (1,), generator=g))


# ----------------------------------------------------------------------------------------------
# The four losses: fresh inputs and wrong answers
# ----------------------------------------------------------------------------------------------


def _content_fresh(g: torch.Generator) -> list[Call]:
    calls = []
    for dtype in (torch.float64, torch.float32):
        shape = (_randint(g, 1, 2), _randint(g, 2, 8), _randint(g, 2, 9), _randint(g, 2, 9))
        calls.append(Call(_weight(g), torch.randn(shape, generator=g, dtype=dtype),
                          torch.randn(shape, generator=g, dtype=dtype), label=f"random {dtype} feature maps"))
    return calls


_DIFF = "(content_current - content_original)"
_SUM = 'reduction="sum"'

#: The losses' mistakes, one ``(label, hint, (old, new), ...)`` row each: edits of the reference body (or a body).
CONTENT_WRONG = _mistakes(
    "content_loss",
    ("mean", "You averaged the squared differences (a mean); the content loss sums them.", (_SUM, 'reduction="mean"')),
    ("no weight", "You forgot to multiply by content_weight.", ("content_weight * ", "")),
    ("norm", "Square the differences: this looks like w * ||current - original|| (a norm, not its square).",
     f"return content_weight * torch.norm{_DIFF}"),
    ("absolute values", "Square the differences instead of taking their absolute values.", ("mse_loss", "l1_loss")),
    (STATE + "a Python float", "expected a torch.Tensor", f"return (content_weight * torch.sum({_DIFF} ** 2)).item()"),
)


def _gram_fresh(g: torch.Generator) -> list[Call]:
    calls = []
    for dtype in (torch.float64, torch.float32):
        for normalize in (True, False):
            N, C, H, W = _randint(g, 2, 4), _randint(g, 2, 8), _randint(g, 2, 9), _randint(g, 2, 9)
            calls.append(Call(torch.randn(N, C, H, W, generator=g, dtype=dtype) * 2.0, normalize=normalize,
                              label=f"random {dtype} features {(N, C, H, W)}, normalize={normalize}"))
    return calls


_NORMALIZED = "G = G / (H * W * C)"
_WHOLE_BATCH = (("features.reshape(N, C, H * W)", "features.transpose(0, 1).reshape(C, N * H * W)"),
                ("torch.bmm(F, F.transpose(1, 2))", "(F @ F.t()).expand(N, C, C)"))

GRAM_WRONG = _mistakes(
    "gram_matrix",
    ("H * W", "Divide by H * W * C when normalize=True (it looks divided by H * W only).",
     (_NORMALIZED, "G = G / (H * W)")),
    ("C", "Divide by H * W * C when normalize=True (it looks divided by C only).", (_NORMALIZED, "G = G / C")),
    ("N * H * W * C", "Divide by H * W * C, not by N * H * W * C.", (_NORMALIZED, "G = G / (N * H * W * C)")),
    ("unnormalised", "Divide by H * W * C when normalize=True (it looks unnormalised).", (_NORMALIZED, "pass")),
    ("always normalised", "Do not normalise when normalize=False.", ("if normalize:\n    " + _NORMALIZED, _NORMALIZED)),
    ("whole batch", "Compute one Gram matrix per image: this looks like one Gram matrix for the whole batch "
                    "(reshape to (N, C, H * W), not (C, N * H * W)).",
     *_WHOLE_BATCH, (_NORMALIZED, "G = G / (N * H * W * C)")),
    ("whole batch, per-image normalisation", "Compute one Gram matrix per image, not one for the whole batch "
                                             "(reshape to (N, C, H * W)).", *_WHOLE_BATCH),
)


def _style_fresh(g: torch.Generator) -> list[Call]:
    """Layer lists of 5-7 maps with 3 shuffled style layers; targets of the stand-in statistic (_STYLE_GRAM)."""
    return _style_calls(g, stand_in_functions()[_STYLE_GRAM])


def _style_calls(g: torch.Generator, gram: Callable[..., torch.Tensor]) -> list[Call]:
    """:func:`_style_fresh`'s calls with the targets of ``gram`` (the stand-in, or the reference Gram matrix)."""
    calls = []
    for dtype in (torch.float64, torch.float32):
        num_layers = _randint(g, 5, 7)
        shapes = [(1, _randint(g, 2, 6), _randint(g, 2, 8), _randint(g, 2, 8)) for _ in range(num_layers)]
        feats = [torch.randn(s, generator=g, dtype=dtype) for s in shapes]
        layers = sorted(int(i) for i in (torch.randperm(num_layers - 1, generator=g)[:3] + 1))
        targets = [gram(torch.randn(shapes[i], generator=g, dtype=dtype) * 1.5) for i in layers]
        weights = [_weight(g) for _ in layers]
        calls.append(Call(feats, layers, targets, weights, label=f"{num_layers} random {dtype} layers"))
    return calls


_ADD = "loss = loss + "
_STYLE_TERM = 'nn.functional.mse_loss(gram_matrix(feats[layer]), target, reduction="sum")'

STYLE_WRONG = _mistakes(
    "style_loss",
    ("no weights", "You forgot the style weights.", (_ADD + "weight * ", _ADD)),
    ("mean", "You averaged the squared Gram differences (a mean); sum them.", (_SUM, 'reduction="mean"')),
    ("Frobenius norm", "Square the differences: this looks like a Frobenius norm, not its square.",
     (_STYLE_TERM, "torch.norm(gram_matrix(feats[layer]) - target)")),
    ("unnormalised Gram", "Use the normalised Gram matrix (gram_matrix(...) with normalize=True), like the targets.",
     ("gram_matrix(feats[layer])", "gram_matrix(feats[layer], normalize=False)")),
    ("last layer only", "Add up every style layer; this is only the last one (did you overwrite the loss in the "
                        "loop?).", (_ADD, "loss = ")),
    ("first layer only", "Add up every style layer; this is only the first one (a return inside the loop?).",
     (_ADD, "return ")),
    # written out: mse_loss would warn when the shapes differ
    (STATE + "targets indexed by layer", "style_targets[i]",
     (_STYLE_TERM, "torch.sum((gram_matrix(feats[layer]) - style_targets[layer]) ** 2)")),
)


def _tv_fresh(g: torch.Generator) -> list[Call]:
    """Non-square batches in either orientation (the transposed ones are not contiguous)."""
    calls = []
    for dtype in (torch.float64, torch.float32):
        H = _randint(g, 3, 12)
        W = H + _randint(g, 1, 5)
        x = torch.randn(_randint(g, 1, 2), 3, H, W, generator=g, dtype=dtype)
        if bool(torch.rand((), generator=g) < 0.5):
            x = x.transpose(2, 3)
        calls.append(Call(x, _weight(g), label=f"a random {dtype} image batch {tuple(x.shape)}"))
    return calls


TV_WRONG = _mistakes(
    "tv_loss",
    ("vertical only", "Add the horizontal differences too (this is the vertical term only).",
     ("(vertical + horizontal)", "vertical")),
    ("horizontal only", "Add the vertical differences too (this is the horizontal term only).",
     ("(vertical + horizontal)", "horizontal")),
    ("no weight", "You forgot to multiply by tv_weight.", ("tv_weight * ", "")),
    ("mean", "Sum the squared differences; this looks like a mean.", (_SUM, 'reduction="mean"')),
    ("absolute values", "Square the differences instead of taking their absolute values.", ("mse_loss", "l1_loss")),
    ("wraps around", "Do not wrap around the border (torch.roll): only neighbours inside the image count.",
     "return tv_weight * (torch.sum((img - img.roll(1, 2)) ** 2) + torch.sum((img - img.roll(1, 3)) ** 2))"),
)


# ----------------------------------------------------------------------------------------------
# The optimisation loop
# ----------------------------------------------------------------------------------------------

LOOP_HINT = ("Follow the recipe in the docstring: targets without gradients; img = a clone of the content "
             "image (or torch.rand noise) with requires_grad; Adam(lr=initial_lr); at t == int(decay_lr_at "
             "* num_iterations) a NEW Adam(lr=decayed_lr); zero_grad, loss = content + style + tv, "
             "backward, losses.append(loss.item()), step; then clamp img to [-1.5, 1.5] after the step. The "
             "grader runs it in float64 (model.double()): create new tensors with dtype=content_img.dtype.")

#: Functions the loop calls by name, replaced in its globals (kernel and reference alike) by these grader
#: stand-ins, which are not the assignment's answers: the loop is graded on its own, whatever the student's
#: losses are, and no answer is sent to the kernel. They must stay smooth (see the module docstring).
STAND_INS: dict[str, str] = {
    "content_loss": '''
def content_loss(content_weight, content_current, content_original):
    """Grader stand-in, not the assignment's loss: a weighted Huber loss between the feature maps."""
    return content_weight * F.smooth_l1_loss(content_current, content_original, reduction="sum")
''',
    "gram_matrix": '''
def gram_matrix(features, normalize=True):
    """Grader stand-in, not a Gram matrix: each channel's mean and mean square, (N, C, 2)."""
    stats = torch.stack([features.mean(dim=(2, 3)), features.pow(2).mean(dim=(2, 3))], dim=2)
    return stats if normalize else stats * (features.shape[2] * features.shape[3])
''',
    "style_loss": '''
def style_loss(feats, style_layers, style_targets, style_weights):
    """Grader stand-in: weighted squared differences of channel means and mean squares."""
    loss = feats[0].new_zeros(())
    for layer, target, weight in zip(style_layers, style_targets, style_weights):
        f = feats[layer]
        stats = torch.stack([f.mean(dim=(2, 3)), f.pow(2).mean(dim=(2, 3))], dim=2)
        loss = loss + weight * ((stats - target) ** 2).sum()
    return loss
''',
    "tv_loss": '''
def tv_loss(img, tv_weight):
    """Grader stand-in: a weighted Huber penalty on vertical and horizontal neighbour differences."""
    dh = img[:, :, 1:, :] - img[:, :, :-1, :]
    dw = img[:, :, :, 1:] - img[:, :, :, :-1]
    return tv_weight * (F.smooth_l1_loss(dh, torch.zeros_like(dh), reduction="sum")
                        + F.smooth_l1_loss(dw, torch.zeros_like(dw), reduction="sum"))
''',
    # the release's own helper, from the notebook's helpers cell (one home: the notebook)
    "extract_features": function_source(ASSIGNMENT, "extract_features"),
}
_SEED_NAME = "_grader_seed"


@functools.cache
def stand_in_functions() -> dict[str, Callable[..., Any]]:
    """:data:`STAND_INS` executed here, as the kernel executes them (with torch, nn and F in scope)."""
    functions = {}
    for name, source in STAND_INS.items():
        scope: dict[str, Any] = {"torch": torch, "nn": nn, "F": F}
        exec(compile(source, f"<grader stand-in {name}>", "exec"), scope)  # noqa: S102 - our own source
        functions[name] = scope[name]
    return functions


def with_stand_ins(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a notebook function: the reference or a wrong answer) with the stand-ins in its globals."""
    namespace = {**fn.__globals__, **stand_in_functions()}
    copy_ = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    copy_.__kwdefaults__ = fn.__kwdefaults__
    return copy_


def _seeded_stand_ins(seed: int) -> dict[str, str]:
    """The stand-ins, then (last, right before the call) torch's global generator seeded in the kernel."""
    return {**STAND_INS, _SEED_NAME: f"torch.manual_seed({seed})\n{_SEED_NAME} = None\n"}


def _run_student_loop(student: Student, seed: int, **kwargs: Any) -> Any:
    return student_call("style_transfer", student.with_stand_ins(_seeded_stand_ins(seed)), (), kwargs, hint=LOOP_HINT)


def _run_reference_loop(fn: Callable[..., Any], seed: int, **kwargs: Any) -> Any:
    """A notebook loop run here with the stand-ins and torch's global generator seeded, restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return with_stand_ins(fn)(**copy.deepcopy(kwargs))


def _random_photo(g: torch.Generator, height: int, width: int) -> np.ndarray:
    """A uint8 (H, W, 3) image: coarse random colours, upsampled, plus noise."""
    coarse = torch.rand(1, 3, max(2, height // 8), max(2, width // 8), generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    image = (smooth + 0.15 * torch.randn(1, 3, height, width, generator=g)).clamp(0, 1)
    return (image[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def _check_loop_output(out: Any, num_iterations: int, shape: tuple[int, ...],
                       dtype: torch.dtype) -> tuple[torch.Tensor, list[float]]:
    name = "style_transfer"
    if not (isinstance(out, tuple) and len(out) == 2):
        raise Failure(f"{name} returned {type(out).__name__}; expected a tuple (img, losses).")
    img, losses = out
    problem = structure_problem(img, torch.empty(shape, dtype=dtype), "the image")
    if problem:
        raise Failure(f"{name}: {problem}. Return the optimised image itself, shape (1, 3, H, W), in the model's "
                      "dtype and on its device.")
    if not isinstance(losses, list) or len(losses) != num_iterations:
        got = len(losses) if isinstance(losses, list) else type(losses).__name__
        raise Failure(f"{name} returned losses = {got}; expected a list of num_iterations = "
                      f"{num_iterations} floats, one per iteration.")
    if not all(isinstance(v, float) and math.isfinite(v) for v in losses):
        raise Failure(f"{name}: every entry of losses must be a finite Python float (loss.item()).")
    return img, losses


def _same_losses(got: list[float], expected: list[float]) -> bool:
    return len(got) == len(expected) and all(abs(a - b) <= LOOP_LOSS_RTOL * abs(b) for a, b in zip(got, expected))


def _loop_diagnosis(losses: list[float], run: Callable[..., Any]) -> str:
    """The hint of the first wrong loop whose loss history the student's matches, or "".

    ``run(fn, num_iterations)`` runs a wrong loop on the student's inputs. A 2-iteration run first: its two
    losses are the first two of the full run (the decay, at step int(decay_lr_at * 2) >= 1, acts after
    the second loss), so only the wrong loops that start like the student's are run in full.
    """
    for hint, fn in value_diagnoses(ASSIGNMENT, load_specs(ASSIGNMENT)["style_transfer"]).items():
        try:
            if not _same_losses(losses[:2], run(fn, 2)[1]) or not _same_losses(losses, run(fn, len(losses))[1]):
                continue
        except Exception:  # noqa: BLE001 - a wrong loop that cannot run on this input matches nothing
            continue
        return f" This looks like: {hint}"
    return ""


def _compare_runs(label: str, got: tuple[torch.Tensor, list[float]], expected: tuple[torch.Tensor, list[float]],
                  first_hint: str, run: Callable[..., Any]) -> None:
    name = f"style_transfer ({label})"
    (img, losses), (ref_img, ref_losses) = got, expected
    worst = max(range(len(losses)), key=lambda t: abs(losses[t] - ref_losses[t]) / abs(ref_losses[t]))
    if abs(losses[worst] - ref_losses[worst]) > LOOP_LOSS_RTOL * abs(ref_losses[worst]):
        diagnosis = _loop_diagnosis(losses, run)
        compare(name + ", losses[0]", losses[0], ref_losses[0], LOOP_LOSS_RTOL, 0.0, advice=first_hint + diagnosis)
        raise Failure(f"{name}: the loss at iteration {worst} is {losses[worst]:.10g}; the reference loop "
                      f"gives {ref_losses[worst]:.10g} (relative tolerance {LOOP_LOSS_RTOL:g}). {LOOP_HINT}"
                      f"{diagnosis}")
    if float(img.min()) < -1.5 or float(img.max()) > 1.5:
        raise Failure(f"{name}: the result has values in [{float(img.min()):.3g}, {float(img.max()):.3g}]; "
                      "clamp img to [-1.5, 1.5] after every optimizer step.")
    compare(name + ", image", img, ref_img, 0.0, LOOP_IMAGE_ATOL,
            advice="The losses match but the returned image does not: return img.detach() after the last step and "
                   "clamp.")


def _loop_test(student: Student, ref: Callable[..., Any], spec: GradedFunction, g: torch.Generator) -> None:
    """Hidden test of ``style_transfer``: tiny runs (32 px, 20 steps) against the reference loop.

    With the stand-in losses, on random-init SqueezeNet features in float64 and images drawn at grading
    time, a run from the content image with CS231n's schedule (lr 3.0, a new Adam with lr 0.1 at 90%) and
    one from noise with a learning-rate schedule drawn at random, under the same seed, must follow the
    reference run: every loss to ``LOOP_LOSS_RTOL`` and the image to ``LOOP_IMAGE_ATOL``. A float32 run
    with a small learning rate must lower the loss.
    """
    def scale() -> float:
        return 10 ** float(torch.empty(()).uniform_(-0.5, 0.5, generator=g))

    width = _randint(g, 40, 56)
    params = dict(content_image=_random_photo(g, 40, width), style_image=_random_photo(g, 40, 40),
                  image_size=32, style_size=32, content_layer=3, content_weight=6e-2 * scale(),
                  style_layers=STYLE_LAYERS, style_weights=tuple(w * scale() for w in STYLE_WEIGHTS),
                  tv_weight=2e-2 * scale())
    shape = (1, 3, 32, round(width * 32 / 40))
    seed = _randint(g, 0, 2**31 - 1)
    model = _float64_features(REFERENCE_SEED)
    schedule = {"initial_lr": 10 ** float(torch.empty(()).uniform_(-0.5, 0.3, generator=g)),
                "decayed_lr": 10 ** float(torch.empty(()).uniform_(-2, -1, generator=g)),
                "decay_lr_at": float(torch.empty(()).uniform_(0.5, 0.8, generator=g))}
    for label, extra, first_hint in [
        ("from the content image", {}, "losses[0] is the total loss of the content image itself: start from "
                                        "content_img.clone() and record each loss before its step."),
        ("init_random=True, learning rates " + ", ".join(f"{k}={v:.3g}" for k, v in schedule.items()),
         {"init_random": True, **schedule},
         "With init_random=True start from torch.rand(content_img.shape, dtype=content_img.dtype, "
         "device=content_img.device)."),
    ]:
        kwargs = {**params, **extra, "num_iterations": 20, "model": model}
        out = _run_student_loop(student, seed, **kwargs)
        got = _check_loop_output(out, 20, shape, torch.float64)
        expected = _run_reference_loop(ref, seed, **kwargs)
        _compare_runs(label + ", float64", got, expected, first_hint,
                      lambda fn, n, kwargs=kwargs: _run_reference_loop(fn, seed, **{**kwargs, "num_iterations": n}))
    check_detached("style_transfer", student.with_stand_ins(_seeded_stand_ins(seed)), (),
                   {**params, "num_iterations": 2, "model": model}, "return img.detach().")
    out = _run_student_loop(student, seed, **params, num_iterations=10, initial_lr=0.05, decayed_lr=0.01,
                            model=squeezenet_features(REFERENCE_SEED))
    _, losses = _check_loop_output(out, 10, shape, torch.float32)
    if not losses[-1] < losses[0]:
        raise Failure(f"style_transfer: with initial_lr=0.05 the loss went from {losses[0]:.6g} to "
                      f"{losses[-1]:.6g} in 10 steps; it should go down. Use the initial_lr and decayed_lr "
                      "arguments, and backpropagate the total loss.")


#: The loop's mistakes in its set-up (targets, img, optimizer): edits of the reference loop.
LOOP_WRONG = _mistakes(
    "style_transfer",
    ("noise from randn", "noise from torch.randn; use torch.rand (uniform in [0, 1))",
     ("torch.rand(content_img.shape", "torch.randn(content_img.shape")),
    ("fixed learning rate", "a fixed learning rate of 3.0; use Adam(lr=initial_lr)", ("lr=initial_lr", "lr=3.0")),
    ("SGD", "plain SGD steps before the decay; use torch.optim.Adam", ("torch.optim.Adam(", "torch.optim.SGD(")),
    ("unnormalised style targets", "style targets computed with normalize=False; keep gram_matrix's default "
                                   "normalize=True",
     ("gram_matrix(style_feats[layer])", "gram_matrix(style_feats[layer], normalize=False)")),
)


# ----------------------------------------------------------------------------------------------
# Specs
# ----------------------------------------------------------------------------------------------

_LOSS_TOLERANCE = ("norm-wise: float64 inputs 1e-5 (float32 arithmetic on them: <= 2.9e-7), float32 1e-4 (491 u = "
                   "2.9e-5, module docstring)")

SPECS = (
    GradedFunction(name="content_loss", fresh=_content_fresh, test=_loss_test, rtol=FLOAT32_RTOL, atol=0.0,
                   tolerance=_LOSS_TOLERANCE, wrong_answers=CONTENT_WRONG),
    GradedFunction(name="gram_matrix", fresh=_gram_fresh, test=_loss_test, rtol=FLOAT32_RTOL, atol=0.0,
                   tolerance=_LOSS_TOLERANCE, wrong_answers=GRAM_WRONG),
    GradedFunction(name="style_loss", fresh=_style_fresh, test=_loss_test, rtol=FLOAT32_RTOL, atol=0.0,
                   tolerance=_LOSS_TOLERANCE, wrong_answers=STYLE_WRONG),
    GradedFunction(name="tv_loss", fresh=_tv_fresh, test=_loss_test, rtol=FLOAT32_RTOL, atol=0.0,
                   tolerance=_LOSS_TOLERANCE, wrong_answers=TV_WRONG),
    GradedFunction(name="style_transfer", test=_loop_test, rtol=LOOP_LOSS_RTOL, atol=LOOP_IMAGE_ATOL,
                   tolerance="float64 loop: losses to 1e-8 relative, image to 1e-6 (module docstring)",
                   float64_required="Adam's first steps move each pixel by about the learning rate times the sign "
                                    "of its gradient, so in float32 round-off near a zero gradient flips pixels and "
                                    "the run drifts away from the reference (losses by up to 1e-3), while the grader "
                                    "runs the loop in float64 and compares the losses to 1e-8: compute in the "
                                    "model's dtype and create new tensors with dtype=content_img.dtype.",
                   wrong_answers=LOOP_WRONG, forgeable=("the returned image is detached",)),
)

#: What the graded functions may not use: nothing beyond PyTorch is needed, and the text asks for the Gram
#: matrix and the TV loss without Python loops (``autograder/judging/policy.py``).
DEFAULT_FORBIDDEN: tuple[str, ...] = ()
SPECS = with_policies(SPECS, no_loops=("gram_matrix", "tv_loss"))


def warm_up() -> None:
    """Build what every test of this module needs (the SqueezeNet features in float32 and float64, the
    stand-ins, the stored cases), so that grading processes forked afterwards start with it
    (``autograder.judging.judge.warm_up`` may call this)."""
    squeezenet_features(REFERENCE_SEED)
    _float64_features(REFERENCE_SEED)
    stand_in_functions()
    load_reference(ASSIGNMENT)
