"""A corpus of submissions that delegate graded functions to libraries, graded in real batches.

Per assignment, a few notebooks that each combine several functions' attacks (each function is scored
independently): library one-liners, an alias made in another cell, an obfuscated call that only the
runtime record sees, a loop where the notebook forbids loops, an honest solution that uses allowed
helpers, and broken building blocks (one that kills the kernel, one that is wrong). :data:`CASES` says
which tests each must fail with a policy finding (``findings``) and which must fail without one
(``broken``); every other test earns its full points (the rest of the notebook is the reference solution).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import nbformat

from autograder.batch.samples import CRASH_BODY, correct_submission, with_answer_body, wrong_body
from tests.corpus.build import without_demo_cells


@dataclass(frozen=True)
class PolicyCase:
    """One submission: ``bodies`` replace answer regions, ``after`` appends lines to answer cells."""

    assignment: str
    student: str
    bodies: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)
    findings: dict[str, str] = field(default_factory=dict)  # grade_id -> text of the expected finding
    broken: tuple[str, ...] = ()  # grade_ids that must score 0 without a finding (their own answer is broken)


#: A body that stands for the spec's first wrong answer (``autograder.batch.samples.wrong_body``).
WRONG = "<the spec's first wrong answer>"


_LOOPY_BOX_IOU = """
area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
rows = []
for i in range(len(boxes1)):
    lt = torch.maximum(boxes1[i, :2], boxes2[:, :2])
    rb = torch.minimum(boxes1[i, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    rows.append(inter / (area1[i] + area2 - inter))
return torch.stack(rows) if rows else boxes1.new_zeros((0, len(boxes2)))
"""

CASES = [
    PolicyCase("mask_rcnn", "delegates", bodies={
        "box_iou": _LOOPY_BOX_IOU,
        "encode_boxes": "from torchvision.models.detection._utils import BoxCoder\n"
                        "return BoxCoder(weights).encode_single(gt, proposals)",
        "decode_boxes": "import importlib\n"
                        "coder = getattr(importlib.import_module('torchvision.models.' + 'detection._utils'), "
                        "'Box' + 'Coder')(weights)\n"
                        "return coder.decode_single(deltas, proposals)",
        "nms": "import sys\n"
               "ops = getattr(sys.modules['torch' + 'vision'], ''.join(['o', 'p', 's']))\n"
               "return getattr(ops, ''.join(['n', 'm', 's']))(boxes, scores, iou_threshold)",
        "roi_align": "return _fast_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)",
    }, after={"box_iou": "from torchvision.ops import roi_align as _fast_roi_align"}, findings={
        "test_box_iou": "box_iou uses a Python `for` loop",
        "test_encode_boxes": "encode_boxes calls torchvision.models.detection._utils.BoxCoder",
        "test_decode_boxes": "decode_boxes calls torchvision.models.detection._utils.BoxCoder",
        "test_nms": "nms calls torchvision.ops.boxes.nms (while the grader ran it)",
        "test_roi_align": "roi_align calls torchvision.ops.roi_align (cell",
    }),
    PolicyCase("mask_rcnn", "honest"),
    PolicyCase("triplet_embeddings", "delegates", bodies={
        "pairwise_distances": "d = torch.cdist(embeddings, embeddings)\nreturn d ** 2 if squared else d",
        "triplet_loss": "return F.triplet_margin_loss(anchor, positive, negative, margin=margin)",
        "contrastive_loss": "total = 0.0\n"
                            "for a, b, s in zip(e1, e2, is_same):\n"
                            "    d = (a - b).norm()\n"
                            "    total = total + (0.5 * d ** 2 if s else 0.5 * F.relu(margin - d) ** 2)\n"
                            "return total / len(e1)",
        "batch_hard_triplet_loss": "from pytorch_metric_learning.distances import LpDistance\n"
                                   "from pytorch_metric_learning.reducers import MeanReducer\n"
                                   "distance = LpDistance(normalize_embeddings=False)\n"
                                   "miner = _pml_miners.BatchHardMiner(distance=distance)\n"
                                   "loss = _pml_losses.TripletMarginLoss(margin=margin, distance=distance, "
                                   "reducer=MeanReducer())\n"
                                   "return loss(embeddings, labels, miner(embeddings, labels))",
        # only the runtime record sees this one: a module looked up in sys.modules by a computed name
        "batch_all_triplet_loss": "import sys\n"
                                  "losses = sys.modules['pytorch_metric' + '_learning.losses']\n"
                                  "return getattr(losses, ''.join(['Triplet', 'Margin', 'Loss']))(margin=margin)("
                                  "embeddings, labels)",
    }, after={"pairwise_distances": "from pytorch_metric_learning import losses as _pml_losses, miners as _pml_miners"},
        findings={
        "test_pairwise_distances": "pairwise_distances calls torch.cdist",
        "test_triplet_loss": "triplet_loss calls torch.nn.functional.triplet_margin_loss",
        "test_contrastive_loss": "contrastive_loss uses a Python `for` loop",
        "test_batch_hard_triplet_loss": "batch_hard_triplet_loss calls pytorch_metric_learning",
        "test_batch_all_triplet_loss": "batch_all_triplet_loss calls pytorch_metric_learning.losses",
    }),
    # recall_at_k may use torch.cdist (only pairwise_distances may not): an honest, allowed helper
    PolicyCase("triplet_embeddings", "honest", bodies={
        "recall_at_k": "distances = torch.cdist(embeddings, embeddings).fill_diagonal_(math.inf)\n"
                       "k_max = min(max(ks), len(labels) - 1)\n"
                       "nearest = distances.topk(k_max, dim=1, largest=False).indices\n"
                       "found = (labels[nearest] == labels.unsqueeze(1)).cumsum(dim=1) > 0\n"
                       "return {f'recall@{k}': int(found[:, min(k, k_max) - 1].sum()) / len(labels) for k in ks}",
    }),
    PolicyCase("network_visualization", "delegates", bodies={
        # only the runtime record sees this one: the import is a computed string run by exec
        "compute_saliency_maps": "scope = {}\n"
                                 "exec('from captum.attr import ' + 'Sal' + 'iency as S', scope)\n"
                                 "model.eval()\n"
                                 "return scope['S'](model).attribute(X, target=y, abs=True).max(dim=1).values",
        # an alias made in another cell
        "compute_guided_backprop": "return _captum_attr.GuidedBackprop(model).attribute(X, target=y).abs().amax(dim=1)",
        # a library one-liner
        "compute_occlusion_map": "import captum.attr\n"
                                 "return captum.attr.Occlusion(model).attribute(X, target=y, sliding_window_shapes=("
                                 "X.shape[1], patch, patch), strides=(X.shape[1], stride, stride), "
                                 "baselines=baseline).sum(dim=1)",
    }, after={"compute_saliency_maps": "from captum import attr as _captum_attr"}, findings={
        "test_compute_saliency_maps": "compute_saliency_maps calls captum",
        "test_compute_guided_backprop": "compute_guided_backprop calls captum.attr.GuidedBackprop",
        "test_compute_occlusion_map": "compute_occlusion_map calls captum.attr.Occlusion",
    }),
    # A building block that kills the kernel and one that is wrong: each costs only its own points.
    PolicyCase("mask_rcnn", "broken-blocks", bodies={"roi_align": CRASH_BODY, "box_iou": WRONG},
               broken=("test_roi_align", "test_box_iou")),
    PolicyCase("triplet_embeddings", "broken-blocks", bodies={"pairwise_distances": CRASH_BODY,
                                                              "contrastive_loss": WRONG},
               broken=("test_pairwise_distances", "test_contrastive_loss")),
    PolicyCase("network_visualization", "broken-blocks", bodies={"compute_saliency_maps": CRASH_BODY,
                                                                 "compute_gradcam": WRONG},
               broken=("test_compute_saliency_maps", "test_compute_gradcam")),
]


def case_bodies(case: PolicyCase, source: nbformat.NotebookNode) -> dict[str, str]:
    """``case.bodies`` with :data:`WRONG` replaced by the spec's first wrong answer."""
    return {grade_id: wrong_body(case.assignment, source, grade_id) if body == WRONG else body
            for grade_id, body in case.bodies.items()}


def policy_notebook(case: PolicyCase, source: nbformat.NotebookNode, release: nbformat.NotebookNode) -> str:
    """The file content of ``case``'s submission (demo cells dropped to keep the batch fast)."""
    nb = without_demo_cells(correct_submission(source, release))
    for grade_id, body in case_bodies(case, source).items():
        nb = with_answer_body(nb, source, grade_id, body)
    nb = copy.deepcopy(nb)
    for grade_id, line in case.after.items():
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        cell.source = cell.source.rstrip("\n") + "\n\n" + line + "\n"
    return nbformat.writes(nb)
