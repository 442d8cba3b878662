"""A plain-data wire format that needs no pickle: what a kernel sends back to the grader.

The grading judge (``autograder.judging``) decides every verdict outside the student's kernel, from
results the kernel sends over a socket. Those results are untrusted, so they travel in a format
that can only ever decode to plain data:

- ``None``, ``bool``, ``int``, ``float`` (NaN and infinities included), ``str``;
- ``list``, ``tuple`` and ``dict`` with ``str`` keys, nested at most :data:`MAX_DEPTH` deep;
- dense ``torch.Tensor`` of a numeric or boolean dtype (sent as its raw bytes, on the CPU).

A frame is ``b"DLCVWIRE" + len(header) (8 bytes, little-endian) + header + buffers``: the header is
JSON describing the tree, with tensors as ``{"__tensor__": i, "dtype": ..., "shape": [...]}``
pointing at the ``i``-th buffer. :func:`decode` checks every size against the frame and the
``max_bytes`` limit before it allocates anything, and raises :class:`WireError` on anything
malformed. Nothing is ever unpickled, and no class of the sender's choosing is ever instantiated:
a tensor subclass, an object with a custom ``__eq__`` or ``__reduce__``, a NumPy array or any other
object is refused by :func:`encode` with a message that names it.

A frame is bounded in what it costs to decode, not only in bytes, so that a hostile kernel costs
the judge milliseconds, never seconds (the honest replies decoded by ``tests/test_hidden_test_specs.py``,
``tests/test_network_visualization_grader.py`` and ``tests/test_style_transfer_hidden.py`` use at most
518 values, 21 tensors of at most 4 dimensions, about 55,000 elements, JSON depth 8 and a 6 kB header;
the limits on values, tensors and elements are about 200 times that or more):

- :data:`MAX_NODES` JSON values in the header (a list, a number or a string is one value; a tuple, a
  dict or a non-finite float two; a tensor ``5 + ndim``), counted on the header's bytes before it is
  parsed, so that a list of a million numbers or a dict of a million keys is refused in about 15 ms
  instead of the half second that parsing the dict costs;
- :data:`MAX_TENSORS` tensors, each with at most :data:`MAX_NDIM` dimensions;
- :data:`MAX_DEPTH` levels of nesting (a deeper header stops at the JSON parser's recursion limit or
  at level 17 of the walk, so 10,000 levels cost well under a millisecond);
- :data:`MAX_HEADER_BYTES` of header (long strings);
- ``max_bytes`` elements in all tensors together (each element takes at least one byte of the frame),
  checked on the declared shapes before anything is allocated.

:func:`encode` enforces the same limits, so a function that returns too much gets a message that
says which limit and what to return instead.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import torch

MAGIC = b"DLCVWIRE"
#: Nesting depth of lists, tuples and dicts that a message may have.
MAX_DEPTH = 16
#: Tensors a message may carry.
MAX_TENSORS = 4096
#: Dimensions a tensor may have.
MAX_NDIM = 32
#: JSON values in a message's header (see the module docstring for how they are counted).
MAX_NODES = 100_000
#: Size of a message's header (bytes): the tree, its numbers and strings, without the tensors' data.
MAX_HEADER_BYTES = 4 * 1024 * 1024
#: Default size limit of a frame (bytes); it also bounds the tensors' elements.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

_DTYPES: dict[str, torch.dtype] = {
    str(d).removeprefix("torch."): d
    for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
              torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)
}


class WireError(ValueError):
    """A value that cannot be sent, or a frame that is malformed or too large."""


def describe(obj: Any) -> str:
    """A short description of a value's type for messages: ``"torch.Tensor subclass MyTensor"``."""
    cls = type(obj)
    if isinstance(obj, torch.Tensor) and cls is not torch.Tensor:
        return f"a torch.Tensor subclass ({cls.__module__}.{cls.__qualname__})"
    return f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__qualname__


def encode(obj: Any) -> bytes:
    """Encode plain data as one frame.

    Args:
        obj: plain data as described in the module docstring. Tensors are detached and moved to the CPU.

    Returns:
        The frame's bytes.

    Raises:
        WireError: for any other type (its message names the type and where it was found).
    """
    buffers: list[bytes] = []
    header = _encode(obj, buffers, "result", 0, [0])
    text = json.dumps(header, allow_nan=True, separators=(",", ":")).encode()
    if len(text) > MAX_HEADER_BYTES:
        raise WireError(f"the result's numbers and strings take {len(text)} bytes; the limit is "
                        f"{MAX_HEADER_BYTES} (return tensors, or shorter strings)")
    return b"".join([MAGIC, struct.pack("<Q", len(text)), text, *buffers])


