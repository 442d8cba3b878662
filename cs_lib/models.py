"""Pretrained torchvision models, loaded through the weights API and torch's hub cache.

``load_classifier("squeezenet1_1")`` does what a notebook needs: the ImageNet weights
(downloaded once into ``torch.hub.get_dir()/checkpoints``), eval mode, frozen
parameters, and non-inplace ReLUs so that forward and backward hooks see the
activations they expect.

When the weights are missing and cannot be downloaded, a
:class:`WeightsUnavailableError` names the file, the folder it belongs in, and the
command that fetches it. While nbgrader grades a notebook, where there may be no
network, a missing file instead gives a randomly initialised model (seeded) and one
plain line on stdout saying so, so that grading still runs.
"""

from __future__ import annotations

import os
import pickle
import urllib.error
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from cs_lib.runtime import in_grading

#: The seed of the random-init fallback model used while grading without weights.
FALLBACK_SEED = 0


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are not in the hub cache and could not be downloaded."""


def get_weights(name: str, weights: str = "DEFAULT") -> torchvision.models.WeightsEnum:
    """The torchvision weights entry for a model, e.g. ``SqueezeNet1_1_Weights.IMAGENET1K_V1``.

    Args:
        name: a torchvision model name (``"squeezenet1_1"``, ``"vgg16"``, ...).
        weights: an entry of that model's weights enum; ``"DEFAULT"`` is the best one.
    """
    enum = torchvision.models.get_model_weights(name)
    try:
        return enum[weights]
    except KeyError:
        choices = ", ".join(["DEFAULT"] + [w.name for w in enum])
        raise ValueError(f"{name} has no weights '{weights}'; choose one of: {choices}") from None


def weights_path(name: str, weights: str = "DEFAULT") -> Path:
    """Where torch's hub cache keeps (or will keep) the weights file for ``name``."""
    url = get_weights(name, weights).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def imagenet_class_names(name: str = "squeezenet1_1") -> list[str]:
    """The 1000 ImageNet class names, from the weights' metadata (no download needed)."""
    return list(get_weights(name).meta["categories"])


def make_relus_non_inplace(model: nn.Module) -> nn.Module:
    """Set ``inplace=False`` on every ``nn.ReLU`` in ``model``, in place; returns ``model``.

    An in-place ReLU overwrites its input, which breaks backward hooks that need the
    forward input (guided backprop) and forward hooks that keep activations (Grad-CAM).
    """
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return model


def freeze(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode with ``requires_grad=False`` on every parameter."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_classifier(
    name: str = "squeezenet1_1",
    weights: str = "DEFAULT",
    device: torch.device | str | None = None,
    allow_random: bool | None = None,
    progress: bool = True,
) -> nn.Module:
    """An ImageNet classifier from torchvision, ready for visualization.

    Args:
        name: torchvision model name.
        weights: weights entry (``"DEFAULT"``).
        device: where to put the model (default: the CPU).
        allow_random: when the weights file is missing, fall back to a randomly
            initialised model (seed :data:`FALLBACK_SEED`) instead of downloading.
            ``None`` means "only while grading".
        progress: show the download progress bar.

    Returns:
        The model, in eval mode, with frozen parameters and non-inplace ReLUs.

    Raises:
        WeightsUnavailableError: the weights are missing and could not be downloaded.
    """
    model = _build(name, weights, allow_random, progress)
    model = freeze(make_relus_non_inplace(model))
    return model.to(device) if device is not None else model


def load_feature_extractor(
    name: str = "squeezenet1_1",
    weights: str = "DEFAULT",
    device: torch.device | str | None = None,
    allow_random: bool | None = None,
    progress: bool = True,
) -> nn.Sequential:
    """The convolutional trunk (``model.features``) of a torchvision classifier.

    Used for style transfer: ``features[i]`` are the layers whose activations define
    content and style. Same arguments and guarantees as :func:`load_classifier`.

    Returns:
        ``nn.Sequential`` in eval mode with frozen parameters and non-inplace ReLUs.
    """
    model = load_classifier(name, weights, device, allow_random, progress)
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise ValueError(f"{name} has no `.features` trunk; use a VGG or SqueezeNet model")
    return features


def _build(name: str, weights: str, allow_random: bool | None, progress: bool) -> nn.Module:
    entry = get_weights(name, weights)
    path = weights_path(name, weights)
    if allow_random is None:
        allow_random = in_grading()
    if not path.exists() and allow_random:
        print(
            f"cs_lib: pretrained weights for {name} are not in {path.parent}; "
            f"using a randomly initialised {name} (seed {FALLBACK_SEED}) instead."
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(FALLBACK_SEED)
            return torchvision.models.get_model(name, weights=None)
    existed = path.exists()
    try:
        return torchvision.models.get_model(name, weights=entry, progress=progress)
    except (urllib.error.URLError, OSError, RuntimeError, EOFError, pickle.UnpicklingError,
            zipfile.BadZipFile) as exc:
        if existed:
            raise WeightsUnavailableError(
                f"The weights file {path} is corrupt or does not fit {name} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}). Delete it and run "
                f"`python datasets/download.py weights --only {name}`."
            ) from exc
        raise WeightsUnavailableError(
            f"Could not load the pretrained weights for {name}: the file {path.name} is not in "
            f"{path.parent} and downloading it from {entry.url} failed ({exc}). Run "
            f"`python datasets/download.py weights --only {name}` on a machine with network "
            f"access, or download {entry.url} by hand and put it at {path}."
        ) from exc
