"""The kernel's sandbox: from inside it, no secret can be opened, listed or imported.

A process started behind :func:`autograder.execution.sandbox.kernel_prefix`, as the grader starts
kernels, tries every way we know to reach the source notebooks, ``autograder/`` (judge, specs, stored
references), a gradebook and another student's files, and reports what it reached. It keeps ``cs_lib``
and torch, and can write its own scratch folders only: nothing it writes reaches the grader's folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import REPO_ROOT
from autograder.execution import sandbox

PROBE = r'''
import json, os, sys, importlib
secrets = json.loads(sys.argv[1])
reached = []
for path in secrets["files"]:
    for how in ("open", "listdir", "stat"):
        try:
            if how == "open":
                open(path, "rb").read(1)
            elif how == "listdir":
                os.listdir(os.path.dirname(path))
                if os.path.basename(path) not in os.listdir(os.path.dirname(path)):
                    continue
            else:
                os.stat(path)
            reached.append(f"{how} {path}")
        except OSError:
            pass
for module in ("autograder", "autograder.judging.solutions", "autograder.specs.example"):
    try:
        importlib.import_module(module)
        reached.append(f"import {module}")
    except ImportError:
        pass
for pid in ("1", "self"):
    try:
        os.listdir(f"/proc/{pid}/root" + secrets["repo"])
        if "autograder" in os.listdir(f"/proc/{pid}/root" + secrets["repo"]):
            reached.append(f"/proc/{pid}/root")
    except OSError:
        pass
try:
    open(os.path.join(os.path.dirname(os.__file__), "dlcv_sandbox_probe.txt"), "w")
    reached.append("write into the Python installation")
except OSError:
    pass
import cs_lib, torch
open("own_file.txt", "w").write("ok")
seeded = open("data.txt").read()
leaks = sorted(k for k, v in os.environ.items() if secrets["repo"] in v or secrets["course"] in v)
import glob, site
texts = {"/proc/self/mountinfo": open("/proc/self/mountinfo").read()}
for folder in site.getsitepackages():
    for path in [*glob.glob(folder + "/*.pth"), *glob.glob(folder + "/__editable__*"),
                 *glob.glob(folder + "/*.dist-info/direct_url.json")]:
        texts[path] = open(path, errors="replace").read()
leaks += sorted(path for path, text in texts.items() if secrets["repo"] in text or secrets["course"] in text)
print(json.dumps({"reached": reached, "cs_lib": cs_lib.__file__, "cwd": os.getcwd(), "uid": os.getuid(),
                  "seeded": seeded, "leaks": leaks, "own": open("own_file.txt").read()}))
'''


@pytest.fixture(scope="module")
def plan() -> sandbox.SandboxPlan:
    found = sandbox.plan(files=True, network=True)
    if not found.files_isolated:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the sandbox tests: {found.note}")
        pytest.skip(found.note)
    return found


def test_kernel_sandbox_hides_every_secret_path(plan: sandbox.SandboxPlan, tmp_path: Path) -> None:
    # The layout of one grading job: a temporary course whose gradebook sits above the kernel's folder,
    # and another student's submission and feedback beside it.
    course = tmp_path / "course"
    workdir = course / "autograded" / "alice" / "example"
    workdir.mkdir(parents=True)
    (course / "gradebook.db").write_text("secret")
    other = course / "submitted" / "bob" / "example" / "example.ipynb"
    other.parent.mkdir(parents=True)
    other.write_text("bob's answers")
    feedback = course / "feedback" / "bob" / "example" / "example.html"
    feedback.parent.mkdir(parents=True)
    feedback.write_text("bob's feedback")
    (workdir / "data.txt").write_text("the assignment's file")
    runtime = tmp_path / "rt"
    runtime.mkdir()
    secrets = {"repo": str(REPO_ROOT), "course": str(course), "files": [
        *(str(p) for p in sorted((REPO_ROOT / "assignments" / "source").rglob("*.ipynb"))),
        str(REPO_ROOT / "autograder" / "judging" / "judge.py"),
        str(REPO_ROOT / "autograder" / "judging" / "solutions.py"),
        str(REPO_ROOT / "autograder" / "specs" / "example.py"),
        str(REPO_ROOT / "autograder" / "references" / "example.pt"),
        str(course / "gradebook.db"), str(other), str(feedback),
    ]}
    box = sandbox.KernelBox(uid=sandbox.kernel_uid(), seed=str(workdir))
    prefix = sandbox.kernel_prefix(plan, [str(runtime)], box)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": sandbox.KIT_DIR}
    proc = subprocess.run([*prefix, sys.executable, "-c", PROBE, json.dumps(secrets)], cwd="/", env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["reached"] == [], report["reached"]
    assert report["cs_lib"] == f"{sandbox.KIT_DIR}/cs_lib/__init__.py"  # no path that names the checkout
    assert report["leaks"] == []
    assert report["cwd"] == sandbox.WORK_DIR
    assert report["seeded"] == "the assignment's file"  # the grader's copy of the assignment's files
    assert report["own"] == "ok"  # its own scratch folder is writable ...
    assert not (workdir / "own_file.txt").exists()  # ... and nothing it writes reaches the grader's folder
    if os.geteuid() == 0:
        assert report["uid"] == sandbox.kernel_uid() != 0  # never root, even when the grader is


def test_read_only_paths_never_expose_the_repository() -> None:
    repo = REPO_ROOT.resolve()
    for path in map(Path, sandbox.read_only_paths()):
        assert not repo.is_relative_to(path), f"{path} holds the repository"
        assert not path.is_relative_to(repo), path


def test_without_a_sandbox_the_plan_says_why_and_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.plan.cache_clear()
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    try:
        found = sandbox.plan(files=True, network=True)
    finally:
        sandbox.plan.cache_clear()
    assert not found.files_isolated and found.prefix == ()
    assert "--allow-unsandboxed" in found.note and "unshare" in found.note
