"""Image pre- and post-processing for ImageNet-trained models, on tensors.

Conventions: a *PIL-like* image is a ``PIL.Image`` or a ``(H, W, 3)`` uint8 NumPy
array; a *batch* is a float32 tensor ``(N, 3, H, W)`` normalized with the ImageNet
mean and standard deviation, as torchvision's classifiers expect.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

#: ImageNet channel means and standard deviations (RGB), as torchvision uses them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageLike = Image.Image | np.ndarray


def load_image(path: str | os.PathLike[str], size: int | None = None) -> Image.Image:
    """Open an image file as an RGB ``PIL.Image``.

    Args:
        path: a local file, e.g. one that ``datasets/download.py`` cached.
        size: if given, resize so that the shorter side has ``size`` pixels.

    Raises:
        FileNotFoundError: with the download command when the file is missing.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"load_image: {path} does not exist. Data files come from the kit's download "
            "script, e.g. `python datasets/download.py styles`."
        )
    img = Image.open(path).convert("RGB")
    if size is not None:
        img = resize_shorter_side(img, size)
    return img


def resize_shorter_side(img: ImageLike, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` pixels, keeping the aspect ratio."""
    img = _as_pil(img)
    w, h = img.size
    scale = size / min(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(new, Image.BICUBIC)


def preprocess(img: ImageLike | np.ndarray, size: int | None = 224) -> torch.Tensor:
    """Turn images into a normalized float32 batch.

    Args:
        img: a ``PIL.Image``, a ``(H, W, 3)`` uint8 array, or a ``(N, H, W, 3)`` uint8
            array of images of one size.
        size: resize so that the shorter side has ``size`` pixels; ``None`` keeps the size.

    Returns:
        float32 tensor ``(N, 3, H', W')`` (``N = 1`` for a single image) on the CPU.
    """
    if isinstance(img, np.ndarray) and img.ndim == 4:
        return torch.cat([preprocess(im, size) for im in img])
    pil = _as_pil(img)
    if size is not None:
        pil = resize_shorter_side(pil, size)
    x = torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0).contiguous()  # (the permute left it channels-last in memory)


def deprocess(x: torch.Tensor, should_rescale: bool = False) -> np.ndarray:
    """Undo :func:`preprocess` for display.

    Args:
        x: float tensor ``(1, 3, H, W)`` or ``(3, H, W)`` on any device.
        should_rescale: min-max rescale to [0, 1] before converting (for images that
            optimization pushed out of range); otherwise values are clamped.

    Returns:
        uint8 array ``(H, W, 3)``.
    """
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"deprocess: expected one image (1, 3, H, W); got {tuple(x.shape)}")
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"deprocess: expected (3, H, W); got {tuple(x.shape)}")
    x = x.detach().float().cpu()
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = x * std + mean
    x = rescale(x) if should_rescale else x.clamp(0, 1)
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def rescale(x: torch.Tensor) -> torch.Tensor:
    """Min-max rescale a tensor to [0, 1]; a constant tensor becomes all zeros."""
    low, high = x.min(), x.max()
    return (x - low) / (high - low).clamp_min(1e-12)


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A normalized 1-D Gaussian of radius ``ceil(3 * sigma)``: shape ``(2r + 1,)``."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def blur_image(X: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian blur as two separable depthwise convolutions, on the input's device.

    Args:
        X: float tensor ``(N, C, H, W)``.
        sigma: standard deviation in pixels; ``sigma <= 0`` returns ``X`` unchanged.

    Returns:
        Tensor of the same shape, dtype and device. Borders use reflection padding.
    """
    if sigma <= 0:
        return X
    if X.dim() != 4:
        raise ValueError(f"blur_image: expected (N, C, H, W); got {tuple(X.shape)}")
    C = X.shape[1]
    k = gaussian_kernel1d(sigma, X.dtype).to(X.device)
    r = k.numel() // 2
    if r >= min(X.shape[2], X.shape[3]):
        raise ValueError(f"blur_image: sigma={sigma} is too large for a {tuple(X.shape[2:])} image")
    out = F.pad(X, (r, r, 0, 0), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    out = F.pad(out, (0, 0, r, r), mode="reflect")
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def jitter(X: torch.Tensor, ox: int, oy: int) -> torch.Tensor:
    """Shift images by ``ox`` pixels right and ``oy`` pixels down, wrapping around.

    Args:
        X: tensor ``(N, C, H, W)``.
        ox, oy: integer offsets (negative shifts left / up).

    Returns:
        A new tensor of the same shape; ``jitter(jitter(X, ox, oy), -ox, -oy)`` is ``X``.
    """
    return torch.roll(X, shifts=(int(oy), int(ox)), dims=(-2, -1))


def _as_pil(img: ImageLike) -> Image.Image:
    if isinstance(img, Image.Image):
        return img.convert("RGB")
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image; got an array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image; got dtype {arr.dtype}")
    return Image.fromarray(arr[..., :3])
