"""Frames of the frame-based protocol: header layout, types, flags and a frame reader.

A frame is an 8-byte header and a payload (spec §1.1): a 24-bit little-endian payload
length, a 16-bit little-endian request id, a stream id, stream flags, and one byte whose
high nibble is the frame type and low nibble the per-type flags.

The frame builders at the end mirror the 6.0 ones (``wireprotoframing.create*``) byte for
byte; they take a stream object (:class:`~hgwire.wire.streams.OutputStream`,
:class:`hgwire.wire.streams.OutputStream`) that adds the stream flags and content encoding.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING, Any, BinaryIO

from hgwire.errors import FrameError
from hgwire.wire import cbor

if TYPE_CHECKING:
    from hgwire.wire.streams import OutputStream

#: Anything frame code accepts as bytes.
BytesLike = bytes | bytearray | memoryview

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


#: Flags as plain ints, for hot paths (``IntFlag`` arithmetic is slow).
STREAM_BEGIN, STREAM_END, STREAM_ENCODED = map(int, StreamFlag)
REQUEST_NEW, REQUEST_CONTINUATION, REQUEST_MORE, REQUEST_HAVE_DATA = map(int, CommandRequestFlag)
DATA_CONTINUATION, DATA_EOS = map(int, CommandDataFlag)
RESPONSE_CONTINUATION, RESPONSE_EOS = map(int, CommandResponseFlag)
SETTINGS_CONTINUATION, SETTINGS_EOS = map(int, SettingsFlag)

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


@dataclass(slots=True)
class Frame:
    """One frame. ``type_id`` is kept as an ``int`` so unassigned types can be represented.

    ``payload`` may be a ``memoryview`` into a larger buffer, so that splitting a large
    response into frames copies nothing until the frames are written out. Treat frames as
    values; the class is not frozen only because frozen dataclasses are several times
    slower to construct, and the reader makes one per frame.
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
        """Header and payload as one bytes object (the payload is copied once)."""
        return b"".join((self.header(), self.payload))

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


def make_frame(
    request_id: int,
    stream_id: int,
    stream_flags: int,
    type_id: int,
    flags: int,
    payload: BytesLike = b"",
) -> Frame:
    """A validated frame: every field must fit its header field (spec §1.1).

    Mercurial 6.0's ``makeframe()`` truncates an oversized length and ORs wide flags into
    the type nibble; hgwire refuses both with a :class:`FrameError`.
    """
    if isinstance(payload, bytearray):
        payload = memoryview(payload)
    encode_header(len(payload), request_id, stream_id, stream_flags, type_id, flags)
    return Frame(request_id, stream_id, stream_flags, type_id, flags, payload)


