"""The triplet_embeddings reference solutions against independent peers, with every convention explicit.

Peers: ``torch.cdist`` (without its matrix-product shortcut), ``torch.nn.TripletMarginLoss``,
pytorch-metric-learning (PML) and scikit-learn's ``NearestNeighbors``. PML's conventions differ from the
papers', so each comparison names the settings that make them equal: ``LpDistance(normalize_embeddings=False,
p=2, power=1)`` (PML normalises by default), ``TripletMarginLoss``'s default ``AvgNonZeroReducer`` for
batch-all, ``BatchHardMiner`` + ``TripletMarginLoss(reducer=MeanReducer())`` for batch-hard, and PML's
unsquared per-pair contrastive terms squared and halved for Hadsell et al.'s loss.

Every peer comparison runs on random embeddings with duplicates, with a single class in the batch, with a
class that has one sample, and in float64. The last test trains batch-hard on the MNIST test split.
"""

from __future__ import annotations

import ast
import dataclasses
import time
import types

import numpy as np
import pytest
import torch
from pytorch_metric_learning import distances, losses, miners, reducers
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from sklearn.neighbors import NearestNeighbors

from autograder import source_notebook
from autograder.judging.solutions import load_solutions
from autograder.specs import triplet_embeddings as spec_module

F64 = torch.float64
#: The training test's recipe: Adam with a one-cycle schedule. 400 steps reached Recall@1 0.987 in 34 s of CPU
#: time (one thread); a global-average-pooled head instead of the 3x3 one reached only 0.975.
TRAINING_STEPS, TRAINING_LR = 400, 5e-3


@pytest.fixture(scope="module")
def sol() -> types.SimpleNamespace:
    return load_solutions("triplet_embeddings")


@pytest.fixture(autouse=True)
def quiet_single_thread(monkeypatch: pytest.MonkeyPatch, single_torch_thread: None) -> None:
    monkeypatch.setenv("DLCV_GRADING", "1")


def lp_distance() -> distances.LpDistance:
    """The distance of every formula here: Euclidean, not squared, on the embeddings as they are."""
    return distances.LpDistance(normalize_embeddings=False, p=2, power=1)


def batch(seed: int, n: int = 24, d: int = 5, classes: int = 4, dtype: torch.dtype = F64,
          duplicates: bool = True, singleton: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Random embeddings and labels; duplicate rows share their label; one class may have one sample."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    y[:classes] = torch.arange(classes)
    if singleton:
        y[classes] = classes + 7
    x = torch.randn(n, d, generator=g, dtype=dtype) + 1.5 * torch.randn(classes + 8, d, generator=g, dtype=dtype)[y]
    if duplicates:
        x[-1], y[-1] = x[0], y[0]
        x[-2], y[-2] = x[2], y[2]
    return x, y


#: The situations every graded function is checked in (issue 9): (name, embeddings, labels).
SITUATIONS = [
    ("duplicates and a one-sample class", *batch(0)),
    ("larger batch, 6 classes", *batch(1, n=48, d=16, classes=6)),
    ("a single class", batch(2)[0][:10], torch.full((10,), 3)),
    ("no duplicates", *batch(3, duplicates=False, singleton=False)),
]
SITUATION_IDS = [s[0] for s in SITUATIONS]


# ------------------------------------------------------------------------------------------ distances


def test_pairwise_distances_match_cdist_in_float64_with_an_exact_zero_diagonal(sol) -> None:
    for _, x, _ in SITUATIONS:
        peer = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
        ours = sol.pairwise_distances(x)
        # 1e-6 relative; at duplicates (distance 0) the Gram form leaves up to sqrt(eps) |x| ~ 1e-7 where
        # cdist's difference form gives 0.
        torch.testing.assert_close(ours, peer, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(sol.pairwise_distances(x, squared=True), peer ** 2, rtol=1e-6, atol=1e-12)
        assert bool((ours.diagonal() == 0).all()) and ours.dtype == F64
    assert sol.pairwise_distances(torch.randn(1, 4, dtype=F64)).tolist() == [[0.0]]


def test_pairwise_distances_float32_agree_with_float64_cdist_for_separated_points(sol) -> None:
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(5))
    ours = sol.pairwise_distances(x)
    assert ours.dtype == torch.float32
    # float32 Gram form: error ~ eps * |x|^2 / d = 6e-8 * 64 / 6 (closest pairs), so 1e-5 relative.
    torch.testing.assert_close(ours.double(), torch.cdist(x.double(), x.double()), rtol=1e-5, atol=1e-6)


def test_pairwise_distance_gradients_are_finite_at_duplicates_and_equal_cdists(sol) -> None:
    x, _ = batch(4, n=12)
    weights = torch.rand(12, 12, generator=torch.Generator().manual_seed(6), dtype=F64)
    grads = []
    for fn in (sol.pairwise_distances, lambda e: torch.cdist(e, e, compute_mode="donot_use_mm_for_euclid_dist")):
        leaf = x.clone().requires_grad_(True)
        (fn(leaf) * weights).sum().backward()
        grads.append(leaf.grad)
    assert torch.isfinite(grads[0]).all()
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-6)
    naive = x.clone().requires_grad_(True)
    ((naive.unsqueeze(1) - naive.unsqueeze(0)) ** 2).sum(-1).sqrt().sum().backward()
    assert not torch.isfinite(naive.grad).all(), "the NaN this guards against no longer happens"


