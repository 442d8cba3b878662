"""``benchmarks/gpu_checks.sh`` and the notebook timer it runs, on this machine (no GPU needed).

The script is what a session or a maintainer with a CUDA device runs in one go; here it must say what it
found and that it skipped the CUDA steps, and the timer must report each part of a notebook as the part
ends (a run stopped at its time limit keeps what it finished).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.notebook_times import notebook_parts

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would run every GPU check")
def test_gpu_checks_without_cuda_reports_the_environment_and_skips_the_cuda_steps(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", "benchmarks/gpu_checks.sh", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    assert re.fullmatch(r"environment: ok in \d+ s", summary[0]), summary
    assert summary[1].startswith("no CUDA device: the CUDA tests, the swap demo on CUDA and the GPU notebook times "
                                 "are skipped"), summary
    environment = (tmp_path / "environment.txt").read_text()
    assert f"torch {torch.__version__}" in environment and "device none" in environment
    for peer in ("nbformat", "captum", "pytorch_metric_learning", "sklearn"):
        assert re.search(rf"^{peer}: (?!MISSING)", environment, re.MULTILINE), environment
    assert sorted(p.name for p in tmp_path.iterdir()) == ["environment.txt", "summary.txt"]


def test_notebook_times_prints_each_part_as_it_ends_then_the_notebook() -> None:
    proc = subprocess.run([sys.executable, "benchmarks/notebook_times.py", "--grading", "--parts", "example"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    part = re.compile(r"^ +\d+\.\d s wall +\d+\.\d s cpu  (.+)$")
    parts = [m.group(1) for m in map(part.match, lines) if m]
    source = ROOT / "assignments" / "source" / "example" / "example.ipynb"
    assert parts == list(dict.fromkeys(part for part, _ in notebook_parts(source))), proc.stdout  # in order, once
    assert len(parts) >= 3, parts
    assert re.match(r"^example +grading +\S+ +\d+\.\d+ *$", lines[-1]), proc.stdout  # after its parts, no error
