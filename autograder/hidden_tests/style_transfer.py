"""Hidden tests of ``style_transfer``: the content, Gram, style and TV losses, and the Adam loop.

Each test runs the student function on the stored reference cases (random float64 tensors, and
float32 features of a seeded random-init SqueezeNet 1.1), then on inputs drawn at grading time,
compared with the source notebook's solution run live. When a result is wrong, the common wrong
answers (a mean for a sum, a forgotten weight, the wrong Gram normalisation, TV along one axis,
one Gram matrix for the whole batch, ...) are recomputed and the matching one names the fix.

Tolerances
----------
Float comparisons are norm-wise: ``max|got - expected| <= rtol * max|expected|``, so that entries
near zero (which carry only absolute accuracy) do not fail a correct answer.

- float64 inputs: ``rtol = 1e-10`` (round-off of float64 sums of at most 10^4 terms is ~1e-12).
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
  by 2 x 3.0, and the difference grows. Over 60 random draws, a correct but differently rounded
  implementation (einsum Gram, ``F.mse_loss`` losses, ``torch.diff`` TV) differed from the reference
  by up to 1.2e-3 in its loss history and in 19% of the pixels by more than 0.01 in float32, against
  2.1e-14 and at most 5.2e-10 per value in float64. So float64 runs must agree to
  ``LOOP_LOSS_RTOL`` = 1e-8 in every loss and ``LOOP_IMAGE_ATOL`` = 1e-6 in every value of the result
  (margins of 5e5 and 2e3), while the wrong loops tried (no learning-rate decay, keeping Adam's
  moments at the decay, clamping before the step or not at all, no ``zero_grad``) differ by 3e-2 to
  200 in their losses. A float32 run with a small learning rate only has to lower the loss (the
  largest final/initial ratio measured was 0.71).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import dis
import functools
import inspect
import math
import textwrap
import types
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from autograder.judging.references import load_reference
from autograder.judging.solutions import load_solutions
from autograder.judging.toolkit import call_student, fresh_generator
from cs_lib.checks import check_close, check_tensor

ASSIGNMENT = "style_transfer"
REFERENCE_SEED = 231
#: float32 tolerance (module docstring); float64 comparisons use FLOAT64_RTOL.
FLOAT32_RTOL = 1e-4
FLOAT64_RTOL = 1e-10
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

    style = []
    shapes = [(1, 3, 9, 8), (1, 4, 7, 6), (1, 2, 5, 5), (1, 5, 4, 6), (1, 6, 3, 4), (1, 3, 2, 3)]
    layers, weights = (1, 3, 4), (3.0, 0.2, 11.0)
    fs = [torch.randn(s, **f64) for s in shapes]
    targets = [sol.gram_matrix(torch.randn(shapes[i], **f64)) for i in layers]
    style.append(case((fs, layers, targets, weights), sol.style_loss(fs, layers, targets, weights), rand))
    # Layers 1 and 4 only: the 256 x 256 Gram targets of layers 6 and 7 would triple the file's size.
    layers, weights = STYLE_LAYERS[:2], STYLE_WEIGHTS[:2]
    current = feats["brick"][: max(layers) + 1]
    targets = [sol.gram_matrix(feats["chelsea"][i]) for i in layers]
    style.append(case((current, layers, targets, weights), sol.style_loss(current, layers, targets, weights),
                      squeeze.format("brick (current, layers 0-4) and chelsea (Gram targets)")))

    tv = []
    x = torch.randn((2, 3, 6, 7), **f64)
    tv.append(case((x, 0.7), sol.tv_loss(x, 0.7), rand))
    tv.append(case((photos["chelsea"], 2e-2), sol.tv_loss(photos["chelsea"], 2e-2),
                   "scikit-image's chelsea at 32 px, preprocessed (ImageNet normalisation), float32"))
    return {"content_loss": content, "gram_matrix": gram, "style_loss": style, "tv_loss": tv}


# ----------------------------------------------------------------------------------------------
# Shared checks
# ----------------------------------------------------------------------------------------------


def _call(name: str, fn: Callable[..., Any], *args: Any, hint: str = "", **kwargs: Any) -> Any:
    """``call_student``, with any other exception turned into an AssertionError that names it."""
    try:
        return call_student(name, fn, *args, **kwargs)
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(f"{name} raised {type(exc).__name__}: {exc}. {hint}".rstrip()) from exc


def _rtol(dtype: torch.dtype) -> float:
    return FLOAT64_RTOL if dtype == torch.float64 else FLOAT32_RTOL


def _max_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|got - expected| / max|expected|`` in float64 (inf when the shapes differ)."""
    if tuple(got.shape) != tuple(expected.shape):
        return math.inf
    a, b = got.detach().double().cpu(), expected.detach().double().cpu()
    scale = float(b.abs().max()) if b.numel() else 0.0
    return float((a - b).abs().max()) / max(scale, 1e-300) if b.numel() else 0.0


