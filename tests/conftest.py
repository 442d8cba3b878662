"""Shared test fixtures: the test data beside the project, a network guard, and Agg plots.

Test data in ``../shared/data`` (see its README) is present on every developer machine
and in CI, but not in a user's clone. :func:`shared_data` returns a file's path, or
skips with a one-line reason when it is absent. When ``DLCV_REQUIRE_SHARED_DATA`` is
set (``.ci/run`` sets it in CI) a missing file fails the test instead, so CI never skips
what the data folder can provide.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DLCV_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_data(relative: str) -> Path:
    """Path of ``../shared/data/<relative>``; skip (or fail in CI) when it is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"../shared/data/{relative} not present (test data beside the project; see its README)"
        if os.environ.get("DLCV_REQUIRE_SHARED_DATA"):
            pytest.fail(message + ", and DLCV_REQUIRE_SHARED_DATA is set (CI must not skip it)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision-layout ``MNIST`` root holding only the test split from ``../shared/data/mnist``.

    torchvision 0.29's ``MNIST`` class refuses a root without the training files (not available
    here); ``cs_lib.data.load_digits(root=...)`` and torchvision's ``read_image_file`` read it.
    """
    images = shared_data("mnist/t10k-images-idx3-ubyte.gz")
    labels = shared_data("mnist/t10k-labels-idx1-ubyte.gz")
    root = tmp_path_factory.mktemp("mnist_root")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in (images, labels):
        shutil.copy2(gz, raw / gz.name)
        with gzip.open(gz, "rb") as src, open(raw / gz.name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    return root


_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1", "")) \
            and self.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError(f"tests must not touch the network (tried to connect to {address!r})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse connections to anything but loopback (kernels talk to nbclient over loopback)."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture(autouse=True)
def isolated_hub_and_grading_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch hub cache per test, and grading mode off unless a test sets it."""
    import torch

    hub = tmp_path / "torch_hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    for name in ("NBGRADER_EXECUTION", "DLCV_GRADING", "DLCV_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    return hub


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Path]]:
    """``releases(assignment)``: ``(course, release notebook)`` of ``tests.nbutil.build_release``, built once per
    session and shared by the modules that read it (``tests/test_notebooks.py``, and the network_visualization
    autograde test, which writes only under the course's ``submitted/``, ``autograded/`` and gradebook)."""
    from tests.nbutil import build_release

    built: dict[str, tuple[Path, Path]] = {}

    def release(assignment: str) -> tuple[Path, Path]:
        if assignment not in built:
            built[assignment] = build_release(assignment, tmp_path_factory.mktemp(f"{assignment}_release"))
        return built[assignment]

    return release


@pytest.fixture
def single_torch_thread() -> Iterator[None]:
    """One intra-op thread: small models run faster, and do not stall when the other core is busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
