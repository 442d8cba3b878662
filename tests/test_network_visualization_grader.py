"""The hidden tests of ``network_visualization`` reject the common wrong answers and accept correct ones.

Each wrong answer below is a small function written the way a student might get it wrong, independently
of the spec's own wrong-answer bodies (``tests/test_hidden_test_specs.py`` runs those); the judge, run
in-process through :func:`~autograder.judging.judge.judge_in_process` (the TA path: same specs, same
serialization of every call as while grading), must fail it with a message that names the mistake.
The reference solutions and a few correct alternatives (CS231n-style ``.backward()`` code, tensor hooks
instead of module hooks, all window masks at once) must pass.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder.judging.judge import judge_in_process
from autograder.judging.references import build_reference, compare_cases, load_reference, reference_path
from autograder.judging.solutions import load_solutions
from autograder.specs import network_visualization as hidden

ASSIGNMENT = "network_visualization"


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def judge(function: str, student: Callable) -> None:
    """Judge ``student`` as the notebook's ``function`` (the judge finds the spec by ``__name__``)."""
    named = types.FunctionType(student.__code__, student.__globals__, function, student.__defaults__,
                               student.__closure__)
    judge_in_process(ASSIGNMENT, named)


def _relus(model: nn.Module) -> list[nn.ReLU]:
    return [m for m in model.modules() if isinstance(m, nn.ReLU)]


def _grad(X: torch.Tensor, y: torch.Tensor, model: nn.Module, objective: str = "score") -> torch.Tensor:
    X = X.detach().clone().requires_grad_(True)
    scores = model(X)
    if objective == "score":
        value = scores.gather(1, y.view(-1, 1)).sum()
    elif objective == "loss":
        value = F.cross_entropy(scores, y)
    else:
        value = F.softmax(scores, dim=1).gather(1, y.view(-1, 1)).sum()
    (g,) = torch.autograd.grad(value, X)
    return g


# ------------------------------------------------------------------------------------ saliency


def saliency_of_the_loss(X, y, model):
    return _grad(X, y, model, "loss").abs().amax(dim=1)


def saliency_of_the_probability(X, y, model):
    return _grad(X, y, model, "probability").abs().amax(dim=1)


def saliency_summed_over_channels(X, y, model):
    return _grad(X, y, model).abs().sum(dim=1)


def saliency_without_abs(X, y, model):
    return _grad(X, y, model).amax(dim=1)


def saliency_that_freezes_the_model(X, y, model):
    model.requires_grad_(False)
    return _grad(X, y, model).abs().amax(dim=1)


def saliency_cs231n_style(X, y, model):
    X = X.clone().requires_grad_()
    scores = model(X)
    scores.gather(1, y.view(-1, 1)).squeeze().sum().backward()
    return X.grad.abs().max(dim=1)[0]


# ----------------------------------------------------------------------------- guided backprop


def _guided(X, y, model, rule: str, objective: str = "score", restore: bool = True, use_finally: bool = True,
            toggle_inplace: bool = True):
    relus = _relus(model)
    flags = [m.inplace for m in relus]

    def hook(module, grad_input, grad_output):
        return ((grad_input[0] if rule == "guided" else grad_output[0]).clamp(min=0),)

    def cleanup():
        for h in handles:
            h.remove()
        if restore:
            for m, f in zip(relus, flags):
                m.inplace = f

    handles = []
    for m in relus:
        if toggle_inplace:
            m.inplace = False
        handles.append(m.register_full_backward_hook(hook))
    if not use_finally:
        g = _grad(X, y, model, objective)
        cleanup()
        return g
    try:
        return _grad(X, y, model, objective)
    finally:
        cleanup()


def guided_plain_gradient(X, y, model):
    return _grad(X, y, model)


def guided_deconvnet_rule(X, y, model):
    return _guided(X, y, model, "deconvnet")


def guided_of_the_loss(X, y, model):
    return _guided(X, y, model, "guided", objective="loss")


def guided_ignoring_inplace_relus(X, y, model):
    return _guided(X, y, model, "guided", toggle_inplace=False)


