"""The pipe between a sample's judge (the process running the tests) and its solution's process.

Values cross as plain data only (None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset,
nested) and the judge rebuilds each by its exact type: no class, `__eq__` or patched builtin of the solution takes
part in a comparison. Everything else the solution's globals hold stays in its process and reaches the tests as a
`Remote` (a function, a class, an instance made by calling a class): calling one is a call across the pipe, its
equality is identity. A function returning anything else is a `TypeError` naming the type, in the tests.

Frames: a 4-byte little-endian length, a 1-byte kind, then the encoded body (see `encode`).
"""

from __future__ import annotations

import builtins
import os
import struct
from collections import Counter, OrderedDict, defaultdict, deque

# The solution runs in the process that encodes its answers and may patch builtins or `os` there: this module
# keeps its own copies, bound before any sample ran (a patched builtin then breaks only the solution's answers,
# which the judge checks anyway).
globals().update({name: value for name, value in builtins.__dict__.items() if not name.startswith("__")})
_os_write, _os_read = os.write, os.read

_Q = struct.Struct("<q")
_I = struct.Struct("<I")
_D = struct.Struct("<d")
_DD = struct.Struct("<dd")
_LEN = struct.Struct("<I")

# Past this a frame from the solution is refused (the judge exits; the sample is `crashed`).
MAX_FRAME = 256 << 20
MAX_DEPTH = 400
PLAIN = ("None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset (and collections' "
         "Counter, OrderedDict, defaultdict, deque)")
# The plain types: an instance of a subclass of one of them is never sent nor made a handle (it would pass for
# plain data on the solution's side only); the judge names its type in a TypeError instead.
PLAIN_TYPES = (bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset, deque)

# Exit statuses of a judge that stopped without a verdict: the solution's process ended mid-conversation, or
# sent something that is not the protocol.
SOLUTION_ENDED = 72
PROTOCOL_BROKEN = 73

_CONTAINERS = {list: b"l", tuple: b"t", set: b"S", frozenset: b"Z"}
_MAPPINGS = {dict: b"d", Counter: b"C", OrderedDict: b"O", defaultdict: b"D"}
# The exact types `encode` copies; any other value is a handle or Unsendable.
ENCODED_TYPES = frozenset((int, str, type(None), bool, float, bytes, complex, deque, *_CONTAINERS, *_MAPPINGS))
# A defaultdict crosses with its factory when that is one of these (by name); with none otherwise.
_FACTORIES = {"int": int, "float": float, "str": str, "list": list, "dict": dict, "set": set, "tuple": tuple,
              "frozenset": frozenset, "bool": bool, "bytes": bytes, "complex": complex}


class Unsendable(TypeError):
    """A value that is not plain data (its type's name is the message)."""


def encode(value, handle=None) -> bytes:
    out = bytearray()
    _encode(value, out, handle, 0)
    return bytes(out)


def _encode(v, out: bytearray, handle, depth: int) -> None:
    t = type(v)
    if t is int:
        if -(1 << 63) <= v < (1 << 63):
            out += b"i"
            out += _Q.pack(v)
        else:
            size = v.bit_length() // 8 + 1
            out += b"I"
            out += _I.pack(size)
            out += v.to_bytes(size, "little", signed=True)
    elif t is str:
        data = v.encode("utf-8", "surrogatepass")
        out += b"s"
        out += _I.pack(len(data))
        out += data
    elif v is None:
        out += b"N"
    elif t is bool:
        out += b"T" if v else b"F"
    elif t is float:
        out += b"f"
        out += _D.pack(v)
    elif t in _CONTAINERS:
        if depth > MAX_DEPTH:
            raise Unsendable(f"{t.__name__} nested deeper than {MAX_DEPTH} levels")
        out += _CONTAINERS[t]
        out += _I.pack(len(v))
        for item in v:
            _encode(item, out, handle, depth + 1)
    elif t in _MAPPINGS:
        if depth > MAX_DEPTH:
            raise Unsendable(f"dict nested deeper than {MAX_DEPTH} levels")
        out += _MAPPINGS[t]
        if t is defaultdict:
            factory = v.default_factory
            _encode(factory.__name__ if _FACTORIES.get(getattr(factory, "__name__", None)) is factory else None,
                    out, None, depth + 1)
        out += _I.pack(len(v))
        for key, item in dict.items(v):
            _encode(key, out, handle, depth + 1)
            _encode(item, out, handle, depth + 1)
    elif t is deque:
        out += b"Q"
        _encode(v.maxlen, out, None, depth + 1)
        _encode(list(v), out, handle, depth + 1)
    elif t is bytes:
        out += b"b"
        out += _I.pack(len(v))
        out += v
    elif t is complex:
        out += b"c"
        out += _DD.pack(v.real, v.imag)
    else:
        ref = handle(v) if handle is not None else None
        if ref is None:
            raise Unsendable(_type_name(t))
        out += b"h"
        out += _Q.pack(ref)


