"""Frames of the frame-based protocol: header layout, types, flags and a frame reader.

A frame is an 8-byte header and a payload (spec §1.1): a 24-bit little-endian payload
length, a 16-bit little-endian request id, a stream id, stream flags, and one byte whose
high nibble is the frame type and low nibble the per-type flags.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from hgwire.errors import FrameError

FRAME_HEADER_SIZE = 8
#: Payload size every Mercurial sender keeps to (spec §1.6).
DEFAULT_MAX_FRAME_SIZE = 32768
#: Largest payload the 24-bit length field can describe.
MAX_PAYLOAD_LENGTH = (1 << 24) - 1

# length (low 16 bits), length (high 8 bits), request id, stream id, stream flags, type|flags
_HEADER = struct.Struct("<HBHBBB")


class FrameType(IntEnum):
    """Frame types (spec §1.2)."""

    COMMAND_REQUEST = 0x01
    COMMAND_DATA = 0x02
    COMMAND_RESPONSE = 0x03
    ERROR_RESPONSE = 0x05
    TEXT_OUTPUT = 0x06
    PROGRESS = 0x07
    SENDER_PROTOCOL_SETTINGS = 0x08
    STREAM_SETTINGS = 0x09


class StreamFlag(IntFlag):
    """Stream flags (spec §1.4)."""

    BEGIN = 0x01
    END = 0x02
    ENCODED = 0x04


class CommandRequestFlag(IntFlag):
    """Flags of ``command-request`` frames (spec §1.3)."""

    NEW = 0x01
    CONTINUATION = 0x02
    MORE = 0x04
    HAVE_DATA = 0x08


class CommandDataFlag(IntFlag):
    """Flags of ``command-data`` frames."""

    CONTINUATION = 0x01
    EOS = 0x02


class CommandResponseFlag(IntFlag):
    """Flags of ``command-response`` frames."""

    CONTINUATION = 0x01
    EOS = 0x02


class SettingsFlag(IntFlag):
    """Flags of ``sender-protocol-settings`` and ``stream-settings`` frames."""

    CONTINUATION = 0x01
    EOS = 0x02


#: Names used by the human-readable frame syntax and debug output (spec §1.7).
FRAME_TYPE_NAMES: dict[str, FrameType] = {
    "command-request": FrameType.COMMAND_REQUEST,
    "command-data": FrameType.COMMAND_DATA,
    "command-response": FrameType.COMMAND_RESPONSE,
    "error-response": FrameType.ERROR_RESPONSE,
    "text-output": FrameType.TEXT_OUTPUT,
    "progress": FrameType.PROGRESS,
    "sender-protocol-settings": FrameType.SENDER_PROTOCOL_SETTINGS,
    "stream-settings": FrameType.STREAM_SETTINGS,
}

STREAM_FLAG_NAMES: dict[str, int] = {
    "stream-begin": StreamFlag.BEGIN,
    "stream-end": StreamFlag.END,
    "encoded": StreamFlag.ENCODED,
}

_SETTINGS_FLAG_NAMES: dict[str, int] = {
    "continuation": SettingsFlag.CONTINUATION,
    "eos": SettingsFlag.EOS,
}

#: Per-type flag names (spec §1.3); types without flags map to an empty table.
FRAME_FLAG_NAMES: dict[FrameType, dict[str, int]] = {
    FrameType.COMMAND_REQUEST: {
        "new": CommandRequestFlag.NEW,
        "continuation": CommandRequestFlag.CONTINUATION,
        "more": CommandRequestFlag.MORE,
        "have-data": CommandRequestFlag.HAVE_DATA,
    },
    FrameType.COMMAND_DATA: {
        "continuation": CommandDataFlag.CONTINUATION,
        "eos": CommandDataFlag.EOS,
    },
    FrameType.COMMAND_RESPONSE: {
        "continuation": CommandResponseFlag.CONTINUATION,
        "eos": CommandResponseFlag.EOS,
    },
    FrameType.ERROR_RESPONSE: {},
    FrameType.TEXT_OUTPUT: {},
    FrameType.PROGRESS: {},
    FrameType.SENDER_PROTOCOL_SETTINGS: _SETTINGS_FLAG_NAMES,
    FrameType.STREAM_SETTINGS: _SETTINGS_FLAG_NAMES,
}


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The decoded 8-byte header of a frame."""

    length: int
    request_id: int
    stream_id: int
    stream_flags: int
    type_id: int
    flags: int


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame. ``type_id`` is kept as an ``int`` so unassigned types can be represented.

    ``payload`` may be a ``memoryview`` into a larger buffer, so that splitting a large
    response into frames copies nothing until the frames are written out.
    """

    request_id: int
    stream_id: int
    stream_flags: int
    type_id: int
    flags: int
    payload: bytes | memoryview = b""

    @property
    def frame_type(self) -> FrameType | None:
        """The frame type, or None for an unassigned type number."""
        try:
            return FrameType(self.type_id)
        except ValueError:
            return None

    def header(self) -> bytes:
        """The 8 header bytes."""
        return encode_header(
            len(self.payload),
            self.request_id,
            self.stream_id,
            self.stream_flags,
            self.type_id,
            self.flags,
        )

    def to_bytes(self) -> bytes:
        """Header and payload as one bytes object."""
        return self.header() + bytes(self.payload)

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def chunks(self) -> tuple[bytes, bytes | memoryview]:
        """Header and payload separately, for writers that avoid joining large payloads."""
        return self.header(), self.payload

    def __repr__(self) -> str:
        return (
            f"frame(size={len(self.payload)}; request={self.request_id}; "
            f"stream={self.stream_id}; streamflags={describe_stream_flags(self.stream_flags)}; "
            f"type={describe_type(self.type_id)}; "
            f"flags={describe_flags(self.type_id, self.flags)})"
        )


def encode_header(
    length: int, request_id: int, stream_id: int, stream_flags: int, type_id: int, flags: int
) -> bytes:
    """Pack a frame header (spec §1.1); refuses values that do not fit their fields."""
    if not 0 <= length <= MAX_PAYLOAD_LENGTH:
        raise FrameError(f"frame payload length {length} does not fit in 24 bits")
    if not 0 <= request_id <= 0xFFFF:
        raise FrameError(f"request id {request_id} does not fit in 16 bits")
    if not 0 <= stream_id <= 0xFF:
        raise FrameError(f"stream id {stream_id} does not fit in 8 bits")
    if not 0 <= stream_flags <= 0xFF:
        raise FrameError(f"stream flags {stream_flags} do not fit in 8 bits")
    if not 0 <= type_id <= 0x0F:
        raise FrameError(f"frame type {type_id} does not fit in 4 bits")
    if not 0 <= flags <= 0x0F:
        raise FrameError(f"frame flags {flags} do not fit in 4 bits")
    return _HEADER.pack(
        length & 0xFFFF, length >> 16, request_id, stream_id, stream_flags, (type_id << 4) | flags
    )


def decode_header(data: bytes | bytearray | memoryview, offset: int = 0) -> FrameHeader:
    """Unpack the 8-byte header at ``offset``.

    The length is read as a true 24-bit little-endian number. Mercurial 6.0/7.2 weight the
    third byte by 16384 instead of 65536 (spec §1.1); hgwire parses lengths correctly and
    never sends frames whose third length byte is non-zero to a Mercurial peer.
    """
    if len(data) - offset < FRAME_HEADER_SIZE:
        raise FrameError("received incomplete frame")
    lo, hi, request_id, stream_id, stream_flags, typeflags = _HEADER.unpack_from(data, offset)
    return FrameHeader(
        lo | (hi << 16), request_id, stream_id, stream_flags, typeflags >> 4, typeflags & 0x0F
    )


def describe_type(type_id: int) -> str:
    """The human name of a frame type, or its number."""
    for name, value in FRAME_TYPE_NAMES.items():
        if value == type_id:
            return name
    return str(type_id)


def _describe_bits(value: int, names: dict[str, int]) -> str:
    parts: list[str] = []
    by_value = {v: k for k, v in names.items()}
    bit = 1
    while bit <= value:
        if value & bit:
            parts.append(by_value.get(bit, f"<unknown 0x{bit:02x}>"))
        bit <<= 1
    return "|".join(parts)


def describe_stream_flags(stream_flags: int) -> str:
    """Stream flags as ``|``-joined names, lowest bit first, like Mercurial's repr."""
    return _describe_bits(stream_flags, STREAM_FLAG_NAMES)


