"""Streams and content encodings of the frame protocol (spec §2).

A stream is a one-way series of frames with one id. Its first frame carries
``stream-begin``; a server's output stream may apply a content encoding (``identity``,
``zlib``, ``zstd-8mb``) announced once by a stream-settings frame, after which frames whose
payload went through the encoder carry the ``encoded`` stream flag. There is one
compression context per stream, shared by every response on it: it is flushed at the end
of each response and never finished (spec §2.1), so a decoder keeps one streaming
decompressor per stream and never expects an end of stream.

This module also parses and validates the payloads of sender-protocol-settings (spec
§2.2) and stream-settings (spec §2.4) frames, with Mercurial 6.0's error messages.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, Protocol

import zstandard

from hgwire.errors import CBORDecodeError, EncodingError, ProtocolError
from hgwire.wire import cbor
from hgwire.wire.frames import (
    SETTINGS_EOS,
    STREAM_BEGIN,
    STREAM_ENCODED,
    BytesLike,
    Frame,
    FrameType,
    SettingsFlag,
    StreamFlag,
    make_frame,
)

SENDER_SETTINGS = "sender protocol settings"
STREAM_SETTINGS = "stream encoding settings"

IDENTITY = b"identity"
ZLIB = b"zlib"
ZSTD_8MB = b"zstd-8mb"

#: The server's preference, best first (spec §2.1); the server's order wins (spec §2.3).
SERVER_ENCODING_PREFERENCE: tuple[bytes, ...] = (ZSTD_8MB, ZLIB, IDENTITY)
#: Every profile hgwire can encode and decode.
KNOWN_ENCODINGS = frozenset(SERVER_ENCODING_PREFERENCE)

#: Largest zstd window the ``zstd-8mb`` decoder accepts (spec §2.1).
ZSTD_8MB_MAX_WINDOW = 8 * 1048576
#: zstd compression level of the ``zstd-8mb`` encoder (as 6.0).
ZSTD_8MB_LEVEL = 3

#: Default cap on what decoding one frame's payload may produce.
DEFAULT_MAX_FRAME_OUTPUT = 64 * 1048576

#: Default cap on the CBOR bytes of one settings message (6.0 has none).
DEFAULT_MAX_SETTINGS_SIZE = 65536


# Worst zstd expansion per input byte: an RLE block is 4 bytes and yields up to 128 KiB.
_ZSTD_MAX_RATIO = 32768
# Smallest input slice fed to zstd while an output limit is in force.
_ZSTD_MIN_STEP = 64


def _name(name: bytes | str) -> bytes:
    return name.encode("ascii") if isinstance(name, str) else name


def _show(name: object) -> str:
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    return repr(name)


# ---------------------------------------------------------------------------------------
# Encoders


class Encoder(Protocol):
    """A content encoder: ``encode`` may buffer (return nothing); ``flush`` empties it."""

    name: bytes

    def encode(self, data: BytesLike) -> bytes | memoryview: ...

    def flush(self) -> bytes: ...


class IdentityEncoder:
    """``identity``: bytes pass through unchanged, nothing is copied."""

    name = IDENTITY

    def encode(self, data: BytesLike) -> bytes | memoryview:
        return memoryview(data) if isinstance(data, bytearray) else data

    def flush(self) -> bytes:
        return b""


class ZlibEncoder:
    """``zlib``: one ``compressobj()`` at the default level, ``Z_SYNC_FLUSH`` per flush."""

    name = ZLIB

    def __init__(self) -> None:
        self._compressor = zlib.compressobj()

    def encode(self, data: BytesLike) -> bytes:
        return self._compressor.compress(data)

    def flush(self) -> bytes:
        return self._compressor.flush(zlib.Z_SYNC_FLUSH)


class Zstd8mbEncoder:
    """``zstd-8mb``: one zstd frame per stream at level 3, flushed per block, never ended."""

    name = ZSTD_8MB

    def __init__(self) -> None:
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_8MB_LEVEL).compressobj()

    def encode(self, data: BytesLike) -> bytes:
        return self._compressor.compress(data)

    def flush(self) -> bytes:
        return self._compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


def make_encoder(name: bytes | str) -> Encoder:
    """A fresh encoder for profile ``name``; unknown names are an :class:`EncodingError`."""
    bname = _name(name)
    if bname == IDENTITY:
        return IdentityEncoder()
    if bname == ZLIB:
        return ZlibEncoder()
    if bname == ZSTD_8MB:
        return Zstd8mbEncoder()
    raise EncodingError(f"unknown stream encoder: {_show(bname)}")


# ---------------------------------------------------------------------------------------
# Decoders


class Decoder(Protocol):
    """A streaming content decoder; ``limit`` caps the bytes one call may produce."""

    name: bytes

    def decode(self, data: BytesLike, limit: int | None = None) -> bytes: ...


def _too_much(name: bytes, limit: int) -> EncodingError:
    return EncodingError(f"{_show(name)} decoded output exceeds the limit of {limit} bytes")


class IdentityDecoder:
    """``identity``: the payload is the data."""

    name = IDENTITY

    def decode(self, data: BytesLike, limit: int | None = None) -> bytes:
        if limit is not None and len(data) > limit:
            raise _too_much(self.name, limit)
        return data if isinstance(data, bytes) else bytes(data)


class ZlibDecoder:
    """``zlib``: one ``decompressobj()`` for the stream; output capped without overshoot."""

    name = ZLIB

    def __init__(self) -> None:
        self._decompressor = zlib.decompressobj()

    def decode(self, data: BytesLike, limit: int | None = None) -> bytes:
        d = self._decompressor
        if d.eof:
            if data:
                raise EncodingError("zlib stream continues past its end")
            return b""
        try:
            if limit is None:
                out = d.decompress(data)
            else:
                # One byte more than allowed: getting it proves the limit is exceeded, and
                # getting less means all input was consumed.
                out = d.decompress(data, limit + 1)
                if len(out) > limit:
                    raise _too_much(self.name, limit)
        except zlib.error as exc:
            raise EncodingError(f"zlib decoding failed: {exc}") from None
        if d.eof and d.unused_data:
            raise EncodingError("zlib stream continues past its end")
        return out


class Zstd8mbDecoder:
    """``zstd-8mb``: one streaming decompressor refusing windows over 8 MiB.

    With a limit, input is fed in slices small enough that even the most compressible zstd
    data (RLE blocks) cannot overshoot the limit by more than a couple of MiB.
    """

    name = ZSTD_8MB

    def __init__(self) -> None:
        dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_8MB_MAX_WINDOW)
        self._decompressor = dctx.decompressobj()

    def decode(self, data: BytesLike, limit: int | None = None) -> bytes:
        d = self._decompressor
        if d.eof:
            if data:
                raise EncodingError("zstd-8mb stream continues past its end")
            return b""
        try:
            out = self._decode(data, limit)
        except zstandard.ZstdError as exc:
            raise EncodingError(f"zstd-8mb decoding failed: {exc}") from None
        if d.eof and d.unused_data:
            raise EncodingError("zstd-8mb stream continues past its end")
        return out

    def _decode(self, data: BytesLike, limit: int | None) -> bytes:
        d = self._decompressor
        if limit is None:
            return d.decompress(data)
        view = memoryview(data).cast("B")
        size = len(view)
        parts: list[bytes] = []
        produced = 0
        pos = 0
        while pos < size and not d.eof:
            step = max(_ZSTD_MIN_STEP, (limit - produced) // _ZSTD_MAX_RATIO)
            piece = d.decompress(view[pos : pos + step])
            pos += step
            if piece:
                produced += len(piece)
                if produced > limit:
                    raise _too_much(self.name, limit)
                parts.append(piece)
        if pos < size:
            raise EncodingError("zstd-8mb stream continues past its end")
        return parts[0] if len(parts) == 1 else b"".join(parts)


def make_decoder(name: object, extra_values: Sequence[Any] = ()) -> Decoder:
    """A fresh decoder for profile ``name`` from a stream-settings payload (spec §2.4).

    None of the profiles takes parameters; extra values and unknown names raise
    :class:`EncodingError` with 6.0's messages.
    """
    if isinstance(name, str):
        name = name.encode("ascii", "backslashreplace")
    decoder: Decoder
    if name == IDENTITY:
        label, decoder = "identity", IdentityDecoder()
    elif name == ZLIB:
        label, decoder = "zlib", ZlibDecoder()
    elif name == ZSTD_8MB:
        label, decoder = "zstd8mb", Zstd8mbDecoder()
    else:
        raise EncodingError(f"unknown stream decoder: {_show(name)}")
    if extra_values:
        raise EncodingError(f"{label} decoder received unexpected additional values")
    return decoder


# ---------------------------------------------------------------------------------------
# Choosing an encoding


def choose_encoding(
    client_encodings: Sequence[bytes] | None,
    server_preference: Sequence[bytes] = SERVER_ENCODING_PREFERENCE,
) -> bytes:
    """The profile a server uses for its output stream (spec §2.3).

    Like 6.0: the first of the server's preference found anywhere in the client's list (the
    client's order is ignored); no settings frame means ``[identity]``. Unlike 6.0, which
    sets no encoder and then crashes mid-response, a client listing only unknown names (or
    none) gets ``identity``.
    """
    offered = [IDENTITY] if client_encodings is None else list(client_encodings)
    for name in server_preference:
        if name in offered:
            return name
    return IDENTITY


# ---------------------------------------------------------------------------------------
# Streams


class OutputStream:
    """A stream this side sends on: stream-begin bookkeeping and the content encoder.

    ``encoding`` None means no encoder at all (a client's request stream): nothing is
    encoded and no stream-settings frame is needed. ``active`` is whether the first frame
    (with ``stream-begin``) went out; ``settings_sent`` whether a stream-settings frame
    with ``eos`` did (spec §2.4).
    """

    def __init__(
        self, stream_id: int, encoding: bytes | str | None = None, *, active: bool = False
    ) -> None:
        self.stream_id = stream_id
        self.active = active
        self.settings_sent = False
        #: The profile name as given (``bytes`` or ``str``), None without an encoder.
        self.encoding: bytes | str | None = None
        #: Whether ``encode`` passes data through unchanged (no encoder, or ``identity``).
        self.identity = True
        self._encoder: Encoder | None = None
        if encoding is not None:
            self.set_encoder(encoding)

    def set_encoder(self, name: bytes | str) -> None:
        """Use profile ``name`` from now on."""
        self._encoder = make_encoder(name)
        self.encoding = name
        self.identity = self._encoder.name == IDENTITY

    def encode(self, data: BytesLike) -> bytes | memoryview:
        """Data through the encoder (unchanged without one); may return nothing."""
        if self.identity:
            return memoryview(data) if isinstance(data, bytearray) else data
        assert self._encoder is not None
        return self._encoder.encode(data)

    def flush(self) -> bytes:
        """Everything the encoder still holds, at the end of a response (spec §2.1)."""
        return b"" if self.identity else self._encoder.flush()  # type: ignore[union-attr]

    def make_frame(
        self,
        request_id: int,
        type_id: int,
        flags: int,
        payload: BytesLike,
        *,
        encoded: bool = False,
    ) -> Frame:
        """A frame on this stream: ``stream-begin`` on the first, ``encoded`` on request.

        Marking a frame encoded before stream settings went out is a programming error.
        """
        stream_flags = 0 if self.active else STREAM_BEGIN
        if encoded:
            if not self.settings_sent:
                raise EncodingError(
                    "attempting to send encoded frame without sending stream settings"
                )
            stream_flags |= STREAM_ENCODED
        frame = make_frame(request_id, self.stream_id, stream_flags, type_id, flags, payload)
        self.active = True
        if type_id == FrameType.STREAM_SETTINGS and flags & SETTINGS_EOS:
            self.settings_sent = True
        return frame

    def make_settings_frame(self, request_id: int) -> Frame | None:
        """The stream-settings frame naming the encoder, or None if not (or no more) needed."""
        if self._encoder is None or self.settings_sent:
            return None
        payload = cbor.dumps(self._encoder.name)
        return self.make_frame(request_id, FrameType.STREAM_SETTINGS, SettingsFlag.EOS, payload)


class InputStream:
    """A stream this side receives on: its decoder and output limits.

    Without a decoder, payloads pass through unchanged (as in 6.0). ``max_frame_output``
    caps what one payload may decode to, ``max_total_output`` (None: no cap) what the whole
    stream may; exceeding either is an :class:`EncodingError`.
    """

    def __init__(
        self,
        stream_id: int,
        *,
        max_frame_output: int | None = DEFAULT_MAX_FRAME_OUTPUT,
        max_total_output: int | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.max_frame_output = max_frame_output
        self.max_total_output = max_total_output
        self.total_output = 0
        self._decoder: Decoder | None = None

    @property
    def decoder_name(self) -> bytes | None:
        """The profile in use, None before any stream-settings frame."""
        return None if self._decoder is None else self._decoder.name

    def set_decoder(self, name: object, extra_values: Sequence[Any] = ()) -> None:
        """Use the profile named by a stream-settings payload (spec §2.4)."""
        self._decoder = make_decoder(name, extra_values)

    def _limit(self) -> int | None:
        limit = self.max_frame_output
        if self.max_total_output is not None:
            left = max(0, self.max_total_output - self.total_output)
            limit = left if limit is None else min(limit, left)
        return limit

    def decode(self, payload: BytesLike) -> bytes:
        """One encoded payload decoded, within the limits."""
        limit = self._limit()
        if self._decoder is None:
            if limit is not None and len(payload) > limit:
                raise _too_much(IDENTITY, limit)
            out = payload if isinstance(payload, bytes) else bytes(payload)
        else:
            out = self._decoder.decode(payload, limit)
        self.total_output += len(out)
        return out

    def frame_payload(self, frame: Frame) -> bytes:
        """``frame``'s payload, decoded when it carries the ``encoded`` stream flag."""
        if frame.stream_flags & StreamFlag.ENCODED:
            return self.decode(frame.payload)
        payload = frame.payload
        return payload if isinstance(payload, bytes) else bytes(payload)


def is_encoded(frame: Frame) -> bool:
    """Whether ``frame`` carries the ``encoded`` stream flag (spec §1.4)."""
    return bool(frame.stream_flags & StreamFlag.ENCODED)


# ---------------------------------------------------------------------------------------
# Settings frames (spec §2.2, §2.4)


class SettingsReceiver:
    """Collects the CBOR of a settings message spread over frames (spec §2.2, §2.4).

    ``kind`` is :data:`SENDER_SETTINGS` or :data:`STREAM_SETTINGS`; it names the frame in
    the error messages, which are 6.0's. Each frame needs exactly one of ``continuation``
    and ``eos``; its payload is decoded as it arrives. At ``eos`` the complete values are
    returned (like 6.0, an incomplete trailing value is ignored). Unlike 6.0, the message
    is limited to ``max_size`` bytes.
    """

    def __init__(self, kind: str, *, max_size: int = DEFAULT_MAX_SETTINGS_SIZE) -> None:
        self.kind = kind
        self.max_size = max_size
        self._size = 0
        self._decoder = cbor.Decoder(max_buffer=max(1, max_size))
        self._values: list[Any] = []
        self.done = False

    def add(self, flags: int, payload: BytesLike) -> list[Any] | None:
        """Take one frame's flags and payload; the decoded values at ``eos``, else None."""
        kind = self.kind
        if self.done:
            raise ProtocolError(f"{kind} frame received after end of stream")
        more = flags & SettingsFlag.CONTINUATION
        eos = flags & SettingsFlag.EOS
        if more and eos:
            raise ProtocolError(
                f"{kind} frame cannot have both continuation and end of stream flags set"
            )
        if not more and not eos:
            raise ProtocolError(f"{kind} frame must have continuation or end of stream flag set")
        self._size += len(payload)
        if self._size > self.max_size:
            raise ProtocolError(f"{kind} exceed the limit of {self.max_size} bytes")
        try:
            self._values.extend(self._decoder.feed(payload))
        except CBORDecodeError as exc:
            raise ProtocolError(f"error decoding CBOR from {kind} frame: {exc}") from None
        if more:
            return None
        self.done = True
        if not self._values:
            raise ProtocolError(f"{kind} frame did not contain CBOR data")
        return self._values

    def add_frame(self, frame: Frame) -> list[Any] | None:
        """:meth:`add` for a whole frame."""
        return self.add(frame.flags, frame.payload)


def parse_sender_settings(values: Sequence[Any]) -> list[bytes] | None:
    """The client's content encodings from a decoded sender-protocol-settings message.

    None when the map has no ``contentencodings`` (meaning ``[identity]``, spec §2.2).
    More than one value is refused with 6.0's message; a value that is not a map, or
    encodings that are not an array of byte strings, are refused too (6.0 crashes).
    """
    if len(values) > 1:
        raise ProtocolError(f"{SENDER_SETTINGS} frame contained multiple CBOR values")
    (settings,) = values
    if not isinstance(settings, dict):
        raise ProtocolError(f"{SENDER_SETTINGS} frame did not contain a CBOR map")
    if b"contentencodings" not in settings:
        return None
    encodings = settings[b"contentencodings"]
    if not isinstance(encodings, list) or not all(isinstance(e, bytes) for e in encodings):
        raise ProtocolError(
            f"{SENDER_SETTINGS} frame: contentencodings must be an array of byte strings"
        )
    return encodings


def parse_stream_settings(values: Sequence[Any]) -> tuple[Any, list[Any]]:
    """``(profile name, extra values)`` from a decoded stream-settings message (§2.4)."""
    if not values:
        raise ProtocolError(f"{STREAM_SETTINGS} frame did not contain CBOR data")
    return values[0], list(values[1:])
