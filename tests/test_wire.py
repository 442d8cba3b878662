"""The kernel-to-grader wire format: plain data round-trips; anything else is refused with a clear error."""

from __future__ import annotations

import math
import pickle
import struct

import pytest
import torch

from cs_lib import wire


def test_plain_data_round_trips_exactly() -> None:
    value = {"t": torch.arange(6, dtype=torch.float64).reshape(2, 3), "b": torch.tensor([True, False]),
             "h": torch.randn(3, dtype=torch.bfloat16), "c": torch.randn(2, dtype=torch.complex64),
             "e": torch.empty(0, 4, dtype=torch.int64), "s": torch.tensor(3.5), "nested": [(1, 2.5, None), "x"],
             "nan": float("nan"), "inf": -math.inf, "flag": True}
    back = wire.decode(wire.encode(value))
    assert set(back) == set(value)
    for key in ("t", "b", "h", "c", "e", "s"):
        assert type(back[key]) is torch.Tensor and back[key].dtype == value[key].dtype
        assert torch.equal(back[key], value[key])
    assert back["nested"] == [(1, 2.5, None), "x"] and type(back["nested"][0]) is tuple
    assert math.isnan(back["nan"]) and back["inf"] == -math.inf and back["flag"] is True


def test_non_contiguous_and_grad_tensors_are_sent_as_values() -> None:
    x = torch.randn(4, 5, requires_grad=True)
    y = (x * 2).t()
    assert torch.equal(wire.decode(wire.encode(y)), y.detach())


class _Subclass(torch.Tensor):
    pass


class _AlwaysEqual(float):
    def __eq__(self, other: object) -> bool:
        return True


class _Reducer:
    def __reduce__(self):  # noqa: ANN204
        return (print, ("never",))


@pytest.mark.parametrize("value", [torch.zeros(2).as_subclass(_Subclass), _AlwaysEqual(1.0), _Reducer(),
                                   {1: 2}, torch.nn.Linear(2, 2), torch.zeros(2).numpy(), {"x": [object()]}],
                         ids=["tensor-subclass", "float-subclass", "reduce", "int-key", "module", "numpy", "object"])
def test_everything_but_plain_data_is_refused_with_its_type_named(value: object) -> None:
    with pytest.raises(wire.WireError, match="only|key|tensor"):
        wire.encode(value)


def test_nesting_depth_is_bounded() -> None:
    deep: list = []
    for _ in range(wire.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(wire.WireError, match="nested"):
        wire.encode(deep)


def _frame(header: bytes, data: bytes = b"") -> bytes:
    return wire.MAGIC + struct.pack("<Q", len(header)) + header + data


@pytest.mark.parametrize("frame", [
    b"", b"not a frame at all", pickle.dumps({"ok": True}), _frame(b"{not json"),
    _frame(b'{"__tensor__": 0, "dtype": "float32", "shape": [1000000], "nbytes": 4000000}', b"\0" * 16),
    _frame(b'{"__tensor__": 0, "dtype": "object", "shape": [1], "nbytes": 8}', b"\0" * 8),
    _frame(b'{"__tensor__": 0, "dtype": "float32", "shape": [-1], "nbytes": 4}', b"\0" * 4),
    _frame(b'{"__class__": "os.system"}'), _frame(b"[1, 2]", b"trailing"),
    wire.MAGIC + struct.pack("<Q", 1 << 40),
], ids=["empty", "text", "pickle", "bad-json", "truncated-tensor", "bad-dtype", "negative-shape", "unknown-node",
        "trailing-bytes", "huge-header"])
def test_malformed_frames_raise_wire_error(frame: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(frame)


def test_frames_over_the_size_limit_are_refused_before_decoding() -> None:
    frame = wire.encode(torch.zeros(1000))
    with pytest.raises(wire.WireError, match="limit"):
        wire.decode(frame, max_bytes=len(frame) - 1)
