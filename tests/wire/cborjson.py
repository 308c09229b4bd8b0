"""The vectors' typed JSON form of CBOR values (see /work/shared/vectors/README.md).

``null``/``true``/``false``/integers stand for themselves, a JSON string is a byte string
in hex, a JSON array an array, ``{"$map": [[k, v], ...]}`` a map, ``{"$set": [...]}`` a
set and ``{"$chunk": hex, "first": b, "last": b}`` one chunk of an indefinite byte
string. Other ``{"$name": ...}`` objects (reactor vectors) are handed to ``hooks``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hgwire.wire.cbor import BytestringChunk

Hook = Callable[[Any], Any]


def from_json(obj: Any, hooks: Mapping[str, Hook] | None = None) -> Any:
    """Turn typed JSON into the Python value the decoder gives (or the encoder takes)."""
    if obj is None or isinstance(obj, bool | int):
        return obj
    if isinstance(obj, str):
        return bytes.fromhex(obj)
    if isinstance(obj, list):
        return [from_json(v, hooks) for v in obj]
    if isinstance(obj, dict):
        if "$map" in obj:
            return {from_json(k, hooks): from_json(v, hooks) for k, v in obj["$map"]}
        if "$set" in obj:
            return {from_json(v, hooks) for v in obj["$set"]}
        if "$chunk" in obj:
            return BytestringChunk(
                bytes.fromhex(obj["$chunk"]), bool(obj["first"]), bool(obj["last"])
            )
        for name, hook in (hooks or {}).items():
            if name in obj:
                return hook(obj[name])
    raise ValueError(f"not a typed JSON value: {obj!r}")


def to_json(value: Any) -> Any:
    """Turn a Python value into typed JSON (maps in iteration order, sets sorted)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, BytestringChunk):
        return {"$chunk": value.data.hex(), "first": value.first, "last": value.last}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {"$map": [[to_json(k), to_json(v)] for k, v in value.items()]}
    if isinstance(value, set | frozenset):
        items = sorted(value, key=lambda v: (type(v).__name__, v))
        return {"$set": [to_json(v) for v in items]}
    raise ValueError(f"no typed JSON form for {type(value).__name__}")
