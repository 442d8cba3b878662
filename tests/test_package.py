"""Package-level guarantees: cs_lib imports offline, and the reference files reproduce."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from autograder import assignments
from autograder.judging.references import build_reference, compare_cases, load_reference, reference_path

CS_LIB_MODULES = ["cs_lib", "cs_lib.runtime", "cs_lib.checks", "cs_lib.images", "cs_lib.models",
                  "cs_lib.data", "cs_lib.plotting"]


def test_cs_lib_imports_without_touching_the_network() -> None:
    code = textwrap.dedent(f"""
        import socket
        def refuse(*args, **kwargs):
            raise SystemExit("network access at import time: " + repr(args))
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import importlib
        for name in {CS_LIB_MODULES!r}:
            importlib.import_module(name)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert proc.stderr == "", proc.stderr


@pytest.mark.parametrize("assignment", [a for a in assignments() if reference_path(a).exists()])
def test_regenerating_references_reproduces_the_stored_ones(assignment: str) -> None:
    import importlib

    module = importlib.import_module(f"autograder.specs.{assignment}")
    stored = load_reference(assignment)
    fresh = build_reference(assignment)
    assert set(stored["meta"]) >= {"torch", "torchvision", "numpy", "python", "seed"}
    assert stored["meta"]["seed"] == module.REFERENCE_SEED
    assert compare_cases(stored["cases"], fresh["cases"], module.REFERENCE_RTOL, module.REFERENCE_ATOL) == []


def test_references_command_reports_new_unchanged_and_changed(monkeypatch, tmp_path, capsys) -> None:
    import torch

    from autograder import __main__ as cli
    from autograder.judging import references

    monkeypatch.setattr(references, "REFERENCE_DIR", tmp_path)
    assert cli.main(["references", "example"]) == 0
    assert "example: new reference file" in capsys.readouterr().out
    assert cli.main(["references", "example", "--check"]) == 0
    assert "example: unchanged" in capsys.readouterr().out
    saved = torch.load(tmp_path / "example.pt", weights_only=True)
    saved["cases"]["softmax"][0]["output"] = saved["cases"]["softmax"][0]["output"] + 1e-3
    torch.save(saved, tmp_path / "example.pt")
    assert cli.main(["references", "example", "--check"]) == 1
    out = capsys.readouterr().out
    assert "example: CHANGED" in out and "softmax[0]" in out


def test_references_command_reports_an_added_function_as_added_and_check_passes(monkeypatch, tmp_path,
                                                                                 capsys) -> None:
    """A TA adds a spec and regenerates: its cases are *added*, nothing stored has moved, ``--check`` exits 0.

    The stored file of an assignment before a function was added is the regenerated one without that function's
    cases; the function's spec and answer cell are already in place.
    """
    import torch

    from autograder import __main__ as cli
    from autograder.judging import references
    from autograder.judging.spec import load_specs

    monkeypatch.setattr(references, "REFERENCE_DIR", tmp_path)
    assert cli.main(["references", "example"]) == 0
    capsys.readouterr()
    full = torch.load(tmp_path / "example.pt", weights_only=True)
    newest = [name for name in load_specs("example") if name in full["cases"]][-1]  # the last one a TA added
    before = {**full, "cases": {k: v for k, v in full["cases"].items() if k != newest}}
    torch.save(before, tmp_path / "example.pt")

    stored = (tmp_path / "example.pt").read_bytes()
    assert cli.main(["references", "example", "--check"]) == 0
    out = capsys.readouterr().out
    assert f"example: added {newest} ({len(full['cases'][newest])} cases); the other cases unchanged" in out, out
    assert "CHANGED" not in out, out
    assert (tmp_path / "example.pt").read_bytes() == stored  # --check compares and writes nothing
    assert cli.main(["references", "example"]) == 0  # the TA regenerates: the addition is written
    assert f"example: added {newest}" in capsys.readouterr().out
    assert torch.load(tmp_path / "example.pt", weights_only=True)["cases"].keys() == full["cases"].keys()
    written = (tmp_path / "example.pt").read_bytes()
    assert cli.main(["references", "example", "--check"]) == 0  # and the next check finds nothing either
    assert "example: unchanged (within tolerance)" in capsys.readouterr().out
    assert cli.main(["references", "example"]) == 0  # unchanged within tolerance: the file keeps its bytes
    assert (tmp_path / "example.pt").read_bytes() == written

    # An addition does not hide a change in the cases already stored, nor a function the specs no longer have.
    moved = {**before, "cases": {**before["cases"], "ghost": [{"inputs": {}, "output": 0.0}]}}
    other = next(name for name in before["cases"])
    moved["cases"][other] = [dict(case) for case in before["cases"][other]]
    moved["cases"][other][0]["output"] = moved["cases"][other][0]["output"] + 1e-3
    torch.save(moved, tmp_path / "example.pt")
    assert cli.main(["references", "example", "--check"]) == 1
    out = capsys.readouterr().out
    assert "example: CHANGED" in out and f"{other}[0]" in out and "ghost: only in the stored references" in out
    assert f"added: {newest} (" in out, out


def test_the_in_process_judge_is_found_through_the_installed_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """cs_lib finds the grader's judge as a declared plugin (it never imports the layer above it); without
    an installed grader, a hidden block says what to do."""
    import importlib.metadata

    from autograder.judging.judge import judge_in_process
    from cs_lib.grading import judge_client

    assert judge_client.in_process_judge() is judge_in_process
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [])
    with pytest.raises(RuntimeError, match="pip install -e"):
        judge_client.in_process_judge()
    monkeypatch.delenv(judge_client.SOCKET_ENV, raising=False)
    with pytest.raises(RuntimeError, match="Hidden tests run only when the grader grades"):
        judge_client.judge("example", len)
