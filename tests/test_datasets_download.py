"""Tests of the standalone download script ``datasets/download.py``, with no network at all.

The one network function of the script, ``open_url``, is replaced by a fake that serves bytes
from memory, so these tests check the whole download path: streaming, progress, checksums,
atomic rename, clean-up after failures, error messages, ``--check``, ``--list``, zip
extraction and the torch hub location of the weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import urllib.error
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "datasets" / "download.py"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
URL = "https://example.invalid/files/toy.bin"
PAYLOAD = bytes(range(256)) * 1000  # 256 kB: several chunks


def _load_script():
    spec = importlib.util.spec_from_file_location("cs_kit_download_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


dl = _load_script()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def toy(data: bytes = PAYLOAD, **changes):
    fields = dict(
        name="toy",
        group="toys",
        url=URL,
        dest="toys/toy.bin",
        sha256=sha256(data),
        size=len(data),
        licence="CC0",
        source="made by the test",
    )
    fields.update(changes)
    return dl.Resource(**fields)


class FakeNet:
    """Stands in for ``open_url``: serves ``routes[url]`` (bytes or an exception)."""

    def __init__(self, routes, length=None):
        self.routes = routes
        self.length = length  # announced length, when not len(body)
        self.calls = []

    def __call__(self, url, timeout=dl.DEFAULT_TIMEOUT):
        self.calls.append(url)
        body = self.routes[url]
        if isinstance(body, BaseException):
            raise body
        if isinstance(body, io.RawIOBase | io.BufferedIOBase):
            return body, self.length
        return io.BytesIO(body), self.length if self.length is not None else len(body)


def no_network(url, timeout=None):
    raise AssertionError(f"open_url must not be called, got {url}")


class BreakingStream(io.RawIOBase):
    """Serves ``data`` then raises ``error`` instead of the rest."""

    def __init__(self, data: bytes, error: BaseException):
        self.data = io.BytesIO(data)
        self.error = error

    def readable(self):
        return True

    def read(self, n=-1):
        chunk = self.data.read(n)
        if not chunk:
            raise self.error
        return chunk


@pytest.fixture
def use(monkeypatch):
    """Make the script see only the given resources."""

    def _use(*resources):
        monkeypatch.setattr(dl, "RESOURCES", list(resources))

    return _use


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".part-" in p.name or ".extract-" in p.name)


# -- successful downloads -----------------------------------------------------------------


def test_download_streams_verifies_and_renames_atomically(tmp_path, monkeypatch, use, capsys):
    net = FakeNet({URL: PAYLOAD})
    monkeypatch.setattr(dl, "open_url", net)
    renames = []
    real_replace = os.replace

    def spy_replace(src, dst):
        renames.append((Path(src), Path(dst)))
        assert Path(src).read_bytes() == PAYLOAD  # complete before it is renamed
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)
    use(toy())

    assert dl.main(["toys", "--dest", str(tmp_path)]) == 0

    target = tmp_path / "toys" / "toy.bin"
    assert target.read_bytes() == PAYLOAD
    assert net.calls == [URL]
    [(src, dst)] = renames
    assert dst == target and src.parent == target.parent
    assert src.name.startswith("toy.bin.part-")
    assert leftovers(tmp_path) == []
    out = capsys.readouterr().out
    assert "downloading " + URL in out
    assert "ok (downloaded, sha256 verified)" in out
    if dl._tqdm is not None:
        assert "250k/250k" in out  # tqdm's progress bar (bytes, 1024-based)
    else:
        assert "toy: 100% of 256.0 KB" in out


def test_progress_line_without_tqdm(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dl, "_tqdm", None)
    monkeypatch.setattr(dl, "open_url", FakeNet({URL: PAYLOAD}))
    path = dl.download(toy(), tmp_path)
    assert path == tmp_path / "toys" / "toy.bin"
    out = capsys.readouterr().out
    assert "toy: 100% of 256.0 KB" in out


def test_default_destination_is_cs_kit_data(tmp_path, monkeypatch, use):
    monkeypatch.setenv("DLCV_DATA", str(tmp_path / "from-env"))
    monkeypatch.setattr(dl, "open_url", FakeNet({URL: PAYLOAD}))
    use(toy())
    assert dl.main(["all", "--no-progress"]) == 0
    assert (tmp_path / "from-env" / "toys" / "toy.bin").read_bytes() == PAYLOAD


def test_default_destination_without_env_is_next_to_the_script(monkeypatch):
    monkeypatch.delenv("DLCV_DATA", raising=False)
    assert dl.default_data_root() == SCRIPT.parent / "data"


def test_cached_file_is_not_downloaded_again(tmp_path, monkeypatch, use, capsys):
    target = tmp_path / "toys" / "toy.bin"
    target.parent.mkdir()
    target.write_bytes(PAYLOAD)
    monkeypatch.setattr(dl, "open_url", no_network)
    use(toy())
    assert dl.main(["toys", "--dest", str(tmp_path)]) == 0
    assert "ok (cached)" in capsys.readouterr().out


def test_force_downloads_a_valid_file_again(tmp_path, monkeypatch):
    target = tmp_path / "toys" / "toy.bin"
    target.parent.mkdir()
    target.write_bytes(PAYLOAD)
    net = FakeNet({URL: PAYLOAD})
    monkeypatch.setattr(dl, "open_url", net)
    dl.download(toy(), tmp_path, force=True, progress=False)
    assert net.calls == [URL] and target.read_bytes() == PAYLOAD


def test_corrupt_file_is_reported_and_downloaded_again(tmp_path, monkeypatch, use, capsys):
    target = tmp_path / "toys" / "toy.bin"
    target.parent.mkdir()
    target.write_bytes(b"x" * len(PAYLOAD))  # right size, wrong bytes
    monkeypatch.setattr(dl, "open_url", FakeNet({URL: PAYLOAD}))
    use(toy())
    assert dl.main(["toys", "--dest", str(tmp_path), "--no-progress"]) == 0
    assert target.read_bytes() == PAYLOAD
    assert "present but corrupt (sha256 is " in capsys.readouterr().out


def test_mirror_is_used_when_the_main_url_fails(tmp_path, monkeypatch):
    mirror = "https://mirror.invalid/toy.bin"
    net = FakeNet({URL: urllib.error.URLError("no route"), mirror: PAYLOAD})
    monkeypatch.setattr(dl, "open_url", net)
    dl.download(toy(mirrors=(mirror,)), tmp_path, progress=False)
    assert net.calls == [URL, mirror]
    assert (tmp_path / "toys" / "toy.bin").read_bytes() == PAYLOAD


# -- failures -------------------------------------------------------------------------------


def assert_clean_failure(rc, tmp_path, capsys, *fragments):
    out, err = capsys.readouterr()
    assert rc == 1
    assert "Traceback" not in out + err
    target = tmp_path / "toys" / "toy.bin"
    assert not target.exists()
    assert leftovers(tmp_path) == []
    flat = " ".join(err.split())  # the paragraph is wrapped
    for fragment in (URL, str(target), *fragments):
        assert fragment in flat, (fragment, err)
    return flat


def test_checksum_mismatch(tmp_path, monkeypatch, use, capsys):
    wrong = b"y" * len(PAYLOAD)
    monkeypatch.setattr(dl, "open_url", FakeNet({URL: wrong}))
    use(toy())
    rc = dl.main(["toys", "--dest", str(tmp_path)])
    assert_clean_failure(
        rc, tmp_path, capsys, f"sha256 {sha256(wrong)}, expected {sha256(PAYLOAD)}", "Nothing"
    )


def test_truncated_stream(tmp_path, monkeypatch, use, capsys):
    net = FakeNet({URL: PAYLOAD[:1000]}, length=len(PAYLOAD))  # server promised more
    monkeypatch.setattr(dl, "open_url", net)
    use(toy())
    rc = dl.main(["toys", "--dest", str(tmp_path)])
    assert_clean_failure(rc, tmp_path, capsys, f"received 1000 bytes, expected {len(PAYLOAD)}")


def test_wrong_announced_size_fails_before_downloading(tmp_path, monkeypatch, use, capsys):
    monkeypatch.setattr(dl, "open_url", FakeNet({URL: PAYLOAD + b"!"}))
    use(toy())
    rc = dl.main(["toys", "--dest", str(tmp_path)])
    assert_clean_failure(rc, tmp_path, capsys, f"announced {len(PAYLOAD) + 1} bytes")


def test_connection_breaking_midway(tmp_path, monkeypatch, use, capsys):
    stream = BreakingStream(PAYLOAD[:5000], ConnectionResetError(104, "Connection reset by peer"))
    monkeypatch.setattr(dl, "open_url", FakeNet({URL: stream}))
    use(toy())
    rc = dl.main(["toys", "--dest", str(tmp_path)])
    assert_clean_failure(rc, tmp_path, capsys, "connection broke after 5000 bytes")


def test_offline_error_is_one_clear_paragraph(tmp_path, monkeypatch, use, capsys):
    error = urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))
    monkeypatch.setattr(dl, "open_url", FakeNet({URL: error}))
    use(toy())
    rc = dl.main(["toys", "--dest", str(tmp_path)])
    flat = assert_clean_failure(
        rc, tmp_path, capsys, "Temporary failure in name resolution", "offline", "by hand"
    )
    assert flat.startswith("error: could not get toy (toys) from " + URL)
    assert "python datasets/download.py toys --check" in flat


def test_http_error(tmp_path, monkeypatch, use, capsys):
    error = urllib.error.HTTPError(URL, 404, "Not Found", None, None)
    monkeypatch.setattr(dl, "open_url", FakeNet({URL: error}))
    use(toy())
    rc = dl.main(["toys", "--dest", str(tmp_path)])
    assert_clean_failure(rc, tmp_path, capsys, "HTTP 404 Not Found")


def test_ctrl_c_deletes_the_partial_file(tmp_path, monkeypatch, use, capsys):
    stream = BreakingStream(PAYLOAD[:5000], KeyboardInterrupt())
    monkeypatch.setattr(dl, "open_url", FakeNet({URL: stream}))
    use(toy())
    assert dl.main(["toys", "--dest", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted: toy was not saved" in err and "Traceback" not in err
    assert not (tmp_path / "toys" / "toy.bin").exists()
    assert leftovers(tmp_path) == []


def test_download_raises_download_error(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "open_url", FakeNet({URL: urllib.error.URLError("down")}))
    with pytest.raises(dl.DownloadError) as info:
        dl.download(toy(), tmp_path, progress=False)
    assert info.value.path == tmp_path / "toys" / "toy.bin"
    assert URL in str(info.value)


# -- --check, --list, selection ---------------------------------------------------------------


def test_check_reports_missing_corrupt_and_valid_files(tmp_path, monkeypatch, use, capsys):
    other = b"another file"
    good, bad = toy(), toy(other, name="other", dest="toys/other.bin", url=URL + "2")
    use(good, bad)
    monkeypatch.setattr(dl, "open_url", no_network)
    args = ["toys", "--check", "--dest", str(tmp_path)]

    assert dl.main(args) == 1
    out = capsys.readouterr().out
    assert "MISSING  toy:" in out and "MISSING  other:" in out

    (tmp_path / "toys").mkdir()
    (tmp_path / "toys" / "toy.bin").write_bytes(PAYLOAD)
    (tmp_path / "toys" / "other.bin").write_bytes(b"X" + other[1:])
    assert dl.main(args) == 1
    out = capsys.readouterr().out
    assert "ok       toy:" in out and "CORRUPT  other:" in out and "sha256 is" in out
    assert (tmp_path / "toys" / "other.bin").exists()  # --check changes nothing

    (tmp_path / "toys" / "other.bin").write_bytes(other)
    assert dl.main(args) == 0
    out = capsys.readouterr().out
    assert "ok       toy:" in out and "ok       other:" in out


def test_list_shows_every_resource(capsys):
    assert dl.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "group", "size", "sha256", "url", "licence"]
    for resource in dl.RESOURCES:
        line = next(x for x in out.splitlines() if x.startswith(resource.name + " "))
        assert resource.group in line and resource.url in line and resource.licence in line
        assert (resource.sha256 or "unverified") in line


def test_only_narrows_its_own_group():
    names = [r.name for r in dl.select(["imagenet_val", "weights"], ["squeezenet1_1"])]
    assert names == ["imagenet_val_25", "squeezenet1_1"]
    assert [r.name for r in dl.select(["all"])] == [r.name for r in dl.RESOURCES]
    with pytest.raises(ValueError, match="not in the chosen groups"):
        dl.select(["styles"], ["squeezenet1_1"])
    with pytest.raises(ValueError, match="unknown group"):
        dl.select(["nope"])


def test_usage_errors_exit_2(capsys):
    for argv in ([], ["nope"], ["styles", "--only", "squeezenet1_1"]):
        with pytest.raises(SystemExit) as info:
            dl.main(argv)
        assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


# -- pennfudan: zip extraction ------------------------------------------------------------------


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


PENN_MEMBERS = {
    "PennFudanPed/PNGImages/FudanPed00001.png": b"image",
    "PennFudanPed/PedMasks/FudanPed00001_mask.png": b"mask",
    "PennFudanPed/readme.txt": b"Penn-Fudan",
}


def pennfudan(data: bytes, **changes):
    [real] = [r for r in dl.RESOURCES if r.name == "pennfudan"]
    return dataclasses.replace(real, size=len(data), **changes)


def test_pennfudan_is_extracted_and_flagged_unverified(tmp_path, monkeypatch, use, capsys):
    data = make_zip(PENN_MEMBERS)
    resource = pennfudan(data)
    assert resource.sha256 is None  # no trustworthy published checksum: see README
    monkeypatch.setattr(dl, "open_url", FakeNet({resource.url: data}))
    use(resource)

    assert dl.main(["pennfudan", "--dest", str(tmp_path), "--no-progress"]) == 0
    for name, content in PENN_MEMBERS.items():
        assert (tmp_path / name).read_bytes() == content
    assert (tmp_path / "PennFudanPed.zip").read_bytes() == data
    assert leftovers(tmp_path) == []
    out = capsys.readouterr().out
    assert "could not be verified" in out and sha256(data) in out
    assert "ok (downloaded, size verified)" in out

    # Present: --check accepts it (still saying it is unverified); no download the next time.
    monkeypatch.setattr(dl, "open_url", no_network)
    assert dl.main(["pennfudan", "--check", "--dest", str(tmp_path)]) == 0
    assert "could not be verified" in capsys.readouterr().out
    assert dl.main(["pennfudan", "--dest", str(tmp_path)]) == 0
    assert "ok (cached)" in capsys.readouterr().out

    # The extracted folder deleted: --check says so, a plain run re-extracts from the zip.
    shutil.rmtree(tmp_path / "PennFudanPed")
    assert dl.main(["pennfudan", "--check", "--dest", str(tmp_path)]) == 1
    assert "not extracted" in capsys.readouterr().out
    assert dl.main(["pennfudan", "--dest", str(tmp_path)]) == 0
    assert (tmp_path / "PennFudanPed" / "readme.txt").exists()


def test_pennfudan_with_known_checksum_is_verified(tmp_path, monkeypatch, capsys):
    data = make_zip(PENN_MEMBERS)
    resource = pennfudan(data, sha256=sha256(data))
    monkeypatch.setattr(dl, "open_url", FakeNet({resource.url: data}))
    dl.download(resource, tmp_path, progress=False)
    out = capsys.readouterr().out
    assert "sha256 verified" in out and "could not be verified" not in out


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"../evil.txt": b"x", "PennFudanPed/a.png": b"a"}, "unsafe member name"),
        ({"Other/a.png": b"a"}, "no top-level folder PennFudanPed/"),
    ],
)
def test_bad_archives_are_rejected_and_removed(
    tmp_path, monkeypatch, use, capsys, members, message
):
    data = make_zip(members)
    resource = pennfudan(data)
    monkeypatch.setattr(dl, "open_url", FakeNet({resource.url: data}))
    use(resource)
    assert dl.main(["pennfudan", "--dest", str(tmp_path / "root"), "--no-progress"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and resource.url in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["root"]  # nothing left, nothing outside


def test_damaged_archive(tmp_path, monkeypatch, use, capsys):
    data = b"PK\x03\x04 this is not really a zip"
    resource = pennfudan(data)
    monkeypatch.setattr(dl, "open_url", FakeNet({resource.url: data}))
    use(resource)
    assert dl.main(["pennfudan", "--dest", str(tmp_path), "--no-progress"]) == 1
    assert "archive is damaged" in " ".join(capsys.readouterr().err.split())
    assert list(tmp_path.iterdir()) == []


# -- weights: torch's hub cache -------------------------------------------------------------------


def test_weights_land_where_torchvision_looks(tmp_path, monkeypatch, use, capsys):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    state = {"features.0.weight": torch.arange(6.0).reshape(2, 3), "classifier.bias": torch.ones(2)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    resources = [
        dataclasses.replace(r, sha256=sha256(data), size=len(data))
        for r in dl.RESOURCES
        if r.group == "weights"
    ]
    use(*resources)
    net = FakeNet({r.url: data for r in resources})
    monkeypatch.setattr(dl, "open_url", net)

    data_root = tmp_path / "data"
    assert dl.main(["weights", "--only", "squeezenet1_1", "--dest", str(data_root)]) == 0
    assert net.calls == ["https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"]
    weights = torchvision.models.get_weight("SqueezeNet1_1_Weights.IMAGENET1K_V1")
    expected = Path(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    assert expected == hub / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    assert expected.is_file() and not data_root.exists()

    # torch.hub finds it there and loads it without touching the network.
    def no_download(*args, **kwargs):
        raise AssertionError("torch.hub tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    loaded = torch.hub.load_state_dict_from_url(weights.url, check_hash=True)
    assert loaded.keys() == state.keys()
    assert torch.equal(loaded["features.0.weight"], state["features.0.weight"])

    capsys.readouterr()
    assert dl.main(["weights", "--check", "--only", "squeezenet1_1"]) == 0
    assert str(expected) in capsys.readouterr().out


def test_weights_manifest_matches_torchvision():
    torchvision = pytest.importorskip("torchvision")
    enums = {
        "squeezenet1_1": "SqueezeNet1_1_Weights.IMAGENET1K_V1",
        "maskrcnn_resnet50_fpn_v2": "MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1",
    }
    weights = [r for r in dl.RESOURCES if r.group == "weights"]
    assert sorted(r.name for r in weights) == sorted(enums)
    for resource in weights:
        entry = torchvision.models.get_weight(enums[resource.name])
        assert resource.url == entry.url
        assert resource.dest == os.path.basename(entry.url)
        assert resource.location == "torch_hub"
        # torchvision checks the 8 hex digits in the file name against the file's sha256.
        prefix = resource.dest.rsplit("-", 1)[1].split(".")[0]
        assert resource.sha256.startswith(prefix)
        # torchvision records the file size in MiB, rounded to 3 decimals.
        file_size = entry.meta.get("_file_size")
        if file_size is not None:
            assert round(resource.size / 2**20, 3) == pytest.approx(file_size, abs=1e-3)


# -- the manifest against the real files ---------------------------------------------------------


def test_manifest_checksums_match_the_shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not present: {SHARED_DATA} (CI has it)")
    sums = {}
    for line in (SHARED_DATA / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.removeprefix("./")] = digest
    checked = 0
    for resource in dl.RESOURCES:
        if resource.group not in ("imagenet_val", "styles"):
            continue
        path = SHARED_DATA / resource.dest
        assert sums[resource.dest] == resource.sha256, resource.name
        assert path.stat().st_size == resource.size, resource.name
        assert dl.verify(path, resource), resource.name
        checked += 1
    assert checked == 4


def test_real_file_is_served_and_verified(tmp_path, monkeypatch):
    [resource] = [r for r in dl.RESOURCES if r.name == "composition_vii"]
    source = SHARED_DATA / resource.dest
    if not source.is_file():
        pytest.skip(f"../shared/data not present: {source} (CI has it)")
    data = source.read_bytes()
    monkeypatch.setattr(dl, "open_url", FakeNet({resource.url: data}))
    assert dl.download(resource, tmp_path, progress=False).read_bytes() == data


def test_manifest_is_sane():
    names = [r.name for r in dl.RESOURCES]
    assert len(names) == len(set(names))
    assert {r.group for r in dl.RESOURCES} == {"imagenet_val", "styles", "pennfudan", "weights"}
    styles = {Path(r.dest).name for r in dl.RESOURCES if r.group == "styles"}
    assert styles == {"starry_night.jpg", "the_scream.jpg", "composition_vii.jpg"}
    for resource in dl.RESOURCES:
        assert resource.licence and resource.source and resource.size
        assert all(url.startswith(("http://", "https://")) for url in resource.urls)
        if resource.url.startswith("https://raw.githubusercontent.com/"):
            commit = resource.url.split("/")[5]
            assert len(commit) == 40  # pinned to a commit, not a branch
    with pytest.raises(ValueError):
        toy(dest="../outside.bin")
    with pytest.raises(ValueError):
        toy(sha256="ABC")


# -- the script as students run it -------------------------------------------------------------


def test_runs_as_a_standalone_script_without_importing_torch(tmp_path):
    assert not (ROOT / "datasets" / "__init__.py").exists()  # not a package: see datasets/README
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('download', {str(SCRIPT)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert 'torch' not in sys.modules, 'download.py imported torch at import time'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--list"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "imagenet_val_25" in done.stdout


def test_hub_folder_without_torch_follows_torch_rules(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch.hub` fail
    monkeypatch.setitem(sys.modules, "torch.hub", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert dl.torch_hub_checkpoints() == tmp_path / "th" / "hub" / "checkpoints"
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dl.torch_hub_checkpoints() == tmp_path / "xdg" / "torch" / "hub" / "checkpoints"
