"""The human-readable one-line frame syntax of Mercurial's debug tools (spec §1.7).

``<requestid> <streamid> <streamflags> <type> <flags> <payload>``: the line is split on
single spaces into at most six fields, so the payload may contain spaces. Ids are decimal;
flag fields are ``|``-joined names or decimal numbers (``0`` for none); the type is a name
or a number. A payload starting with ``cbor:`` is a Python literal (evaluated with
``ast.literal_eval``, never ``eval``) encoded as CBOR; any other payload is the body of a
bytes literal with backslash escapes.

:func:`format_human_frame` prints frames so that :func:`parse_human_frame` gives back the
very same bytes: a payload is shown as ``cbor:<literal>`` only when it is exactly one CBOR
value that re-encodes to the same bytes.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from hgwire.errors import CBORDecodeError, CBOREncodeError, FrameError
from hgwire.wire import cbor
from hgwire.wire.frames import (
    FRAME_FLAG_NAMES,
    FRAME_TYPE_NAMES,
    STREAM_FLAG_NAMES,
    Frame,
    FrameType,
    make_frame,
)

_DECIMAL = re.compile(r"[0-9]+")
_TYPE_BY_ID = {int(v): k for k, v in FRAME_TYPE_NAMES.items()}

# Simple backslash escapes of Python bytes literals.
_SIMPLE_ESCAPES = {
    ord("\\"): 0x5C,
    ord("'"): 0x27,
    ord('"'): 0x22,
    ord("a"): 0x07,
    ord("b"): 0x08,
    ord("f"): 0x0C,
    ord("n"): 0x0A,
    ord("r"): 0x0D,
    ord("t"): 0x09,
    ord("v"): 0x0B,
}
_OCTAL = frozenset(b"01234567")
_HEX = frozenset(b"0123456789abcdefABCDEF")

#: Deepest CBOR nesting printed as a ``cbor:`` literal (Python's parser has its own limit).
_MAX_LITERAL_DEPTH = 64


def _decimal(text: str, what: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise FrameError(f"invalid {what} in human frame: {text!r}")
    return int(text)


def _parse_bits(text: str, names: dict[str, int], what: str) -> int:
    value = 0
    for item in text.split("|"):
        if item in names:
            value |= names[item]
        elif _DECIMAL.fullmatch(item):
            value |= int(item)
        else:
            raise FrameError(f"unknown {what} in human frame: {item!r}")
    return value


def unescape_bytes(text: str) -> bytes:
    """The bytes a Python bytes-literal body denotes (like ``codecs.escape_decode``).

    Characters outside escapes are taken as UTF-8. Unknown escapes such as ``\\q`` stay as
    written; ``\\x`` needs two hex digits; octal escapes above 0o377 are refused.
    """
    raw = text.encode("utf-8")
    if b"\\" not in raw:
        return raw
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        j = raw.find(b"\\", i)
        if j < 0:
            out += raw[i:]
            break
        out += raw[i:j]
        if j + 1 >= n:
            raise FrameError("trailing \\ in human frame payload")
        c = raw[j + 1]
        i = j + 2
        if c in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[c])
        elif c == 0x0A:
            pass  # backslash-newline: line continuation
        elif c == ord("x"):
            digits = raw[i : i + 2]
            if len(digits) != 2 or not all(d in _HEX for d in digits):
                raise FrameError(f"invalid \\x escape at position {j} in human frame payload")
            out.append(int(digits, 16))
            i += 2
        elif c in _OCTAL:
            k = i
            while k < n and k < i + 2 and raw[k] in _OCTAL:
                k += 1
            value = int(raw[i - 1 : k], 8)
            if value > 0xFF:
                raise FrameError(f"octal escape out of range at position {j} in human frame")
            out.append(value)
            i = k
        else:
            out += raw[j:i]
    return bytes(out)


def _escape_for(b: int) -> str:
    if b == 0x5C:
        return "\\\\"
    if 0x20 <= b < 0x7F:
        return chr(b)
    return {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}.get(b, f"\\x{b:02x}")


_ESCAPES = [_escape_for(b) for b in range(256)]


def escape_bytes(data: bytes | bytearray | memoryview) -> str:
    """A bytes-literal body for ``data`` that :func:`unescape_bytes` reads back exactly.

    Printable ASCII stays as is (spaces included), ``\\`` doubles, ``\\n``/``\\r``/``\\t``
    are named and every other byte is ``\\xNN``. A leading ``cbor:`` is escaped so the
    payload is not mistaken for a CBOR literal.
    """
    text = "".join(map(_ESCAPES.__getitem__, bytes(data)))
    if text.startswith("cbor:"):
        text = "\\x63" + text[1:]
    return text


def parse_cbor_literal(text: str) -> bytes:
    """The CBOR encoding of the Python literal ``text`` (the part after ``cbor:``)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise FrameError(f"invalid Python literal in human frame: {exc}") from None
    try:
        return cbor.dumps(value)
    except (CBOREncodeError, TypeError, ValueError, RecursionError) as exc:
        raise FrameError(f"cannot encode human frame payload as CBOR: {exc}") from None


