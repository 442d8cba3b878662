"""Keep one submission's kernel from hurting the grading machine: memory, network, stray processes.

- :class:`MemoryWatchdog` polls the resident memory (RSS) of a kernel and of every process
  it started, and kills them all when the sum goes over the limit. ``RLIMIT_AS`` is not
  used: CUDA reserves huge virtual address ranges, so an address-space limit breaks every
  GPU kernel while a resident-memory limit does not. It also watches the kernel's runtime
  folder, the one disk-backed folder the kernel may write (its sockets live there): more than
  a few entries or a megabyte of files there, or any folder, is an attack on the disk, and the
  kernel is killed. It looks at the folder's entries with ``lstat`` only (no link is followed).
- :class:`SandboxedKernelManager` starts kernels behind the prefix of
  :mod:`autograder.execution.sandbox` (no network, no file but its own), or asks the warm kernel
  template for one (:mod:`autograder.execution.warm_kernels`), in the same sandbox. A kernel in its
  own network namespace cannot reach the grader over TCP loopback, so it talks over Unix
  sockets (``transport = "ipc"``) instead. Its clients are :class:`ReadyOnIdleKernelClient` instances.
- :func:`kill_process_tree` ends a process and all its descendants.
"""

from __future__ import annotations

import math
import os
import signal
import stat
import threading
import time
from queue import Empty

import psutil
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from traitlets import Dict, DottedObjectName, List, Type, Unicode

GiB = 1024**3


def parse_size(text: str | float | int) -> int:
    """Bytes in ``"2GiB"``, ``"512MiB"``, ``"4G"``, ``"1.5e9"`` or a number.

    Raises:
        ValueError: on an unknown unit or a non-positive size.
    """
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = text.strip().lower().replace(" ", "")
        units = {"kib": 1024, "mib": 1024**2, "gib": GiB, "tib": 1024**4,
                 "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
                 "k": 1024, "m": 1024**2, "g": GiB, "t": 1024**4, "b": 1}
        for unit, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
            if s.endswith(unit):
                value = float(s[: -len(unit)]) * factor
                break
        else:
            value = float(s)
    if value <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return int(value)


def format_size(n: float) -> str:
    """``2147483648`` -> ``"2.0 GiB"``."""
    for unit, factor in (("GiB", GiB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.2f} {unit}"
    return f"{int(n)} B"


def process_tree_rss(pid: int) -> int:
    """Resident memory in bytes of process ``pid`` plus all its descendants (0 if gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def kill_process_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``pid`` and every descendant, children first; ignore the ones already gone."""
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


class MemoryWatchdog:
    """Kill a kernel (and its children) whose resident memory goes over ``limit_bytes``.

    A daemon thread samples the process tree every ``interval`` seconds. After a kill,
    :attr:`reason` says what happened (the kernel client then sees a dead kernel).

    Args:
        limit_bytes: the resident-memory limit for the whole process tree.
        interval: seconds between samples; memory fills at a few GB/s, so 50 ms lets a
            runaway allocation overshoot the limit by a few hundred MB at most.
    """

    def __init__(self, limit_bytes: int, interval: float = 0.05) -> None:
        self.limit = int(limit_bytes)
        self.interval = interval
        self.peak = 0
        self.reason: str | None = None
        self._pid: int | None = None
        self._folder: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="memory-watchdog", daemon=True)
        self._thread.start()

    def watch(self, pid: int | None, folder: str | None = None) -> None:
        """Watch process ``pid`` (and its runtime ``folder``) from now on (``None``: nothing); clears :attr:`reason`."""
        with self._lock:
            self._pid = pid
            self._folder = folder
            self.reason = None

    def stop(self) -> None:
        """End the sampling thread."""
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                pid = self._pid
            if pid is None:
                continue
            rss = process_tree_rss(pid)
            self.peak = max(self.peak, rss)
            why = None
            if rss > self.limit:
                why = f"memory limit exceeded: the kernel used {format_size(rss)} (limit {format_size(self.limit)})"
            elif self._folder is not None:
                why = folder_abuse(self._folder)
            if why is not None:
                with self._lock:
                    if self._pid != pid:
                        continue
                    self.reason = why
                    self._pid = None
                kill_process_tree(pid)


#: What a kernel's runtime folder may hold: its connection file and a few sockets.
RUNTIME_MAX_ENTRIES = 64
RUNTIME_MAX_BYTES = 1024 * 1024


