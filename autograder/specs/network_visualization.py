"""Hidden tests of ``network_visualization``: saliency, guided backprop, Grad-CAM, occlusion, fooling
images and the class-visualization step.

Every graded function takes a model, so each spec is a custom ``test``: a list of :class:`_Case` run by
:func:`_judge`. The models are the grader's own (a random-init SqueezeNet 1.1 under a fixed seed,
:func:`squeezenet`, and small CNNs, :func:`tiny_cnn`, whose weights the stored cases keep as state_dicts,
:func:`make_references`), never the notebook's global model. Results are compared in float64 to each spec's
tolerance, plus one float32 call for the dtype; the model must be left as it was, from the kernel's report
(:func:`~autograder.judging.toolkit.check_model`), also when the function raises (:func:`failing_model`).

**In-place ReLUs.** Students may meet models built with ``nn.ReLU(inplace=True)`` (torchvision's
SqueezeNet is one). The correct behaviour, which the reference implements and Captum agrees with, is
the same map as on the model with non-inplace ReLUs, and the ``inplace`` flags restored afterwards.
A full backward hook on an in-place ReLU raises in PyTorch, and a forward hook that stores a
convolution's output sees it overwritten by the in-place ReLU that follows; both are caught here.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autograder.judging.references import load_reference
from autograder.judging.solutions import edited_answers, value_diagnoses
from autograder.judging.spec import STATE, GradedFunction, with_policies
from autograder.judging.toolkit import (
    Failure,
    call_expecting_error,
    check_detached,
    check_model,
    compare,
    model_call,
    scaled_atol,
    structure_problem,
    thunks,
)
from cs_lib.grading.models import CountingModel, FailingHead

ASSIGNMENT = "network_visualization"
#: A graded function's wrong answers, one ``(label, hint, (old, new), ...)`` row each: edits of its reference body.
_mistakes = functools.partial(edited_answers, ASSIGNMENT)
REFERENCE_SEED = 2311
# Stored outputs are float64 on tiny CNNs: they agree to round-off across machines.
REFERENCE_RTOL, REFERENCE_ATOL = 1e-7, 1e-10

#: Tolerances against the reference in float64 of the functions that must compute in float64 (the specs'
#: ``float64_required``: gradients through the whole network). Any correct float64 implementation agrees to
#: ~1e-12; rtol 1e-6 and an absolute slack of 1e-7 of the largest value also accept float32 accumulators, while
#: every wrong answer listed in the diagnoses differs by more than 1e-3 of the largest value.
RTOL64, ATOL64 = 1e-6, 1e-7
#: Tolerances in float32, where gradients computed in a different order differ by ~1e-6 relative and
#: occlusion drops are differences of nearby probabilities; also the float64 tolerances of the functions that
#: may compute in float32 (a float32 computation on the float64 cases is off by up to 1.3e-5 of the largest
#: value beyond rtol 1e-3 over 60 draws; the wrong answers by more than 0.3 of it).
RTOL32, ATOL32 = 1e-3, 1e-4

Student = Any  # autograder.judging.judge.RemoteFunction: calls the student's function in the kernel


# --------------------------------------------------------------------------------------------- models


def tiny_cnn(seed: int, inplace: bool = False, dtype: torch.dtype = torch.float64, num_classes: int = 10,
             state_dict: dict[str, torch.Tensor] | None = None, frozen: bool = True) -> nn.Sequential:
    """A small CNN for 3-channel images of at least 8x8 pixels: three convolutions with ReLUs.

    ``model[2]`` is a convolution followed by the ReLU ``model[3]`` (the in-place trap for Grad-CAM);
    ``model[5]`` is the last ReLU. Weights come from ``state_dict`` or, if ``None``, a seeded init.
    Input float (N, 3, H, W) -> scores (N, num_classes), in ``dtype``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=inplace),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(inplace=inplace),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=inplace),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, num_classes),
        )
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return _prepare(model, dtype, frozen)


@functools.lru_cache(maxsize=1)
def _pristine_squeezenet() -> nn.Module:
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.squeezenet1_1(weights=None).eval()


def squeezenet(inplace: bool = False, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A fresh random-init SqueezeNet 1.1 (seed 0), frozen, in eval mode: (N, 3, H, W) -> (N, 1000).

    ``inplace=True`` keeps torchvision's in-place ReLUs, as a student building the model might.
    """
    model = copy.deepcopy(_pristine_squeezenet())
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = inplace
    return _prepare(model, dtype, frozen=True)


def failing_model(seed: int, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A tiny CNN with in-place ReLUs whose forward pass raises after the ReLUs (hooks-on-error test)."""
    model = tiny_cnn(seed, inplace=True, dtype=dtype)
    return nn.Sequential(*list(model)[:6], FailingHead()).eval()


def stall_model(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A linear model on (1, 3, 8, 8) images where class 2's weights are twice class 1's.

    Plain ascent on S_1 raises S_2 twice as fast, so class 1 is never predicted from X = 0.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
        u, w = F.normalize(torch.randn(2, 3 * 8 * 8), dim=1)
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([u, w, 2 * w]))
        model[1].bias.copy_(torch.tensor([1.0, 0.0, 0.5]))
    return _prepare(model, dtype, frozen=True)


def top_classes(model: nn.Module, X: torch.Tensor, g: torch.Generator, k: int = 5) -> torch.Tensor:
    """One of the ``k`` highest-scoring classes of each image (int64 (N,)), drawn with ``g``.

    A random-init SqueezeNet ends with a ReLU, so most classes score exactly 0 with a zero gradient;
    the top classes score above 0 and have informative gradients.
    """
    with torch.no_grad():
        top = model(X).topk(k, dim=1).indices
    pick = torch.randint(0, k, (len(X),), generator=g)
    return top[torch.arange(len(X)), pick]


def _prepare(model: nn.Module, dtype: torch.dtype, frozen: bool) -> nn.Module:
    model = model.to(dtype).eval()
    for p in model.parameters():
        p.requires_grad_(not frozen)
    return model


def _seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2**31, (1,), generator=g))