def guided_without_finally(X, y, model):
    return _guided(X, y, model, "guided", use_finally=False)


def guided_leaving_relus_non_inplace(X, y, model):
    return _guided(X, y, model, "guided", restore=False)


def guided_with_legacy_backward_hooks(X, y, model):
    """Correct alternative: the deprecated Module.register_backward_hook, in-place ReLUs turned off."""
    relus = _relus(model)
    flags = [m.inplace for m in relus]
    handles = []
    try:
        for m in relus:
            m.inplace = False
            handles.append(m.register_backward_hook(lambda module, gin, gout: (gin[0].clamp(min=0),)))
        return _grad(X, y, model)
    finally:
        for h in handles:
            h.remove()
        for m, f in zip(relus, flags):
            m.inplace = f


def guided_with_tensor_hooks(X, y, model):
    """Correct alternative: a forward hook on each ReLU clamps the gradient at its output."""
    def forward_hook(module, inputs, output):
        output.register_hook(lambda grad: grad.clamp(min=0))

    handles = [m.register_forward_hook(forward_hook) for m in _relus(model)]
    try:
        return _grad(X, y, model)
    finally:
        for h in handles:
            h.remove()


# ------------------------------------------------------------------------------------ Grad-CAM


def _cam(X, y, model, layer, relu=True, normalize="max", align=False, objective="score",
         toggle_inplace=True, use_finally=True):
    relus = _relus(model)
    flags = [m.inplace for m in relus]
    stored = {}
    handle = layer.register_forward_hook(lambda m, i, o: stored.__setitem__("A", o))
    if toggle_inplace:
        for m in relus:
            m.inplace = False

    def compute():
        Xg = X.detach().clone().requires_grad_(True)
        s = model(Xg)
        value = s.gather(1, y.view(-1, 1)).sum() if objective == "score" else F.cross_entropy(s, y)
        return torch.autograd.grad(value, stored["A"])[0]

    def cleanup():
        handle.remove()
        for m, f in zip(relus, flags):
            m.inplace = f

    if use_finally:
        try:
            G = compute()
        finally:
            cleanup()
    else:
        G = compute()
        cleanup()
    cam = (G.mean(dim=(2, 3), keepdim=True) * stored["A"].detach()).sum(dim=1, keepdim=True)
    cam = F.relu(cam) if relu else cam
    cam = F.interpolate(cam, size=X.shape[-2:], mode="bilinear", align_corners=align)[:, 0]
    peak = cam.amax(dim=(1, 2), keepdim=True)
    if normalize == "max":
        return torch.where(peak > 0, cam / peak.clamp_min(1e-300), torch.zeros_like(cam))
    if normalize == "unguarded":
        return cam / peak
    low = cam.amin(dim=(1, 2), keepdim=True)
    return (cam - low) / (peak - low + 1e-300)


def gradcam_without_relu(X, y, model, layer):
    return _cam(X, y, model, layer, relu=False)


def gradcam_min_max_normalized(X, y, model, layer):
    return _cam(X, y, model, layer, normalize="min-max")


def gradcam_dividing_zero_by_zero(X, y, model, layer):
    return _cam(X, y, model, layer, normalize="unguarded")


def gradcam_align_corners(X, y, model, layer):
    return _cam(X, y, model, layer, align=True)


def gradcam_of_the_loss(X, y, model, layer):
    return _cam(X, y, model, layer, objective="loss")


def gradcam_ignoring_inplace_relus(X, y, model, layer):
    return _cam(X, y, model, layer, toggle_inplace=False)


def gradcam_without_finally(X, y, model, layer):
    return _cam(X, y, model, layer, use_finally=False)