def _encode(obj: Any, buffers: list[bytes], where: str, depth: int, nodes: list[int]) -> Any:
    if depth > MAX_DEPTH:
        raise WireError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    cls = type(obj)
    nodes[0] += 2 if cls in (tuple, dict) or cls is float and not math.isfinite(obj) else 1
    if cls is torch.Tensor:
        nodes[0] += 4 + obj.dim()
    if nodes[0] > MAX_NODES:
        raise WireError(f"the result has more than {MAX_NODES} values (lists, tuples, dicts, numbers, strings) "
                        f"at {where}; return a tensor instead of a long list")
    if obj is None or cls in (bool, int, str):
        return obj
    if cls is float:
        return {"__float__": repr(obj)} if not math.isfinite(obj) else obj
    if cls is torch.Tensor:
        if obj.layout != torch.strided or obj.is_quantized:
            raise WireError(f"{where} is a {obj.layout} tensor; return a dense tensor")
        name = str(obj.dtype).removeprefix("torch.")
        if name not in _DTYPES:
            raise WireError(f"{where} has dtype {obj.dtype}, which the grader does not accept")
        if len(buffers) >= MAX_TENSORS:
            raise WireError(f"more than {MAX_TENSORS} tensors in one message")
        if obj.dim() > MAX_NDIM:
            raise WireError(f"{where} has {obj.dim()} dimensions; the grader accepts at most {MAX_NDIM}")
        t = obj.detach().to("cpu").contiguous()
        if t.is_conj():
            t = t.resolve_conj()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        buffers.append(raw)
        return {"__tensor__": len(buffers) - 1, "dtype": name, "shape": list(t.shape), "nbytes": len(raw)}
    if cls in (list, tuple):
        items = [_encode(v, buffers, f"{where}[{i}]", depth + 1, nodes) for i, v in enumerate(obj)]
        return items if cls is list else {"__tuple__": items}
    if cls is dict:
        out = {}
        for k, v in obj.items():
            if type(k) is not str:
                raise WireError(f"{where} has a key of type {describe(k)}; only str keys can be sent")
            out[k] = _encode(v, buffers, f"{where}[{k!r}]", depth + 1, nodes)
        return {"__dict__": out}
    raise WireError(f"{where} is {describe(obj)}; only tensors, numbers, strings, None and lists, tuples "
                    "and dicts of those can be returned")


