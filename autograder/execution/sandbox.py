"""The kernel's view of the machine: its own folder and the Python environment, and no secret.

A student's code runs in the kernel, so the kernel must not be able to read anything that would
give away a grade: the source notebooks (solutions and hidden tests), ``autograder/`` (the judge,
the specs, the stored references), the gradebook, and other students' submissions and feedback.
:func:`plan` finds out once per process whether this machine can start a kernel in a sandbox that
shows it only:

- read-only: the system folders (``/usr``, ``/etc``, ...), the Python installation and every
  ``sys.path`` folder outside the repository, the repository's ``cs_lib`` (nothing else of it),
  and the torch hub and kit data caches (weights, datasets);
- writable: the kernel's working folder (the notebook's folder in the submission's temporary
  course) and the kernel's runtime folder (its Unix sockets, and the judge's);
- a private ``/tmp`` and ``/dev/shm``, a few device nodes (``/dev/null``, ``/dev/urandom``, the GPU's),
  and a ``/proc`` of its own PID namespace (so ``/proc/<pid>/root`` of the grader is out of reach).

It is built with Linux namespaces: ``unshare --mount --pid --fork`` (plus ``--net`` for no network,
plus ``--user --map-root-user`` when not root), then ``sandbox.sh`` bind-mounts the allowed paths into
a fresh tmpfs, ``pivot_root``s into it, detaches the old root and starts the kernel with every
capability dropped (``setpriv``): it can neither mount, nor remount a read-only folder writable, nor
``chroot`` out. Where this is impossible (macOS, Ubuntu 24.04's default ban on unprivileged user
namespaces, containers without ``CAP_SYS_ADMIN``) :func:`plan` says why and which fix applies, and
``grade`` refuses to run unless ``--allow-unsandboxed`` is given.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from autograder import REPO_ROOT

SCRIPT = Path(__file__).with_name("sandbox.sh")
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
#: Device nodes the kernel gets (the GPU's are added when present).
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
GPU_DEVICE_PREFIXES = ("nvidia", "dri")

FIX_HINT = ("Grade on Linux where `unshare --mount --pid` works: as root, or as a user where unprivileged user "
            "namespaces are allowed (Ubuntu 24.04: `sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0`, "
            "or an AppArmor profile that allows `userns` for this Python). Or pass --allow-unsandboxed to grade "
            "anyway, with the kernel able to read the solutions.")

UNSANDBOXED_WARNING = ("WARNING: grading WITHOUT a sandbox: student code can read the source notebooks (solutions, "
                       "hidden tests), autograder/ (the judge, stored references), the gradebook and other students' "
                       "files on this machine")


@dataclass(frozen=True)
class SandboxPlan:
    """How kernels start on this machine: ``prefix`` goes in front of the kernel command."""

    prefix: tuple[str, ...]
    files_isolated: bool
    network_isolated: bool
    note: str


def _unshare_flags(network: bool) -> list[str]:
    flags = ["--mount", "--pid", "--fork", "--kill-child"]
    if network:
        flags.append("--net")
    if os.geteuid() != 0:
        flags[0:0] = ["--user", "--map-root-user"]
    return flags


def read_only_paths() -> list[str]:
    """The folders the kernel may read: system, Python, ``cs_lib``, caches (see the module docstring)."""
    repo = REPO_ROOT.resolve()
    wanted: list[Path] = [Path(p) for p in SYSTEM_PATHS]
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                *(sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")),
                *site.getsitepackages(), site.getusersitepackages()}
    wanted += [Path(p) for p in prefixes if p]
    wanted += [Path(p) for p in sys.path if p and os.path.isdir(p)]
    wanted.append(Path(sys.executable).resolve().parent.parent)
    wanted.append(repo / "cs_lib")
    wanted += _cache_paths()
    paths: list[str] = []
    for path in wanted:
        path = Path(os.path.abspath(path))
        if not path.exists():
            continue
        real = path.resolve()
        for candidate in dict.fromkeys((path, real)):
            # Never a folder that holds the repository (it would expose autograder/ and the sources),
            # and nothing inside the repository but cs_lib.
            if candidate == repo or repo.is_relative_to(candidate):
                continue
            if candidate.is_relative_to(repo) and not candidate.is_relative_to(repo / "cs_lib"):
                continue
            paths.append(str(candidate))
    return _outermost(paths)


def _cache_paths() -> list[Path]:
    found = []
    try:
        import torch

        found.append(Path(torch.hub.get_dir()))
    except Exception:  # noqa: BLE001 - no torch: no hub cache to show
        pass
    try:
        from cs_lib.data import data_dir

        found.append(data_dir())
    except Exception:  # noqa: BLE001
        pass
    return found


def _outermost(paths: list[str]) -> list[str]:
    """Drop paths inside another listed path (the outer bind mount shows them already)."""
    kept: list[str] = []
    for p in sorted(set(paths), key=len):
        if not any(Path(p).is_relative_to(k) for k in kept):
            kept.append(p)
    return kept


def device_paths() -> list[str]:
    """Device nodes for the kernel: the basic ones, and the GPU's where present."""
    devices = [d for d in DEVICES if os.path.exists(d)]
    if os.path.isdir("/dev"):
        devices += sorted(os.path.join("/dev", name) for name in os.listdir("/dev")
                          if name.startswith(GPU_DEVICE_PREFIXES))
    if any("nvidia" in d for d in devices) and os.path.isdir("/sys"):
        devices.append("/sys")  # NVML and the CUDA driver read it; it holds nothing of the course
    return devices


