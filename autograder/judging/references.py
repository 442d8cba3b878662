"""Stored reference outputs for the hidden tests, and their regeneration.

Each assignment's spec module (:mod:`autograder.specs.<assignment>`) declares
``SPECS``; the ``cases`` of each spec, drawn with ``REFERENCE_SEED``, and the reference solution's
outputs on them become ``{function_name: [{"inputs": {...}, "output": ...}, ...]}``
(:func:`spec_cases`). The cases are stored in ``autograder/references/<assignment>.pt``
together with the torch, torchvision and NumPy versions and the seed (:data:`META_KEYS`).
``python -m autograder references`` regenerates them and reports which changed beyond the assignment's tolerance;
a function whose cases the stored file lacks (a spec added since) is *added*, not changed (:class:`Regenerated`).
"""

from __future__ import annotations

import functools
import importlib
import platform
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "references"
META_KEYS = ("torch", "torchvision", "numpy", "python", "seed")


def reference_path(assignment: str, directory: Path | None = None) -> Path:
    """``autograder/references/<assignment>.pt`` (or inside ``directory``)."""
    return (directory or REFERENCE_DIR) / f"{assignment}.pt"


@functools.cache
def load_reference(assignment: str) -> dict[str, Any]:
    """The stored ``{"meta": {...}, "cases": {...}}`` of ``assignment``.

    Raises:
        FileNotFoundError: with the command that regenerates it.
    """
    path = reference_path(assignment)
    if not path.exists():
        raise FileNotFoundError(
            f"no reference file {path}; run `python -m autograder references {assignment}`"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def build_reference(assignment: str) -> dict[str, Any]:
    """Compute ``assignment``'s reference cases from its source notebook's solutions."""
    import torchvision

    from autograder.judging.solutions import load_solutions

    module = importlib.import_module(f"autograder.specs.{assignment}")
    cases = spec_cases(module, load_solutions(assignment)) if hasattr(module, "SPECS") else {}
    if hasattr(module, "make_references"):  # cases a Call cannot hold (models, stored as state_dicts)
        cases.update(module.make_references(load_solutions(assignment)))
    meta = {
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "seed": int(module.REFERENCE_SEED),
    }
    return {"meta": meta, "cases": cases}


def spec_cases(module: Any, solutions: Any) -> dict[str, list[dict[str, Any]]]:
    """Stored cases of every spec with ``cases``: inputs drawn with ``REFERENCE_SEED``, reference outputs.

    Each spec draws from its own generator (the seed plus a hash of its name), so adding a spec leaves
    the others' cases unchanged.
    """
    from autograder.judging.toolkit import adapted, clone_args

    cases: dict[str, list[dict[str, Any]]] = {}
    for spec in module.SPECS:
        if spec.cases is None:
            continue
        g = torch.Generator().manual_seed(int(module.REFERENCE_SEED) + zlib.crc32(spec.name.encode()))
        ref = adapted(spec, getattr(solutions, spec.name))
        cases[spec.name] = [
            {"inputs": {"args": call.args, "kwargs": call.kwargs, "label": call.describe()},
             "output": ref(*clone_args(call.args), **clone_args(call.kwargs))}
            for call in spec.cases(g)
        ]
    return cases


def compare_cases(old: dict[str, list], new: dict[str, list], rtol: float, atol: float) -> list[str]:
    """Human-readable differences between two case sets (empty when they agree)."""
    problems = []
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new:
            problems.append(f"{name}: only in the {'new' if name in new else 'stored'} references")
            continue
        if len(old[name]) != len(new[name]):
            problems.append(f"{name}: {len(old[name])} stored cases, {len(new[name])} new")
            continue
        for i, (a, b) in enumerate(zip(old[name], new[name])):
            diff = _max_difference(a, b, rtol, atol)
            if diff:
                problems.append(f"{name}[{i}]: {diff}")
    return problems


@dataclass(frozen=True)
class Regenerated:
    """What :func:`regenerate` wrote, against the file it replaced."""

    path: Path
    new: bool = False  # there was no stored file
    #: functions whose cases the stored file did not hold (a spec added since), with their number of cases
    added: dict[str, int] = field(default_factory=dict)
    #: differences beyond the tolerance in the cases both files hold, and functions only the stored file has
    changes: list[str] = field(default_factory=list)


def regenerate(assignment: str, directory: Path | None = None, write: bool = True) -> Regenerated:
    """Rebuild ``assignment``'s reference file; write it when it is new, has added functions or changed.

    A file unchanged within tolerance keeps its bytes (no churn in the checkout); ``write=False`` (``references
    --check``) only compares and writes nothing.

    Returns:
        The path written; whether there was no stored file before; the functions the stored file did
        not have (added, not changed: a new spec's cases cannot have moved); and the differences
        beyond the assignment's ``REFERENCE_RTOL``/``REFERENCE_ATOL`` in the others (empty: unchanged).
    """
    module = importlib.import_module(f"autograder.specs.{assignment}")
    path = reference_path(assignment, directory)
    new = build_reference(assignment)
    result = Regenerated(path, new=True)
    if path.exists():
        try:
            old = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a corrupt or incompatible file is replaced
            result = Regenerated(path, changes=[f"the stored file could not be read ({type(exc).__name__}); replaced"])
        else:
            added = {name: len(cases) for name, cases in new["cases"].items() if name not in old["cases"]}
            kept = {name: cases for name, cases in new["cases"].items() if name not in added}
            result = Regenerated(path, added=added, changes=compare_cases(
                old["cases"], kept, getattr(module, "REFERENCE_RTOL", 1e-7), getattr(module, "REFERENCE_ATOL", 1e-10)))
    if write and (result.new or result.added or result.changes):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(new, path)
        load_reference.cache_clear()
    return result


def _max_difference(a: Any, b: Any, rtol: float, atol: float) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"keys differ: {sorted(a)} vs {sorted(b)}"
        return "; ".join(d for k in sorted(a) if (d := _max_difference(a[k], b[k], rtol, atol)))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"lengths differ: {len(a)} vs {len(b)}"
        return "; ".join(d for x, y in zip(a, b) if (d := _max_difference(x, y, rtol, atol)))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape:
            return f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
        if not torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True):
            return f"max abs difference {(a.double() - b.double()).abs().max().item():.3g}"
        return ""
    if isinstance(a, float) or isinstance(b, float):
        return "" if abs(a - b) <= atol + rtol * abs(b) else f"{a!r} vs {b!r}"
    return "" if a == b else f"{a!r} vs {b!r}"
