"""cs_lib.models: the real weights-API loading path, served a local state dict, and its errors."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from cs_lib import models


def _serve(state_dict: dict[str, torch.Tensor], calls: list[str]):
    """A stand-in for torch.hub.download_url_to_file that writes ``state_dict`` locally."""

    def fake_download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        calls.append(url)
        torch.save(state_dict, dst)

    return fake_download


@pytest.fixture(scope="module")
def squeezenet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    return torchvision.models.squeezenet1_1(weights=None).state_dict()


def test_load_classifier_downloads_through_the_hub_and_prepares_the_model(
    monkeypatch: pytest.MonkeyPatch, squeezenet_state, isolated_hub_and_grading_env: Path
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", _serve(squeezenet_state, calls))
    model = models.load_classifier("squeezenet1_1", progress=False)
    assert calls == [models.get_weights("squeezenet1_1").url]
    assert models.weights_path("squeezenet1_1").exists()
    assert models.weights_path("squeezenet1_1").parent == isolated_hub_and_grading_env / "checkpoints"
    for k, v in model.state_dict().items():
        assert torch.equal(v, squeezenet_state[k]), k
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(not m.inplace for m in relus)
    # The second call uses the cache: no download.
    models.load_classifier("squeezenet1_1", progress=False)
    assert len(calls) == 1


def test_load_feature_extractor_returns_the_frozen_trunk(monkeypatch, squeezenet_state) -> None:
    monkeypatch.setattr(torch.hub, "download_url_to_file", _serve(squeezenet_state, []))
    features = models.load_feature_extractor("squeezenet1_1", progress=False)
    assert isinstance(features, nn.Sequential) and len(features) == 13
    assert features(torch.zeros(1, 3, 64, 64)).shape == (1, 512, 3, 3)


def test_offline_download_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(models.WeightsUnavailableError) as info:
        models.load_classifier("squeezenet1_1", progress=False)
    msg = str(info.value)
    path = models.weights_path("squeezenet1_1")
    assert path.name in msg and str(path.parent) in msg
    assert "python datasets/download.py weights --only squeezenet1_1" in msg
    assert not path.exists()


def test_without_a_patch_the_network_guard_still_ends_in_the_clear_error() -> None:
    with pytest.raises(models.WeightsUnavailableError, match="datasets/download.py"):
        models.load_classifier("squeezenet1_1", progress=False)


def test_corrupt_cached_weights_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    path = models.weights_path("squeezenet1_1")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(models.WeightsUnavailableError, match="corrupt"):
        models.load_classifier("squeezenet1_1", progress=False)


def test_grading_mode_falls_back_to_a_seeded_random_model_with_one_stdout_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def must_not_download(*args, **kwargs):
        raise AssertionError("grading mode must not download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", must_not_download)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    a = models.load_classifier("squeezenet1_1")
    b = models.load_classifier("squeezenet1_1")
    out, err = capsys.readouterr()
    assert err == ""
    assert out.count("\n") == 2 and "randomly initialised squeezenet1_1" in out
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k
    assert all(not p.requires_grad for p in a.parameters())


def test_imagenet_class_names_need_no_download() -> None:
    names = models.imagenet_class_names("squeezenet1_1")
    assert len(names) == 1000 and names[281] == "tabby" and names[967] == "espresso"


def test_unknown_weights_entry_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        models.get_weights("squeezenet1_1", "NOPE")


def test_make_relus_non_inplace_and_freeze_on_vgg_style_model() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3), nn.ReLU(inplace=True))
    models.freeze(models.make_relus_non_inplace(model))
    assert all(not m.inplace for m in model if isinstance(m, nn.ReLU))
    assert not model.training and all(not p.requires_grad for p in model.parameters())
