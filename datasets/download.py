#!/usr/bin/env python3
"""Download the data files and pretrained weights that the kit's assignments use.

Run it from the repository root (or from a student bundle)::

    python datasets/download.py --list                 # what can be downloaded
    python datasets/download.py imagenet_val styles    # some groups
    python datasets/download.py all                    # everything
    python datasets/download.py weights --only squeezenet1_1
    python datasets/download.py all --check            # verify what is present, download nothing

Data files go to ``$DLCV_DATA`` if set, else to ``data/`` next to this script
(``--dest DIR`` overrides both). Pretrained weights go to torch's hub cache
(``torch.hub.get_dir()/checkpoints``), where ``torchvision.models.get_model(name, weights=...)``
looks for them.

Every file is checked against the sha256 and size recorded below: a file already present and
valid is not downloaded again; a download is streamed to ``<name>.part-<random>`` next to its
destination and renamed into place only once verified, so an interrupted or corrupted download
never leaves a bad file behind.

This is a standalone script, deliberately not a package (a ``datasets`` package would shadow
HuggingFace's ``datasets`` on Colab): it needs only the standard library, uses ``tqdm`` for
progress bars when it is installed, and imports ``torch`` only to locate the hub cache.
"""

import argparse
import hashlib
import http.client
import os
import secrets
import shutil
import sys
import tempfile
import textwrap
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

try:  # optional: nicer progress bars
    from tqdm import tqdm as _tqdm
except ImportError:  # pragma: no cover - depends on the environment
    _tqdm = None

__all__ = [
    "DEFAULT_TIMEOUT",
    "DownloadError",
    "RESOURCES",
    "Resource",
    "check",
    "default_data_root",
    "download",
    "file_sha256",
    "main",
    "open_url",
    "select",
    "torch_hub_checkpoints",
    "verify",
]

HERE = Path(__file__).resolve().parent
DEFAULT_TIMEOUT = 30.0  # seconds, for connecting and for each read
USER_AGENT = "cs-kit-download/1.0 (Python urllib; course assignment kit)"
CHUNK_SIZE = 1 << 16
SCRIPT = "python datasets/download.py"

DATA = "data"  # Resource.location: under the data root ($DLCV_DATA, datasets/data, --dest)
TORCH_HUB = "torch_hub"  # Resource.location: under torch.hub.get_dir()/checkpoints


@dataclass(frozen=True)
class Resource:
    """One downloadable file and everything needed to fetch and verify it.

    Attributes:
        name: short unique name (used by ``--only``).
        group: the group it belongs to (the positional argument of the CLI).
        url: where it is downloaded from.
        dest: destination, relative to the data root (or to the hub checkpoints folder when
            ``location`` is ``"torch_hub"``), with ``/`` separators.
        sha256: expected sha256 (lowercase hex), or ``None`` when no trustworthy value is known:
            the file is then accepted on its size alone and its computed sha256 is printed.
        size: expected size in bytes, or ``None`` when unknown.
        licence: licence or terms of use, in a few words.
        source: where the file, its URL and its checksum come from.
        mirrors: further URLs serving the same bytes, tried in order when ``url`` fails.
        extract: for a zip archive, the top-level folder it contains, extracted next to it.
        location: ``"data"`` or ``"torch_hub"``.
    """

    name: str
    group: str
    url: str
    dest: str
    sha256: str | None
    size: int | None
    licence: str
    source: str
    mirrors: tuple[str, ...] = ()
    extract: str | None = None
    location: str = DATA

    def __post_init__(self) -> None:
        parts = PurePosixPath(self.dest).parts
        if not parts or PurePosixPath(self.dest).is_absolute() or ".." in parts:
            raise ValueError(f"{self.name}: dest must be a relative path, got {self.dest!r}")
        if self.sha256 is not None and (
            len(self.sha256) != 64 or set(self.sha256) - set("0123456789abcdef")
        ):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits")
        if self.location not in (DATA, TORCH_HUB):
            raise ValueError(f"{self.name}: unknown location {self.location!r}")

    @property
    def urls(self) -> tuple[str, ...]:
        """The main URL followed by the mirrors."""
        return (self.url, *self.mirrors)