class FrameReader:
    """Sans-IO frame reader: feed bytes, get complete frames.

    Partial frames stay buffered until their remaining bytes arrive. A header announcing a
    payload longer than ``max_payload`` is a :class:`FrameError` at once, before anything is
    allocated for it; nothing is allocated ahead of the bytes actually received either.

    Each payload is copied exactly once, out of the fed data (or out of the buffer holding a
    frame that arrived in pieces); the bytes of a feed that follow the last complete frame
    are the only ones buffered.
    """

    __slots__ = ("_buffer", "_failed", "max_payload")

    def __init__(self, max_payload: int = MAX_PAYLOAD_LENGTH) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)

    def _check_length(self, length: int) -> None:
        if length > self.max_payload:
            self._failed = True
            raise FrameError(f"frame length {length} exceeds the maximum of {self.max_payload}")

    def feed(self, data: BytesLike) -> list[Frame]:
        """Add ``data`` and return every frame it completes, in order.

        After a :class:`FrameError` the reader refuses further input (the stream is out of
        sync).
        """
        if self._failed:
            raise FrameError("frame reader already failed")
        if type(data) is bytes:
            return self._feed(data)
        if type(data) is memoryview and data.format == "B" and data.c_contiguous:
            return self._feed(data)
        with memoryview(data) as view:
            if not view.c_contiguous:
                return self._feed(view.tobytes())
            with view.cast("B") as flat:
                return self._feed(flat)

    def _feed(self, data: bytes | memoryview) -> list[Frame]:
        frames: list[Frame] = []
        size = len(data)
        pos = 0
        buf = self._buffer
        if buf:
            # Complete the frame that is partly buffered, taking no more of ``data`` than
            # that frame needs.
            have = len(buf)
            if have < FRAME_HEADER_SIZE:
                take = FRAME_HEADER_SIZE - have
                if size < take:
                    buf += data
                    return frames
                buf += data[:take]
                pos = take
                have = FRAME_HEADER_SIZE
                self._check_length(buf[0] | buf[1] << 8 | buf[2] << 16)
            need = FRAME_HEADER_SIZE + (buf[0] | buf[1] << 8 | buf[2] << 16) - have
            if size - pos < need:
                buf += memoryview(data)[pos:] if pos else data
                return frames
            buf += memoryview(data)[pos : pos + need]
            pos += need
            _, _, rid, sid, sflags, tf = _HEADER.unpack_from(buf)
            with memoryview(buf) as bview:
                payload = bytes(bview[FRAME_HEADER_SIZE:])
            buf.clear()
            frames.append(Frame(rid, sid, sflags, tf >> 4, tf & 0x0F, payload))
        unpack = _HEADER.unpack_from
        max_payload = self.max_payload
        append = frames.append
        while size - pos >= FRAME_HEADER_SIZE:
            lo, hi, rid, sid, sflags, tf = unpack(data, pos)
            length = lo | hi << 16
            if length > max_payload:
                self._check_length(length)
            start = pos + FRAME_HEADER_SIZE
            end = start + length
            if end > size:
                break
            body = data[start:end]
            if type(body) is memoryview:  # copied out of the caller's buffer, once
                body = body.tobytes()
            append(Frame(rid, sid, sflags, tf >> 4, tf & 0x0F, body))
            pos = end
        if pos < size:
            # The start of a frame (its header, if complete, was checked above).
            buf += memoryview(data)[pos:] if pos else data
        return frames

    def iter_feed(self, data: BytesLike) -> Iterator[Frame]:
        """Like :meth:`feed`, as an iterator."""
        return iter(self.feed(data))

    def eof(self) -> None:
        """Declare the end of input; raises if a partial frame is left (spec §1.1).

        The messages are Mercurial's ``readframe()`` ones; for a partial header 6.0 also
        embeds the raw zero-filled header bytes, hgwire gives them in hex instead.
        """
        remaining = len(self._buffer)
        if remaining == 0:
            return
        if remaining < FRAME_HEADER_SIZE:
            raise FrameError(
                f"received incomplete frame: got {remaining} bytes: {self._buffer.hex()}"
            )
        header = decode_header(self._buffer)
        got = remaining - FRAME_HEADER_SIZE
        raise FrameError(f"frame length error: expected {header.length}; got {got}")


def read_frames(data: BytesLike, max_payload: int = MAX_PAYLOAD_LENGTH) -> list[Frame]:
    """Every frame in ``data``, which must end on a frame boundary."""
    reader = FrameReader(max_payload)
    frames = reader.feed(data)
    reader.eof()
    return frames


# ---------------------------------------------------------------------------------------
# Frame builders (spec §1.6, §2.4, §3.1-§3.6), mirroring Mercurial 6.0's create* functions.


def _slices(data: bytes | memoryview, size: int) -> Iterator[bytes | memoryview]:
    """``data`` cut into ``size``-byte pieces without copying (memoryview slices)."""
    if len(data) <= size:
        yield data
        return
    view = memoryview(data) if isinstance(data, bytes) else data
    for offset in range(0, len(view), size):
        yield view[offset : offset + size]


