"""A student's whole path, replayed as written: bundle, the README's Colab cell, setup, notebook, check, grade.

For every assignment, from the zip that ``build_bundle`` writes:

1. a fresh folder stands for Colab's ``/content``, and a fresh virtual environment holds only what
   Colab preinstalls (torch, torchvision, numpy, matplotlib, scikit-learn, scikit-image, ipykernel):
   ``python -m venv`` plus symbolic links to exactly those distributions and their dependencies in
   the project's environment (building torch from PyPI would take minutes and gigabytes). The test
   proves that nbgrader, captum, pytorch-metric-learning, pycocotools, cs_lib and autograder are
   not importable there before the setup;
2. the lines of the README's student cell, read from README.md (the block after the
   ``student-colab-cell`` marker), run with ``!`` stripped, ``/content`` replaced by the fresh folder
   and the example assignment's name by this one's. ``setup_colab.sh`` installs
   ``requirements-student.txt`` with pip from a local wheelhouse (the project's installed
   distributions repacked as wheels: no index, no network), and its downloads fail as offline
   ones do (every proxy points at a closed local port): they must end in the documented message,
   never a traceback;
3. the release notebook, with the reference answers typed into its answer cells
   (``correct_submission``), runs in a kernel of that environment started where Colab starts it
   (the ``/content`` stand-in), in grading mode (``DLCV_GRADING=1``: the demos' budgets shrink as
   they do while grading; a full run of every notebook takes an hour on two CPU cores), and is saved;
4. ``python -m cs_lib.submission_check --fast`` says it is gradable, and
   ``python -m autograder grade`` gives it every autograded point.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
import zipfile
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from autograder import REPO_ROOT, source_notebook
from autograder.batch.samples import correct_submission
from autograder.execution.nbgrader_run import kit_environment
from autograder.notebook_format import is_test_cell, nbgrader_meta
from autograder.releasing.bundle import build_bundle
from autograder.releasing.course import generate_assignment, make_course_dir
from tests.nbutil import graded_points

pytestmark = pytest.mark.notebook

ASSIGNMENTS = sorted(p.name for p in (REPO_ROOT / "assignments" / "source").iterdir()
                     if (p / f"{p.name}.ipynb").exists())
#: What Colab preinstalls (and the test's environment holds, with their dependencies).
COLAB_PREINSTALLED = ("torch", "torchvision", "numpy", "matplotlib", "scikit-learn", "scikit-image", "ipykernel")
#: Importable in the project's environment, and must not be in the fresh one before the setup.
NOT_ON_COLAB = ("nbgrader", "captum", "pytorch_metric_learning", "pycocotools", "cs_lib", "autograder")
#: The README's example assignment, replaced by each assignment's name.
README_EXAMPLE = "network_visualization"
CELL_MARKER = "<!-- student-colab-cell:"


def readme_colab_cell() -> list[str]:
    """The shell lines of the README's student cell, ``!`` stripped, as the README writes them."""
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index(CELL_MARKER)
    block = re.search(r"```[^\n]*\n(.*?)```", text[start:], re.DOTALL)
    assert block, "README.md: no fenced block after the student-colab-cell marker"
    lines = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert lines and all(line.startswith("!") for line in lines), f"README's Colab cell is not all shell: {lines}"
    return [line[1:] for line in lines]


def local_links(notebook: Path) -> list[str]:
    """Relative links and pictures in a notebook's markdown (``[..](x)``, ``![..](x)``, ``<img src="x">``)."""
    links = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "markdown":
            found = re.findall(r"\]\(([^)\s]+)\)", cell.source)
            found += re.findall(r"<img[^>]*src=[\"']([^\"']+)", cell.source)
            links += [link.split("#")[0] for link in found if not re.match(r"^[a-z]+:|^#", link)]
    return [link for link in links if link]


# -- the Colab stand-in environment ------------------------------------------------------------


