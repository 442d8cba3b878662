"""Hidden tests of ``network_visualization``: saliency, guided backprop, Grad-CAM, occlusion, fooling
images and the class-visualization step.

Every graded function takes a model, so each spec is a custom ``test`` (``autograder/README.md``). Each
test

- sends the student's function models the grader builds itself: a random-init SqueezeNet 1.1 under a
  fixed seed (:func:`squeezenet`) and a small CNN (:func:`tiny_cnn`), never the notebook's global model;
- compares the result with the reference solution of the source notebook, run here, on the stored cases
  of ``autograder/references/network_visualization.pt`` (tiny CNNs whose weights are stored with the
  case as state_dicts, built by :func:`make_references`) and on inputs drawn at grading time
  (:func:`~autograder.judging.toolkit.fresh_generator`), in float64, to each spec's tolerance (float64
  round-off where the spec requires float64, float32 round-off elsewhere), plus one float32 call for the dtype;
- when the result is wrong, runs the spec's :class:`~autograder.judging.spec.WrongAnswer` bodies (the
  loss instead of the score, a sum instead of a max, no ReLU, ...) on the same inputs and names the one
  the student's output matches;
- checks that the model is left as it was, from the kernel's report
  (:func:`cs_lib.grading.judge_client.module_report`, the forgeable part): parameter values, ``requires_grad``
  flags, ReLU ``inplace`` flags, train/eval mode and no hooks on any module, also when the function
  raises (:func:`failing_model`).

Wrong answers named ``state: ...`` are mistakes that a property check catches (hooks left behind,
flags not restored, one forward pass per window, ...), not the value comparison; they are not tried
as diagnoses of a wrong value.

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
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autograder.judging.references import load_reference
from autograder.judging.solutions import edited_solution, variant
from autograder.judging.spec import GradedFunction, WrongAnswer, with_policies
from autograder.judging.toolkit import Failure, StudentError, check_model_report
from cs_lib.checks import check_close, check_tensor
from cs_lib.grading.judge_client import module_report
from cs_lib.grading.models import CountingModel, FailingHead

ASSIGNMENT = "network_visualization"
#: The reference body of a graded function with ``(old, new)`` edits: a mistake declared against it.
_edited = functools.partial(edited_solution, ASSIGNMENT)
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
Thunks = dict[str, Callable[[], Any]]  # {hint: computes one wrong answer's output on the same inputs}
STATE = "state: "  # prefix of the wrong answers that a property check catches (not a value diagnosis)


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


# --------------------------------------------------------------------------- calling and model state

_MODEL_ADVICE = {
    "requires_grad": "Leave the model as you found it: take gradients with respect to the image only "
                     "(torch.autograd.grad(score, X)).",
    "inplace": "If you turn in-place ReLUs off, restore the old flags afterwards (in a finally block).",
}


def _check_model(name: str, pristine: nn.Module, student: Student, at: int, after_error: bool = False) -> None:
    """The kernel's report on the model argument ``at`` must match the grader's untouched copy."""
    try:
        check_model_report(name, module_report(pristine), student.last_modules.get(f"arg{at}"), after_error)
    except Failure as exc:
        advice = next((text for key, text in _MODEL_ADVICE.items() if key in str(exc)), "")
        raise Failure(f"{exc} {advice}".rstrip()) from None


def _error_text(exc: BaseException) -> str:
    return str(exc)[:300] if isinstance(exc, StudentError) else f"{type(exc).__name__}: {str(exc)[:300]}"


def _run(name: str, student: Student, args: tuple, context: str, hint: str = "", at: int = 2) -> Any:
    """``student(*args)``, its exceptions turned into messages; then the model ``args[at]`` is checked."""
    try:
        out = student(*args)
    except NotImplementedError:
        raise Failure(f"{name} is not implemented yet (it raised NotImplementedError).") from None
    except Failure:
        raise
    except Exception as exc:  # noqa: BLE001 - the student's error becomes the message
        raise Failure(f"{name} raised {_error_text(exc)} ({context}). {hint}".rstrip()) from None
    _check_model(name, args[at], student, at)
    return out


def _check_cleanup_after_error(name: str, student: Student, make_args: Callable[[nn.Module], tuple]) -> None:
    """Run the student's function on a model that raises mid-forward; hooks and flags must be restored."""
    model = failing_model(seed=7)
    try:
        student(*make_args(model))
    except NotImplementedError:
        raise Failure(f"{name} is not implemented yet (it raised NotImplementedError).") from None
    except Failure:
        raise
    except Exception:  # noqa: BLE001 - the model raises on purpose; what matters is what is left behind
        pass
    _check_model(name, model, student, 2, after_error=True)


# --------------------------------------------------------------------------------------- comparisons


def _close(a: Any, b: torch.Tensor, rtol: float, atol: float) -> bool:
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and bool(torch.isfinite(b).all())
            and bool(((a.detach().double().cpu() - b.double().cpu()).abs()
                      <= atol + rtol * b.double().cpu().abs()).all()))


def _compare(name: str, got: Any, expected: torch.Tensor, context: str, wrong: Thunks | None = None,
             rtol: float | None = None, atol: float | None = None, hint: str = "") -> None:
    """check_close with an absolute tolerance relative to the largest expected value (by default the spec's
    ``rtol`` and ``atol``), and diagnoses."""
    spec = next(s for s in SPECS if s.name == name)
    rtol, atol = spec.rtol if rtol is None else rtol, spec.atol if atol is None else atol
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    abs_tol = atol * scale if scale > 0 else 1e-12
    try:
        check_close(name, got, expected, rtol=rtol, atol=abs_tol, hint=hint)
    except AssertionError as exc:
        if isinstance(got, torch.Tensor) and got.shape == expected.shape:
            for diagnosis, thunk in (wrong or {}).items():
                try:
                    candidate = thunk()
                except Exception:  # noqa: BLE001 - a wrong answer that cannot run here names nothing
                    continue
                if _close(got, candidate, rtol, abs_tol):
                    raise Failure(f"{name} is wrong ({context}): {diagnosis}") from None
        raise Failure(f"{exc} ({context})") from None