def describe_flags(type_id: int, flags: int) -> str:
    """Per-type flags as ``|``-joined names, lowest bit first."""
    try:
        names = FRAME_FLAG_NAMES[FrameType(type_id)]
    except ValueError:
        names = {}
    return _describe_bits(flags, names)


class FrameReader:
    """Sans-IO frame reader: feed bytes, get complete frames.

    Partial frames stay buffered until their remaining bytes arrive. A header announcing a
    payload longer than ``max_payload`` is a :class:`FrameError` at once, before anything is
    allocated for it.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD_LENGTH) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add ``data`` and return every frame it completes, in order."""
        return list(self.iter_feed(data))

    def iter_feed(self, data: bytes | bytearray | memoryview) -> Iterator[Frame]:
        """Like :meth:`feed`, yielding frames one by one."""
        buf = self._buffer
        buf += data
        offset = 0
        end = len(buf)
        try:
            while end - offset >= FRAME_HEADER_SIZE:
                lo, hi, rid, sid, sflags, tf = _HEADER.unpack_from(buf, offset)
                length = lo | (hi << 16)
                if length > self.max_payload:
                    raise FrameError(
                        f"frame length {length} exceeds the maximum of {self.max_payload}"
                    )
                start = offset + FRAME_HEADER_SIZE
                if end - start < length:
                    break
                payload = bytes(buf[start : start + length])
                offset = start + length
                yield Frame(rid, sid, sflags, tf >> 4, tf & 0x0F, payload)
        finally:
            if offset:
                del buf[:offset]

    def eof(self) -> None:
        """Declare the end of input; raises if a partial frame is left (spec §1.1)."""
        remaining = len(self._buffer)
        if remaining == 0:
            return
        if remaining < FRAME_HEADER_SIZE:
            raise FrameError("received incomplete frame")
        header = decode_header(self._buffer)
        got = remaining - FRAME_HEADER_SIZE
        raise FrameError(f"frame length error: expected {header.length}; got {got}")


def read_frames(
    data: bytes | bytearray | memoryview, max_payload: int = MAX_PAYLOAD_LENGTH
) -> list[Frame]:
    """Every frame in ``data``, which must end on a frame boundary."""
    reader = FrameReader(max_payload)
    frames = reader.feed(data)
    reader.eof()
    return frames