def create_command_frames(
    stream: OutputStream,
    request_id: int,
    name: bytes,
    args: Mapping[bytes, Any] | None = None,
    data: BytesLike | BinaryIO | None = None,
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    redirect: Mapping[bytes, Any] | None = None,
) -> Iterator[Frame]:
    """The frames of one command request (spec §1.6, §3.1, §3.2).

    The CBOR map ``{name, args?, redirect?}`` is cut into ``max_frame_size`` slices: the
    first gets ``new``, later ones ``continuation``, and ``more`` is set when a slice is full
    and bytes remain. With ``data`` (``b""`` counts: an empty data section), every request
    frame gets ``have-data`` and command-data frames follow in 32768-byte blocks (always
    the default size, as in 6.0): full blocks get ``continuation``, the last, short or
    empty, gets ``eos``. ``data`` may be a binary file, read block by block.
    """
    request: dict[bytes, Any] = {b"name": name}
    if args:
        request[b"args"] = args
    if redirect:
        request[b"redirect"] = redirect
    encoded = memoryview(cbor.dumps(request))
    have_data = CommandRequestFlag.HAVE_DATA if data is not None else 0
    total = len(encoded)
    offset = 0
    flags: int
    while True:
        flags = CommandRequestFlag.NEW if offset == 0 else CommandRequestFlag.CONTINUATION
        flags |= have_data
        payload = encoded[offset : offset + max_frame_size]
        offset += len(payload)
        more = len(payload) == max_frame_size and offset < total
        if more:
            flags |= CommandRequestFlag.MORE
        yield stream.make_frame(request_id, FrameType.COMMAND_REQUEST, flags, payload)
        if not more:
            break
    if data is None:
        return
    block = DEFAULT_MAX_FRAME_SIZE
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data).cast("B")
        offset = 0
        while True:
            chunk = view[offset : offset + block]
            offset += len(chunk)
            full = len(chunk) == block
            flags = CommandDataFlag.CONTINUATION if full else CommandDataFlag.EOS
            yield stream.make_frame(request_id, FrameType.COMMAND_DATA, flags, chunk)
            if not full:
                return
    while True:
        piece = data.read(block)
        full = len(piece) == block
        flags = CommandDataFlag.CONTINUATION if full else CommandDataFlag.EOS
        yield stream.make_frame(request_id, FrameType.COMMAND_DATA, flags, piece)
        if not full:
            return


def create_sender_protocol_settings_frame(
    stream: OutputStream, request_id: int, encodings: Sequence[bytes]
) -> Frame:
    """The client's settings frame advertising content encodings (spec §2.2), flag ``eos``."""
    payload = cbor.dumps({b"contentencodings": list(encodings)})
    return stream.make_frame(
        request_id, FrameType.SENDER_PROTOCOL_SETTINGS, SettingsFlag.EOS, payload
    )


def create_stream_settings_frame(stream: OutputStream, request_id: int, encoding: bytes) -> Frame:
    """A stream-settings frame naming ``encoding`` (spec §2.4), flag ``eos``.

    ``streams.OutputStream.make_settings_frame`` is the usual way to get one: it knows
    whether the stream still needs it.
    """
    return stream.make_frame(
        request_id, FrameType.STREAM_SETTINGS, SettingsFlag.EOS, cbor.dumps(encoding)
    )


_STATUS_OK = cbor.dumps({b"status": b"ok"})


def create_command_response_ok_frame(stream: OutputStream, request_id: int) -> Frame | None:
    """The ``{status: ok}`` frame opening a successful response (spec §2.5, §3.3).

    Once stream settings were sent the payload goes through the encoder and the frame is
    marked ``encoded``; if the encoder buffers everything, there is no frame (None).
    """
    payload: bytes | memoryview = _STATUS_OK
    encoded = stream.settings_sent
    if encoded:
        payload = stream.encode(payload)
        if not payload:
            return None
    return stream.make_frame(
        request_id,
        FrameType.COMMAND_RESPONSE,
        CommandResponseFlag.CONTINUATION,
        payload,
        encoded=encoded,
    )