@functools.cache
def _wrong_functions(name: str) -> dict[str, Callable[..., Any]]:
    """``{hint: function}`` of the value diagnoses of ``name``'s spec, compiled in the notebook's namespace."""
    spec = next(s for s in SPECS if s.name == name)
    return {w.hint: variant(ASSIGNMENT, name, w.body) for w in spec.wrong_answers if not w.name.startswith(STATE)}


def _thunks(name: str, call: Callable[[Callable[..., Any]], Any]) -> Thunks:
    """One thunk per wrong answer of ``name``: ``call(wrong_function)`` (on fresh copies of the inputs)."""
    return {hint: (lambda f=f: call(f)) for hint, f in _wrong_functions(name).items()}


def _inplace_hint(inplace: bool) -> str:
    if not inplace:
        return ""
    return ("The result must be the same with in-place ReLUs (inplace=True), where full backward hooks fail and "
            "stored activations get overwritten: set inplace=False on every nn.ReLU before the forward pass and "
            "restore the old flags in a finally block.")


# ------------------------------------------------------------------------------------ wrong answers


_SCORE = "scores.gather(1, y.view(-1, 1).to(scores.device)).sum()"
_LOSS_HINT = ("the gradient of the {} cross-entropy loss. Use the unnormalized score of class y[i] (model(X) "
              "picked with gather), not the loss.")


def _saliency_wrong() -> tuple[WrongAnswer, ...]:
    name = "compute_saliency_maps"

    def objective(new: str, hint: str) -> WrongAnswer:
        return WrongAnswer(hint[:40], _edited(name, (_SCORE, new)), hint)

    def reduce(new: str, hint: str) -> WrongAnswer:
        return WrongAnswer(hint[:40], _edited(name, ("grad.abs().amax(dim=1)", new)), hint)

    return (
        objective('F.cross_entropy(scores, y, reduction="sum")', "it matches " + _LOSS_HINT.format("summed")),
        objective("F.cross_entropy(scores, y)", "it matches " + _LOSS_HINT.format("mean")),
        objective("F.softmax(scores, dim=1).gather(1, y.view(-1, 1)).sum()",
                  "it matches the gradient of the softmax probability; use the score before the softmax."),
        reduce("grad.abs().sum(dim=1)",
               "it matches the SUM of |gradient| over the channels; take the max over channels (dim=1)."),
        reduce("grad.abs().mean(dim=1)",
               "it matches the MEAN of |gradient| over the channels; take the max over channels (dim=1)."),
        reduce("grad.amax(dim=1)", "it matches the max of the gradient WITHOUT the absolute value; take .abs() "
                                   "first."),
        reduce("grad.amax(dim=1).abs()",
               "it matches |max over channels of the gradient|; take the absolute value before the max."),
        reduce("grad.norm(dim=1)", "it matches the L2 norm over channels; take the max of |gradient| over channels."),
        WrongAnswer(STATE + "freezes the model", _edited(name, ("X = X.detach()", "model.requires_grad_(False)\n"
                                                                                  "X = X.detach()")),
                    "changed requires_grad"),
    )


def _guided_wrong() -> tuple[WrongAnswer, ...]:
    name = "compute_guided_backprop"
    plain = (f"X = X.detach().clone().requires_grad_(True)\nscores = model(X)\n"
             f"(grad,) = torch.autograd.grad({_SCORE}, X)\nreturn grad\n")
    return (
        WrongAnswer("plain gradient", plain,
                    "it matches the plain gradient. Register a full backward hook on every nn.ReLU module that "
                    "returns (grad_input[0].clamp(min=0),)."),
        WrongAnswer("deconvnet rule",
                    _edited(name, ("(grad_input[0].clamp(min=0),)", "(grad_output[0].clamp(min=0),)")),
                    "it matches the deconvnet rule (clamping grad_output): that drops the forward mask x > 0. Clamp "
                    "grad_input[0], which already includes it."),
        WrongAnswer("summed loss", _edited(name, (_SCORE, 'F.cross_entropy(scores, y, reduction="sum")')),
                    "it matches guided backprop of the cross-entropy loss; backpropagate the score of class y[i]."),
        WrongAnswer("mean loss", _edited(name, (_SCORE, "F.cross_entropy(scores, y)")),
                    "it matches guided backprop of the (mean) cross-entropy loss; backpropagate the score of class "
                    "y[i]."),
        WrongAnswer("absolute value", _edited(name, ("return grad", "return grad.abs()")),
                    "it matches the absolute value of guided backprop; return the signed gradient."),
        WrongAnswer(STATE + "in-place ReLUs left on", _edited(name, ("        m.inplace = False\n", "")),
                    "in-place ReLUs"),
        WrongAnswer(STATE + "no finally", _edited(name, ("try:\n", "if True:\n"), ("finally:\n", "if True:\n")),
                    "left hooks on the model after it raised"),
        WrongAnswer(STATE + "flags not restored", _edited(name, ("        m.inplace = flag\n", "        pass\n")),
                    "inplace flag"),
    )