# ------------------------------------------------------------------------------------ wrong answers
# One table per graded function: ``(label, hint, (old, new), ...)`` rows, edits of its reference body
# (``_mistakes``); a label starting with STATE is a mistake a property check catches.

_SCORE = "scores.gather(1, y.view(-1, 1).to(scores.device)).sum()"
_LOSS_HINT = ("the gradient of the {} cross-entropy loss. Use the unnormalized score of class y[i] (model(X) "
              "picked with gather), not the loss.")
_SUM_LOSS = 'F.cross_entropy(scores, y, reduction="sum")'
_MAX_ABS = "grad.abs().amax(dim=1)"
_NO_FINALLY = (STATE + "no finally", "left hooks on the model after it raised", ("try:\n", "if True:\n"),
               ("finally:\n", "if True:\n"))


def _row(hint: str, *edits: tuple[str, str]) -> tuple[Any, ...]:
    """A row whose label is the start of its hint."""
    return (hint[:40], hint, *edits)


_SALIENCY_WRONG = _mistakes(
    "compute_saliency_maps",
    _row("it matches " + _LOSS_HINT.format("summed"), (_SCORE, _SUM_LOSS)),
    _row("it matches " + _LOSS_HINT.format("mean"), (_SCORE, "F.cross_entropy(scores, y)")),
    _row("it matches the gradient of the softmax probability; use the score before the softmax.",
         (_SCORE, "F.softmax(scores, dim=1).gather(1, y.view(-1, 1)).sum()")),
    _row("it matches the SUM of |gradient| over the channels; take the max over channels (dim=1).",
         (_MAX_ABS, "grad.abs().sum(dim=1)")),
    _row("it matches the MEAN of |gradient| over the channels; take the max over channels (dim=1).",
         (_MAX_ABS, "grad.abs().mean(dim=1)")),
    _row("it matches the max of the gradient WITHOUT the absolute value; take .abs() first.",
         (_MAX_ABS, "grad.amax(dim=1)")),
    _row("it matches |max over channels of the gradient|; take the absolute value before the max.",
         (_MAX_ABS, "grad.amax(dim=1).abs()")),
    _row("it matches the L2 norm over channels; take the max of |gradient| over channels.",
         (_MAX_ABS, "grad.norm(dim=1)")),
    (STATE + "freezes the model", "changed requires_grad",
     ("X = X.detach()", "model.requires_grad_(False)\nX = X.detach()")),
)

_GUIDED_WRONG = _mistakes(
    "compute_guided_backprop",
    ("plain gradient", "it matches the plain gradient. Register a full backward hook on every nn.ReLU module that "
                       "returns (grad_input[0].clamp(min=0),).",
     f"X = X.detach().clone().requires_grad_(True)\nscores = model(X)\n"
     f"(grad,) = torch.autograd.grad({_SCORE}, X)\nreturn grad\n"),
    ("deconvnet rule", "it matches the deconvnet rule (clamping grad_output): that drops the forward mask x > 0. "
                       "Clamp grad_input[0], which already includes it.",
     ("(grad_input[0].clamp(min=0),)", "(grad_output[0].clamp(min=0),)")),
    ("summed loss", "it matches guided backprop of the cross-entropy loss; backpropagate the score of class y[i].",
     (_SCORE, _SUM_LOSS)),
    ("mean loss", "it matches guided backprop of the (mean) cross-entropy loss; backpropagate the score of class "
                  "y[i].", (_SCORE, "F.cross_entropy(scores, y)")),
    ("absolute value", "it matches the absolute value of guided backprop; return the signed gradient.",
     ("return grad", "return grad.abs()")),
    (STATE + "in-place ReLUs left on", "in-place ReLUs", ("        m.inplace = False\n", "")),
    _NO_FINALLY,
    (STATE + "flags not restored", "inplace flag", ("        m.inplace = flag\n", "        pass\n")),
)

_CAM_RELU = "cam = F.relu((alpha * A).sum(dim=1, keepdim=True))"
_CAM_UP = 'cam = F.interpolate(cam, size=X.shape[-2:], mode="bilinear", align_corners=False)[:, 0]'
_CAM_NORMALIZED = ("return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), "
                   "torch.zeros_like(cam))")

