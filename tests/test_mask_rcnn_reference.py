"""The mask_rcnn reference solutions against their peers: torchvision.ops, torchvision's detection internals
(BoxCoder, roi_heads.project_masks_on_boxes / maskrcnn_loss / paste_masks_in_image) and pycocotools'
COCOeval "segm"; the swap test (the reference pieces inside a torchvision Mask R-CNN change nothing); and a
training smoke test of cs_lib.detection's small Mask R-CNN.

Inputs are float64 where the peer supports it (all of torchvision's ops do on the CPU), compared at rtol
1e-6, and include degenerate boxes: zero area, partly or wholly outside the image, identical, touching, and
tied scores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection import roi_heads

from autograder.judging.solutions import load_solutions
from cs_lib.data import ShapesDataset
from cs_lib.detection import build_small_mask_rcnn, detection_difference, pieces_swapped_in, pycocotools_mask_ap

RTOL, ATOL = 1e-6, 1e-9


@pytest.fixture(scope="module")
def sol():  # noqa: ANN201 - a namespace of the notebook's functions
    return load_solutions("mask_rcnn")


def _boxes(g: torch.Generator, n: int, size: float = 50.0, low: float = 0.0) -> torch.Tensor:
    xy = low + torch.rand(n, 2, generator=g, dtype=torch.float64) * size
    return torch.cat([xy, xy + torch.rand(n, 2, generator=g, dtype=torch.float64) * size / 2], dim=1)


DEGENERATE = torch.tensor([[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 12.0], [0.0, 0.0, 10.0, 10.0],
                           [0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0], [-8.0, -3.0, 4.0, 6.0]],
                          dtype=torch.float64)


def test_box_iou_matches_torchvision_including_degenerate_boxes(sol) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(0)
    for a, b in [(_boxes(g, 30), _boxes(g, 20)), (DEGENERATE, DEGENERATE), (_boxes(g, 7, low=-20), DEGENERATE),
                 (torch.zeros(0, 4, dtype=torch.float64), _boxes(g, 3))]:
        torch.testing.assert_close(sol.box_iou(a, b), torchvision.ops.box_iou(a, b), rtol=RTOL, atol=ATOL,
                                   equal_nan=True)
    assert torch.isnan(sol.box_iou(DEGENERATE[:1], DEGENERATE[:1])).all()  # 0 / 0, as torchvision


@pytest.mark.parametrize("weights", [(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0), (1.0, 2.0, 3.0, 4.0)])
def test_encode_and_decode_match_torchvision_box_coder(sol, weights: tuple[float, ...]) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(1)
    coder = det_utils.BoxCoder(weights)
    proposals = _boxes(g, 40) + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    gt = proposals + torch.randn(40, 4, generator=g, dtype=torch.float64) * 3
    gt[:, 2:] = torch.maximum(gt[:, 2:], gt[:, :2] + 0.1)
    gt[0] = torch.tensor([3.0, 3.0, 3.0, 9.0])  # zero width: dw = -inf in both
    torch.testing.assert_close(sol.encode_boxes(gt, proposals, weights), coder.encode_single(gt, proposals),
                               rtol=RTOL, atol=ATOL)
    deltas = torch.randn(40, 4, generator=g, dtype=torch.float64) * 2
    deltas[:3, 2:] = 50.0  # beyond the clamp at log(1000 / 16)
    torch.testing.assert_close(sol.decode_boxes(deltas, proposals, weights), coder.decode_single(deltas, proposals),
                               rtol=RTOL, atol=ATOL)
    finite = slice(1, None)
    torch.testing.assert_close(sol.decode_boxes(sol.encode_boxes(gt, proposals, weights)[finite], proposals[finite],
                                                weights), gt[finite], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_torchvision_with_ties_and_degenerate_boxes(sol, threshold: float) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(2)
    boxes = torch.cat([_boxes(g, 300, size=80), DEGENERATE, DEGENERATE[:2]])
    continuous = torch.rand(len(boxes), generator=g, dtype=torch.float64)
    tied = torch.randint(0, 4, (len(boxes),), generator=g).to(torch.float64)
    for scores in (continuous, tied):  # torchvision sorts stably too: ties keep index order in both
        assert torch.equal(sol.nms(boxes, scores, threshold), torchvision.ops.nms(boxes, scores, threshold))
    exact = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]], dtype=torch.float64)  # IoU exactly 0.5
    scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
    assert sol.nms(exact, scores, 0.5).tolist() == torchvision.ops.nms(exact, scores, 0.5).tolist() == [0, 1]


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3, -1])
def test_roi_align_matches_torchvision(sol, aligned: bool, sampling_ratio: int) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(3)
    features = torch.randn(3, 4, 13, 17, generator=g, dtype=torch.float64)
    rois = torch.cat([torch.randint(0, 3, (40, 1), generator=g).to(torch.float64), _boxes(g, 40, 40, low=-8)], 1)
    rois[0, 1:] = torch.tensor([5.0, 5.0, 5.0, 5.0])       # zero size
    rois[1, 1:] = torch.tensor([-20.0, -9.0, 3.0, 40.0])   # partly outside
    rois[2, 1:] = torch.tensor([50.0, 50.0, 70.0, 60.0])   # wholly outside
    rois[3, 1:] = torch.tensor([9.0, 4.0, 2.0, 1.0])       # x2 < x1
    for scale, size in [(1.0, (5, 4)), (0.5, 7), (0.25, (2, 3))]:
        torch.testing.assert_close(sol.roi_align(features, rois, size, scale, sampling_ratio, aligned),
                                   torchvision.ops.roi_align(features, rois, size, scale, sampling_ratio, aligned),
                                   rtol=RTOL, atol=ATOL)
    empty = sol.roi_align(features, rois[:0], 3, 1.0, sampling_ratio, aligned)
    assert empty.shape == (0, 4, 3, 3)


def test_nms_matches_torchvision_on_a_chain_of_overlapping_boxes(sol) -> None:  # noqa: ANN001
    """Each box overlaps the next: whether box j survives depends on every box before it, so the reference's
    rounds to the greedy fixed point run as long as the chain (the worst case of the matrix-form NMS)."""
    x = torch.arange(200, dtype=torch.float64) * 0.3
    boxes = torch.stack([x, torch.zeros_like(x), x + 1, torch.ones_like(x)], dim=1)
    scores = torch.linspace(1, 0, 200, dtype=torch.float64)
    for threshold in (0.2, 0.5):   # IoU 0.54 with the next box, 0.25 with the one after: every third, every other
        expected = torchvision.ops.nms(boxes, scores, threshold)
        assert 1 < len(expected) < 200
        assert torch.equal(sol.nms(boxes, scores, threshold), expected)


@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_roi_align_gradient_matches_torchvision(sol, sampling_ratio: int) -> None:  # noqa: ANN001
    """The training test backpropagates through roi_align: the gradient with respect to the features too."""
    g = torch.Generator().manual_seed(9)
    features = torch.randn(2, 3, 11, 14, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.cat([torch.randint(0, 2, (25, 1), generator=g).to(torch.float64), _boxes(g, 25, 30, low=-6)], 1)
    ours = sol.roi_align(features, rois, (4, 3), 0.5, sampling_ratio, False)
    theirs = torchvision.ops.roi_align(features, rois, (4, 3), 0.5, sampling_ratio, False)
    upstream = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad(ours, features, upstream)[0],
                               torch.autograd.grad(theirs, features, upstream)[0], rtol=RTOL, atol=ATOL)


def test_roi_align_float32_within_float32_round_off(sol) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(4)
    features = torch.randn(2, 8, 25, 30, generator=g)
    rois = torch.cat([torch.randint(0, 2, (100, 1), generator=g).float(), _boxes(g, 100, 60, low=-5).float()], 1)
    got = sol.roi_align(features, rois, 7, 0.5, 2, True)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, torchvision.ops.roi_align(features, rois, 7, 0.5, 2, True), rtol=1e-5, atol=1e-5)


def _masks(g: torch.Generator, n: int, h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centers = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    radii = 2 + torch.rand(n, generator=g) * 10
    return ((xx[None] - centers[:, 0, None, None]) ** 2 + (yy[None] - centers[:, 1, None, None]) ** 2
            <= radii[:, None, None] ** 2)


@pytest.mark.parametrize("M", [7, 14, 28])
def test_project_masks_on_boxes_matches_torchvision_roi_heads(sol, M: int) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(5)
    masks = _masks(g, 5, 40, 60).to(torch.uint8)
    boxes = _boxes(g, 20, 60, low=-5)
    boxes[0] = torch.tensor([10.0, 10.0, 10.4, 10.3])  # smaller than a pixel
    matched = torch.randint(0, 5, (20,), generator=g)
    torch.testing.assert_close(sol.project_masks_on_boxes(masks, boxes, matched, M),
                               roi_heads.project_masks_on_boxes(masks, boxes, matched, M), rtol=RTOL, atol=ATOL)


def test_maskrcnn_loss_matches_torchvision_roi_heads(sol) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(6)
    per_image = [(3, 6), (2, 0), (4, 9)]
    proposals, gt_masks, gt_labels, matched = [], [], [], []
    for num_gt, k in per_image:
        gt_masks.append(_masks(g, num_gt, 30, 40).to(torch.uint8))
        gt_labels.append(torch.randint(1, 5, (num_gt,), generator=g))
        proposals.append(_boxes(g, k, 40))
        matched.append(torch.randint(0, num_gt, (k,), generator=g))
    logits = torch.randn(15, 5, 28, 28, generator=g, dtype=torch.float64) * 3
    torch.testing.assert_close(sol.maskrcnn_loss(logits, proposals, gt_masks, gt_labels, matched),
                               roi_heads.maskrcnn_loss(logits, proposals, gt_masks, gt_labels, matched),
                               rtol=RTOL, atol=ATOL)
    none = [p[:0] for p in proposals], [m[:0] for m in matched]
    assert float(sol.maskrcnn_loss(logits[:0], none[0], gt_masks, gt_labels, none[1])) == 0.0


@pytest.mark.parametrize("M", [7, 28])
def test_paste_masks_in_image_matches_torchvision_roi_heads(sol, M: int) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(7)
    masks = torch.rand(15, M, M, generator=g, dtype=torch.float64)
    boxes = _boxes(g, 15, 70, low=-8)
    boxes[0] = torch.tensor([-12.3, -7.9, 20.2, 15.6])   # partly outside, top left
    boxes[1] = torch.tensor([50.5, 30.2, 95.0, 75.0])    # partly outside, bottom right
    boxes[2] = torch.tensor([10.0, 10.0, 10.0, 10.0])    # zero size
    boxes[3] = torch.tensor([4.2, 30.7, 5.1, 31.0])      # smaller than a pixel
    expected = roi_heads.paste_masks_in_image(masks[:, None], boxes, (60, 80))[:, 0]
    torch.testing.assert_close(sol.paste_masks_in_image(masks, boxes, (60, 80)), expected, rtol=RTOL, atol=ATOL)
    got32 = sol.paste_masks_in_image(masks.float(), boxes.float(), (60, 80))
    expected32 = roi_heads.paste_masks_in_image(masks.float()[:, None], boxes.float(), (60, 80))[:, 0]
    torch.testing.assert_close(got32, expected32, rtol=1e-5, atol=1e-5)   # float32 round-off, measured 2.5e-6


def _detection_problem(g: torch.Generator, images: int, tied: bool) -> tuple[list[dict], list[dict]]:
    predictions, targets = [], []
    for _ in range(images):
        num_gt, num_det = int(torch.randint(0, 7, (1,), generator=g)), int(torch.randint(0, 14, (1,), generator=g))
        gt, labels = _masks(g, num_gt, 30, 40), torch.randint(1, 4, (num_gt,), generator=g)
        det, det_labels = _masks(g, num_det, 30, 40), torch.randint(1, 4, (num_det,), generator=g)
        if num_gt and num_det:
            source = torch.randint(0, num_gt, (num_det,), generator=g)
            copy = torch.rand(num_det, generator=g) < 0.7
            det[copy], det_labels[copy] = gt[source[copy]], labels[source[copy]]
            shifts = torch.randint(-2, 3, (num_det,), generator=g).tolist()
            det = torch.stack([m.roll(s, dims=1) for m, s in zip(det, shifts)])
        scores = (torch.randint(1, 5, (num_det,), generator=g) / 4.0) if tied else torch.rand(num_det, generator=g)
        predictions.append({"masks": det, "scores": scores, "labels": det_labels})
        targets.append({"masks": gt.to(torch.uint8), "labels": labels})
    return predictions, targets


@pytest.mark.parametrize("tied", [False, True])
def test_mask_average_precision_equals_pycocotools_segm(sol, tied: bool) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(8 + tied)
    for _ in range(12):
        predictions, targets = _detection_problem(g, int(torch.randint(1, 6, (1,), generator=g)), tied)
        ours, coco = sol.mask_average_precision(predictions, targets), pycocotools_mask_ap(predictions, targets)
        for key in ("AP", "AP50", "AP75"):
            assert ours[key] == pytest.approx(coco[key], rel=1e-12, abs=1e-12), (key, ours, coco)


def test_coco_thresholds_are_numpy_linspace_exactly(sol) -> None:  # noqa: ANN001
    np.testing.assert_array_equal(sol.COCO_IOU_THRESHOLDS.numpy(), np.linspace(0.5, 0.95, 10))
    np.testing.assert_array_equal(sol.COCO_RECALL_THRESHOLDS.numpy(), np.linspace(0.0, 1.0, 101))


def _shapes_batch(n: int, size: int = 64, seed: int = 3) -> tuple[list[torch.Tensor], list[dict]]:
    data = ShapesDataset(num_images=n, image_size=size, max_shapes=3, seed=seed)
    images, targets = zip(*[data[i] for i in range(n)])
    return list(images), list(targets)


def test_reference_pieces_swapped_into_a_torchvision_mask_rcnn_give_identical_detections(
        sol, single_torch_thread: None) -> None:  # noqa: ANN001
    model = build_small_mask_rcnn(num_classes=4, image_size=64, seed=0).eval().double()
    model.roi_heads.score_thresh = 0.0   # random weights: keep every detection, so there is something to compare
    model.rpn._pre_nms_top_n["testing"], model.rpn._post_nms_top_n["testing"] = 200, 100
    images = [im.double() for im in _shapes_batch(3)[0]]
    with torch.no_grad():
        theirs = model(images)
        with pieces_swapped_in(model, nms=sol.nms, roi_align=sol.roi_align, encode_boxes=sol.encode_boxes,
                               decode_boxes=sol.decode_boxes, box_iou=sol.box_iou,
                               paste_masks_in_image=sol.paste_masks_in_image):
            ours = model(images)
        again = model(images)   # the patches are undone on exit
    assert sum(len(t["labels"]) for t in theirs) > 10
    difference = detection_difference(theirs, ours)
    assert difference["count"] == 0 and max(difference["boxes"], difference["scores"], difference["masks"]) < 1e-9, \
        difference
    assert detection_difference(theirs, again) == {"count": 0.0, "boxes": 0.0, "scores": 0.0, "masks": 0.0}


def test_reference_pieces_and_mask_loss_give_torchvision_training_losses(sol, single_torch_thread: None) -> None:  # noqa: ANN001
    images, targets = _shapes_batch(2)
    model = build_small_mask_rcnn(num_classes=4, image_size=64, seed=0).train().double()
    images = [im.double() for im in images]
    targets = [{**t, "boxes": t["boxes"].double()} for t in targets]
    losses = []
    for swap in (False, True):
        torch.manual_seed(0)   # the RPN and RoI samplers draw random positives and negatives
        with pieces_swapped_in(model, **({} if not swap else dict(
                nms=sol.nms, roi_align=sol.roi_align, encode_boxes=sol.encode_boxes, decode_boxes=sol.decode_boxes,
                box_iou=sol.box_iou))):
            if swap:
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(roi_heads, "maskrcnn_loss", sol.maskrcnn_loss)
                    losses.append(model(images, targets))
            else:
                losses.append(model(images, targets))
    for name in losses[0]:
        torch.testing.assert_close(losses[1][name], losses[0][name], rtol=1e-9, atol=1e-12, msg=name)


def test_thirty_iterations_on_a_fixed_batch_lower_every_loss_term(single_torch_thread: None) -> None:
    from cs_lib.detection import train_detector

    images, targets = _shapes_batch(2, seed=11)
    model = build_small_mask_rcnn(num_classes=4, image_size=64, seed=0)
    torch.manual_seed(0)

    def same_batch():  # noqa: ANN202
        while True:
            yield images, targets

    history = train_detector(model, same_batch(), iterations=30, lr=0.02, warmup=5)
    for name in ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg", "loss"):
        first, last = np.mean(history[name][:3]), np.mean(history[name][-3:])
        assert last < first, f"{name}: {first:.4f} -> {last:.4f}"


def test_pennfudan_dataset_reads_the_tutorial_layout(tmp_path) -> None:  # noqa: ANN001
    """A two-image stand-in for PennFudanPed/ (PNGImages/*.png, PedMasks/*_mask.png with instance ids)."""
    from PIL import Image

    from cs_lib.data import PennFudanDataset

    root = tmp_path / "PennFudanPed"
    (root / "PNGImages").mkdir(parents=True)
    (root / "PedMasks").mkdir()
    ids = np.zeros((40, 60), dtype=np.uint8)
    ids[5:30, 10:20] = 1
    ids[8:38, 30:55] = 2
    for name in ("FudanPed00002", "FudanPed00001"):
        Image.fromarray(np.full((40, 60, 3), 128, dtype=np.uint8)).save(root / "PNGImages" / f"{name}.png")
        Image.fromarray(ids).save(root / "PedMasks" / f"{name}_mask.png")
    data = PennFudanDataset(root)
    assert data.names == ["FudanPed00001.png", "FudanPed00002.png"]
    image, target = data[0]
    assert image.shape == (3, 40, 60) and image.dtype == torch.float32 and float(image.max()) <= 1.0
    assert target["boxes"].tolist() == [[10.0, 5.0, 20.0, 30.0], [30.0, 8.0, 55.0, 38.0]]
    assert target["labels"].tolist() == [1, 1] and target["masks"].shape == (2, 40, 60)
    small = PennFudanDataset(root, indices=[1], max_size=30)
    image, target = small[0]
    assert image.shape == (3, 20, 30) and target["masks"].shape == (2, 20, 30)
    with pytest.raises(FileNotFoundError, match="download.py pennfudan"):
        PennFudanDataset(tmp_path / "missing")
