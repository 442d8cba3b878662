"""The execution step alone, on tiny notebooks: crashes, hangs, floods and the network sandbox."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder.execution import sandbox
from autograder.execution.executor import KERNEL_DIED, NOT_RUN, ResilientExecute
from autograder.execution.nbgrader_run import kit_environment

pytestmark = pytest.mark.notebook


def imports(source: str) -> nbformat.NotebookNode:
    """A code cell tagged ``imports``, as the first code cell of every notebook is."""
    return nbformat.v4.new_code_cell(source, metadata={"tags": ["imports"]})


def answer(source: str, grade_id: str = "f") -> nbformat.NotebookNode:
    """An autograded answer cell."""
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": {
        "solution": True, "grade": False, "locked": False, "grade_id": grade_id, "schema_version": 3}})


def _execute(tmp_path: Path, sources: list, monkeypatch: pytest.MonkeyPatch, **traits: object):
    for key, value in kit_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "rt"))
    cells = [s if isinstance(s, nbformat.NotebookNode) else nbformat.v4.new_code_cell(s) for s in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    step = ResilientExecute(**{"timeout": 20, "submission_timeout": 120.0, **traits})
    nb, _ = step.preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    return nb, step


def _text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_a_dead_kernel_is_restarted_and_only_imports_and_answers_replayed(tmp_path: Path, monkeypatch) -> None:
    cells = [imports("x = 40\nprint('first')"), answer("def f():\n    return x + 1"), "model = 'loaded'",
             "demo_ran = f()", "import os\nos._exit(7)", "print(f() + 1, model, 'demo_ran' in dir())"]
    nb, step = _execute(tmp_path, cells, monkeypatch)
    first, _, _, demo, crash, after = nb.cells
    assert _text(first) == "first\n"  # outputs from before the crash are kept
    assert crash.outputs[-1].ename == KERNEL_DIED and "code 7" in crash.outputs[-1].evalue
    assert crash.metadata["autograder"]["outcome"] == "died"
    # The imports cell, the answer and the set-up are replayed; the demo, which calls a graded function (and could
    # kill the kernel again if that function were the broken one), is not.
    assert _text(after) == "42 loaded False\n" and after.metadata["autograder"]["outcome"] == "ok"
    assert step.restarts == 1


def test_a_kernel_ignoring_interrupts_is_killed_and_the_rest_still_runs(tmp_path: Path, monkeypatch) -> None:
    hang = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    nb, step = _execute(tmp_path, [imports("y = 1"), hang, "print(y)"], monkeypatch, timeout=3, interrupt_grace=2)
    assert nb.cells[1].metadata["autograder"]["outcome"] == "timeout"
    assert "did not finish within 3 s" in nb.cells[1].metadata["autograder"]["reason"]
    assert _text(nb.cells[2]) == "1\n"
    assert step.restarts == 1


def test_after_the_last_allowed_restart_demos_are_skipped_but_answers_still_run(tmp_path: Path, monkeypatch) -> None:
    die = "import os\nos._exit(1)"
    cells = [die, die, "print('demo', f())", answer("def f():\n    pass\nprint('answer')"), "print(f())", die,
             answer("print('still')", "g")]
    nb, step = _execute(tmp_path, cells, monkeypatch, max_kernel_restarts=1)
    # Cells that call a graded function (demos) are skipped after the cap; set-up cells, answers and tests still
    # run, each death followed by a fresh kernel.
    assert [c.metadata["autograder"]["outcome"] for c in nb.cells] == ["died", "died", "not_run", "ok", "not_run",
                                                                        "died", "ok"]
    skipped = nb.cells[2].outputs[0]
    assert skipped.ename == NOT_RUN and "skipped the cells without points" in skipped.evalue
    assert _text(nb.cells[3]) == "answer\n" and _text(nb.cells[6]) == "still\n"
    assert step.restarts == 3


def test_output_is_cut_per_cell(tmp_path: Path, monkeypatch) -> None:
    nb, _ = _execute(tmp_path, ["print('x' * 50_000)", "print('ok')"], monkeypatch, max_output_chars=1000)
    flood, ok = nb.cells
    assert len(_text(flood)) < 1200 and "output cut after 1000 characters" in _text(flood)
    assert _text(ok) == "ok\n"


def test_the_output_cap_counts_errors_display_data_and_metadata(tmp_path: Path, monkeypatch) -> None:
    display = ("from IPython.display import display\n"
               "for _ in range(50):\n    display({'text/plain': 'x'}, raw=True, metadata={'junk': 'y' * 10_000})")
    error = "raise ValueError('z' * 200_000)"
    nb, _ = _execute(tmp_path, [display, error, "print('ok')"], monkeypatch, max_output_chars=20_000)
    shown, raised, ok = nb.cells
    for cell in (shown, raised):
        assert len(nbformat.writes(nbformat.v4.new_notebook(cells=[cell]))) < 25_000
    assert raised.metadata["autograder"]["outcome"] == "error"  # the error is still known, only cut short
    assert any(o.output_type == "error" and o.ename == "ValueError" for o in raised.outputs)
    assert _text(ok) == "ok\n"


@pytest.mark.skipif(not sandbox.plan().network_isolated, reason=sandbox.plan().note)
def test_the_kernel_has_no_network_interfaces_but_loopback(tmp_path: Path, monkeypatch) -> None:
    code = "import socket\nprint(sorted(name for _, name in socket.if_nameindex()))"
    nb, _ = _execute(tmp_path, [code], monkeypatch)
    assert _text(nb.cells[0]).strip() == "['lo']"


def test_display_updates_and_widget_state_stay_within_the_cap(tmp_path: Path, monkeypatch) -> None:
    shown = ("from IPython.display import display\n"
             "for i in range(20):\n    display({'text/plain': 'x'}, raw=True, display_id='d')")
    update = ("from IPython.display import update_display\n"
              "for _ in range(20):\n    update_display({'text/plain': 'y' * 100_000}, raw=True, display_id='d')")
    widget = ("from ipykernel.comm import Comm\n"
              "c = Comm(target_name='jupyter.widget', data={'state': {'value': 'z' * 1_000_000}})\n"
              "for _ in range(5):\n    c.send({'method': 'update', 'state': {'value': 'z' * 1_000_000}})")
    nb, _ = _execute(tmp_path, [shown, update, widget, "print('ok')"], monkeypatch, max_output_chars=20_000)
    size = len(nbformat.writes(nb))
    assert size < 200_000, size  # 20 outputs x 100 kB of updates, and 6 MB of widget state, were dropped
    assert "widgets" not in nb.metadata
    assert _text(nb.cells[3]) == "ok\n"


def test_the_kernel_client_is_ready_at_the_kernels_idle_and_leaves_the_first_output_to_its_cell(
        tmp_path: Path, monkeypatch) -> None:
    import asyncio

    from autograder.execution.isolation import ReadyOnIdleKernelClient, SandboxedKernelManager

    for key, value in kit_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "rt"))

    async def scenario() -> list[str]:
        km = SandboxedKernelManager()
        await km.start_kernel(cwd=str(tmp_path))
        kc = km.client()
        assert isinstance(kc, ReadyOnIdleKernelClient)
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            request = kc.execute("print('first')")
            texts = []
            while True:
                msg = await kc.get_iopub_msg(timeout=30)
                if msg["parent_header"].get("msg_id") != request:
                    continue
                if msg["msg_type"] == "stream":
                    texts.append(msg["content"]["text"])
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
            await km.shutdown_kernel(now=True)
            with pytest.raises(RuntimeError, match="Kernel died before replying"):
                await kc.wait_for_ready(timeout=30)
            return texts
        finally:
            kc.stop_channels()
            if await km.is_alive():
                await km.shutdown_kernel(now=True)

    assert asyncio.run(scenario()) == ["first\n"]
