"""Mask R-CNN helpers for the ``mask_rcnn`` notebook: model builders, a training loop, predictions.

- :func:`load_mask_rcnn`: torchvision's ``maskrcnn_resnet50_fpn_v2`` with its COCO weights, through the
  weights API (``MaskRCNN_ResNet50_FPN_V2_Weights``); while grading without the weights file, a seeded
  random-init model and one printed line instead (as :mod:`cs_lib.models` does for classifiers).
- :func:`replace_predictors`: new box and mask predictors for another number of classes (fine-tuning).
- :func:`build_small_mask_rcnn`: a 12.4M-parameter Mask R-CNN that a CPU trains from scratch in minutes
  on :class:`cs_lib.data.ShapesDataset`: ResNet-18 body with trainable BatchNorm, 64-channel FPN and heads,
  anchors 8-128 px, 96 px images.
- :func:`train_detector`: SGD with a linear warm-up and gradient clipping, a progress bar and the
  history of every loss term.
- :func:`predict`: detections with binary masks, ready for a mask-AP metric.
- :func:`pycocotools_mask_ap`: pycocotools' ``COCOeval(..., "segm")`` on the same inputs, the peer that a
  mask-AP implementation must agree with.
- :func:`pieces_swapped_in`: run a torchvision Mask R-CNN with your own ``nms``, ``roi_align``, box
  coder, ``box_iou`` and ``paste_masks_in_image`` in place of torchvision's; :func:`detection_difference`
  compares two models' detections.

All functions follow torchvision's detection conventions: images are float ``(3, H, W)`` in [0, 1];
targets and predictions are dicts with ``boxes`` float ``(K, 4)`` as ``(x1, y1, x2, y2)`` in pixels,
``labels`` int64 ``(K,)`` (0 is the background) and ``masks`` ``(K, H, W)``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from unittest import mock

import torch
import torchvision
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from cs_lib.models import FALLBACK_SEED, _build, weights_path
from cs_lib.runtime import progress

Image = torch.Tensor
Target = dict[str, torch.Tensor]

def coco_category_names() -> list[str]:
    """The 91 COCO category names of ``MaskRCNN_ResNet50_FPN_V2_Weights`` (from its metadata, no download)."""
    return list(torchvision.models.get_model_weights("maskrcnn_resnet50_fpn_v2")["DEFAULT"].meta["categories"])


def load_mask_rcnn(weights: str = "DEFAULT", device: torch.device | str | None = None,
                   allow_random: bool | None = None, progress_bar: bool = True) -> MaskRCNN:
    """torchvision's ``maskrcnn_resnet50_fpn_v2`` (Li et al. 2021), COCO-trained, in eval mode.

    The weights come through the weights API and torch's hub cache
    (``python datasets/download.py weights --only maskrcnn_resnet50_fpn_v2`` fetches them ahead of time).

    Args:
        weights: an entry of ``MaskRCNN_ResNet50_FPN_V2_Weights`` (``"DEFAULT"`` = ``COCO_V1``).
        device: where to put the model (default: the CPU).
        allow_random: when the weights file is missing, use a randomly initialised model (seed
            :data:`cs_lib.models.FALLBACK_SEED`) and print one line saying so. ``None``: only while grading.
        progress_bar: show the download progress bar.

    Returns:
        The model in eval mode (91 COCO classes), parameters trainable.

    Raises:
        cs_lib.models.WeightsUnavailableError: the weights are missing and could not be downloaded.
    """
    model = _build("maskrcnn_resnet50_fpn_v2", weights, allow_random, progress_bar).eval()
    return model.to(device) if device is not None else model


def mask_rcnn_weights_available(weights: str = "DEFAULT") -> bool:
    """True when the COCO weights of ``maskrcnn_resnet50_fpn_v2`` are in torch's hub cache."""
    return weights_path("maskrcnn_resnet50_fpn_v2", weights).exists()


def replace_predictors(model: MaskRCNN, num_classes: int) -> MaskRCNN:
    """Give ``model`` new box and mask predictors for ``num_classes`` classes (background included).

    This is torchvision's fine-tuning recipe: everything else keeps its (pretrained) weights.
    Returns ``model``, changed in place.
    """
    box_in = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(box_in, num_classes)
    mask_in = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(mask_in, mask_in, num_classes)
    return model.to(next(model.parameters()).device)


