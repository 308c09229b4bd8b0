"""CBOR as Mercurial uses it (spec §4).

Placeholder encoder fixing the module's API; the full encoder/decoder replaces it.
"""

from __future__ import annotations

import struct
from typing import Any

from hgwire.errors import CBOREncodeError


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([(major << 5) | value])
    if value < 0x100:
        return bytes([(major << 5) | 24, value])
    if value < 0x10000:
        return bytes([(major << 5) | 25]) + struct.pack(">H", value)
    if value < 0x100000000:
        return bytes([(major << 5) | 26]) + struct.pack(">I", value)
    if value < 0x10000000000000000:
        return bytes([(major << 5) | 27]) + struct.pack(">Q", value)
    raise CBOREncodeError(f"integer too large for CBOR: {value}")


def _sortkey(v: Any) -> tuple[str, Any]:
    return (type(v).__name__, v)


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` exactly as Mercurial's encoder does (sorted keys, sets as tag 258)."""
    if obj is True:
        return b"\xf5"
    if obj is False:
        return b"\xf4"
    if obj is None:
        return b"\xf6"
    if isinstance(obj, int):
        return _head(0, obj) if obj >= 0 else _head(1, -1 - obj)
    if isinstance(obj, bytes | bytearray | memoryview):
        return _head(2, len(obj)) + bytes(obj)
    if isinstance(obj, list | tuple):
        return _head(4, len(obj)) + b"".join(dumps(v) for v in obj)
    if isinstance(obj, dict):
        items = sorted(obj.items(), key=lambda kv: _sortkey(kv[0]))
        return _head(5, len(items)) + b"".join(dumps(k) + dumps(v) for k, v in items)
    if isinstance(obj, set):
        return b"\xd9\x01\x02" + dumps(sorted(obj, key=_sortkey))
    raise CBOREncodeError(f"cannot encode {type(obj).__name__} as CBOR")