_CAM_RELU = "cam = F.relu((alpha * A).sum(dim=1, keepdim=True))"
_CAM_UP = 'cam = F.interpolate(cam, size=X.shape[-2:], mode="bilinear", align_corners=False)[:, 0]'
_CAM_NORMALIZED = ("return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), "
                   "torch.zeros_like(cam))")


def _gradcam_wrong() -> tuple[WrongAnswer, ...]:
    name = "compute_gradcam"
    return (
        WrongAnswer("no ReLU", _edited(name, (_CAM_RELU, "cam = (alpha * A).sum(dim=1, keepdim=True)")),
                    "it matches Grad-CAM WITHOUT the ReLU. Apply F.relu to the weighted sum of the activations (only "
                    "regions that increase the score count)."),
        WrongAnswer("min-max", _edited(name, (_CAM_NORMALIZED,
                                              "low = cam.amin(dim=(1, 2), keepdim=True)\nspan = peak - low\n"
                                              "return torch.where(span > 0, (cam - low) / span.clamp_min(1e-300), "
                                              "torch.zeros_like(cam))")),
                    "it matches min-max normalization; divide each map by its maximum instead (do not subtract the "
                    "minimum)."),
        WrongAnswer("not normalized", _edited(name, (_CAM_NORMALIZED, "return cam")),
                    "it is not normalized; divide each map by its own maximum."),
        WrongAnswer("batch maximum", _edited(name, (_CAM_NORMALIZED, "return cam / cam.max().clamp_min(1e-300)")),
                    "it is normalized by the largest value of the whole batch; divide each map by its own maximum."),
        WrongAnswer("nearest", _edited(name, (_CAM_UP, 'cam = F.interpolate(cam, size=X.shape[-2:], mode="nearest")'
                                                       "[:, 0]")),
                    "it matches nearest-neighbour upsampling; use mode='bilinear', align_corners=False."),
        WrongAnswer("align_corners", _edited(name, ("align_corners=False", "align_corners=True")),
                    "it matches bilinear upsampling with align_corners=True; use align_corners=False."),
        WrongAnswer("loss", _edited(name, (_SCORE, 'F.cross_entropy(scores, y, reduction="sum")')),
                    "it matches the gradient of the loss; use the score of class y[i]."),
        WrongAnswer("element-wise", _edited(name, ("alpha = grads.mean(dim=(2, 3), keepdim=True)", "alpha = grads")),
                    "it weights activations by the gradient element-wise; average the gradient over space first to "
                    "get one weight per channel."),
        WrongAnswer(STATE + "0/0", _edited(name, (_CAM_NORMALIZED, "return cam / peak")), "NaN or inf"),
        WrongAnswer(STATE + "in-place ReLUs left on",
                    _edited(name, ("    for m in relus:\n        m.inplace = False\n", "")),
                    "in-place ReLUs"),
        WrongAnswer(STATE + "no finally", _edited(name, ("try:\n", "if True:\n"), ("finally:\n", "if True:\n")),
                    "left hooks on the model after it raised"),
    )


def _occlusion_wrong() -> tuple[WrongAnswer, ...]:
    name = "compute_occlusion_map"
    clean, occluded = "p_clean = F.softmax(model(X), dim=1)", "p = F.softmax(model(occluded), dim=1)"
    return (
        WrongAnswer("raw scores", _edited(name, (clean, "p_clean = model(X)"), (occluded, "p = model(occluded)")),
                    "it matches drops of the raw scores; use softmax probabilities."),
        WrongAnswer("log-probabilities", _edited(name, (clean, "p_clean = F.log_softmax(model(X), dim=1)"),
                                                 (occluded, "p = F.log_softmax(model(occluded), dim=1)")),
                    "it matches drops of log-probabilities; use softmax probabilities."),
        WrongAnswer("sign", _edited(name, ("= p_clean[image] - p", "= p - p_clean[image]")),
                    "it matches P(occluded) - P(clean); the drop is P(clean) - P(occluded)."),
        WrongAnswer("sum", _edited(name, ("return total / count.clamp_min(1)", "return total")),
                    "it matches the SUM of the drops; average over the windows covering each pixel."),
        WrongAnswer("full windows only", _edited(name, ("math.ceil((size - patch) / stride) + 1",
                                                        "(size - patch) // stride + 1")),
                    "it uses only windows that fit inside the image. Keep sliding until a window reaches the "
                    "last row/column; that last window is cut off at the border (Captum's positions)."),
        WrongAnswer("baseline ignored", _edited(name, ("torch.tensor(baseline,", "torch.tensor(0.0,")),
                    "it matches occluding with 0; set the occluded pixels to `baseline`."),
        WrongAnswer(STATE + "one window per pass",
                    _edited(name, ("batch_size = X.device, 32", "batch_size = X.device, 1")),
                    "one forward pass per window"),
    )


_ASCENT_STEP = "learning_rate * g / g.norm()"
_FOOLED = "if int(scores.argmax(dim=1)[0]) == target_y:"