def _type_name(t) -> str:
    try:
        return str.__str__(type.__getattribute__(t, "__qualname__"))
    except BaseException:  # noqa: BLE001 - a hostile metaclass
        return "object"


class Malformed(ValueError):
    """Bytes that are not an encoded value."""


def decode(data: bytes, resolve=None):
    """The value encoded in `data`, every container rebuilt by its exact type; `resolve(id)` maps handles."""
    value, pos = _decode(data, 0, resolve, 0)
    if pos != len(data):
        raise Malformed("trailing bytes")
    return value


def _decode(data: bytes, pos: int, resolve, depth: int):
    try:
        tag = data[pos]
    except IndexError:
        raise Malformed("truncated") from None
    pos += 1
    if tag == 0x69:  # i
        return _Q.unpack_from(data, pos)[0], pos + 8
    if tag == 0x73:  # s
        size = _I.unpack_from(data, pos)[0]
        end = pos + 4 + size
        if end > len(data):
            raise Malformed("truncated")
        return str(data[pos + 4:end], "utf-8", "surrogatepass"), end
    if tag == 0x4E:  # N
        return None, pos
    if tag == 0x54:  # T
        return True, pos
    if tag == 0x46:  # F
        return False, pos
    if tag == 0x66:  # f
        return _D.unpack_from(data, pos)[0], pos + 8
    if tag in (0x6C, 0x74, 0x53, 0x5A, 0x64, 0x43, 0x4F, 0x44):  # l t S Z d C O D
        if depth > MAX_DEPTH:
            raise Malformed("nested too deep")
        if tag == 0x44:  # D: the factory's name first
            factory, pos = _decode(data, pos, None, depth + 1)
            if factory is not None and (type(factory) is not str or factory not in _FACTORIES):
                raise Malformed("defaultdict factory")
        count = _I.unpack_from(data, pos)[0]
        pos += 4
        if count > len(data) - pos:
            raise Malformed("truncated")
        if tag in (0x64, 0x43, 0x4F, 0x44):
            result = ({0x64: dict, 0x43: Counter, 0x4F: OrderedDict}[tag]() if tag != 0x44
                      else defaultdict(_FACTORIES[factory] if factory else None))
            for _ in range(count):
                key, pos = _decode(data, pos, resolve, depth + 1)
                result[key], pos = _decode(data, pos, resolve, depth + 1)
            return result, pos
        items = []
        for _ in range(count):
            item, pos = _decode(data, pos, resolve, depth + 1)
            items.append(item)
        if tag == 0x6C:
            return items, pos
        return (tuple if tag == 0x74 else set if tag == 0x53 else frozenset)(items), pos
    if tag == 0x49:  # I
        size = _I.unpack_from(data, pos)[0]
        end = pos + 4 + size
        if end > len(data):
            raise Malformed("truncated")
        return int.from_bytes(data[pos + 4:end], "little", signed=True), end
    if tag == 0x62:  # b
        size = _I.unpack_from(data, pos)[0]
        end = pos + 4 + size
        if end > len(data):
            raise Malformed("truncated")
        return bytes(data[pos + 4:end]), end
    if tag == 0x51:  # Q
        maxlen, pos = _decode(data, pos, None, depth + 1)
        items, pos = _decode(data, pos, resolve, depth + 1)
        if (maxlen is not None and type(maxlen) is not int) or type(items) is not list:
            raise Malformed("deque")
        return deque(items, maxlen), pos
    if tag == 0x63:  # c
        real, imag = _DD.unpack_from(data, pos)
        return complex(real, imag), pos + 16
    if tag == 0x68 and resolve is not None:  # h
        return resolve(_Q.unpack_from(data, pos)[0]), pos + 8
    raise Malformed(f"unknown tag {tag}")


def send(fd: int, kind: bytes, body: bytes) -> None:
    frame = memoryview(_LEN.pack(len(body) + 1) + kind + body)
    while frame:
        frame = frame[_os_write(fd, frame):]


def receive(fd: int, limit: int = MAX_FRAME):
    """(kind, body) of the next frame; None at end of input. Raises Malformed past `limit`."""
    header = _read(fd, 4)
    if header is None:
        return None
    size = _LEN.unpack(header)[0]
    if size < 1 or size > limit:
        raise Malformed(f"frame of {size} bytes")
    frame = _read(fd, size)
    if frame is None:
        raise Malformed("truncated frame")
    return frame[:1], frame[1:]


def _read(fd: int, size: int):
    """Exactly `size` bytes; None at end of input before the first byte; Malformed when cut short."""
    data = _os_read(fd, size)  # the usual case: all of it at once
    if not data:
        return None
    if len(data) == size:
        return data
    data = bytearray(data)  # appending to bytes would copy it all every time: quadratic on a big frame
    while len(data) < size:
        chunk = _os_read(fd, size - len(data))
        if not chunk:
            raise Malformed("truncated frame")
        data += chunk
    return bytes(data)
