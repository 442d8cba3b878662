"""Hidden tests of ``network_visualization``: saliency, guided backprop, Grad-CAM, occlusion, fooling
images and the class-visualization step.

Each test

- runs the student's function on models the grader builds itself: a random-init SqueezeNet 1.1 under a
  fixed seed (:func:`squeezenet`) and a small CNN (:func:`tiny_cnn`), never the notebook's global model;
- compares it with the reference solution of the source notebook, on the stored cases of
  ``autograder/references/network_visualization.pt`` (tiny CNNs whose weights are stored with the case)
  and on inputs drawn at grading time (:func:`~autograder.judging.toolkit.fresh_generator`), in float64 so
  that every correct implementation agrees to round-off (``rtol=1e-6``), plus one float32 call for the
  dtype and device;
- when the result is wrong, recomputes the common wrong answers (the loss instead of the score, a sum
  instead of a max, no ReLU, ...) and names the one the student's output matches;
- checks that the model is left as it was: parameter values, ``requires_grad`` flags, ReLU ``inplace``
  flags, and no hooks on any module, also when the function raises (:func:`failing_model`).

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
from autograder.judging.solutions import load_solutions
from autograder.judging.toolkit import call_student, fresh_generator
from cs_lib.checks import check_close, check_tensor

ASSIGNMENT = "network_visualization"
REFERENCE_SEED = 2311
# Stored outputs are float64 on tiny CNNs: they agree to round-off across machines.
REFERENCE_RTOL, REFERENCE_ATOL = 1e-7, 1e-10

#: Tolerances against the reference in float64. Any correct float64 implementation agrees to ~1e-12;
#: rtol 1e-6 and an absolute slack of 1e-7 of the largest value also accept float32 accumulators, while
#: every wrong answer listed in the diagnoses differs by more than 1e-3 of the largest value.
RTOL64, ATOL64 = 1e-6, 1e-7
#: Tolerances in float32, where gradients computed in a different order differ by ~1e-6 relative and
#: occlusion drops are differences of nearby probabilities.
RTOL32, ATOL32 = 1e-3, 1e-4

Diagnoses = Callable[[], dict[str, torch.Tensor]]
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOK_DICTS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                      "_global_backward_pre_hooks")


def _one_thread(test: Callable[[Callable[..., Any]], None]) -> Callable[[Callable[..., Any]], None]:
    """Run a hidden test with one intra-op thread, restored afterwards.

    The grader's models are small: one thread is as fast, and it avoids the long stalls of torch's
    thread pool when another process keeps the second core busy (an autograder running in parallel).
    """
    @functools.wraps(test)
    def wrapper(student_fn: Callable[..., Any]) -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            test(student_fn)
        finally:
            torch.set_num_threads(before)
    return wrapper


# --------------------------------------------------------------------------------------------- models


def tiny_cnn(seed: int, inplace: bool = False, dtype: torch.dtype = torch.float64, num_classes: int = 10,
             state_dict: dict[str, torch.Tensor] | None = None, frozen: bool = True) -> nn.Sequential:
    """A small CNN for 3-channel images of at least 8x8 pixels: three convolutions with ReLUs.

    ``model[2]`` is a convolution followed by the ReLU ``model[3]`` (the in-place trap for Grad-CAM);
    ``model[5]`` is the last ReLU. Weights come from ``state_dict`` or, if ``None``, a seeded init.
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
    """A fresh random-init SqueezeNet 1.1 (seed 0), frozen, in eval mode.

    ``inplace=True`` keeps torchvision's in-place ReLUs, as a student building the model might.
    """
    model = copy.deepcopy(_pristine_squeezenet())
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = inplace
    return _prepare(model, dtype, frozen=True)


