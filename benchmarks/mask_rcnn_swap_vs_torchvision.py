"""Time the mask_rcnn notebook's swap demo: torchvision's Mask R-CNN with the reference pieces vs its own.

The demo (section 9 of the notebook) runs ``maskrcnn_resnet50_fpn_v2`` in float64 on two sample photos at
320 px, once with torchvision's ``nms``, ``roi_align``, box coder and ``paste_masks_in_image`` and once with
the notebook's reference functions swapped in (``cs_lib.detection.pieces_swapped_in``), and asserts that the
detections are identical. This script runs the same two forward passes with the notebook's settings at its
normal budget (1000 RPN proposals per image, 100 detections per image), interleaved (``benchmarks/timing.py``),
checks that the detections agree, and prints the ratio of the two times. Without the COCO weights the model
is randomly initialised and keeps every detection (``score_thresh = 0``, as the notebook does): then the box
head's NMS sees every one of the 1000 proposals in each of the 90 classes, the heaviest case for ``nms``.

It then times each piece on its own on the inputs it gets in the demo: ``nms`` on one class's 1000 boxes,
the RPN's NMS on one level's 1000 proposals, and ``roi_align`` on the box head's RoIs.

Usage (from the repository root)::

    python benchmarks/mask_rcnn_swap_vs_torchvision.py [--size 320] [--images 2] [--repeat 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DLCV_GRADING", "1")   # no progress bar, and a random-init stand-in without the weights

from autograder.judging.solutions import load_solutions  # noqa: E402
from benchmarks.timing import interleaved_median_times  # noqa: E402
from cs_lib.data import load_sample_images  # noqa: E402
from cs_lib.detection import (  # noqa: E402
    detection_difference,
    load_mask_rcnn,
    mask_rcnn_weights_available,
    pieces_swapped_in,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320, help="the model's min_size and max_size (the demo's 320)")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sol = load_solutions("mask_rcnn")

    model = load_mask_rcnn(device=device, allow_random=True, progress_bar=False)
    pretrained = mask_rcnn_weights_available()
    if not pretrained:
        model.roi_heads.score_thresh = 0.0
    model.rpn._post_nms_top_n["testing"] = 1000
    model.roi_heads.detections_per_img = 100
    model64 = copy.deepcopy(model).double()
    model64.transform.min_size, model64.transform.max_size = (args.size,), args.size
    photos = [torch.from_numpy(image).permute(2, 0, 1).double().div(255).to(device)
              for image in load_sample_images(224).images[:args.images]]
    pieces = dict(nms=sol.nms, roi_align=sol.roi_align, encode_boxes=sol.encode_boxes,
                  decode_boxes=sol.decode_boxes, paste_masks_in_image=sol.paste_masks_in_image)

    def theirs() -> list[dict[str, torch.Tensor]]:
        with torch.no_grad():
            return model64(photos)

    def ours() -> list[dict[str, torch.Tensor]]:
        with torch.no_grad(), pieces_swapped_in(model64, **pieces):
            return model64(photos)

    print(f"maskrcnn_resnet50_fpn_v2 ({'COCO weights' if pretrained else 'random init, every detection kept'}), "
          f"float64, {args.images} images at {args.size} px; device {device}, {torch.get_num_threads()} threads")
    seconds, outputs = interleaved_median_times({"torchvision": theirs, "reference": ours}, args.repeat, device)
    difference = detection_difference(outputs["torchvision"], outputs["reference"])
    detections = sum(len(d["labels"]) for d in outputs["torchvision"])
    identical = difference["count"] == 0 and max(difference["boxes"], difference["scores"], difference["masks"]) < 1e-9
    print(f"{detections} detections, {'identical' if identical else 'DIFFERENT'} "
          f"(boxes {difference['boxes']:.1e} px, scores {difference['scores']:.1e}, masks {difference['masks']:.1e})")
    print(f"demo forward pass: torchvision {seconds['torchvision']:.2f} s, "
          f"reference pieces {seconds['reference']:.2f} s")

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(1000, 2, generator=g, dtype=torch.float64) * args.size
    boxes = torch.cat([xy, xy + 4 + torch.rand(1000, 2, generator=g, dtype=torch.float64) * args.size / 3], 1)
    boxes, scores = boxes.to(device), torch.rand(1000, generator=g, dtype=torch.float64).to(device)
    features = torch.randn(args.images, 256, args.size // 4, args.size // 4, generator=g, dtype=torch.float64)
    rois = torch.cat([torch.randint(0, args.images, (1000, 1), generator=g).double(), boxes.cpu()], 1)
    features, rois = features.to(device), rois.to(device)
    cases = {
        "nms, 1000 boxes, threshold 0.5 (box head)": (sol.nms, torchvision.ops.nms, (boxes, scores, 0.5)),
        "nms, 1000 boxes, threshold 0.7 (RPN)": (sol.nms, torchvision.ops.nms, (boxes, scores, 0.7)),
        "roi_align, 1000 RoIs, 7 x 7, stride 4": (sol.roi_align, torchvision.ops.roi_align,
                                                   (features, rois, 7, 0.25, 2, False)),
    }
    ratios = {"demo forward pass": seconds["reference"] / seconds["torchvision"]}
    for name, (reference, peer, inputs) in cases.items():
        piece_seconds, piece_outputs = interleaved_median_times(
            {"reference": lambda f=reference, a=inputs: f(*a), "torchvision": lambda f=peer, a=inputs: f(*a)},
            max(args.repeat, 5), device)
        same = torch.equal(piece_outputs["reference"], piece_outputs["torchvision"]) if "nms" in name else \
            float((piece_outputs["reference"] - piece_outputs["torchvision"]).abs().max()) < 1e-9
        ratios[name] = piece_seconds["reference"] / piece_seconds["torchvision"]
        print(f"{name}: reference {1000 * piece_seconds['reference']:.1f} ms, torchvision "
              f"{1000 * piece_seconds['torchvision']:.1f} ms, ratio {ratios[name]:.2f} "
              f"({'same result' if same else 'DIFFERENT result'})")
    print(f"\ntime ratio reference pieces / torchvision's (medians of {args.repeat} interleaved runs): "
          f"demo forward pass {ratios['demo forward pass']:.2f}")


if __name__ == "__main__":
    main()