def _closure(roots: list[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``roots`` need, recursively, by canonical name.

    A requirement's extras are followed (torch needs ``cuda-toolkit[cudart, ...]``); a
    distribution's own optional extras are not.
    """
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo = [(name, "") for name in roots]
    while todo:
        name, extra = todo.pop()
        name = canonicalize_name(name)
        if (name, extra) in done:
            continue
        done.add((name, extra))
        try:
            dist = found.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency for another platform or Python
        found[name] = dist
        for requirement in map(Requirement, dist.requires or []):
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                todo += [(requirement.name, e) for e in ("", *requirement.extras)]
    return found


def _top_level(dist: metadata.Distribution) -> set[str]:
    """The names ``dist`` puts directly in site-packages (packages, modules, its .dist-info)."""
    assert dist.files is not None, f"{dist.metadata['Name']} has no RECORD"
    return {f.parts[0] for f in dist.files if f.parts[0] != ".." and f.parts[0] != "__pycache__"}


def _repack_as_wheel(dist: metadata.Distribution, wheelhouse: Path) -> Path:
    """An installed distribution written back as a wheel (its RECORD's files, a fresh RECORD)."""
    site = Path(str(dist.locate_file("")))
    files = [f for f in dist.files or [] if f.parts[0] != ".." and "__pycache__" not in f.parts]
    info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    tag = next(line.split(":", 1)[1].strip() for line in dist.read_text("WHEEL").splitlines()
               if line.startswith("Tag:"))
    target = wheelhouse / f"{info.removesuffix('.dist-info')}-{tag}.whl"
    record = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as whl:
        for f in files:
            if f.parts[0] == info and f.name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
                continue
            data = (site / f).read_bytes()
            whl.writestr(f.as_posix(), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{f.as_posix()},sha256={digest},{len(data)}")
        whl.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return target


@pytest.fixture(scope="module")
def colab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A venv holding only Colab's preinstalled packages, a wheelhouse for the student requirements, a kernelspec."""
    root = tmp_path_factory.mktemp("colab")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    preinstalled = _closure(list(COLAB_PREINSTALLED))
    for dist in preinstalled.values():
        assert Path(str(dist.locate_file(""))) == ours, f"{dist.metadata['Name']} is not in {ours}"
        for name in _top_level(dist):
            if not (site / name).exists():
                (site / name).symlink_to(ours / name)
    wheelhouse = root / "wheelhouse"
    wheelhouse.mkdir()
    wanted = [Requirement(line).name for line in (REPO_ROOT / "requirements-student.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    extra = {name: dist for name, dist in _closure(wanted).items() if name not in preinstalled}
    for dist in extra.values():
        _repack_as_wheel(dist, wheelhouse)
    kernels = root / "jupyter" / "kernels" / "colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab stand-in", "language": "python"}))
    return {"root": root, "venv": venv, "python": python, "wheelhouse": wheelhouse, "jupyter": root / "jupyter"}


def _student_env(colab: dict[str, Path], home: Path) -> dict[str, str]:
    """The environment of a Colab cell: the fresh venv first, no project paths, no network, no grading flags.

    pip reads no configuration file (this machine's pins and indexes are not Colab's) and installs
    only from the wheelhouse.
    """
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TERM")
    env = {k: v for k, v in os.environ.items() if k in keep}
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens, so every download fails at once
    env.update({"PATH": f"{colab['venv'] / 'bin'}:/usr/bin:/bin", "VIRTUAL_ENV": str(colab["venv"]),
                "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(colab["wheelhouse"]), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_NO_CACHE_DIR": "1", "PIP_CONFIG_FILE": os.devnull,
                "http_proxy": closed, "https_proxy": closed, "HTTP_PROXY": closed, "HTTPS_PROXY": closed,
                "no_proxy": "", "NO_PROXY": "", "TORCH_HOME": str(home / "torch"),
                "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"})
    return env


def test_the_colab_stand_in_holds_only_what_colab_preinstalls(colab: dict[str, Path], tmp_path: Path) -> None:
    probe = ("import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not None "
             f"for m in {list(NOT_ON_COLAB) + ['torch', 'torchvision', 'sklearn', 'skimage', 'ipykernel']}}}))")
    out = subprocess.run([str(colab["python"]), "-c", probe], cwd=tmp_path, env=_student_env(colab, tmp_path),
                         check=True, capture_output=True, text=True, timeout=120).stdout
    found = json.loads(out)
    assert [m for m in NOT_ON_COLAB if found[m]] == [], "the Colab stand-in must not hold these before the setup"
    assert all(found[m] for m in ("torch", "torchvision", "sklearn", "skimage", "ipykernel")), found


# -- the path, per assignment ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``dist/<assignment>.zip`` for every assignment, built as ``python -m autograder release`` builds it."""
    work = tmp_path_factory.mktemp("release")
    course = make_course_dir(work / "course", ASSIGNMENTS)
    return {a: build_bundle(a, generate_assignment(course, a), work / "dist") for a in ASSIGNMENTS}


def _points(nb: nbformat.NotebookNode) -> float:
    return sum(float(nbgrader_meta(c).get("points", 0)) for c in nb.cells if is_test_cell(c))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_path_from_bundle_to_full_marks(assignment: str, colab: dict[str, Path], bundles: dict[str, Path],
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    timings: dict[str, float] = {}
    content = tmp_path / "content"
    content.mkdir()
    (content / f"{assignment}.zip").write_bytes(bundles[assignment].read_bytes())  # uploaded to the Files pane
    env = _student_env(colab, tmp_path)

    # The README's cell, as written there.
    start = time.perf_counter()
    log = ""
    for line in readme_colab_cell():
        command = line.replace("/content", str(content)).replace(README_EXAMPLE, assignment)
        proc = subprocess.run(command, shell=True, cwd=content, env=env, capture_output=True, text=True, timeout=600)
        log += proc.stdout + proc.stderr
        assert proc.returncode == 0, f"README cell line `{line}` failed:\n{log[-3000:]}"
    timings["README cell + setup_colab.sh"] = time.perf_counter() - start
    assert "Traceback" not in log, log[-3000:]
    assert f"Ready: the bundle is in {content / assignment}" in log, log[-3000:]
    if "download.py" in (content / assignment / "setup_colab.sh").read_text() and "could not get" in log:
        assert "some files could not be downloaded" in log and "You seem to be offline" in log, log[-3000:]
    bundle = content / assignment
    assert (bundle / "cs_lib" / "manifests" / f"{assignment}.json").is_file()
    assert [link for link in local_links(bundle / f"{assignment}.ipynb") if not (bundle / link).exists()] == [], \
        "the release notebook links to files the bundle does not ship"

    # The notebook, answered with the reference solutions, run where Colab runs it.
    release = nbformat.read(bundle / f"{assignment}.ipynb", as_version=4)
    answered = correct_submission(nbformat.read(source_notebook(assignment), as_version=4), release)
    answered.metadata["kernelspec"] = {"name": "colab", "display_name": "Colab stand-in", "language": "python"}
    monkeypatch.setenv("JUPYTER_PATH", str(colab["jupyter"]))
    start = time.perf_counter()
    client = NotebookClient(answered, timeout=900, kernel_name="colab", resources={"metadata": {"path": str(content)}})
    client.execute(env={**env, "DLCV_GRADING": "1"})
    timings["notebook (grading mode)"] = time.perf_counter() - start
    first = next(c for c in answered.cells if c.cell_type == "code")
    printed = "".join(o.get("text", "") for o in first.outputs if o.get("output_type") == "stream")
    assert f"Working in {bundle}" in printed, "the first cell should have found cs_lib in /content/<assignment>"
    saved = bundle / f"{assignment}.ipynb"
    nbformat.write(answered, saved)

    check = subprocess.run([str(colab["python"]), "-m", "cs_lib.submission_check", saved.name, "--fast"], cwd=bundle,
                           env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and "GRADABLE" in check.stdout, check.stdout + check.stderr

    # Graded as the course staff grade it.
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    (submissions / f"student_{assignment}.ipynb").write_bytes(saved.read_bytes())
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(submissions), "--assignment", assignment,
                           "--out", str(tmp_path / "out"), "--jobs", "1", "--no-feedback", "--quiet"],
                          cwd=REPO_ROOT, env=kit_environment(), capture_output=True, text=True, timeout=1200)
    timings["grade"] = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    with open(tmp_path / "out" / "tests.csv") as f:
        tests = list(csv.DictReader(f))
    autograded = {nbgrader_meta(c)["grade_id"] for c in release.cells if is_test_cell(c)}
    assert {t["grade_id"] for t in tests if t["grade_id"] in autograded} == autograded, tests
    assert [t for t in tests if t["grade_id"] in autograded and t["status"] != "passed"] == [], tests
    with open(tmp_path / "out" / "grades.csv") as f:
        (grades,) = list(csv.DictReader(f))
    assert float(grades["score"]) == pytest.approx(_points(release)), grades
    print(f"{assignment}: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))


def test_full_submission_check_runs_the_visible_checks(colab: dict[str, Path], bundles: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """Without --fast the check reruns the notebook: the reference passes; a stub fails its visible check."""
    with zipfile.ZipFile(bundles["example"]) as zf:
        zf.extractall(tmp_path)
    bundle = tmp_path / "example"
    subprocess.run([str(colab["python"]), "-m", "pip", "install", "-q", "-r", "requirements-student.txt"],
                   cwd=bundle, env=_student_env(colab, tmp_path), check=True, timeout=300)
    release = nbformat.read(bundle / "example.ipynb", as_version=4)
    nbformat.write(correct_submission(nbformat.read(source_notebook("example"), as_version=4), release),
                   bundle / "answered.ipynb")
    env = _student_env(colab, tmp_path)
    ok = subprocess.run([str(colab["python"]), "-m", "cs_lib.submission_check", "answered.ipynb"], cwd=bundle,
                        env=env, capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    checks = len(graded_points("example"))  # one visible check per test cell
    assert "GRADABLE" in ok.stdout and f"VISIBLE CHECKS: all {checks} passed" in ok.stdout, ok.stdout
    blank = subprocess.run([str(colab["python"]), "-m", "cs_lib.submission_check", "example.ipynb"], cwd=bundle,
                           env=env, capture_output=True, text=True, timeout=600)
    assert blank.returncode == 1, blank.stdout
    assert "test_softmax: NotImplementedError" in blank.stdout and "still raises NotImplementedError" in blank.stdout