_GRADCAM_WRONG = _mistakes(
    "compute_gradcam",
    ("no ReLU", "it matches Grad-CAM WITHOUT the ReLU. Apply F.relu to the weighted sum of the activations (only "
                "regions that increase the score count).", (_CAM_RELU, "cam = (alpha * A).sum(dim=1, keepdim=True)")),
    ("min-max", "it matches min-max normalization; divide each map by its maximum instead (do not subtract the "
                "minimum).",
     (_CAM_NORMALIZED, "low = cam.amin(dim=(1, 2), keepdim=True)\nspan = peak - low\n"
                       "return torch.where(span > 0, (cam - low) / span.clamp_min(1e-300), torch.zeros_like(cam))")),
    ("not normalized", "it is not normalized; divide each map by its own maximum.", (_CAM_NORMALIZED, "return cam")),
    ("batch maximum", "it is normalized by the largest value of the whole batch; divide each map by its own maximum.",
     (_CAM_NORMALIZED, "return cam / cam.max().clamp_min(1e-300)")),
    ("nearest", "it matches nearest-neighbour upsampling; use mode='bilinear', align_corners=False.",
     (_CAM_UP, 'cam = F.interpolate(cam, size=X.shape[-2:], mode="nearest")[:, 0]')),
    ("align_corners", "it matches bilinear upsampling with align_corners=True; use align_corners=False.",
     ("align_corners=False", "align_corners=True")),
    ("loss", "it matches the gradient of the loss; use the score of class y[i].", (_SCORE, _SUM_LOSS)),
    ("element-wise", "it weights activations by the gradient element-wise; average the gradient over space first "
                     "to get one weight per channel.",
     ("alpha = grads.mean(dim=(2, 3), keepdim=True)", "alpha = grads")),
    (STATE + "0/0", "NaN or inf", (_CAM_NORMALIZED, "return cam / peak")),
    (STATE + "in-place ReLUs left on", "in-place ReLUs", ("    for m in relus:\n        m.inplace = False\n", "")),
    _NO_FINALLY,
)

_CLEAN, _OCCLUDED = "p_clean = F.softmax(model(X), dim=1)", "p = F.softmax(model(occluded), dim=1)"

_OCCLUSION_WRONG = _mistakes(
    "compute_occlusion_map",
    ("raw scores", "it matches drops of the raw scores; use softmax probabilities.",
     (_CLEAN, "p_clean = model(X)"), (_OCCLUDED, "p = model(occluded)")),
    ("log-probabilities", "it matches drops of log-probabilities; use softmax probabilities.",
     (_CLEAN, "p_clean = F.log_softmax(model(X), dim=1)"), (_OCCLUDED, "p = F.log_softmax(model(occluded), dim=1)")),
    ("sign", "it matches P(occluded) - P(clean); the drop is P(clean) - P(occluded).",
     ("= p_clean[image] - p", "= p - p_clean[image]")),
    ("sum", "it matches the SUM of the drops; average over the windows covering each pixel.",
     ("return total / count.clamp_min(1)", "return total")),
    ("full windows only", "it uses only windows that fit inside the image. Keep sliding until a window reaches the "
                          "last row/column; that last window is cut off at the border (Captum's positions).",
     ("math.ceil((size - patch) / stride) + 1", "(size - patch) // stride + 1")),
    ("baseline ignored", "it matches occluding with 0; set the occluded pixels to `baseline`.",
     ("torch.tensor(baseline,", "torch.tensor(0.0,")),
    (STATE + "one window per pass", "one forward pass per window",
     ("batch_size = X.device, 16", "batch_size = X.device, 1")),
)

_ASCENT_STEP = "learning_rate * g / g.norm()"
_FOOLED = "if int(scores.argmax(dim=1)[0]) == target_y:"
_DETACHED = "return X_fooling.detach()"

_FOOLING_WRONG = _mistakes(
    "make_fooling_image",
    ("unnormalized", "it matches steps of lr * g without normalization; divide the gradient by its L2 norm.",
     (_ASCENT_STEP, "learning_rate * g")),
    ("FGSM", "it matches steps of lr * sign(g) (FGSM); use lr * g / ||g||_2.",
     (_ASCENT_STEP, "learning_rate * g.sign()")),
    ("loss descent", "it matches descent on the cross-entropy loss of the target; ascend the target's score.",
     ("torch.autograd.grad(scores[0, target_y], X_fooling)",
      "torch.autograd.grad(-F.cross_entropy(scores, torch.tensor([target_y], device=scores.device)), X_fooling)")),
    ("no early stop", "it matches running all max_iter steps; stop as soon as the model predicts target_y.",
     (_FOOLED, "if step == max_iter and int(scores.argmax(dim=1)[0]) == target_y:")),
    (STATE + "graph attached", "attached to the autograd graph", (_DETACHED, "return X_fooling")),
    (STATE + "never raises", "must raise a RuntimeError",
     ("raise RuntimeError(", "return X_fooling.detach()\nraise RuntimeError(")),
    (STATE + "in place", "modified its argument", (_DETACHED, "X.copy_(X_fooling.detach())\n        return X.clone()")),
)

_PENALTY = "l2_reg * (x * x).sum()"
_STEP = "img += learning_rate * g / g.norm()"

_CLASS_STEP_WRONG = _mistakes(
    "class_visualization_update_step",
    ("descent", "it matches a step of gradient DESCENT; ascend: img += learning_rate * g / ||g||.",
     (_STEP, "img -= learning_rate * g / g.norm()")),
    ("unnormalized", "it matches an unnormalized step; divide the gradient by its L2 norm.",
     (_STEP, "img += learning_rate * g")),
    ("unsquared penalty", "it matches a penalty l2_reg * ||img|| (not squared); use l2_reg * ||img||^2.",
     (_PENALTY, "l2_reg * x.norm()")),
    ("no penalty", "it matches the step without the L2 penalty; subtract l2_reg * ||img||^2 from the score.",
     (" - " + _PENALTY, "")),
    ("added penalty", "it matches ADDING the L2 penalty; the objective is S_y - l2_reg * ||img||^2.",
     (" - " + _PENALTY, " + " + _PENALTY)),
    (STATE + "returns a new image", "update it in place",
     ("with torch.no_grad():\n    " + _STEP, "return img + learning_rate * g / g.norm()")),
)


# ------------------------------------------------------------------------------------ judging calls


def _inplace_hint(inplace: bool) -> str:
    if not inplace:
        return ""
    return ("The result must be the same with in-place ReLUs (inplace=True), where full backward hooks fail and "
            "stored activations get overwritten: set inplace=False on every nn.ReLU before the forward pass and "
            "restore the old flags in a finally block.")


@dataclass
class _Case:
    """One call of a graded function on a model, compared with the reference.

    ``args`` are the student's arguments (the model at the test's ``at``); ``call(f)`` runs a notebook function
    (the reference, a wrong answer) on copies of them (default: :func:`_on_copies` of ``args``); ``expected`` is
    the reference's output (default: ``call(ref)``). ``advice`` ends a message that names no mistake (``hint``,
    or a function of the arguments, when the function raised); ``check(got, args, context)`` checks properties first.
    """

    args: tuple
    context: str
    expected: Any = None
    call: Callable[[Callable[..., Any]], Any] | None = None
    diagnose: bool = True
    float32: bool = False
    advice: str = ""
    shape_advice: str | None = None
    hint: str | Callable[[tuple], str] | None = None
    check: Callable[[Any, tuple, str], None] | None = None


