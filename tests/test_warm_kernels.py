"""Warm kernels (autograder.execution.warm_kernels): forked from a template, yet sandboxed like a cold kernel.

Every batch test that calls ``grade`` (the attack, hardening, accident, policy and corpus batches) grades
with warm kernels, and ``test_grading_commands`` checks their ``grades.csv`` against plain nbgrader's; the
executor tests start cold kernels. This module checks what only the warm path could get wrong: the kernel's
view, its privileges, what it inherits from the template, and that it never outlives its grading process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from autograder import REPO_ROOT
from autograder.execution import sandbox, warm_kernels
from autograder.execution.executor import take_report
from tests.test_grading_executor import _execute, _text
from tests.test_sandbox import PROBE

pytestmark = pytest.mark.notebook

#: What a warm kernel reports about itself, besides test_sandbox's probe.
SELF_REPORT = r'''
import json, os, random, socket, sys
import numpy
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
repo = REPO
named = sorted(n for n, m in list(sys.modules.items()) if repo in str(getattr(m, "__file__", "") or ""))
finders = sorted(type(f).__module__ for f in sys.meta_path if "editable" in type(f).__module__)
print(json.dumps({"caps": {k: int(status[k].strip(), 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
                  "no_new_privs": status["NoNewPrivs"].strip(), "pid": os.getpid(), "host": socket.gethostname(),
                  "named": named, "finders": finders, "path": [p for p in sys.path if repo in p],
                  "random": [random.random(), float(numpy.random.rand())], "uid": os.getuid()}))
'''


@pytest.fixture(scope="module")
def template():
    why = warm_kernels.unavailable_reason(sandbox.plan(files=True, network=True).files_isolated)
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the warm kernel tests: {why}")
        pytest.skip(why)
    started = warm_kernels.start_template()
    assert started is not None, "the kernel template did not start"
    yield started
    started.close()


def _report(cell: nbformat.NotebookNode) -> dict:
    return json.loads(_text(cell).strip().splitlines()[-1])


def _warm(tmp_path: Path, cells: list[str], monkeypatch: pytest.MonkeyPatch, socket_path: str) -> tuple:
    nb, step = _execute(tmp_path, cells, monkeypatch, kernel_template=socket_path, report_key=str(tmp_path))
    return nb, take_report(str(tmp_path))


def test_a_warm_kernel_sees_and_holds_what_a_cold_kernel_does(template, tmp_path: Path, monkeypatch) -> None:
    course = tmp_path / "course"
    (course / "gradebook.db").parent.mkdir(parents=True)
    (course / "gradebook.db").write_text("secret")
    (tmp_path / "data.txt").write_text("the assignment's file")  # the notebook's folder: the kernel's seed
    grader = REPO_ROOT / "autograder"
    secrets = {"repo": str(REPO_ROOT), "course": str(course), "files": [
        str(grader / "judging" / "solutions.py"), str(grader / "specs" / "example.py"),
        str(grader / "references" / "example.pt"), str(course / "gradebook.db"), template.socket_path]}
    probe = f"import sys\nsys.argv = ['probe', {json.dumps(secrets)!r}]\nexec(compile({PROBE!r}, 'probe', 'exec'))"
    nb, report = _warm(tmp_path, [probe, SELF_REPORT.replace("REPO", repr(str(REPO_ROOT)))], monkeypatch,
                       template.socket_path)
    assert report["warm_starts"] == 1, "the kernel did not come from the template"
    seen, own = _report(nb.cells[0]), _report(nb.cells[1])
    assert seen["reached"] == [] and seen["leaks"] == []  # no secret, not even the template's socket
    assert seen["cs_lib"] == f"{sandbox.KIT_DIR}/cs_lib/__init__.py" and seen["cwd"] == sandbox.WORK_DIR
    assert seen["seeded"] == "the assignment's file" and seen["own"] == "ok"
    assert not (tmp_path / "own_file.txt").exists()
    assert own["uid"] == sandbox.kernel_uid() != 0
    assert own["caps"] == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), 0)
    assert own["no_new_privs"] == "1" and own["pid"] == 1 and own["host"] == "sandbox"
    # Nothing the template imported names the checkout: no module file, no editable finder, no sys.path entry.
    assert own["named"] == [] and own["finders"] == [] and own["path"] == []


def test_two_warm_kernels_share_no_state(template, tmp_path: Path, monkeypatch) -> None:
    cells = ["import torch, random\nprint(hasattr(torch, 'left_behind'))\ntorch.left_behind = 1",
             SELF_REPORT.replace("REPO", repr(str(REPO_ROOT)))]
    first, _ = _warm(tmp_path / "a", cells, monkeypatch, template.socket_path)
    second, _ = _warm(tmp_path / "b", cells, monkeypatch, template.socket_path)
    assert _text(first.cells[0]) == _text(second.cells[0]) == "False\n"  # a module changed in one is not the other's
    assert _report(first.cells[1])["random"] != _report(second.cells[1])["random"]  # reseeded per kernel


@pytest.mark.parametrize("how", ["connection closed", "keeper killed"])
def test_a_warm_kernel_never_outlives_its_keeper_or_its_grading_process(template, tmp_path: Path, how: str) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir()
    plan = sandbox.plan(files=True, network=True)
    uid = sandbox.kernel_uid()
    request = warm_kernels.kernel_request(plan, [str(runtime)], sandbox.KernelBox(uid=uid))
    connection, _ = write_connection_file(str(runtime / "kernel.json"), transport="ipc", ip=str(runtime / "kernel"))
    env = {"PATH": "/usr/bin:/bin", "HOME": sandbox.WORK_DIR, "PYTHONPATH": sandbox.KIT_DIR}
    kernel = warm_kernels.WarmKernel(template.socket_path, {**request, "env": env, "argv": ["-f", connection]})
    client = BlockingKernelClient(connection_file=connection)
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)  # running, past the privilege drop (which clears PR_SET_PDEATHSIG)
    finally:
        client.stop_channels()
    assert psutil.Process(kernel.kernel_pid).uids().real == uid
    if how == "connection closed":
        kernel._conn.close()  # what the connection does when the grading process dies
    else:
        kernel.kill()  # what jupyter_client's shutdown does: the keeper goes, and the kernel with it
    deadline = time.monotonic() + 10
    while psutil.pid_exists(kernel.kernel_pid) and time.monotonic() < deadline:
        if psutil.Process(kernel.kernel_pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.05)
    assert not psutil.pid_exists(kernel.kernel_pid) or \
        psutil.Process(kernel.kernel_pid).status() == psutil.STATUS_ZOMBIE


def test_the_template_dies_with_the_grader(tmp_path: Path) -> None:
    if warm_kernels.unavailable_reason(sandbox.plan(files=True, network=True).files_isolated):
        pytest.skip("no warm kernels here")
    code = ("from autograder.execution import warm_kernels\nimport time\nt = warm_kernels.start_template()\n"
            "print(t.process.pid, t.folder, flush=True)\ntime.sleep(600)")
    grader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    pid, folder = grader.stdout.readline().split()
    try:
        assert psutil.pid_exists(int(pid))
        grader.kill()  # no clean-up runs: the template must go by itself
        grader.wait()
        deadline = time.monotonic() + 10
        while psutil.pid_exists(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not psutil.pid_exists(int(pid))
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # what the killed grader could not remove


def test_an_unreachable_template_means_a_cold_kernel_not_a_lost_grade(tmp_path: Path, monkeypatch) -> None:
    nb, report = _warm(tmp_path, ["print(6 * 7)"], monkeypatch, str(tmp_path / "no-template.sock"))
    assert _text(nb.cells[0]) == "42\n" and report["warm_starts"] == 0


def test_a_template_that_cannot_start_says_why(monkeypatch) -> None:
    if warm_kernels.unavailable_reason(sandbox.plan(files=True, network=True).files_isolated):
        pytest.skip("no warm kernels here")
    monkeypatch.setattr(warm_kernels, "PRELOAD", ("torch", "no_such_module_dlcv"))
    broken = warm_kernels.launch_template()
    assert broken is not None and not broken.ready(timeout=120)
    assert "No module named 'no_such_module_dlcv'" in broken.failure
    assert not Path(broken.folder).exists()  # closed: nothing left in /tmp
