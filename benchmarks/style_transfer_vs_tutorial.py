"""Seconds per iteration of the style-transfer loop: the notebook's reference vs PyTorch's tutorial.

The peer is the structure of PyTorch's official neural-style tutorial
(https://pytorch.org/tutorials/advanced/neural_style_tutorial.html): ``ContentLoss`` and
``StyleLoss`` modules built on ``F.mse_loss`` are inserted into a copy of the network after the
chosen layers, and the copy stops after the last of them. Both loops run on the same network
(SqueezeNet 1.1's features), image sizes, losses (the tutorial's ``F.mse_loss`` is scaled to the
notebook's sums, so the two compute the same numbers; the script prints how close they are),
optimiser (Adam, lr 3.0 then 0.1 at 90%) and clamp, in the same run.

Both timed calls start from the same PIL images, as the notebook's ``style_transfer`` does: the tutorial's
``image_loader`` step is done with the notebook's ``image_to_tensor`` inside the timed call (the tutorial
normalises inside its model at every forward pass; here, as in the notebook, once). The script also prints
the ratio against the tutorial loop handed already-preprocessed tensors, which leaves the reference's
preprocessing of the two images (about 1 ms per iteration at 40 iterations) in its time only.

Two more loops say where the reference's extra time goes. "forward order" runs the reference's own loss
functions with each loss computed inside the forward pass, as the tutorial's modules do, instead of after
``extract_features``: reference / forward order is what the notebook's loop structure costs (the order in
which autograd's backward pass accumulates each style layer's two gradients). "fwd order, mm Gram"
is the same loop with the tutorial's Gram matrix (``mm`` on the features flattened to (C, H*W), correct for a
batch of one only) in place of the reference's batched ``bmm``: forward order / this loop is what ``bmm``'s
backward costs (it returns one of the two gradients of the features transposed, and adding a transposed
tensor is slower; ``mm``'s backward returns it in the features' own layout).

    python benchmarks/style_transfer_vs_tutorial.py [--size 192] [--iterations 40] [--device cpu]

Without pretrained weights, SqueezeNet is randomly initialised (seed 0): the timing is the same.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DLCV_GRADING", "1")  # no progress bars in the timed loops

from autograder.judging.solutions import load_solutions  # noqa: E402
from cs_lib.data import load_style_image  # noqa: E402
from cs_lib.models import load_feature_extractor  # noqa: E402
from cs_lib.runtime import get_device  # noqa: E402

CONTENT_LAYER = 3
STYLE_LAYERS = (1, 4, 6, 7)
STYLE_WEIGHTS = (300000.0, 1000.0, 15.0, 3.0)
CONTENT_WEIGHT, TV_WEIGHT = 6e-2, 2e-2


def tutorial_gram(x: torch.Tensor) -> torch.Tensor:
    """The tutorial's gram_matrix: (a*b, c*d) features, mm, divided by a*b*c*d (batch of one)."""
    a, b, c, d = x.size()
    f = x.view(a * b, c * d)
    return torch.mm(f, f.t()).div(a * b * c * d)


class ContentLoss(nn.Module):
    def __init__(self, target: torch.Tensor, weight: float) -> None:
        super().__init__()
        self.target, self.weight, self.loss = target.detach(), weight, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.loss = self.weight * F.mse_loss(x, self.target) * x.numel()  # the mean, scaled to a sum
        return x


class StyleLoss(nn.Module):
    def __init__(self, target_feature: torch.Tensor, weight: float) -> None:
        super().__init__()
        self.target, self.weight, self.loss = tutorial_gram(target_feature).detach(), weight, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        G = tutorial_gram(x)
        self.loss = self.weight * F.mse_loss(G, self.target) * G.numel()
        return x


def tutorial_model(cnn: nn.Sequential, content_img: torch.Tensor, style_img: torch.Tensor
                   ) -> tuple[nn.Sequential, list[ContentLoss], list[StyleLoss]]:
    """The tutorial's get_style_model_and_losses: loss modules after the chosen layers, then truncate.

    (The tutorial takes the targets from the model built so far; with a style image of another size
    than the content image that would run the style image through the ContentLoss, so the targets
    come from the plain layers here.)
    """
    model, content_losses, style_losses = nn.Sequential(), [], []
    content_x, style_x = content_img, style_img
    for i, layer in enumerate(cnn):
        model.add_module(str(i), layer)
        content_x, style_x = layer(content_x), layer(style_x)
        if i == CONTENT_LAYER:
            loss = ContentLoss(content_x, CONTENT_WEIGHT)
            model.add_module(f"content_loss_{i}", loss)
            content_losses.append(loss)
        if i in STYLE_LAYERS:
            loss = StyleLoss(style_x, STYLE_WEIGHTS[STYLE_LAYERS.index(i)])
            model.add_module(f"style_loss_{i}", loss)
            style_losses.append(loss)
        if i == max(CONTENT_LAYER, *STYLE_LAYERS):
            break
    return model, content_losses, style_losses


