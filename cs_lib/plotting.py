"""Plots the notebooks show: image grids, heatmap overlays, instances, embeddings, losses.

Every function draws into a new matplotlib figure and returns it, so notebooks show
it inline and tests can inspect or save it. Inputs may be tensors (any device) or
NumPy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

Array = torch.Tensor | np.ndarray


def show_image_grid(
    images: Sequence[Array] | Array,
    titles: Sequence[str] | None = None,
    ncols: int = 5,
    cmap: str | None = None,
    size: float = 2.5,
) -> Figure:
    """Show images in a grid with optional titles.

    Args:
        images: a sequence or batch of images, each ``(H, W)``, ``(H, W, 3)`` uint8 or
            float in [0, 1], or ``(3, H, W)`` / ``(1, H, W)`` float tensors.
        titles: one title per image.
        ncols: images per row.
        cmap: colormap for single-channel images (default ``"gray"``).
        size: inches per image.
    """
    imgs = [_as_hwc(im) for im in images]
    if titles is not None and len(titles) != len(imgs):
        raise ValueError(f"show_image_grid: {len(imgs)} images but {len(titles)} titles")
    ncols = max(1, min(ncols, len(imgs)))
    nrows = max(1, math.ceil(len(imgs) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, im in enumerate(imgs):
        ax = axes.flat[i]
        ax.imshow(im, cmap=cmap or ("gray" if im.ndim == 2 else None))
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig


def overlay_heatmap(
    image: Array, heatmap: Array, alpha: float = 0.5, cmap: str = "jet", ax: plt.Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Draw a saliency or class-activation ``heatmap`` ``(H, W)`` over ``image``.

    Args:
        image: ``(H, W, 3)`` uint8 or float image.
        heatmap: ``(H, W)`` float map, rescaled to [0, 1] for display.
        alpha: opacity of the heatmap.
        ax: draw into this axes instead of a new figure.
    """
    img = _as_hwc(image)
    heat = _to_numpy(heatmap).astype(np.float64)
    if heat.ndim != 2 or heat.shape != img.shape[:2]:
        raise ValueError(f"overlay_heatmap: heatmap {heat.shape} must be (H, W) of image {img.shape}")
    span = heat.max() - heat.min()
    heat = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4))
    else:
        fig = ax.figure
    ax.imshow(img)
    ax.imshow(heat, cmap=cmap, alpha=alpha)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def show_instances(
    image: Array,
    boxes: Array | None = None,
    masks: Array | None = None,
    labels: Sequence[str] | None = None,
    scores: Array | None = None,
    ax: plt.Axes | None = None,
    mask_threshold: float = 0.5,
) -> Figure:
    """Draw instance masks, boxes and labels over an image.

    Args:
        image: ``(3, H, W)`` float tensor in [0, 1] or ``(H, W, 3)`` array.
        boxes: ``(K, 4)`` boxes ``(x1, y1, x2, y2)`` in pixels.
        masks: ``(K, H, W)`` binary or probability masks (``(K, 1, H, W)`` also works).
        labels: K label strings.
        scores: ``(K,)`` confidences, appended to the labels.
        mask_threshold: probability above which a mask pixel is drawn.
    """
    img = _as_hwc(image).astype(np.float64)
    if img.max() > 1.0:
        img = img / 255.0
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
    else:
        fig = ax.figure
    colors = plt.get_cmap("tab10")
    if masks is not None:
        m = _to_numpy(masks)
        if m.ndim == 4:
            m = m[:, 0]
        overlay = img.copy()
        for k, mk in enumerate(m >= mask_threshold):
            overlay[mk] = 0.5 * overlay[mk] + 0.5 * np.array(colors(k % 10)[:3])
        img = overlay
    ax.imshow(img)
    if boxes is not None:
        for k, (x1, y1, x2, y2) in enumerate(_to_numpy(boxes)):
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                       color=colors(k % 10), linewidth=2))
            text = labels[k] if labels is not None else ""
            if scores is not None:
                text = f"{text} {float(_to_numpy(scores)[k]):.2f}".strip()
            if text:
                ax.text(x1, y1, text, color="white", fontsize=8, va="bottom",
                        bbox={"facecolor": colors(k % 10), "alpha": 0.8, "pad": 1})
    ax.axis("off")
    return fig


