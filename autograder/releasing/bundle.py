"""The student bundle ``dist/<assignment>.zip``: everything a student needs, nothing they must not see.

Inside the zip, under a folder named after the assignment:

- the release notebook(s) and any other file of the release folder (``nbgrader
  generate_assignment`` output), except files that look like solutions or reference
  outputs (:data:`EXCLUDED_PATTERNS`);
- ``cs_lib/`` (the helpers the notebooks import), ``requirements-student.txt``,
  ``setup_colab.sh``, ``datasets/download.py`` and ``datasets/README.md``;
- ``docs/<assignment>/``: the README and the "what you should see" pictures that the notebook
  links to, at the same relative paths as in the repository (the notebook sits at the bundle's
  top, so ``docs/<assignment>/x.png`` resolves the same way); pictures :data:`PICTURE_BUDGET`
  bytes at most per assignment;
- ``cs_lib/manifests/<assignment>.json``: the release's graded cells, flags, points and locked
  sources' digests, which ``python -m cs_lib.submission_check`` compares a notebook with.

Never: ``autograder/`` (hidden tests, reference solutions and outputs), the source
notebooks, caches. :func:`verify_bundle` re-reads the finished zip and refuses it (deleting
it) if any notebook holds a solution or hidden-test marker or an ``autograder`` import, or
if any path is in the ``autograder`` package.
"""

from __future__ import annotations

import fnmatch
import json
import zipfile
from pathlib import Path

from autograder import REPO_ROOT
from autograder.notebook_format import ALL_MARKERS

#: Top-level files and folders of the repository that go into every bundle.
SHARED_FILES = ("requirements-student.txt", "setup_colab.sh", "datasets/download.py", "datasets/README.md")
SHARED_PACKAGES = ("cs_lib",)
#: Pictures shipped from ``docs/<assignment>/``: at most this many bytes in all, per assignment.
PICTURE_BUDGET = 1024 * 1024
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")
#: Release-folder files left out of the bundle.
EXCLUDED_PATTERNS = ("*solution*", "*reference*", "*.pt", "*.pth", "*.pyc", "gradebook.db")
#: Text that must not appear in a bundled notebook.
FORBIDDEN_MARKERS = (*ALL_MARKERS, "from autograder", "import autograder")


class BundleError(RuntimeError):
    """The bundle would leak something; the message says what."""


def bundle_files(assignment: str, release_dir: Path) -> dict[str, Path]:
    """``{path inside the zip: file on disk}`` of ``assignment``'s bundle."""
    files: dict[str, Path] = {}
    for path in sorted(release_dir.rglob("*")):
        rel = path.relative_to(release_dir)
        if path.is_file() and not _excluded(rel):
            files[f"{assignment}/{rel.as_posix()}"] = path
    for package in SHARED_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[f"{assignment}/{path.relative_to(REPO_ROOT).as_posix()}"] = path
    for name in SHARED_FILES:
        path = REPO_ROOT / name
        if path.exists():
            files[f"{assignment}/{name}"] = path
    docs = REPO_ROOT / "docs" / assignment
    for path in sorted(docs.rglob("*")) if docs.is_dir() else []:
        rel = path.relative_to(REPO_ROOT)
        if path.is_file() and not _excluded(rel):
            files[f"{assignment}/{rel.as_posix()}"] = path
    pictures = sum(p.stat().st_size for p in files.values() if p.suffix.lower() in PICTURE_SUFFIXES)
    if pictures > PICTURE_BUDGET:
        raise BundleError(f"{assignment}'s pictures take {pictures / 2**20:.2f} MiB; a bundle ships at most "
                          f"{PICTURE_BUDGET / 2**20:.0f} MiB of them. Shrink the pictures in docs/{assignment}/.")
    return files


def build_bundle(assignment: str, release_dir: Path, dist: Path) -> Path:
    """Write ``dist/<assignment>.zip`` from ``release_dir`` and the shared files; verify it.

    Raises:
        BundleError: the release folder has no notebook, or the bundle would leak.
    """
    release_dir = Path(release_dir)
    if not any(release_dir.glob("*.ipynb")):
        raise BundleError(f"no release notebook in {release_dir}; run generate_assignment first")
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / f"{assignment}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, path in bundle_files(assignment, release_dir).items():
            info = zipfile.ZipInfo.from_file(path, arcname)
            info.compress_type = zipfile.ZIP_DEFLATED
            if arcname.endswith(".sh"):
                info.external_attr = 0o755 << 16
            zf.writestr(info, path.read_bytes())
        # Here, not at the top: cs_lib's package imports torch, a second of every command (the CLI imports this
        # module for BundleError before `grade` can start its warm kernel template).
        from cs_lib.submission_check import make_manifest

        for notebook in sorted(release_dir.glob("*.ipynb")):
            manifest = make_manifest(assignment, json.loads(notebook.read_text(encoding="utf-8")))
            zf.writestr(f"{assignment}/cs_lib/manifests/{notebook.stem}.json", json.dumps(manifest, indent=1))
    try:
        verify_bundle(target)
    except BundleError:
        target.unlink()
        raise
    return target


def verify_bundle(path: Path) -> None:
    """Raise :class:`BundleError` if the zip holds grader files or notebooks with forbidden text."""
    problems = []
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            parts = name.split("/")
            if "autograder" in parts[:-1] or parts[-1] == "gradebook.db":
                problems.append(f"{name}: a grader file")
            if name.endswith(".ipynb"):
                text = zf.read(name).decode("utf-8", errors="replace")
                cells = json.loads(text).get("cells", [])
                source = "\n".join("".join(c.get("source", "")) for c in cells)
                problems += [f"{name}: contains '{m}'" for m in FORBIDDEN_MARKERS if m in source]
    if problems:
        raise BundleError(f"{path.name} would leak grading material:\n  " + "\n  ".join(problems))


def _excluded(rel: Path) -> bool:
    if any(part in ("autograder", "__pycache__", ".ipynb_checkpoints") for part in rel.parts):
        return True
    return any(fnmatch.fnmatch(rel.name.lower(), pattern) for pattern in EXCLUDED_PATTERNS)