def _compare(name: str, got: Any, expected: torch.Tensor, rtol: float,
             wrong_answers: dict[str, torch.Tensor] | None = None, hint: str = "") -> None:
    """Check ``got`` against ``expected`` (norm-wise); name the wrong answer it matches, if any."""
    check_tensor(name, got, shape=tuple(expected.shape), device=expected.device, hint=hint)
    if got.dtype != expected.dtype:
        raise AssertionError(f"{name} returned dtype {got.dtype} for {expected.dtype} inputs; keep the "
                             f"inputs' dtype (do not call .float() or .double()).")
    if _max_error(got, expected) <= rtol:
        return
    for wrong_hint, value in (wrong_answers or {}).items():
        if _max_error(got, value) <= max(rtol, 1e-4):
            hint = wrong_hint
            break
    scale = float(expected.detach().abs().max())
    check_close(name, got, expected, rtol=0.0, atol=rtol * scale, hint=hint)
    raise AssertionError(f"{name}: result differs from the reference by more than {rtol:g} of its largest "
                         f"value. {hint}".rstrip())


def _check_stored(name: str, fn: Callable[..., Any], hint: str = "") -> None:
    """Run ``fn`` on the stored reference cases of ``name``."""
    for case in load_reference(ASSIGNMENT)["cases"][name]:
        inputs = case["inputs"]
        args = inputs.get("args", ())
        got = _call(name, fn, *args, hint=hint, **inputs.get("kwargs", {}))
        dtypes = [a.dtype for a in args if isinstance(a, torch.Tensor)] + \
                 [t.dtype for a in args if isinstance(a, list) for t in a if isinstance(t, torch.Tensor)]
        _compare(name, got, case["output"], _rtol(dtypes[0]), hint=hint)


def python_loops(fn: Callable[..., Any]) -> list[str]:
    """The Python loops (``for``, ``while``, comprehensions) in ``fn``'s own code.

    Reads the function's source (``inspect.getsource`` works for functions defined in notebook
    cells) and walks its AST; when there is no source, as for a function compiled from a string,
    it reads the bytecode instead (``FOR_ITER`` or a backward jump).
    """
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return _bytecode_loops(fn.__code__)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.For, ast.AsyncFor)):
            found.append(f"a `for` loop (line {node.lineno})")
        elif isinstance(node, ast.While):
            found.append(f"a `while` loop (line {node.lineno})")
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            found.append(f"a comprehension (line {node.lineno})")
    return found


def _bytecode_loops(code: types.CodeType) -> list[str]:
    found = []
    for instr in dis.get_instructions(code):
        is_jump = instr.opcode in dis.hasjrel or instr.opcode in dis.hasjabs
        if instr.opname == "FOR_ITER" or (is_jump and isinstance(instr.argval, int) and instr.argval < instr.offset):
            found.append(f"a loop in {code.co_name}")
            break
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found.extend(_bytecode_loops(const))
    return found


def _check_no_loops(name: str, fn: Callable[..., Any], how: str) -> None:
    loops = python_loops(fn)
    if loops:
        raise AssertionError(f"{name} uses {', '.join(loops)}; write it without Python loops: {how}")


