#!/usr/bin/env bash
# Every check of this kit that needs a CUDA device, in one run that ends within a time budget.
#
#   bash benchmarks/gpu_checks.sh [OUT_DIR]
#
# OUT_DIR (default: $OUT where set, else ./gpu_checks_out) receives one log per step and summary.txt; the
# same lines go to stdout. Steps, in order, each under its own limit (seconds) and the budget's remainder:
#
#   environment         20   nvidia-smi, Python, torch, torchvision, and which optional peers import
#   cuda_tests          90   pytest -m cuda: the references on CUDA agree with the CPU
#   swap_demo          120   benchmarks/mask_rcnn_swap_vs_torchvision.py --device cuda (goal: within 3x
#                            torchvision's own pieces, identical detections)
#   notebooks_grading  45 each   benchmarks/notebook_times.py --grading, one notebook at a time
#   notebooks_normal  150 each   benchmarks/notebook_times.py --parts, one notebook at a time
#
# GPU_CHECKS_BUDGET (default 540) is the whole run's limit: a step never starts with less than 15 s left,
# and is stopped at the budget. A step that fails or runs out of time is reported, and the next one runs.
# Without pretrained weights (offline) the notebooks run with --random-weights: same architecture, same
# time; they read their data from $DLCV_DATA where it is set (else their offline fallbacks, e.g. the 8x8
# digits for MNIST). The seconds go into each notebook's "How long it takes" table and docs/*/README.md.
#
# Needs the packages of requirements.txt (nbformat, captum, pytorch-metric-learning and scikit-learn for
# the tests and the swap demo's reference pieces); the notebooks need only torch, torchvision and their
# own imports. Runs on a CPU-only machine too, where every CUDA step says that it skipped.

set -u
OUT_DIR=${1:-${OUT:-gpu_checks_out}}
mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd)
cd "$(dirname "$0")/.."
BUDGET=${GPU_CHECKS_BUDGET:-540}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
summary="$OUT_DIR/summary.txt"
: >"$summary"

# step LOG NAME LIMIT COMMAND...: run COMMAND under min(LIMIT, what the budget has left), appending to LOG.
step() {
    local log="$OUT_DIR/$1.txt" name=$2 limit=$3
    shift 3
    local left=$((BUDGET - SECONDS))
    if ((left < 15)); then
        echo "$name: not run (the ${BUDGET} s budget is spent)" | tee -a "$summary"
        return
    fi
    ((limit > left)) && limit=$left
    local start=$SECONDS
    echo "== $name (limit ${limit} s)" | tee -a "$log"
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]} verdict
    case $rc in
        0) verdict="ok" ;;
        124 | 137) verdict="STOPPED at its ${limit} s limit" ;;
        *) verdict="FAILED (exit status $rc)" ;;
    esac
    echo "$name: $verdict in $((SECONDS - start)) s" | tee -a "$summary"
}

cuda=$("$PYTHON" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
step environment "environment" 20 bash -c "
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo 'no nvidia-smi'
    $PYTHON - <<'EOF'
import importlib, platform
import torch, torchvision
print('python', platform.python_version(), '| torch', torch.__version__, '| torchvision', torchvision.__version__,
      '| cuda', torch.version.cuda, '| device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')
for name in ('nbformat', 'captum', 'pytorch_metric_learning', 'sklearn', 'skimage', 'pycocotools'):
    try:
        module = importlib.import_module(name)
        print(f'{name}: {getattr(module, \"__version__\", \"present\")}')
    except ImportError as exc:
        print(f'{name}: MISSING ({exc})')
EOF"

if [[ $cuda != 1 ]]; then
    echo "no CUDA device: the CUDA tests, the swap demo on CUDA and the GPU notebook times are skipped" \
        | tee -a "$summary"
    exit 0
fi

mapfile -t cuda_test_files < <(grep -l "pytest.mark.cuda" tests/test_*.py)  # collect only what runs
step cuda_tests "CUDA tests" 90 "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider "${cuda_test_files[@]}"
step swap_demo "swap demo on CUDA" 120 "$PYTHON" benchmarks/mask_rcnn_swap_vs_torchvision.py --device cuda

notebooks=(example network_visualization style_transfer triplet_embeddings mask_rcnn)  # the longest last
for name in "${notebooks[@]}"; do
    step notebooks_grading "$name, grading mode" 45 \
        "$PYTHON" benchmarks/notebook_times.py --grading --random-weights "$name"
done
for name in "${notebooks[@]}"; do
    step notebooks_normal "$name, normal mode" 150 \
        "$PYTHON" benchmarks/notebook_times.py --parts --random-weights "$name"
done

echo "== summary ($SECONDS s of the ${BUDGET} s budget)"
cat "$summary"
