"""Hidden tests of ``mask_rcnn``: box IoU, box coding, NMS, RoIAlign, mask targets, mask loss, paste-back, mask AP.

One :class:`~autograder.judging.spec.GradedFunction` per graded function. Stored cases are float64 (the
reference agrees with torchvision / pycocotools to ~1e-14 there, see ``tests/test_mask_rcnn_reference.py``),
plus one float32 case per function whose arithmetic is exact or well inside the tolerance, to check that
the dtype is kept. Inputs include the degenerate boxes the issue lists: zero area, partly or wholly outside
the image, identical boxes, tied scores.

Each wrong answer is the reference body with one mistake put in (``(old, new)`` edits,
:func:`~autograder.judging.solutions.edited_answers`), so a change to the solution is a change to its
mistakes; the import fails loudly if an edit no longer applies.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import torchvision

from autograder.judging.solutions import edited_answers
from autograder.judging.spec import Call, GradedFunction, with_policies
from autograder.judging.toolkit import Failure

ASSIGNMENT = "mask_rcnn"
#: A graded function's wrong answers, one ``(label, hint, (old, new), ...)`` row each: edits of its reference body.
_mistakes = functools.partial(edited_answers, ASSIGNMENT)
REFERENCE_SEED = 2017
# float64 references: agreement to round-off across machines.
REFERENCE_RTOL, REFERENCE_ATOL = 1e-9, 1e-9


# ------------------------------------------------------------------------------------------ inputs


def _boxes(g: torch.Generator, n: int, size: float = 50.0, dtype: torch.dtype = torch.float64,
           low: float = 0.0) -> torch.Tensor:
    """``n`` random boxes (x1, y1, x2, y2) with corners in [low, low + size] and sides up to size / 2."""
    xy = low + torch.rand(n, 2, generator=g, dtype=dtype) * size
    return torch.cat([xy, xy + torch.rand(n, 2, generator=g, dtype=dtype) * size / 2], dim=1)


def _degenerate_boxes(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor([[5.0, 5.0, 5.0, 5.0],        # a point
                         [5.0, 5.0, 5.0, 12.0],       # zero width
                         [0.0, 0.0, 10.0, 10.0],
                         [0.0, 0.0, 10.0, 10.0],      # identical to the previous one
                         [10.0, 0.0, 20.0, 10.0],     # touching it
                         [-8.0, -3.0, 4.0, 6.0]], dtype=dtype)   # partly at negative coordinates


def _box_iou_cases(g: torch.Generator) -> list[Call]:
    d = _degenerate_boxes()
    integer = torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 6.0, 8.0], [1.0, 0.0, 3.0, 5.0]])
    return [Call(_boxes(g, 8), _boxes(g, 6), label="8 x 6 random float64 boxes"),
            Call(d, d, label="degenerate boxes (zero area, identical, touching) against themselves"),
            Call(_boxes(g, 5, low=-20.0), d, label="boxes at negative coordinates against degenerate ones"),
            Call(integer, integer.flip(0), label="float32 integer boxes (exact arithmetic)"),
            Call(torch.zeros(0, 4, dtype=torch.float64), _boxes(g, 3), label="no boxes on one side")]


def _box_iou_fresh(g: torch.Generator) -> list[Call]:
    n, m = (int(v) for v in torch.randint(1, 30, (2,), generator=g))
    both = _boxes(g, n)
    return [Call(both, torch.cat([_boxes(g, m), both[:2]]), label=f"{n} x {m + 2} random boxes, two shared")]


def _coder_pairs(g: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    proposals = _boxes(g, n) + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    gt = proposals + torch.randn(n, 4, generator=g, dtype=torch.float64) * 4
    gt[:, 2:] = torch.maximum(gt[:, 2:], gt[:, :2] + 0.5)
    return gt, proposals


def _encode_cases(g: torch.Generator) -> list[Call]:
    gt, proposals = _coder_pairs(g, 10)
    zero = torch.tensor([[3.0, 3.0, 3.0, 9.0]], dtype=torch.float64)
    integer_gt = torch.tensor([[0.0, 0.0, 8.0, 4.0], [2.0, 2.0, 6.0, 6.0]])
    integer_proposals = torch.tensor([[0.0, 0.0, 8.0, 4.0], [0.0, 0.0, 8.0, 8.0]])
    return [Call(gt, proposals, label="10 matched random boxes, default weights"),
            Call(gt, proposals, weights=(1.0, 2.0, 3.0, 4.0), label="weights (1, 2, 3, 4)"),
            Call(torch.cat([gt[:2], zero]), torch.cat([proposals[:2], proposals[:1]]),
                 label="a zero-width ground truth (dw = -inf)"),
            Call(integer_gt, integer_proposals, weights=(1.0, 1.0, 1.0, 1.0), label="float32 boxes, unit weights")]


def _encode_fresh(g: torch.Generator) -> list[Call]:
    n = int(torch.randint(1, 40, (1,), generator=g))
    gt, proposals = _coder_pairs(g, n)
    return [Call(gt, proposals, label=f"{n} random pairs"),
            Call(gt, proposals, weights=(1.0, 1.0, 1.0, 1.0), label=f"{n} random pairs, the RPN's unit weights")]


def _decode_cases(g: torch.Generator) -> list[Call]:
    _, proposals = _coder_pairs(g, 10)
    deltas = torch.randn(10, 4, generator=g, dtype=torch.float64)
    wild = deltas.clone()
    wild[:3, 2:] = torch.tensor([[30.0, 2.0], [1.0, 40.0], [25.0, 25.0]], dtype=torch.float64)
    integer = torch.tensor([[0.0, 0.0, 8.0, 4.0], [2.0, 2.0, 6.0, 10.0]])
    return [Call(deltas, proposals, label="10 random deltas and proposals, default weights"),
            Call(deltas * 3, proposals, weights=(1.0, 2.0, 3.0, 4.0), label="weights (1, 2, 3, 4)"),
            Call(wild, proposals, label="huge dw and dh (must be clamped at log(1000 / 16))"),
            Call(torch.zeros(2, 4), integer, label="float32 zero deltas on integer boxes")]


def _decode_fresh(g: torch.Generator) -> list[Call]:
    n = int(torch.randint(1, 40, (1,), generator=g))
    _, proposals = _coder_pairs(g, n)
    return [Call(torch.randn(n, 4, generator=g, dtype=torch.float64) * 2, proposals, label=f"{n} random deltas"),
            Call(torch.randn(n, 4, generator=g, dtype=torch.float64), proposals, weights=(1.0, 1.0, 1.0, 1.0),
                 label=f"{n} random deltas, unit weights")]


def _nms_cases(g: torch.Generator) -> list[Call]:
    at_threshold = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [0.0, 5.0, 10.0, 10.0],
                                 [20.0, 20.0, 30.0, 30.0], [21.0, 20.0, 31.0, 30.0]], dtype=torch.float64)
    boxes = _boxes(g, 60, size=40)
    scores = torch.rand(60, generator=g, dtype=torch.float64)
    empty = torch.tensor([[4.0, 4.0, 4.0, 4.0], [4.0, 4.0, 4.0, 4.0], [0.0, 0.0, 8.0, 8.0]], dtype=torch.float64)
    return [Call(at_threshold, torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95], dtype=torch.float64), 0.5,
                 label="IoUs of exactly 0.5 at iou_threshold=0.5 (they are kept)"),
            Call(boxes, scores, 0.5, label="60 random boxes, threshold 0.5"),
            Call(boxes, scores, 0.2, label="60 random boxes, threshold 0.2"),
            Call(boxes.float(), scores.float(), 0.7, label="60 random float32 boxes, threshold 0.7"),
            Call(empty, torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64), 0.5,
                 label="two identical zero-area boxes (IoU 0 / 0 = NaN suppresses nothing)"),
            Call(torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.float64), 0.5, label="no boxes")]


def _nms_fresh(g: torch.Generator) -> list[Call]:
    n = int(torch.randint(5, 200, (1,), generator=g))
    threshold = float(torch.empty(1).uniform_(0.2, 0.8, generator=g))
    return [Call(_boxes(g, n, size=60), torch.rand(n, generator=g, dtype=torch.float64), threshold,
                 label=f"{n} random boxes, threshold {threshold:.2f}")]


def _nms_with_tied_scores(student, ref, g: torch.Generator) -> None:  # noqa: ANN001 - the spec's check signature
    """With tied scores any tie order is right: check that the result is a greedy NMS for some order."""
    n = 80
    boxes = _boxes(g, n, size=40)
    scores = torch.randint(0, 4, (n,), generator=g).to(torch.float64) / 4
    threshold = 0.4
    keep = student(boxes, scores, threshold)
    if not isinstance(keep, torch.Tensor) or keep.dtype != torch.int64 or keep.dim() != 1:
        raise Failure("nms on tied scores: return a 1-D int64 tensor of indices.")
    kept = keep.tolist()
    context = "nms on 80 boxes with scores in {0, 0.25, 0.5, 0.75} (ties), threshold 0.4"
    if len(set(kept)) != len(kept) or any(not 0 <= k < n for k in kept):
        raise Failure(f"{context}: the indices must be distinct and in [0, {n}).")
    if any(scores[a] < scores[b] for a, b in zip(kept, kept[1:])):
        raise Failure(f"{context}: the kept boxes are not sorted by decreasing score.")
    iou = torchvision.ops.box_iou(boxes, boxes)
    kept_t = torch.tensor(kept, dtype=torch.int64)
    if len(kept) > 1 and bool((iou[kept_t][:, kept_t].triu(1) > threshold).any()):
        raise Failure(f"{context}: two kept boxes overlap with IoU > threshold.")
    for j in set(range(n)) - set(kept):
        # a dropped box must overlap (IoU > t) a kept box with a score at least its own
        if not any(iou[k, j] > threshold and scores[k] >= scores[j] for k in kept):
            raise Failure(f"{context}: box {j} was dropped, but no kept box with a score >= its own overlaps it "
                          "by more than the threshold.")


def _features(g: torch.Generator, n: int = 2, c: int = 3, h: int = 10, w: int = 12,
              dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=g, dtype=dtype)


def _rois(g: torch.Generator, k: int, batch: int, size: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    boxes = _boxes(g, k, size=size, dtype=dtype, low=-size / 8)
    index = torch.randint(0, batch, (k, 1), generator=g).to(dtype)
    return torch.cat([index, boxes], dim=1)


def _roi_align_cases(g: torch.Generator) -> list[Call]:
    features = _features(g)
    rois = _rois(g, 12, 2, 24.0)
    rois[0] = torch.tensor([1.0, 3.0, 2.0, 17.0, 7.0])             # wide, image 1
    rois[1] = torch.tensor([0.0, 5.0, 5.0, 5.0, 5.0])              # zero size
    rois[2] = torch.tensor([1.0, -6.0, -4.0, 4.0, 30.0])           # partly outside
    rois[3] = torch.tensor([0.0, 40.0, 40.0, 50.0, 60.0])          # wholly outside
    return [Call(features, rois, (3, 4), 1.0, 2, True, label="2 images, 12 RoIs, (3, 4) bins, sampling 2, aligned"),
            Call(features, rois, 2, 0.5, 1, False, label="spatial_scale 0.5, sampling 1, aligned=False"),
            Call(features, rois, (4, 3), 0.5, 3, True, label="spatial_scale 0.5, sampling 3, aligned"),
            Call(features, rois, (3, 3), 0.25, -1, False, label="adaptive sampling (-1), aligned=False"),
            Call(features, rois, (2, 5), 1.0, -1, True, label="adaptive sampling (-1), aligned"),
            Call(features.float(), rois.float(), 3, 0.5, 2, True, label="float32 features and RoIs"),
            Call(features, rois[:0], 3, 1.0, 2, True, label="no RoIs")]


def _roi_align_fresh(g: torch.Generator) -> list[Call]:
    n, c = int(torch.randint(1, 4, (1,), generator=g)), int(torch.randint(1, 5, (1,), generator=g))
    h, w = (int(v) for v in torch.randint(5, 20, (2,), generator=g))
    k = int(torch.randint(1, 20, (1,), generator=g))
    scale = [1.0, 0.5, 0.25][int(torch.randint(0, 3, (1,), generator=g))]
    features, rois = _features(g, n, c, h, w), _rois(g, k, n, max(h, w) / scale)
    aligned = bool(torch.randint(0, 2, (1,), generator=g))
    return [Call(features, rois, (3, 2), scale, 2, aligned, label=f"{k} random RoIs on {n} images, aligned={aligned}"),
            Call(features, rois, 4, scale, -1, not aligned, label=f"{k} random RoIs, adaptive sampling")]


def _discs(g: torch.Generator, n: int, h: int, w: int, radius: tuple[float, float],
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n`` random discs as bool ``(n, h, w)`` masks, radii in ``radius`` (low, high), drawn in ``dtype``."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    centers = torch.rand(n, 2, generator=g, dtype=dtype) * torch.tensor([w, h], dtype=dtype)
    radii = radius[0] + torch.rand(n, generator=g, dtype=dtype) * (radius[1] - radius[0])
    return (xx - centers[:, 0, None, None]) ** 2 + (yy - centers[:, 1, None, None]) ** 2 <= radii[:, None, None] ** 2


def _mask_inputs(g: torch.Generator, num_gt: int, k: int, h: int = 40, w: int = 50) -> tuple:
    masks = _discs(g, num_gt, h, w, (4.0, 14.0), torch.float64).to(torch.uint8)
    boxes = _boxes(g, k, size=max(h, w), low=-4.0) + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    matched = torch.randint(0, num_gt, (k,), generator=g)
    return masks, boxes, matched


def _project_cases(g: torch.Generator) -> list[Call]:
    masks, boxes, matched = _mask_inputs(g, 4, 10)
    boxes[0] = torch.tensor([3.0, 4.0, 3.5, 4.5])                    # smaller than a pixel
    return [Call(masks, boxes, matched, 28, label="4 masks, 10 proposals, M=28"),
            Call(masks, boxes, matched, M=7, label="M=7"),
            Call(masks, boxes.float(), matched, 14, label="float32 proposals, M=14"),
            Call(masks, boxes[:0], matched[:0], 28, label="no proposals")]


def _project_fresh(g: torch.Generator) -> list[Call]:
    num_gt, k = int(torch.randint(1, 6, (1,), generator=g)), int(torch.randint(1, 15, (1,), generator=g))
    masks, boxes, matched = _mask_inputs(g, num_gt, k)
    return [Call(masks, boxes, matched, 28, label=f"{num_gt} masks, {k} random proposals")]


def _loss_inputs(g: torch.Generator, per_image: list[tuple[int, int]], classes: int = 4, m: int = 14) -> Call:
    proposals, gt_masks, gt_labels, matched = [], [], [], []
    for num_gt, k in per_image:
        masks, boxes, idx = _mask_inputs(g, max(num_gt, 1), k, 30, 36)
        proposals.append(boxes)
        gt_masks.append(masks)
        gt_labels.append(torch.randint(1, classes, (max(num_gt, 1),), generator=g))
        matched.append(idx)
    total = sum(k for _, k in per_image)
    logits = torch.randn(total, classes, m, m, generator=g, dtype=torch.float64) * 3
    return Call(logits, proposals, gt_masks, gt_labels, matched,
                label=f"{len(per_image)} images with {[k for _, k in per_image]} positive RoIs, {classes} classes")


def _loss_cases(g: torch.Generator) -> list[Call]:
    return [_loss_inputs(g, [(3, 5), (2, 4)]), _loss_inputs(g, [(1, 3)], classes=2, m=28),
            _loss_inputs(g, [(2, 0), (3, 6)], classes=5, m=7), _loss_inputs(g, [(2, 0)], classes=3)]


def _loss_fresh(g: torch.Generator) -> list[Call]:
    images = int(torch.randint(1, 4, (1,), generator=g))
    per_image = [(int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(1, 8, (1,), generator=g)))
                 for _ in range(images)]
    return [_loss_inputs(g, per_image, classes=int(torch.randint(2, 8, (1,), generator=g)))]


def _paste_cases(g: torch.Generator) -> list[Call]:
    masks = torch.rand(8, 28, 28, generator=g, dtype=torch.float64)
    boxes = _boxes(g, 8, size=60, low=-5.0)
    boxes[0] = torch.tensor([-12.3, -7.9, 20.2, 15.6])            # partly outside, top left
    boxes[1] = torch.tensor([50.5, 30.2, 75.0, 60.0])             # partly outside, bottom right
    boxes[2] = torch.tensor([10.0, 10.0, 10.0, 10.0])             # zero size
    boxes[3] = torch.tensor([4.2, 30.7, 5.1, 31.0])               # smaller than a pixel
    small = torch.rand(3, 7, 7, generator=g, dtype=torch.float64)
    return [Call(masks, boxes, (48, 64), label="8 masks 28 x 28 in a 48 x 64 image, boxes partly outside, zero size"),
            Call(small, boxes[4:7], (40, 30), label="7 x 7 masks"),
            Call(masks[:3].float(), boxes[:3].float(), (48, 64), label="float32 masks and boxes"),
            Call(masks[:0], boxes[:0], (10, 12), label="no masks")]


def _paste_fresh(g: torch.Generator) -> list[Call]:
    k = int(torch.randint(1, 10, (1,), generator=g))
    h, w = (int(v) for v in torch.randint(20, 90, (2,), generator=g))
    boxes = _boxes(g, k, size=min(h, w), low=-3.0)
    return [Call(torch.rand(k, 28, 28, generator=g, dtype=torch.float64), boxes, (h, w),
                 label=f"{k} random masks in a {h} x {w} image")]


def _detection_problem(g: torch.Generator, images: int, tied: bool, classes: int = 3, h: int = 24,
                       w: int = 32) -> tuple[list[dict], list[dict]]:
    """Random ground truths, and detections that copy (with 1-pixel shifts), duplicate or miss them."""
    predictions, targets = [], []
    for _ in range(images):
        num_gt = int(torch.randint(0, 6, (1,), generator=g))
        gt_masks = _discs(g, num_gt, h, w, (2.0, 9.0))
        gt_labels = torch.randint(1, classes + 1, (num_gt,), generator=g)
        num_det = int(torch.randint(0, 10, (1,), generator=g))
        det_masks = _discs(g, num_det, h, w, (2.0, 9.0))
        det_labels = torch.randint(1, classes + 1, (num_det,), generator=g)
        if num_gt:
            source = torch.randint(0, num_gt, (num_det,), generator=g)
            copy = torch.rand(num_det, generator=g) < 0.7
            det_masks[copy] = gt_masks[source[copy]]
            det_labels[copy] = gt_labels[source[copy]]
            shifts = torch.randint(-1, 2, (num_det,), generator=g).tolist()
            det_masks = torch.stack([m.roll(s, dims=1) for m, s in zip(det_masks, shifts)]) if num_det else det_masks
        scores = torch.randint(1, 5, (num_det,), generator=g).double() / 4 if tied else \
            torch.rand(num_det, generator=g, dtype=torch.float64)
        predictions.append({"masks": det_masks, "scores": scores, "labels": det_labels})
        targets.append({"masks": gt_masks.to(torch.uint8), "labels": gt_labels})
    return predictions, targets


def _ap_cases(g: torch.Generator) -> list[Call]:
    gt = torch.zeros(2, 10, 10, dtype=torch.uint8)
    gt[0, 0:4, 0:4] = 1
    gt[1, 5:9, 5:9] = 1
    shifted = torch.zeros(10, 10, dtype=torch.uint8)
    shifted[5:9, 6:10] = 1
    handmade = ([{"masks": torch.stack([gt[0], gt[0], shifted, gt[1]]), "scores": torch.tensor([0.9, 0.8, 0.7, 0.1]),
                  "labels": torch.tensor([1, 1, 1, 2])}],
                [{"masks": gt, "labels": torch.tensor([1, 1])}])
    cases = [Call(*handmade, label="one image: a perfect mask, its duplicate, a 1-pixel shift, a wrong class")]
    for images, tied in [(4, False), (5, True), (3, False)]:
        cases.append(Call(*_detection_problem(g, images, tied),
                          label=f"{images} images of random masks{' with tied scores' if tied else ''}"))
    many = _detection_problem(g, 2, False)
    cases.append(Call(*many, max_detections=2, label="max_detections=2"))
    return cases


def _ap_fresh(g: torch.Generator) -> list[Call]:
    images = int(torch.randint(1, 8, (1,), generator=g))
    return [Call(*_detection_problem(g, images, False), label=f"{images} images of random masks"),
            Call(*_detection_problem(g, images, True), label=f"{images} images, tied scores")]


# ------------------------------------------------------------------------------------------ graded alone

#: Building blocks swapped into the student's globals while the functions built on them are judged, so that
#: a wrong or crashing box_iou or roi_align costs only its own test (not the reference's code: torchvision's).
STAND_INS = {
    "nms": {"box_iou": '''
def box_iou(boxes1, boxes2):
    """Grader stand-in: torchvision.ops.box_iou."""
    import torchvision
    return torchvision.ops.box_iou(boxes1, boxes2)
'''},
    "maskrcnn_loss": {"project_masks_on_boxes": '''
def project_masks_on_boxes(gt_masks, boxes, matched_idxs, M):
    """Grader stand-in: torchvision's roi_heads.project_masks_on_boxes."""
    from torchvision.models.detection import roi_heads
    return roi_heads.project_masks_on_boxes(gt_masks, boxes, matched_idxs, M)