def plot_embeddings(
    embeddings: Array, labels: Array, class_names: Sequence[str] | None = None, title: str = "",
    method: str = "pca",
) -> Figure:
    """Scatter embeddings ``(N, D)`` in 2-D, coloured by integer ``labels`` ``(N,)``.

    ``D > 2`` is projected with PCA (``method="pca"``) or t-SNE (``method="tsne"``).
    """
    emb = _to_numpy(embeddings).astype(np.float64)
    lab = _to_numpy(labels).astype(np.int64)
    if emb.ndim != 2 or len(emb) != len(lab):
        raise ValueError(f"plot_embeddings: need (N, D) and (N,); got {emb.shape} and {lab.shape}")
    if emb.shape[1] > 2:
        if method == "tsne":
            from sklearn.manifold import TSNE

            emb = TSNE(n_components=2, init="pca", random_state=0).fit_transform(emb)
        else:
            centered = emb - emb.mean(axis=0)
            _, _, vt = np.linalg.svd(centered, full_matrices=False)
            emb = centered @ vt[:2].T
    fig, ax = plt.subplots(figsize=(5, 5))
    for c in np.unique(lab):
        sel = lab == c
        name = class_names[c] if class_names is not None else str(c)
        ax.scatter(emb[sel, 0], emb[sel, 1], s=8, label=name, color=plt.get_cmap("tab10")(int(c) % 10))
    ax.legend(markerscale=2, fontsize=8, loc="best")
    ax.set_title(title)
    return fig


def plot_loss_curves(histories: Mapping[str, Sequence[float]], title: str = "", log_y: bool = False) -> Figure:
    """Plot one or more loss curves: ``{"train": [...], "val": [...]}``."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, values in histories.items():
        ax.plot(np.arange(len(values)), np.asarray(values, dtype=np.float64), label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    if log_y:
        ax.set_yscale("log")
    if len(histories) > 1:
        ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _to_numpy(x: Array) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def _as_hwc(im: Array) -> np.ndarray:
    a = _to_numpy(im)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.transpose(a, (1, 2, 0))
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 1) if a.ndim == 3 else a
    return a


def project_to_2d(embeddings: Array, method: str | None = "pca", seed: int = 0) -> np.ndarray:
    """Project embeddings ``(N, D)`` to float64 ``(N, 2)`` for a scatter plot.

    Args:
        embeddings: ``(N, D)``; ``D == 2`` is returned as it is (whatever ``method``).
        method: ``"pca"`` (the two leading principal components, with NumPy's SVD of the centred
            data) or ``"tsne"`` (scikit-learn's t-SNE, PCA-initialised; perplexity at most ``(N - 1) / 3``).
        seed: t-SNE's random state.
    """
    emb = _to_numpy(embeddings).astype(np.float64)
    if emb.ndim != 2:
        raise ValueError(f"project_to_2d: embeddings must be (N, D); got {emb.shape}")
    if emb.shape[1] == 2 or method is None:
        if emb.shape[1] != 2:
            raise ValueError(f"project_to_2d: method=None needs D == 2; got D = {emb.shape[1]}")
        return emb
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(1.0, (len(emb) - 1) / 3))
        return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(emb)
    if method == "pca":
        centered = emb - emb.mean(axis=0)
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        return centered @ vt[:2].T
    raise ValueError(f"project_to_2d: method must be 'pca', 'tsne' or None; got {method!r}")


def plot_embedding_images(
    embeddings: Array, labels: Array, images: Array, method: str | None = "pca", num_images: int = 40,
    class_names: Sequence[str] | None = None, title: str = "", zoom: float | None = None, seed: int = 0,
) -> Figure:
    """Scatter embeddings in 2-D, coloured by label, with a few of the images drawn at their points.

    Args:
        embeddings: ``(N, D)``; projected with :func:`project_to_2d` when ``D > 2``.
        labels: ``(N,)`` integer classes.
        images: ``(N, 1, H, W)`` or ``(N, H, W)`` grey images in [0, 1] (or ``(N, 3, H, W)`` colour).
        method: ``"pca"`` or ``"tsne"`` for ``D > 2``.
        num_images: how many images to draw (a random subset, fixed by ``seed``).
        class_names: the legend's name of each class index.
        zoom: image scale; default about 0.9 inch of figure per 28 pixels, whatever the image size.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    points = project_to_2d(embeddings, method, seed)
    lab = _to_numpy(labels).astype(np.int64)
    imgs = _to_numpy(images)
    if len(points) != len(lab) or len(imgs) != len(lab):
        raise ValueError(f"plot_embedding_images: {len(points)} embeddings, {len(lab)} labels, {len(imgs)} images")
    fig, ax = plt.subplots(figsize=(7, 7))
    colors = plt.get_cmap("tab10")
    for c in np.unique(lab):
        sel = lab == c
        name = class_names[c] if class_names is not None else str(c)
        ax.scatter(points[sel, 0], points[sel, 1], s=6, alpha=0.6, color=colors(int(c) % 10), label=name)
    chosen = np.random.default_rng(seed).choice(len(points), size=min(num_images, len(points)), replace=False)
    for i in chosen:
        im = _as_hwc(imgs[i])
        scale = zoom if zoom is not None else 0.9 * 28 / max(im.shape[:2])
        box = OffsetImage(im, zoom=scale, cmap="gray_r" if im.ndim == 2 else None)
        frame = {"edgecolor": colors(int(lab[i]) % 10), "linewidth": 1.5}
        ax.add_artist(AnnotationBbox(box, points[i], frameon=True, pad=0.1, bboxprops=frame))
    ax.legend(markerscale=3, fontsize=8, loc="best")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig
