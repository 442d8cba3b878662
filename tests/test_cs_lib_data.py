"""cs_lib.data: offline sample photos, CS231n's ImageNet file, styles, digits and synthetic shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import masks_to_boxes

from cs_lib import data
from cs_lib.models import imagenet_class_names
from tests.conftest import shared_data


def test_sample_images_are_center_cropped_with_imagenet_labels() -> None:
    s = data.load_sample_images(size=96)
    assert s.images.shape == (len(data.SAMPLE_IMAGES), 96, 96, 3) and s.images.dtype == np.uint8
    assert s.labels.dtype == np.int64 and list(s.labels) == [v[1] for v in data.SAMPLE_IMAGES.values()]
    assert s.class_names == imagenet_class_names()
    assert [s.class_names[i] for i in s.labels] == ["tabby", "espresso", "missile", "palace"]


def test_load_imagenet_val_reads_cs231n_file() -> None:
    path = shared_data("imagenet_val_25/imagenet_val_25.npz")
    full = data.load_imagenet_val(path=path)
    assert full.images.shape == (25, 224, 224, 3) and full.images.dtype == np.uint8
    assert full.labels.shape == (25,) and full.labels.min() >= 0 and full.labels.max() < 1000
    assert len(full.class_names) == 1000
    five = data.load_imagenet_val(num=5, path=path)
    assert np.array_equal(five.images, full.images[:5]) and np.array_equal(five.labels, full.labels[:5])


def test_load_imagenet_val_names_the_download_command_when_missing(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="download.py imagenet_val"):
        data.load_imagenet_val(path=tmp_path / "imagenet_val_25.npz")


def test_data_dir_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("DLCV_DATA", str(tmp_path))
    assert data.data_dir() == tmp_path
    assert data.style_image_path("starry_night") == tmp_path / "styles" / "starry_night.jpg"


def test_load_style_image_from_downloaded_folder_and_offline(monkeypatch, tmp_path, capsys) -> None:
    starry = shared_data("styles/starry_night.jpg")
    (tmp_path / "styles").mkdir()
    (tmp_path / "styles" / "starry_night.jpg").write_bytes(starry.read_bytes())
    monkeypatch.setenv("DLCV_DATA", str(tmp_path))
    img = data.load_style_image("starry_night", size=64)
    assert img.mode == "RGB" and min(img.size) == 64
    from PIL import Image

    assert data.load_style_image(str(starry)).size == Image.open(starry).size
    brick = data.load_style_image("brick", size=32)
    assert brick.mode == "RGB" and min(brick.size) == 32
    with pytest.raises(FileNotFoundError, match="download.py styles"):
        data.load_style_image("the_scream")
    capsys.readouterr()
    fallback = data.load_style_image("the_scream", size=40, offline_fallback="gravel")
    assert min(fallback.size) == 40 and "using the offline image 'gravel'" in capsys.readouterr().out


def test_load_digits_reads_the_mnist_test_split(mnist_root) -> None:
    d = data.load_digits("mnist", train=False, root=mnist_root, download=False)
    assert d.images.shape == (10000, 1, 28, 28) and d.images.dtype == torch.float32
    assert 0.0 <= float(d.images.min()) and float(d.images.max()) <= 1.0
    assert d.labels.shape == (10000,) and set(d.labels.tolist()) == set(range(10))
    assert d.source == "mnist test"


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path) -> None:
    good = tmp_path / "x-idx3-ubyte"
    good.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(range(8)))
    assert data.read_idx(good).shape == (2, 2, 2)
    (tmp_path / "short").write_bytes(good.read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "foreign").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="bad header"):
        data.read_idx(tmp_path / "foreign")


def test_load_digits_falls_back_to_sklearn_digits_offline(tmp_path, capsys) -> None:
    d = data.load_digits("fashion_mnist", root=tmp_path, download=False)
    assert d.images.shape == (1797, 1, 8, 8) and d.source.startswith("scikit-learn digits")
    assert "using scikit-learn's 8x8 digits instead" in capsys.readouterr().out
    online_attempt = data.load_digits("mnist", root=tmp_path, download=True)  # network guard refuses
    assert online_attempt.images.shape == (1797, 1, 8, 8)
    with pytest.raises(ValueError, match="mnist"):
        data.load_digits("cifar")


def test_shapes_dataset_is_deterministic_per_seed_and_index() -> None:
    a, b, c = data.ShapesDataset(6, seed=3), data.ShapesDataset(6, seed=3), data.ShapesDataset(6, seed=4)
    for i in range(6):
        (xa, ta), (xb, tb) = a[i], b[i]
        assert torch.equal(xa, xb) and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not torch.equal(a[0][0], c[0][0])
    assert len(a) == 6
    with pytest.raises(IndexError):
        a[6]


def test_shapes_dataset_targets_are_consistent_with_torchvision_conventions() -> None:
    ds = data.ShapesDataset(20, image_size=96, seed=0)
    seen_labels = set()
    for i in range(len(ds)):
        image, t = ds[i]
        assert image.shape == (3, 96, 96) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        K = len(t["labels"])
        assert K >= 1 and t["masks"].shape == (K, 96, 96) and t["masks"].dtype == torch.uint8
        assert t["boxes"].shape == (K, 4) and t["boxes"].dtype == torch.float32
        assert int(t["masks"].sum(0).max()) == 1, "instance masks must not overlap"
        assert (t["masks"].flatten(1).sum(1) >= ds.min_visible).all()
        # torchvision's masks_to_boxes gives inclusive corners; ours are one past the last pixel.
        torch.testing.assert_close(t["boxes"], masks_to_boxes(t["masks"]) + torch.tensor([0.0, 0.0, 1.0, 1.0]))
        seen_labels |= set(t["labels"].tolist())
    assert seen_labels == {1, 2, 3}


def test_shapes_dataset_rejects_tiny_images() -> None:
    with pytest.raises(ValueError, match=">= 32"):
        data.ShapesDataset(image_size=16)