def _fooling_wrong() -> tuple[WrongAnswer, ...]:
    name = "make_fooling_image"
    return (
        WrongAnswer("unnormalized", _edited(name, (_ASCENT_STEP, "learning_rate * g")),
                    "it matches steps of lr * g without normalization; divide the gradient by its L2 norm."),
        WrongAnswer("FGSM", _edited(name, (_ASCENT_STEP, "learning_rate * g.sign()")),
                    "it matches steps of lr * sign(g) (FGSM); use lr * g / ||g||_2."),
        WrongAnswer("loss descent", _edited(name, ("torch.autograd.grad(scores[0, target_y], X_fooling)",
                                                   "torch.autograd.grad(-F.cross_entropy(scores, torch.tensor("
                                                   "[target_y], device=scores.device)), X_fooling)")),
                    "it matches descent on the cross-entropy loss of the target; ascend the target's score."),
        WrongAnswer("no early stop", _edited(name, (_FOOLED, "if step == max_iter and int(scores.argmax(dim=1)[0]) "
                                                             "== target_y:")),
                    "it matches running all max_iter steps; stop as soon as the model predicts target_y."),
        WrongAnswer(STATE + "graph attached", _edited(name, ("return X_fooling.detach()", "return X_fooling")),
                    "attached to the autograd graph"),
        WrongAnswer(STATE + "never raises", _edited(name, ("raise RuntimeError(", "return X_fooling.detach()\n"
                                                                                  "raise RuntimeError(")),
                    "must raise a RuntimeError"),
        WrongAnswer(STATE + "in place", _edited(name, ("return X_fooling.detach()", "X.copy_(X_fooling.detach())\n"
                                                                                    "        return X.clone()")),
                    "modified its argument"),
    )


_PENALTY = "l2_reg * (x * x).sum()"


def _class_step_wrong() -> tuple[WrongAnswer, ...]:
    name = "class_visualization_update_step"
    step = "img += learning_rate * g / g.norm()"
    return (
        WrongAnswer("descent", _edited(name, (step, "img -= learning_rate * g / g.norm()")),
                    "it matches a step of gradient DESCENT; ascend: img += learning_rate * g / ||g||."),
        WrongAnswer("unnormalized", _edited(name, (step, "img += learning_rate * g")),
                    "it matches an unnormalized step; divide the gradient by its L2 norm."),
        WrongAnswer("unsquared penalty", _edited(name, (_PENALTY, "l2_reg * x.norm()")),
                    "it matches a penalty l2_reg * ||img|| (not squared); use l2_reg * ||img||^2."),
        WrongAnswer("no penalty", _edited(name, (" - " + _PENALTY, "")),
                    "it matches the step without the L2 penalty; subtract l2_reg * ||img||^2 from the score."),
        WrongAnswer("added penalty", _edited(name, (" - " + _PENALTY, " + " + _PENALTY)),
                    "it matches ADDING the L2 penalty; the objective is S_y - l2_reg * ||img||^2."),
        WrongAnswer(STATE + "returns a new image", _edited(name, ("with torch.no_grad():\n    " + step,
                                                                  "return img + learning_rate * g / g.norm()")),
                    "update it in place"),
    )


# ------------------------------------------------------------------------------------------ saliency


def _on_copies(X: torch.Tensor, y: torch.Tensor, model: nn.Module, *extra: Any) -> Callable[[Callable], Any]:
    """``call(f) = f(X, y, copy of model, *extra)``: a grader-side run that leaves the inputs untouched."""
    return lambda f: f(X.clone(), y.clone(), copy.deepcopy(model), *extra)


def _saliency_test(student: Student, ref: Callable[..., torch.Tensor], spec: GradedFunction,
                   g: torch.Generator) -> None:
    name = spec.name
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        model, (X, y), _ = _stored_case(case)
        context = f"stored case {i}: a small CNN on {tuple(X.shape)} float64 images"
        got = _run(name, student, (X, y, model), context)
        _compare(name, got, case["output"], context, _thunks(name, _on_copies(X, y, model)))
    size = int(torch.randint(56, 97, (1,), generator=g))
    X = torch.randn(2, 3, size, size, generator=g, dtype=torch.float64)
    model = squeezenet(dtype=torch.float64)
    y = top_classes(model, X, g)
    context = f"random-init SqueezeNet 1.1 on (2, 3, {size}, {size}) float64 images"
    got = _run(name, student, (X, y, model), context)
    check_tensor(name, got, shape=(2, size, size), hint="Reduce over the channels (dim=1).")
    _compare(name, got, ref(X, y, copy.deepcopy(model)), context, _thunks(name, _on_copies(X, y, model)))
    # float32, with a model whose parameters require grad: the flags must stay as they were.
    model = tiny_cnn(_seed(g), dtype=torch.float32, frozen=False)
    X = torch.randn(3, 3, 20, 28, generator=g)
    y = torch.randint(0, 10, (3,), generator=g)
    context = "a small CNN whose parameters require grad, on (3, 3, 20, 28) float32 images"
    got = _run(name, student, (X, y, model), context)
    check_tensor(name, got, shape=(3, 20, 28), dtype=torch.float32)
    _compare(name, got, ref(X, y, copy.deepcopy(model)), context, rtol=RTOL32, atol=ATOL32)


# ----------------------------------------------------------------------------------- guided backprop


def _guided_test(student: Student, ref: Callable[..., torch.Tensor], spec: GradedFunction,
                 g: torch.Generator) -> None:
    """In-place ReLUs and hooks-on-error included. Grader-side runs use copies of the model: a full
    backward hook marks a module for good against the legacy ``register_backward_hook``, and vice versa."""
    name = spec.name
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        model, (X, y), _ = _stored_case(case)
        inplace = case["inputs"]["model"]["inplace"]
        context = f"stored case {i}: a small CNN{' with in-place ReLUs' if inplace else ''}"
        got = _run(name, student, (X, y, model), context, hint=_inplace_hint(inplace))
        _compare(name, got, case["output"], context, _thunks(name, _on_copies(X, y, model)),
                 hint=_inplace_hint(inplace))
    size = int(torch.randint(56, 97, (1,), generator=g))
    X = torch.randn(2, 3, size, size, generator=g, dtype=torch.float64)
    model = squeezenet(dtype=torch.float64)
    y = top_classes(model, X, g)
    expected = ref(X, y, copy.deepcopy(model))
    context = f"random-init SqueezeNet 1.1 on (2, 3, {size}, {size}) float64 images"
    got = _run(name, student, (X, y, model), context)
    check_tensor(name, got, shape=(2, 3, size, size))
    _compare(name, got, expected, context, _thunks(name, _on_copies(X, y, model)))
    model = squeezenet(inplace=True, dtype=torch.float64)
    context = "SqueezeNet 1.1 with in-place ReLUs (inplace=True, as torchvision builds it)"
    got = _run(name, student, (X, y, model), context, hint=_inplace_hint(True))
    _compare(name, got, expected, context, hint=_inplace_hint(True))
    X32 = torch.randn(2, 3, 24, 20, generator=g)
    y32 = torch.randint(0, 10, (2,), generator=g)
    model = tiny_cnn(_seed(g), dtype=torch.float32)
    expected = ref(X32, y32, copy.deepcopy(model))
    context = "a small CNN on float32 images"
    got = _run(name, student, (X32, y32, model), context)
    check_tensor(name, got, shape=(2, 3, 24, 20), dtype=torch.float32)
    _compare(name, got, expected, context, rtol=RTOL32, atol=ATOL32)
    _check_cleanup_after_error(name, student, lambda m: (X32.double(), y32, m))


# ------------------------------------------------------------------------------------------ Grad-CAM


def _gradcam_call(X: torch.Tensor, y: torch.Tensor, model: nn.Module, layer: str) -> Callable[[Callable], Any]:
    """``call(f)`` = f on copies, with ``layer`` (a submodule name) looked up in the copied model."""
    def call(f: Callable[..., Any]) -> Any:
        copied = copy.deepcopy(model)
        return f(X.clone(), y.clone(), copied, copied.get_submodule(layer))
    return call


def _gradcam_test(student: Student, ref: Callable[..., torch.Tensor], spec: GradedFunction,
                  g: torch.Generator) -> None:
    """In-place ReLUs, all-zero maps and hooks-on-error included."""
    name = spec.name
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        model, (X, y), kwargs = _stored_case(case)
        inplace = case["inputs"]["model"]["inplace"]
        kind = "a small CNN with in-place ReLUs" if inplace else "a small CNN"
        context = f"stored case {i}: {kind}, layer model[{kwargs['layer']}]"
        got = _run(name, student, (X, y, model, model.get_submodule(kwargs["layer"])), context,
                   hint=_inplace_hint(inplace))
        hint = "An all-zero map must stay zero (no 0/0). " if not case["output"].any() else ""
        _compare(name, got, case["output"], context, _thunks(name, _gradcam_call(X, y, model, kwargs["layer"])),
                 hint=hint + _inplace_hint(inplace))
    size = int(torch.randint(64, 97, (1,), generator=g))
    X = torch.randn(2, 3, size, size, generator=g, dtype=torch.float64)
    model = squeezenet(dtype=torch.float64)
    y = top_classes(model, X, g)
    layer = f"features.{int(torch.randint(10, 13, (1,), generator=g))}"
    context = f"random-init SqueezeNet 1.1, layer {layer}, (2, 3, {size}, {size}) float64 images"
    got = _run(name, student, (X, y, model, model.get_submodule(layer)), context)
    check_tensor(name, got, shape=(2, size, size), hint="Upsample to (H, W); drop the channel dim.")
    _compare(name, got, _gradcam_call(X, y, model, layer)(ref), context,
             _thunks(name, _gradcam_call(X, y, model, layer)))
    # A convolution followed by an in-place ReLU: a stored activation would be overwritten.
    seed = _seed(g)
    X = torch.randn(3, 3, 18, 26, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (3,), generator=g)
    expected = _gradcam_call(X, y, tiny_cnn(seed), "2")(ref)
    model = tiny_cnn(seed, inplace=True)
    context = "a small CNN with in-place ReLUs, layer = a convolution followed by ReLU(inplace=True)"
    got = _run(name, student, (X, y, model, model[2]), context, hint=_inplace_hint(True))
    _compare(name, got, expected, context, hint=_inplace_hint(True))
    model32 = tiny_cnn(seed, dtype=torch.float32)
    got = _run(name, student, (X.float(), y, model32, model32[4]), "float32 images")
    check_tensor(name, got, shape=(3, 18, 26), dtype=torch.float32)
    _compare(name, got, _gradcam_call(X.float(), y, model32, "4")(ref), "a small CNN on float32 images",
             rtol=RTOL32, atol=ATOL32)
    _check_cleanup_after_error(name, student, lambda m: (X, y, m, m[2]))


# ----------------------------------------------------------------------------------------- occlusion


def _window_count(size: int, patch: int, stride: int) -> int:
    """Window positions along one axis: 0, stride, ..., up to the first start >= size - patch."""
    return -(-(size - patch) // stride) + 1


def _occlusion_test(student: Student, ref: Callable[..., torch.Tensor], spec: GradedFunction,
                    g: torch.Generator) -> None:
    """Border windows, baselines and batched forward passes."""
    name = spec.name
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        model, (X, y), kwargs = _stored_case(case)
        extra = (kwargs["patch"], kwargs["stride"], kwargs["baseline"])
        context = (f"stored case {i}: a small CNN on {tuple(X.shape)} images, patch={extra[0]}, "
                   f"stride={extra[1]}, baseline={extra[2]}")
        got = _run(name, student, (X, y, model, *extra), context)
        _compare(name, got, case["output"], context, _thunks(name, _on_copies(X, y, model, *extra)))
    size = int(torch.randint(48, 61, (1,), generator=g))
    X = torch.randn(2, 3, size, size + 4, generator=g, dtype=torch.float64)
    baseline = float(torch.empty(1, dtype=torch.float64).uniform_(-1, 1, generator=g))
    model = squeezenet(dtype=torch.float64)
    y = top_classes(model, X, g)
    context = f"random-init SqueezeNet 1.1 on (2, 3, {size}, {size + 4}) float64 images, patch 16, stride 8"
    got = _run(name, student, (X, y, CountingModel(model), 16, 8, baseline), context)
    check_tensor(name, got, shape=(2, size, size + 4))
    _compare(name, got, ref(X, y, copy.deepcopy(model), 16, 8, baseline), context,
             _thunks(name, _on_copies(X, y, model, 16, 8, baseline)))
    windows = _window_count(size, 16, 8) * _window_count(size + 4, 16, 8)
    calls = (student.last_modules.get("arg2") or {}).get("forward_calls")
    if calls is None or calls >= windows:
        raise Failure(f"{name} ran the model {calls} times for {windows} windows ({context}): batch the occluded "
                      "images, several windows per forward pass (e.g. chunks of 32 images), instead of one forward "
                      "pass per window.")
    # float32 on a small CNN with patch and stride drawn so that the last window is cut off.
    patch = int(torch.randint(4, 9, (1,), generator=g))
    stride = int(torch.randint(2, patch + 1, (1,), generator=g))
    H = patch + stride * int(torch.randint(2, 5, (1,), generator=g)) + 1
    W = H + int(torch.randint(1, 6, (1,), generator=g))
    model = tiny_cnn(_seed(g), dtype=torch.float32)
    X = torch.randn(3, 3, H, W, generator=g)
    y = torch.randint(0, 10, (3,), generator=g)
    context = f"a small CNN on (3, 3, {H}, {W}) float32 images, patch {patch}, stride {stride}"
    got = _run(name, student, (X, y, model, patch, stride, 0.0), context)
    check_tensor(name, got, shape=(3, H, W), dtype=torch.float32)
    _compare(name, got, ref(X, y, copy.deepcopy(model), patch, stride, 0.0), context, rtol=RTOL32, atol=ATOL32)


# ---------------------------------------------------------------------------------- fooling images


def _fooling_call(X: torch.Tensor, target: int, model: nn.Module, lr: float, max_iter: int
                  ) -> Callable[[Callable], Any]:
    return lambda f: f(X.clone(), target, copy.deepcopy(model), lr, max_iter)


def _run_fooling(student: Student, X: torch.Tensor, target: int, model: nn.Module, lr: float, max_iter: int,
                 context: str) -> Any:
    name = "make_fooling_image"
    try:
        out = student(X, target, model, lr, max_iter)
    except NotImplementedError:
        raise Failure(f"{name} is not implemented yet (it raised NotImplementedError).") from None
    except Failure:
        raise
    except Exception as exc:  # noqa: BLE001 - the student's error becomes the message
        diagnosis = ""
        try:
            _fooling_call(X, target, model, lr, max_iter)(_wrong_functions(name)[_UNNORMALIZED_HINT])
        except RuntimeError:
            diagnosis = (" With steps of learning_rate * g the reference does not get there either: "
                         + _UNNORMALIZED_HINT)
        raise Failure(f"{name} raised {_error_text(exc)} ({context}). The reference fools this model within "
                      "max_iter steps of normalized ascent on the target's score (steps learning_rate * g / "
                      f"||g||_2).{diagnosis}") from None
    _check_model(name, model, student, 2)
    return out


def _check_fooling_output(name: str, got: Any, X: torch.Tensor, target: int, model: nn.Module, context: str) -> None:
    check_tensor(name, got, shape=tuple(X.shape), dtype=X.dtype)
    with torch.no_grad():
        predicted = int(model(got).argmax(dim=1)[0])
    if predicted != target:
        raise Failure(f"{name} returned an image the model classifies as {predicted}, not the target "
                      f"{target} ({context}).")


def _check_detached(name: str, student: Student, args: tuple, context: str) -> None:
    """The result must not be attached to the autograd graph. The kernel sends values only, so ask it to
    backpropagate through the result with respect to nothing: a detached result has no gradient to
    propagate (a TypeError that says so); an attached one reaches autograd, which refuses empty inputs."""
    try:
        student.backward(args, wrt=())
    except TypeError as exc:
        if "no gradient to propagate" in str(exc):
            return
    except Exception:  # noqa: BLE001 - autograd on an attached result with nothing to differentiate
        pass
    raise Failure(f"{name} returned a tensor attached to the autograd graph (requires_grad=True); "
                  f"return X_fooling.detach() ({context}).")


def _fooling_test(student: Student, ref: Callable[..., torch.Tensor], spec: GradedFunction,
                  g: torch.Generator) -> None:
    name = spec.name
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        model, (X, target), kwargs = _stored_case(case)
        lr, max_iter = kwargs["learning_rate"], kwargs["max_iter"]
        context = f"stored case {i}: a small CNN, target {target}"
        got = _run_fooling(student, X, target, model, lr, max_iter, context)
        _check_fooling_output(name, got, X, target, model, context)
        _compare(name, got, case["output"], context, _thunks(name, _fooling_call(X, target, model, lr, max_iter)))
    model, X, target, lr, expected = _foolable_case(ref, g, torch.float64)
    context = f"a small CNN, target {target}, learning_rate {lr:.3f}, max_iter 60"
    got = _run_fooling(student, X, target, model, lr, 60, context)
    _check_detached(name, student, (X, target, model, lr, 60), context)
    _check_fooling_output(name, got, X, target, model, context)
    _compare(name, got, expected, context, _thunks(name, _fooling_call(X, target, model, lr, 60)))
    # Already classified as the target: return (a copy of) X without any step.
    with torch.no_grad():
        current = int(model(X).argmax(dim=1)[0])
    context = "the image is already classified as the target"
    got = _run_fooling(student, X, current, model, lr, 60, context)
    _compare(name, got, X, context,
             hint="Check the prediction before each step: when X is already classified as target_y, return it.")
    # float32: properties only (dtype, fooled).
    model, X, target, lr, _ = _foolable_case(ref, g, torch.float32)
    context = f"a small CNN on a float32 image, target {target}, learning_rate {lr:.3f}, max_iter 60"
    got = _run_fooling(student, X, target, model, lr, 60, context)
    _check_fooling_output(name, got, X, target, model, context)
    # Plain ascent cannot succeed here: the function must raise instead of returning a wrong image.
    model = stall_model()
    try:
        out = student(torch.zeros(1, 3, 8, 8, dtype=torch.float64), 1, model, 0.5, 30)
    except NotImplementedError:
        raise Failure(f"{name} is not implemented yet (it raised NotImplementedError).") from None
    except Failure:
        raise
    except Exception:  # noqa: BLE001 - raising is the expected behaviour; the docstring asks for RuntimeError
        pass
    else:
        raise Failure(f"{name} returned {type(out).__name__} on a model that plain ascent cannot fool "
                      "within max_iter steps (another class rises faster); it must raise a RuntimeError.")
    _check_model(name, model, student, 2, after_error=True)


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


def _class_step_call(img: torch.Tensor, model: nn.Module, target: int, l2_reg: float, lr: float
                     ) -> Callable[[Callable], torch.Tensor]:
    """``call(f)``: the image after ``f`` updated a copy of ``img`` in place."""
    def call(f: Callable[..., Any]) -> torch.Tensor:
        work = img.clone()
        f(work, copy.deepcopy(model), target, l2_reg, lr)
        return work
    return call


def _run_class_step(student: Student, img: torch.Tensor, model: nn.Module, target: int, l2_reg: float,
                    lr: float, context: str) -> torch.Tensor:
    name = "class_visualization_update_step"
    out = _run(name, student, (img, model, target, l2_reg, lr), context,
               hint="Note that img does not require grad: take the gradient on a copy that does.", at=1)
    updated = out["arguments"][0]
    if not isinstance(updated, torch.Tensor) or torch.equal(updated, img):
        raise Failure(f"{name} did not change img ({context}); update it in place, e.g. "
                      "`with torch.no_grad(): img += learning_rate * g / g.norm()`.")
    if out["returned"] is not None:
        raise Failure(f"{name} returned {type(out['returned']).__name__}; it updates img in place and returns None.")
    return updated


def _class_step_test(student: Student, ref: Callable[..., None], spec: GradedFunction, g: torch.Generator) -> None:
    name = spec.name
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        model, (img, target), kwargs = _stored_case(case)
        l2_reg, lr = kwargs["l2_reg"], kwargs["learning_rate"]
        context = f"stored case {i}: a small CNN, target {target}, l2_reg {l2_reg:g}, learning_rate {lr:g}"
        got = _run_class_step(student, img, model, target, l2_reg, lr, context)
        _compare(name, got, case["output"], context, _thunks(name, _class_step_call(img, model, target, l2_reg, lr)))
    size = int(torch.randint(56, 81, (1,), generator=g))
    img = torch.randn(1, 3, size, size, generator=g, dtype=torch.float64)
    l2_reg = float(10 ** torch.empty(1).uniform_(-3, -1, generator=g))
    lr = float(torch.empty(1).uniform_(0.5, 30.0, generator=g))
    model = squeezenet(dtype=torch.float64)
    target = int(top_classes(model, img, g)[0])
    context = f"random-init SqueezeNet 1.1, a (1, 3, {size}, {size}) image, l2_reg {l2_reg:.3g}, lr {lr:.3g}"
    got = _run_class_step(student, img, model, target, l2_reg, lr, context)
    _compare(name, got, _class_step_call(img, model, target, l2_reg, lr)(ref), context,
             _thunks(name, _class_step_call(img, model, target, l2_reg, lr)))
    img32 = img.float()
    model = squeezenet(dtype=torch.float32)
    got = _run_class_step(student, img32, model, target, l2_reg, lr, "float32 image")
    check_tensor(name, got, shape=tuple(img32.shape), dtype=torch.float32)
    _compare(name, got, _class_step_call(img32, model, target, l2_reg, lr)(ref), "float32 image",
             rtol=RTOL32, atol=ATOL32)


# --------------------------------------------------------------------------------- stored references


def _stored_case(case: dict[str, Any]) -> tuple[nn.Module, tuple, dict[str, Any]]:
    """The model (rebuilt from its stored state_dict), positional inputs and keyword inputs of a case."""
    spec = case["inputs"]["model"]
    model = tiny_cnn(0, inplace=spec["inplace"], num_classes=spec["num_classes"], state_dict=spec["state_dict"])
    return model, tuple(case["inputs"]["args"]), dict(case["inputs"].get("kwargs", {}))


def make_references(sol: SimpleNamespace) -> dict[str, list[dict[str, Any]]]:
    """Reference cases on seeded float64 inputs and small CNNs whose weights are stored with the case.

    A :class:`~autograder.judging.spec.Call` cannot hold a model in a reference file (loaded with
    ``weights_only=True``), so these cases store each model as ``{"inplace", "num_classes", "state_dict"}``
    and :func:`_stored_case` rebuilds it.
    """
    g = torch.Generator().manual_seed(REFERENCE_SEED)

    def model_spec(seed: int, inplace: bool = False, zero_class: int | None = None) -> dict[str, Any]:
        model = tiny_cnn(seed, inplace=inplace, dtype=torch.float32)  # stored in float32, used in float64
        if zero_class is not None:  # the class's score does not depend on the image: Grad-CAM is all zero
            with torch.no_grad():
                model[8].weight[zero_class] = 0.0
        return {"inplace": inplace, "num_classes": 10,
                "state_dict": {k: v.clone() for k, v in model.state_dict().items()}}

    def build(spec: dict[str, Any]) -> nn.Module:
        return tiny_cnn(0, inplace=spec["inplace"], num_classes=spec["num_classes"], state_dict=spec["state_dict"])

    cases: dict[str, list[dict[str, Any]]] = {s.name: [] for s in SPECS}
    for seed, shape, inplace in [(1, (2, 3, 20, 20), False), (2, (3, 3, 16, 24), True)]:
        spec = model_spec(seed, inplace)
        X = torch.randn(*shape, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (shape[0],), generator=g)
        for fn in ("compute_saliency_maps", "compute_guided_backprop"):
            out = getattr(sol, fn)(X, y, build(spec))
            cases[fn].append({"inputs": {"model": spec, "args": (X, y)}, "output": out})
    for seed, shape, inplace, layer, zero in [(3, (2, 3, 20, 20), False, "4", None),
                                              (4, (2, 3, 18, 22), True, "2", None),
                                              (5, (2, 3, 16, 16), False, "2", 6)]:
        spec = model_spec(seed, inplace, zero)
        X = torch.randn(*shape, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (shape[0],), generator=g) if zero is None else torch.tensor([zero, zero])
        model = build(spec)
        out = sol.compute_gradcam(X, y, model, model.get_submodule(layer))
        cases["compute_gradcam"].append({"inputs": {"model": spec, "args": (X, y), "kwargs": {"layer": layer}},
                                         "output": out})
    # Maps that are positive everywhere, so that min-max normalization differs from dividing by the max.
    spec = model_spec(16)
    model = build(spec)
    y = torch.tensor([2, 4])
    for _ in range(100):
        X = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
        out = sol.compute_gradcam(X, y, model, model[4])
        if bool((out.amin(dim=(1, 2)) > 0.01).all()):
            break
    else:  # pragma: no cover
        raise RuntimeError("make_references: found no Grad-CAM case with a positive map")
    cases["compute_gradcam"].append({"inputs": {"model": spec, "args": (X, y), "kwargs": {"layer": "4"}},
                                     "output": out})
    for seed, shape, patch, stride, baseline in [(6, (2, 3, 24, 24), 8, 5, 0.0), (7, (1, 3, 20, 26), 6, 4, -0.5)]:
        spec = model_spec(seed)
        X = torch.randn(*shape, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (shape[0],), generator=g)
        kwargs = {"patch": patch, "stride": stride, "baseline": baseline}
        out = sol.compute_occlusion_map(X, y, build(spec), **kwargs)
        cases["compute_occlusion_map"].append({"inputs": {"model": spec, "args": (X, y), "kwargs": kwargs},
                                               "output": out})
    for seed in (8, 9):
        spec = model_spec(seed)
        model = build(spec)
        X = torch.randn(1, 3, 20, 20, generator=g, dtype=torch.float64)
        with torch.no_grad():
            target = int(model(X)[0].argsort(descending=True)[1])
        kwargs = {"learning_rate": 0.5, "max_iter": 100}
        out = sol.make_fooling_image(X, target, model, **kwargs)
        cases["make_fooling_image"].append({"inputs": {"model": spec, "args": (X, target), "kwargs": kwargs},
                                            "output": out})
    for seed, l2_reg, lr in [(10, 1e-2, 0.7), (11, 1e-3, 5.0)]:
        spec = model_spec(seed)
        img = torch.randn(1, 3, 20, 20, generator=g, dtype=torch.float64)
        target = int(torch.randint(0, 10, (1,), generator=g))
        out = img.clone()
        sol.class_visualization_update_step(out, build(spec), target, l2_reg, lr)
        cases["class_visualization_update_step"].append(
            {"inputs": {"model": spec, "args": (img, target), "kwargs": {"l2_reg": l2_reg, "learning_rate": lr}},
             "output": out})
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
                   float64_required=_GRADIENT_FLOAT64, wrong_answers=_saliency_wrong(), forgeable=("model state",)),
    GradedFunction(name="compute_guided_backprop", test=_guided_test, rtol=RTOL64, atol=ATOL64, tolerance=_FLOAT64,
                   float64_required=_GRADIENT_FLOAT64, wrong_answers=_guided_wrong(),
                   forgeable=("model state", "hooks removed after an error")),
    GradedFunction(name="compute_gradcam", test=_gradcam_test, rtol=RTOL32, atol=ATOL32, tolerance=_FLOAT32,
                   wrong_answers=_gradcam_wrong(), forgeable=("model state", "hooks removed after an error")),
    GradedFunction(name="compute_occlusion_map", test=_occlusion_test, rtol=RTOL32, atol=ATOL32, tolerance=_FLOAT32,
                   wrong_answers=_occlusion_wrong(), forgeable=("model state", "forward passes counted")),
    GradedFunction(name="make_fooling_image", test=_fooling_test, rtol=RTOL32, atol=ATOL32, tolerance=_STEP_FLOAT32,
                   wrong_answers=_fooling_wrong(), forgeable=("model state",)),
    GradedFunction(name="class_visualization_update_step", test=_class_step_test, rtol=RTOL32, atol=ATOL32,
                   tolerance=_STEP_FLOAT32, wrong_answers=_class_step_wrong(), adapter="in_place",
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
