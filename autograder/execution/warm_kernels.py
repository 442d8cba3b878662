"""Warm kernels: torch is imported once per grading run, and every kernel is still a fresh sandboxed process.

A kernel that starts from nothing spends two to three seconds of CPU importing torch and torchvision
before it runs a student's first line: on 2 cores, a third of a submission's grading time.
:func:`start_template` starts the program in :mod:`autograder.execution.kernel_template` once per run
(before any submission is read); the executor then asks it for each kernel (:class:`WarmKernel`) instead
of starting an interpreter. The template forks the kernel, which enters the same sandbox as a cold kernel
(``sandbox.sh`` builds its file system), drops the same privileges and gets the same environment; read
that module's docstring for what the template holds and why no kernel can reach it or another kernel.

Where the template cannot run (not root, no sandbox, ``--cold-kernels``), or if it fails, kernels start
cold as before: the two paths give the same grades (``tests/test_warm_kernels.py``).
"""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.execution import kernel_template, sandbox
from autograder.execution.kernel_template import receive_message, send_message

#: What the template imports before serving: the libraries every notebook imports first.
PRELOAD = ("torch", "torchvision", "ipykernel.kernelapp")
#: Seconds the template may take to import them and say it is ready.
START_TIMEOUT = 180.0
#: Seconds a kernel request may take to be answered.
REQUEST_TIMEOUT = 60.0
#: The template's stderr, in its folder (only root can read it; no kernel sees the folder).
LOG = "template.log"


