"""Time the reference ``roi_align`` (the mask_rcnn notebook's solution) against ``torchvision.ops.roi_align``.

Both compute the same values (``tests/test_mask_rcnn_reference.py`` checks them to float64 round-off). The
reference computes, for every bin of every RoI at once, the flat indices of the 2G x 2G feature pixels its
samples read and their bilinear weights (divided by the number of samples), then gathers and sums them in one
pass with ``F.embedding_bag`` over a channels-last ``(N*H*W, C)`` view of the features; torchvision's C++
kernel loops over RoIs, bins and channels with precomputed weights. (The earlier reference materialised all
four neighbours of every sample, ``(K, oh, G, ow, G, C)`` four times, and took 2 to 10x torchvision's time.)
Inputs are a Mask R-CNN head's: a stride-8 FPN level of a batch of images and a few hundred RoIs of 7 x 7
bins with 2 x 2 samples each (``MultiScaleRoIAlign``'s settings), plus the mask head's 14 x 14.

Usage (from the repository root)::

    python benchmarks/roi_align_vs_torchvision.py [--images 2] [--channels 256] [--size 100] [--rois 512]
                                                  [--device cpu] [--repeat 5] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autograder.judging.solutions import load_solutions  # noqa: E402
from benchmarks.timing import interleaved_median_times  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=100, help="the feature map's height and width")
    parser.add_argument("--rois", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    reference = load_solutions("mask_rcnn").roi_align
    g = torch.Generator().manual_seed(0)
    features = torch.randn(args.images, args.channels, args.size, args.size, generator=g).to(device)
    image_size = 8 * args.size   # a stride-8 level
    xy = torch.rand(args.rois, 2, generator=g) * image_size * 0.8
    boxes = torch.cat([xy, xy + 16 + torch.rand(args.rois, 2, generator=g) * image_size * 0.3], dim=1)
    batch = torch.randint(0, args.images, (args.rois, 1), generator=g).float()
    rois = torch.cat([batch, boxes], dim=1).to(device)
    print(f"features {tuple(features.shape)}, {args.rois} RoIs, spatial_scale 1/8, sampling_ratio 2; device {device}, "
          f"{torch.get_num_threads()} threads")
    ratios = []
    for output_size, aligned in [(7, False), (14, False), (7, True)]:
        methods = {
            "reference": lambda s=output_size, a=aligned: reference(features, rois, s, 0.125, 2, a),
            "torchvision": lambda s=output_size, a=aligned: torchvision.ops.roi_align(features, rois, s, 0.125, 2, a),
        }
        seconds, outputs = interleaved_median_times(methods, args.repeat, device)
        difference = float((outputs["reference"] - outputs["torchvision"]).abs().max())
        ratio = seconds["reference"] / seconds["torchvision"]
        ratios.append(ratio)
        print(f"{output_size:2d} x {output_size:<2d} bins, aligned={aligned!s:5}: "
              f"reference {seconds['reference']:.4f} s, torchvision {seconds['torchvision']:.4f} s, "
              f"ratio {ratio:.2f}  (max |difference| {difference:.1e})")
    print(f"\ntime ratio reference / torchvision.ops.roi_align (medians of {args.repeat} runs): "
          f"{min(ratios):.2f} to {max(ratios):.2f}")


if __name__ == "__main__":
    main()