def decode(frame: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Decode one frame made by :func:`encode`.

    Every limit of the module docstring is checked before the part of the frame it protects is
    parsed or allocated, so that refusing a frame costs milliseconds.

    Args:
        frame: the frame's bytes.
        max_bytes: the largest frame accepted; the tensors together may hold at most this many elements.

    Raises:
        WireError: the frame is malformed, truncated, or over a limit (the message names the limit).
    """
    if len(frame) > max_bytes:
        raise WireError(f"the message is {len(frame)} bytes; the limit is {max_bytes}")
    if len(frame) < 16 or frame[:8] != MAGIC:
        raise WireError("the message is not a grader wire frame")
    (size,) = struct.unpack("<Q", frame[8:16])
    if size > len(frame) - 16:
        raise WireError("the message's header is truncated")
    text = frame[16:16 + min(size, MAX_HEADER_BYTES)]
    _check_header(text, size)
    try:
        header = json.loads(text)
    except RecursionError:
        raise WireError(f"the message is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        raise WireError(f"the message's header is not valid JSON ({exc})") from None
    decoder = _Decoder(memoryview(frame)[16 + size:], max_elements=max_bytes)
    value = decoder.value(header, 0)
    if decoder.offset != len(decoder.data):
        raise WireError("the message has trailing bytes")
    return value


def _check_header(head: bytes, size: int) -> None:
    """Refuse a header over :data:`MAX_TENSORS`, :data:`MAX_NODES` or :data:`MAX_HEADER_BYTES`.

    ``head`` is the header's first :data:`MAX_HEADER_BYTES` (at most) and ``size`` its length. Only
    ``bytes.count`` over ``head`` and, for a header whose strings hold many commas or brackets, one
    split that drops its strings; never a parse: about 15 ms for a 4 MiB header of numbers, 30 ms for
    one of short strings full of commas.
    """
    tensors = head.count(b'"__tensor__"')  # inside a JSON string a quote is escaped: this counts keys only
    if tensors > MAX_TENSORS:
        raise WireError(f"the message holds at least {tensors} tensors; the limit is {MAX_TENSORS}")
    count = head.count(b",") + head.count(b"[") + head.count(b"{") + 1  # values, strings' commas included
    if count > MAX_NODES:
        count -= head.count(b"[]") + head.count(b"{}")  # an empty container has one value, not two
    if count > MAX_NODES:
        strings = (head.count(b'"') - head.count(b'\\"')) // 2
        if strings // 2 <= MAX_NODES:  # else done: each key has a value, so half the strings are values
            unescaped = head.replace(b"\\\\", b"").replace(b'\\"', b"")
            count = _values(b"".join(unescaped.split(b'"')[0::2]))  # outside the strings only
        else:
            count = strings // 2
    if count > MAX_NODES:
        raise WireError(f"the message holds at least {count} values; the limit is {MAX_NODES}")
    if size > MAX_HEADER_BYTES:
        raise WireError(f"the message's header is {size} bytes; the limit is {MAX_HEADER_BYTES}")


def _values(text: bytes) -> int:
    """JSON values in compact JSON text without strings: one per comma and non-empty container, plus one."""
    return text.count(b",") + text.count(b"[") + text.count(b"{") - text.count(b"[]") - text.count(b"{}") + 1


class _Decoder:
    def __init__(self, data: memoryview, max_elements: int) -> None:
        self.data = data
        self.offset = 0
        self.next_index = 0
        self.elements = 0
        self.max_elements = max_elements

    def value(self, node: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError(f"the message is nested more than {MAX_DEPTH} levels deep")
        if node is None or type(node) in (bool, int, float, str):
            return node
        if type(node) is list:
            return [self.value(v, depth + 1) for v in node]
        if type(node) is not dict or len(node) == 0:
            raise WireError("the message's header holds an unknown node")
        if "__tuple__" in node and len(node) == 1 and type(node["__tuple__"]) is list:
            return tuple(self.value(v, depth + 1) for v in node["__tuple__"])
        if "__dict__" in node and len(node) == 1 and type(node["__dict__"]) is dict:
            return {str(k): self.value(v, depth + 1) for k, v in node["__dict__"].items()}
        if "__float__" in node and len(node) == 1 and node["__float__"] in ("nan", "inf", "-inf"):
            return float(node["__float__"])
        if set(node) == {"__tensor__", "dtype", "shape", "nbytes"}:
            return self.tensor(node)
        raise WireError("the message's header holds an unknown node")

    def tensor(self, node: dict[str, Any]) -> torch.Tensor:
        dtype = _DTYPES.get(node["dtype"]) if type(node["dtype"]) is str else None
        shape, nbytes = node["shape"], node["nbytes"]
        if dtype is None or node["__tensor__"] != self.next_index or type(shape) is not list \
                or type(nbytes) is not int:
            raise WireError("the message holds a malformed tensor description")
        if self.next_index >= MAX_TENSORS:
            raise WireError(f"the message holds more than {MAX_TENSORS} tensors; the limit is {MAX_TENSORS}")
        if len(shape) > MAX_NDIM:
            raise WireError(f"tensor {self.next_index} of the message has {len(shape)} dimensions; "
                            f"the limit is {MAX_NDIM}")
        if not all(type(s) is int and 0 <= s <= self.max_elements for s in shape):
            raise WireError("the message holds a malformed tensor description (a dimension is not an int "
                            f"between 0 and {self.max_elements})")
        numel = 0 if 0 in shape else 1
        for s in shape if numel else ():
            numel *= s  # at most MAX_NDIM factors, each <= max_elements: stop as soon as it is too many
            if self.elements + numel > self.max_elements:
                raise WireError(f"tensor {self.next_index} of the message declares more than "
                                f"{self.max_elements - self.elements} elements; the message's tensors may hold "
                                f"{self.max_elements} elements in all (its size limit)")
        self.elements += numel
        itemsize = torch.empty((), dtype=dtype).element_size()
        if numel * itemsize != nbytes or self.offset + nbytes > len(self.data):
            raise WireError("the message's tensor sizes do not match its data")
        self.next_index += 1
        raw = self.data[self.offset:self.offset + nbytes]
        self.offset += nbytes
        if numel == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape).clone()