def optimise(start_img: torch.Tensor, num_iterations: int, total_loss: Callable[[torch.Tensor], torch.Tensor]
             ) -> tuple[torch.Tensor, list[float]]:
    """Both timed loops' optimiser, the notebook's: Adam on a copy of ``start_img`` (lr 3.0, then 0.1 from 90%
    of the iterations), each step followed by a clamp to [-1.5, 1.5]. Returns the image and every step's loss."""
    img = start_img.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([img], lr=3.0)
    losses = []
    for t in range(num_iterations):
        if t == int(0.9 * num_iterations):
            optimizer = torch.optim.Adam([img], lr=0.1)
        optimizer.zero_grad()
        loss = total_loss(img)
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
        with torch.no_grad():
            img.clamp_(-1.5, 1.5)
    return img.detach(), losses


def tutorial_style_transfer(content_img: torch.Tensor, style_img: torch.Tensor, cnn: nn.Sequential,
                            num_iterations: int) -> tuple[torch.Tensor, list[float]]:
    with torch.no_grad():
        model, content_losses, style_losses = tutorial_model(cnn, content_img, style_img)

    def total_loss(img: torch.Tensor) -> torch.Tensor:
        model(img)
        tv = TV_WEIGHT * (F.mse_loss(img[:, :, 1:, :], img[:, :, :-1, :], reduction="sum")
                          + F.mse_loss(img[:, :, :, 1:], img[:, :, :, :-1], reduction="sum"))
        return sum(m.loss for m in content_losses) + sum(m.loss for m in style_losses) + tv

    return optimise(content_img, num_iterations, total_loss)