def _weight(g: torch.Generator) -> float:
    """A loss weight at least a factor 2 away from 1 (so that a forgotten weight shows)."""
    magnitude = 10 ** float(torch.empty(()).uniform_(0.3, 1.5, generator=g))
    return magnitude if bool(torch.rand((), generator=g) < 0.5) else 1.0 / magnitude


def _randint(g: torch.Generator, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (1,), generator=g))


# ----------------------------------------------------------------------------------------------
# The four losses
# ----------------------------------------------------------------------------------------------


def content_loss(student_content_loss: Callable[..., torch.Tensor]) -> None:
    """Hidden test of ``content_loss``: stored cases and fresh float32/float64 feature maps."""
    ref = load_solutions(ASSIGNMENT).content_loss
    name = "content_loss"
    g = fresh_generator()
    for dtype in (torch.float64, torch.float32):
        shape = (_randint(g, 1, 2), _randint(g, 2, 8), _randint(g, 2, 9), _randint(g, 2, 9))
        current = torch.randn(shape, generator=g, dtype=dtype)
        original = torch.randn(shape, generator=g, dtype=dtype)
        w = _weight(g)
        got = _call(name, student_content_loss, w, current, original)
        check_tensor(name, got, shape=(), hint="Return a 0-dim tensor (torch.sum(...)), not a Python float "
                                              "or a per-element tensor.")
        d = (current - original).double()
        wrong = {
            "You averaged the squared differences (a mean); the content loss sums them.":
                w * d.pow(2).mean(),
            "You forgot to multiply by content_weight.": d.pow(2).sum(),
            "Square the differences: this looks like w * ||current - original|| (a norm, not its square).":
                w * d.pow(2).sum().sqrt(),
            "Square the differences instead of taking their absolute values.": w * d.abs().sum(),
        }
        _compare(name, got, ref(w, current, original), _rtol(dtype), {k: v.to(dtype) for k, v in wrong.items()})
    _check_stored(name, student_content_loss, hint="Return content_weight * sum((current - original) ** 2).")


def gram_matrix(student_gram_matrix: Callable[..., torch.Tensor]) -> None:
    """Hidden test of ``gram_matrix``: no loops, stored cases, fresh batches with and without normalisation."""
    ref = load_solutions(ASSIGNMENT).gram_matrix
    name = "gram_matrix"
    _check_no_loops(name, student_gram_matrix, "reshape to (N, C, H * W) and use torch.bmm (or @).")
    g = fresh_generator()
    for dtype in (torch.float64, torch.float32):
        for normalize in (True, False):
            N, C = _randint(g, 2, 4), _randint(g, 2, 8)
            H, W = _randint(g, 2, 9), _randint(g, 2, 9)
            x = torch.randn(N, C, H, W, generator=g, dtype=dtype) * 2.0
            got = _call(name, student_gram_matrix, x, normalize=normalize)
            check_tensor(name, got, shape=(N, C, C), device=x.device,
                         hint=f"For features (N, C, H, W) = {(N, C, H, W)} return one C x C Gram matrix per "
                              "image of the batch, shape (N, C, C).")
            raw = torch.einsum("nchw,ndhw->ncd", x.double(), x.double())
            whole_batch = torch.einsum("nchw,ndhw->cd", x.double(), x.double()).expand(N, C, C)
            wrong = {
                "Divide by H * W * C when normalize=True (it looks divided by H * W only).": raw / (H * W),
                "Divide by H * W * C when normalize=True (it looks divided by C only).": raw / C,
                "Divide by H * W * C, not by N * H * W * C.": raw / (N * H * W * C),
                "Divide by H * W * C when normalize=True (it looks unnormalised).": raw,
                "Do not normalise when normalize=False.": raw / (H * W * C),
                "Compute one Gram matrix per image: this looks like one Gram matrix for the whole batch "
                "(reshape to (N, C, H * W), not (C, N * H * W)).": whole_batch / (N * H * W * C),
                "Compute one Gram matrix per image, not one for the whole batch (reshape to (N, C, H * W)).":
                    whole_batch / (H * W * C) if normalize else whole_batch,
            }
            if not normalize:
                wrong = {k: v for k, v in wrong.items() if "when normalize=True" not in k}
            else:
                wrong.pop("Do not normalise when normalize=False.")
            _compare(name, got, ref(x, normalize=normalize), _rtol(dtype), {k: v.to(dtype) for k, v in wrong.items()})
    _check_stored(name, student_gram_matrix, hint="G[n] = F_n F_n^T, divided by H * W * C when normalize=True.")