def gradcam_with_backward_and_tensor_hook(X, y, model, layer):
    """Correct alternative: .backward() and a tensor hook on the stored activations, inplace turned off."""
    saved = {}

    def forward_hook(module, inputs, output):
        saved["A"] = output.detach()
        output.register_hook(lambda grad: saved.__setitem__("G", grad))

    relus = _relus(model)
    flags = [m.inplace for m in relus]
    handle = layer.register_forward_hook(forward_hook)
    try:
        for m in relus:
            m.inplace = False
        X = X.clone().requires_grad_(True)
        model(X).gather(1, y.view(-1, 1)).sum().backward()
    finally:
        handle.remove()
        for m, f in zip(relus, flags):
            m.inplace = f
    weights = saved["G"].mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * saved["A"]).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=X.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
    peak = cam.flatten(1).max(dim=1).values.view(-1, 1, 1)
    return torch.where(peak > 0, cam / torch.where(peak > 0, peak, torch.ones_like(peak)), cam)


# ----------------------------------------------------------------------------------- occlusion


def _occlusion(X, y, model, patch=16, stride=8, baseline=0.0, output="prob", mean=True, full_only=False,
               sign=1.0, use_baseline=True):
    """A loop over windows (batched over images), with switches for the wrong answers."""
    N, _, H, W = X.shape
    idx = torch.arange(N)

    def starts(size):
        last = size - patch if full_only else math.ceil((size - patch) / stride) * stride
        return range(0, last + 1, stride)

    def value(scores):
        return (F.softmax(scores, dim=1) if output == "prob" else scores)[idx, y]

    with torch.no_grad():
        clean = value(model(X))
        total = torch.zeros(N, H, W, dtype=X.dtype)
        count = torch.zeros(H, W, dtype=X.dtype)
        for top in starts(H):
            for left in starts(W):
                occluded = X.clone()
                occluded[:, :, top : top + patch, left : left + patch] = baseline if use_baseline else 0.0
                drop = sign * (clean - value(model(occluded)))
                total[:, top : top + patch, left : left + patch] += drop[:, None, None]
                count[top : top + patch, left : left + patch] += 1
    return total / count.clamp_min(1) if mean else total


def occlusion_of_the_scores(X, y, model, patch=16, stride=8, baseline=0.0):
    return _occlusion(X, y, model, patch, stride, baseline, output="score")


def occlusion_summed(X, y, model, patch=16, stride=8, baseline=0.0):
    return _occlusion(X, y, model, patch, stride, baseline, mean=False)


def occlusion_with_full_windows_only(X, y, model, patch=16, stride=8, baseline=0.0):
    return _occlusion(X, y, model, patch, stride, baseline, full_only=True)


def occlusion_with_the_sign_flipped(X, y, model, patch=16, stride=8, baseline=0.0):
    return _occlusion(X, y, model, patch, stride, baseline, sign=-1.0)


def occlusion_ignoring_the_baseline(X, y, model, patch=16, stride=8, baseline=0.0):
    return _occlusion(X, y, model, patch, stride, baseline, use_baseline=False)


def occlusion_by_loops(X, y, model, patch=16, stride=8, baseline=0.0):
    """Right values, but one forward pass per window."""
    return _occlusion(X, y, model, patch, stride, baseline)


def occlusion_with_all_masks(X, y, model, patch=16, stride=8, baseline=0.0):
    """Correct alternative: all (K, H, W) window masks at once, one image's K windows per forward pass."""
    N, C, H, W = X.shape
    tops = torch.arange(0, math.ceil((H - patch) / stride) * stride + 1, stride)
    lefts = torch.arange(0, math.ceil((W - patch) / stride) * stride + 1, stride)
    rows = torch.arange(H)[None, :, None]
    cols = torch.arange(W)[None, None, :]
    t, left = torch.cartesian_prod(tops, lefts).unbind(1)
    masks = ((rows >= t[:, None, None]) & (rows < t[:, None, None] + patch)
             & (cols >= left[:, None, None]) & (cols < left[:, None, None] + patch))  # (K, H, W)
    with torch.no_grad():
        clean = F.softmax(model(X), dim=1)[torch.arange(N), y]
        drops = torch.stack([
            clean[i] - F.softmax(model(torch.where(masks[:, None], torch.tensor(baseline, dtype=X.dtype), X[i])),
                                 dim=1)[:, y[i]]
            for i in range(N)])  # (N, K)
    m = masks.to(X.dtype)
    return torch.einsum("nk,khw->nhw", drops, m) / m.sum(dim=0)