'''},
    "project_masks_on_boxes": {"roi_align": '''
def roi_align(features, rois, output_size, spatial_scale=1.0, sampling_ratio=2, aligned=True):
    """Grader stand-in: torchvision.ops.roi_align."""
    import torchvision
    return torchvision.ops.roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
'''},
}


_PLUS_ONE = tuple((f"boxes{i}[:, {a}] - boxes{i}[:, {b}])", f"boxes{i}[:, {a}] - boxes{i}[:, {b}] + 1)")
                  for i in (1, 2) for a, b in ((2, 0), (3, 1)))
_OFFSET = "offset = 0.5 if aligned else 0.0"
_SWAPPED = "boxes read as (y1, x1, y2, x2): x and y swapped"

SPECS = (
    GradedFunction(
        name="box_iou", cases=_box_iou_cases, fresh=_box_iou_fresh, rtol=1e-5, atol=1e-5,
        tolerance="IoUs in [0, 1]: float32 arithmetic on the float64 boxes is off by up to 7e-7 (500 draws); the "
                  "mistakes differ by > 9e-2",
        wrong_answers=_mistakes(
            "box_iou",
            ("+1 convention", "the +1 area convention (a box is x2 - x1 wide here, not x2 - x1 + 1)",
             *_PLUS_ONE, ("(bottom_right - top_left)", "(bottom_right - top_left + 1)")),
            ("no clamp", "an intersection whose width and height are not clamped at 0 (disjoint boxes)",
             (".clamp(min=0)", "")),
            ("union as sum", "a union of area1 + area2 without subtracting the intersection",
             ("area2[None, :] - intersection)", "area2[None, :])")),
        ),
    ),
    GradedFunction(
        name="encode_boxes", cases=_encode_cases, fresh=_encode_fresh, rtol=1e-4, atol=1e-4,
        tolerance="float32 arithmetic on the float64 boxes is off by up to 8e-6 beyond 1e-4 relative (500 draws: "
                  "logs of ratios of differences); the mistakes differ by > 10",
        wrong_answers=_mistakes(
            "encode_boxes",
            ("(y, x) swapped", _SWAPPED, ("torch.stack([dx, dy, dw, dh]", "torch.stack([dy, dx, dh, dw]")),
            ("weights ignored", "ignoring the weights (wx, wy, ww, wh)",
             ("wx, wy, ww, wh = weights", "wx, wy, ww, wh = 1.0, 1.0, 1.0, 1.0")),
            ("gt size", "dividing the center offset by the ground truth's size instead of the proposal's",
             ("(gt_x - proposal_x) / proposal_w", "(gt_x - proposal_x) / gt_w"),
             ("(gt_y - proposal_y) / proposal_h", "(gt_y - proposal_y) / gt_h")),
        ),
    ),
    GradedFunction(
        name="decode_boxes", cases=_decode_cases, fresh=_decode_fresh, rtol=1e-4, atol=1e-4,
        tolerance="float32 arithmetic on the float64 deltas and boxes is off by up to 5e-6 beyond 1e-4 relative "
                  "(500 draws); the mistakes differ by > 600",
        wrong_answers=_mistakes(
            "decode_boxes",
            ("(y, x) swapped", "deltas read as (dy, dx, dh, dw): x and y swapped",
             ("dx = deltas[:, 0] / wx", "dx = deltas[:, 1] / wx"), ("dy = deltas[:, 1] / wy", "dy = deltas[:, 0] / wy"),
             ("torch.clamp(deltas[:, 2] / ww", "torch.clamp(deltas[:, 3] / ww"),
             ("torch.clamp(deltas[:, 3] / wh", "torch.clamp(deltas[:, 2] / wh")),
            ("no clamp", "dw and dh not clamped at log(1000 / 16) before exp",
             ("max=math.log(1000.0 / 16)", "max=math.inf")),
            ("weights multiplied", "multiplying the deltas by the weights instead of dividing",
             *((f"deltas[:, {i}] / {w}", f"deltas[:, {i}] * {w}") for i, w in enumerate(("wx", "wy", "ww", "wh")))),
        ),
    ),
    GradedFunction(
        name="nms", cases=_nms_cases, fresh=_nms_fresh, rtol=0.0, atol=0.0,
        tolerance="indices: exact (the cases have no tied scores; ties are checked separately)",
        wrong_answers=_mistakes(
            "nms",
            ("IoU >=", "dropping boxes whose IoU equals the threshold (the rule is IoU > threshold, not >=)",
             ("~(iou > iou_threshold)", "iou < iou_threshold")),
            ("one pass", "letting boxes that were themselves suppressed suppress others (one pass over all pairs)",
             "order = torch.sort(scores, descending=True, stable=True).indices\n"
             "iou = box_iou(boxes[order], boxes[order])\n"
             "return order[~(iou > iou_threshold).triu(1).any(dim=0)]"),
            ("ascending", "processing boxes by increasing instead of decreasing score",
             ("descending=True", "descending=False")),
        ),
        checks=(_nms_with_tied_scores,),
    ),
    GradedFunction(
        name="roi_align", cases=_roi_align_cases, fresh=_roi_align_fresh, rtol=1e-5, atol=5e-5,
        tolerance="bilinear sums of 4 products of features ~N(0, 1): float32 arithmetic is off by up to 6.5e-6 "
                  "(500 draws); a wrong offset or index moves values by > 1",
        wrong_answers=_mistakes(
            "roi_align",
            ("batch index", "a forgotten batch index (every RoI read from image 0; use rois[:, 0])",
             ("batch = rois[:, 0].long()", "batch = torch.zeros_like(rois[:, 0]).long()")),
            ("no offset", "no half-pixel offset with aligned=True (subtract 0.5 from the scaled box)",
             (_OFFSET, "offset = 0.0")),
            ("offset sign", "adding half a pixel instead of subtracting it with aligned=True",
             (_OFFSET, "offset = -0.5 if aligned else 0.0")),
            ("offset always", "the half-pixel offset applied with aligned=False too", (_OFFSET, "offset = 0.5")),
            ("(y, x) swapped", _SWAPPED, ("x1 = rois[:, 1]", "x1 = rois[:, 2]"), ("y1 = rois[:, 2]", "y1 = rois[:, 1]"),
             ("roi_w = rois[:, 3] * spatial_scale", "roi_w = rois[:, 4] * spatial_scale"),
             ("roi_h = rois[:, 4] * spatial_scale", "roi_h = rois[:, 3] * spatial_scale")),
            ("no minimum size", "RoIs smaller than 1 x 1 feature pixel with aligned=False (clamp the size at 1)",
             ("roi_w = roi_w.clamp(min=1.0)", "pass"), ("roi_h = roi_h.clamp(min=1.0)", "pass")),
        ),
    ),
    GradedFunction(
        name="project_masks_on_boxes", cases=_project_cases, fresh=_project_fresh, rtol=1e-5, atol=5e-5,
        tolerance="bilinear sums of values in [0, 1]: float32 arithmetic is off by up to 6e-6 (500 draws); the "
                  "mistakes differ by > 0.4",
        wrong_answers=_mistakes(
            "project_masks_on_boxes",
            ("aligned", "aligned=True (half-pixel offset); torchvision's mask targets use aligned=False",
             ("aligned=False", "aligned=True")),
            ("fixed sampling", "a fixed sampling_ratio instead of adaptive sampling (sampling_ratio=-1)",
             ("sampling_ratio=-1", "sampling_ratio=2")),
            ("matched ignored", "ignoring matched_idxs (every proposal read the first mask; it is the RoIs' batch "
                                "index)", ("matched_idxs[:, None].to(boxes.dtype)", "torch.zeros_like(boxes[:, :1])")),
        ),
    ),
    GradedFunction(
        name="maskrcnn_loss", cases=_loss_cases, fresh=_loss_fresh, rtol=1e-5, atol=1e-9,
        tolerance="a BCE mean: float32 arithmetic is off by up to 4e-7 relative (500 draws); the mistakes differ by "
                  "> 3e-2",
        wrong_answers=_mistakes(
            "maskrcnn_loss",
            ("all channels", "the loss over all class channels (use only the ground-truth class's channel)", (
                "logits = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]   # (K, M, M)\n"
                "return F.binary_cross_entropy_with_logits(logits, targets)",
                "return F.binary_cross_entropy_with_logits(mask_logits, targets[:, None].expand_as(mask_logits))")),
            ("sum", "a sum instead of a mean over RoIs and pixels",
             ("(logits, targets)", "(logits, targets, reduction=\"sum\")")),
            ("unmatched labels", "the class of the first ground truth for every RoI (index gt_labels by matched_idxs)",
             ("labels_i[idxs]", "labels_i[torch.zeros_like(idxs)]")),
        ),
    ),
    GradedFunction(
        name="paste_masks_in_image", cases=_paste_cases, fresh=_paste_fresh, rtol=1e-6, atol=1e-5,
        tolerance="float64 agrees to ~1e-14; float32 separable products of values in [0, 1] within 1e-5 of "
                  "F.interpolate's (measured 2.5e-6); a missing pixel or padding changes values by > 0.1",
        wrong_answers=_mistakes(
            "paste_masks_in_image",
            ("no padding", "no one-pixel padding (and no widening of the box by (M + 2) / M)",
             ("padded = F.pad(masks, (1, 1, 1, 1))", "padded = masks"), ("P = M + 2", "P = M")),
            ("no +1", "x2 and y2 excluded (the integer box spans x1..x2 inclusive, x2 - x1 + 1 pixels)",
             ("length = (last - first + 1)", "length = (last - first)"),
             ("(pixel[None, :] <= last[:, None])", "(pixel[None, :] < last[:, None])")),
            ("(y, x) swapped", _SWAPPED,
             ("interpolation_matrix(box[:, 1], box[:, 3], H)", "interpolation_matrix(box[:, 0], box[:, 2], H)"),
             ("interpolation_matrix(box[:, 0], box[:, 2], W)", "interpolation_matrix(box[:, 1], box[:, 3], W)")),
        ),
    ),
    GradedFunction(
        name="mask_average_precision", cases=_ap_cases, fresh=_ap_fresh, rtol=1e-9, atol=1e-12,
        tolerance="float64 means of the same 101-point precisions: agreement to ~1e-15",
        float64_required="a recall or an IoU that lands exactly on one of COCO's thresholds (7 of 10 ground truths "
                         "found: recall 0.70) must compare as pycocotools' float64 numbers do, and in float32 it can "
                         "round to the other side, which moves AP by up to 0.025.",
        wrong_answers=_mistakes(
            "mask_average_precision",
            ("all-point", "AP without COCO's 101-point interpolation (the area under the curve at every detection)", (
                "precisions.append(torch.where(index < n, sampled, 0.0))",
                "steps = torch.diff(recall, dim=1, prepend=torch.zeros(T, 1, dtype=recall.dtype))\n"
                "    area = (steps * precision).sum(dim=1, keepdim=True)\n"
                "    precisions.append(area.expand(T, len(COCO_RECALL_THRESHOLDS)))")),
            ("no envelope", "no precision envelope (each precision must be the largest at the same or a higher recall)",
             ("precision = precision.flip(1).cummax(dim=1).values.flip(1)", "pass")),
            ("reused gt", "a ground truth matched by more than one detection (mark it taken)",
             ("taken[hit, best[hit]] = True", "pass")),
        ),
    ),
)

#: What the graded functions may not use (``autograder/judging/policy.py``): torchvision's box, NMS and
#: RoI functions and its detection internals, and pycocotools, as the notebook's text says. The student's
#: own functions are always allowed (``nms`` may call their ``box_iou``).
DEFAULT_FORBIDDEN = ("torchvision.ops", "torch.ops.torchvision", "torchvision::nms", "torchvision::roi_align",
                     "torchvision::roi_pool", "torchvision::ps_roi_align", "torchvision::ps_roi_pool",
                     "torchvision.models.detection", "pycocotools")
#: "Not Python loops over boxes or pixels (one loop is allowed where the text says so)": NMS (over kept
#: boxes), the mask loss (over images) and mask AP (over detections) may loop.
SPECS = with_policies(SPECS, no_loops=("box_iou", "encode_boxes", "decode_boxes", "roi_align",
                                       "project_masks_on_boxes", "paste_masks_in_image"))
SPECS = tuple(dataclasses.replace(s, stand_ins=STAND_INS[s.name]) if s.name in STAND_INS else s for s in SPECS)