def style_loss(student_style_loss: Callable[..., torch.Tensor]) -> None:
    """Hidden test of ``style_loss``: stored cases and fresh layer lists with shuffled layer indices."""
    sol = load_solutions(ASSIGNMENT)
    name = "style_loss"
    hint = "Pair feats[style_layers[i]] with style_targets[i] and style_weights[i]."
    g = fresh_generator()
    for dtype in (torch.float64, torch.float32):
        num_layers = _randint(g, 5, 7)
        shapes = [(1, _randint(g, 2, 6), _randint(g, 2, 8), _randint(g, 2, 8)) for _ in range(num_layers)]
        feats = [torch.randn(s, generator=g, dtype=dtype) for s in shapes]
        layers = sorted(int(i) for i in (torch.randperm(num_layers - 1, generator=g)[:3] + 1))
        targets = [sol.gram_matrix(torch.randn(shapes[i], generator=g, dtype=dtype) * 1.5) for i in layers]
        weights = [_weight(g) for _ in layers]
        got = _call(name, student_style_loss, list(feats), list(layers), list(targets), list(weights), hint=hint)
        check_tensor(name, got, shape=(), hint="Return a 0-dim tensor (a sum of torch.sum(...) terms).")
        f64 = [f.double() for f in feats]
        t64 = [t.double() for t in targets]
        terms = [(sol.gram_matrix(f64[layer]) - t) for layer, t in zip(layers, t64)]
        raw = [(torch.einsum("nchw,ndhw->ncd", f64[layer], f64[layer]) - t) for layer, t in zip(layers, t64)]
        wrong = {
            "You forgot the style weights.": sum(d.pow(2).sum() for d in terms),
            "You averaged the squared Gram differences (a mean); sum them.":
                sum(w * d.pow(2).mean() for w, d in zip(weights, terms)),
            "Square the differences: this looks like a Frobenius norm, not its square.":
                sum(w * d.pow(2).sum().sqrt() for w, d in zip(weights, terms)),
            "Use the normalised Gram matrix (gram_matrix(...) with normalize=True), like the targets.":
                sum(w * d.pow(2).sum() for w, d in zip(weights, raw)),
            "Add up every style layer; this is only the last one (did you overwrite the loss in the loop?).":
                weights[-1] * terms[-1].pow(2).sum(),
            "Add up every style layer; this is only the first one (a return inside the loop?).":
                weights[0] * terms[0].pow(2).sum(),
        }
        _compare(name, got, sol.style_loss(feats, layers, targets, weights), _rtol(dtype),
                 {k: torch.as_tensor(v).to(dtype) for k, v in wrong.items()}, hint=hint)
    _check_stored(name, student_style_loss, hint=hint)


