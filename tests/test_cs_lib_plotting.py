"""cs_lib.plotting: every plot renders to a PNG and rejects mismatched inputs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from cs_lib import plotting


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _render(fig, tmp_path) -> None:
    path = tmp_path / "fig.png"
    fig.savefig(path)
    assert path.stat().st_size > 1000


def test_show_image_grid_with_titles(tmp_path) -> None:
    images = [np.zeros((8, 8, 3), np.uint8), torch.rand(3, 8, 8), torch.rand(1, 8, 8), np.random.rand(8, 8)]
    fig = plotting.show_image_grid(images, titles=["a", "b", "c", "d"], ncols=3)
    assert len(fig.axes) == 6 and sum(bool(ax.images) for ax in fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes[:4]] == ["a", "b", "c", "d"]
    _render(fig, tmp_path)
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        plotting.show_image_grid(images[:2], titles=["x"])


def test_overlay_heatmap(tmp_path) -> None:
    fig = plotting.overlay_heatmap(np.zeros((16, 16, 3), np.uint8), torch.rand(16, 16), title="saliency")
    assert len(fig.axes[0].images) == 2
    _render(fig, tmp_path)
    with pytest.raises(ValueError, match="heatmap"):
        plotting.overlay_heatmap(np.zeros((16, 16, 3), np.uint8), torch.rand(8, 8))


def test_show_instances_draws_boxes_masks_and_labels(tmp_path) -> None:
    masks = torch.zeros(2, 32, 32)
    masks[0, 2:10, 2:10] = 1
    masks[1, 20:30, 5:25] = 1
    fig = plotting.show_instances(torch.rand(3, 32, 32), boxes=torch.tensor([[2, 2, 10, 10], [5, 20, 25, 30]]),
                                  masks=masks, labels=["square", "circle"], scores=torch.tensor([0.9, 0.5]))
    ax = fig.axes[0]
    assert len(ax.patches) == 2 and [t.get_text() for t in ax.texts] == ["square 0.90", "circle 0.50"]
    _render(fig, tmp_path)


def test_plot_embeddings_projects_to_2d(tmp_path) -> None:
    emb = torch.randn(60, 16)
    labels = torch.arange(60) % 3
    fig = plotting.plot_embeddings(emb, labels, class_names=["a", "b", "c"], title="pca")
    assert len(fig.axes[0].collections) == 3
    _render(fig, tmp_path)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        plotting.plot_embeddings(emb, labels[:10])


def test_plot_loss_curves(tmp_path) -> None:
    fig = plotting.plot_loss_curves({"train": [3, 2, 1], "val": [3.5, 2.5, 2]}, log_y=True)
    assert len(fig.axes[0].lines) == 2 and fig.axes[0].get_yscale() == "log"
    _render(fig, tmp_path)