# ------------------------------------------------------------------------------------------ pair and triplet losses


def _pml_hadsell(e1: torch.Tensor, e2: torch.Tensor, is_same: torch.Tensor, margin: float) -> torch.Tensor:
    """Hadsell et al.'s loss from PML's per-pair ContrastiveLoss terms (relu(d), relu(m - d)), squared, halved."""
    n = len(e1)
    emb = torch.cat([e1, e2])
    idx = torch.arange(n)
    pos, neg = idx[is_same], idx[~is_same]
    pml = losses.ContrastiveLoss(pos_margin=0.0, neg_margin=margin, distance=lp_distance())
    # pair_based_loss, not compute_loss: PML's compute_loss returns zero losses whenever every index tensor
    # has at most one element, i.e. for a single pair (pytorch-metric-learning 2.9).
    terms = pml.pair_based_loss(pml.distance(emb, emb), (pos, pos + n, neg, neg + n))
    per_pair = torch.zeros(n, dtype=e1.dtype)
    for key, where in (("pos_loss", pos), ("neg_loss", neg)):
        if len(where):
            per_pair[where] = terms[key]["losses"]
    return (0.5 * per_pair ** 2).mean()


@pytest.mark.parametrize("margin", [1.0, 0.4])
def test_contrastive_loss_is_pml_contrastive_squared_and_halved(sol, margin: float) -> None:
    g = torch.Generator().manual_seed(7)
    for n in (1, 9, 30):
        e1 = torch.randn(n, 4, generator=g, dtype=F64)
        e2 = e1 + 0.4 * torch.randn(n, 4, generator=g, dtype=F64)
        e2[0] = e1[0]                                  # a pair at distance 0
        for is_same in (torch.rand(n, generator=g) < 0.5, torch.ones(n, dtype=torch.bool),
                        torch.zeros(n, dtype=torch.bool)):
            torch.testing.assert_close(sol.contrastive_loss(e1, e2, is_same, margin),
                                       _pml_hadsell(e1, e2, is_same, margin), rtol=1e-10, atol=1e-12)
    leaf = e1.clone().requires_grad_(True)
    sol.contrastive_loss(leaf, e2, torch.zeros(n, dtype=torch.bool), margin).backward()
    assert torch.isfinite(leaf.grad).all()


def test_triplet_loss_equals_torch_nn_and_pml_with_a_mean_reducer(sol) -> None:
    g = torch.Generator().manual_seed(8)
    for n, margin in [(1, 1.0), (17, 0.2), (40, 2.0)]:
        a, p, neg = torch.randn(3, n, 6, generator=g, dtype=F64)
        p[0] = a[0]                                    # d(a, p) = 0
        ours = sol.triplet_loss(a, p, neg, margin)
        torch.testing.assert_close(ours, torch.nn.TripletMarginLoss(margin=margin, p=2, eps=0)(a, p, neg),
                                   rtol=1e-10, atol=1e-12)
        idx = torch.arange(n)
        pml = losses.TripletMarginLoss(margin=margin, distance=lp_distance(), reducer=reducers.MeanReducer())
        torch.testing.assert_close(ours, pml(torch.cat([a, p, neg]), indices_tuple=(idx, idx + n, idx + 2 * n)),
                                   rtol=1e-10, atol=1e-12)
    leaves = [t.clone().requires_grad_(True) for t in (a, p, neg)]
    sol.triplet_loss(*leaves, margin=margin).backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)


# ------------------------------------------------------------------------------------------ online mining