def _on_copies(args: tuple, in_place: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """``call(f)``: ``f`` on deep copies of ``args`` (a layer argument stays the copied model's submodule); with
    ``in_place``, the first argument after ``f`` updated it."""
    def call(f: Callable[..., Any]) -> Any:
        work = copy.deepcopy(args)
        out = f(*work)
        return work[0] if in_place else out
    return call


def _judge(spec: GradedFunction, student: Student, ref: Callable[..., Any], cases: list[_Case], at: int = 2,
           in_place: bool = False) -> None:
    """Each case: the student's call (model checked), ``check``, then the comparison (atol relative to the largest
    expected value) and the diagnosis by the spec's value mistakes. ``in_place``: the function updates its first
    argument and returns None (the ``"in_place"`` adapter)."""
    name = spec.name
    for case in cases:
        hint = case.hint if case.hint is not None else case.advice
        if callable(hint):
            hint = functools.partial(hint, case.args)
        got = model_call(name, student, case.args, at, context=case.context, hint=hint)
        if in_place:
            got = _updated(name, got, case.args[0], case.context)
        if case.check is not None:
            case.check(got, case.args, case.context)
        call = case.call or _on_copies(case.args, in_place)
        expected = call(ref) if case.expected is None else case.expected
        rtol, atol = (RTOL32, ATOL32) if case.float32 else (spec.rtol, spec.atol)
        wrong = thunks(value_diagnoses(ASSIGNMENT, spec), call) if case.diagnose else None
        compare(name, got, expected, rtol, scaled_atol(expected, atol), case.context, wrong, advice=case.advice,
                shape_advice=case.shape_advice, diagnosis="Diagnosis: {}")


#: Per function: its arguments from a stored case's model, positional and keyword inputs.
_ARRANGE: dict[str, Callable[[nn.Module, tuple, dict[str, Any]], tuple]] = {
    "compute_saliency_maps": lambda m, args, kw: (*args, m),
    "compute_guided_backprop": lambda m, args, kw: (*args, m),
    "compute_gradcam": lambda m, args, kw: (*args, m, m.get_submodule(kw["layer"])),
    "compute_occlusion_map": lambda m, args, kw: (*args, m, kw["patch"], kw["stride"], kw["baseline"]),
    "make_fooling_image": lambda m, args, kw: (*args, m, kw["learning_rate"], kw["max_iter"]),
    "class_visualization_update_step": lambda m, args, kw: (args[0], m, args[1], kw["l2_reg"], kw["learning_rate"]),
}


def _stored(name: str, **fields: Any) -> list[_Case]:
    """The stored cases of ``name`` (:func:`make_references`); ``fields`` go to each :class:`_Case` (``advice`` may
    be a function of the case's output and inplace flag)."""
    cases = []
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        args, kwargs, spec = tuple(case["inputs"]["args"]), case["inputs"].get("kwargs", {}), case["inputs"]["model"]
        settings = "".join(f", {k}={v}" for k, v in kwargs.items())
        context = (f"on stored case {i}: a small CNN{' with in-place ReLUs' if spec['inplace'] else ''}, "
                   f"input {tuple(args[0].shape)}{settings}")
        advice = fields.get("advice", lambda output, inplace: "")
        cases.append(_Case(_ARRANGE[name](_stored_model(spec), args, kwargs), context, case["output"],
                           **{**fields, "advice": advice(case["output"], spec["inplace"])}))
    return cases


def _fresh_images(g: torch.Generator, low: int, high: int) -> tuple[torch.Tensor, torch.Tensor, nn.Module, int]:
    """Two float64 images of a random size in [low, high], a float64 SqueezeNet and its top classes."""
    size = int(torch.randint(low, high + 1, (1,), generator=g))
    X = torch.randn(2, 3, size, size, generator=g, dtype=torch.float64)
    model = squeezenet(dtype=torch.float64)
    return X, top_classes(model, X, g), model, size


def _small_cnn_images(g: torch.Generator, n: int, h: int, w: int, dtype: torch.dtype = torch.float32,
                      frozen: bool = True) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    """``n`` random (3, h, w) images, random classes and a fresh small CNN, in ``dtype``."""
    model = tiny_cnn(_seed(g), dtype=dtype, frozen=frozen)
    X = torch.randn(n, 3, h, w, generator=g, dtype=dtype)
    return X, torch.randint(0, 10, (n,), generator=g), model


def _check_cleanup_after_error(name: str, student: Student, make_args: Callable[[nn.Module], tuple]) -> None:
    """Run the student's function on a model that raises mid-forward; hooks and flags must be restored."""
    model = failing_model(seed=7)
    call_expecting_error(name, student, make_args(model))
    check_model(name, model, student, 2, after_error=True)


# ---------------------------------------------------------------------------------- the four maps

_SQUEEZENET = "random-init SqueezeNet 1.1 on {} float64 images"


def _saliency_test(student: Student, ref: Callable[..., Any], spec: GradedFunction, g: torch.Generator) -> None:
    X, y, model, size = _fresh_images(g, 56, 96)
    X32, y32, model32 = _small_cnn_images(g, 3, 20, 28, frozen=False)   # parameters that require grad: keep them so
    _judge(spec, student, ref, _stored(spec.name) + [
        _Case((X, y, model), "on " + _SQUEEZENET.format((2, 3, size, size)),
              shape_advice="Reduce over the channels (dim=1)."),
        _Case((X32, y32, model32), "on a small CNN whose parameters require grad, float32 images (3, 3, 20, 28)",
              diagnose=False, float32=True)])


def _guided_test(student: Student, ref: Callable[..., Any], spec: GradedFunction, g: torch.Generator) -> None:
    """In-place ReLUs and hooks-on-error included. Grader-side runs use copies of the model: a full backward hook
    marks a module for good against the legacy ``register_backward_hook``, and vice versa."""
    X, y, model, size = _fresh_images(g, 56, 96)
    expected = ref(X, y, copy.deepcopy(model))
    X32, y32, model32 = _small_cnn_images(g, 2, 24, 20)
    _judge(spec, student, ref, _stored(spec.name, advice=lambda out, inplace: _inplace_hint(inplace)) + [
        _Case((X, y, model), "on " + _SQUEEZENET.format((2, 3, size, size)), expected),
        _Case((X, y, squeezenet(inplace=True)), "on SqueezeNet 1.1 with in-place ReLUs (as torchvision builds it)",
              expected, diagnose=False, advice=_inplace_hint(True)),
        _Case((X32, y32, model32), "on a small CNN, float32 images", diagnose=False, float32=True)])
    _check_cleanup_after_error(spec.name, student, lambda m: (X32.double(), y32, m))


def _gradcam_test(student: Student, ref: Callable[..., Any], spec: GradedFunction, g: torch.Generator) -> None:
    """In-place ReLUs, all-zero maps and hooks-on-error included."""
    X, y, model, size = _fresh_images(g, 64, 96)
    layer = f"features.{int(torch.randint(10, 13, (1,), generator=g))}"
    seed = _seed(g)
    X2 = torch.randn(3, 3, 18, 26, generator=g, dtype=torch.float64)
    y2 = torch.randint(0, 10, (3,), generator=g)
    plain, inplace, model32 = tiny_cnn(seed), tiny_cnn(seed, inplace=True), tiny_cnn(seed, dtype=torch.float32)
    zero = "An all-zero map must stay zero (no 0/0). "
    _judge(spec, student, ref, _stored(
        spec.name, advice=lambda out, inplace: ("" if out.any() else zero) + _inplace_hint(inplace)) + [
        _Case((X, y, model, model.get_submodule(layer)), f"on {_SQUEEZENET.format((2, 3, size, size))}, layer {layer}",
              shape_advice="Upsample to (H, W); drop the channel dim."),
        # A convolution followed by an in-place ReLU: a stored activation would be overwritten.
        _Case((X2, y2, inplace, inplace[2]), "on a small CNN with in-place ReLUs, layer = a convolution followed by "
              "ReLU(inplace=True)", call=_on_copies((X2, y2, plain, plain[2])), diagnose=False,
              advice=_inplace_hint(True)),
        _Case((X2.float(), y2, model32, model32[4]), "on a small CNN, float32 images", diagnose=False, float32=True)])
    _check_cleanup_after_error(spec.name, student, lambda m: (X2, y2, m, m[2]))


def _window_count(size: int, patch: int, stride: int) -> int:
    """Window positions along one axis: 0, stride, ..., up to the first start >= size - patch."""
    return -(-(size - patch) // stride) + 1


def _occlusion_test(student: Student, ref: Callable[..., Any], spec: GradedFunction, g: torch.Generator) -> None:
    """Border windows, baselines and batched forward passes (counted in the kernel)."""
    name = spec.name
    size = int(torch.randint(48, 61, (1,), generator=g))
    X = torch.randn(2, 3, size, size + 4, generator=g, dtype=torch.float64)
    baseline = float(torch.empty(1, dtype=torch.float64).uniform_(-1, 1, generator=g))
    model = squeezenet(dtype=torch.float64)
    args = (X, top_classes(model, X, g), model, 16, 8, baseline)
    context = "on " + _SQUEEZENET.format((2, 3, size, size + 4)) + ", patch 16, stride 8"
    _judge(spec, student, ref, _stored(name) + [
        _Case((*args[:2], CountingModel(model), *args[3:]), context, call=_on_copies(args))])
    windows = _window_count(size, 16, 8) * _window_count(size + 4, 16, 8)
    calls = (student.last_modules.get("arg2") or {}).get("forward_calls")
    if calls is None or calls >= windows:
        raise Failure(f"{name} ran the model {calls} times for {windows} windows ({context}): batch the occluded "
                      "images, several windows per forward pass (e.g. chunks of 16 images), instead of one forward "
                      "pass per window.")
    # float32 on a small CNN with patch and stride drawn so that the last window is cut off.
    patch = int(torch.randint(4, 9, (1,), generator=g))
    stride = int(torch.randint(2, patch + 1, (1,), generator=g))
    H = patch + stride * int(torch.randint(2, 5, (1,), generator=g)) + 1
    W = H + int(torch.randint(1, 6, (1,), generator=g))
    X32, y32, model32 = _small_cnn_images(g, 3, H, W)
    _judge(spec, student, ref, [_Case((X32, y32, model32, patch, stride, 0.0), f"on a small CNN, float32 images "
                                      f"(3, 3, {H}, {W}), patch {patch}, stride {stride}", diagnose=False,
                                      float32=True)])


# ---------------------------------------------------------------------------------- fooling images


def _fooling_hint(args: tuple) -> str:
    """What a fooling function that raised is told: the reference gets there, unless plain steps do not."""
    diagnosis = ""
    try:
        _on_copies(args)(value_diagnoses(ASSIGNMENT, SPECS[4])[_UNNORMALIZED_HINT])
    except RuntimeError:
        diagnosis = " With steps of learning_rate * g the reference does not get there either: " + _UNNORMALIZED_HINT
    return ("The reference fools this model within max_iter steps of normalized ascent on the target's score "
            f"(steps learning_rate * g / ||g||_2).{diagnosis}")


def _check_fooled(got: Any, args: tuple, context: str) -> None:
    X, target, model = args[:3]
    problem = structure_problem(got, X)
    if problem:
        raise Failure(f"make_fooling_image {context}: {problem}.")
    with torch.no_grad():
        predicted = int(model(got).argmax(dim=1)[0])
    if predicted != target:
        raise Failure(f"make_fooling_image returned an image the model classifies as {predicted}, not the target "
                      f"{target} ({context}).")


def _fooling_test(student: Student, ref: Callable[..., Any], spec: GradedFunction, g: torch.Generator) -> None:
    name = spec.name
    model, X, target, lr, expected = _foolable_case(ref, g, torch.float64)
    args = (X, target, model, lr, 60)
    context = f"on a small CNN, target {target}, learning_rate {lr:.3f}, max_iter 60"
    with torch.no_grad():
        current = int(model(X).argmax(dim=1)[0])
    _judge(spec, student, ref, [
        *_stored(name, check=_check_fooled, hint=_fooling_hint),
        _Case(args, context, expected, hint=_fooling_hint, check=_check_fooled),
        # Already classified as the target: return (a copy of) X without any step.
        _Case((X, current, model, lr, 60), "when the image is already classified as the target", X, diagnose=False,
              advice="Check the prediction before each step: when X is already classified as target_y, return it.")])
    check_detached(name, student, args, {}, f"return X_fooling.detach() ({context}).")
    model, X, target, lr, _ = _foolable_case(ref, g, torch.float32)   # float32: properties only (dtype, fooled)
    context = f"on a small CNN, float32 image, target {target}, learning_rate {lr:.3f}, max_iter 60"
    _check_fooled(model_call(name, student, (X, target, model, lr, 60), 2, context=context), (X, target, model),
                  context)
    # Plain ascent cannot succeed here: the function must raise instead of returning a wrong image.
    model = stall_model()
    raised, out = call_expecting_error(name, student, (torch.zeros(1, 3, 8, 8, dtype=torch.float64), 1, model, 0.5, 30))
    if not raised:
        raise Failure(f"{name} returned {type(out).__name__} on a model that plain ascent cannot fool "
                      "within max_iter steps (another class rises faster); it must raise a RuntimeError.")
    check_model(name, model, student, 2, after_error=True)


def _foolable_case(ref: Callable[..., torch.Tensor], g: torch.Generator, dtype: torch.dtype
                   ) -> tuple[nn.Module, torch.Tensor, int, float, torch.Tensor]:
    """A fresh small CNN, image and target that the reference fools in at least one step."""
    for _attempt in range(50):
        model = tiny_cnn(_seed(g), dtype=dtype)
        X = torch.randn(1, 3, 20, 20, generator=g, dtype=dtype)
        lr = float(torch.empty(1).uniform_(0.3, 1.0, generator=g))
        with torch.no_grad():
            candidates = model(X)[0].argsort(descending=True)[1:4].tolist()
        for target in candidates:
            try:
                expected = ref(X.clone(), target, copy.deepcopy(model), learning_rate=lr, max_iter=60)
            except RuntimeError:
                continue  # plain ascent stalls for this target (another class rises faster)
            return model, X, target, lr, expected
    raise RuntimeError("grader: could not draw a foolable case; please report this")  # pragma: no cover


# ----------------------------------------------------------------------------- class visualization


def _updated(name: str, out: dict[str, Any], img: torch.Tensor, context: str) -> torch.Tensor:
    """The image a function that updates its first argument in place left (the ``"in_place"`` adapter's reply)."""
    updated = out["arguments"][0]
    if not isinstance(updated, torch.Tensor) or torch.equal(updated, img):
        raise Failure(f"{name} did not change img ({context}); update it in place, e.g. "
                      "`with torch.no_grad(): img += learning_rate * g / g.norm()`.")
    if out["returned"] is not None:
        raise Failure(f"{name} returned {type(out['returned']).__name__}; it updates img in place and returns None.")
    return updated


def _class_step_test(student: Student, ref: Callable[..., None], spec: GradedFunction, g: torch.Generator) -> None:
    size = int(torch.randint(56, 81, (1,), generator=g))
    img = torch.randn(1, 3, size, size, generator=g, dtype=torch.float64)
    l2_reg = float(10 ** torch.empty(1).uniform_(-3, -1, generator=g))
    lr = float(torch.empty(1).uniform_(0.5, 30.0, generator=g))
    model = squeezenet(dtype=torch.float64)
    target = int(top_classes(model, img, g)[0])
    hint = "Note that img does not require grad: take the gradient on a copy that does."
    _judge(spec, student, ref, [
        *_stored(spec.name, hint=hint),
        _Case((img, model, target, l2_reg, lr), f"on random-init SqueezeNet 1.1, a (1, 3, {size}, {size}) image, "
              f"l2_reg {l2_reg:.3g}, lr {lr:.3g}", hint=hint),
        _Case((img.float(), squeezenet(dtype=torch.float32), target, l2_reg, lr), "on a float32 image",
              diagnose=False, float32=True, hint=hint)], at=1, in_place=True)


# --------------------------------------------------------------------------------- stored references


def _stored_model(spec: dict[str, Any]) -> nn.Module:
    """The small CNN of a stored case, rebuilt from ``{"inplace", "num_classes", "state_dict"}``, in float64."""
    return tiny_cnn(0, inplace=spec["inplace"], num_classes=spec["num_classes"], state_dict=spec["state_dict"])


def _stored_case(case: dict[str, Any]) -> tuple[nn.Module, tuple, dict[str, Any]]:
    """The model (rebuilt from its stored state_dict), positional inputs and keyword inputs of a case."""
    return _stored_model(case["inputs"]["model"]), tuple(case["inputs"]["args"]), dict(case["inputs"].get("kwargs", {}))


def make_references(sol: SimpleNamespace) -> dict[str, list[dict[str, Any]]]:
    """Reference cases on seeded float64 inputs and small CNNs whose weights are stored with the case.

    A :class:`~autograder.judging.spec.Call` cannot hold a model in a reference file (loaded with
    ``weights_only=True``), so these cases store each model as ``{"inplace", "num_classes", "state_dict"}``
    and :func:`_stored_model` rebuilds it.
    """
    g = torch.Generator().manual_seed(REFERENCE_SEED)
    cases: dict[str, list[dict[str, Any]]] = {s.name: [] for s in SPECS}

    def model_spec(seed: int, inplace: bool = False, zero_class: int | None = None) -> dict[str, Any]:
        model = tiny_cnn(seed, inplace=inplace, dtype=torch.float32)  # stored in float32, used in float64
        if zero_class is not None:  # the class's score does not depend on the image: Grad-CAM is all zero
            with torch.no_grad():
                model[8].weight[zero_class] = 0.0
        return {"inplace": inplace, "num_classes": 10,
                "state_dict": {k: v.clone() for k, v in model.state_dict().items()}}

    def run(fn: str, spec: dict[str, Any], args: tuple, kwargs: dict[str, Any]) -> torch.Tensor:
        in_place = fn == "class_visualization_update_step"
        return _on_copies(_ARRANGE[fn](_stored_model(spec), args, kwargs), in_place)(getattr(sol, fn))

    def add(fn: str, spec: dict[str, Any], args: tuple, **kwargs: Any) -> None:
        cases[fn].append({"inputs": {"model": spec, "args": args, **({"kwargs": kwargs} if kwargs else {})},
                          "output": run(fn, spec, args, kwargs)})

    for seed, shape, inplace in [(1, (2, 3, 20, 20), False), (2, (3, 3, 16, 24), True)]:
        spec = model_spec(seed, inplace)
        X = torch.randn(*shape, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (shape[0],), generator=g)
        add("compute_saliency_maps", spec, (X, y))
        add("compute_guided_backprop", spec, (X, y))
    for seed, shape, inplace, layer, zero in [(3, (2, 3, 20, 20), False, "4", None),
                                              (4, (2, 3, 18, 22), True, "2", None),
                                              (5, (2, 3, 16, 16), False, "2", 6)]:
        spec = model_spec(seed, inplace, zero)
        X = torch.randn(*shape, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (shape[0],), generator=g) if zero is None else torch.tensor([zero, zero])
        add("compute_gradcam", spec, (X, y), layer=layer)
    # Maps that are positive everywhere, so that min-max normalization differs from dividing by the max.
    spec, y = model_spec(16), torch.tensor([2, 4])
    for _ in range(100):
        X = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
        if bool((run("compute_gradcam", spec, (X, y), {"layer": "4"}).amin(dim=(1, 2)) > 0.01).all()):
            break
    else:  # pragma: no cover
        raise RuntimeError("make_references: found no Grad-CAM case with a positive map")
    add("compute_gradcam", spec, (X, y), layer="4")
    for seed, shape, patch, stride, baseline in [(6, (2, 3, 24, 24), 8, 5, 0.0), (7, (1, 3, 20, 26), 6, 4, -0.5)]:
        spec = model_spec(seed)
        X = torch.randn(*shape, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (shape[0],), generator=g)
        add("compute_occlusion_map", spec, (X, y), patch=patch, stride=stride, baseline=baseline)
    for seed in (8, 9):
        spec = model_spec(seed)
        X = torch.randn(1, 3, 20, 20, generator=g, dtype=torch.float64)
        with torch.no_grad():
            target = int(_stored_model(spec)(X)[0].argsort(descending=True)[1])
        add("make_fooling_image", spec, (X, target), learning_rate=0.5, max_iter=100)
    for seed, l2_reg, lr in [(10, 1e-2, 0.7), (11, 1e-3, 5.0)]:
        spec = model_spec(seed)
        img = torch.randn(1, 3, 20, 20, generator=g, dtype=torch.float64)
        target = int(torch.randint(0, 10, (1,), generator=g))
        add("class_visualization_update_step", spec, (img, target), l2_reg=l2_reg, learning_rate=lr)
    return cases


# ---------------------------------------------------------------------------------------------- specs

_FLOAT64 = ("float64 required: correct float64 answers agree to ~1e-12 on tiny CNNs and SqueezeNet, wrong ones differ "
            "by > 1e-3 of the max")
_FLOAT32 = ("float32 round-off: a float32 computation on the float64 cases is off by up to 1.3e-5 of the max beyond "
            "rtol 1e-3 (60 draws), wrong ones differ by > 4e-2 of the max")
#: Why saliency and guided backprop must compute in float64 (measured on 40 draws of the fresh SqueezeNet case).
_GRADIENT_FLOAT64 = ("the grader passes float64 images and a float64 model, and in float32 the gradient jumps wherever "
                     "round-off moves a ReLU's input across 0 (in about 1 draw in 13 on SqueezeNet, by up to 1% of "
                     "the map's largest value), so compute in X's dtype and never convert to float32.")
#: The gradient steps share that jump, less often: about 1 draw in 150 (class visualization), 1 in 300 (fooling).
_STEP_FLOAT32 = _FLOAT32 + "; a rare draw where float32 flips a ReLU still fails (about 1 in 150)"

SPECS = (
    GradedFunction(name="compute_saliency_maps", test=_saliency_test, rtol=RTOL64, atol=ATOL64, tolerance=_FLOAT64,
                   float64_required=_GRADIENT_FLOAT64, wrong_answers=_SALIENCY_WRONG, forgeable=("model state",)),
    GradedFunction(name="compute_guided_backprop", test=_guided_test, rtol=RTOL64, atol=ATOL64, tolerance=_FLOAT64,
                   float64_required=_GRADIENT_FLOAT64, wrong_answers=_GUIDED_WRONG,
                   forgeable=("model state", "hooks removed after an error")),
    GradedFunction(name="compute_gradcam", test=_gradcam_test, rtol=RTOL32, atol=ATOL32, tolerance=_FLOAT32,
                   wrong_answers=_GRADCAM_WRONG, forgeable=("model state", "hooks removed after an error")),
    GradedFunction(name="compute_occlusion_map", test=_occlusion_test, rtol=RTOL32, atol=ATOL32, tolerance=_FLOAT32,
                   wrong_answers=_OCCLUSION_WRONG, forgeable=("model state", "forward passes counted")),
    GradedFunction(name="make_fooling_image", test=_fooling_test, rtol=RTOL32, atol=ATOL32, tolerance=_STEP_FLOAT32,
                   wrong_answers=_FOOLING_WRONG, forgeable=("model state",)),
    GradedFunction(name="class_visualization_update_step", test=_class_step_test, rtol=RTOL32, atol=ATOL32,
                   tolerance=_STEP_FLOAT32, wrong_answers=_CLASS_STEP_WRONG, adapter="in_place",
                   forgeable=("model state",)),
)

#: What the graded functions may not use (``autograder/judging/policy.py``): Captum implements the same
#: methods (the notebook compares with it in an ungraded part).
DEFAULT_FORBIDDEN = ("captum",)
SPECS = with_policies(SPECS)

_UNNORMALIZED_HINT = SPECS[4].wrong_answers[0].hint


def warm_up() -> None:
    """Build what every test of this module needs (SqueezeNet, the answer cells, the stored cases), so that
    grading processes forked afterwards start with it (``autograder.judging.judge.warm_up`` may call this)."""
    _pristine_squeezenet()
    load_reference(ASSIGNMENT)
