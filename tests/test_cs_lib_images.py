"""cs_lib.images against torchvision's transforms, SciPy's Gaussian filter and NumPy's roll."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from cs_lib.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    blur_image,
    deprocess,
    jitter,
    load_image,
    preprocess,
    rescale,
    resize_shorter_side,
)


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return skimage.data.chelsea()  # (300, 451, 3) uint8


def test_preprocess_matches_torchvision_to_tensor_and_normalize(chelsea: np.ndarray) -> None:
    pil = resize_shorter_side(Image.fromarray(chelsea), 96)
    expected = TF.normalize(TF.to_tensor(pil), IMAGENET_MEAN, IMAGENET_STD).unsqueeze(0)
    got = preprocess(chelsea, size=96)
    assert got.shape == (1, 3, 96, 144) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_preprocess_returns_a_contiguous_batch(chelsea: np.ndarray) -> None:
    # Not channels-last in memory (what the HWC -> CHW permute leaves): a student's ``.view`` on the image
    # works, and an optimised image's gradient comes back in its layout without a copy per step.
    got = preprocess(chelsea, size=64)
    assert got.is_contiguous() and got.stride() == (3 * 64 * 96, 64 * 96, 96, 1)
    assert got.clone().view(3, -1).shape == (3, 64 * 96)


def test_preprocess_accepts_a_batch_array() -> None:
    batch = np.random.default_rng(0).integers(0, 256, size=(3, 40, 40, 3), dtype=np.uint8)
    got = preprocess(batch, size=None)
    assert got.shape == (3, 3, 40, 40)
    torch.testing.assert_close(got[1:2], preprocess(batch[1], size=None))


def test_preprocess_rejects_float_images_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="uint8"):
        preprocess(np.zeros((8, 8, 3), dtype=np.float32))


def test_deprocess_inverts_preprocess(chelsea: np.ndarray) -> None:
    back = deprocess(preprocess(chelsea, size=None))
    assert back.shape == chelsea.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - chelsea.astype(int)).max() <= 1


def test_deprocess_rescale_and_shape_errors() -> None:
    x = torch.randn(1, 3, 8, 8) * 10
    img = deprocess(x, should_rescale=True)
    assert img.min() == 0 and img.max() == 255
    with pytest.raises(ValueError, match="one image"):
        deprocess(torch.zeros(2, 3, 8, 8))


def test_rescale_maps_to_unit_interval_and_constant_to_zero() -> None:
    r = rescale(torch.tensor([-2.0, 0.0, 6.0]))
    torch.testing.assert_close(r, torch.tensor([0.0, 0.25, 1.0]))
    assert torch.equal(rescale(torch.full((3,), 5.0)), torch.zeros(3))


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5])
def test_blur_image_matches_scipy_gaussian_filter(sigma: float) -> None:
    X = torch.rand(2, 3, 20, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = blur_image(X, sigma)
    # SciPy's "mirror" is torch's "reflect"; SciPy's radius int(3 * sigma + 0.5) equals ours here.
    expected = scipy.ndimage.gaussian_filter(X.numpy(), sigma=(0, 0, sigma, sigma), mode="mirror", truncate=3.0)
    torch.testing.assert_close(got, torch.from_numpy(expected), rtol=1e-10, atol=1e-12)


def test_blur_image_keeps_dtype_and_rejects_bad_input() -> None:
    X = torch.rand(1, 3, 16, 16)
    assert blur_image(X, 1.0).dtype == torch.float32
    assert blur_image(X, 0) is X
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        blur_image(torch.rand(3, 16, 16), 1.0)
    with pytest.raises(ValueError, match="too large"):
        blur_image(torch.rand(1, 3, 4, 4), 2.0)


def test_jitter_matches_numpy_roll_and_inverts() -> None:
    X = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
    got = jitter(X, ox=3, oy=-2)
    assert torch.equal(got, torch.from_numpy(np.roll(X.numpy(), shift=(-2, 3), axis=(2, 3))))
    assert torch.equal(jitter(got, -3, 2), X)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_blur_and_jitter_stay_on_cuda() -> None:
    X = torch.rand(1, 3, 16, 16, device="cuda")
    assert blur_image(X, 1.0).device.type == "cuda" and jitter(X, 1, 1).device.type == "cuda"


def test_load_image_resizes_and_explains_missing_files(tmp_path) -> None:
    path = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()).save(path)
    img = load_image(path, size=100)
    assert img.size == (150, 100) and img.mode == "RGB"
    with pytest.raises(FileNotFoundError, match="download.py"):
        load_image(tmp_path / "missing.jpg")