class _FailingHead(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the grader's model fails here on purpose, after its ReLUs ran")


def failing_model(seed: int, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A tiny CNN with in-place ReLUs whose forward pass raises after the ReLUs (hooks-on-error test)."""
    model = tiny_cnn(seed, inplace=True, dtype=dtype)
    return nn.Sequential(*list(model)[:6], _FailingHead()).eval()


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
    """One of the ``k`` highest-scoring classes of each image, drawn with ``g``.

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


# ------------------------------------------------------------------------------- model-state checks


class _ModelState:
    """A snapshot of what a student function must not change: parameters, flags and hooks."""

    def __init__(self, model: nn.Module) -> None:
        self.params = {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()}
        self.inplace = {n: m.inplace for n, m in model.named_modules() if isinstance(m, nn.ReLU)}
        self.training = model.training

    def check(self, name: str, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            value, requires_grad = self.params[n]
            if p.requires_grad != requires_grad:
                raise AssertionError(f"{name} changed requires_grad of the parameter '{n}' from {requires_grad} to "
                                     f"{p.requires_grad}. Leave the model as you found it: take gradients with "
                                     "respect to the image only (torch.autograd.grad(score, X)).")
            if not torch.equal(p.detach(), value):
                raise AssertionError(f"{name} changed the values of the model parameter '{n}'.")
        changed = [n for n, m in model.named_modules() if isinstance(m, nn.ReLU) and m.inplace != self.inplace[n]]
        if changed:
            raise AssertionError(f"{name} left the inplace flag of the ReLU(s) {changed} changed. If you turn "
                                 "in-place ReLUs off, restore the old flags afterwards (in a finally block).")
        if model.training != self.training:
            raise AssertionError(f"{name} switched the model to {'train' if model.training else 'eval'} mode.")
        _assert_no_hooks(name, model)


def _assert_no_hooks(name: str, model: nn.Module, after_error: bool = False) -> None:
    left = [f"{n or 'model'}.{d}" for n, m in model.named_modules() for d in _HOOK_DICTS if getattr(m, d, None)]
    import torch.nn.modules.module as module_mod

    left += [f"torch.nn.modules.module.{d}" for d in _GLOBAL_HOOK_DICTS if getattr(module_mod, d, None)]
    if left:
        when = " after the model raised an error" if after_error else ""
        raise AssertionError(f"{name} left hooks behind{when}: {', '.join(left)}. Keep the handles that "
                             "register_*_hook returns and call handle.remove() in a finally block.")


def _run(name: str, fn: Callable[..., Any], model: nn.Module, X: torch.Tensor, y: Any, *extra: Any,
         context: str = "", hint: str = "") -> Any:
    """Call ``fn(X, y, model, *extra)``, turning its exceptions into messages; then check the model."""
    state = _ModelState(model)
    try:
        out = call_student(name, fn, X, y, model, *extra)
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(f"{name} raised {type(exc).__name__}: {str(exc)[:300]} ({context}). {hint}") from None
    state.check(name, model)
    return out


# --------------------------------------------------------------------------------------- comparisons


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and bool(torch.isfinite(b).all())
            and bool(((a.detach().double().cpu() - b.double().cpu()).abs()
                      <= atol + rtol * b.double().cpu().abs()).all()))


def _compare(name: str, got: Any, expected: torch.Tensor, context: str, diagnoses: Diagnoses | None = None,
             rtol: float = RTOL64, atol: float = ATOL64, hint: str = "") -> None:
    """check_close with an absolute tolerance relative to the largest expected value, and diagnoses."""
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    abs_tol = atol * scale if scale > 0 else 1e-12
    try:
        check_close(name, got, expected, rtol=rtol, atol=abs_tol, hint=hint)
    except AssertionError as exc:
        if diagnoses is not None and isinstance(got, torch.Tensor) and got.shape == expected.shape:
            try:
                wrong_answers = diagnoses()
            except Exception:  # a diagnosis that cannot be computed here names nothing
                wrong_answers = {}
            for diagnosis, wrong in wrong_answers.items():
                if _close(got, wrong, rtol, abs_tol):
                    raise AssertionError(f"{name} is wrong ({context}): {diagnosis}") from None
        raise AssertionError(f"{exc} ({context})") from None


def _gradient(model: nn.Module, X: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    X = X.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(model(X)), X)
    return g


def _score(y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda s: s.gather(1, y.view(-1, 1)).sum()


def _loss(y: torch.Tensor, reduction: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda s: F.cross_entropy(s, y, reduction=reduction)


def _probability(y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda s: F.softmax(s, dim=1).gather(1, y.view(-1, 1)).sum()


def _relu_rule_gradient(model: nn.Module, X: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor],
                        rule: str) -> torch.Tensor:
    """Gradient with every ReLU's backward replaced: 'guided' or 'deconvnet' (grader's wrong answers)."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    flags = [m.inplace for m in relus]

    def hook(module: nn.Module, grad_input: tuple, grad_output: tuple) -> tuple:
        return ((grad_input[0] if rule == "guided" else grad_output[0]).clamp(min=0),)

    handles = []
    try:
        for m in relus:
            m.inplace = False
            handles.append(m.register_full_backward_hook(hook))
        return _gradient(model, X, objective)
    finally:
        for h in handles:
            h.remove()
        for m, f in zip(relus, flags):
            m.inplace = f


# ------------------------------------------------------------------------------------------ saliency


def _saliency_diagnoses(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> Diagnoses:
    def compute() -> dict[str, torch.Tensor]:
        g = _gradient(model, X, _score(y))
        loss_hint = ("it matches the gradient of the cross-entropy loss. Use the unnormalized score of class "
                     "y[i] (model(X) picked with gather), not the loss.")
        return {
            loss_hint: _gradient(model, X, _loss(y, "sum")).abs().amax(dim=1),
            loss_hint + " ": _gradient(model, X, _loss(y, "mean")).abs().amax(dim=1),
            "it matches the gradient of the softmax probability; use the score before the softmax.":
                _gradient(model, X, _probability(y)).abs().amax(dim=1),
            "it matches the SUM of |gradient| over the channels; take the max over channels (dim=1).":
                g.abs().sum(dim=1),
            "it matches the MEAN of |gradient| over the channels; take the max over channels (dim=1).":
                g.abs().mean(dim=1),
            "it matches the max of the gradient WITHOUT the absolute value; take .abs() first.": g.amax(dim=1),
            "it matches |max over channels of the gradient|; take the absolute value before the max.":
                g.amax(dim=1).abs(),
            "it matches the L2 norm over channels; take the max of |gradient| over channels.": g.norm(dim=1),
        }
    return compute


@_one_thread
def compute_saliency_maps(student_fn: Callable[..., torch.Tensor]) -> None:
    """Hidden test of ``compute_saliency_maps``."""
    name = "compute_saliency_maps"
    ref = load_solutions(ASSIGNMENT).compute_saliency_maps
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        model, args, _ = _stored_case(case)
        context = f"stored case {i}: a small CNN on {tuple(args[0].shape)} float64 images"
        got = _run(name, student_fn, model, *args, context=context)
        _compare(name, got, case["output"], context, _saliency_diagnoses(model, *args))
    g = fresh_generator()
    size = int(torch.randint(56, 97, (1,), generator=g))
    X = torch.randn(2, 3, size, size, generator=g, dtype=torch.float64)
    model = squeezenet(dtype=torch.float64)
    y = top_classes(model, X, g)
    context = f"random-init SqueezeNet 1.1 on (2, 3, {size}, {size}) float64 images"
    got = _run(name, student_fn, model, X, y, context=context)
    check_tensor(name, got, shape=(2, size, size), device=X.device, hint="Reduce over the channels (dim=1).")
    _compare(name, got, ref(X, y, model), context, _saliency_diagnoses(model, X, y))
    # float32, with a model whose parameters require grad: the flags must stay as they were.
    model = tiny_cnn(int(torch.randint(0, 2**31, (1,), generator=g)), dtype=torch.float32, frozen=False)
    X = torch.randn(3, 3, 20, 28, generator=g)
    y = torch.randint(0, 10, (3,), generator=g)
    context = "a small CNN whose parameters require grad, on (3, 3, 20, 28) float32 images"
    got = _run(name, student_fn, model, X, y, context=context)
    check_tensor(name, got, shape=(3, 20, 28), dtype=torch.float32, device=X.device)
    _compare(name, got, ref(X, y, model), context, rtol=RTOL32, atol=ATOL32)


# ----------------------------------------------------------------------------------- guided backprop


def _guided_diagnoses(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> Diagnoses:
    def compute() -> dict[str, torch.Tensor]:
        return {
            "it matches the plain gradient. Register a full backward hook on every nn.ReLU module that "
            "returns (grad_input[0].clamp(min=0),).": _gradient(model, X, _score(y)),
            "it matches the deconvnet rule (clamping grad_output): that drops the forward mask x > 0. Clamp "
            "grad_input[0], which already includes it.": _relu_rule_gradient(model, X, _score(y), "deconvnet"),
            "it matches guided backprop of the cross-entropy loss; backpropagate the score of class y[i].":
                _relu_rule_gradient(model, X, _loss(y, "sum"), "guided"),
            "it matches guided backprop of the (mean) cross-entropy loss; backpropagate the score of class y[i].":
                _relu_rule_gradient(model, X, _loss(y, "mean"), "guided"),
            "it matches the absolute value of guided backprop; return the signed gradient.":
                _relu_rule_gradient(model, X, _score(y), "guided").abs(),
        }
    return compute


@_one_thread
def compute_guided_backprop(student_fn: Callable[..., torch.Tensor]) -> None:
    """Hidden test of ``compute_guided_backprop`` (in-place ReLUs and hooks-on-error included)."""
    name = "compute_guided_backprop"
    ref = load_solutions(ASSIGNMENT).compute_guided_backprop
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        model, args, _ = _stored_case(case)
        inplace = case["inputs"]["model"]["inplace"]
        context = f"stored case {i}: a small CNN{' with in-place ReLUs' if inplace else ''}"
        got = _run(name, student_fn, model, *args, context=context, hint=_inplace_hint(inplace))
        fresh_model = _stored_case(case)[0]  # hooks of one API mark a module against the other: a new model
        _compare(name, got, case["output"], context, _guided_diagnoses(fresh_model, *args),
                 hint=_inplace_hint(inplace))
    g = fresh_generator()
    size = int(torch.randint(56, 97, (1,), generator=g))
    X = torch.randn(2, 3, size, size, generator=g, dtype=torch.float64)
    model = squeezenet(dtype=torch.float64)
    y = top_classes(model, X, g)
    # The reference and the diagnoses run on copies: a full backward hook marks a module for good against
    # the legacy Module.register_backward_hook that a student may use, and vice versa.
    pristine = copy.deepcopy(model)
    expected = ref(X, y, copy.deepcopy(model))
    context = f"random-init SqueezeNet 1.1 on (2, 3, {size}, {size}) float64 images"
    got = _run(name, student_fn, model, X, y, context=context)
    check_tensor(name, got, shape=(2, 3, size, size), device=X.device)
    _compare(name, got, expected, context, _guided_diagnoses(pristine, X, y))
    model = squeezenet(inplace=True, dtype=torch.float64)
    context = "SqueezeNet 1.1 with in-place ReLUs (inplace=True, as torchvision builds it)"
    got = _run(name, student_fn, model, X, y, context=context, hint=_inplace_hint(True))
    _compare(name, got, expected, context, hint=_inplace_hint(True))
    X32 = torch.randn(2, 3, 24, 20, generator=g)
    y32 = torch.randint(0, 10, (2,), generator=g)
    model = tiny_cnn(int(torch.randint(0, 2**31, (1,), generator=g)), dtype=torch.float32)
    expected = ref(X32, y32, copy.deepcopy(model))
    context = "a small CNN on float32 images"
    got = _run(name, student_fn, model, X32, y32, context=context)
    check_tensor(name, got, shape=(2, 3, 24, 20), dtype=torch.float32, device=X32.device)
    _compare(name, got, expected, context, rtol=RTOL32, atol=ATOL32)
    _check_cleanup_after_error(name, lambda m: (lambda X, y: student_fn(X, y, m)), X32.double(), y32)


def _inplace_hint(inplace: bool) -> str:
    if not inplace:
        return ""
    return ("The result must be the same with in-place ReLUs (inplace=True), where full backward hooks fail and "
            "stored activations get overwritten: set inplace=False on every nn.ReLU before the forward pass and "
            "restore the old flags in a finally block.")


def _check_cleanup_after_error(name: str, bind: Callable[[nn.Module], Callable[..., Any]], X: torch.Tensor,
                               y: torch.Tensor) -> None:
    """Run the student's function on a model that raises mid-forward; hooks and flags must be restored."""
    model = failing_model(seed=7, dtype=X.dtype)
    flags = {n: m.inplace for n, m in model.named_modules() if isinstance(m, nn.ReLU)}
    try:
        bind(model)(X, y)
    except NotImplementedError:
        raise AssertionError(f"{name} is not implemented yet (it raised NotImplementedError).") from None
    except Exception:  # the model raises on purpose; what matters is what is left behind
        pass
    _assert_no_hooks(name, model, after_error=True)
    changed = [n for n, m in model.named_modules() if isinstance(m, nn.ReLU) and m.inplace != flags[n]]
    if changed:
        raise AssertionError(f"{name} did not restore the inplace flags of {changed} after the model raised an "
                             "error; restore them in the finally block.")


# ------------------------------------------------------------------------------------------ Grad-CAM


def _gradcam_parts(model: nn.Module, X: torch.Tensor, layer: nn.Module,
                   objective: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    flags = [m.inplace for m in relus]
    stored: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda m, i, o: stored.__setitem__("A", o))
    try:
        for m in relus:
            m.inplace = False
        Xg = X.detach().clone().requires_grad_(True)
        (G,) = torch.autograd.grad(objective(model(Xg)), stored["A"])
    finally:
        handle.remove()
        for m, f in zip(relus, flags):
            m.inplace = f
    return stored["A"].detach(), G


def _max_normalize(cam: torch.Tensor) -> torch.Tensor:
    peak = cam.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))


def _gradcam_diagnoses(model: nn.Module, X: torch.Tensor, y: torch.Tensor, layer: nn.Module) -> Diagnoses:
    def compute() -> dict[str, torch.Tensor]:
        size = X.shape[-2:]
        A, G = _gradcam_parts(model, X, layer, _score(y))
        raw = (G.mean(dim=(2, 3), keepdim=True) * A).sum(dim=1, keepdim=True)

        def up(cam: torch.Tensor, mode: str = "bilinear", align: bool | None = False) -> torch.Tensor:
            return F.interpolate(cam, size=size, mode=mode, align_corners=align)[:, 0]

        relu_up = up(F.relu(raw))
        low = relu_up.amin(dim=(1, 2), keepdim=True)
        span = relu_up.amax(dim=(1, 2), keepdim=True) - low
        A_loss, G_loss = _gradcam_parts(model, X, layer, _loss(y, "sum"))
        loss_cam = F.relu((G_loss.mean(dim=(2, 3), keepdim=True) * A_loss).sum(dim=1, keepdim=True))
        return {
            "it matches Grad-CAM WITHOUT the ReLU. Apply F.relu to the weighted sum of the activations (only "
            "regions that increase the score count).": _max_normalize(up(raw)),
            "it matches min-max normalization; divide each map by its maximum instead (do not subtract the "
            "minimum).": torch.where(span > 0, (relu_up - low) / span.clamp_min(1e-300), torch.zeros_like(relu_up)),
            "it is not normalized; divide each map by its own maximum.": relu_up,
            "it is normalized by the largest value of the whole batch; divide each map by its own maximum.":
                relu_up / relu_up.max().clamp_min(1e-300),
            "it matches nearest-neighbour upsampling; use mode='bilinear', align_corners=False.":
                _max_normalize(up(F.relu(raw), "nearest", None)),
            "it matches bilinear upsampling with align_corners=True; use align_corners=False.":
                _max_normalize(up(F.relu(raw), "bilinear", True)),
            "it matches the gradient of the loss; use the score of class y[i].": _max_normalize(up(loss_cam)),
            "it weights activations by the gradient element-wise; average the gradient over space first to "
            "get one weight per channel.": _max_normalize(up(F.relu((G * A).sum(dim=1, keepdim=True)))),
        }
    return compute


@_one_thread
def compute_gradcam(student_fn: Callable[..., torch.Tensor]) -> None:
    """Hidden test of ``compute_gradcam`` (in-place ReLUs, all-zero maps and hooks-on-error included)."""
    name = "compute_gradcam"
    ref = load_solutions(ASSIGNMENT).compute_gradcam
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        model, args, kwargs = _stored_case(case)
        layer = model.get_submodule(kwargs["layer"])
        inplace = case["inputs"]["model"]["inplace"]
        kind = "a small CNN with in-place ReLUs" if inplace else "a small CNN"
        context = f"stored case {i}: {kind}, layer model[{kwargs['layer']}]"
        got = _run(name, student_fn, model, *args, layer, context=context, hint=_inplace_hint(inplace))
        hint = "An all-zero map must stay zero (no 0/0). " if not case["output"].any() else ""
        _compare(name, got, case["output"], context, _gradcam_diagnoses(model, *args, layer),
                 hint=hint + _inplace_hint(inplace))
    g = fresh_generator()
    size = int(torch.randint(64, 97, (1,), generator=g))
    X = torch.randn(2, 3, size, size, generator=g, dtype=torch.float64)
    model = squeezenet(dtype=torch.float64)
    y = top_classes(model, X, g)
    index = int(torch.randint(10, 13, (1,), generator=g))
    layer = model.features[index]
    context = f"random-init SqueezeNet 1.1, layer features[{index}], (2, 3, {size}, {size}) float64 images"
    got = _run(name, student_fn, model, X, y, layer, context=context)
    check_tensor(name, got, shape=(2, size, size), device=X.device, hint="Upsample to (H, W); drop the channel dim.")
    _compare(name, got, ref(X, y, model, layer), context, _gradcam_diagnoses(model, X, y, layer))
    # A convolution followed by an in-place ReLU: a stored activation would be overwritten.
    seed = int(torch.randint(0, 2**31, (1,), generator=g))
    X = torch.randn(3, 3, 18, 26, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (3,), generator=g)
    plain = tiny_cnn(seed)
    expected = ref(X, y, plain, plain[2])
    model = tiny_cnn(seed, inplace=True)
    context = "a small CNN with in-place ReLUs, layer = a convolution followed by ReLU(inplace=True)"
    got = _run(name, student_fn, model, X, y, model[2], context=context, hint=_inplace_hint(True))
    _compare(name, got, expected, context, hint=_inplace_hint(True))
    model32 = tiny_cnn(seed, dtype=torch.float32)
    got = _run(name, student_fn, model32, X.float(), y, model32[4], context="float32 images")
    check_tensor(name, got, shape=(3, 18, 26), dtype=torch.float32, device=X.device)
    _compare(name, got, ref(X.float(), y, model32, model32[4]), "a small CNN on float32 images",
             rtol=RTOL32, atol=ATOL32)
    _check_cleanup_after_error(name, lambda m: (lambda X, y: student_fn(X, y, m, m[2])), X, y)


# ----------------------------------------------------------------------------------------- occlusion


class CountingModel(nn.Module):
    """Counts forward passes (the occlusion test checks that windows are batched)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


def _window_starts(size: int, patch: int, stride: int, full_only: bool = False) -> torch.Tensor:
    last = size - patch if full_only else -(-(size - patch) // stride) * stride
    return torch.arange(0, last + 1, stride)


def _occlusion_variants(X: torch.Tensor, y: torch.Tensor, model: nn.Module, patch: int, stride: int,
                        baseline: float) -> dict[str, torch.Tensor]:
    """Maps from the grader's own window loop (batched per window): the wrong answers students give."""
    N, _, H, W = X.shape
    idx = torch.arange(N)
    with torch.no_grad():
        clean = model(X)
        outputs: dict[str, torch.Tensor] = {}

        def drops(starts_y: torch.Tensor, starts_x: torch.Tensor, fill: float) -> dict[str, list]:
            result: dict[str, list] = {"prob": [], "logit": [], "logprob": []}
            for top in starts_y.tolist():
                for left in starts_x.tolist():
                    occluded = X.clone()
                    occluded[:, :, top : top + patch, left : left + patch] = fill
                    s = model(occluded)
                    result["prob"].append(F.softmax(clean, 1)[idx, y] - F.softmax(s, 1)[idx, y])
                    result["logit"].append(clean[idx, y] - s[idx, y])
                    result["logprob"].append(F.log_softmax(clean, 1)[idx, y] - F.log_softmax(s, 1)[idx, y])
            return result

        def combine(values: list, starts_y: torch.Tensor, starts_x: torch.Tensor, mean: bool) -> torch.Tensor:
            total = torch.zeros(N, H, W, dtype=X.dtype)
            count = torch.zeros(H, W, dtype=X.dtype)
            k = 0
            for top in starts_y.tolist():
                for left in starts_x.tolist():
                    total[:, top : top + patch, left : left + patch] += values[k][:, None, None]
                    count[top : top + patch, left : left + patch] += 1
                    k += 1
            return total / count.clamp_min(1) if mean else total

        sy, sx = _window_starts(H, patch, stride), _window_starts(W, patch, stride)
        d = drops(sy, sx, baseline)
        outputs["it matches drops of the raw scores; use softmax probabilities."] = combine(d["logit"], sy, sx, True)
        outputs["it matches drops of log-probabilities; use softmax probabilities."] = \
            combine(d["logprob"], sy, sx, True)
        outputs["it matches P(occluded) - P(clean); the drop is P(clean) - P(occluded)."] = \
            -combine(d["prob"], sy, sx, True)
        outputs["it matches the SUM of the drops; average over the windows covering each pixel."] = \
            combine(d["prob"], sy, sx, False)
        fy, fx = _window_starts(H, patch, stride, True), _window_starts(W, patch, stride, True)
        if len(fy) != len(sy) or len(fx) != len(sx):
            outputs["it uses only windows that fit inside the image. Keep sliding until a window reaches the "
                    "last row/column; that last window is cut off at the border (Captum's positions)."] = \
                combine(drops(fy, fx, baseline)["prob"], fy, fx, True)
        if baseline != 0.0:
            outputs["it matches occluding with 0; set the occluded pixels to `baseline`."] = \
                combine(drops(sy, sx, 0.0)["prob"], sy, sx, True)
    return outputs


@_one_thread
def compute_occlusion_map(student_fn: Callable[..., torch.Tensor]) -> None:
    """Hidden test of ``compute_occlusion_map`` (border windows, baselines and batched forward passes)."""
    name = "compute_occlusion_map"
    ref = load_solutions(ASSIGNMENT).compute_occlusion_map
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        model, args, kwargs = _stored_case(case)
        context = (f"stored case {i}: a small CNN on {tuple(args[0].shape)} images, patch={kwargs['patch']}, "
                   f"stride={kwargs['stride']}, baseline={kwargs['baseline']}")
        got = _run(name, student_fn, model, *args, kwargs["patch"], kwargs["stride"], kwargs["baseline"],
                   context=context)
        _compare(name, got, case["output"], context,
                 lambda m=model, a=args, k=kwargs: _occlusion_variants(*a, m, k["patch"], k["stride"], k["baseline"]))
    g = fresh_generator()
    size = int(torch.randint(48, 61, (1,), generator=g))
    X = torch.randn(2, 3, size, size + 4, generator=g, dtype=torch.float64)
    baseline = float(torch.empty(1, dtype=torch.float64).uniform_(-1, 1, generator=g))
    model = squeezenet(dtype=torch.float64)
    y = top_classes(model, X, g)
    context = f"random-init SqueezeNet 1.1 on (2, 3, {size}, {size + 4}) float64 images, patch 16, stride 8"
    counting = CountingModel(model)
    got = _run(name, student_fn, counting, X, y, 16, 8, baseline, context=context)
    check_tensor(name, got, shape=(2, size, size + 4), device=X.device)
    _compare(name, got, ref(X, y, model, 16, 8, baseline), context,
             lambda: _occlusion_variants(X, y, model, 16, 8, baseline))
    windows = len(_window_starts(size, 16, 8)) * len(_window_starts(size + 4, 16, 8))
    if counting.calls >= windows:
        raise AssertionError(f"{name} ran the model {counting.calls} times for {windows} windows ({context}): batch "
                             "the occluded images, several windows per forward pass (e.g. chunks of 32 images), "
                             "instead of one forward pass per window.")
    # float32 on a small CNN with patch and stride drawn so that the last window is cut off.
    patch = int(torch.randint(4, 9, (1,), generator=g))
    stride = int(torch.randint(2, patch + 1, (1,), generator=g))
    H = patch + stride * int(torch.randint(2, 5, (1,), generator=g)) + 1
    W = H + int(torch.randint(1, 6, (1,), generator=g))
    model = tiny_cnn(int(torch.randint(0, 2**31, (1,), generator=g)), dtype=torch.float32)
    X = torch.randn(3, 3, H, W, generator=g)
    y = torch.randint(0, 10, (3,), generator=g)
    context = f"a small CNN on (3, 3, {H}, {W}) float32 images, patch {patch}, stride {stride}"
    got = _run(name, student_fn, model, X, y, patch, stride, 0.0, context=context)
    check_tensor(name, got, shape=(3, H, W), dtype=torch.float32, device=X.device)
    _compare(name, got, ref(X, y, model, patch, stride, 0.0), context, rtol=RTOL32, atol=ATOL32)


# ---------------------------------------------------------------------------------- fooling images


def _ascent(X: torch.Tensor, target: int, model: nn.Module, lr: float, max_iter: int,
            step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], early_stop: bool = True,
            objective: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor | None:
    """Variants of the fooling loop (the grader's wrong answers); ``None`` when it does not fool."""
    Xf = X.detach().clone()
    for it in range(max_iter + 1):
        Xf.requires_grad_(True)
        s = model(Xf)
        if early_stop and int(s.argmax(dim=1)[0]) == target:
            return Xf.detach()
        if it == max_iter:
            break
        obj = s[0, target] if objective is None else objective(s)
        (g,) = torch.autograd.grad(obj, Xf)
        Xf = (Xf + step(g, torch.tensor(lr, dtype=X.dtype))).detach()
    return Xf.detach() if not early_stop and int(model(Xf).argmax(dim=1)[0]) == target else None


def _fooling_diagnoses(X: torch.Tensor, target: int, model: nn.Module, lr: float, max_iter: int) -> Diagnoses:
    def compute() -> dict[str, torch.Tensor]:
        t = torch.tensor([target])
        candidates = {
            "it matches steps of lr * g without normalization; divide the gradient by its L2 norm.":
                _ascent(X, target, model, lr, max_iter, lambda g, a: a * g),
            "it matches steps of lr * sign(g) (FGSM); use lr * g / ||g||_2.":
                _ascent(X, target, model, lr, max_iter, lambda g, a: a * g.sign()),
            "it matches descent on the cross-entropy loss of the target; ascend the target's score.":
                _ascent(X, target, model, lr, max_iter, lambda g, a: -a * g / g.norm(),
                        objective=lambda s: F.cross_entropy(s, t)),
            "it matches running all max_iter steps; stop as soon as the model predicts target_y.":
                _ascent(X, target, model, lr, max_iter, lambda g, a: a * g / g.norm(), early_stop=False),
        }
        return {k: v for k, v in candidates.items() if v is not None}
    return compute


def _check_fooling_output(name: str, got: Any, X: torch.Tensor, target: int, model: nn.Module, context: str) -> None:
    check_tensor(name, got, shape=tuple(X.shape), dtype=X.dtype, device=X.device)
    if got.requires_grad or got.grad_fn is not None:
        raise AssertionError(f"{name} returned a tensor attached to the autograd graph (requires_grad=True); "
                             f"return X_fooling.detach() ({context}).")
    with torch.no_grad():
        predicted = int(model(got).argmax(dim=1)[0])
    if predicted != target:
        raise AssertionError(f"{name} returned an image the model classifies as {predicted}, not the target "
                             f"{target} ({context}).")


@_one_thread
def make_fooling_image(student_fn: Callable[..., torch.Tensor]) -> None:
    """Hidden test of ``make_fooling_image``."""
    name = "make_fooling_image"
    ref = load_solutions(ASSIGNMENT).make_fooling_image
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        model, args, kwargs = _stored_case(case)
        X, target = args
        context = f"stored case {i}: a small CNN, target {target}"
        got = _run_fooling(student_fn, X, target, model, kwargs, context)
        _check_fooling_output(name, got, X, target, model, context)
        _compare(name, got, case["output"], context,
                 _fooling_diagnoses(X, target, model, kwargs["learning_rate"], kwargs["max_iter"]))
    g = fresh_generator()
    model, X, target, lr, expected = _foolable_case(ref, g, torch.float64)
    context = f"a small CNN, target {target}, learning_rate {lr:.3f}, max_iter 60"
    got = _run_fooling(student_fn, X, target, model, {"learning_rate": lr, "max_iter": 60}, context)
    _check_fooling_output(name, got, X, target, model, context)
    _compare(name, got, expected, context, _fooling_diagnoses(X, target, model, lr, 60))
    # Already classified as the target: return (a copy of) X without any step.
    with torch.no_grad():
        current = int(model(X).argmax(dim=1)[0])
    context = "the image is already classified as the target"
    got = _run_fooling(student_fn, X, current, model, {"learning_rate": lr, "max_iter": 60}, context)
    _compare(name, got, X, context,
             hint="Check the prediction before each step: when X is already classified as target_y, return it.")
    # float32: properties only (dtype, device, detached, fooled).
    model, X, target, lr, _ = _foolable_case(ref, g, torch.float32)
    context = f"a small CNN on a float32 image, target {target}, learning_rate {lr:.3f}, max_iter 60"
    got = _run_fooling(student_fn, X, target, model, {"learning_rate": lr, "max_iter": 60}, context)
    _check_fooling_output(name, got, X, target, model, context)
    # Plain ascent cannot succeed here: the function must raise instead of returning a wrong image.
    model = stall_model()
    X = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    state = _ModelState(model)
    try:
        out = student_fn(X.clone(), 1, model, 0.5, 30)
    except NotImplementedError:
        raise AssertionError(f"{name} is not implemented yet (it raised NotImplementedError).") from None
    except Exception:  # raising is the expected behaviour; RuntimeError is what the docstring asks for
        pass
    else:
        raise AssertionError(f"{name} returned {type(out).__name__} on a model that plain ascent cannot fool "
                             "within max_iter steps (another class rises faster); it must raise a RuntimeError.")
    state.check(name, model)


def _foolable_case(ref: Callable[..., torch.Tensor], g: torch.Generator, dtype: torch.dtype
                   ) -> tuple[nn.Module, torch.Tensor, int, float, torch.Tensor]:
    """A fresh small CNN, image and target that the reference fools in at least one step."""
    for _attempt in range(50):
        model = tiny_cnn(int(torch.randint(0, 2**31, (1,), generator=g)), dtype=dtype)
        X = torch.randn(1, 3, 20, 20, generator=g, dtype=dtype)
        lr = float(torch.empty(1).uniform_(0.3, 1.0, generator=g))
        with torch.no_grad():
            candidates = model(X)[0].argsort(descending=True)[1:4].tolist()
        for target in candidates:
            try:
                expected = ref(X, target, model, learning_rate=lr, max_iter=60)
            except RuntimeError:
                continue  # plain ascent stalls for this target (another class rises faster)
            return model, X, target, lr, expected
    raise RuntimeError("grader: could not draw a foolable case; please report this")  # pragma: no cover


def _run_fooling(student_fn: Callable[..., torch.Tensor], X: torch.Tensor, target: int, model: nn.Module,
                 kwargs: dict[str, Any], context: str) -> Any:
    name = "make_fooling_image"
    state = _ModelState(model)
    lr, max_iter = kwargs["learning_rate"], kwargs["max_iter"]
    try:
        out = call_student(name, student_fn, X, target, model, lr, max_iter)
    except AssertionError:
        raise
    except Exception as exc:
        diagnosis = ""
        if _ascent(X, target, model, lr, max_iter, lambda g, a: a * g) is None:
            diagnosis = (" Steps of learning_rate * g without normalization do not get there either: did you "
                         "divide the gradient by its L2 norm?")
        raise AssertionError(f"{name} raised {type(exc).__name__}: {str(exc)[:300]} ({context}). The reference "
                             "fools this model within max_iter steps of normalized ascent on the target's score "
                             f"(steps learning_rate * g / ||g||_2).{diagnosis}") from None
    state.check(name, model)
    return out


# ----------------------------------------------------------------------------- class visualization


def _class_step_variants(img: torch.Tensor, model: nn.Module, target: int, l2_reg: float, lr: float) -> Diagnoses:
    def compute() -> dict[str, torch.Tensor]:
        def step(objective: Callable[[torch.Tensor], torch.Tensor], normalize: bool = True,
                 sign: float = 1.0) -> torch.Tensor:
            x = img.detach().clone().requires_grad_(True)
            (gr,) = torch.autograd.grad(objective(x), x)
            return img + sign * lr * (gr / gr.norm() if normalize else gr)

        return {
            "it matches a step of gradient DESCENT; ascend: img += learning_rate * g / ||g||.":
                step(lambda x: model(x)[0, target] - l2_reg * (x * x).sum(), sign=-1.0),
            "it matches an unnormalized step; divide the gradient by its L2 norm.":
                step(lambda x: model(x)[0, target] - l2_reg * (x * x).sum(), normalize=False),
            "it matches a penalty l2_reg * ||img|| (not squared); use l2_reg * ||img||^2.":
                step(lambda x: model(x)[0, target] - l2_reg * x.norm()),
            "it matches the step without the L2 penalty; subtract l2_reg * ||img||^2 from the score.":
                step(lambda x: model(x)[0, target]),
            "it matches ADDING the L2 penalty; the objective is S_y - l2_reg * ||img||^2.":
                step(lambda x: model(x)[0, target] + l2_reg * (x * x).sum()),
        }
    return compute


def _run_class_step(student_fn: Callable[..., Any], img: torch.Tensor, model: nn.Module, target: int,
                    l2_reg: float, lr: float, context: str) -> torch.Tensor:
    name = "class_visualization_update_step"
    state = _ModelState(model)
    work = img.clone()
    try:
        student_fn(work, model, target, l2_reg, lr)
    except NotImplementedError:
        raise AssertionError(f"{name} is not implemented yet (it raised NotImplementedError).") from None
    except Exception as exc:
        raise AssertionError(f"{name} raised {type(exc).__name__}: {str(exc)[:300]} ({context}). Note that img "
                             "does not require grad: take the gradient on a copy that does.") from None
    state.check(name, model)
    if torch.equal(work, img):
        raise AssertionError(f"{name} did not change img ({context}); update it in place, e.g. "
                             "`with torch.no_grad(): img += learning_rate * g / g.norm()`.")
    return work.detach()


@_one_thread
def class_visualization_update_step(student_fn: Callable[..., Any]) -> None:
    """Hidden test of ``class_visualization_update_step``."""
    name = "class_visualization_update_step"
    ref = load_solutions(ASSIGNMENT).class_visualization_update_step
    for i, case in enumerate(load_reference(ASSIGNMENT)["cases"][name]):
        model, (img, target), kwargs = _stored_case(case)
        context = (f"stored case {i}: a small CNN, target {target}, l2_reg {kwargs['l2_reg']:g}, "
                   f"learning_rate {kwargs['learning_rate']:g}")
        got = _run_class_step(student_fn, img, model, target, kwargs["l2_reg"], kwargs["learning_rate"], context)
        _compare(name, got, case["output"], context,
                 _class_step_variants(img, model, target, kwargs["l2_reg"], kwargs["learning_rate"]))
    g = fresh_generator()
    size = int(torch.randint(56, 81, (1,), generator=g))
    img = torch.randn(1, 3, size, size, generator=g, dtype=torch.float64)
    l2_reg = float(10 ** torch.empty(1).uniform_(-3, -1, generator=g))
    lr = float(torch.empty(1).uniform_(0.5, 30.0, generator=g))
    model = squeezenet(dtype=torch.float64)
    target = int(top_classes(model, img, g)[0])
    context = f"random-init SqueezeNet 1.1, a (1, 3, {size}, {size}) image, l2_reg {l2_reg:.3g}, lr {lr:.3g}"
    expected = img.clone()
    ref(expected, model, target, l2_reg, lr)
    got = _run_class_step(student_fn, img, model, target, l2_reg, lr, context)
    _compare(name, got, expected, context, _class_step_variants(img, model, target, l2_reg, lr))
    img32 = img.float()
    model = squeezenet(dtype=torch.float32)
    got = _run_class_step(student_fn, img32, model, target, l2_reg, lr, "float32 image")
    check_tensor(name, got, shape=tuple(img32.shape), dtype=torch.float32, device=img32.device)
    expected = img32.clone()
    ref(expected, model, target, l2_reg, lr)
    _compare(name, got, expected, "float32 image", rtol=RTOL32, atol=ATOL32)


# --------------------------------------------------------------------------------- stored references


def _stored_case(case: dict[str, Any]) -> tuple[nn.Module, tuple, dict[str, Any]]:
    spec = case["inputs"]["model"]
    model = tiny_cnn(0, inplace=spec["inplace"], num_classes=spec["num_classes"], state_dict=spec["state_dict"])
    return model, tuple(case["inputs"]["args"]), dict(case["inputs"].get("kwargs", {}))


def make_references(sol: SimpleNamespace) -> dict[str, list[dict[str, Any]]]:
    """Reference cases on seeded float64 inputs and small CNNs whose weights are stored with the case."""
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

    cases: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "compute_saliency_maps", "compute_guided_backprop", "compute_gradcam", "compute_occlusion_map",
        "make_fooling_image", "class_visualization_update_step")}
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
