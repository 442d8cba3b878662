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
#: Default size limit of a frame (bytes).
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
    header = _encode(obj, buffers, "result", 0)
    text = json.dumps(header, allow_nan=True, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<Q", len(text)), text, *buffers])


def _encode(obj: Any, buffers: list[bytes], where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    cls = type(obj)
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
        t = obj.detach().to("cpu").contiguous()
        if t.is_conj():
            t = t.resolve_conj()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        buffers.append(raw)
        return {"__tensor__": len(buffers) - 1, "dtype": name, "shape": list(t.shape), "nbytes": len(raw)}
    if cls in (list, tuple):
        items = [_encode(v, buffers, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]
        return items if cls is list else {"__tuple__": items}
    if cls is dict:
        out = {}
        for k, v in obj.items():
            if type(k) is not str:
                raise WireError(f"{where} has a key of type {describe(k)}; only str keys can be sent")
            out[k] = _encode(v, buffers, f"{where}[{k!r}]", depth + 1)
        return {"__dict__": out}
    raise WireError(f"{where} is {describe(obj)}; only tensors, numbers, strings, None and lists, tuples "
                    "and dicts of those can be returned")


def decode(frame: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Decode one frame made by :func:`encode`.

    Raises:
        WireError: the frame is larger than ``max_bytes``, truncated, or not a valid frame.
    """
    if len(frame) > max_bytes:
        raise WireError(f"the message is {len(frame)} bytes; the limit is {max_bytes}")
    if len(frame) < 16 or frame[:8] != MAGIC:
        raise WireError("the message is not a grader wire frame")
    (size,) = struct.unpack("<Q", frame[8:16])
    if size > len(frame) - 16:
        raise WireError("the message's header is truncated")
    try:
        header = json.loads(frame[16:16 + size])
    except (ValueError, RecursionError) as exc:
        raise WireError(f"the message's header is not valid JSON ({exc})") from None
    decoder = _Decoder(memoryview(frame)[16 + size:])
    value = decoder.value(header, 0)
    if decoder.offset != len(decoder.data):
        raise WireError("the message has trailing bytes")
    return value


class _Decoder:
    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.offset = 0
        self.next_index = 0

    def value(self, node: Any, depth: int) -> Any:
        if depth > MAX_DEPTH + 1:
            raise WireError("the message is nested too deeply")
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
                or not all(type(s) is int and 0 <= s for s in shape) or type(nbytes) is not int:
            raise WireError("the message holds a malformed tensor description")
        numel = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if numel * itemsize != nbytes or self.offset + nbytes > len(self.data):
            raise WireError("the message's tensor sizes do not match its data")
        self.next_index += 1
        raw = self.data[self.offset:self.offset + nbytes]
        self.offset += nbytes
        if numel == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape).clone()