def _github_raw(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


# Copies of CS231n's assignment-3 style images in public GitHub repositories, pinned to a commit.
# Their bytes are checked against the sha256 of CS231n's own copy, so a mirror serving anything
# else is rejected. See datasets/README.md.
_THIBBAC = ("ThibBac/Neural-Artistic-Style", "875717d1bc9caeb58fb53572b2b65334f6832494")
_ETHAN707 = ("Ethan707/cs231n", "3ba83c0f3008d5a87f0beca715b730918d2b4bab")
_ASETOODEHNIA = ("asetoodehnia/Neural-Style-Transfer", "06e86a09ebb313a3cdb9de4cd325bdd1bd9e6de3")
_THIBBAC_IMG = ("ThibBac/Neural-Artistic-Style", "85c867d21553fec4917ef2f4644dd7b788725fc5")
_STYLE_SOURCE = (
    "CS231n assignment 3 style image (public GitHub copy pinned to a commit); sha256 and size "
    "from CS231n's copy"
)
_TORCHVISION_TERMS = "torchvision weights: terms of the training data ({data}); see README"

RESOURCES: list[Resource] = [
    Resource(
        name="imagenet_val_25",
        group="imagenet_val",
        url="http://cs231n.stanford.edu/imagenet_val_25.npz",
        dest="imagenet_val_25/imagenet_val_25.npz",
        sha256="35141609d22457c791e8fbe10c2d3b09ed0d6a04b669173e9fbebb0b4915cd3c",
        size=3_940_548,
        licence="ImageNet terms of access (non-commercial research and teaching)",
        source="Stanford CS231n (the file its assignment scripts download); sha256 and size "
        "from CS231n's copy",
    ),
    Resource(
        name="starry_night",
        group="styles",
        url=_github_raw(*_THIBBAC, "styles/starry_night.jpg"),
        mirrors=(_github_raw(*_ASETOODEHNIA, "styles/starry_night.jpg"),),
        dest="styles/starry_night.jpg",
        sha256="c31741a09141c2e2d07fc7aa6bdf135c369b804f9433e43fa3ceac19386d1ee6",
        size=613_337,
        licence="public domain (Vincent van Gogh, The Starry Night, 1889)",
        source=_STYLE_SOURCE,
    ),
    Resource(
        name="the_scream",
        group="styles",
        url=_github_raw(*_THIBBAC, "styles/the_scream.jpg"),
        dest="styles/the_scream.jpg",
        sha256="f3075cddeb974a9ee1d6418f7f33fd05185a7ac7dcb4288bd2805d499a9dcaee",
        size=216_723,
        licence="public domain (Edvard Munch, The Scream, 1893)",
        source=_STYLE_SOURCE,
    ),
    Resource(
        name="composition_vii",
        group="styles",
        url=_github_raw(*_ETHAN707, "assignment3/styles/composition_vii.jpg"),
        mirrors=(
            _github_raw(*_ASETOODEHNIA, "styles/composition_vii.jpg"),
            _github_raw(*_THIBBAC_IMG, "img/composition_vii.jpg"),
        ),
        dest="styles/composition_vii.jpg",
        sha256="8f992ed4aecd6dd56972d7bc8166761de7c94e670ee6effa8fd05f3daeb33409",
        size=202_426,
        licence="public domain (Wassily Kandinsky, Composition VII, 1913)",
        source=_STYLE_SOURCE,
    ),
    Resource(
        name="pennfudan",
        group="pennfudan",
        url="https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip",
        dest="PennFudanPed.zip",
        extract="PennFudanPed",
        sha256=None,  # no published checksum found: the computed one is printed, unverified
        size=53_723_336,  # Content-Length seen in two independent public download logs
        licence="no licence stated by the authors; cite Wang, Shi, Song & Shen, ACCV 2007",
        source="Penn-Fudan pedestrian database (University of Pennsylvania), as used by "
        "torchvision's detection tutorial; no published sha256",
    ),
    Resource(
        name="squeezenet1_1",
        group="weights",
        url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
        dest="squeezenet1_1-b8a52dc0.pth",
        location=TORCH_HUB,
        sha256="b8a52dc049b60e4b6ab68ad0df457362afab8b6304b2febdc1650a5dab4d7e7b",
        size=4_958_839,
        licence=_TORCHVISION_TERMS.format(data="ImageNet"),
        source="torchvision SqueezeNet1_1_Weights.IMAGENET1K_V1; full sha256 and size from "
        "public pins (README), consistent with the 8-hex prefix torchvision checks",
    ),
    Resource(
        name="maskrcnn_resnet50_fpn_v2",
        group="weights",
        url="https://download.pytorch.org/models/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
        dest="maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
        location=TORCH_HUB,
        sha256="73cbd0190fcbe3ba339921fbce2c3a0b6bb9126c9a133c85e43a2a8e060a109e",
        size=185_828_065,
        licence=_TORCHVISION_TERMS.format(data="COCO, ImageNet"),
        source="torchvision MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1; full sha256 and size "
        "from public pins (README), consistent with the 8-hex prefix torchvision checks",
    ),
]


class DownloadError(Exception):
    """A file could not be downloaded, verified or installed.

    ``str(error)`` is a one-paragraph explanation for the user that names the file, the URL,
    the destination and what to do.
    """

    def __init__(self, resource: Resource, path: Path, reasons: list[tuple[str, str]], advice: str):
        self.resource = resource
        self.path = path
        self.reasons = reasons  # (url, why) for each URL tried
        self.advice = advice
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The explanation, as one paragraph wrapped at 100 columns."""
        first_url, first_reason = self.reasons[0]
        text = (
            f"error: could not get {self.resource.name} ({self.resource.group}) from "
            f"{first_url} to {self.path}: {first_reason}."
        )
        others = self.reasons[1:]
        if others and all(why == first_reason for _, why in others):
            text += f" The {len(others)} mirror(s) tried next failed the same way."
        elif others:
            text += " Also tried " + "; ".join(f"{url}: {why}" for url, why in others) + "."
        text += f" {self.advice}"
        return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


class _Failure(Exception):
    """One failed attempt: ``kind`` selects the advice given to the user."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class _Progress(Protocol):
    def update(self, n: int) -> object: ...

    def close(self) -> object: ...


class _LineProgress:
    """A one-line progress display on stdout, used when tqdm is not installed."""

    def __init__(self, total: int | None, desc: str):
        self.total = total
        self.desc = desc
        self.done = 0
        self._shown: object = None

    def update(self, n: int) -> None:
        self.done += n
        if self.total:
            state: object = min(100, 100 * self.done // self.total)
            line = f"{self.desc}: {state:>3}% of {_human(self.total)}"
        else:
            state = self.done >> 20  # refresh every MiB
            line = f"{self.desc}: {_human(self.done)}"
        if state != self._shown:
            self._shown = state
            print(f"\r  {line}", end="", flush=True)

    def close(self) -> None:
        if self._shown is not None:
            print(flush=True)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _make_progress(total: int | None, desc: str, enabled: bool) -> _Progress:
    if not enabled:
        return _NoProgress()
    if _tqdm is not None:
        return _tqdm(
            total=total,
            desc=f"  {desc}",
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stdout,
            leave=True,
        )
    return _LineProgress(total, desc)


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def open_url(url: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[IO[bytes], int | None]:
    """Open ``url`` for reading; the only function of this script that touches the network.

    Returns the response stream and its announced length in bytes (``None`` when the server
    does not say). Raises ``urllib.error.URLError`` (``HTTPError`` for an HTTP error status)
    or ``OSError`` (e.g. a timeout).
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    response = urllib.request.urlopen(request, timeout=timeout)
    length = response.headers.get("Content-Length")
    return response, int(length) if length and length.strip().isdigit() else None


def default_data_root() -> Path:
    """Where data files go: ``$DLCV_DATA`` if set, else ``data/`` next to this script."""
    env = os.environ.get("DLCV_DATA")
    return Path(env).expanduser() if env else HERE / "data"


def torch_hub_checkpoints() -> Path:
    """The folder where torchvision looks for pretrained weights.

    That is ``torch.hub.get_dir()/checkpoints``. Without torch installed, the same default is
    computed from ``$TORCH_HOME`` / ``$XDG_CACHE_HOME`` as torch would.
    """
    try:
        import torch.hub
    except ImportError:
        home = os.environ.get("TORCH_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch"
        )
        return Path(home).expanduser() / "hub" / "checkpoints"
    return Path(torch.hub.get_dir()) / "checkpoints"


def _root_for(resource: Resource, data_root: Path) -> Path:
    return torch_hub_checkpoints() if resource.location == TORCH_HUB else data_root


def file_sha256(path: Path) -> str:
    """The sha256 of the file at ``path``, as lowercase hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _inspect(path: Path, resource: Resource) -> tuple[str | None, str | None]:
    """Check a present file: returns (problem or None, computed sha256 or None)."""
    if not path.is_file():
        return "missing", None
    size = path.stat().st_size
    if resource.size is not None and size != resource.size:
        return f"size is {size} bytes, expected {resource.size}", None
    digest = file_sha256(path)
    if resource.sha256 is not None and digest != resource.sha256:
        return f"sha256 is {digest}, expected {resource.sha256}", digest
    return None, digest


def verify(path: Path, resource: Resource) -> bool:
    """Whether the file at ``path`` is ``resource``: right size and right sha256.

    For a resource without a known sha256 only the size (when known) can be checked.
    """
    return _inspect(Path(path), resource)[0] is None


def _unverified_note(resource: Resource, digest: str | None) -> str:
    size = f", and its size, {resource.size} bytes, is as expected" if resource.size else ""
    return (
        f"  note: {resource.name} has no published sha256, so it could not be verified: "
        f"its sha256 is {digest}{size}. Compare it with the course staff's copy if in doubt."
    )


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return _reason(reason)
    return str(reason if reason is not None else exc) or type(exc).__name__


def _fetch(resource: Resource, url: str, target: Path, *, timeout: float, progress: bool) -> str:
    """Download ``url`` to ``target`` through a temporary file; returns the sha256."""
    part = target.with_name(f"{target.name}.part-{secrets.token_hex(4)}")
    try:
        try:
            stream, length = open_url(url, timeout)
        except urllib.error.HTTPError as exc:
            raise _Failure("http", f"the server answered HTTP {exc.code} {exc.reason}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _Failure("offline", f"could not reach the server ({_reason(exc)})") from None
        expected = resource.size if resource.size is not None else length
        if resource.size is not None and length is not None and length != resource.size:
            stream.close()
            raise _Failure(
                "size",
                f"the server announced {length} bytes, expected {resource.size}, so it is not "
                "serving the file this kit expects",
            )
        digest = hashlib.sha256()
        received = 0
        bar = _make_progress(expected, resource.name, progress)
        try:
            with closing(stream), open(part, "xb") as out:
                while True:
                    try:
                        chunk = stream.read(CHUNK_SIZE)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Failure(
                            "broken",
                            f"the connection broke after {received} bytes ({_reason(exc)})",
                        ) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except OSError as exc:
            raise _Failure("local", f"could not write {part} ({_reason(exc)})") from None
        finally:
            bar.close()
        if expected is not None and received != expected:
            how = "the download was cut short" if received < expected else "too much data"
            raise _Failure("size", f"received {received} bytes, expected {expected} ({how})")
        got = digest.hexdigest()
        if resource.sha256 is not None and got != resource.sha256:
            raise _Failure(
                "checksum", f"the data received has sha256 {got}, expected {resource.sha256}"
            )
        try:
            os.replace(part, target)
        except OSError as exc:
            reason = f"could not rename {part} to {target} ({_reason(exc)})"
            raise _Failure("local", reason) from None
        return got
    finally:
        part.unlink(missing_ok=True)


def _advice(kind: str, resource: Resource, path: Path) -> str:
    by_hand = (
        f"download {resource.url} by hand (e.g. in a browser) and put it at {path}, then run "
        f"`{SCRIPT} {resource.group} --check` to verify it"
    )
    if kind == "offline":
        return (
            "You seem to be offline, or the server cannot be reached from this network "
            f"(proxy, firewall). Connect and run the same command again, or {by_hand}."
        )
    if kind == "http":
        return f"The file may have moved or the server may be down: try again later, or {by_hand}."
    if kind == "broken":
        return f"Run the same command again; if it keeps failing, {by_hand}."
    if kind in ("size", "checksum"):
        return (
            "Nothing was saved. The download was corrupted, or the file on the server is not "
            "the one this kit expects. Run the same command again; if it fails the same way, "
            f"tell the course staff, or {by_hand}."
        )
    if kind == "archive":
        return f"The archive was removed. Run the same command again, or {by_hand}."
    return (
        f"Check that {path.parent} is writable and the disk has room, or choose another "
        "folder with --dest or the DLCV_DATA environment variable."
    )


def _extract(resource: Resource, archive: Path, root: Path) -> Path:
    """Extract the zip ``archive`` into ``root``; the ``resource.extract`` folder appears whole."""
    assert resource.extract is not None
    final = root / resource.extract
    scratch = Path(tempfile.mkdtemp(prefix=f".{resource.extract}.extract-", dir=root))
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                parts = PurePosixPath(member.replace("\\", "/")).parts
                if PurePosixPath(member).is_absolute() or ".." in parts:
                    raise _Failure("archive", f"the archive has an unsafe member name {member!r}")
            zipped.extractall(scratch)
        produced = scratch / resource.extract
        if not produced.is_dir():
            raise _Failure("archive", f"the archive has no top-level folder {resource.extract}/")
        if final.exists():
            shutil.rmtree(final)
        os.replace(produced, final)
        return final
    except (zipfile.BadZipFile, EOFError) as exc:
        raise _Failure("archive", f"the archive is damaged ({_reason(exc)})") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def download(
    resource: Resource,
    dest_root: Path,
    *,
    force: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> Path:
    """Make sure ``dest_root / resource.dest`` is present and valid; returns its path.

    A valid file already present is kept ("ok (cached)") unless ``force``; a present file with
    the wrong size or sha256 is reported, deleted and downloaded again. URLs are tried in
    order (``resource.urls``). A zip with ``resource.extract`` set is then extracted next to
    itself. Raises :class:`DownloadError` on failure, having left no partial or corrupt file.
    """
    dest_root = Path(dest_root)
    target = dest_root / resource.dest
    label = f"{resource.name}: {target}"
    fresh = False
    problem, digest = _inspect(target, resource) if target.exists() else ("missing", None)
    if problem is None and not force:
        print(f"{label}: ok (cached)")
    else:
        if problem not in (None, "missing"):
            print(f"{label}: present but corrupt ({problem}); deleting it and downloading again")
            target.unlink()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DownloadError(
                resource,
                target,
                [(resource.url, f"cannot create {target.parent} ({_reason(exc)})")],
                _advice("local", resource, target),
            ) from None
        reasons: list[tuple[str, str]] = []
        kinds: list[str] = []
        succeeded = False
        for url in resource.urls:
            print(f"{label}: downloading {url}", flush=True)
            try:
                digest = _fetch(resource, url, target, timeout=timeout, progress=progress)
            except _Failure as failure:
                reasons.append((url, failure.reason))
                kinds.append(failure.kind)
                if failure.kind == "local":
                    break  # another URL would not help
            else:
                succeeded = True
                break
        if not succeeded:
            kind = "local" if "local" in kinds else kinds[0]
            raise DownloadError(resource, target, reasons, _advice(kind, resource, target))
        fresh = True
        verified = "sha256 verified" if resource.sha256 else "size verified"
        print(f"{label}: ok (downloaded, {verified})")
    if resource.sha256 is None:
        print(_unverified_note(resource, digest))
    if resource.extract is not None:
        folder = dest_root / resource.extract
        if fresh or not folder.is_dir():
            try:
                _extract(resource, target, dest_root)
            except _Failure as failure:
                target.unlink(missing_ok=True)
                raise DownloadError(
                    resource,
                    target,
                    [(resource.url, failure.reason)],
                    _advice("archive", resource, target),
                ) from None
            print(f"{resource.name}: extracted to {folder}")
    return target


def check(resources: Sequence[Resource], data_root: Path) -> int:
    """Verify the files present, downloading nothing; returns the number of problems."""
    problems = 0
    for resource in resources:
        path = _root_for(resource, data_root) / resource.dest
        problem, digest = _inspect(path, resource)
        if problem is None and resource.extract is not None:
            if not (path.parent / resource.extract).is_dir():
                problem = f"not extracted (no {path.parent / resource.extract})"
        if problem is None:
            print(f"ok       {resource.name}: {path}")
            if resource.sha256 is None:
                print(_unverified_note(resource, digest))
        else:
            problems += 1
            status = "MISSING" if problem == "missing" else "CORRUPT"
            print(f"{status:<8} {resource.name}: {path} ({problem})")
    return problems


def _table(resources: Sequence[Resource]) -> str:
    header = ("name", "group", "size", "sha256", "url", "licence")
    rows = [header] + [
        (
            r.name,
            r.group,
            _human(r.size),
            r.sha256 or "(none published: unverified)",
            r.url,
            r.licence,
        )
        for r in resources
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)] + [
            row[-1]
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _groups() -> list[str]:
    return list(dict.fromkeys(r.group for r in RESOURCES))


def select(groups: Sequence[str], only: Sequence[str] = ()) -> list[Resource]:
    """The resources of ``groups`` (``"all"`` for every group), in manifest order.

    ``only`` names single files: a chosen group that contains one of them is restricted to
    the named files, the other chosen groups are taken whole (so ``imagenet_val weights
    --only squeezenet1_1`` means all of imagenet_val plus SqueezeNet's weights).
    Raises ``ValueError`` for an unknown group, or a name in none of the chosen groups.
    """
    wanted = set(_groups()) if "all" in groups else set(groups)
    unknown = wanted - set(_groups())
    if unknown:
        raise ValueError(f"unknown group(s): {', '.join(sorted(unknown))}; see --list")
    chosen = [r for r in RESOURCES if r.group in wanted]
    stray = set(only) - {r.name for r in chosen}
    if stray:
        names = ", ".join(r.name for r in chosen)
        raise ValueError(
            f"--only {', '.join(sorted(stray))}: not in the chosen groups (choose from {names})"
        )
    narrowed = {r.group for r in chosen if r.name in only}
    return [r for r in chosen if r.group not in narrowed or r.name in only]


def _parser() -> argparse.ArgumentParser:
    groups = _groups()
    parser = argparse.ArgumentParser(
        prog=SCRIPT,
        description="Download and verify the kit's data files and pretrained weights.",
        epilog=(
            "Data files go to $DLCV_DATA if set, else datasets/data/ (--dest overrides). "
            "Weights go to torch's hub cache, torch.hub.get_dir()/checkpoints (set TORCH_HOME "
            "to move it), where torchvision looks for them."
        ),
    )
    parser.add_argument(
        "groups",
        nargs="*",
        metavar="GROUP",
        help=f"what to download: {', '.join(groups)}, or all",
    )
    parser.add_argument("--list", action="store_true", help="list every file and exit")
    parser.add_argument(
        "--check",
        action="store_true",
        help="verify the files present, download nothing; exit 1 if any is missing or corrupt",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="only this file of the chosen groups (repeatable), e.g. weights --only squeezenet1_1",
    )
    parser.add_argument(
        "--dest", metavar="DIR", help="data folder (default: $DLCV_DATA or datasets/data)"
    )
    parser.add_argument("--force", action="store_true", help="download again even if valid")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"network timeout (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 failure, 130 interrupted)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        print(_table(RESOURCES))
        return 0
    if not args.groups:
        parser.error(f"name at least one group ({', '.join(_groups())}) or all; see --list")
    try:
        resources = select(args.groups, args.only)
    except ValueError as exc:
        parser.error(str(exc))
    data_root = Path(args.dest).expanduser() if args.dest else default_data_root()

    if args.check:
        problems = check(resources, data_root)
        if problems:
            groups = " ".join(dict.fromkeys(r.group for r in resources))
            print(
                f"{problems} of {len(resources)} file(s) missing or corrupt; run "
                f"`{SCRIPT} {groups}` to download them.",
                file=sys.stderr,
            )
            return 1
        return 0

    current: Resource | None = None
    try:
        for current in resources:
            download(
                current,
                _root_for(current, data_root),
                force=args.force,
                timeout=args.timeout,
                progress=not args.no_progress,
            )
    except DownloadError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        name = current.name if current else "the download"
        print(
            f"\ninterrupted: {name} was not saved (the partial file was deleted); run the "
            "same command again to resume.",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
