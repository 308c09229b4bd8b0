"""Sans-IO server reactor of the frame-based protocol (spec §1.5-1.6, §2, §3.7).

The reactor is fed frames (or raw bytes) and answers with typed events
(:mod:`hgwire.wire.events`): run a command, send frames, wait for more input, or a
protocol error. Command output (an iterator of Python objects) is turned into frames
lazily, CBOR-encoded and split at the maximum frame size without copying large payloads.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hgwire.errors import CommandError, FrameError, HgwireError
from hgwire.wire import cbor, streams
from hgwire.wire.events import (
    CommandData,
    CommandDataReceived,
    NoOp,
    ProtocolErrorEvent,
    RunCommand,
    SendFrames,
    ServerEvent,
    WantFrame,
)
from hgwire.wire.frames import (
    DATA_CONTINUATION,
    DATA_EOS,
    DEFAULT_MAX_FRAME_SIZE,
    REQUEST_CONTINUATION,
    REQUEST_HAVE_DATA,
    REQUEST_MORE,
    REQUEST_NEW,
    RESPONSE_CONTINUATION,
    RESPONSE_EOS,
    SETTINGS_CONTINUATION,
    SETTINGS_EOS,
    STREAM_BEGIN,
    STREAM_ENCODED,
    STREAM_END,
    Frame,
    FrameReader,
    FrameType,
    text_output_atom,
)

__all__ = [
    "DEFAULT_SERVER_ENCODINGS",
    "AlternateLocationResponse",
    "EncodedResponse",
    "IndefiniteBytestringResponse",
    "ServerOutputStream",
    "ServerReactor",
    "ServerState",
]

#: The server's content-encoding preference (spec §2.1); the client's order is ignored.
DEFAULT_SERVER_ENCODINGS: tuple[str, ...] = ("zstd-8mb", "zlib", "identity")
#: Default limits (explicit, configurable per reactor).
DEFAULT_MAX_REQUEST_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_IN_FLIGHT = 256

_OK_STATUS = cbor.dumps({b"status": b"ok"})
#: Raw bytes collected before a compressing encoder is called (one call per ~frame).
_COMPRESS_BATCH = 32768


class ServerState(StrEnum):
    """States of the server reactor (spec §3.7)."""

    INITIAL = "initial"
    PROTOCOL_SETTINGS_RECEIVING = "protocol-settings-receiving"
    IDLE = "idle"
    COMMAND_RECEIVING = "command-receiving"
    ERRORED = "errored"


#: The explicit transition table: state -> states it may move to.
TRANSITIONS: dict[ServerState, frozenset[ServerState]] = {
    ServerState.INITIAL: frozenset(
        {ServerState.PROTOCOL_SETTINGS_RECEIVING, ServerState.IDLE, ServerState.ERRORED}
    ),
    ServerState.PROTOCOL_SETTINGS_RECEIVING: frozenset(
        {ServerState.PROTOCOL_SETTINGS_RECEIVING, ServerState.IDLE, ServerState.ERRORED}
    ),
    ServerState.IDLE: frozenset(
        {ServerState.IDLE, ServerState.COMMAND_RECEIVING, ServerState.ERRORED}
    ),
    ServerState.COMMAND_RECEIVING: frozenset(
        {ServerState.IDLE, ServerState.COMMAND_RECEIVING, ServerState.ERRORED}
    ),
    ServerState.ERRORED: frozenset({ServerState.ERRORED}),
}


# --- special response objects ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncodedResponse:
    """Bytes that are already CBOR; sent as they are (Mercurial's ``encodedresponse``)."""

    data: bytes | memoryview


#: An indefinite-length byte string built from chunks (spec §3.3, ``rawstorefiledata``).
IndefiniteBytestringResponse = cbor.IndefiniteBytes


@dataclass(frozen=True, slots=True)
class AlternateLocationResponse:
    """A content redirect (spec §3.6); only valid as the first and only object."""

    url: bytes
    mediatype: bytes
    size: int | None = None
    fullhashes: list[list[bytes]] | None = None
    fullhashseed: bytes | None = None
    serverdercerts: list[bytes] | None = None
    servercadercerts: list[bytes] | None = None

    def location(self) -> dict[bytes, Any]:
        """The ``location`` map of the redirect status."""
        loc: dict[bytes, Any] = {b"url": self.url, b"mediatype": self.mediatype}
        for name in ("size", "fullhashes", "fullhashseed", "serverdercerts", "servercadercerts"):
            value = getattr(self, name)
            if value is not None:
                loc[name.encode("ascii")] = value
        return loc

    def encode_status(self) -> bytes:
        """The CBOR redirect status map, keys in 6.0's order.

        6.0 sorts map keys by (type name, value) and names the optional keys with a
        ``bytes`` subclass, so ``url``/``mediatype`` come before the optional keys.
        """
        loc = self.location()
        first = sorted(k for k in loc if k in (b"url", b"mediatype"))
        rest = sorted(k for k in loc if k not in (b"url", b"mediatype"))
        parts = [bytes([0xA0 + len(loc)])]
        for key in first + rest:
            parts.append(cbor.dumps(key))
            parts.append(cbor.dumps(loc[key]))
        status = cbor.dumps({b"status": b"redirect"})[1:]
        return b"\xa2" + cbor.dumps(b"location") + b"".join(parts) + status


# --- output streams --------------------------------------------------------------------------


#: The server's output streams are :class:`~hgwire.wire.streams.OutputStream` objects.
ServerOutputStream = streams.OutputStream


# --- request bookkeeping ---------------------------------------------------------------------


@dataclass(slots=True)
class _Receiving:
    payload: list[bytes] = field(default_factory=list)
    data: list[bytes] | None = None
    request_done: bool = False
    expecting_data: bool = False
    size: int = 0
    stream: CommandData | None = None


def _error_text(exc: BaseException) -> str:
    """Mercurial's ``forcebytestr(e)`` of an exception whose message is bytes, as text."""
    text = str(exc)
    return repr(text.encode("utf-8", "surrogateescape"))


class ServerReactor:
    """Server side of the frame protocol as a sans-IO state machine (spec §3.7).

    Usage::

        reactor = ServerReactor(defer_output=True)      # HTTP: half-duplex
        for event in reactor.receive_data(body):
            if isinstance(event, RunCommand):
                stream = reactor.output_stream()
                objs = run(event.command, event.args)   # iterator of Python objects
                out = reactor.on_command_response_objects(stream, event.request_id, objs)
            elif isinstance(event, ProtocolErrorEvent):
                ...                                     # reply with event.message
        final = reactor.on_input_eof()                  # SendFrames or NoOp
        if isinstance(final, SendFrames):
            for chunk in final.iter_chunks():
                write(chunk)

    ``defer_output`` holds every response until :meth:`on_input_eof`; otherwise each
    ``on_*`` call returns :class:`SendFrames` at once. Violations put the reactor in the
    ``errored`` state and return :class:`ProtocolErrorEvent`; nothing raises.
    """

    def __init__(
        self,
        *,
        defer_output: bool = False,
        encodings: Sequence[str] = DEFAULT_SERVER_ENCODINGS,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        stream_command_data: bool = False,
        answer_empty_output: bool = False,
    ) -> None:
        self.defer_output = defer_output
        self.encodings = tuple(encodings)
        self.max_frame_size = max_frame_size
        self.max_request_size = max_request_size
        self.max_in_flight = max_in_flight
        self.stream_command_data = stream_command_data
        #: A command without output objects gets no frame at all in 6.0 (its client never
        #: sees a status); with this set it gets ``{status: ok}`` and ``eos``.
        self.answer_empty_output = answer_empty_output
        self._state = ServerState.INITIAL
        self._next_stream_id = 2
        self._deferred: list[Iterator[Frame]] = []
        self._incoming_streams: set[int] = set()
        self._receiving: dict[int, _Receiving] = {}
        self._active: set[int] = set()
        self._settings_decoder: cbor.Decoder | None = None
        self._settings_values: list[Any] = []
        self._settings_size = 0
        #: Content encodings the client advertised (spec §2.2); default identity.
        self.client_encodings: list[bytes] = [b"identity"]
        self._reader: FrameReader | None = None
        self._handlers: dict[ServerState, Callable[[Frame], ServerEvent]] = {
            ServerState.INITIAL: self._on_initial,
            ServerState.PROTOCOL_SETTINGS_RECEIVING: self._on_protocol_settings,
            ServerState.IDLE: self._on_idle,
            ServerState.COMMAND_RECEIVING: self._on_command_receiving,
            ServerState.ERRORED: self._on_errored,
        }

    # --- state -------------------------------------------------------------------------------

    @property
    def state(self) -> ServerState:
        """The current state."""
        return self._state

    @property
    def incomplete_requests(self) -> list[int]:
        """Request ids still being received (discarded at end of input, like 6.0)."""
        return [rid for rid, e in self._receiving.items() if e.stream is None]

    @property
    def active_requests(self) -> set[int]:
        """Request ids dispatched whose output is not fully generated yet."""
        return set(self._active)

    def _set_state(self, new: ServerState) -> None:
        if new not in TRANSITIONS[self._state]:  # pragma: no cover - internal invariant
            raise AssertionError(f"invalid transition {self._state} -> {new}")
        self._state = new

    def _error(self, message: str, state: ServerState | None = None) -> ProtocolErrorEvent:
        offending = state if state is not None else self._state
        self._state = ServerState.ERRORED
        return ProtocolErrorEvent(message, offending.value)

    def _want(self) -> WantFrame:
        return WantFrame(self._state.value)

    # --- input -------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[ServerEvent]:
        """Feed raw bytes; returns one event per complete frame (h11 style)."""
        if self._reader is None:
            self._reader = FrameReader(self.max_frame_size)
        events: list[ServerEvent] = []
        if self._state is ServerState.ERRORED:
            if data:
                events.append(self._error("server already errored"))
            return events
        try:
            for frame in self._reader.iter_feed(data):
                events.append(self.on_frame(frame))
        except FrameError as e:
            events.append(self._error(str(e)))
        return events

    def on_frame(self, frame: Frame) -> ServerEvent:
        """Process one received frame (the checks of spec §3.7, in 6.0's order)."""
        state = self._state
        if state is ServerState.ERRORED:
            # 6.0 still runs the stream checks first; hgwire answers every frame alike.
            return self._on_errored(frame)
        if not frame.stream_id % 2:
            return self._error(
                f"received frame with even numbered stream ID: {frame.stream_id}", state
            )
        if frame.stream_id not in self._incoming_streams:
            if not frame.stream_flags & STREAM_BEGIN:
                return self._error(
                    "received frame on unknown inactive stream without beginning of "
                    "stream flag set",
                    state,
                )
            self._incoming_streams.add(frame.stream_id)
        if frame.stream_flags & STREAM_ENCODED:
            # 6.0 fails internally (HTTP 500); hgwire reports a protocol error.
            return self._error(
                "received encoded frame from client: request streams must not be encoded",
                state,
            )
        if frame.stream_flags & STREAM_END:
            self._incoming_streams.discard(frame.stream_id)
        if len(frame.payload) > self.max_frame_size:
            return self._error(
                f"frame payload of {len(frame.payload)} bytes exceeds the maximum frame "
                f"size of {self.max_frame_size}",
                state,
            )
        return self._handlers[state](frame)

    def _on_initial(self, frame: Frame) -> ServerEvent:
        if frame.type_id == FrameType.SENDER_PROTOCOL_SETTINGS:
            self._set_state(ServerState.PROTOCOL_SETTINGS_RECEIVING)
            self._settings_decoder = cbor.Decoder()
            self._settings_values = []
            return self._on_protocol_settings(frame)
        if frame.type_id == FrameType.COMMAND_REQUEST:
            self._set_state(ServerState.IDLE)
            return self._on_idle(frame)
        return self._error(
            f"expected sender protocol settings or command request frame; got {frame.type_id}"
        )

    def _on_protocol_settings(self, frame: Frame) -> ServerEvent:
        if frame.type_id != FrameType.SENDER_PROTOCOL_SETTINGS:
            return self._error(f"expected sender protocol settings frame; got {frame.type_id}")
        more = frame.flags & SETTINGS_CONTINUATION
        eos = frame.flags & SETTINGS_EOS
        if more and eos:
            return self._error(
                "sender protocol settings frame cannot have both continuation and end of "
                "stream flags set"
            )
        if not more and not eos:
            return self._error(
                "sender protocol settings frame must have continuation or end of stream flag set"
            )
        self._settings_size += len(frame.payload)
        if self._settings_size > self.max_request_size:
            return self._error(
                f"sender protocol settings exceed the maximum size of {self.max_request_size}"
            )
        decoder = self._settings_decoder
        assert decoder is not None
        try:
            self._settings_values.extend(decoder.feed(bytes(frame.payload)))
        except HgwireError as e:
            return self._error(
                "error decoding CBOR from sender protocol settings frame: " + _error_text(e)
            )
        if more:
            return self._want()
        values = self._settings_values
        self._settings_decoder = None
        self._settings_values = []
        if not values:
            return self._error("sender protocol settings frame did not contain CBOR data")
        if len(values) > 1:
            return self._error("sender protocol settings frame contained multiple CBOR values")
        settings = values[0]
        if not isinstance(settings, dict):
            return self._error("sender protocol settings frame did not contain a CBOR map")
        if b"contentencodings" in settings:
            encodings = settings[b"contentencodings"]
            if not isinstance(encodings, list):
                return self._error("sender protocol settings: contentencodings is not a list")
            self.client_encodings = [e for e in encodings if isinstance(e, bytes)]
        self._set_state(ServerState.IDLE)
        return self._want()

    def _check_request_flags(self, frame: Frame) -> ProtocolErrorEvent | None:
        new = frame.flags & REQUEST_NEW
        continuation = frame.flags & REQUEST_CONTINUATION
        if new and continuation:
            return self._error(
                "received command request frame with both new and continuation flags set"
            )
        if not new and not continuation:
            return self._error(
                "received command request frame with neither new nor continuation flags set"
            )
        return None

    def _on_idle(self, frame: Frame) -> ServerEvent:
        if frame.type_id != FrameType.COMMAND_REQUEST:
            return self._error(f"expected command request frame; got {frame.type_id}")
        bad = self._check_request_flags(frame)
        if bad is not None:
            return bad
        rid = frame.request_id
        if rid in self._receiving:
            return self._error(f"request with ID {rid} already received")
        if rid in self._active:
            return self._error(f"request with ID {rid} is already active")
        if not frame.flags & REQUEST_NEW:
            return self._error("received command request frame without new flag set")
        if len(self._receiving) + len(self._active) >= self.max_in_flight:
            return self._error(f"too many requests in flight: the limit is {self.max_in_flight}")
        more = bool(frame.flags & REQUEST_MORE)
        expecting = bool(frame.flags & REQUEST_HAVE_DATA)
        entry = _Receiving(
            payload=[bytes(frame.payload)],
            request_done=not more,
            expecting_data=expecting,
            size=len(frame.payload),
        )
        self._receiving[rid] = entry
        if entry.size > self.max_request_size:
            return self._too_large(rid)
        if not more and not expecting:
            return self._run_command(rid)
        if not more and self.stream_command_data:
            return self._run_command(rid)
        self._set_state(ServerState.COMMAND_RECEIVING)
        return self._want()

    def _too_large(self, rid: int) -> ProtocolErrorEvent:
        return self._error(
            f"request {rid} exceeds the maximum request size of {self.max_request_size} bytes"
        )

    def _on_command_receiving(self, frame: Frame) -> ServerEvent:
        rid = frame.request_id
        if frame.type_id == FrameType.COMMAND_REQUEST:
            if frame.flags & REQUEST_NEW:
                return self._on_idle(frame)
            bad = self._check_request_flags(frame)
            if bad is not None:
                return bad
        entry = self._receiving.get(rid)
        if (
            entry is not None
            and entry.stream is not None
            and frame.type_id == FrameType.COMMAND_DATA
        ):
            return self._stream_data(rid, entry, frame)
        if rid in self._active:
            return self._error(f"received frame for request that is still active: {rid}")
        if entry is None:
            return self._error(f"received frame for request that is not receiving: {rid}")
        if frame.type_id == FrameType.COMMAND_REQUEST:
            more = bool(frame.flags & REQUEST_MORE)
            expecting = bool(frame.flags & REQUEST_HAVE_DATA)
            if entry.request_done:
                return self._error(
                    "received command request frame when request frames were supposedly done"
                )
            if expecting != entry.expecting_data:
                return self._error("mismatch between expect data flag and previous frame")
            entry.payload.append(bytes(frame.payload))
            entry.size += len(frame.payload)
            if entry.size > self.max_request_size:
                return self._too_large(rid)
            if not more:
                entry.request_done = True
                if not expecting or self.stream_command_data:
                    return self._run_command(rid)
            return self._want()
        if frame.type_id == FrameType.COMMAND_DATA:
            if not entry.expecting_data:
                return self._error(
                    f"received command data frame for request that is not expecting data: {rid}"
                )
            if entry.data is None:
                entry.data = []
            entry.data.append(bytes(frame.payload))
            entry.size += len(frame.payload)
            if entry.size > self.max_request_size:
                return self._too_large(rid)
            if frame.flags & DATA_CONTINUATION:
                return self._want()
            if frame.flags & DATA_EOS:
                return self._run_command(rid)
            return self._error("command data frame without flags")
        return self._error(f"received unexpected frame type: {frame.type_id}")

    def _stream_data(self, rid: int, entry: _Receiving, frame: Frame) -> ServerEvent:
        """Data for a command already dispatched (``stream_command_data`` mode)."""
        assert entry.stream is not None
        if frame.flags & DATA_CONTINUATION:
            eos = False
        elif frame.flags & DATA_EOS:
            eos = True
        else:
            return self._error("command data frame without flags")
        entry.stream.feed(bytes(frame.payload), eos)
        if eos:
            del self._receiving[rid]
            if not self._receiving:
                self._set_state(ServerState.IDLE)
        return CommandDataReceived(rid, len(frame.payload), eos)

    def _run_command(self, rid: int) -> ServerEvent:
        entry = self._receiving[rid]
        streaming = entry.expecting_data and self.stream_command_data
        if streaming:
            entry.stream = CommandData(rid)
        else:
            del self._receiving[rid]
        if self._receiving:
            self._set_state(ServerState.COMMAND_RECEIVING)
        else:
            self._set_state(ServerState.IDLE)
        payload = b"".join(entry.payload)
        try:
            values = cbor.Decoder().feed(payload)
        except HgwireError as e:
            # 6.0 lets the decoding error escape (HTTP 500).
            return self._error(f"error decoding CBOR from command request: {e}")
        request = values[0] if values else None
        if not isinstance(request, dict) or b"name" not in request:
            return self._error('command request missing "name" field')
        name = request[b"name"]
        args = request.get(b"args", {})
        redirect = request.get(b"redirect")
        if not isinstance(name, bytes):
            return self._error('command request "name" field is not a byte string')
        if not isinstance(args, dict):
            return self._error('command request "args" field is not a map')
        if redirect is not None and not isinstance(redirect, dict):
            return self._error('command request "redirect" field is not a map')
        self._active.add(rid)
        data: bytes | CommandData | None
        if streaming:
            data = entry.stream
        elif entry.data is not None:
            data = b"".join(entry.data)
        else:
            data = None
        return RunCommand(rid, name, args, redirect, data)

    def _on_errored(self, frame: Frame) -> ServerEvent:
        return self._error("server already errored")

    def on_input_eof(self) -> SendFrames | NoOp | ProtocolErrorEvent:
        """End of input: in half-duplex mode, every held response is sent now (spec §3.7)."""
        if self._reader is not None and self._reader.buffered:
            try:
                self._reader.eof()
            except FrameError as e:
                return self._error(str(e))
        if not self.defer_output or not self._deferred:
            return NoOp()
        gens = self._deferred
        self._deferred = []
        return SendFrames(itertools.chain.from_iterable(gens))

    # --- output ------------------------------------------------------------------------------

    def choose_encoding(self) -> str:
        """The first server-preferred encoding the client listed (spec §2.3).

        6.0 sets no encoder when nothing matches and then crashes mid-response; hgwire
        falls back to ``identity``.
        """
        preference = tuple(name.encode("ascii") for name in self.encodings)
        return streams.choose_encoding(self.client_encodings, preference).decode("ascii")

    def output_stream(self) -> ServerOutputStream:
        """Allocate the next outgoing stream (2, 4, 6, ...) with the chosen encoding."""
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        return streams.OutputStream(stream_id, self.choose_encoding())

    make_output_stream = output_stream

    def _handle_send(self, frames: Iterator[Frame]) -> SendFrames | NoOp:
        if self.defer_output:
            self._deferred.append(frames)
            return NoOp()
        return SendFrames(frames)

    def on_command_response_objects(
        self, stream: ServerOutputStream, request_id: int, objects: Iterable[Any]
    ) -> SendFrames | NoOp:
        """A command's output objects are ready (spec §3.3); frames are made lazily.

        ``objects`` may raise :class:`~hgwire.errors.CommandError` (becomes a status
        error map) or any other exception (becomes an ``error-response`` frame).

        The frames are produced as they are pulled. A compressing stream has one context
        (spec §2.1): send one response's frames completely before another's on the same
        stream, or give each concurrently sent response its own :meth:`output_stream`.
        """
        return self._handle_send(self._response_frames(stream, request_id, iter(objects)))

    def on_server_error(
        self, stream: ServerOutputStream, request_id: int, message: bytes
    ) -> SendFrames | NoOp:
        """Answer ``request_id`` with an ``error-response`` frame of type server."""

        def gen() -> Iterator[Frame]:
            try:
                yield self._error_frame(stream, request_id, message)
            finally:
                self._active.discard(request_id)

        return self._handle_send(gen())

    def on_command_error(
        self,
        stream: ServerOutputStream,
        request_id: int,
        message: bytes,
        args: Sequence[bytes] | None = None,
    ) -> SendFrames | NoOp:
        """Answer ``request_id`` with a ``{status: error}`` map before any output."""

        def gen() -> Iterator[Frame]:
            try:
                yield self._command_error_frame(stream, request_id, message, args)
            finally:
                self._active.discard(request_id)

        return self._handle_send(gen())

    def send_text_output(
        self,
        stream: ServerOutputStream,
        request_id: int,
        atoms: Sequence[tuple[bytes, Sequence[bytes], Sequence[bytes]]],
    ) -> SendFrames | NoOp:
        """A ``text-output`` frame (spec §3.5). Only for peers that accept it (not 6.0)."""
        payload_atoms = [
            text_output_atom(msg.decode("ascii", "replace").encode("ascii"), args, labels)
            for msg, args, labels in atoms
        ]
        payload = cbor.dumps(payload_atoms)
        if len(payload) > self.max_frame_size:
            raise FrameError("text output does not fit in a single frame")
        frame = stream.make_frame(request_id, FrameType.TEXT_OUTPUT, 0, payload)
        return self._handle_send(iter([frame]))

    def send_progress(
        self,
        stream: ServerOutputStream,
        request_id: int,
        topic: bytes,
        pos: int | None,
        total: int | None = None,
        label: bytes | None = None,
        item: bytes | None = None,
    ) -> SendFrames | NoOp:
        """A ``progress`` frame (spec §3.5). Only for peers that accept it (not 6.0)."""
        m: dict[bytes, Any] = {b"topic": topic, b"pos": pos, b"total": total}
        if label is not None:
            m[b"label"] = label
        if item is not None:
            m[b"item"] = item
        frame = stream.make_frame(request_id, FrameType.PROGRESS, 0, cbor.dumps(m))
        return self._handle_send(iter([frame]))

    # --- frame builders ------------------------------------------------------------------------

    def _error_frame(self, stream: ServerOutputStream, request_id: int, msg: bytes) -> Frame:
        limit = max(self.max_frame_size - 64, 0)
        if len(msg) > limit:
            msg = msg[:limit]
        payload = cbor.dumps({b"type": b"server", b"message": [{b"msg": msg}]})
        return stream.make_frame(request_id, FrameType.ERROR_RESPONSE, 0, payload)

    def _command_error_frame(
        self,
        stream: ServerOutputStream,
        request_id: int,
        message: bytes,
        args: Sequence[bytes] | None,
    ) -> Frame:
        err: dict[bytes, Any] = {b"message": message}
        if args:
            err[b"args"] = list(args)
        payload = cbor.dumps({b"status": b"error", b"error": err})
        return stream.make_frame(request_id, FrameType.COMMAND_RESPONSE, RESPONSE_EOS, payload)

    def _response_frames(
        self, stream: ServerOutputStream, rid: int, objects: Iterator[Any]
    ) -> Iterator[Frame]:
        """The frames of one response, produced as the objects are (spec §3.3, §2.5)."""
        emitter = _Emitter(stream, rid, self.max_frame_size)
        add = emitter.add
        emitted = False
        redirected = False
        try:
            while True:
                try:
                    obj = next(objects)
                except StopIteration:
                    yield from emitter.finish()
                    if not emitted and self.answer_empty_output:
                        yield from _ok_frames(stream, rid)
                        emitted = True
                    if emitted:
                        yield from _eos_frames(stream, rid, self.max_frame_size)
                    return
                except CommandError as e:
                    if emitted:
                        yield from emitter.abort()
                    yield self._command_error_frame(stream, rid, e.message, e.msgargs)
                    return
                except Exception as e:
                    if emitted:
                        yield from emitter.abort()
                    yield self._error_frame(stream, rid, _exc_bytes(e))
                    return
                try:
                    if emitted and not redirected and type(obj) in _PLAIN_TYPES:
                        # Hot path: a plain value after the status (no generator per value).
                        pieces = add(obj)
                        if pieces is not None:
                            yield from emitter.emit_pieces(pieces)
                        continue
                    if isinstance(obj, AlternateLocationResponse):
                        if emitted:
                            raise HgwireError(
                                "alternatelocationresponse seen after initial output object"
                            )
                        settings = stream.make_settings_frame(rid)
                        if settings is not None:
                            yield settings
                        payload = obj.encode_status()
                        yield stream.make_frame(
                            rid,
                            FrameType.COMMAND_RESPONSE,
                            RESPONSE_CONTINUATION,
                            stream.encode(payload),
                            encoded=True,
                        )
                        redirected = emitted = True
                        continue
                    if redirected:
                        raise HgwireError("object follows alternatelocationresponse")
                    if not emitted:
                        yield from _ok_frames(stream, rid)
                        emitted = True
                    if isinstance(obj, EncodedResponse):
                        yield from emitter.send_chunks([obj.data])
                    elif isinstance(obj, cbor.IndefiniteBytes):
                        yield from emitter.send_chunks(cbor.iter_indefinite_pieces(obj))
                    else:
                        yield from emitter.send_object(obj)
                except Exception as e:
                    if emitted:
                        yield from emitter.abort()
                    yield self._error_frame(stream, rid, _exc_bytes(e))
                    return
        finally:
            self._active.discard(rid)


def _exc_bytes(exc: BaseException) -> bytes:
    if isinstance(exc, CommandError):
        text = exc.message
        if exc.msgargs:
            with contextlib.suppress(TypeError, ValueError):
                text = text % tuple(exc.msgargs)
        return text
    return str(exc).encode("utf-8", "surrogateescape")


def _ok_frames(stream: ServerOutputStream, rid: int) -> Iterator[Frame]:
    """Stream settings if not sent yet, then ``{status: ok}`` (omitted when the encoder
    returns nothing, spec §2.5)."""
    settings = stream.make_settings_frame(rid)
    if settings is not None:
        yield settings
    ok = stream.encode(_OK_STATUS)
    if ok:
        yield stream.make_frame(
            rid, FrameType.COMMAND_RESPONSE, RESPONSE_CONTINUATION, ok, encoded=True
        )


def _eos_frames(stream: ServerOutputStream, rid: int, maxsize: int) -> Iterator[Frame]:
    """The final frame(s): the encoder flush, ``eos`` on the last (spec §3.3)."""
    payload = stream.flush()
    if not payload:
        yield stream.make_frame(rid, FrameType.COMMAND_RESPONSE, RESPONSE_EOS, b"")
        return
    view = memoryview(payload)
    n = len(payload)
    for offset in range(0, n, maxsize):
        end = offset + maxsize
        flags = RESPONSE_EOS if end >= n else RESPONSE_CONTINUATION
        chunk = payload if n <= maxsize else view[offset:end]
        yield stream.make_frame(rid, FrameType.COMMAND_RESPONSE, flags, chunk, encoded=True)


# --- CBOR pieces at Mercurial's granularity ---------------------------------------------------

#: The server's piece encoder: Mercurial's ``streamencode`` pieces (frozensets as sets).
_append_pieces = cbor.make_piece_appender(frozensets=True)
#: Types :func:`_append_pieces` encodes directly (the per-value hot path).
_PLAIN_TYPES = frozenset({bytes, int, dict, list, tuple, bool, type(None), set, frozenset})


class _Emitter:
    """Coalesces response chunks into frames by 6.0's buffering rules (spec §3.3).

    Chunks larger than a frame are sliced with memoryviews (no copies); small chunks are
    buffered while the total stays below the maximum. An object whose pieces all fit in
    the current frame is buffered in one step; only an object crossing a frame boundary
    is walked piece by piece. Compressing encoders get raw input in batches of about a
    frame (one encoder call per batch, not per piece).
    """

    __slots__ = (
        "_buf",
        "_identity",
        "_maxsize",
        "_pending",
        "_pending_size",
        "_rid",
        "_size",
        "_stream",
    )

    def __init__(self, stream: ServerOutputStream, rid: int, maxsize: int) -> None:
        self._stream = stream
        self._identity = stream.identity
        self._rid = rid
        self._maxsize = maxsize
        self._buf: list[bytes | memoryview] = []
        self._size = 0
        self._pending: list[bytes | memoryview] = []
        self._pending_size = 0

    def _frame(self, payload: bytes | memoryview) -> Frame:
        return self._stream.make_frame(
            self._rid,
            FrameType.COMMAND_RESPONSE,
            RESPONSE_CONTINUATION,
            payload,
            encoded=True,
        )

    def add(self, obj: Any) -> list[bytes | memoryview] | None:
        """Buffer one CBOR value if no frame completes; else return what
        :meth:`emit_pieces` must turn into frames (its pieces, or ``[]``: a batch of
        pending raw input is ready for the encoder)."""
        pieces: list[bytes | memoryview] = []
        _append_pieces(obj, pieces)
        total = sum(map(len, pieces))
        if self._identity:
            if total + self._size < self._maxsize:
                self._buf.extend(pieces)
                self._size += total
                return None
            return pieces
        if total < _COMPRESS_BATCH:
            self._pending.extend(pieces)
            self._pending_size += total
            return [] if self._pending_size >= _COMPRESS_BATCH else None
        return pieces

    def emit_pieces(self, pieces: list[bytes | memoryview]) -> Iterator[Frame]:
        """Frames for what :meth:`add` returned."""
        if self._identity:
            yield from self._emit(pieces)
        elif pieces:
            yield from self.send_chunks(pieces)
        else:
            yield from self._emit_encoded(self._take_pending())

    def send_object(self, obj: Any) -> Iterator[Frame]:
        """Frames completed by one CBOR value."""
        pieces = self.add(obj)
        if pieces is not None:
            yield from self.emit_pieces(pieces)

    def send_chunks(self, chunks: Iterable[bytes | memoryview]) -> Iterator[Frame]:
        """Frames completed by raw (not yet encoded) chunks."""
        if self._stream.identity:
            yield from self._emit(chunks)
            return
        pending = self._pending
        for chunk in chunks:
            n = len(chunk)
            if n >= _COMPRESS_BATCH:
                if pending:
                    yield from self._emit_encoded(self._take_pending())
                yield from self._emit_encoded(chunk)
                continue
            pending.append(chunk)
            self._pending_size += n
            if self._pending_size >= _COMPRESS_BATCH:
                yield from self._emit_encoded(self._take_pending())

    def _take_pending(self) -> bytes:
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        return data

    def _emit_encoded(self, raw: bytes | memoryview) -> Iterator[Frame]:
        encoded = self._stream.encode(raw)
        if encoded:
            yield from self._emit((encoded,))

    def _emit(self, chunks: Iterable[bytes | memoryview]) -> Iterator[Frame]:
        maxsize = self._maxsize
        buf = self._buf
        make = self._frame
        for d in chunks:
            n = len(d)
            if not n:
                continue
            size = self._size
            if n > maxsize:
                if size:
                    payload = b"".join(buf)
                    buf.clear()
                    self._size = 0
                    yield make(payload)
                view = memoryview(d)
                for offset in range(0, n, maxsize):
                    yield make(view[offset : offset + maxsize])
                continue
            if n + size < maxsize:
                buf.append(d)
                self._size = size + n
                continue
            payload = b"".join(buf)
            buf.clear()
            buf.append(d)
            self._size = n
            if size:
                yield make(payload)

    def abort(self) -> Iterator[Frame]:
        """The command failed: drop what is buffered, as 6.0 does (spec §3.4).

        On a compressing stream the compressor has already consumed the buffered output
        and may hold more; dropping it would desynchronise the client's decompressor for
        every later response on the stream, so hgwire sends it (and the compressor's
        flush) before the error instead. Raw input not yet compressed is dropped.
        """
        self._pending.clear()
        self._pending_size = 0
        if self._stream.identity:
            self._buf.clear()
            self._size = 0
            return
        yield from self.finish()
        tail = self._stream.flush()
        if tail:
            yield from self._emit((tail,))
            yield from self.finish()

    def finish(self) -> Iterator[Frame]:
        """Encode what is pending and flush the buffer as one frame."""
        if self._pending:
            yield from self._emit_encoded(self._take_pending())
        if self._buf:
            payload = b"".join(self._buf)
            self._buf.clear()
            self._size = 0
            if payload:
                yield self._frame(payload)