# ------------------------------------------------------------------------------ fooling images


def _fool(X, target_y, model, learning_rate=1.0, max_iter=100, step="normalized", early_stop=True,
          detach=True, objective="score", raise_on_failure=True):
    X_fooling = X.detach().clone().requires_grad_(True)
    for it in range(max_iter + 1):
        scores = model(X_fooling)
        if early_stop and int(scores.argmax(dim=1)) == target_y:
            return X_fooling.detach() if detach else X_fooling
        if it == max_iter:
            break
        if objective == "score":
            value = scores[0, target_y]
        else:
            value = -F.cross_entropy(scores, torch.tensor([target_y]))
        (g,) = torch.autograd.grad(value, X_fooling)
        dX = learning_rate * (g / g.norm() if step == "normalized" else g)
        X_fooling = (X_fooling + dX).detach().requires_grad_(True)
    if not early_stop or not raise_on_failure:
        return X_fooling.detach() if detach else X_fooling
    raise RuntimeError("not fooled")


def fooling_with_the_graph_attached(X, target_y, model, learning_rate=1.0, max_iter=100):
    return _fool(X, target_y, model, learning_rate, max_iter, detach=False)


def fooling_without_normalization(X, target_y, model, learning_rate=1.0, max_iter=100):
    return _fool(X, target_y, model, learning_rate, max_iter, step="raw")


def fooling_without_early_stop(X, target_y, model, learning_rate=1.0, max_iter=100):
    return _fool(X, target_y, model, learning_rate, max_iter, early_stop=False)


def fooling_by_the_loss(X, target_y, model, learning_rate=1.0, max_iter=100):
    return _fool(X, target_y, model, learning_rate, max_iter, objective="loss")


def fooling_that_never_raises(X, target_y, model, learning_rate=1.0, max_iter=100):
    return _fool(X, target_y, model, learning_rate, max_iter, raise_on_failure=False)


def fooling_in_place_on_its_input(X, target_y, model, learning_rate=1.0, max_iter=100):
    out = _fool(X, target_y, model, learning_rate, max_iter)
    X.copy_(out)
    return out


def fooling_cs231n_style(X, target_y, model, learning_rate=1.0, max_iter=100):
    """Correct alternative: .backward() and .grad, as CS231n's starter code suggests."""
    X_fooling = X.clone().requires_grad_()
    for _ in range(max_iter):
        scores = model(X_fooling)
        if scores.data.max(1)[1].item() == target_y:
            return X_fooling.detach()
        scores[0, target_y].backward()
        g = X_fooling.grad
        X_fooling.data += learning_rate * g / g.norm()
        X_fooling.grad.zero_()
    if model(X_fooling).argmax().item() == target_y:
        return X_fooling.detach()
    raise RuntimeError(f"still not class {target_y} after {max_iter} steps")


# ------------------------------------------------------------------------------ class visualization


def _class_step(img, model, target_y, l2_reg, learning_rate, sign=1.0, normalize=True, penalty="squared",
                in_place=True):
    x = img.detach().clone().requires_grad_(True)
    reg = (x * x).sum() if penalty == "squared" else x.norm() if penalty == "norm" else 0.0
    (g,) = torch.autograd.grad(model(x)[0, target_y] - l2_reg * reg, x)
    update = sign * learning_rate * (g / g.norm() if normalize else g)
    if not in_place:
        return img + update
    with torch.no_grad():
        img += update


def class_step_descending(img, model, target_y, l2_reg, learning_rate):
    _class_step(img, model, target_y, l2_reg, learning_rate, sign=-1.0)


def class_step_unnormalized(img, model, target_y, l2_reg, learning_rate):
    _class_step(img, model, target_y, l2_reg, learning_rate, normalize=False)


def class_step_with_unsquared_penalty(img, model, target_y, l2_reg, learning_rate):
    _class_step(img, model, target_y, l2_reg, learning_rate, penalty="norm")


def class_step_without_penalty(img, model, target_y, l2_reg, learning_rate):
    _class_step(img, model, target_y, l2_reg, learning_rate, penalty="none")