def _pml_batch_all(x: torch.Tensor, y: torch.Tensor, margin: float) -> tuple[torch.Tensor, float]:
    loss = losses.TripletMarginLoss(margin=margin, distance=lp_distance())(x, y)   # default AvgNonZeroReducer
    valid = len(lmu.get_all_triplets_indices(y)[0])
    active = len(miners.TripletMarginMiner(margin=margin, type_of_triplets="all", distance=lp_distance())(x, y)[0])
    return loss, (active / valid if valid else 0.0)


def _pml_batch_hard(x: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    mined = miners.BatchHardMiner(distance=lp_distance())(x, y)
    return losses.TripletMarginLoss(margin=margin, distance=lp_distance(), reducer=reducers.MeanReducer())(x, y, mined)


@pytest.mark.parametrize("situation", range(len(SITUATIONS)), ids=SITUATION_IDS)
@pytest.mark.parametrize("margin", [0.3, 1.0, 3.0])
def test_batch_all_equals_pml_triplet_margin_loss_with_its_non_zero_reducer(sol, situation: int, margin: float) -> None:
    _, x, y = SITUATIONS[situation]
    loss, fraction = sol.batch_all_triplet_loss(x, y, margin)
    peer_loss, peer_fraction = _pml_batch_all(x, y, margin)
    torch.testing.assert_close(loss, peer_loss.to(loss.dtype), rtol=1e-10, atol=1e-12)
    assert isinstance(fraction, float) and fraction == pytest.approx(peer_fraction, abs=1e-12)


@pytest.mark.parametrize("situation", range(len(SITUATIONS)), ids=SITUATION_IDS)
@pytest.mark.parametrize("margin", [0.3, 1.0, 3.0])
def test_batch_hard_equals_pml_batch_hard_miner_with_a_mean_reducer(sol, situation: int, margin: float) -> None:
    _, x, y = SITUATIONS[situation]
    torch.testing.assert_close(sol.batch_hard_triplet_loss(x, y, margin), _pml_batch_hard(x, y, margin).to(F64),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("situation", range(len(SITUATIONS)), ids=SITUATION_IDS)
@pytest.mark.parametrize("margin", [0.3, 1.0, 3.0])
def test_semi_hard_triplets_are_pml_semihard_miner_triplets(sol, situation: int, margin: float) -> None:
    _, x, y = SITUATIONS[situation]
    miner = miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard", distance=lp_distance())
    ours = sol.semi_hard_triplets(x, y, margin)
    assert all(t.dtype == torch.int64 for t in ours)
    as_set = lambda triplets: sorted(zip(*(t.tolist() for t in triplets)))  # noqa: E731 - order-independent
    assert as_set(ours) == as_set(miner(x, y))


def test_mining_losses_have_pmls_gradients_and_finite_ones_at_duplicates(sol) -> None:
    x, y = batch(9, duplicates=False)
    for ours, peer in [(lambda e: sol.batch_all_triplet_loss(e, y, 1.0)[0], lambda e: _pml_batch_all(e, y, 1.0)[0]),
                       (lambda e: sol.batch_hard_triplet_loss(e, y, 1.0), lambda e: _pml_batch_hard(e, y, 1.0))]:
        grads = []
        for fn in (ours, peer):
            leaf = x.clone().requires_grad_(True)
            fn(leaf).backward()
            grads.append(leaf.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-10)
    x, y = batch(10)                                   # duplicates: distances of exactly 0
    for fn in (lambda e: sol.batch_all_triplet_loss(e, y, 1.0)[0], lambda e: sol.batch_hard_triplet_loss(e, y, 1.0)):
        leaf = x.clone().requires_grad_(True)
        fn(leaf).backward()
        assert torch.isfinite(leaf.grad).all()


def test_pml_default_distance_normalises_so_the_convention_matters(sol) -> None:
    """The reason every PML call above names LpDistance(normalize_embeddings=False)."""
    x, y = batch(11)
    x = 3.0 * x
    default = losses.TripletMarginLoss(margin=1.0)(x, y)
    assert abs(float(default) - float(sol.batch_all_triplet_loss(x, y, 1.0)[0])) > 1e-2


def test_solution_body_reads_the_notebooks_solution_region(sol) -> None:
    """The batch wrong answers are edits of ``solution_body`` (``judging.solutions``): it must return the cell's
    solution region, here compared with an independent parse of the cell (comments and indentation dropped).
    An edit whose text left the solution fails when the spec module loads (``edited_solution``)."""
    import nbformat

    nb = nbformat.read(source_notebook("triplet_embeddings"), as_version=4)
    for name, body in spec_module.BATCH_BODIES.items():
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == name)
        region = cell.source.split("### BEGIN SOLUTION\n")[1].split("    ### END SOLUTION")[0]
        solution = "\n".join(line.split("#")[0].rstrip()[4:] for line in region.splitlines())
        assert ast.dump(ast.parse(solution)) == ast.dump(ast.parse(body)), name


# ------------------------------------------------------------------------------------------ sampler and recall


def test_pk_sampler_batches_are_p_classes_of_k_and_a_seed_reproduces_them(sol) -> None:
    labels = torch.repeat_interleave(torch.arange(7), torch.tensor([9, 3, 12, 5, 1, 8, 6]))
    sampler = sol.PKSampler(labels, P=5, K=4, num_batches=40, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 40
    for b in batches:
        counts = torch.bincount(labels[torch.tensor(b)], minlength=7)
        assert sorted(counts.tolist()) == [0, 0, 4, 4, 4, 4, 4]
        for c in torch.nonzero(counts).flatten().tolist():
            members = [i for i in b if labels[i] == c]
            assert len(set(members)) == (4 if (labels == c).sum() >= 4 else len(set(members)))
    assert batches == list(sol.PKSampler(labels, P=5, K=4, num_batches=40, seed=3))
    assert batches != list(sol.PKSampler(labels, P=5, K=4, num_batches=40, seed=4))
    assert list(sampler) != batches, "a second epoch has new batches"
    assert len(sol.PKSampler(labels, P=5, K=4)) == len(labels) // 20
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(labels), batch_sampler=sampler)
    assert [len(b[0]) for b in loader] == [20] * 40
    with pytest.raises(ValueError, match="P must be"):
        sol.PKSampler(labels, P=8, K=2)


def _sklearn_recall(x: torch.Tensor, y: torch.Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    """Leave-one-out Recall@K from scikit-learn's exact neighbours.

    The query is dropped by index from its k + 1 nearest neighbours (``kneighbors()`` without X drops *a*
    point at distance 0, which for a duplicate may be the other copy)."""
    k_max = min(max(ks), len(y) - 1)
    nn_index = NearestNeighbors(n_neighbors=k_max + 1, algorithm="brute").fit(x.numpy())
    neighbours = nn_index.kneighbors(x.numpy(), return_distance=False)
    others = np.stack([row[row != i][:k_max] for i, row in enumerate(neighbours)])
    hits = y.numpy()[others] == y.numpy()[:, None]
    return {f"recall@{k}": float(hits[:, :min(k, k_max)].any(axis=1).mean()) for k in ks}


@pytest.mark.parametrize("situation", range(len(SITUATIONS)), ids=SITUATION_IDS)
def test_recall_at_k_equals_scikit_learn_nearest_neighbours(sol, situation: int) -> None:
    _, x, y = SITUATIONS[situation]
    for ks in [(1, 2, 4, 8), (1, 3, 100)]:
        ours = sol.recall_at_k(x, y, ks)
        assert ours == pytest.approx(_sklearn_recall(x, y, ks), abs=1e-12)
        assert all(type(v) is float for v in ours.values())
    x32 = torch.randn(200, 16, generator=torch.Generator().manual_seed(12))
    y32 = torch.randint(0, 10, (200,), generator=torch.Generator().manual_seed(13))
    assert sol.recall_at_k(x32, y32) == pytest.approx(_sklearn_recall(x32, y32, (1, 2, 4, 8)), abs=1e-12)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_function_runs_on_cuda_and_agrees_with_the_cpu(sol) -> None:
    x, y = batch(14)
    xc, yc = x.cuda(), y.cuda()
    torch.testing.assert_close(sol.pairwise_distances(xc).cpu(), sol.pairwise_distances(x))
    torch.testing.assert_close(sol.batch_all_triplet_loss(xc, yc, 1.0)[0].cpu(),
                               sol.batch_all_triplet_loss(x, y, 1.0)[0])
    torch.testing.assert_close(sol.batch_hard_triplet_loss(xc, yc, 1.0).cpu(), sol.batch_hard_triplet_loss(x, y, 1.0))
    assert [t.cpu().tolist() for t in sol.semi_hard_triplets(xc, yc, 1.0)] == \
        [t.tolist() for t in sol.semi_hard_triplets(x, y, 1.0)]
    assert sol.recall_at_k(xc, yc) == sol.recall_at_k(x, y)
    e1, e2 = xc[:8], xc[8:16]
    torch.testing.assert_close(sol.contrastive_loss(e1, e2, yc[:8] == yc[8:16]).cpu(),
                               sol.contrastive_loss(x[:8], x[8:16], y[:8] == y[8:16]))
    torch.testing.assert_close(sol.triplet_loss(xc[:5], xc[5:10], xc[10:15]).cpu(),
                               sol.triplet_loss(x[:5], x[5:10], x[10:15]))


# ------------------------------------------------------------------------------------------ training


def test_batch_hard_training_on_the_mnist_test_split_reaches_recall_at_1_of_098(sol, mnist_root) -> None:
    """Batch-hard with the reference loss and P×K sampler, on 8,000 MNIST test images, for under a minute.

    Recall@1 is leave-one-out among the other ~2,000 images of the split (never trained on). The time limit
    is on the process's CPU time: with one thread it equals the wall time of an idle machine, and it does
    not fail when other jobs share the CPU.
    """
    from cs_lib.data import load_digits

    data = load_digits("mnist", root=mnist_root, download=False)
    assert data.source == "mnist test" and len(data.labels) == 10_000
    images, labels = (data.images - 0.1307) / 0.3081, data.labels
    held_out = torch.rand(len(labels), generator=torch.Generator().manual_seed(0)) < 0.2
    torch.manual_seed(0)
    width = 16
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, width, 3, padding=1), torch.nn.BatchNorm2d(width), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(width, 2 * width, 3, padding=1), torch.nn.BatchNorm2d(2 * width), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(2 * width, 2 * width, 3, padding=1), torch.nn.BatchNorm2d(2 * width), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(3), torch.nn.Flatten(), torch.nn.Linear(18 * width, 64))   # keeps a 3x3 layout
    steps, lr = TRAINING_STEPS, TRAINING_LR
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    train_images, train_labels = images[~held_out], labels[~held_out]
    wall, cpu = time.perf_counter(), time.process_time()
    model.train()
    for batch in sol.PKSampler(train_labels, P=10, K=10, num_batches=steps, seed=0):
        idx = torch.tensor(batch)
        loss = sol.batch_hard_triplet_loss(model(train_images[idx]), train_labels[idx], margin=0.5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        embeddings = torch.cat([model(chunk) for chunk in images[held_out].split(1000)])
    recall = sol.recall_at_k(embeddings, labels[held_out], ks=(1, 8))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"batch-hard, {steps} steps of 10 x 10 MNIST test images: Recall@1 {recall['recall@1']:.4f}, "
          f"Recall@8 {recall['recall@8']:.4f} on {int(held_out.sum())} held-out images; "
          f"{cpu:.1f} s CPU, {wall:.1f} s wall")
    assert recall["recall@1"] >= 0.98, recall
    assert cpu < 60, f"training and evaluation took {cpu:.1f} s of CPU time"


