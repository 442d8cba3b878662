"""The kernel-to-grader wire format: plain data round-trips; anything else is refused with a clear error."""

from __future__ import annotations

import math
import pickle
import struct
import time

import pytest
import torch

from cs_lib.grading import wire


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


def test_the_deepest_value_encode_sends_decodes_and_one_level_more_does_not() -> None:
    deepest: object = 0
    for _ in range(wire.MAX_DEPTH):
        deepest = [deepest]
    assert wire.decode(wire.encode(deepest)) == deepest
    with pytest.raises(wire.WireError, match="nested more than 16 levels deep"):
        wire.decode(_frame(b"[" * (wire.MAX_DEPTH + 1) + b"0" + b"]" * (wire.MAX_DEPTH + 1)))


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


# -- bounded cost: a hostile frame is refused in milliseconds, with the limit it broke named ----------


def _tensors_frame(count: int) -> bytes:
    nodes = b",".join(b'{"__tensor__":%d,"dtype":"float32","shape":[1],"nbytes":4}' % i for i in range(count))
    return _frame(b"[" + nodes + b"]", b"\0" * (4 * count))


HOSTILE = {
    "list-of-1e6-values": (lambda: _frame(b"[" + b"0," * 999_999 + b"0]"), "values; the limit is 100000"),
    "1e5-tiny-tensors": (lambda: _tensors_frame(100_000), "tensors; the limit is 4096"),
    "10000-levels-deep": (lambda: _frame(b"[" * 10_000 + b"]" * 10_000), "nested more than 16 levels"),
    "dict-of-1e6-keys": (lambda: _frame(b'{"__dict__":{' + b",".join(b'"k%d":0' % i for i in range(1_000_000))
                                        + b"}}"), "values; the limit is 100000"),
    "huge-shape-no-data": (lambda: _frame(b'{"__tensor__":0,"dtype":"float32","shape":[1000000,1000000,1000000],'
                                          b'"nbytes":4000000000000000000}'), "declares more than .* elements"),
    "100-dimensions": (lambda: _frame(b'{"__tensor__":0,"dtype":"float32","shape":[' + b",".join([b"2"] * 100)
                                      + b'],"nbytes":4}'), "100 dimensions; the limit is 32"),
    "5-MB-string": (lambda: _frame(b'"' + b"a" * 5_000_000 + b'"'), "header is 5000002 bytes; the limit is"),
}


def _seconds(fn, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_frames_are_refused_in_milliseconds_with_the_limit_named(name: str) -> None:
    make, message = HOSTILE[name]
    frame = make()
    normal = wire.encode({"ok": True, "output": torch.randn(2, 3, 64, 64),
                          "report": {"training": {f"layer{i}": True for i in range(60)}, "parameters": "0" * 64}})
    normal_seconds = _seconds(lambda: wire.decode(normal), 20)

    def refuse() -> None:
        with pytest.raises(wire.WireError, match=message):
            wire.decode(frame)

    # A ratio against a normal reply decoded here and now, with a 50 ms floor: never an absolute time alone.
    bound = max(0.05, 100 * normal_seconds)
    assert _seconds(refuse, 3) < bound, f"refusing {name} took longer than {bound * 1e3:.1f} ms"


@pytest.mark.parametrize("item, cost", [(0, 1), ("a,b[{}]", 1), (float("nan"), 2), ([], 1), ((0,), 3),
                                        ({"k": 0}, 3), (torch.zeros(1), 6)],
                         ids=["int", "string-with-commas", "nan", "empty-list", "tuple", "dict", "tensor"])
def test_encode_and_decode_count_values_alike_up_to_the_limit(item: object, cost: int) -> None:
    """A list of exactly MAX_NODES values round-trips; one value more is refused by both sides."""
    n = min((wire.MAX_NODES - 1) // cost, wire.MAX_TENSORS)
    value = [item] * n + [0] * (wire.MAX_NODES - 1 - n * cost)
    frame = wire.encode(value)
    assert len(wire.decode(frame)) == len(value)
    with pytest.raises(wire.WireError, match="more than 100000 values"):
        wire.encode([*value, 0])
    (size,) = struct.unpack("<Q", frame[8:16])
    header = b"[0," + frame[17:16 + size]  # the same list with one more value, made without encode
    with pytest.raises(wire.WireError, match="100001 values; the limit is 100000"):
        wire.decode(_frame(header, frame[16 + size:]))


def test_encode_refuses_too_many_dimensions_and_too_long_strings() -> None:
    with pytest.raises(wire.WireError, match="33 dimensions; the grader accepts at most 32"):
        wire.encode(torch.zeros([1] * 33))
    with pytest.raises(wire.WireError, match="the limit is 4194304"):
        wire.encode("x" * (wire.MAX_HEADER_BYTES + 1))