def class_step_returning_a_new_image(img, model, target_y, l2_reg, learning_rate):
    return _class_step(img, model, target_y, l2_reg, learning_rate, in_place=False)


def class_step_also_returning_img(img, model, target_y, l2_reg, learning_rate):
    _class_step(img, model, target_y, l2_reg, learning_rate)
    return img


def class_step_cs231n_style(img, model, target_y, l2_reg, learning_rate):
    """Correct alternative: makes img require grad and uses .backward(), as CS231n does."""
    img.requires_grad_(True)
    score = model(img)[0, target_y] - l2_reg * torch.square(torch.linalg.norm(img))
    score.backward()
    with torch.no_grad():
        img += learning_rate * img.grad / torch.linalg.norm(img.grad)
        img.grad.zero_()


# ------------------------------------------------------------------------------------------ tests

WRONG: list[tuple[str, Callable, str]] = [
    ("compute_saliency_maps", saliency_of_the_loss, "cross-entropy loss"),
    ("compute_saliency_maps", saliency_of_the_probability, "softmax probability"),
    ("compute_saliency_maps", saliency_summed_over_channels, "SUM of |gradient|"),
    ("compute_saliency_maps", saliency_without_abs, "WITHOUT the absolute value"),
    ("compute_saliency_maps", saliency_that_freezes_the_model, "changed requires_grad"),
    ("compute_guided_backprop", guided_plain_gradient, "plain gradient"),
    ("compute_guided_backprop", guided_deconvnet_rule, "deconvnet"),
    ("compute_guided_backprop", guided_of_the_loss, "cross-entropy loss"),
    ("compute_guided_backprop", guided_ignoring_inplace_relus, "in-place ReLUs"),
    ("compute_guided_backprop", guided_without_finally, "left hooks on the model after it raised"),
    ("compute_guided_backprop", guided_leaving_relus_non_inplace, "inplace flag"),
    ("compute_gradcam", gradcam_without_relu, "WITHOUT the ReLU"),
    ("compute_gradcam", gradcam_min_max_normalized, "min-max normalization"),
    ("compute_gradcam", gradcam_dividing_zero_by_zero, "NaN or inf"),
    ("compute_gradcam", gradcam_align_corners, "align_corners=True"),
    ("compute_gradcam", gradcam_of_the_loss, "gradient of the loss"),
    ("compute_gradcam", gradcam_ignoring_inplace_relus, "in-place ReLUs"),
    ("compute_gradcam", gradcam_without_finally, "left hooks on the model after it raised"),
    ("compute_occlusion_map", occlusion_of_the_scores, "raw scores"),
    ("compute_occlusion_map", occlusion_summed, "SUM of the drops"),
    ("compute_occlusion_map", occlusion_with_full_windows_only, "cut off at the border"),
    ("compute_occlusion_map", occlusion_with_the_sign_flipped, r"P\(occluded\) - P\(clean\)"),
    ("compute_occlusion_map", occlusion_ignoring_the_baseline, "set the occluded pixels to `baseline`"),
    ("compute_occlusion_map", occlusion_by_loops, "one forward pass per window"),
    ("make_fooling_image", fooling_with_the_graph_attached, "attached to the autograd graph"),
    ("make_fooling_image", fooling_without_normalization, "without normalization|divide the gradient by its L2"),
    ("make_fooling_image", fooling_without_early_stop, "stop as soon as"),
    ("make_fooling_image", fooling_by_the_loss, "cross-entropy loss"),
    ("make_fooling_image", fooling_that_never_raises, "must raise a RuntimeError"),
    ("make_fooling_image", fooling_in_place_on_its_input, "modified its argument"),
    ("class_visualization_update_step", class_step_descending, "DESCENT"),
    ("class_visualization_update_step", class_step_unnormalized, "unnormalized step"),
    ("class_visualization_update_step", class_step_with_unsquared_penalty, "not squared"),
    ("class_visualization_update_step", class_step_without_penalty, "without the L2 penalty"),
    ("class_visualization_update_step", class_step_returning_a_new_image, "update it in place"),
    ("class_visualization_update_step", class_step_also_returning_img, "returns None"),
]

