"""The hidden tests of ``style_transfer``, run by the judge in-process: the reference and correct
alternatives pass, and each common wrong answer is rejected, with the hint that names it.

Every function goes through :func:`~autograder.judging.judge.judge_in_process` (the TA path: the same
specs and the same serialization of every call as while grading). Wrong answers are plain functions
in this module (so that ``inspect.getsource`` sees their loops in the kernel, as it does for notebook
cells); they are written independently of the spec's own wrong-answer bodies, which
``tests/test_hidden_test_specs.py`` runs.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import nbformat
import pytest
import torch
import torch.nn.functional as F

from autograder import source_notebook
from autograder.judging.judge import judge_in_process
from autograder.judging.solutions import answer_cells, load_solutions
from autograder.specs import style_transfer as grade

ASSIGNMENT = "style_transfer"


def judge(name: str, student: Callable) -> None:
    """Judge ``student`` as the notebook's function ``name`` (the judge finds the spec by ``__name__``)."""
    named = types.FunctionType(student.__code__, student.__globals__, name, student.__defaults__,
                               student.__closure__)
    named.__kwdefaults__ = student.__kwdefaults__
    judge_in_process(ASSIGNMENT, named)


@pytest.fixture(autouse=True)
def quiet_single_thread(monkeypatch: pytest.MonkeyPatch, single_torch_thread: None) -> None:
    """No progress bars (grading mode) and one intra-op thread."""
    monkeypatch.setenv("DLCV_GRADING", "1")


@pytest.fixture(scope="module")
def sol() -> types.SimpleNamespace:
    return load_solutions("style_transfer")


def test_reference_solutions_pass_every_hidden_test(sol) -> None:
    for name in ("content_loss", "gram_matrix", "style_loss", "tv_loss", "style_transfer"):
        judge_in_process(ASSIGNMENT, getattr(sol, name))


# ------------------------------------------------------------------------------------------
# Correct alternatives (different rounding, same mathematics) must pass
# ------------------------------------------------------------------------------------------


def alt_content_loss(content_weight, content_current, content_original):
    return F.mse_loss(content_current, content_original, reduction="sum") * content_weight


def alt_gram_matrix(features, normalize=True):
    n, c, h, w = features.shape
    flat = features.flatten(2)
    gram = flat @ flat.transpose(-1, -2)
    return gram.div(c * h * w) if normalize else gram


def alt_gram_matrix_einsum(features, normalize=True):
    gram = torch.einsum("nchw,ndhw->ncd", features, features)
    return gram / features[0].numel() if normalize else gram


def alt_style_loss(feats, style_layers, style_targets, style_weights):
    return sum(w * (alt_gram_matrix(feats[layer]) - t).pow(2).sum()
               for layer, t, w in zip(style_layers, style_targets, style_weights))


def alt_tv_loss(img, tv_weight):
    return tv_weight * (torch.diff(img, dim=-1).square().sum() + torch.diff(img, dim=-2).square().sum())


@pytest.mark.parametrize("name, fn", [
    ("content_loss", alt_content_loss), ("gram_matrix", alt_gram_matrix), ("gram_matrix", alt_gram_matrix_einsum),
    ("style_loss", alt_style_loss), ("tv_loss", alt_tv_loss),
])
def test_a_correct_alternative_formulation_passes(name: str, fn: Callable) -> None:
    for _ in range(3):  # fresh inputs each time
        judge(name, fn)


def _student_namespace(**overrides: Callable) -> dict[str, object]:
    """The notebook's imports and answer cells executed as a student's kernel would, then overrides."""
    nb = nbformat.read(source_notebook("style_transfer"), as_version=4)
    namespace: dict[str, object] = {"__name__": "student"}
    for cell in answer_cells(nb):
        exec(compile(cell.source, "<student cell>", "exec"), namespace)  # noqa: S102 - our notebook
    namespace.update(overrides)
    return namespace


