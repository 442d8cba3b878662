"""The warm kernel template: a process that has imported torch once and forks each kernel into its sandbox.

This file is a program, not a module of the grader: :mod:`autograder.execution.warm_kernels` runs its
text with ``python -c`` (so no path of the checkout becomes a module's ``__file__``), from a clean
environment, in a mount namespace of its own where the editable install's files that name the checkout
are shown empty (as the sandbox shows them). It imports nothing of the kit: only the standard library
and the libraries named in its configuration (torch, torchvision, ipykernel), before any student exists.

It then serves kernels on a Unix socket that only root can reach (a 0700 folder of the grader's; a
sandboxed kernel sees neither that folder nor the grader's network namespace). Per connection:

1. the template forks a *keeper* and forgets the connection;
2. the keeper reads the request (the sandbox's settings, the kernel's uid, limits, environment and
   argv, and its stdin/stdout/stderr as file descriptors), enters fresh mount, PID, UTS, IPC and network
   namespaces and forks the *kernel*, PID 1 of its namespace; it answers with both host pids and a
   pidfd of itself, then waits: when the kernel ends it sends the exit status; when the connection
   closes first (the grading process died), it kills the kernel;
3. the kernel runs ``sandbox.sh`` with ``DLCV_SANDBOX_ENTER_ONLY`` (the one definition of the sandbox's
   file system: the script's ``pivot_root`` moves this process's root too), drops its privileges as the
   script's end would (``RLIMIT_NPROC``, ``RLIMIT_FSIZE``, an empty capability bounding set, no groups,
   the kernel's own uid and gid, ``no_new_privs``), checks that it holds no capability, takes the
   kernel's environment, reseeds every random generator and runs ipykernel in this process.

Each kernel is therefore a fresh process that shares nothing writable with the template or another
kernel (fork copies memory on write), and the template holds nothing of any student: it never reads a
request's content beyond what a keeper (its own child) reads after the fork. Every process it makes dies
with its parent (``PR_SET_PDEATHSIG``): the grader ending ends the template, the template ending ends
its keepers, a keeper ending ends its kernel's whole PID namespace.
"""

import ctypes
import json
import os
import signal
import socket
import struct
import subprocess
import sys

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x4000000, 0x8000000, 0x20000000, \
    0x40000000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
#: Largest request or reply, in bytes.
MAX_MESSAGE = 1 << 20
#: The warning filters the template's interpreter started with (``PYTHONWARNINGS``).
_STARTUP_WARNINGS = os.environ.get("PYTHONWARNINGS", "")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def send_message(sock: socket.socket, data: dict, fds: list[int] | tuple[int, ...] = ()) -> None:
    """One length-prefixed JSON message, with ``fds`` attached to its first byte."""
    body = json.dumps(data).encode()
    frame = struct.pack("!I", len(body)) + body
    sent = socket.send_fds(sock, [frame], list(fds)) if fds else sock.send(frame)
    if sent < len(frame):
        sock.sendall(frame[sent:])


def receive_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """``(message, fds)``; ``(None, [])`` when the peer closed the connection first."""
    head, fds = b"", []
    while len(head) < 4:
        if max_fds and not fds:
            chunk, got, _, _ = socket.recv_fds(sock, 4 - len(head), max_fds)
            fds += got
        else:
            chunk = sock.recv(4 - len(head))
        if not chunk:
            return None, fds
        head += chunk
    size = struct.unpack("!I", head)[0]
    if size > MAX_MESSAGE:
        raise ValueError(f"a message of {size} bytes (at most {MAX_MESSAGE})")
    body = b""
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            return None, fds
        body += chunk
    return json.loads(body), fds


def wait_code(status: int) -> int:
    """A wait status as :class:`subprocess.Popen` reports it (``-N``: killed by signal N)."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


# -- the kernel (PID 1 of its namespace) --------------------------------------------------------


def _status_field(name: str) -> str:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def _drop_privileges(uid: int, processes: int, file_size: int) -> None:
    """What ``prlimit`` and ``setpriv --reuid --regid --clear-groups --no-new-privs --bounding-set=-all`` do."""
    import resource

    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    with open("/proc/sys/kernel/cap_last_cap") as last:
        for cap in range(int(last.read()) + 1):
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "dropping a capability")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    held = {name: _status_field(name) for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    if os.getuid() != uid or os.geteuid() != uid or any(int(v or "1", 16) for v in held.values()):
        raise RuntimeError(f"the kernel still holds privileges: uid {os.geteuid()}, {held}")


def _reseed() -> None:
    """Fresh seeds for the generators the template's imports created (a kernel must not share them)."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _keeper_alive(alive: int) -> bool:
    """Whether the keeper still holds the write end of the pipe whose read end is ``alive``."""
    os.set_blocking(alive, False)
    try:
        return os.read(alive, 1) != b""
    except BlockingIOError:
        return True


