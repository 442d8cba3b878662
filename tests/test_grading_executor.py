"""The execution step alone, on tiny notebooks: crashes, hangs, floods and the network sandbox."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder.execution import sandbox
from autograder.execution.executor import KERNEL_DIED, NOT_RUN, ResilientExecute
from autograder.execution.nbgrader_run import kit_environment

pytestmark = pytest.mark.notebook


def _execute(tmp_path: Path, sources: list[str], monkeypatch: pytest.MonkeyPatch, **traits: object):
    for key, value in kit_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "rt"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    step = ResilientExecute(**{"timeout": 20, "submission_timeout": 120.0, **traits})
    nb, _ = step.preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    return nb, step


def _text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_a_dead_kernel_is_restarted_and_earlier_state_replayed(tmp_path: Path, monkeypatch) -> None:
    nb, step = _execute(tmp_path, ["x = 41\nprint('first')", "import os\nos._exit(7)", "print(x + 1)"], monkeypatch)
    first, crash, after = nb.cells
    assert _text(first) == "first\n"  # outputs from before the crash are kept
    assert crash.outputs[-1].ename == KERNEL_DIED and "code 7" in crash.outputs[-1].evalue
    assert crash.metadata["autograder"]["outcome"] == "died"
    assert _text(after) == "42\n" and after.metadata["autograder"]["outcome"] == "ok"
    assert step.restarts == 1


def test_a_kernel_ignoring_interrupts_is_killed_and_the_rest_still_runs(tmp_path: Path, monkeypatch) -> None:
    hang = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    nb, step = _execute(tmp_path, ["y = 1", hang, "print(y)"], monkeypatch, timeout=3, interrupt_grace=2)
    assert nb.cells[1].metadata["autograder"]["outcome"] == "timeout"
    assert "did not finish within 3 s" in nb.cells[1].metadata["autograder"]["reason"]
    assert _text(nb.cells[2]) == "1\n"
    assert step.restarts == 1


def test_cells_after_the_last_allowed_restart_are_marked_not_run(tmp_path: Path, monkeypatch) -> None:
    die = "import os\nos._exit(1)"
    nb, _ = _execute(tmp_path, [die, die, "print('never')"], monkeypatch, max_kernel_restarts=1)
    assert [c.metadata["autograder"]["outcome"] for c in nb.cells] == ["died", "died", "not_run"]
    assert nb.cells[2].outputs[0].ename == NOT_RUN  # so that a test cell here scores 0, not full points


def test_output_is_cut_per_cell(tmp_path: Path, monkeypatch) -> None:
    nb, _ = _execute(tmp_path, ["print('x' * 50_000)", "print('ok')"], monkeypatch, max_output_chars=1000)
    flood, ok = nb.cells
    assert len(_text(flood)) < 1200 and "output cut after 1000 characters" in _text(flood)
    assert _text(ok) == "ok\n"


@pytest.mark.skipif(not sandbox.plan().network_isolated, reason=sandbox.plan().note)
def test_the_kernel_has_no_network_interfaces_but_loopback(tmp_path: Path, monkeypatch) -> None:
    code = "import socket\nprint(sorted(name for _, name in socket.if_nameindex()))"
    nb, _ = _execute(tmp_path, [code], monkeypatch)
    assert _text(nb.cells[0]).strip() == "['lo']"