def test_the_loop_in_a_namespace_with_other_losses_passes_repeatedly() -> None:
    """The stand-ins replace the student's losses, whatever they are, and fresh draws agree each time."""
    ns = _student_namespace(content_loss=alt_content_loss, gram_matrix=alt_gram_matrix_einsum,
                            style_loss=alt_style_loss, tv_loss=alt_tv_loss)
    for _ in range(3):
        judge_in_process(ASSIGNMENT, ns["style_transfer"])


# ------------------------------------------------------------------------------------------
# Wrong answers of the four losses
# ------------------------------------------------------------------------------------------


def content_mean(content_weight, content_current, content_original):
    return content_weight * torch.mean((content_current - content_original) ** 2)


def content_no_weight(content_weight, content_current, content_original):
    return torch.sum((content_current - content_original) ** 2)


def content_norm(content_weight, content_current, content_original):
    return content_weight * torch.norm(content_current - content_original)


def content_float(content_weight, content_current, content_original):
    return (content_weight * torch.sum((content_current - content_original) ** 2)).item()


def gram_hw(features, normalize=True):
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    g = torch.bmm(f, f.transpose(1, 2))
    return g / (h * w) if normalize else g


def gram_never_normalized(features, normalize=True):
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2))


def gram_always_normalized(features, normalize=True):
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def gram_across_batch(features, normalize=True):
    n, c, h, w = features.shape
    f = features.transpose(0, 1).reshape(c, n * h * w)
    g = f @ f.t()
    return g / (n * c * h * w) if normalize else g


def gram_across_batch_broadcast(features, normalize=True):
    n, c, h, w = features.shape
    f = features.transpose(0, 1).reshape(c, n * h * w)
    g = (f @ f.t()).expand(n, c, c)
    return g / (c * h * w) if normalize else g


def gram_batch_mixed_by_reshape(features, normalize=True):
    n, c, h, w = features.shape
    f = features.reshape(n, h * w, c).transpose(1, 2)  # reshape instead of a transpose: scrambles channels
    g = torch.bmm(f, f.transpose(1, 2))
    return g / (c * h * w) if normalize else g


def gram_with_loop(features, normalize=True):
    n, c, h, w = features.shape
    out = []
    for i in range(n):
        f = features[i].reshape(c, h * w)
        out.append(f @ f.t())
    g = torch.stack(out)
    return g / (c * h * w) if normalize else g


def style_no_weights(feats, style_layers, style_targets, style_weights):
    return sum(torch.sum((alt_gram_matrix(feats[layer]) - t) ** 2) for layer, t in zip(style_layers, style_targets))


def style_mean(feats, style_layers, style_targets, style_weights):
    return sum(w * torch.mean((alt_gram_matrix(feats[layer]) - t) ** 2)
               for layer, t, w in zip(style_layers, style_targets, style_weights))


def style_frobenius(feats, style_layers, style_targets, style_weights):
    return sum(w * torch.norm(alt_gram_matrix(feats[layer]) - t)
               for layer, t, w in zip(style_layers, style_targets, style_weights))


def style_unnormalized_gram(feats, style_layers, style_targets, style_weights):
    return sum(w * torch.sum((alt_gram_matrix(feats[layer], normalize=False) - t) ** 2)
               for layer, t, w in zip(style_layers, style_targets, style_weights))


def style_overwrites(feats, style_layers, style_targets, style_weights):
    loss = 0
    for layer, t, w in zip(style_layers, style_targets, style_weights):
        loss = w * torch.sum((alt_gram_matrix(feats[layer]) - t) ** 2)
    return loss


def style_targets_by_layer(feats, style_layers, style_targets, style_weights):
    return sum(style_weights[i] * torch.sum((alt_gram_matrix(feats[layer]) - style_targets[layer]) ** 2)
               for i, layer in enumerate(style_layers))


def style_feats_by_position(feats, style_layers, style_targets, style_weights):
    return sum(style_weights[i] * torch.sum((alt_gram_matrix(feats[i]) - style_targets[i]) ** 2)
               for i in range(len(style_layers)))


def tv_vertical_only(img, tv_weight):
    return tv_weight * torch.sum((img[:, :, 1:, :] - img[:, :, :-1, :]) ** 2)


def tv_horizontal_only(img, tv_weight):
    return tv_weight * torch.sum((img[:, :, :, 1:] - img[:, :, :, :-1]) ** 2)


def tv_mean(img, tv_weight):
    return tv_weight * (torch.mean((img[:, :, 1:, :] - img[:, :, :-1, :]) ** 2)
                        + torch.mean((img[:, :, :, 1:] - img[:, :, :, :-1]) ** 2))


def tv_no_weight(img, tv_weight):
    return (torch.sum((img[:, :, 1:, :] - img[:, :, :-1, :]) ** 2)
            + torch.sum((img[:, :, :, 1:] - img[:, :, :, :-1]) ** 2))


def tv_abs(img, tv_weight):
    return tv_weight * (torch.sum((img[:, :, 1:, :] - img[:, :, :-1, :]).abs())
                        + torch.sum((img[:, :, :, 1:] - img[:, :, :, :-1]).abs()))


def tv_wraps_around(img, tv_weight):
    return tv_weight * (torch.sum((img - img.roll(1, 2)) ** 2) + torch.sum((img - img.roll(1, 3)) ** 2))


def tv_with_loop(img, tv_weight):
    total = 0
    for dim in (2, 3):
        total = total + torch.diff(img, dim=dim).pow(2).sum()
    return tv_weight * total


def tv_with_comprehension(img, tv_weight):
    return tv_weight * sum(torch.diff(img, dim=d).pow(2).sum() for d in (2, 3))


def tv_channels_and_width(img, tv_weight):
    return tv_weight * (torch.sum((img[:, 1:] - img[:, :-1]) ** 2) + torch.sum((img[..., 1:] - img[..., :-1]) ** 2))


WRONG_LOSSES = [
    ("content_loss", content_mean, "averaged"),
    ("content_loss", content_no_weight, "forgot to multiply by content_weight"),
    ("content_loss", content_norm, "a norm, not its square"),
    ("content_loss", content_float, "expected a torch.Tensor"),
    ("gram_matrix", gram_hw, "divided by H \\* W only"),
    ("gram_matrix", gram_never_normalized, "looks unnormalised"),
    ("gram_matrix", gram_always_normalized, "Do not normalise when normalize=False"),
    ("gram_matrix", gram_across_batch, "one C x C Gram matrix per image"),
    ("gram_matrix", gram_across_batch_broadcast, "not one for the whole batch"),
    ("gram_matrix", gram_batch_mixed_by_reshape, "differ from the reference"),
    ("gram_matrix", gram_with_loop, "uses a Python `for` loop"),
    ("style_loss", style_no_weights, "forgot the style weights"),
    ("style_loss", style_mean, "averaged the squared Gram differences"),
    ("style_loss", style_frobenius, "Frobenius norm"),
    ("style_loss", style_unnormalized_gram, "Use the normalised Gram matrix"),
    ("style_loss", style_overwrites, "only the last one"),
    ("style_loss", style_targets_by_layer, "style_targets\\[i\\]"),
    ("style_loss", style_feats_by_position, "feats\\[style_layers\\[i\\]\\]"),
    ("tv_loss", tv_vertical_only, "vertical term only"),
    ("tv_loss", tv_horizontal_only, "horizontal term only"),
    ("tv_loss", tv_mean, "looks like a mean"),
    ("tv_loss", tv_no_weight, "forgot to multiply by tv_weight"),
    ("tv_loss", tv_abs, "instead of taking their absolute values"),
    ("tv_loss", tv_wraps_around, "Do not wrap around"),
    ("tv_loss", tv_with_loop, "uses a Python `for` loop"),
    ("tv_loss", tv_with_comprehension, "uses a comprehension"),
    ("tv_loss", tv_channels_and_width, "height \\(dim 2\\)"),
]


@pytest.mark.parametrize("name, wrong, message", WRONG_LOSSES, ids=[w.__name__ for _, w, _ in WRONG_LOSSES])
def test_hidden_test_rejects_a_common_wrong_loss_with_its_hint(name: str, wrong: Callable, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        judge(name, wrong)


def test_every_hidden_test_rejects_the_release_stubs() -> None:
    def stub(*args, **kwargs):
        raise NotImplementedError()

    for name in ("content_loss", "gram_matrix", "style_loss", "tv_loss", "style_transfer"):
        with pytest.raises(AssertionError, match="not implemented yet"):
            judge(name, stub)


# ------------------------------------------------------------------------------------------
# Wrong loops
# ------------------------------------------------------------------------------------------


#: The notebook's loop with one mistake selected by ``VARIANT``, as a student would write it in a cell: it
#: is executed in a student namespace, so that the losses it calls are globals the stand-ins replace.
WRONG_LOOP_SOURCE = """
def style_transfer(content_image, style_image, image_size, style_size, content_layer, content_weight,
                   style_layers, style_weights, tv_weight, init_random=False, num_iterations=200,
                   initial_lr=3.0, decayed_lr=0.1, decay_lr_at=0.9, model=None, show_every=None):
    variant = VARIANT
    cnn = model
    param = next(cnn.parameters())
    content_img = image_to_tensor(content_image, image_size).to(param.device, param.dtype)
    style_img = image_to_tensor(style_image, style_size).to(param.device, param.dtype)
    decay_step = int((0.9 if variant == "ignores_decay_lr_at" else decay_lr_at) * num_iterations)
    decay_step += 1 if variant == "decay_one_late" else 0
    with torch.no_grad():
        content_target = extract_features(content_img, cnn)[content_layer]
        style_feats = extract_features(style_img, cnn)
        style_targets = [gram_matrix(style_feats[layer]) for layer in style_layers]
    if init_random:
        if variant == "noise_randn":
            img = torch.randn(content_img.shape, dtype=content_img.dtype)
        elif variant == "noise_float32":
            img = torch.rand(content_img.shape)
        else:
            img = torch.rand(content_img.shape, dtype=content_img.dtype)
    else:
        img = content_img.clone()
    img.requires_grad_(True)
    optimizer = torch.optim.Adam([img], lr=3.0 if variant == "ignores_initial_lr" else initial_lr)
    losses = []
    for t in range(num_iterations):
        if variant == "clamp_before_step":
            with torch.no_grad():
                img.clamp_(-1.5, 1.5)
        if t == decay_step and variant != "no_decay":
            if variant == "keeps_adam_moments":
                for group in optimizer.param_groups:
                    group["lr"] = decayed_lr
            else:
                optimizer = torch.optim.Adam([img], lr=decayed_lr)
        if variant != "no_zero_grad":
            optimizer.zero_grad()
        feats = extract_features(img, cnn)
        loss = (content_loss(content_weight, feats[content_layer], content_target)
                + style_loss(feats, style_layers, style_targets, style_weights) + tv_loss(img, tv_weight))
        if variant == "style_only":
            loss = style_loss(feats, style_layers, style_targets, style_weights) + tv_loss(img, tv_weight)
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
        if variant not in ("no_clamp", "clamp_before_step"):
            with torch.no_grad():
                img.clamp_(-1.5, 1.5)
    if variant == "returns_content_image":
        return content_img, losses
    if variant == "losses_as_tensors":
        return img.detach(), [torch.tensor(v) for v in losses]
    if variant == "not_detached":
        return img, losses
    return img.detach(), losses
"""


def _wrong_loop(variant: str) -> Callable:
    """The loop with one mistake, defined in a student namespace (its globals are that namespace)."""
    ns = _student_namespace(VARIANT=variant)
    exec(compile(WRONG_LOOP_SOURCE, "<student cell>", "exec"), ns)  # noqa: S102 - our own test code
    return ns["style_transfer"]


WRONG_LOOPS = [
    ("keeps_adam_moments", "the loss at iteration"),
    ("no_decay", "the loss at iteration"),
    ("decay_one_late", "the loss at iteration"),
    ("no_zero_grad", "the loss at iteration"),
    ("no_clamp", "the loss at iteration|clamp img"),
    ("clamp_before_step", "losses\\[0\\]|the loss at iteration"),
    ("ignores_initial_lr", "the loss at iteration"),
    ("style_only", "the loss at iteration|losses\\[0\\]"),
    ("noise_randn", "init_random=True.*losses\\[0\\]"),
    ("noise_float32", "dtype=content_img.dtype"),
    ("returns_content_image", "returned image does not|clamp img"),
    ("losses_as_tensors", "Python float"),
    ("not_detached", "requires grad"),
    ("ignores_decay_lr_at", "the loss at iteration"),
]


@pytest.mark.parametrize("variant, message", WRONG_LOOPS, ids=[v for v, _ in WRONG_LOOPS])
def test_hidden_test_rejects_a_wrong_optimisation_loop(variant: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        judge_in_process(ASSIGNMENT, _wrong_loop(variant))


def test_the_wrong_loop_builder_is_correct_without_a_mistake() -> None:
    judge_in_process(ASSIGNMENT, _wrong_loop(""))


def test_a_wrong_loss_costs_only_its_own_points_and_the_students_namespace_is_restored() -> None:
    """The loop runs with the grader's stand-in losses: a wrong content_loss keeps the loop's points."""
    def wrong_content_loss(content_weight, content_current, content_original):
        return ((content_current - content_original) ** 2).mean()  # mean instead of sum, no weight

    ns = _student_namespace(content_loss=wrong_content_loss)
    originals = {name: ns[name] for name in ("gram_matrix", "style_loss", "tv_loss", "extract_features")}
    judge_in_process(ASSIGNMENT, ns["style_transfer"])
    assert ns["content_loss"] is wrong_content_loss
    assert all(ns[name] is value for name, value in originals.items())
    assert "_grader_seed" not in ns
    with pytest.raises(AssertionError, match="content_loss"):
        judge("content_loss", wrong_content_loss)


def test_a_crashing_or_wrong_gram_matrix_costs_style_loss_nothing() -> None:
    """style_loss is judged with the grader's stand-in statistic for gram_matrix: its points are its own."""
    def crashing_gram_matrix(features, normalize=True):
        raise RuntimeError("my gram_matrix is broken")

    def transposed_gram_matrix(features, normalize=True):  # wrong: (N, H*W, H*W)
        flat = features.flatten(2)
        return flat.transpose(1, 2) @ flat

    for gram in (crashing_gram_matrix, transposed_gram_matrix):
        ns = _student_namespace(gram_matrix=gram)
        judge_in_process(ASSIGNMENT, ns["style_loss"])
        assert ns["gram_matrix"] is gram
        with pytest.raises(AssertionError, match="gram_matrix"):
            judge("gram_matrix", gram)


def test_a_wrong_style_loss_still_fails_with_its_diagnosis_under_the_stand_in() -> None:
    ns = _student_namespace()
    exec("def style_loss(feats, style_layers, style_targets, style_weights):\n"  # noqa: S102 - a student's cell
         "    return sum(torch.sum((gram_matrix(feats[l]) - t) ** 2) for l, t in zip(style_layers, style_targets))\n",
         ns)
    with pytest.raises(AssertionError, match="forgot the style weights"):
        judge_in_process(ASSIGNMENT, ns["style_loss"])


def test_the_stand_in_losses_are_not_the_assignments_answers(sol) -> None:
    """No answer is sent to the kernel: each stand-in computes something else than the reference."""
    stand_ins = grade.stand_in_functions()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 4, 5, 6, generator=g, dtype=torch.float64), torch.randn(1, 4, 5, 6, generator=g,
                                                                                   dtype=torch.float64)
    assert not torch.allclose(stand_ins["content_loss"](0.3, a, b), sol.content_loss(0.3, a, b))
    assert not torch.allclose(stand_ins["tv_loss"](a, 0.3), sol.tv_loss(a, 0.3))
    assert stand_ins["gram_matrix"](a).shape != sol.gram_matrix(a).shape
    feats, layers, weights = [b, a], [1], [2.0]
    assert not torch.allclose(stand_ins["style_loss"](feats, layers, [stand_ins["gram_matrix"](b)], weights),
                              sol.style_loss(feats, layers, [sol.gram_matrix(b)], weights))
    for name in ("content_loss", "gram_matrix", "style_loss", "tv_loss"):
        assert "Grader stand-in" in grade.STAND_INS[name]