CORRECT_ALTERNATIVES: list[tuple[str, Callable]] = [
    ("compute_saliency_maps", saliency_cs231n_style),
    ("compute_guided_backprop", guided_with_tensor_hooks),
    ("compute_guided_backprop", guided_with_legacy_backward_hooks),
    ("compute_gradcam", gradcam_with_backward_and_tensor_hook),
    ("compute_occlusion_map", occlusion_with_all_masks),
    ("make_fooling_image", fooling_cs231n_style),
    ("class_visualization_update_step", class_step_cs231n_style),
]

FUNCTIONS = sorted({name for name, _, _ in WRONG})


@pytest.mark.parametrize("function, student, message", WRONG, ids=[s.__name__ for _, s, _ in WRONG])
def test_hidden_test_rejects_common_wrong_answer(function: str, student: Callable, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        judge(function, student)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_hidden_test_passes_the_reference_solution(function: str) -> None:
    judge_in_process(ASSIGNMENT, getattr(load_solutions(ASSIGNMENT), function))


@pytest.mark.parametrize("function, student", CORRECT_ALTERNATIVES, ids=[s.__name__ for _, s in CORRECT_ALTERNATIVES])
def test_hidden_test_passes_correct_alternative_implementations(function: str, student: Callable) -> None:
    judge(function, student)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_hidden_test_rejects_the_release_stub(function: str) -> None:
    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        judge(function, stub)


def test_stored_cases_catch_every_wrong_answer_deterministically() -> None:
    """Fresh inputs are random; the stored cases alone must already reject the wrong values."""
    cases = load_reference(ASSIGNMENT)["cases"]
    value_mistakes = [(f, s) for f, s, _ in WRONG if f not in ("make_fooling_image", "class_visualization_update_step")
                      and s not in (saliency_that_freezes_the_model, guided_without_finally,
                                    guided_leaving_relus_non_inplace, gradcam_without_finally,
                                    occlusion_by_loops)]
    for function, student in value_mistakes:
        caught = False
        for case in cases[function]:
            model, args, kwargs = hidden._stored_case(case)
            extra = [model.get_submodule(kwargs["layer"])] if "layer" in kwargs else \
                [kwargs[k] for k in ("patch", "stride", "baseline") if k in kwargs]
            try:
                got = student(*[a.clone() for a in args], model, *extra)
            except RuntimeError:
                caught = True
                break
            expected = case["output"]
            if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-6, atol=1e-7 * float(
                    expected.abs().max()) + 1e-12, equal_nan=False):
                caught = True
                break
        assert caught, f"no stored case of {function} tells {student.__name__} from the reference"


def test_stored_references_are_reproduced_by_the_notebook_solutions() -> None:
    stored = load_reference(ASSIGNMENT)
    fresh = build_reference(ASSIGNMENT)
    assert compare_cases(stored["cases"], fresh["cases"], hidden.REFERENCE_RTOL, hidden.REFERENCE_ATOL) == []
    assert reference_path(ASSIGNMENT).stat().st_size < 1_000_000


def test_specs_do_not_use_the_notebook_global_model() -> None:
    import inspect

    source = inspect.getsource(hidden)
    assert "load_classifier" not in source and "get_ipython" not in source


def test_models_sent_to_the_kernel_are_importable_there() -> None:
    """The kernel can import torch, torchvision and cs_lib, never autograder (hidden while grading)."""
    from cs_lib.grading.models import CountingModel

    models = [hidden.tiny_cnn(0), hidden.squeezenet(), hidden.failing_model(1), hidden.stall_model(),
              CountingModel(hidden.tiny_cnn(2))]
    modules = {type(m).__module__ for model in models for m in model.modules()}
    assert all(name.split(".")[0] in ("torch", "torchvision", "cs_lib") for name in modules), modules


def test_the_forward_count_comes_from_the_kernels_report() -> None:
    """One forward pass per window is caught from the kernel's module_report, not from the grader's copy."""
    with pytest.raises(AssertionError, match=r"ran the model \d+ times for \d+ windows"):
        judge("compute_occlusion_map", occlusion_by_loops)
