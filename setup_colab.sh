#!/usr/bin/env bash
# Set up a student bundle on Google Colab (or any machine that already has torch).
# Usage, in a Colab cell, wherever the bundle was unzipped (README.md, "For students"):
#   !bash /content/<assignment>/setup_colab.sh <assignment>
#   <assignment>: example, network_visualization, style_transfer, mask_rcnn or triplet_embeddings
# It never reinstalls torch or torchvision: Colab's build matches its GPU driver.
# A download that fails (offline, server down) is reported with what to do and does not stop the
# setup: cs_lib.data falls back to pictures that scikit-image ships and mask_rcnn to synthetic
# shapes; a cell that needs missing pretrained weights stops with the command that fetches them.
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
  network_visualization) downloads=(imagenet_val weights --only squeezenet1_1) ;;
  style_transfer) downloads=(styles weights --only squeezenet1_1) ;;
  mask_rcnn) downloads=(pennfudan weights --only maskrcnn_resnet50_fpn_v2) ;;
  example|triplet_embeddings|"") downloads=() ;;
  *) echo "setup_colab.sh: unknown assignment '$assignment'; expected example, network_visualization," \
          "style_transfer, mask_rcnn or triplet_embeddings" >&2; exit 2 ;;
esac
if (( ${#downloads[@]} )) && ! python datasets/download.py --no-progress "${downloads[@]}"; then
  echo "setup_colab.sh: some files could not be downloaded (the lines above say which, and what to do)." \
       "Run this script again when you are online. Until then the notebook uses pictures that scikit-image" \
       "ships (mask_rcnn: synthetic shapes), and a cell that needs missing pretrained weights stops with" \
       "the command that fetches them."
fi
echo "Ready: the bundle is in $here. Run the notebook's cells from the top; its first cell finds cs_lib there."
