"""Time the reference ``batch_hard_triplet_loss`` against pytorch-metric-learning's batch-hard, forward + backward.

Both compute the same loss (``tests/test_triplet_reference.py`` checks it to round-off): for each anchor the
farthest positive and the closest negative under the non-squared Euclidean distance, hinged at the margin and
averaged over the anchors that have both. PML's version is ``BatchHardMiner`` followed by ``TripletMarginLoss``
with a ``MeanReducer``, both with ``LpDistance(normalize_embeddings=False)``; the miner computes the distance
matrix under ``no_grad`` and the loss computes it again. The reference computes the squared distances once (one
matrix product), picks the hardest samples on them with masked ``amax``/``amin`` (``sqrt`` is increasing), and
takes the square root of the picked values only.

Usage (from the repository root)::

    python benchmarks/triplet_batch_hard_vs_pml.py [--batch 256 1024] [--dim 64] [--classes-per-batch 32]
                                                   [--device cpu] [--repeat 20] [--threads N]

The embeddings are random (seed 0) with P×K labels (``--classes-per-batch`` classes of batch / P samples).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autograder.judging.solutions import load_solutions  # noqa: E402
from benchmarks.timing import interleaved_median_times  # noqa: E402


def forward_backward(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], embeddings: torch.Tensor,
                     labels: torch.Tensor) -> Callable[[], torch.Tensor]:
    """One timed step: the loss of a fresh leaf copy of ``embeddings`` and its gradient; returns the loss."""

    def run() -> torch.Tensor:
        leaf = embeddings.detach().clone().requires_grad_(True)
        loss = loss_fn(leaf, labels)
        loss.backward()
        return loss.detach()

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--classes-per-batch", type=int, default=32)
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from pytorch_metric_learning import distances, losses, miners, reducers

    device = torch.device(args.device)
    sol = load_solutions("triplet_embeddings")
    distance = distances.LpDistance(normalize_embeddings=False, p=2, power=1)
    miner = miners.BatchHardMiner(distance=distance)
    pml_loss = losses.TripletMarginLoss(margin=args.margin, distance=distance, reducer=reducers.MeanReducer())

    def pml(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return pml_loss(embeddings, labels, miner(embeddings, labels))

    def reference(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return sol.batch_hard_triplet_loss(embeddings, labels, args.margin)

    print(f"batch-hard triplet loss, forward + backward, {args.dim}-D float32 embeddings, P = "
          f"{args.classes_per_batch} classes per batch; device {device}, {torch.get_num_threads()} thread(s); "
          f"medians of {args.repeat} interleaved runs")
    ratios = {}
    for batch in args.batch:
        g = torch.Generator().manual_seed(0)
        labels = torch.arange(args.classes_per_batch).repeat_interleave(batch // args.classes_per_batch)
        labels = labels[torch.randperm(len(labels), generator=g)].to(device)
        embeddings = torch.randn(len(labels), args.dim, generator=g).to(device)
        seconds, outputs = interleaved_median_times(
            {"reference": forward_backward(reference, embeddings, labels),
             "pml": forward_backward(pml, embeddings, labels)}, args.repeat, device)
        difference = abs(float(outputs["reference"]) - float(outputs["pml"]))
        ratios[batch] = seconds["reference"] / seconds["pml"]
        print(f"batch {len(labels):5d}: reference {1e3 * seconds['reference']:8.2f} ms   PML miner + loss "
              f"{1e3 * seconds['pml']:8.2f} ms   ratio reference / PML = {ratios[batch]:.2f}   "
              f"(|loss difference| = {difference:.1e})")
    print("time ratio reference / PML: " + ", ".join(f"batch {b}: {r:.2f}" for b, r in ratios.items())
          + "  (below 1: the reference is faster)")


if __name__ == "__main__":
    main()