def tv_loss(student_tv_loss: Callable[..., torch.Tensor]) -> None:
    """Hidden test of ``tv_loss``: no loops, stored cases, fresh non-square batches."""
    ref = load_solutions(ASSIGNMENT).tv_loss
    name = "tv_loss"
    _check_no_loops(name, student_tv_loss, "subtract shifted slices, img[:, :, 1:, :] - img[:, :, :-1, :] etc.")
    g = fresh_generator()
    for dtype in (torch.float64, torch.float32):
        H = _randint(g, 3, 12)
        W = H + _randint(g, 1, 5)
        x = torch.randn(_randint(g, 1, 2), 3, H, W, generator=g, dtype=dtype)
        if bool(torch.rand((), generator=g) < 0.5):
            x = x.transpose(2, 3)  # non-square in the other orientation (and not contiguous)
        w = _weight(g)
        got = _call(name, student_tv_loss, x, w)
        check_tensor(name, got, shape=(), hint="Return a 0-dim tensor.")
        x64 = x.double()
        dh = (x64[:, :, 1:, :] - x64[:, :, :-1, :]).pow(2).sum()
        dw = (x64[:, :, :, 1:] - x64[:, :, :, :-1]).pow(2).sum()
        wrong = {
            "Add the horizontal differences too (this is the vertical term only).": w * dh,
            "Add the vertical differences too (this is the horizontal term only).": w * dw,
            "You forgot to multiply by tv_weight.": dh + dw,
            "Sum the squared differences; this looks like a mean.":
                w * ((x64[:, :, 1:, :] - x64[:, :, :-1, :]).pow(2).mean()
                     + (x64[:, :, :, 1:] - x64[:, :, :, :-1]).pow(2).mean()),
            "Square the differences instead of taking their absolute values.":
                w * ((x64[:, :, 1:, :] - x64[:, :, :-1, :]).abs().sum()
                     + (x64[:, :, :, 1:] - x64[:, :, :, :-1]).abs().sum()),
            "Do not wrap around the border (torch.roll): only neighbours inside the image count.":
                w * ((x64 - x64.roll(1, 2)).pow(2).sum() + (x64 - x64.roll(1, 3)).pow(2).sum()),
        }
        _compare(name, got, ref(x, w), _rtol(dtype), {k: v.to(dtype) for k, v in wrong.items()},
                 hint="Sum the squared differences along both the height (dim 2) and the width (dim 3).")
    _check_stored(name, student_tv_loss)


# ----------------------------------------------------------------------------------------------
# The optimisation loop
# ----------------------------------------------------------------------------------------------

LOOP_HINT = ("Follow the recipe in the docstring: targets without gradients; img = a clone of the content "
             "image (or torch.rand noise) with requires_grad; Adam(lr=initial_lr); at t == int(decay_lr_at "
             "* num_iterations) a NEW Adam(lr=decayed_lr); zero_grad, loss = content + style + tv, "
             "backward, losses.append(loss.item()), step; then clamp img to [-1.5, 1.5] after the step. The "
             "grader runs it in float64 (model.double()): create new tensors with dtype=content_img.dtype.")


