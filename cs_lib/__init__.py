"""cs_lib: the small helper package that the course notebooks call.

One module per concept:

- :mod:`cs_lib.runtime`  device, seeds, grading mode, iteration budgets, progress bars
- :mod:`cs_lib.checks`   ``rel_error``, ``check_close`` and shape/dtype/device checks
- :mod:`cs_lib.images`   ImageNet pre- and post-processing, blur and jitter
- :mod:`cs_lib.models`   pretrained torchvision models through the weights API
- :mod:`cs_lib.data`     sample images, CS231n's ImageNet images, styles, MNIST, shapes
- :mod:`cs_lib.plotting` image grids, heatmaps, instance masks, embeddings, loss curves

Nothing here touches the network at import time; downloads happen only when a loader
is called and its file is missing.
"""

from cs_lib.checks import check_close, check_tensor, rel_error
from cs_lib.runtime import budget, get_device, in_grading, progress, seed_everything

__all__ = [
    "budget",
    "check_close",
    "check_tensor",
    "get_device",
    "in_grading",
    "progress",
    "rel_error",
    "seed_everything",
]
