"""Datasets for the notebooks, each with an offline path.

- :func:`load_sample_images`: photos that scikit-image and scikit-learn ship, with
  hand-assigned ImageNet labels, for machines without the ImageNet sample file.
- :func:`load_imagenet_val`: CS231n's 25 ImageNet validation images.
- :func:`load_style_image`: public-domain paintings fetched by the download script,
  with scikit-image textures as the offline fallback.
- :func:`load_digits`: MNIST or Fashion-MNIST through torchvision, falling back to
  scikit-learn's 8x8 digits when the files are missing and cannot be downloaded.
- :class:`ShapesDataset`: synthetic circles, squares and triangles with boxes and
  instance masks, generated deterministically from a seed (for Mask R-CNN).
- :class:`PennFudanDataset`: the Penn-Fudan pedestrians (170 photos, instance masks), when the
  download script has fetched them (:func:`pennfudan_root`).

Data files live in :func:`data_dir`: ``$DLCV_DATA`` if set, else the ``datasets/data``
folder next to ``cs_lib`` (a clone of the repo or a student bundle).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cs_lib.images import resize_shorter_side

#: Offline sample photos: name -> (loader, ImageNet class index, class name).
#: The labels were assigned by hand from the photo's content; they have not been
#: checked against a pretrained classifier (none is available offline).
SAMPLE_IMAGES: dict[str, tuple[str, int, str]] = {
    "chelsea": ("skimage.data.chelsea", 281, "tabby cat"),
    "coffee": ("skimage.data.coffee", 967, "espresso"),
    "rocket": ("skimage.data.rocket", 657, "missile"),
    "china": ("sklearn.datasets.china.jpg", 698, "palace"),
}

#: Style images of the download script (public domain) and offline stand-ins.
STYLE_IMAGES = ("starry_night", "the_scream", "composition_vii")
OFFLINE_STYLE_STAND_INS = {"brick": "skimage.data.brick", "gravel": "skimage.data.gravel",
                           "grass": "skimage.data.grass", "coffee": "skimage.data.coffee"}

DOWNLOAD_HINT = "python datasets/download.py"


class ImageSet(NamedTuple):
    """Images with integer labels.

    Attributes:
        images: float32 ``(N, 1, H, W)`` in [0, 1] (digits) or uint8 ``(N, H, W, 3)``.
        labels: int64 ``(N,)``.
        class_names: name of each class index.
        source: where the images came from, e.g. ``"MNIST test"``.
    """

    images: torch.Tensor | np.ndarray
    labels: torch.Tensor | np.ndarray
    class_names: list[str]
    source: str


def data_dir() -> Path:
    """The folder that holds downloaded data files (it may not exist yet)."""
    env = os.environ.get("DLCV_DATA")
    if env:
        return Path(env)
    sibling = Path(__file__).resolve().parent.parent / "datasets"
    if sibling.is_dir():
        return sibling / "data"
    return Path.home() / ".cache" / "cs_kit" / "data"


def load_sample_images(size: int = 224) -> ImageSet:
    """Photos shipped with scikit-image and scikit-learn, center-cropped to ``size``.

    Returns:
        ``ImageSet`` with ``images`` uint8 ``(N, size, size, 3)``, ``labels`` int64
        ``(N,)`` ImageNet indices, and ``class_names`` the 1000 ImageNet class names by
        index (from torchvision's weights metadata, no download).
    """
    from cs_lib.models import imagenet_class_names

    images, labels = [], []
    for loader, label, _ in SAMPLE_IMAGES.values():
        images.append(center_crop(_load_package_image(loader), size))
        labels.append(label)
    return ImageSet(np.stack(images), np.array(labels, dtype=np.int64), imagenet_class_names(),
                    "scikit-image / scikit-learn sample photos")


def load_imagenet_val(num: int | None = None, path: str | os.PathLike[str] | None = None) -> ImageSet:
    """CS231n's 25 ImageNet validation images (``imagenet_val_25.npz``).

    Args:
        num: how many images to return (the first ``num``); ``None`` returns all 25.
        path: the ``.npz`` file; default ``data_dir()/imagenet_val_25/imagenet_val_25.npz``.

    Returns:
        ``ImageSet`` with ``images`` uint8 ``(num, 224, 224, 3)``, ``labels`` int64
        ``(num,)``, and ``class_names`` the 1000 ImageNet class names by index.

    Raises:
        FileNotFoundError: with the download command when the file is missing.
    """
    path = Path(path) if path is not None else data_dir() / "imagenet_val_25" / "imagenet_val_25.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"load_imagenet_val: {path} is missing. Run `{DOWNLOAD_HINT} imagenet_val`, or use "
            "cs_lib.data.load_sample_images() offline."
        )
    with np.load(path, allow_pickle=True) as f:
        X, y = f["X"], f["y"].astype(np.int64)
        label_map = f["label_map"].item()
    if num is not None:
        X, y = X[:num], y[:num]
    from cs_lib.models import imagenet_class_names

    # CS231n's label_map lacks a few indices; torchvision's names fill the gaps.
    class_names = [str(label_map[i]) if i in label_map else name
                   for i, name in enumerate(imagenet_class_names())]
    return ImageSet(X, y, class_names, f"ImageNet validation ({path.name})")


def style_image_path(name: str) -> Path:
    """Where the download script stores style image ``name`` (e.g. ``"starry_night"``)."""
    return data_dir() / "styles" / f"{name}.jpg"


def load_style_image(name: str, size: int | None = None, offline_fallback: str | None = None) -> Image.Image:
    """A style (or content) image as an RGB ``PIL.Image``.

    Args:
        name: a downloaded style (``"starry_night"``, ``"the_scream"``,
            ``"composition_vii"``), an offline stand-in (``"brick"``, ``"gravel"``,
            ``"grass"``, ``"coffee"``), a sample photo name, or a path to an image file.
        size: resize so the shorter side has ``size`` pixels.
        offline_fallback: a stand-in name to use when ``name`` is not downloaded.

    Raises:
        FileNotFoundError: with the download command when nothing can be loaded.
    """
    if name in OFFLINE_STYLE_STAND_INS:
        img = Image.fromarray(_to_rgb(_load_package_image(OFFLINE_STYLE_STAND_INS[name])))
    elif name in SAMPLE_IMAGES:
        img = Image.fromarray(_load_package_image(SAMPLE_IMAGES[name][0]))
    else:
        path = Path(name) if os.sep in name or Path(name).suffix else style_image_path(name)
        if path.exists():
            img = Image.open(path).convert("RGB")
        elif offline_fallback is not None:
            print(f"cs_lib: {path} is not downloaded; using the offline image '{offline_fallback}'.")
            return load_style_image(offline_fallback, size)
        else:
            raise FileNotFoundError(
                f"load_style_image: {path} is missing. Run `{DOWNLOAD_HINT} styles`, or pass "
                f"offline_fallback= one of {sorted(OFFLINE_STYLE_STAND_INS)}."
            )
    return resize_shorter_side(img, size) if size is not None else img


def load_digits(
    name: str = "mnist",
    train: bool = False,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ImageSet:
    """MNIST or Fashion-MNIST as tensors, with scikit-learn's digits as the offline fallback.

    The split's idx files are read from torchvision's layout,
    ``<root>/MNIST/raw/t10k-images-idx3-ubyte[.gz]`` (``FashionMNIST`` for Fashion-MNIST),
    when they are there: unlike ``torchvision.datasets.MNIST``, the test split alone is
    enough. Otherwise torchvision downloads the dataset (``download=True``).

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        train: the training split (60,000 images) instead of the test split (10,000).
        root: torchvision's dataset root; default ``data_dir()``.
        download: let torchvision download missing files.

    Returns:
        ``ImageSet`` with ``images`` float32 ``(N, 1, 28, 28)`` in [0, 1] and
        ``labels`` int64 ``(N,)``. When the files are missing and cannot be
        downloaded, the 1,797 8x8 digits of scikit-learn (``images`` ``(1797, 1, 8, 8)``)
        come back instead, for either ``name``, with ``source`` saying so and one
        line printed.

    Raises:
        ValueError: for an unknown ``name`` or a corrupt idx file.
    """
    import torchvision

    classes = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}
    if name not in classes:
        raise ValueError(f"load_digits: name must be one of {sorted(classes)}; got {name!r}")
    dataset_class = classes[name]
    root = Path(root) if root is not None else data_dir()
    split = "train" if train else "test"
    prefix = "train" if train else "t10k"
    raw = root / dataset_class.__name__ / "raw"
    files = [_find_idx(raw / f"{prefix}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    if all(files):
        images = torch.from_numpy(read_idx(files[0]).copy()).unsqueeze(1).float().div(255.0)
        labels = torch.from_numpy(read_idx(files[1]).astype(np.int64))
        if len(images) != len(labels):
            raise ValueError(f"load_digits: {files[0]} has {len(images)} images but {files[1]} "
                             f"has {len(labels)} labels")
        return ImageSet(images, labels, list(dataset_class.classes), f"{name} {split}")
    try:
        ds = dataset_class(str(root), train=train, download=download)
    except (RuntimeError, OSError) as exc:
        print(f"cs_lib: {name} is not available ({str(exc).splitlines()[0]}); "
              "using scikit-learn's 8x8 digits instead.")
        return load_sklearn_digits()
    images = ds.data.unsqueeze(1).float().div(255.0)
    return ImageSet(images, ds.targets.long(), list(ds.classes), f"{name} {split}")


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (MNIST's format), gzipped or not, holding unsigned bytes.

    Returns:
        uint8 array of the shape the file's header gives, e.g. ``(10000, 28, 28)``.

    Raises:
        ValueError: when the header or the length is wrong (a corrupt or partial file).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            buf = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"read_idx: cannot read {path} ({exc}); delete it and download it again") from exc
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] != 0x08:
        raise ValueError(f"read_idx: {path} is not an idx file of unsigned bytes (bad header)")
    ndim = buf[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(buf) != header + int(np.prod(dims)):
        raise ValueError(f"read_idx: {path} holds {len(buf) - header} bytes of data; its header "
                         f"promises {int(np.prod(dims))} for shape {tuple(dims)} (truncated file?)")
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(stem: Path) -> Path | None:
    for candidate in (stem, stem.with_name(stem.name + ".gz")):
        if candidate.exists():
            return candidate
    return None


def load_sklearn_digits() -> ImageSet:
    """scikit-learn's 1,797 8x8 handwritten digits: float32 ``(N, 1, 8, 8)`` in [0, 1]."""
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    images = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    return ImageSet(images, torch.from_numpy(d.target.astype(np.int64)),
                    [str(i) for i in range(10)], "scikit-learn digits (8x8)")


SHAPE_CLASSES = ("background", "circle", "square", "triangle")


class ShapesDataset(Dataset):
    """Synthetic instance-segmentation images: circles, squares and triangles.

    Item ``i`` is generated from ``(seed, i)`` alone, so the dataset is the same on
    every machine and needs no files. Later shapes occlude earlier ones; masks and
    boxes describe the visible part, and shapes left with fewer than
    ``min_visible`` pixels are dropped.

    Each item is ``(image, target)``:

    - ``image``: float32 ``(3, H, W)`` in [0, 1];
    - ``target["boxes"]``: float32 ``(K, 4)``, ``(x1, y1, x2, y2)`` in pixels, with
      ``x2``/``y2`` one past the last mask pixel (torchvision's convention);
    - ``target["labels"]``: int64 ``(K,)`` in {1: circle, 2: square, 3: triangle};
    - ``target["masks"]``: uint8 ``(K, H, W)`` in {0, 1}.
    """

    classes = SHAPE_CLASSES

    def __init__(self, num_images: int = 100, image_size: int = 128, max_shapes: int = 4,
                 seed: int = 0, min_visible: int = 30) -> None:
        if image_size < 32:
            raise ValueError(f"ShapesDataset: image_size must be >= 32; got {image_size}")
        self.num_images = num_images
        self.image_size = image_size
        self.max_shapes = max_shapes
        self.seed = seed
        self.min_visible = min_visible

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not 0 <= index < self.num_images:
            raise IndexError(f"ShapesDataset index {index} out of range [0, {self.num_images})")
        rng = np.random.default_rng([self.seed, index])
        S = self.image_size
        yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5
        background = rng.uniform(0.0, 0.35, size=3).astype(np.float32)
        image = np.broadcast_to(background[:, None, None], (3, S, S)).copy()
        image += rng.normal(0, 0.02, size=(3, S, S)).astype(np.float32)
        owner = np.full((S, S), -1, dtype=np.int64)
        labels = []
        for k in range(int(rng.integers(1, self.max_shapes + 1))):
            label = int(rng.integers(1, len(SHAPE_CLASSES)))
            r = rng.uniform(0.08, 0.2) * S
            cx, cy = rng.uniform(r, S - r, size=2)
            mask = _shape_mask(label, xx, yy, cx, cy, r)
            color = rng.uniform(0.45, 1.0, size=3).astype(np.float32)
            image[:, mask] = color[:, None]
            owner[mask] = k
            labels.append(label)
        ks = np.arange(len(labels))
        masks = owner[None] == ks[:, None, None]
        keep = masks.sum(axis=(1, 2)) >= self.min_visible
        masks, kept = masks[keep], np.asarray(labels, dtype=np.int64)[keep]
        boxes = _boxes_from_masks(masks)
        target = {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.from_numpy(kept),
            "masks": torch.from_numpy(masks.astype(np.uint8)),
        }
        return torch.from_numpy(np.clip(image, 0, 1)), target


def _shape_mask(label: int, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    if label == 1:  # circle
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    if label == 2:  # square
        return (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    # upward triangle inside the circle of radius r: three half-planes
    angles = np.deg2rad([90.0, 210.0, 330.0])
    px, py = cx + r * np.cos(angles), cy - r * np.sin(angles)
    inside = np.ones_like(xx, dtype=bool)
    for i in range(3):
        x0, y0, x1, y1 = px[i], py[i], px[(i + 1) % 3], py[(i + 1) % 3]
        cross = (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0)
        inside &= cross <= 0
    return inside


def _boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` bool -> ``(K, 4)`` float32 boxes, ``x2``/``y2`` exclusive."""
    if len(masks) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    H, W = masks.shape[1:]
    y1 = rows.argmax(axis=1)
    y2 = H - rows[:, ::-1].argmax(axis=1)
    x1 = cols.argmax(axis=1)
    x2 = W - cols[:, ::-1].argmax(axis=1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` and crop the center: uint8 ``(size, size, 3)``."""
    pil = resize_shorter_side(Image.fromarray(_to_rgb(img)), size)
    w, h = pil.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(pil.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _to_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (255 * (img - img.min()) / max(1e-12, float(img.max() - img.min()))).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3]


def _load_package_image(loader: str) -> np.ndarray:
    if loader.startswith("sklearn.datasets."):
        from sklearn.datasets import load_sample_image

        return load_sample_image(loader.removeprefix("sklearn.datasets."))
    import skimage.data

    return getattr(skimage.data, loader.removeprefix("skimage.data."))()


def pennfudan_root() -> Path | None:
    """The extracted Penn-Fudan folder (holding ``PNGImages/`` and ``PedMasks/``), or None when absent.

    ``python datasets/download.py pennfudan`` puts it at ``data_dir()/PennFudanPed``.
    """
    for candidate in (data_dir() / "PennFudanPed", data_dir() / "PennFudanPed" / "PennFudanPed"):
        if (candidate / "PNGImages").is_dir() and (candidate / "PedMasks").is_dir():
            return candidate
    return None


class PennFudanDataset(Dataset):
    """Penn-Fudan pedestrians (Wang, Shi, Song & Shen, ACCV 2007) for instance segmentation.

    Item ``i`` is ``(image, target)`` in :class:`ShapesDataset`'s format: ``image`` float32
    ``(3, H, W)`` in [0, 1]; ``target["boxes"]`` float32 ``(K, 4)`` (x2/y2 one past the last mask
    pixel), ``target["labels"]`` int64 ``(K,)`` all 1 (pedestrian), ``target["masks"]`` uint8
    ``(K, H, W)``. Images are sorted by file name, so ``indices`` select a reproducible split.

    Args:
        root: the extracted folder (default: :func:`pennfudan_root`).
        indices: which images, in sorted order (default: all 170).
        max_size: shrink images (and masks) whose longer side exceeds this, keeping the aspect ratio.

    Raises:
        FileNotFoundError: with the download command when the data is missing.
    """

    classes = ("background", "pedestrian")

    def __init__(self, root: str | os.PathLike[str] | None = None, indices: list[int] | None = None,
                 max_size: int | None = None) -> None:
        found = Path(root) if root is not None else pennfudan_root()
        if found is None or not (found / "PNGImages").is_dir():
            raise FileNotFoundError(f"PennFudanDataset: the data is missing. Run `{DOWNLOAD_HINT} pennfudan`.")
        self.root = found
        names = sorted(p.name for p in (found / "PNGImages").glob("*.png"))
        self.names = [names[i] for i in indices] if indices is not None else names
        self.max_size = max_size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        name = self.names[index]
        image = Image.open(self.root / "PNGImages" / name).convert("RGB")
        mask = Image.open(self.root / "PedMasks" / name.replace(".png", "_mask.png"))
        if self.max_size is not None and max(image.size) > self.max_size:
            scale = self.max_size / max(image.size)
            size = (round(image.size[0] * scale), round(image.size[1] * scale))
            image, mask = image.resize(size, Image.BILINEAR), mask.resize(size, Image.NEAREST)
        ids = np.asarray(mask)
        instances = np.unique(ids)
        instances = instances[instances != 0]
        masks = ids[None] == instances[:, None, None]
        masks = masks[masks.sum(axis=(1, 2)) > 0]
        target = {
            "boxes": torch.from_numpy(_boxes_from_masks(masks)),
            "labels": torch.ones(len(masks), dtype=torch.int64),
            "masks": torch.from_numpy(masks.astype(np.uint8)),
        }
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        return pixels, target
