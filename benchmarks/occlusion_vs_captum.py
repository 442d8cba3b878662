"""Time the reference ``compute_occlusion_map`` against Captum's ``Occlusion`` on the same inputs.

Both compute the same map (the tests check it to float32 round-off): the mean drop of the softmax
probability of each image's class over the windows that cover each pixel. The reference evaluates the
occluded images of all windows and images in chunks of 16 per forward pass; Captum evaluates
``perturbations_per_eval`` windows (times the number of images) per forward pass, so this script tries
several values and reports the best.

Usage (from the repository root)::

    python benchmarks/occlusion_vs_captum.py [--size 112] [--images 2] [--patch 16] [--stride 8]
                                             [--device cpu] [--repeat 5] [--threads N]

The model is SqueezeNet 1.1 with random weights (seed 0): the timing does not depend on the weights.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autograder.judging.solutions import load_solutions  # noqa: E402
from benchmarks.timing import interleaved_median_times  # noqa: E402
from cs_lib.models import freeze, make_relus_non_inplace  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--perturbations", type=int, nargs="+", default=[1, 8, 16, 32])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from captum.attr import Occlusion

    device = torch.device(args.device)
    sol = load_solutions("network_visualization")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = freeze(make_relus_non_inplace(torchvision.models.squeezenet1_1(weights=None))).to(device)
        X = torch.randn(args.images, 3, args.size, args.size, device=device)
    with torch.no_grad():
        y = model(X).argmax(dim=1)
    windows = ((args.size - args.patch + args.stride - 1) // args.stride + 1) ** 2
    print(f"SqueezeNet 1.1 (random weights) on {args.images} x 3 x {args.size} x {args.size}, patch {args.patch}, "
          f"stride {args.stride}: {windows} windows per image; device {device}, {torch.get_num_threads()} threads")

    occlusion = Occlusion(lambda x: F.softmax(model(x), dim=1))

    def captum(ppe: int) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.no_grad():
                return occlusion.attribute(X, sliding_window_shapes=(3, args.patch, args.patch),
                                           strides=(3, args.stride, args.stride), target=y, baselines=0.0,
                                           perturbations_per_eval=ppe)[:, 0]
        return run

    methods = {"reference": lambda: sol.compute_occlusion_map(X, y, model, args.patch, args.stride)}
    methods.update({f"captum ppe={ppe}": captum(ppe) for ppe in args.perturbations})
    seconds, outputs = interleaved_median_times(methods, args.repeat, device)
    ours_s, ours = seconds["reference"], outputs["reference"].double()
    print(f"{'reference compute_occlusion_map':44s} {ours_s:8.3f} s")
    results = {}
    for ppe in args.perturbations:
        name = f"captum ppe={ppe}"
        results[ppe] = seconds[name]
        difference = float((outputs[name].double() - ours).abs().max() / ours.abs().max())
        print(f"{'captum Occlusion, perturbations_per_eval=' + str(ppe):44s} {seconds[name]:8.3f} s   "
              f"(max difference / max |map| = {difference:.1e})")
    best = min(results, key=results.get)
    print(f"\nbest Captum: perturbations_per_eval={best}, {results[best]:.3f} s (medians of {args.repeat} runs)")
    print(f"time ratio reference / best Captum = {ours_s / results[best]:.2f} "
          f"(Captum at its best takes {results[best] / ours_s:.2f}x the reference's time)")


if __name__ == "__main__":
    main()