def folder_abuse(folder: str) -> str | None:
    """Why the kernel's runtime ``folder`` is being abused (too many entries, too many bytes, a folder), or None.

    Reads the entries' own metadata only (``lstat``): a link or FIFO the kernel made is never followed or opened.
    """
    entries, size = 0, 0
    try:
        with os.scandir(folder) as found:
            for entry in found:
                entries += 1
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    return "the kernel made a folder in its runtime folder (only its sockets belong there)"
                size += info.st_size if stat.S_ISREG(info.st_mode) else 0
                if entries > RUNTIME_MAX_ENTRIES or size > RUNTIME_MAX_BYTES:
                    return (f"the kernel wrote more than {RUNTIME_MAX_ENTRIES} files or "
                            f"{format_size(RUNTIME_MAX_BYTES)} to its runtime folder (only its sockets belong there)")
    except OSError:
        return None
    return None


class ReadyOnIdleKernelClient(AsyncKernelClient):
    """jupyter_client's async kernel client, ready as soon as the kernel has answered on both channels.

    jupyter_client's ``wait_for_ready`` sends ``kernel_info`` until the shell channel answers and
    one IOPub message arrives, then drains IOPub until it has been silent for 0.2 s: a fixed 0.2 s
    on every kernel start and restart. This client stops at the kernel's ``idle`` status for the
    request it answered, the last message that request puts on IOPub. It never takes a message
    meant for a cell: none has run yet, and nbclient reads a cell's output by its request's id.
    """

    #: Seconds to wait for the answered request's ``idle`` status before asking again (IOPub may not
    #: have been connected when the kernel published it; jupyter_client waits as long).
    IOPUB_PATIENCE = 0.2

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        """Return once the kernel answers ``kernel_info`` on the shell channel and reports idle on IOPub.

        Raises:
            RuntimeError: the kernel died first, or did not answer within ``timeout`` seconds.
        """
        deadline = time.monotonic() + (math.inf if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if (reply is not None and reply["msg_type"] == "kernel_info_reply"
                    and await self._idle_after(reply["parent_header"].get("msg_id"))):
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

    async def _idle_after(self, request_id: str | None) -> bool:
        """Whether IOPub reports ``idle`` for ``request_id`` within :attr:`IOPUB_PATIENCE` seconds."""
        end = time.monotonic() + self.IOPUB_PATIENCE
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await self.iopub_channel.get_msg(timeout=left)
            except Empty:
                return False
            if (msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"
                    and msg["parent_header"].get("msg_id") == request_id):
                return True
        return False


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel behind :attr:`command_prefix` (e.g. ``unshare --net``).

    With a non-empty prefix the kernel has no network, so the manager switches the
    kernel's sockets to the ``ipc`` transport (Unix domain sockets in the runtime folder).
    """

    command_prefix = List(Unicode(), default_value=[], help="argv put in front of the kernel command").tag(
        config=True)
    client_class = DottedObjectName("autograder.execution.isolation.ReadyOnIdleKernelClient")
    client_factory = Type(ReadyOnIdleKernelClient, klass=AsyncKernelClient)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        if self.command_prefix:
            self.transport = "ipc"

    warm_template = Unicode("", help="socket of the warm kernel template (autograder.execution.warm_kernels); "
                                     "empty: start an interpreter").tag(config=True)
    warm_request = Dict(help="the sandbox part of a warm kernel request (warm_kernels.kernel_request)")

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return [*self.command_prefix, *super().format_kernel_cmd(extra_arguments)]

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: object) -> None:
        """Ask the warm template for the kernel when there is one; start the command (cold) otherwise or if it fails."""
        if self.warm_template and self.warm_request:
            from autograder.execution.warm_kernels import WarmKernel, warm_argv

            argv = warm_argv(kernel_cmd[len(self.command_prefix):])
            if argv is not None:
                try:
                    env = {**(kw.get("env") or {}), "JPY_PARENT_PID": str(os.getpid())}  # as jupyter_client sets
                    process = WarmKernel(self.warm_template, {**self.warm_request, "env": env, "argv": argv})
                except OSError as exc:
                    self.log.warning("kernel started cold: %s", exc)
                else:
                    provisioner = self.provisioner
                    assert provisioner is not None
                    provisioner.process = process
                    provisioner.pid, provisioner.pgid, provisioner.cwd = process.pid, None, kw.get("cwd")
                    self._reconcile_connection_info(provisioner.connection_info)
                    return
        await super()._async_launch_kernel(kernel_cmd, **kw)


def exit_description(returncode: int | None) -> str:
    """Say how a process ended: ``-11`` -> ``"the kernel crashed (signal SIGSEGV ...)"``."""
    if returncode is None:
        return "the kernel stopped responding"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = {"SIGSEGV": " (segmentation fault)", "SIGKILL": " (killed)", "SIGABRT": " (abort)",
                "SIGBUS": " (bus error)"}.get(name, "")
        return f"the kernel crashed with {name}{hint}"
    return f"the kernel process exited with code {returncode} (os._exit, exit() or a fatal error)"