@pytest.mark.parametrize("name", ["batch_all_triplet_loss", "batch_hard_triplet_loss", "semi_hard_triplets",
                                  "recall_at_k"])
def test_a_wrong_pairwise_distances_costs_only_its_own_points(name: str) -> None:
    """The judge swaps the grader's cdist stand-in into the student's globals for the functions that call it."""
    from autograder.judging.judge import LocalChannel, RemoteFunction, run_test
    from autograder.judging.solutions import variant
    from autograder.judging.spec import load_specs

    correct = variant("triplet_embeddings", name, spec_module.BATCH_BODIES.get(name, "")) \
        if name in spec_module.BATCH_BODIES else load_solutions("triplet_embeddings").recall_at_k
    wrong_distances = variant("triplet_embeddings", "pairwise_distances",   # cosine: other neighbours, too
                              "e = F.normalize(embeddings, dim=1)\nreturn torch.cdist(e, e)")
    student = types.FunctionType(correct.__code__, {**correct.__globals__, "pairwise_distances": wrong_distances},
                                 name, correct.__defaults__)
    spec = load_specs("triplet_embeddings")[name]
    assert run_test("triplet_embeddings", spec, RemoteFunction(name, LocalChannel(student))).passed
    # ...and without the stand-in, the same function fails: the swap is what makes the difference.
    bare = dataclasses.replace(spec, stand_ins=None)
    assert not run_test("triplet_embeddings", bare, RemoteFunction(name, LocalChannel(student))).passed