def _run_kernel(request: dict, fds: list[int], alive: int) -> None:
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    alive = os.dup2(alive, 3)
    os.closerange(4, 1 << 16)
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir("/")  # pivot_root moves the root and working folder of every process here that uses the old root
    settings = {k: str(v) for k, v in request["settings"].items()}
    shell_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **settings,
                 "DLCV_SANDBOX_ENTER_ONLY": "1"}
    done = subprocess.run(["sh", request["script"], *request["paths"], "--", "true"], env=shell_env,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0 or os.path.exists("/.old-root") or not os.path.isdir(request["cwd"]):
        print(f"the kernel's sandbox could not be built (sandbox.sh exited with {done.returncode})", file=sys.stderr)
        os._exit(126)
    os.chdir(request["cwd"])
    if settings.get("DLCV_SANDBOX_UID"):
        _drop_privileges(int(settings["DLCV_SANDBOX_UID"]), int(settings["DLCV_SANDBOX_NPROC"]),
                         int(settings["DLCV_SANDBOX_FSIZE"]))
    else:  # the template runs as root only (warm_kernels.unavailable_reason): never a kernel with root's uid
        os._exit(126)
    # A change of uid clears PR_SET_PDEATHSIG: set it again, then make sure the keeper did not go in between.
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "the parent-death signal")
    if not _keeper_alive(alive):
        os._exit(125)
    os.close(alive)
    env = dict(request["env"])
    if os.path.isdir("/tmp/matplotlib"):  # sandbox.sh's private copy of the font cache
        env["MPLCONFIGDIR"] = "/tmp/matplotlib"
    os.environ.clear()
    os.environ.update(env)
    sys.dont_write_bytecode = True
    if env.get("PYTHONWARNINGS", "") != _STARTUP_WARNINGS:  # what the interpreter would have read at start
        import warnings

        warnings.resetwarnings()
        for option in filter(None, env.get("PYTHONWARNINGS", "").split(",")):
            warnings._setoption(option)
    pythonpath = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.getcwd(), *pythonpath, *(p for p in sys.path if p and p not in pythonpath)]
    _reseed()
    threads = env.get("OMP_NUM_THREADS")
    torch = sys.modules.get("torch")
    if torch is not None and threads and threads.isdigit():
        torch.set_num_threads(int(threads))
    sys.argv = ["ipykernel_launcher", *request["argv"]]
    code = 0
    try:
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the kernel's own crash: report it as the process would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


# -- the keeper (one per kernel) ----------------------------------------------------------------


def _keep(conn: socket.socket) -> None:
    """Serve one connection: make the kernel, report it, wait for its end or for the connection's."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    request, fds = receive_message(conn, max_fds=3)
    if request is None or len(fds) != 3:
        os._exit(2)
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | (CLONE_NEWNET if request.get("network") else 0)
    _check(_libc.unshare(flags), "unshare")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    keeper = os.getpid()
    pidfd = os.pidfd_open(keeper)
    alive_read, alive_write = os.pipe()  # open for writing while the keeper lives
    kernel = os.fork()
    if kernel == 0:
        try:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            os.close(alive_write)
            if not _keeper_alive(alive_read):  # the keeper died before PR_SET_PDEATHSIG was set
                os._exit(125)
            conn.close()
            _run_kernel(request, fds, alive_read)
        except BaseException:  # noqa: BLE001 - say why on the kernel's stderr (the grader's log)
            import traceback

            os.dup2(fds[2], 2) if os.fstat(2).st_ino != os.fstat(fds[2]).st_ino else None
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(127)
    for fd in (*fds, alive_read):
        os.close(fd)
    send_message(conn, {"pid": keeper, "kernel_pid": kernel}, [pidfd])
    os.close(pidfd)
    conn.settimeout(0.05)
    while True:
        done, status = os.waitpid(kernel, os.WNOHANG)
        if done:
            try:
                send_message(conn, {"exit": wait_code(status)})
            except OSError:
                pass
            os._exit(0)
        try:
            if conn.recv(1) == b"":  # the grading process closed the connection (or died)
                os.kill(kernel, signal.SIGKILL)
        except (TimeoutError, BlockingIOError):
            continue
        except OSError:
            os.kill(kernel, signal.SIGKILL)


# -- the template -------------------------------------------------------------------------------


def serve(config: dict) -> None:
    """Import, listen, say ready on stdout, then fork a keeper per connection until the parent goes."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != config["parent"]:
        return
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    for name in config["preload"]:
        __import__(name)
    import threading

    # fork copies only the calling thread, so no Python thread may run here. torch starts one idle native thread
    # at import; it is fork-safe (its DataLoader workers are forked the same way, by default on Linux).
    if threading.active_count() != 1:
        raise RuntimeError(f"the template runs {threading.active_count()} Python threads after its imports")
    for name in ("CapInh", "CapAmb"):
        if int(_status_field(name) or "0", 16):
            raise RuntimeError(f"the template holds {name} capabilities, which setuid would not clear")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(config["socket"])
    os.chmod(config["socket"], 0o600)
    listener.listen(64)
    listener.settimeout(1.0)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print("ready", flush=True)
    while True:
        while True:  # reap the keepers that ended
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        pid = os.fork()
        if pid == 0:
            try:
                listener.close()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _keep(conn)
            finally:
                os._exit(3)
        conn.close()


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