def forward_order_style_transfer(sol, content_img: torch.Tensor, style_img: torch.Tensor, cnn: nn.Sequential,
                                 num_iterations: int, gram: Callable[[torch.Tensor], torch.Tensor] | None = None
                                 ) -> tuple[torch.Tensor, list[float]]:
    """The reference's loss functions, each loss computed inside the forward pass.

    Only the order differs from the notebook's loop (which computes all the features with
    ``extract_features``, then the losses), and it is the tutorial's order: a loss's graph nodes are
    made before the next layer's, so autograd's backward pass meets a layer's gradients in another
    order. This isolates what the order costs from what the graded functions cost.

    With ``gram`` (e.g. :func:`tutorial_gram`), each style term is the reference's formula,
    ``weight * sum((gram(features) - target) ** 2)``, with that Gram matrix for the targets and the image.
    """
    cnn = cnn[: max(CONTENT_LAYER, *STYLE_LAYERS) + 1]
    with torch.no_grad():
        content_target = sol.extract_features(content_img, cnn)[CONTENT_LAYER]
        style_feats = sol.extract_features(style_img, cnn)
        style_targets = {layer: (gram or sol.gram_matrix)(style_feats[layer]) for layer in STYLE_LAYERS}
    style_weights = dict(zip(STYLE_LAYERS, STYLE_WEIGHTS))

    def style_term(x: torch.Tensor, layer: int) -> torch.Tensor:
        if gram is None:
            return sol.style_loss([x], [0], [style_targets[layer]], [style_weights[layer]])
        return style_weights[layer] * F.mse_loss(gram(x), style_targets[layer], reduction="sum")

    def total_loss(img: torch.Tensor) -> torch.Tensor:
        x, loss = img, sol.tv_loss(img, TV_WEIGHT)
        for i, layer in enumerate(cnn):
            x = layer(x)
            if i == CONTENT_LAYER:
                loss = loss + sol.content_loss(CONTENT_WEIGHT, x, content_target)
            if i in style_weights:
                loss = loss + style_term(x, i)
        return loss

    return optimise(content_img, num_iterations, total_loss)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192, help="shorter side of the content and style images")
    parser.add_argument("--iterations", type=int, default=40, help="iterations per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each loop (median reported)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args()

    device = get_device(args.device)
    sol = load_solutions("style_transfer")
    cnn = load_feature_extractor("squeezenet1_1", device=device, allow_random=True, progress=False)
    content, style = load_style_image("chelsea"), load_style_image("brick")
    content_img = sol.image_to_tensor(content, args.size).to(device)
    style_img = sol.image_to_tensor(style, args.size).to(device)
    common = dict(content_layer=CONTENT_LAYER, content_weight=CONTENT_WEIGHT, style_layers=STYLE_LAYERS,
                  style_weights=STYLE_WEIGHTS, tv_weight=TV_WEIGHT, model=cnn)

    def ours(n: int) -> list[float]:
        return sol.style_transfer(content, style, args.size, args.size, num_iterations=n, **common)[1]

    def tutorial(n: int) -> list[float]:
        content_x = sol.image_to_tensor(content, args.size).to(device)
        style_x = sol.image_to_tensor(style, args.size).to(device)
        return tutorial_style_transfer(content_x, style_x, cnn, n)[1]

    def tutorial_from_tensors(n: int) -> list[float]:
        return tutorial_style_transfer(content_img, style_img, cnn, n)[1]

    def forward_order(n: int, gram: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[float]:
        content_x = sol.image_to_tensor(content, args.size).to(device)
        style_x = sol.image_to_tensor(style, args.size).to(device)
        return forward_order_style_transfer(sol, content_x, style_x, cnn, n, gram)[1]

    def forward_order_mm(n: int) -> list[float]:
        return forward_order(n, tutorial_gram)

    # Same numbers: the first losses agree to float32 rounding (later ones drift: Adam at lr 3 is chaotic).
    a, b, c, d = ours(3), tutorial(3), forward_order(3), forward_order_mm(3)
    agreement = max(abs(x - y) / abs(y) for x, y in zip(a + c + d, b + b + b))

    loops = {"reference loop": ours, "tutorial loop": tutorial, "tutorial (tensors)": tutorial_from_tensors,
             "forward order": forward_order, "fwd order, mm Gram": forward_order_mm}
    timings: dict[str, list[float]] = {name: [] for name in loops}
    for fn in loops.values():
        fn(2)  # warm-up
    for _ in range(args.repeats):
        for name, fn in loops.items():
            synchronize(device)
            start = time.perf_counter()
            fn(args.iterations)
            synchronize(device)
            timings[name].append((time.perf_counter() - start) / args.iterations)

    threads = f", {torch.get_num_threads()} CPU threads" if device.type == "cpu" else ""
    print(f"style transfer, SqueezeNet 1.1 features, {tuple(content_img.shape[2:])} content and "
          f"{tuple(style_img.shape[2:])} style image, {args.iterations} iterations x {args.repeats} runs, "
          f"{device}{threads}, torch {torch.__version__}")
    print(f"loss agreement over the first 3 iterations: max relative difference {agreement:.2g}")
    per_iter = {name: statistics.median(v) for name, v in timings.items()}
    for name, seconds in per_iter.items():
        print(f"{name:>18}: {1000 * seconds:8.2f} ms / iteration")
    ratio = per_iter["reference loop"] / per_iter["tutorial loop"]
    print(f"{'ratio':>18}: {ratio:8.3f} (reference / tutorial, both from the images; < 1 means the reference "
          "is faster)")
    print(f"{'':>18}  {per_iter['reference loop'] / per_iter['tutorial (tensors)']:8.3f} (reference / tutorial "
          "handed preprocessed tensors)")
    order = per_iter["reference loop"] / per_iter["forward order"]
    bmm = per_iter["forward order"] / per_iter["fwd order, mm Gram"]
    rest = per_iter["fwd order, mm Gram"] / per_iter["tutorial loop"]
    print(f"{'where it goes':>18}: {ratio:.3f} = {order:.3f} (the notebook's order: all the features, then the losses; "
          f"autograd meets each style layer's Gram gradient first, as a view, so the layer's own gradient "
          f"is added to it out of place) "
          f"x {bmm:.3f} (the batched Gram's bmm backward against the tutorial's 2-D mm, which is correct for a "
          f"batch of one only) x {rest:.3f} (the rest of the reference's functions)")


if __name__ == "__main__":
    main()