def _random_photo(g: torch.Generator, height: int, width: int) -> np.ndarray:
    """A uint8 (H, W, 3) image: coarse random colours, upsampled, plus noise."""
    coarse = torch.rand(1, 3, max(2, height // 8), max(2, width // 8), generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    image = (smooth + 0.15 * torch.randn(1, 3, height, width, generator=g)).clamp(0, 1)
    return (image[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def _run_loop(fn: Callable[..., Any], seed: int, **kwargs: Any) -> Any:
    """Call a style_transfer function with torch's global generator seeded, restoring it after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _call("style_transfer", fn, hint=LOOP_HINT, **kwargs)


def _check_loop_output(out: Any, num_iterations: int, shape: tuple[int, ...],
                       dtype: torch.dtype) -> tuple[torch.Tensor, list[float]]:
    name = "style_transfer"
    if not (isinstance(out, tuple) and len(out) == 2):
        raise AssertionError(f"{name} returned {type(out).__name__}; expected a tuple (img, losses).")
    img, losses = out
    check_tensor(name, img, shape=shape, dtype=dtype, device="cpu",
                 hint="Return the optimised image itself, shape (1, 3, H, W), in the model's dtype and on its "
                      "device.")
    if img.requires_grad:
        raise AssertionError(f"{name} returned an image that requires grad; return img.detach().")
    if not isinstance(losses, list) or len(losses) != num_iterations:
        got = len(losses) if isinstance(losses, list) else type(losses).__name__
        raise AssertionError(f"{name} returned losses = {got}; expected a list of num_iterations = "
                             f"{num_iterations} floats, one per iteration.")
    if not all(isinstance(v, float) and math.isfinite(v) for v in losses):
        raise AssertionError(f"{name}: every entry of losses must be a finite Python float (loss.item()).")
    return img, losses


def _compare_runs(label: str, got: tuple[torch.Tensor, list[float]], expected: tuple[torch.Tensor, list[float]],
                  first_hint: str) -> None:
    name = f"style_transfer ({label})"
    (img, losses), (ref_img, ref_losses) = got, expected
    check_close(name + ", losses[0]", losses[0], ref_losses[0], rtol=LOOP_LOSS_RTOL, hint=first_hint)
    worst = max(range(len(losses)), key=lambda t: abs(losses[t] - ref_losses[t]) / abs(ref_losses[t]))
    if abs(losses[worst] - ref_losses[worst]) > LOOP_LOSS_RTOL * abs(ref_losses[worst]):
        raise AssertionError(f"{name}: the loss at iteration {worst} is {losses[worst]:.10g}; the reference loop "
                             f"gives {ref_losses[worst]:.10g} (relative tolerance {LOOP_LOSS_RTOL:g}). {LOOP_HINT}")
    if float(img.min()) < -1.5 or float(img.max()) > 1.5:
        raise AssertionError(f"{name}: the result has values in [{float(img.min()):.3g}, {float(img.max()):.3g}]; "
                             "clamp img to [-1.5, 1.5] after every optimizer step.")
    check_close(name + ", image", img, ref_img, rtol=0.0, atol=LOOP_IMAGE_ATOL,
                hint="The losses match but the returned image does not: return img.detach() after the last "
                     "step and clamp.")


#: Functions the student's loop calls by name; the loop's test swaps in the references for them.
LOOP_DEPENDENCIES = ("content_loss", "gram_matrix", "style_loss", "tv_loss", "extract_features")


@contextlib.contextmanager
def _reference_dependencies(student_fn: Callable[..., Any]) -> Iterator[None]:
    """Run ``student_fn`` with the reference loss functions in its globals, then restore them.

    The loop is graded on its own: a mistake in ``content_loss`` costs that function's points
    only, not the loop's as well.
    """
    namespace = getattr(student_fn, "__globals__", None)
    if namespace is None:
        yield
        return
    sol = load_solutions(ASSIGNMENT)
    missing = object()
    saved = {name: namespace.get(name, missing) for name in LOOP_DEPENDENCIES}
    try:
        for name in LOOP_DEPENDENCIES:
            namespace[name] = getattr(sol, name)
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def style_transfer(student_style_transfer: Callable[..., Any]) -> None:
    """Hidden test of ``style_transfer``, graded with the reference losses in place of the student's."""
    with _reference_dependencies(student_style_transfer):
        _test_style_transfer_loop(student_style_transfer)


def _test_style_transfer_loop(student_style_transfer: Callable[..., Any]) -> None:
    """Hidden test of ``style_transfer``: tiny runs (32 px, 20 steps) against the reference loop.

    On random-init SqueezeNet features in float64 and images drawn at grading time, a run from
    the content image with CS231n's schedule (lr 3.0, a new Adam with lr 0.1 at 90%) and one from
    noise with a learning-rate schedule drawn at random, under the same seed, must follow the
    reference run: every loss to ``LOOP_LOSS_RTOL`` and
    the image to ``LOOP_IMAGE_ATOL``. A float32 run with a small learning rate must lower the loss.
    """
    ref = load_solutions(ASSIGNMENT).style_transfer
    g = fresh_generator()

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
        out = _run_loop(student_style_transfer, seed, **params, **extra, num_iterations=20, model=model)
        got = _check_loop_output(out, 20, shape, torch.float64)
        expected = _run_loop(ref, seed, **params, **extra, num_iterations=20, model=model)
        _compare_runs(label + ", float64", got, expected, first_hint)
    out = _run_loop(student_style_transfer, seed, **params, num_iterations=10, initial_lr=0.05, decayed_lr=0.01,
                    model=squeezenet_features(REFERENCE_SEED))
    _, losses = _check_loop_output(out, 10, shape, torch.float32)
    if not losses[-1] < losses[0]:
        raise AssertionError(f"style_transfer: with initial_lr=0.05 the loss went from {losses[0]:.6g} to "
                             f"{losses[-1]:.6g} in 10 steps; it should go down. Use the initial_lr and decayed_lr "
                             "arguments, and backpropagate the total loss.")