@dataclass
class KernelTemplate:
    """A running template: the socket to ask it for kernels on, and its process."""

    socket_path: str
    process: subprocess.Popen
    folder: str
    _ready: bool = False
    #: Why it did not become ready (the end of its log), once :meth:`ready` returned False.
    failure: str = ""

    def ready(self, timeout: float = START_TIMEOUT) -> bool:
        """Wait until the template says it is ready; False (and stopped) if it exits or times out first."""
        if self._ready:
            return True
        out = self.process.stdout
        deadline = time.monotonic() + timeout
        while out is not None and time.monotonic() < deadline:
            readable, _, _ = select.select([out], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                break
            line = out.readline()
            if line.strip() == b"ready":
                out.close()
                self._ready = True
                return True
            if not line:  # it exited
                break
        log = Path(self.folder, LOG)
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        self.failure = " / ".join(tail) or ("it exited" if self.process.poll() is not None
                                            else f"not ready within {timeout:g} s")
        self.close()
        return False

    def close(self) -> None:
        """Stop the template (its keepers and their kernels die with it) and remove its folder."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def unavailable_reason(files_isolated: bool) -> str | None:
    """Why kernels cannot start warm here (None: they can): they need the sandbox, as root, on Linux."""
    if not files_isolated:
        return "kernels are not sandboxed"
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "warm kernels need the grader to run as root on Linux (each kernel gets a uid of its own)"
    if not shutil.which("unshare"):
        return "unshare is missing"
    return None


def launch_template() -> KernelTemplate | None:
    """Start the kernel template (it imports for a few seconds: :meth:`KernelTemplate.ready` waits for it).

    None where it cannot run here (:func:`unavailable_reason`). The template runs as ``python -c
    <kernel_template's text>`` with a minimal environment, in a mount namespace of its own where
    :func:`~autograder.execution.sandbox.naming_the_checkout`'s files are empty (so that no path of the
    checkout is ever imported into it), and dies with this process.
    """
    if unavailable_reason(files_isolated=True) is not None:
        return None
    folder = tempfile.mkdtemp(prefix="dlcv-template-")  # 0700: only root reaches the socket
    empty = os.path.join(folder, "empty")
    Path(empty).touch()
    masks = "".join(f"mount --bind {shlex.quote(empty)} {shlex.quote(path)} && "
                    for path in sandbox.naming_the_checkout())
    config = {"parent": os.getpid(), "socket": os.path.join(folder, "template.sock"), "preload": list(PRELOAD)}
    source = Path(kernel_template.__file__).read_text(encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "LC_CTYPE", "TZ")}
    env.update(PATH=os.environ.get("PATH", "/usr/bin:/bin"), HOME=folder, PYTHONDONTWRITEBYTECODE="1",
               PYTHONNOUSERSITE="1", PYTHONWARNINGS=os.environ.get("PYTHONWARNINGS", "ignore"))
    cmd = [shutil.which("unshare") or "unshare", "--mount", "--propagation", "private", "sh", "-c",
           masks + 'exec "$@"', "sh", sys.executable, "-c", source, json.dumps(config)]
    with open(os.path.join(folder, LOG), "wb") as log:  # its own errors and its keepers' (never a kernel's)
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, cwd="/",
                                   env=env, start_new_session=True)
    return KernelTemplate(config["socket"], process, folder)


def start_template(timeout: float = START_TIMEOUT) -> KernelTemplate | None:
    """:func:`launch_template` and wait until it is ready; None if it cannot run or did not start."""
    template = launch_template()
    return template if template is not None and template.ready(timeout) else None


class WarmKernel:
    """A kernel forked by the template, with the part of :class:`subprocess.Popen` that jupyter_client uses.

    ``pid`` is the kernel's keeper (outside the kernel's PID namespace; killing it kills the kernel),
    ``kernel_pid`` the kernel itself as this machine sees it. Signals go through a pidfd of the keeper, so a
    recycled pid is never signalled. The exit status arrives over the connection; a keeper killed before it
    could send one reads as killed (``-9``).

    Raises:
        OSError: the template cannot be reached or refused the request.
    """

    stdin = stdout = stderr = None

    def __init__(self, socket_path: str, request: dict[str, Any]) -> None:
        self.returncode: int | None = None
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._pidfd: int | None = None
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            self._conn.settimeout(REQUEST_TIMEOUT)
            self._conn.connect(socket_path)
            send_message(self._conn, request, [null, 1, 2])  # what a cold kernel inherits
            reply, fds = receive_message(self._conn, max_fds=1)
        except (OSError, ValueError) as exc:
            self._conn.close()
            raise OSError(f"the kernel template did not answer: {exc}") from exc
        finally:
            os.close(null)
        if reply is None or "pid" not in reply or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            self._conn.close()
            raise OSError("the kernel template refused the request")
        self.pid = int(reply["pid"])
        self.kernel_pid = int(reply["kernel_pid"])
        self._pidfd = fds[0]

    def poll(self) -> int | None:
        """The exit status once the kernel has ended, else None."""
        if self.returncode is None and self._conn.fileno() >= 0:
            readable, _, _ = select.select([self._conn], [], [], 0)
            if readable:
                self._conn.settimeout(REQUEST_TIMEOUT)
                try:
                    message, _ = receive_message(self._conn)
                except (OSError, ValueError):
                    message = None
                self.returncode = int(message["exit"]) if message and "exit" in message else -signal.SIGKILL
                self._close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end; :class:`subprocess.TimeoutExpired` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(["kernel"], timeout or 0)
            select.select([self._conn], [], [], 0.05)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Signal the keeper (``SIGKILL`` or ``SIGTERM`` end the kernel with it); nothing once it ended."""
        if self.poll() is None and self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _close(self) -> None:
        self._conn.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def warm_argv(command: list[str]) -> list[str] | None:
    """The kernel's own arguments in ``command`` (``python -m ipykernel_launcher ARGS``), or None when the
    kernel spec asks for something the template cannot be (another interpreter, another kernel)."""
    if len(command) < 3 or command[1:3] != ["-m", "ipykernel_launcher"]:
        return None
    python = shutil.which(command[0]) or command[0]
    return command[3:] if os.path.realpath(python) == os.path.realpath(sys.executable) else None


def kernel_request(plan: sandbox.SandboxPlan, writable: list[str], box: sandbox.KernelBox) -> dict[str, Any]:
    """The sandbox part of a request to the template (the manager adds the kernel's environment and argv)."""
    settings, paths = sandbox.sandbox_arguments(writable, box)
    return {"script": str(sandbox.SCRIPT), "paths": paths, "settings": settings, "network": plan.network_isolated,
            "cwd": sandbox.WORK_DIR}
