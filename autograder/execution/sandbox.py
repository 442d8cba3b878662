"""The kernel's view of the machine: its own scratch folders and the Python environment, and no secret.

A student's code runs in the kernel, so the kernel must not be able to read anything that would
give away a grade (the source notebooks, ``autograder/``, the stored references, the gradebook, other
students' files), nor leave anything behind that the grader or a later kernel would follow, read or run.
:func:`plan` finds out once per process whether this machine can start a kernel in a sandbox that
shows it only:

- read-only: the system folders (``/usr``, ``/etc``, ...), the Python installation and every
  ``sys.path`` folder outside the repository, the torch hub and kit data caches (weights, datasets),
  and the repository's ``cs_lib`` at ``/kit/cs_lib`` (nothing else of the repository, at no path that
  names the checkout);
- read-only too: the judge's folder (its socket is reachable; it cannot be replaced);
- writable: a working folder of its own (:data:`WORK_DIR`, a tmpfs filled with a copy of the
  assignment's files, gone when the kernel ends: the grader writes the graded notebook elsewhere and
  never reads it back) and a fresh runtime folder for the kernel's own sockets;
- a private ``/tmp`` and ``/dev/shm``, each a tmpfs with a ``size=`` (:func:`memory_split`), a few
  device nodes (``/dev/null``, ``/dev/urandom``, the GPU's; ``/sys`` read-only where a GPU needs it),
  and a ``/proc`` of its own PID namespace with ``/proc/sys`` and ``/proc/sysrq-trigger`` read-only.

It is built with Linux namespaces: ``unshare --mount --pid --uts --ipc --fork`` (plus ``--net`` for no
network, plus ``--user --map-root-user`` when not root), then ``sandbox.sh`` mounts the above into a fresh
tmpfs, ``pivot_root``s into it, detaches the old root and starts the kernel with every capability dropped
(``setpriv``). When the grader runs as root, the kernel runs as an unprivileged uid of its own
(:func:`kernel_uid`) with ``RLIMIT_NPROC`` and ``RLIMIT_FSIZE`` (:class:`KernelBox`): it can neither mount,
nor remount a read-only folder writable, nor ``chroot`` out, nor fork without bound. A warm kernel
(:mod:`autograder.execution.warm_kernels`) gets the same namespaces and runs the same ``sandbox.sh``
(:func:`sandbox_arguments`), which stops after ``pivot_root``; the kernel then drops the same privileges
itself. Where this is impossible (macOS, Ubuntu 24.04's default ban on unprivileged user namespaces, containers without
``CAP_SYS_ADMIN``) :func:`plan` says why and which fix applies, and ``grade`` refuses to run unless
``--allow-unsandboxed`` is given.
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
    flags = ["--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child"]
    if network:
        flags.append("--net")
    if os.geteuid() != 0:
        flags[0:0] = ["--user", "--map-root-user"]
    return flags


def read_only_paths(caches: bool = True) -> list[str]:
    """The folders the kernel may read: system, Python, ``cs_lib``, caches (see the module docstring).

    Args:
        caches: include torch's hub cache and the kit's data folder (finding them imports torch and cs_lib).
    """
    repo = REPO_ROOT.resolve()
    wanted: list[Path] = [Path(p) for p in SYSTEM_PATHS]
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                *(sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")),
                *site.getsitepackages(), site.getusersitepackages()}
    wanted += [Path(p) for p in prefixes if p]
    wanted += [Path(p) for p in sys.path if p and os.path.isdir(p)]
    wanted.append(Path(sys.executable).resolve().parent.parent)
    if caches:
        wanted += _cache_paths()
    paths: list[str] = []
    for path in wanted:
        path = Path(os.path.abspath(path))
        if not path.exists():
            continue
        real = path.resolve()
        for candidate in dict.fromkeys((path, real)):
            # Never a folder that holds the repository (it would expose autograder/ and the sources),
            # and nothing inside it (cs_lib is shown at /kit/cs_lib instead).
            if candidate == repo or repo.is_relative_to(candidate) or candidate.is_relative_to(repo):
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


@functools.lru_cache(maxsize=1)
def naming_the_checkout() -> tuple[str, ...]:
    """Files of the read-only Python environment whose text names the checkout, shown empty to the kernel.

    An editable install of the kit (``pip install -e .``) leaves a ``.pth`` file, a finder module and a
    ``direct_url.json`` in site-packages that hold the repository's path; the kernel needs none of them
    (it imports cs_lib from ``/kit``).
    """
    repo = str(REPO_ROOT.resolve()).encode()
    found = []
    for folder in {*site.getsitepackages(), site.getusersitepackages(), *(p for p in sys.path if p)}:
        folder_path = Path(folder)
        if not folder_path.is_dir() or folder_path.resolve().is_relative_to(REPO_ROOT.resolve()):
            continue
        for path in [*folder_path.glob("__editable__*"), *folder_path.glob("*.pth"), *folder_path.glob("*.egg-link"),
                     *folder_path.glob("*.dist-info/direct_url.json")]:
            try:
                if path.is_file() and repo in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
        # A .pth that imports a finder shown empty would fail at every interpreter start: show it empty too.
        stems = [Path(f).stem.encode() for f in found if f.endswith(".py")]
        for path in folder_path.glob("*.pth"):
            try:
                if str(path) not in found and any(stem in path.read_bytes() for stem in stems):
                    found.append(str(path))
            except OSError:
                continue
    return tuple(sorted(set(found)))


def cache_environment() -> dict[str, str]:
    """``TORCH_HOME`` and ``DLCV_DATA`` as the grader sees them, for a kernel whose HOME is elsewhere.

    The sandbox shows both caches read-only at the same paths (:func:`read_only_paths`); a cache inside the
    repository is neither shown nor named.
    """
    env: dict[str, str] = {}
    repo = str(REPO_ROOT.resolve())
    for name, path in (("TORCH_HOME", _torch_home()), ("DLCV_DATA", _data_dir())):
        if path is not None and not str(Path(path).resolve()).startswith(repo):
            env[name] = str(path)
    return env


def _torch_home() -> Path | None:
    try:
        import torch

        return Path(torch.hub.get_dir()).parent
    except Exception:  # noqa: BLE001 - no torch: no hub cache
        return None


def _data_dir() -> Path | None:
    try:
        from cs_lib.data import data_dir

        return data_dir()
    except Exception:  # noqa: BLE001
        return None


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


@dataclass(frozen=True)
class KernelBox:
    """The bounds of one sandboxed kernel (see :func:`memory_split` and :func:`kernel_uid`)."""

    uid: int | None = None  # the unprivileged uid it runs as; None: the caller's (not root)
    tmp_bytes: int = 512 * 1024**2  # size of its /tmp
    shm_bytes: int = 256 * 1024**2  # size of its /dev/shm
    work_bytes: int = 256 * 1024**2  # size of its working folder
    processes: int = 512  # RLIMIT_NPROC: processes and threads of its uid
    seed: str | None = None  # a grader-made folder whose files are copied into the working folder
    shown: tuple[str, ...] = ()  # grader-made folders shown read-only at the same path (the judge's socket)


#: The kernel's working folder (and HOME) inside the sandbox.
WORK_DIR = "/home/student"
#: Where cs_lib is shown inside the sandbox (``PYTHONPATH`` of the kernel).
KIT_DIR = "/kit"
#: First uid of the kernels' uids: the grading process's pid is added, so concurrent kernels never share one.
KERNEL_UID_BASE = 2_000_000


def kernel_uid() -> int | None:
    """The uid a kernel of this grading process runs as: its own when the grader is root, else None.

    ``RLIMIT_NPROC`` counts processes per uid, so each grading process's kernel gets a uid that no other
    process on the machine has (the base plus this process's pid, unique among running processes).
    """
    return KERNEL_UID_BASE + os.getpid() if os.geteuid() == 0 else None


def memory_split(limit: int) -> tuple[int, int, int, int]:
    """``--memory-limit`` as ``(resident, tmp, shm, work)`` bytes, so that everything a kernel holds fits.

    A quarter goes to the three tmpfs (``/tmp`` an eighth, ``/dev/shm`` and the working folder a
    sixteenth each, as files written there are memory too), three quarters to the resident memory of the
    kernel's processes, which :class:`~autograder.execution.isolation.MemoryWatchdog` enforces.
    """
    tmp, shm, work = limit // 8, limit // 16, limit // 16
    return limit - tmp - shm - work, tmp, shm, work


def sandbox_arguments(writable: list[str], box: KernelBox | None = None) -> tuple[dict[str, str], list[str]]:
    """``sandbox.sh``'s settings (environment variables) and its three path lists (read-only, writable, devices).

    Args:
        writable: grader-made folders the kernel may write (its runtime folder for its sockets).
        box: the kernel's bounds, uid and working-folder seed (default: :class:`KernelBox` ()).

    Raises:
        ValueError: a writable folder is, holds or is inside the repository.
    """
    box = box or KernelBox()
    repo = REPO_ROOT.resolve()
    bad = [w for w in writable if Path(w).resolve() == repo or repo.is_relative_to(Path(w).resolve())
           or Path(w).resolve().is_relative_to(repo)]
    if bad:
        raise ValueError(f"the kernel's writable folder {bad[0]} would expose the repository {REPO_ROOT}")
    read_only = [p for p in read_only_paths() if not any(Path(w).is_relative_to(p) for w in writable)]
    read_only += [p for p in box.shown if p not in read_only]
    settings = {"DLCV_SANDBOX_WORK": WORK_DIR, "DLCV_SANDBOX_KIT": str(repo / "cs_lib"),
                "DLCV_SANDBOX_TMP_SIZE": box.tmp_bytes, "DLCV_SANDBOX_SHM_SIZE": box.shm_bytes,
                "DLCV_SANDBOX_WORK_SIZE": box.work_bytes, "DLCV_SANDBOX_FSIZE": max(box.work_bytes, box.tmp_bytes),
                "DLCV_SANDBOX_NPROC": box.processes, "DLCV_SANDBOX_UID": "" if box.uid is None else box.uid,
                "DLCV_SANDBOX_SEED": box.seed or "", "DLCV_SANDBOX_MASK": ":".join(naming_the_checkout())}
    if cache := _matplotlib_cache():
        settings["DLCV_SANDBOX_MPLCACHE"] = cache
    return {k: str(v) for k, v in settings.items()}, [":".join(read_only), ":".join(writable),
                                                       ":".join(device_paths())]


def kernel_prefix(plan: SandboxPlan, writable: list[str], box: KernelBox | None = None) -> list[str]:
    """The argv to put in front of a kernel command.

    Args:
        plan: this machine's :func:`plan`.
        writable: grader-made folders the kernel may write (its runtime folder for its sockets).
        box: the kernel's bounds, uid and working-folder seed (default: :class:`KernelBox` ()).
    """
    if not plan.files_isolated:
        return list(plan.prefix)
    settings, paths = sandbox_arguments(writable, box)
    return ["env", *(f"{k}={v}" for k, v in settings.items()), *plan.prefix, *paths, "--"]


def warm_up(network: bool) -> SandboxPlan:
    """:func:`plan` (files isolated) as each grading process will ask for it, and what its kernels' prefix imports.

    :func:`autograder.batch.grading.grade` calls it once before its scheduler forks the grading processes,
    so that none of them probes the sandbox or imports matplotlib again (about 0.1 s each).
    """
    _matplotlib_cache()
    return plan(files=True, network=network)  # the executor's call, so the same cache entry


@functools.cache
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
        # The probe shows no cache folder: one is a read-only bind mount like any other, and finding them imports
        # torch, a second before `grade` can start its warm kernel template.
        probe = ["env", f"DLCV_SANDBOX_UID={kernel_uid() or ''}", *prefix, ":".join(read_only_paths(caches=False)), "",
                 ":".join(device_paths()), "--", "true"]
        try:
            proc = subprocess.run(probe, capture_output=True, text=True, timeout=30, cwd="/")
            error = proc.stderr.strip().splitlines()[-1] if proc.returncode else ""
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
        if not error:
            what = ("its own scratch folders, cs_lib and the Python environment"
                    + (", as an unprivileged uid" if kernel_uid() is not None else "")
                    + (", no network" if network else ""))
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
