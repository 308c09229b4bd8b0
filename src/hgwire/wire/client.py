"""Sans-IO client reactor of the frame-based protocol (spec §1.5, §2, §3.3-§3.6, §3.8).

The reactor issues command requests (as frames to send) and is fed the server's frames in
any interleaving across requests and streams. Each stream keeps one persistent decoder;
each request gets a :class:`CommandResponse` fed through a streaming CBOR decoder, and the
caller receives typed events (:mod:`hgwire.wire.events`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from hgwire.errors import CommandError, FrameError, HgwireError
from hgwire.wire import cbor, streams
from hgwire.wire.events import (
    ClientEvent,
    CommandFailed,
    ErrorResponse,
    NoOp,
    Progress,
    ProtocolErrorEvent,
    Redirect,
    ResponseComplete,
    ResponseData,
    ResponseObjects,
    SendFrames,
    TextOutput,
)
from hgwire.wire.frames import (
    DEFAULT_MAX_FRAME_SIZE,
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
    create_command_frames,
    create_sender_protocol_settings_frame,
)

__all__ = ["DEFAULT_CLIENT_ENCODINGS", "ClientReactor", "ClientUsageError", "CommandResponse"]

#: What 6.0 advertises by default (spec §2.2), most preferred first.
DEFAULT_CLIENT_ENCODINGS: tuple[bytes, ...] = (b"zstd-8mb", b"zlib", b"identity")

#: The only redirect media type 6.0 follows (spec §3.6).
REDIRECT_MEDIA_TYPE = b"application/mercurial-cbor"


class ClientUsageError(HgwireError):
    """The caller used the client reactor wrongly (6.0 raises ``ProgrammingError``)."""


def _error_text(exc: BaseException) -> str:
    return repr(str(exc).encode("utf-8", "surrogateescape"))


class CommandResponse:
    """One command request and its response, as the reactor decodes it (spec §3.3).

    Iterating drains the decoded values received so far: the status map first, then the
    command's objects. ``status`` is the status map once known; ``error`` a
    :class:`~hgwire.errors.CommandError` for an error status or error-response frame;
    ``redirect`` the location map of a redirect status; ``complete`` is set at ``eos``.
    """

    def __init__(
        self,
        request_id: int,
        command: bytes,
        args: Mapping[bytes, Any] | None,
        data: bytes | BinaryIO | None = None,
        redirect: Mapping[bytes, Any] | None = None,
        *,
        retain: bool = True,
    ) -> None:
        self.request_id = request_id
        self.command = command
        self.args = dict(args or {})
        self.data = data
        self.redirect_request = redirect
        self.state = "pending"
        self.status: dict[bytes, Any] | None = None
        self.error: CommandError | None = None
        self.server_error: ErrorResponse | None = None
        self.redirect: dict[bytes, Any] | None = None
        self.complete = False
        #: Why the response could not be decoded (bad CBOR, no status map), if it could not.
        self.decode_error: str | None = None
        self.retain = retain
        self._decoder = cbor.Decoder()
        self._values: deque[Any] = deque()

    def __iter__(self) -> Iterator[Any]:
        while self._values:
            yield self._values.popleft()

    def take(self) -> list[Any]:
        """Every value decoded and not taken yet."""
        values = list(self._values)
        self._values.clear()
        return values

    def feed(self, data: bytes) -> list[Any]:
        """Decode response bytes; returns the values they completed."""
        values = self._decoder.feed(data)
        if values and self.retain:
            self._values.extend(values)
        return values

    def finish(self) -> None:
        """The response ended: a partial CBOR value is an error."""
        self._decoder.finish()

    def feed_redirected(self, data: bytes) -> list[Any]:
        """Feed the body fetched from a redirect: plain CBOR values, no status (§3.6)."""
        return self.feed(data)


class ClientReactor:
    """Client side of the frame protocol as a sans-IO state machine (spec §3.8).

    Usage::

        reactor = ClientReactor(content_encodings=[b"zstd-8mb", b"zlib", b"identity"])
        heads, _ = reactor.call_command(b"heads", {})
        known, _ = reactor.call_command(b"known", {b"nodes": [node]})
        body = reactor.flush_commands().to_bytes()     # POST this
        for event in reactor.receive_data(reply):      # any fragmentation
            if isinstance(event, ResponseObjects): ...
        list(heads)  # [{b'status': b'ok'}, [node, ...]]

    ``buffer_sends`` queues commands until :meth:`flush_commands`; otherwise
    :meth:`call_command` returns the frames at once. Without ``multiple_send`` only one
    send is allowed (HTTP: one request body per reactor), as in 6.0.
    """

    def __init__(
        self,
        *,
        buffer_sends: bool = True,
        multiple_send: bool = False,
        content_encodings: Sequence[bytes] | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        retain_objects: bool = True,
        max_decoded_frame_size: int | None = streams.DEFAULT_MAX_FRAME_OUTPUT,
        max_receive_frame_size: int = 1 << 20,
    ) -> None:
        self.buffer_sends = buffer_sends
        self.multiple_send = multiple_send
        self.content_encodings = list(content_encodings) if content_encodings else None
        self.max_frame_size = max_frame_size
        self.retain_objects = retain_objects
        #: Cap on what one encoded payload may decode to (decompression bombs); None: none.
        self.max_decoded_frame_size = max_decoded_frame_size
        #: Largest frame payload :meth:`receive_data` accepts (servers send <= 32768).
        self.max_receive_frame_size = max_receive_frame_size
        self._can_issue = True
        self._can_send = True
        self._settings_sent = False
        self._next_request_id = 1
        self._out = streams.OutputStream(1)
        self._pending: deque[CommandResponse] = deque()
        self._active: dict[int, CommandResponse] = {}
        self._incoming: dict[int, streams.InputStream] = {}
        self._settings_decoders: dict[int, tuple[cbor.Decoder, list[Any]]] = {}
        self._reader: FrameReader | None = None

    # --- sending -------------------------------------------------------------------------------

    @property
    def active_requests(self) -> dict[int, CommandResponse]:
        """Requests sent (or being sent) whose response has not ended."""
        return dict(self._active)

    def call_command(
        self,
        name: bytes,
        args: Mapping[bytes, Any] | None = None,
        data: bytes | BinaryIO | None = None,
        redirect: Mapping[bytes, Any] | None = None,
    ) -> tuple[CommandResponse, SendFrames | NoOp]:
        """Issue a command: request ids 1, 3, 5, ... (spec §1.5).

        Returns the response object and either :class:`NoOp` (queued) or the frames.
        """
        if not self._can_issue:
            raise ClientUsageError("cannot issue new commands")
        request_id = self._next_request_id
        if request_id > 0xFFFF:
            raise ClientUsageError("request ids exhausted on this connection")
        self._next_request_id += 2
        request = CommandResponse(
            request_id, name, args, data, redirect, retain=self.retain_objects
        )
        if self.buffer_sends:
            self._pending.append(request)
            return request, NoOp()
        if not self._can_send:
            raise ClientUsageError("sends cannot be performed on this instance")
        if not self.multiple_send:
            self._can_send = False
            self._can_issue = False
        return request, SendFrames(self._command_frames(request))

    def flush_commands(self) -> SendFrames | NoOp:
        """Send every queued command (settings frame first, spec §2.2)."""
        if not self._pending:
            return NoOp()
        if not self._can_send:
            raise ClientUsageError("sends cannot be performed on this instance")
        if not self.multiple_send:
            self._can_issue = False
            self._can_send = False

        def frames() -> Iterator[Frame]:
            while self._pending:
                yield from self._command_frames(self._pending.popleft())

        return SendFrames(frames())

    def _command_frames(self, request: CommandResponse) -> Iterator[Frame]:
        self._active[request.request_id] = request
        request.state = "sending"
        if not self._settings_sent and self.content_encodings:
            self._settings_sent = True
            yield create_sender_protocol_settings_frame(
                self._out, request.request_id, self.content_encodings
            )
        yield from create_command_frames(
            self._out,
            request.request_id,
            request.command,
            request.args,
            request.data,
            max_frame_size=self.max_frame_size,
            redirect=request.redirect_request,
        )
        request.state = "sent"

    # --- receiving -----------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[ClientEvent]:
        """Feed raw bytes from the server; returns the events of every complete frame."""
        if self._reader is None:
            self._reader = FrameReader(self.max_receive_frame_size)
        events: list[ClientEvent] = []
        try:
            for frame in self._reader.iter_feed(data):
                events.extend(self.on_frame(frame))
        except FrameError as e:
            events.append(ProtocolErrorEvent(str(e), "receiving"))
        return events

    def on_input_eof(self) -> list[ClientEvent]:
        """End of the server's output: a partial frame or unfinished responses are errors."""
        events: list[ClientEvent] = []
        if self._reader is not None:
            try:
                self._reader.eof()
            except FrameError as e:
                events.append(ProtocolErrorEvent(str(e), "receiving"))
        for rid, request in list(self._active.items()):
            if request.state in ("receiving", "sent"):
                events.append(
                    ProtocolErrorEvent(f"response for request {rid} ended prematurely", "eof")
                )
        return events

    def on_frame(self, frame: Frame) -> list[ClientEvent]:
        """Process one frame from the server (spec §3.8, in 6.0's order)."""
        sid = frame.stream_id
        if sid % 2:
            return [_error(f"received frame with odd numbered stream ID: {sid}")]
        stream = self._incoming.get(sid)
        if stream is None:
            if not frame.stream_flags & STREAM_BEGIN:
                return [
                    _error("received frame on unknown stream without beginning of stream flag set")
                ]
            stream = streams.InputStream(sid, max_frame_output=self.max_decoded_frame_size)
            self._incoming[sid] = stream
        payload = frame.payload
        if frame.stream_flags & STREAM_ENCODED:
            try:
                payload = stream.decode(payload)
            except HgwireError as e:
                return [_error(f"error decoding frame payload on stream {sid}: {e}")]
        if frame.stream_flags & STREAM_END:
            del self._incoming[sid]
        type_id = frame.type_id
        if type_id == FrameType.STREAM_SETTINGS:
            return self._on_stream_settings(frame, stream, payload)
        rid = frame.request_id
        request = self._active.get(rid)
        if request is None:
            return [_error(f"received frame for inactive request ID: {rid}")]
        if type_id == FrameType.COMMAND_RESPONSE:
            return self._on_command_response(request, frame.flags, payload)
        if type_id == FrameType.ERROR_RESPONSE:
            return self._on_error_response(request, payload)
        if type_id == FrameType.TEXT_OUTPUT:
            return self._on_text_output(request, payload)
        if type_id == FrameType.PROGRESS:
            return self._on_progress(request, payload)
        # 6.0 raises ProgrammingError ("unhandled frame type").
        return [_error(f"unhandled frame type: {type_id}")]

    def _on_stream_settings(
        self, frame: Frame, stream: streams.InputStream, payload: bytes | memoryview
    ) -> list[ClientEvent]:
        more = frame.flags & SETTINGS_CONTINUATION
        eos = frame.flags & SETTINGS_EOS
        if more and eos:
            return [
                _error(
                    "stream encoding settings frame cannot have both continuation and end of "
                    "stream flags set"
                )
            ]
        if not more and not eos:
            return [
                _error(
                    "stream encoding settings frame must have continuation or end of stream "
                    "flag set"
                )
            ]
        sid = frame.stream_id
        if sid not in self._settings_decoders:
            self._settings_decoders[sid] = (cbor.Decoder(), [])
        decoder, values = self._settings_decoders[sid]
        try:
            values.extend(decoder.feed(bytes(payload)))
        except HgwireError as e:
            return [
                _error("error decoding CBOR from stream encoding settings frame: " + _error_text(e))
            ]
        if more:
            return []
        del self._settings_decoders[sid]
        if not values:
            return [_error("stream encoding settings frame did not contain CBOR data")]
        try:
            stream.set_decoder(values[0], values[1:])
        except HgwireError as e:
            return [_error(f"error setting stream decoder: {e}")]
        return []

    def _on_command_response(
        self, request: CommandResponse, flags: int, payload: bytes | memoryview
    ) -> list[ClientEvent]:
        rid = request.request_id
        eos = bool(flags & RESPONSE_EOS)
        data = payload if isinstance(payload, bytes) else bytes(payload)
        if eos:
            request.state = "received"
            del self._active[rid]
        else:
            request.state = "receiving"
        more = bool(flags & RESPONSE_CONTINUATION)
        events: list[ClientEvent] = [ResponseData(rid, data, eos, more)]
        if data and request.decode_error is None:
            try:
                values = request.feed(data)
            except HgwireError as e:
                request.decode_error = f"error decoding CBOR response to request {rid}: {e}"
                events.append(_error(request.decode_error))
                values = []
            if values:
                events.append(ResponseObjects(rid, values))
                if request.status is None:
                    events.extend(self._on_status(request, values[0]))
        if eos:
            if request.decode_error is None:
                try:
                    request.finish()
                except HgwireError as e:
                    request.decode_error = f"error decoding CBOR response to request {rid}: {e}"
                    events.append(_error(request.decode_error))
            request.complete = True
            events.append(ResponseComplete(rid))
        return events

    def _on_status(self, request: CommandResponse, status: Any) -> list[ClientEvent]:
        rid = request.request_id
        if not isinstance(status, dict) or b"status" not in status:
            request.decode_error = f"response to request {rid} does not start with a status map"
            return [_error(request.decode_error)]
        request.status = status
        kind = status[b"status"]
        if kind == b"ok":
            return []
        if kind == b"error":
            err = status.get(b"error")
            err = err if isinstance(err, dict) else {}
            message = err.get(b"message", b"")
            args = err.get(b"args") or []
            if not isinstance(message, bytes):
                message = repr(message).encode("utf-8")
            args = [a for a in args if isinstance(a, bytes)] if isinstance(args, list) else []
            request.error = CommandError(message, args)
            return [CommandFailed(rid, message, args)]
        if kind == b"redirect":
            location = status.get(b"location")
            if not isinstance(location, dict):
                return [_error(f"redirect response to request {rid} has no location")]
            request.redirect = location
            return [Redirect(rid, location)]
        request.decode_error = f"unknown status in response to request {rid}: {kind!r}"
        return [_error(request.decode_error)]

    def _decode_map(self, payload: bytes | memoryview) -> Any:
        values = cbor.Decoder().feed(bytes(payload))
        return values[0] if values else None

    def _on_error_response(
        self, request: CommandResponse, payload: bytes | memoryview
    ) -> list[ClientEvent]:
        rid = request.request_id
        request.state = "errored"
        del self._active[rid]
        try:
            m = self._decode_map(payload)
        except HgwireError as e:
            return [_error(f"error decoding CBOR from error response frame: {e}")]
        if not isinstance(m, dict):
            return [_error("error response frame did not contain a CBOR map")]
        event = ErrorResponse(rid, m.get(b"type", b""), m.get(b"message"))
        request.server_error = event
        request.complete = True
        return [event]

    def _on_text_output(
        self, request: CommandResponse, payload: bytes | memoryview
    ) -> list[ClientEvent]:
        try:
            atoms = self._decode_map(payload)
        except HgwireError as e:
            return [_error(f"error decoding CBOR from text output frame: {e}")]
        if not isinstance(atoms, list):
            return [_error("text output frame did not contain a CBOR array")]
        return [TextOutput(request.request_id, atoms)]

    def _on_progress(
        self, request: CommandResponse, payload: bytes | memoryview
    ) -> list[ClientEvent]:
        try:
            m = self._decode_map(payload)
        except HgwireError as e:
            return [_error(f"error decoding CBOR from progress frame: {e}")]
        if not isinstance(m, dict) or not isinstance(m.get(b"topic"), bytes):
            return [_error("progress frame did not contain a map with a topic")]
        return [
            Progress(
                request.request_id,
                m[b"topic"],
                m.get(b"pos"),
                m.get(b"total"),
                m.get(b"label"),
                m.get(b"item"),
            )
        ]


def _error(message: str) -> ProtocolErrorEvent:
    return ProtocolErrorEvent(message, "receiving")
