"""Train the small Mask R-CNN of ``cs_lib.detection`` from scratch on synthetic shapes, on the CPU.

This is the notebook's offline fine-tuning recipe at full size, run once to make the pictures and numbers
in this folder's README:

    python docs/mask_rcnn/train_shapes.py train --minutes 10 --threads 2 --out /tmp/mask_rcnn_shapes
    python docs/mask_rcnn/train_shapes.py report --out /tmp/mask_rcnn_shapes

``train`` writes ``history.json`` (every loss term per step, the wall time) and ``predictions.pt`` (the
detections on the 60 held-out images; ``--save-model`` also keeps ``model.pt``); ``report`` scores them
with the notebook's reference ``mask_average_precision`` and with
pycocotools' ``COCOeval(..., "segm")`` (they must agree), and writes ``training_curve.png``,
``predicted_masks.png`` and ``results.json`` into this folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cs_lib.data import ShapesDataset  # noqa: E402
from cs_lib.detection import (  # noqa: E402
    build_small_mask_rcnn,
    count_parameters,
    endless_batches,
    predict,
    pycocotools_mask_ap,
    train_detector,
)
from cs_lib.plotting import show_instances  # noqa: E402

HERE = Path(__file__).resolve().parent
IMAGE_SIZE, MAX_SHAPES, TRAIN_SEED, TEST_SEED, NUM_TEST = 96, 3, 1, 2, 60


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = build_small_mask_rcnn(num_classes=4, image_size=IMAGE_SIZE, seed=0)
    data = ShapesDataset(num_images=20000, image_size=IMAGE_SIZE, max_shapes=MAX_SHAPES, seed=TRAIN_SEED)
    print(f"{count_parameters(model) / 1e6:.1f}M parameters; {args.threads} threads; {args.minutes} minutes",
          flush=True)

    def log(step: int, values: dict[str, float]) -> None:
        if step % 25 == 0:
            print(f"step {step:4d}  {values['seconds']:6.0f} s  loss {values['loss']:.3f}  "
                  f"mask {values['loss_mask']:.3f}", flush=True)

    history = train_detector(model, endless_batches(data, args.batch_size, seed=0), iterations=args.iterations,
                             lr=0.02, warmup=50, clip_norm=10.0, time_limit_s=60 * args.minutes, callback=log)
    print(f"done: {len(history['loss'])} steps in {history['seconds'][-1] / 60:.1f} min", flush=True)
    test = ShapesDataset(num_images=NUM_TEST, image_size=IMAGE_SIZE, max_shapes=MAX_SHAPES, seed=TEST_SEED)
    start = time.perf_counter()
    predictions = predict(model, [test[i][0] for i in range(len(test))])
    inference_s = time.perf_counter() - start
    torch.save([{k: v for k, v in p.items() if k != "mask_probs"} for p in predictions], out / "predictions.pt")
    (out / "history.json").write_text(json.dumps({
        "threads": args.threads, "batch_size": args.batch_size, "inference_seconds": inference_s,
        "torch": torch.__version__, "cpu": _cpu_name(), "history": history}))
    if args.save_model:
        torch.save(model.state_dict(), out / "model.pt")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def report(args: argparse.Namespace) -> None:
    from autograder.judging.solutions import load_solutions

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    saved = json.loads((out / "history.json").read_text())
    history = saved["history"]
    test = ShapesDataset(num_images=NUM_TEST, image_size=IMAGE_SIZE, max_shapes=MAX_SHAPES, seed=TEST_SEED)
    images, targets = zip(*[test[i] for i in range(len(test))])
    predictions = torch.load(out / "predictions.pt", weights_only=True)
    reference = load_solutions("mask_rcnn").mask_average_precision(predictions, list(targets))
    coco = pycocotools_mask_ap(predictions, list(targets))
    for key in ("AP", "AP50", "AP75"):
        assert abs(float(reference[key]) - coco[key]) < 1e-12, (key, reference, coco)
    minutes = history["seconds"][-1] / 60
    results = {"steps": len(history["loss"]), "minutes": round(minutes, 2), "threads": saved["threads"],
               "batch_size": saved["batch_size"],
               "seconds_per_step": round(history["seconds"][-1] / len(history["loss"]), 3),
               "parameters": count_parameters(build_small_mask_rcnn()), "held_out_images": NUM_TEST,
               "cpu": saved["cpu"], "torch": saved["torch"],
               "mask_AP": round(float(reference["AP"]), 4), "mask_AP50": round(float(reference["AP50"]), 4),
               "mask_AP75": round(float(reference["AP75"]), 4), "pycocotools": coco,
               "inference_seconds_60_images": round(saved["inference_seconds"], 2)}
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    minutes_axis = np.asarray(history["seconds"]) / 60
    for name in ("loss", "loss_mask", "loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"):
        values = np.asarray(history[name])
        smooth = np.convolve(values, np.ones(10) / 10, mode="valid")
        ax.plot(minutes_axis[9:], smooth, label=name, linewidth=2 if name == "loss" else 1)
    ax.set_yscale("log")
    ax.set_xlabel(f"minutes (CPU, {saved['threads']} threads)")
    ax.set_ylabel("training loss (10-step mean)")
    ax.set_title(f"small Mask R-CNN on shapes: mask AP {reference['AP']:.3f}, AP50 {reference['AP50']:.3f}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(HERE / "training_curve.png", dpi=100)

    fig, axes = plt.subplots(2, 4, figsize=(12, 6))
    names = ShapesDataset.classes
    for k, ax in enumerate(axes.flat):
        p = predictions[k]
        keep = p["scores"] >= 0.5
        show_instances(images[k], p["boxes"][keep], p["masks"][keep], labels=[names[int(c)] for c in p["labels"][keep]],
                       scores=p["scores"][keep], ax=ax)
        ax.set_title(f"held-out image {k}", fontsize=9)
    fig.suptitle("predicted masks (score >= 0.5) on held-out shapes")
    fig.tight_layout()
    fig.savefig(HERE / "predicted_masks.png", dpi=80)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["train", "report"])
    parser.add_argument("--out", default="/tmp/mask_rcnn_shapes")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-model", action="store_true", help="also write model.pt (50 MB)")
    args = parser.parse_args(argv)
    train(args) if args.command == "train" else report(args)


if __name__ == "__main__":
    main()