def build_small_mask_rcnn(num_classes: int = 4, image_size: int = 96, fpn_channels: int = 64,
                          sample_size: int = 64, seed: int | None = FALLBACK_SEED) -> MaskRCNN:
    """A small Mask R-CNN that a CPU trains from scratch in minutes on synthetic shapes.

    Sizes (measured on 2 CPU cores, 96 px images, batch 8: about 0.6 s per iteration):

    - body: ResNet-18 (random init) with **trainable** ``BatchNorm2d`` (torchvision's default,
      ``FrozenBatchNorm2d``, keeps random statistics fixed and diverges from scratch);
    - ``BackboneWithFPN`` on layers 1-4 with ``fpn_channels`` channels and a max-pool level;
    - anchors of 8, 16, 32, 64 and 128 px (one size per level), aspect ratios 0.5, 1, 2;
    - box head ``TwoMLPHead(fpn_channels * 7 * 7, 256)``; mask head ``MaskRCNNHeads(fpn_channels,
      (fpn_channels, fpn_channels), 1)`` and 28 x 28 masks;
    - ``sample_size`` RoIs per image for the box head and anchors per image for the RPN.

    Args:
        num_classes: classes including the background (4 for ``ShapesDataset``).
        image_size: the images' size; the transform keeps it (no resizing).
        fpn_channels: channels of the FPN and the heads.
        sample_size: RoI-head and RPN sample sizes per image.
        seed: seeds the initial weights (``None``: the global generator's state).

    Returns:
        A ``torchvision.models.detection.MaskRCNN`` in train mode.
    """
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        body = torchvision.models.resnet18(weights=None, norm_layer=nn.BatchNorm2d)
        backbone = BackboneWithFPN(
            body, return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
            in_channels_list=[64, 128, 256, 512], out_channels=fpn_channels,
        )
        anchors = AnchorGenerator(sizes=((8,), (16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
        box_roi_pool = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
        mask_roi_pool = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=14, sampling_ratio=2)
        model = MaskRCNN(
            backbone, num_classes=None, min_size=image_size, max_size=image_size,
            rpn_anchor_generator=anchors, rpn_batch_size_per_image=sample_size,
            rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500,
            rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
            box_roi_pool=box_roi_pool, box_head=TwoMLPHead(fpn_channels * 7 * 7, 256),
            box_predictor=FastRCNNPredictor(256, num_classes), box_batch_size_per_image=sample_size,
            box_detections_per_img=20,
            mask_roi_pool=mask_roi_pool, mask_head=MaskRCNNHeads(fpn_channels, (fpn_channels, fpn_channels), 1),
            mask_predictor=MaskRCNNPredictor(fpn_channels, fpn_channels, num_classes),
        )
    return model


def collate_detection(batch: Sequence[tuple[Image, Target]]) -> tuple[list[Image], list[Target]]:
    """``DataLoader`` collate function for detection: lists of images and of targets (sizes may differ)."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def endless_batches(dataset: torch.utils.data.Dataset, batch_size: int, seed: int = 0
                    ) -> Iterator[tuple[list[Image], list[Target]]]:
    """Shuffled batches of ``dataset`` forever (a new permutation, seeded, each epoch)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(dataset), generator=generator).tolist()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield collate_detection([dataset[i] for i in order[start:start + batch_size]])


def train_detector(model: MaskRCNN, batches: Iterator[tuple[list[Image], list[Target]]], iterations: int,
                   lr: float = 0.02, momentum: float = 0.9, weight_decay: float = 1e-4, warmup: int = 50,
                   clip_norm: float = 10.0, device: torch.device | str | None = None,
                   time_limit_s: float | None = None,
                   callback: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, list[float]]:
    """Train a torchvision detector with SGD, a linear warm-up, a cosine decay and gradient clipping.

    Args:
        model: a detector whose ``forward(images, targets)`` returns a dict of losses in train mode.
        batches: yields ``(images, targets)`` lists (e.g. :func:`endless_batches`).
        iterations: the number of SGD steps.
        lr, momentum, weight_decay: SGD's settings; the learning rate rises linearly from lr / warmup over
            the first ``warmup`` steps, then follows a cosine to zero at ``iterations``.
        clip_norm: the largest gradient norm (``torch.nn.utils.clip_grad_norm_``).
        device: where to train (default: the model's device).
        time_limit_s: a wall-clock budget: the cosine decay follows whichever of the step count and the
            elapsed time is further along, and training stops when the time is up, so that a slower (or
            busier) machine still finishes its schedule in time, with fewer steps.
        callback: called as ``callback(step, losses)`` after each step.

    Returns:
        ``{loss name: [value per step]}`` with torchvision's loss names (``loss_classifier``,
        ``loss_box_reg``, ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg``), plus ``loss`` (their
        sum) and ``seconds`` (wall time since the start, per step).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def learning_rate(step: int, elapsed_s: float) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        done = (step - warmup) / max(1, iterations - warmup)
        if time_limit_s is not None:
            done = max(done, elapsed_s / time_limit_s)
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))

    history: dict[str, list[float]] = {}
    start = time.perf_counter()
    for step in progress(range(iterations), desc="training"):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, time.perf_counter() - start)
        images, targets = next(batches)
        images = [im.to(device) for im in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        losses = model(images, targets)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
        optimizer.step()
        values = {name: v.detach().item() for name, v in losses.items()}
        values["loss"] = total.detach().item()
        values["seconds"] = time.perf_counter() - start
        for name, v in values.items():
            history.setdefault(name, []).append(v)
        if callback is not None:
            callback(step, values)
        if time_limit_s is not None and values["seconds"] >= time_limit_s:
            break
    model.eval()
    return history


@torch.no_grad()
def predict(model: MaskRCNN, images: Sequence[Image], mask_threshold: float = 0.5,
            batch_size: int = 8) -> list[dict[str, torch.Tensor]]:
    """Run a detector in eval mode and binarise its masks.

    Args:
        model: a torchvision Mask R-CNN.
        images: float ``(3, H, W)`` tensors in [0, 1].
        mask_threshold: probability above which a mask pixel is foreground.
        batch_size: images per forward pass.

    Returns:
        One dict per image, on the CPU: ``boxes`` float32 ``(D, 4)``, ``scores`` float32 ``(D,)``,
        ``labels`` int64 ``(D,)``, ``masks`` bool ``(D, H, W)`` and ``mask_probs`` float32 ``(D, H, W)``.
    """
    model.eval()
    device = next(model.parameters()).device
    results = []
    for start in range(0, len(images), batch_size):
        outputs = model([im.to(device) for im in images[start:start + batch_size]])
        for out in outputs:
            probs = out["masks"][:, 0].cpu()
            results.append({"boxes": out["boxes"].cpu(), "scores": out["scores"].cpu(),
                            "labels": out["labels"].cpu(), "masks": probs >= mask_threshold, "mask_probs": probs})
    return results


def pycocotools_mask_ap(predictions: Sequence[dict[str, torch.Tensor]], targets: Sequence[dict[str, torch.Tensor]]
                        ) -> dict[str, float]:
    """COCO mask AP, AP50 and AP75 computed by pycocotools (``COCOeval(gt, dt, "segm")``), quietly.

    Args:
        predictions: one dict per image: ``masks`` (D, H, W) binary, ``scores`` (D,), ``labels`` (D,).
        targets: one dict per image: ``masks`` (G, H, W) binary, ``labels`` (G,).

    Returns:
        ``{"AP", "AP50", "AP75"}``: ``COCOeval.stats[0:3]`` (maximum 100 detections per image and class,
        all areas); the categories are the labels that occur in ``targets``.
    """
    import contextlib
    import io

    import numpy as np
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def rle(mask: torch.Tensor) -> dict:
        return mask_utils.encode(np.asfortranarray(mask.detach().cpu().bool().numpy().astype(np.uint8)))

    images, annotations, detections = [], [], []
    for image_id, (p, t) in enumerate(zip(predictions, targets), start=1):
        H, W = t["masks"].shape[-2:]
        images.append({"id": image_id, "height": int(H), "width": int(W)})
        for m, c in zip(t["masks"], t["labels"]):
            encoded = rle(m)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c),
                                "segmentation": encoded, "area": float(mask_utils.area(encoded)), "iscrowd": 0,
                                "bbox": [float(v) for v in mask_utils.toBbox(encoded)]})
        for m, c, s in zip(p["masks"], p["labels"], p["scores"]):
            detections.append({"image_id": image_id, "category_id": int(c), "segmentation": rle(m),
                               "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c} for c in sorted({int(c) for t in targets for c in t["labels"]})]}
        gt.createIndex()
        dt = gt.loadRes(detections) if detections else COCO()
        evaluator = COCOeval(gt, dt, "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {"AP": float(evaluator.stats[0]), "AP50": float(evaluator.stats[1]), "AP75": float(evaluator.stats[2])}


def count_parameters(model: nn.Module) -> int:
    """The number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


class _SwappedBoxCoder(BoxCoder):
    """torchvision's ``BoxCoder`` with ``encode_single`` and ``decode_single`` done by other functions."""

    def __init__(self, original: BoxCoder, encode: Callable[..., torch.Tensor] | None,
                 decode: Callable[..., torch.Tensor] | None) -> None:
        super().__init__(original.weights, original.bbox_xform_clip)
        self._encode, self._decode = encode, decode

    def encode_single(self, reference_boxes: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        if self._encode is None:
            return super().encode_single(reference_boxes, proposals)
        return self._encode(reference_boxes, proposals, tuple(self.weights))

    def decode_single(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        if self._decode is None:
            return super().decode_single(rel_codes, boxes)
        # torchvision decodes (N, 4 * classes) deltas against (N, 4) boxes; the function takes (N, 4) pairs.
        per_box = rel_codes.shape[1] // 4
        decoded = self._decode(rel_codes.reshape(-1, 4), boxes.repeat_interleave(per_box, dim=0), tuple(self.weights))
        return decoded.reshape(boxes.shape[0], rel_codes.shape[1])


@contextlib.contextmanager
def pieces_swapped_in(model: MaskRCNN, *, nms: Callable[..., torch.Tensor] | None = None,
                      roi_align: Callable[..., torch.Tensor] | None = None,
                      encode_boxes: Callable[..., torch.Tensor] | None = None,
                      decode_boxes: Callable[..., torch.Tensor] | None = None,
                      box_iou: Callable[..., torch.Tensor] | None = None,
                      paste_masks_in_image: Callable[..., torch.Tensor] | None = None) -> Iterator[MaskRCNN]:
    """Within the ``with`` block, ``model`` runs with these functions in place of torchvision's own.

    The functions have the ``mask_rcnn`` notebook's signatures: ``nms(boxes, scores, iou_threshold)``;
    ``roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)``;
    ``encode_boxes(gt, proposals, weights)`` and ``decode_boxes(deltas, proposals, weights)`` on (N, 4);
    ``box_iou(boxes1, boxes2)``; ``paste_masks_in_image(masks (K, M, M), boxes, (H, W)) -> (K, H, W)``.
    ``None`` keeps torchvision's. They replace ``torchvision.ops.boxes.nms`` (used by ``batched_nms`` in
    the RPN and the box head), ``torchvision.ops.poolers.roi_align`` (``MultiScaleRoIAlign``),
    ``torchvision.ops.boxes.box_iou`` (the training matchers), the model's two box coders, and the
    transform's ``paste_masks_in_image``; everything is restored on exit.
    """
    with contextlib.ExitStack() as stack:
        if nms is not None:
            def boxes_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
                return nms(boxes, scores, float(iou_threshold))

            stack.enter_context(mock.patch("torchvision.ops.boxes.nms", boxes_nms))
        if roi_align is not None:
            def pooler_roi_align(input: torch.Tensor, boxes: torch.Tensor, output_size: int | Sequence[int],
                                 spatial_scale: float = 1.0, sampling_ratio: int = -1,
                                 aligned: bool = False) -> torch.Tensor:
                return roi_align(input, boxes, tuple(output_size) if not isinstance(output_size, int) else output_size,
                                 spatial_scale, sampling_ratio, aligned)

            stack.enter_context(mock.patch("torchvision.ops.poolers.roi_align", pooler_roi_align))
        if box_iou is not None:
            stack.enter_context(mock.patch("torchvision.ops.boxes.box_iou", box_iou))
        if paste_masks_in_image is not None:
            def transform_paste(masks: torch.Tensor, boxes: torch.Tensor, img_shape: Sequence[int],
                                padding: int = 1) -> torch.Tensor:
                return paste_masks_in_image(masks[:, 0], boxes, (int(img_shape[0]), int(img_shape[1])))[:, None]

            stack.enter_context(mock.patch("torchvision.models.detection.transform.paste_masks_in_image",
                                           transform_paste))
        coders = (model.rpn.box_coder, model.roi_heads.box_coder)
        if encode_boxes is not None or decode_boxes is not None:
            model.rpn.box_coder = _SwappedBoxCoder(coders[0], encode_boxes, decode_boxes)
            model.roi_heads.box_coder = _SwappedBoxCoder(coders[1], encode_boxes, decode_boxes)
        try:
            yield model
        finally:
            model.rpn.box_coder, model.roi_heads.box_coder = coders


def detection_difference(a: Sequence[dict[str, torch.Tensor]], b: Sequence[dict[str, torch.Tensor]]
                         ) -> dict[str, float]:
    """How far two detectors' outputs on the same images are apart.

    Args:
        a, b: one dict per image with ``boxes``, ``scores``, ``labels`` and ``masks`` (torchvision's eval output).

    Returns:
        ``{"count": number of images whose detection counts or labels differ, "boxes": largest box-coordinate
        difference, "scores": largest score difference, "masks": largest mask-probability difference}``
        (float("inf") for the last three when a count or a label differs).
    """
    differ = sum(len(x["labels"]) != len(y["labels"]) or not torch.equal(x["labels"], y["labels"])
                 for x, y in zip(a, b))
    if differ:
        return {"count": float(differ), "boxes": math.inf, "scores": math.inf, "masks": math.inf}
    result = {"count": 0.0}
    for key in ("boxes", "scores", "masks"):
        diffs = [float((x[key].double() - y[key].double()).abs().max()) for x, y in zip(a, b) if x[key].numel()]
        result[key] = max(diffs, default=0.0)
    return result