def parse_human_frame(text: str) -> Frame:
    """The frame a human-readable line denotes (spec §1.7).

    Six fields are required; as a convenience a line of five fields (no trailing space)
    means an empty payload. Numbers are plain ASCII decimals (6.0's ``int()`` also takes
    signs, underscores and other scripts' digits). Every value must fit its header field:
    unlike 6.0, flags wider than four bits are refused rather than ORed into the type.
    """
    fields = text.split(" ", 5)
    if len(fields) == 5:
        fields.append("")
    if len(fields) != 6:
        raise FrameError(
            "human frame needs <requestid> <streamid> <streamflags> <type> <flags> "
            f"<payload>: {text!r}"
        )
    rid_text, sid_text, sflags_text, type_text, flags_text, payload_text = fields
    request_id = _decimal(rid_text, "request id")
    stream_id = _decimal(sid_text, "stream id")
    stream_flags = _parse_bits(sflags_text, STREAM_FLAG_NAMES, "stream flag")
    if type_text in FRAME_TYPE_NAMES:
        type_id = int(FRAME_TYPE_NAMES[type_text])
    else:
        type_id = _decimal(type_text, "frame type")
    try:
        flag_names = FRAME_FLAG_NAMES[FrameType(type_id)]
    except ValueError:
        flag_names = {}
    flags = _parse_bits(flags_text, flag_names, "frame flag")
    if payload_text.startswith("cbor:"):
        payload = parse_cbor_literal(payload_text[5:])
    else:
        payload = unescape_bytes(payload_text)
    return make_frame(request_id, stream_id, stream_flags, type_id, flags, payload)


def _format_bits(value: int, names: dict[str, int]) -> str:
    if not value:
        return "0"
    by_value = {int(v): k for k, v in names.items()}
    parts: list[str] = []
    bit = 1
    while bit <= value:
        if value & bit:
            parts.append(by_value.get(bit, str(bit)))
        bit <<= 1
    return "|".join(parts)


def format_human_header(frame: Frame) -> str:
    """``<requestid> <streamid> <streamflags> <type> <flags>`` with names where known."""
    try:
        flag_names = FRAME_FLAG_NAMES[FrameType(frame.type_id)]
    except ValueError:
        flag_names = {}
    type_text = _TYPE_BY_ID.get(frame.type_id, str(frame.type_id))
    return (
        f"{frame.request_id} {frame.stream_id} "
        f"{_format_bits(frame.stream_flags, STREAM_FLAG_NAMES)} {type_text} "
        f"{_format_bits(frame.flags, flag_names)}"
    )


def _is_literal(value: Any, depth: int = 0) -> bool:
    """Whether ``repr(value)`` is a Python literal that evaluates back to ``value``."""
    if depth > _MAX_LITERAL_DEPTH:
        return False
    if value is None or isinstance(value, bool):
        return True
    if type(value) in (int, bytes):
        return True
    if type(value) is list or type(value) is set:
        return all(_is_literal(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(
            _is_literal(k, depth + 1) and _is_literal(v, depth + 1) for k, v in value.items()
        )
    return False


def cbor_literal(payload: bytes | bytearray | memoryview) -> str | None:
    """``payload`` as a Python literal if it is one CBOR value that re-encodes exactly."""
    data = bytes(payload)
    if not data:
        return None
    try:
        value = cbor.loads(data)
    except (CBORDecodeError, RecursionError):
        return None
    if not _is_literal(value):
        return None
    try:
        if cbor.dumps(value) != data:
            return None
    except (CBOREncodeError, RecursionError):
        return None
    return repr(value)


def format_human_frame(frame: Frame, *, decode_cbor: bool = True) -> str:
    """``frame`` in the human syntax; :func:`parse_human_frame` reads it back exactly.

    With ``decode_cbor``, a payload that is exactly one CBOR value prints as
    ``cbor:<literal>``; otherwise (and always without it) as an escaped bytes body.
    """
    literal = cbor_literal(frame.payload) if decode_cbor else None
    payload = f"cbor:{literal}" if literal is not None else escape_bytes(frame.payload)
    return f"{format_human_header(frame)} {payload}"