def kernel_prefix(plan: SandboxPlan, writable: list[str]) -> list[str]:
    """The argv to put in front of a kernel command, with ``writable`` the folders it may write."""
    if not plan.files_isolated:
        return list(plan.prefix)
    bad = [w for w in writable if Path(w).resolve() == REPO_ROOT.resolve()
           or REPO_ROOT.resolve().is_relative_to(Path(w).resolve())]
    if bad:
        raise ValueError(f"the kernel's writable folder {bad[0]} would expose the repository {REPO_ROOT}")
    read_only = [p for p in read_only_paths() if not any(Path(w).is_relative_to(p) for w in writable)]
    env = [f"DLCV_SANDBOX_MPLCACHE={cache}"] if (cache := _matplotlib_cache()) else []
    return ["env", *env, *plan.prefix, ":".join(read_only), ":".join(writable), ":".join(device_paths()), "--"]


def _matplotlib_cache() -> str | None:
    """The grader's matplotlib cache folder (its font list), copied into each sandbox."""
    try:
        import matplotlib

        cache = matplotlib.get_cachedir()
    except Exception:  # noqa: BLE001 - no matplotlib: nothing to copy
        return None
    return cache if cache and os.path.isdir(cache) else None


@functools.lru_cache(maxsize=4)
def plan(files: bool = True, network: bool = True) -> SandboxPlan:
    """Probe (once per process) how kernels can be isolated here.

    Args:
        files: isolate the file system (the default; ``False`` only with ``--allow-unsandboxed``).
        network: cut the kernel off the network.

    Returns:
        A :class:`SandboxPlan`. ``files_isolated`` is False when ``files`` was asked for but is impossible
        here; ``note`` then says why, followed by :data:`FIX_HINT`.
    """
    unshare = shutil.which("unshare")
    tools = [shutil.which(t) for t in ("unshare", "pivot_root", "setpriv")]
    if files:
        if platform.system() != "Linux" or not all(tools):
            missing = [t for t, p in zip(("unshare", "pivot_root", "setpriv"), tools) if not p]
            why = f"{platform.system()} has no Linux namespaces" if platform.system() != "Linux" else \
                f"missing {', '.join(missing)} (Debian/Ubuntu: util-linux)"
            return SandboxPlan((), False, False, f"no sandbox: {why}. {FIX_HINT}")
        prefix = (unshare, *_unshare_flags(network), "sh", str(SCRIPT))
        probe = [*prefix, ":".join(read_only_paths()), "", ":".join(device_paths()), "--", "true"]
        try:
            proc = subprocess.run(probe, capture_output=True, text=True, timeout=30, cwd="/")
            error = proc.stderr.strip().splitlines()[-1] if proc.returncode else ""
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
        if not error:
            what = "its own folder, cs_lib and the Python environment" + (", no network" if network else "")
            return SandboxPlan(prefix, True, network, f"kernels run in a sandbox that shows them only {what}")
        return SandboxPlan((), False, False, f"no sandbox: `unshare --mount --pid` failed here ({error}). {FIX_HINT}")
    if network and unshare:
        for flags in (["--net"], ["--net", "--map-root-user"]):
            try:
                ok = subprocess.run([unshare, *flags, "true"], capture_output=True, timeout=10).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                return SandboxPlan((unshare, *flags), False, True, "kernels run without network, but unsandboxed")
    return SandboxPlan((), False, False, "kernels run unsandboxed and with the machine's network")
