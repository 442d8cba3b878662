"""cs_lib: the small helper package that the course notebooks call.

One module per concept:

- :mod:`cs_lib.runtime`  device, seeds, grading mode, iteration budgets, progress bars
- :mod:`cs_lib.checks`   ``rel_error``, ``check_close``, ``check_equal`` and shape/dtype/device checks
- :mod:`cs_lib.rules`    ``check_rules``: does a graded function keep its rule (no library that solves it,
  no loops where the notebook forbids them)? :mod:`cs_lib.policies` holds the rules, from the grader's specs
- :mod:`cs_lib.submission_check` is this notebook gradable? (``python -m cs_lib.submission_check NOTEBOOK``)
- :mod:`cs_lib.images`   ImageNet pre- and post-processing, blur and jitter
- :mod:`cs_lib.models`   pretrained torchvision models through the weights API
- :mod:`cs_lib.data`     sample images, CS231n's ImageNet images, styles, MNIST, shapes
- :mod:`cs_lib.plotting` image grids, heatmaps, instance masks, embeddings, loss curves
- :mod:`cs_lib.detection` the small Mask R-CNN, its training loop and COCO evaluation helpers
- :mod:`cs_lib.grading`  the kernel's side of grading, nothing a student calls: ``judge_client`` (call the
  function when the grader asks), ``wire`` (the pickle-free plain-data format the kernel answers in) and
  ``models`` (small models the grader sends to the kernel, nothing secret)

Nothing here touches the network at import time; downloads happen only when a loader
is called and its file is missing.
"""

from cs_lib.checks import check_close, check_equal, check_tensor, rel_error
from cs_lib.rules import check_rules
from cs_lib.runtime import budget, get_device, in_grading, progress, seed_everything

__all__ = [
    "budget",
    "check_close",
    "check_equal",
    "check_rules",
    "check_tensor",
    "get_device",
    "in_grading",
    "progress",
    "rel_error",
    "seed_everything",
]