def create_command_response_eos_frames(
    stream: OutputStream, request_id: int, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> Iterator[Frame]:
    """The frames ending a response: the encoder flush, ``eos`` on the last (spec §3.3).

    An empty flush gives one empty, unencoded ``eos`` frame.
    """
    payload = stream.flush()
    if not payload:
        yield stream.make_frame(
            request_id, FrameType.COMMAND_RESPONSE, CommandResponseFlag.EOS, b""
        )
        return
    view = memoryview(payload)
    total = len(view)
    offset = 0
    while offset < total:
        chunk = view[offset : offset + max_frame_size]
        offset += len(chunk)
        flags = CommandResponseFlag.EOS if offset == total else CommandResponseFlag.CONTINUATION
        yield stream.make_frame(request_id, FrameType.COMMAND_RESPONSE, flags, chunk, encoded=True)


#: Optional keys of a redirect ``location``, in the order 6.0 adds them (spec §3.6).
REDIRECT_LOCATION_KEYS = (
    b"size",
    b"fullhashes",
    b"fullhashseed",
    b"serverdercerts",
    b"servercadercerts",
)


def create_alternate_location_response_frame(
    stream: OutputStream,
    request_id: int,
    url: bytes,
    mediatype: bytes,
    **optional: Any,
) -> Frame:
    """A ``{status: redirect, location: {...}}`` response frame (spec §3.6).

    ``optional`` takes ``size``, ``fullhashes``, ``fullhashseed``, ``serverdercerts`` and
    ``servercadercerts``; None values are left out. Encoded once settings were sent.
    """
    extra: dict[bytes, Any] = {}
    for key, value in optional.items():
        bkey = key.encode("ascii")
        if bkey not in REDIRECT_LOCATION_KEYS:
            raise FrameError(f"unknown redirect location field: {key}")
        if value is not None:
            extra[bkey] = value
    # 6.0 adds the optional keys as ``bytestr`` (a bytes subclass) and its encoder sorts
    # map keys by (type name, value), so they come after ``mediatype`` and ``url``.
    pairs = [(b"mediatype", mediatype), (b"url", url), *sorted(extra.items())]
    location = bytes([0xA0 | len(pairs)]) + b"".join(
        cbor.dumps(k) + cbor.dumps(v) for k, v in pairs
    )
    payload: bytes | memoryview = (
        b"\xa2"
        + cbor.dumps(b"location")
        + location
        + cbor.dumps(b"status")
        + cbor.dumps(b"redirect")
    )
    encoded = stream.settings_sent
    if encoded:
        payload = stream.encode(payload)
    return stream.make_frame(
        request_id,
        FrameType.COMMAND_RESPONSE,
        CommandResponseFlag.CONTINUATION,
        payload,
        encoded=encoded,
    )


def create_command_error_response(
    stream: OutputStream, request_id: int, message: bytes, args: Sequence[bytes] | None = None
) -> Frame:
    """A command error: one unencoded ``eos`` response frame (spec §3.4 kind 1).

    The payload is ``{status: error, error: {message, args?}}``; ``args`` is left out when
    empty, as 6.0 does.
    """
    error: dict[bytes, Any] = {b"message": message}
    if args:
        error[b"args"] = list(args)
    payload = cbor.dumps({b"status": b"error", b"error": error})
    return stream.make_frame(
        request_id, FrameType.COMMAND_RESPONSE, CommandResponseFlag.EOS, payload
    )


def create_error_frame(
    stream: OutputStream, request_id: int, message: bytes, error_type: bytes = b"server"
) -> Frame:
    """An ``error-response`` frame ``{type, message: [{msg}]}`` (spec §3.4 kind 2).

    6.0 asserts the message fits a frame; hgwire cuts an overlong message instead, so that
    reporting an error never fails.
    """
    limit = DEFAULT_MAX_FRAME_SIZE - 64
    if len(message) > limit:
        message = message[: limit - 3] + b"..."
    payload = cbor.dumps({b"type": error_type, b"message": [{b"msg": message}]})
    return stream.make_frame(request_id, FrameType.ERROR_RESPONSE, 0, payload)


TextAtom = tuple[bytes, Sequence[bytes], Sequence[bytes]]


def text_output_atom(
    msg: bytes, args: Sequence[bytes], labels: Sequence[bytes]
) -> dict[bytes, Any]:
    """One atom of a ``text-output`` payload: arguments forced to UTF-8 (spec §3.5)."""
    item: dict[bytes, Any] = {b"msg": msg}
    if args:
        item[b"args"] = [a.decode("utf-8", "replace").encode("utf-8") for a in args]
    if labels:
        item[b"labels"] = list(labels)
    return item


def create_text_output_frame(
    stream: OutputStream,
    request_id: int,
    atoms: Sequence[TextAtom],
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> Frame:
    """A ``text-output`` frame from ``(format, args, labels)`` atoms (spec §3.5).

    The format must be ASCII and labels ASCII; arguments are forced to UTF-8 (invalid
    sequences become U+FFFD), as 6.0 does. The whole array must fit in one frame. Note that
    6.0 clients cannot handle this frame type (spec §1.2).
    """
    items: list[dict[bytes, Any]] = []
    for atom in atoms:
        try:
            formatting, args, labels = atom
        except (TypeError, ValueError):
            raise FrameError("text output atoms are (format, args, labels) triples") from None
        if not isinstance(formatting, bytes):
            raise FrameError("text output format strings must be bytes")
        if not all(isinstance(a, bytes) for a in args):
            raise FrameError("text output arguments must be bytes")
        if not all(isinstance(label, bytes) for label in labels):
            raise FrameError("text output labels must be bytes")
        if not formatting.isascii():
            raise FrameError("text output format strings must be ASCII")
        if not all(label.isascii() for label in labels):
            raise FrameError("text output labels must be ASCII")
        items.append(text_output_atom(formatting, args, labels))
    payload = cbor.dumps(items)
    if len(payload) > max_frame_size:
        raise FrameError("cannot encode data in a single frame")
    return stream.make_frame(request_id, FrameType.TEXT_OUTPUT, 0, payload)


class ResponseEmitter:
    """Turns a command's encoded response chunks into frames (spec §3.3).

    Mirrors 6.0's ``bufferingcommandresponseemitter``: each chunk goes through the stream
    encoder; chunks larger than a frame are sent in ``max_frame_size`` slices (memoryviews,
    no copy) after flushing the buffer; smaller ones are coalesced while the total stays
    strictly under ``max_frame_size``. All frames carry ``continuation`` and ``encoded``.
    """

    def __init__(
        self, stream: OutputStream, request_id: int, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    ) -> None:
        self._stream = stream
        self._request_id = request_id
        self._max = max_frame_size
        self._chunks: list[bytes | memoryview] = []
        self._size = 0

    def send(self, data: BytesLike) -> list[Frame]:
        """Encode ``data`` and return the frames that are complete now."""
        encoded = self._stream.encode(data)
        if not encoded:
            return []
        frames: list[Frame] = []
        if len(encoded) > self._max:
            frames.extend(self.flush())
            for piece in _slices(encoded, self._max):
                frames.append(self._frame(piece))
            return frames
        if len(encoded) + self._size < self._max:
            self._chunks.append(encoded)
            self._size += len(encoded)
            return frames
        frames.extend(self.flush())
        self._chunks.append(encoded)
        self._size = len(encoded)
        return frames

    def flush(self) -> list[Frame]:
        """The buffered chunks as one frame (none when nothing is buffered)."""
        if not self._chunks:
            return []
        chunks = self._chunks
        payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._size = 0
        if not payload:
            return []
        return [self._frame(payload)]

    def _frame(self, payload: bytes | memoryview) -> Frame:
        return self._stream.make_frame(
            self._request_id,
            FrameType.COMMAND_RESPONSE,
            CommandResponseFlag.CONTINUATION,
            payload,
            encoded=True,
        )
