#!/usr/bin/env bash
# Set up a student bundle on Google Colab (or any machine that already has torch).
# Usage, in a Colab cell, from the unzipped bundle's folder:
#   !bash setup_colab.sh [network_visualization|style_transfer|mask_rcnn|triplet_embeddings]
# It never reinstalls torch or torchvision: Colab's build matches its GPU driver.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
python - <<'PY'
import sys
try:
    import torch, torchvision  # noqa: F401
except ImportError:
    sys.exit("setup_colab.sh: torch and torchvision are not installed. On Colab they are; "
             "elsewhere install them first: https://pytorch.org/get-started/locally/")
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"CUDA available: {torch.cuda.is_available()}")
PY
python -m pip install -q -r requirements-student.txt
assignment=${1:-}
case "$assignment" in
  network_visualization) python datasets/download.py imagenet_val weights --only squeezenet1_1 ;;
  style_transfer) python datasets/download.py styles weights --only squeezenet1_1 ;;
  mask_rcnn) python datasets/download.py pennfudan weights --only maskrcnn_resnet50_fpn_v2 ;;
  triplet_embeddings|"") ;;
  *) echo "setup_colab.sh: unknown assignment '$assignment'" >&2; exit 2 ;;
esac
echo "Ready. Open the assignment's notebook from $here."
