"""Unit tests of the server reactor: every state-machine error path (spec §3.7), limits,
output framing (spec §3.3, §2.5), half/full duplex, streaming command data, side channels
and each deliberate difference from Mercurial 6.0."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hgwire.errors import CommandError, FrameError, ProtocolError
from hgwire.wire import cbor
from hgwire.wire.events import (
    CommandData,
    CommandDataReceived,
    NoOp,
    ProtocolErrorEvent,
    ReactorProtocolError,
    RunCommand,
    SendFrames,
    WantFrame,
)
from hgwire.wire.frames import (
    CommandDataFlag,
    CommandRequestFlag,
    CommandResponseFlag,
    Frame,
    FrameType,
    SettingsFlag,
    StreamFlag,
    read_frames,
)
from hgwire.wire.server import (
    TRANSITIONS,
    AlternateLocationResponse,
    EncodedResponse,
    ServerReactor,
    ServerState,
)

BEGIN = StreamFlag.BEGIN
NEW = CommandRequestFlag.NEW
CONT = CommandRequestFlag.CONTINUATION
MORE = CommandRequestFlag.MORE
HAVE_DATA = CommandRequestFlag.HAVE_DATA


def req(
    rid: int,
    flags: int,
    payload: bytes,
    sflags: int = 0,
    stream: int = 1,
    type_id: int = FrameType.COMMAND_REQUEST,
) -> Frame:
    return Frame(rid, stream, sflags, type_id, flags, payload)


def command(name: bytes, args: dict[bytes, Any] | None = None) -> bytes:
    m: dict[bytes, Any] = {b"name": name}
    if args is not None:
        m[b"args"] = args
    return cbor.dumps(m)


def settings(encodings: list[bytes]) -> Frame:
    payload = cbor.dumps({b"contentencodings": encodings})
    return Frame(1, 1, BEGIN, FrameType.SENDER_PROTOCOL_SETTINGS, SettingsFlag.EOS, payload)


def started(**kwargs: Any) -> ServerReactor:
    """A reactor that has seen one complete command (request 1) on stream 1."""
    reactor = ServerReactor(**kwargs)
    event = reactor.on_frame(req(1, NEW, command(b"a"), BEGIN))
    assert isinstance(event, RunCommand)
    return reactor


def expect_error(event: Any, message: str, state: str) -> None:
    assert isinstance(event, ProtocolErrorEvent)
    assert event.message == message
    assert event.state == state


def decode_response(frames: list[Frame]) -> dict[int, list[Any]]:
    """Objects per request of identity-encoded response frames."""
    data: dict[int, bytearray] = {}
    for f in frames:
        if f.type_id == FrameType.COMMAND_RESPONSE:
            data.setdefault(f.request_id, bytearray()).extend(f.payload)
    return {rid: cbor.Decoder().feed(bytes(d)) for rid, d in data.items()}


# --- state machine ---------------------------------------------------------------------------


def test_transition_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(ServerState)
    assert TRANSITIONS[ServerState.ERRORED] == {ServerState.ERRORED}
    for targets in TRANSITIONS.values():
        assert ServerState.ERRORED in targets


@pytest.mark.parametrize(
    ("frames", "message", "state"),
    [
        (
            [req(1, NEW, command(b"a"), BEGIN, stream=2)],
            "received frame with even numbered stream ID: 2",
            "initial",
        ),
        (
            [req(1, NEW, command(b"a"), 0)],
            "received frame on unknown inactive stream without beginning of stream flag set",
            "initial",
        ),
        (
            [req(1, 0, b"", BEGIN, type_id=FrameType.COMMAND_DATA)],
            "expected sender protocol settings or command request frame; got 2",
            "initial",
        ),
        (
            [req(1, 0, b"", BEGIN, type_id=FrameType.SENDER_PROTOCOL_SETTINGS)],
            "sender protocol settings frame must have continuation or end of stream flag set",
            "protocol-settings-receiving",
        ),
        (
            [req(1, 3, b"", BEGIN, type_id=FrameType.SENDER_PROTOCOL_SETTINGS)],
            "sender protocol settings frame cannot have both continuation and end of stream "
            "flags set",
            "protocol-settings-receiving",
        ),
        (
            [req(1, 2, b"", BEGIN, type_id=FrameType.SENDER_PROTOCOL_SETTINGS)],
            "sender protocol settings frame did not contain CBOR data",
            "protocol-settings-receiving",
        ),
        (
            [req(1, 2, b"\x41a\x41b", BEGIN, type_id=FrameType.SENDER_PROTOCOL_SETTINGS)],
            "sender protocol settings frame contained multiple CBOR values",
            "protocol-settings-receiving",
        ),
        (
            [req(1, 2, b"\x61a", BEGIN, type_id=FrameType.SENDER_PROTOCOL_SETTINGS)],
            "error decoding CBOR from sender protocol settings frame: "
            "b'string major type not supported'",
            "protocol-settings-receiving",
        ),
        (
            [
                req(1, 1, b"\xa1", BEGIN, type_id=FrameType.SENDER_PROTOCOL_SETTINGS),
                req(1, NEW, command(b"a")),
            ],
            "expected sender protocol settings frame; got 1",
            "protocol-settings-receiving",
        ),
        (
            [req(1, NEW, command(b"a"), BEGIN), settings([b"identity"])],
            "expected command request frame; got 8",
            "idle",
        ),
        (
            [req(1, NEW | CONT, b"", BEGIN)],
            "received command request frame with both new and continuation flags set",
            "idle",
        ),
        (
            [req(1, 0, b"", BEGIN)],
            "received command request frame with neither new nor continuation flags set",
            "idle",
        ),
        (
            [req(1, NEW, command(b"a"), BEGIN), req(3, CONT, b"x")],
            "received command request frame without new flag set",
            "idle",
        ),
        (
            [req(1, NEW | MORE, b"\xa1", BEGIN), req(1, NEW, command(b"a"))],
            "request with ID 1 already received",
            "command-receiving",
        ),
        (
            [req(1, NEW, command(b"a"), BEGIN), req(1, NEW, command(b"a"))],
            "request with ID 1 is already active",
            "idle",
        ),
        (
            [
                req(1, NEW, command(b"a"), BEGIN),
                req(3, NEW | HAVE_DATA, command(b"b")),
                req(1, CommandDataFlag.EOS, b"x", type_id=FrameType.COMMAND_DATA),
            ],
            "received frame for request that is still active: 1",
            "command-receiving",
        ),
        (
            [
                req(3, NEW | HAVE_DATA, command(b"b"), BEGIN),
                req(5, CommandDataFlag.EOS, b"x", type_id=FrameType.COMMAND_DATA),
            ],
            "received frame for request that is not receiving: 5",
            "command-receiving",
        ),
        (
            [req(1, NEW | HAVE_DATA, command(b"a"), BEGIN), req(1, CONT | HAVE_DATA, b"x")],
            "received command request frame when request frames were supposedly done",
            "command-receiving",
        ),
        (
            [req(1, NEW | MORE | HAVE_DATA, b"\xa1", BEGIN), req(1, CONT, b"x")],
            "mismatch between expect data flag and previous frame",
            "command-receiving",
        ),
        (
            [
                req(1, NEW | MORE, b"\xa1", BEGIN),
                req(1, CommandDataFlag.EOS, b"x", type_id=FrameType.COMMAND_DATA),
            ],
            "received command data frame for request that is not expecting data: 1",
            "command-receiving",
        ),
        (
            [
                req(1, NEW | HAVE_DATA, command(b"a"), BEGIN),
                req(1, 0, b"x", type_id=FrameType.COMMAND_DATA),
            ],
            "command data frame without flags",
            "command-receiving",
        ),
        (
            [req(1, NEW | MORE, b"\xa1", BEGIN), req(1, 0, b"", type_id=FrameType.TEXT_OUTPUT)],
            "received unexpected frame type: 6",
            "command-receiving",
        ),
        (
            [req(1, NEW, cbor.dumps({b"args": {}}), BEGIN)],
            'command request missing "name" field',
            "idle",
        ),
        (
            [req(1, NEW, cbor.dumps([b"name"]), BEGIN)],
            'command request missing "name" field',
            "idle",
        ),
        (
            [req(1, NEW, cbor.dumps({b"name": 1}), BEGIN)],
            'command request "name" field is not a byte string',
            "idle",
        ),
        (
            [req(1, NEW, cbor.dumps({b"name": b"a", b"args": [1]}), BEGIN)],
            'command request "args" field is not a map',
            "idle",
        ),
        (
            [req(1, NEW, b"", BEGIN)],
            'command request missing "name" field',
            "idle",
        ),
    ],
)
def test_error_paths(frames: list[Frame], message: str, state: str) -> None:
    reactor = ServerReactor()
    events = [reactor.on_frame(f) for f in frames]
    expect_error(events[-1], message, state)
    assert not any(isinstance(e, ProtocolErrorEvent) for e in events[:-1])
    assert reactor.state is ServerState.ERRORED
    # Every later frame: "server already errored".
    expect_error(reactor.on_frame(req(7, NEW, command(b"z"))), "server already errored", "errored")


def test_error_event_as_exception() -> None:
    event = ServerReactor().on_frame(req(1, NEW, command(b"a"), BEGIN, stream=4))
    assert isinstance(event, ProtocolErrorEvent)
    exc = event.exception()
    assert isinstance(exc, ReactorProtocolError)
    assert isinstance(exc, ProtocolError)
    assert exc.state == "initial"


def test_deviation_encoded_request_frame_is_a_protocol_error() -> None:
    """6.0 fails internally (HTTP 500); hgwire answers a protocol error."""
    reactor = ServerReactor()
    event = reactor.on_frame(req(1, NEW, command(b"a"), BEGIN | StreamFlag.ENCODED))
    assert isinstance(event, ProtocolErrorEvent)
    assert "encoded" in event.message
    assert reactor.state is ServerState.ERRORED


def test_deviation_invalid_request_cbor_is_a_protocol_error() -> None:
    """6.0 lets the CBOR error escape (HTTP 500) and stays idle; hgwire errors."""
    reactor = ServerReactor()
    event = reactor.on_frame(req(1, NEW, b"\xa1\x61a", BEGIN))
    assert isinstance(event, ProtocolErrorEvent)
    assert event.message.startswith("error decoding CBOR from command request")
    assert reactor.state is ServerState.ERRORED


def test_deviation_unknown_encodings_fall_back_to_identity() -> None:
    """6.0 sets no encoder and crashes mid-response; hgwire uses identity."""
    reactor = ServerReactor()
    assert isinstance(reactor.on_frame(settings([b"a", b"b"])), WantFrame)
    assert isinstance(reactor.on_frame(req(1, NEW, command(b"x"))), RunCommand)
    stream = reactor.output_stream()
    assert stream.encoding == "identity"
    out = reactor.on_command_response_objects(stream, 1, [b"r"])
    assert isinstance(out, SendFrames)
    frames = list(out.frames)
    assert decode_response(frames) == {1: [{b"status": b"ok"}, b"r"]}


def test_deviation_settings_must_be_a_map() -> None:
    reactor = ServerReactor()
    frame = Frame(1, 1, BEGIN, FrameType.SENDER_PROTOCOL_SETTINGS, 2, cbor.dumps([b"x"]))
    expect_error(
        reactor.on_frame(frame),
        "sender protocol settings frame did not contain a CBOR map",
        "protocol-settings-receiving",
    )


def test_stream_end_forgets_stream() -> None:
    reactor = ServerReactor()
    assert isinstance(
        reactor.on_frame(req(1, NEW, command(b"a"), BEGIN | StreamFlag.END)), RunCommand
    )
    assert isinstance(reactor.on_frame(req(3, NEW, command(b"a"), BEGIN)), RunCommand)


def test_request_id_zero_and_even_accepted() -> None:
    reactor = ServerReactor()
    assert isinstance(reactor.on_frame(req(0, NEW, command(b"a"), BEGIN)), RunCommand)
    assert isinstance(reactor.on_frame(req(2, NEW, command(b"b"))), RunCommand)


# --- limits ----------------------------------------------------------------------------------


def test_max_frame_size() -> None:
    reactor = ServerReactor(max_frame_size=16)
    event = reactor.on_frame(req(1, NEW, command(b"a" * 20), BEGIN))
    assert isinstance(event, ProtocolErrorEvent)
    assert "exceeds the maximum frame size of 16" in event.message
    assert reactor.state is ServerState.ERRORED


def test_max_frame_size_from_bytes() -> None:
    reactor = ServerReactor(max_frame_size=16)
    (event,) = reactor.receive_data(req(1, NEW, command(b"a" * 20), BEGIN).to_bytes())
    assert isinstance(event, ProtocolErrorEvent)
    assert "exceeds the maximum" in event.message
    assert reactor.receive_data(b"more") == [
        ProtocolErrorEvent("server already errored", "errored")
    ]


def test_max_request_size_payload() -> None:
    reactor = ServerReactor(max_request_size=40)
    payload = command(b"a", {b"k": b"v" * 60})
    assert isinstance(reactor.on_frame(req(1, NEW | MORE, payload[:30], BEGIN)), WantFrame)
    event = reactor.on_frame(req(1, CONT, payload[30:]))
    assert isinstance(event, ProtocolErrorEvent)
    assert event.message == "request 1 exceeds the maximum request size of 40 bytes"


def test_max_request_size_data() -> None:
    reactor = ServerReactor(max_request_size=100)
    assert isinstance(reactor.on_frame(req(1, NEW | HAVE_DATA, command(b"a"), BEGIN)), WantFrame)
    flags = CommandDataFlag.CONTINUATION
    assert isinstance(reactor.on_frame(req(1, flags, b"x" * 50, type_id=2)), WantFrame)
    event = reactor.on_frame(req(1, flags, b"x" * 50, type_id=2))
    assert isinstance(event, ProtocolErrorEvent)
    assert "maximum request size" in event.message


def test_max_in_flight() -> None:
    reactor = ServerReactor(max_in_flight=2)
    assert isinstance(reactor.on_frame(req(1, NEW, command(b"a"), BEGIN)), RunCommand)
    assert isinstance(reactor.on_frame(req(3, NEW | MORE, b"\xa1")), WantFrame)
    event = reactor.on_frame(req(5, NEW, command(b"c")))
    assert isinstance(event, ProtocolErrorEvent)
    assert event.message == "too many requests in flight: the limit is 2"


def test_in_flight_slot_freed_when_response_sent() -> None:
    reactor = ServerReactor(max_in_flight=1)
    assert isinstance(reactor.on_frame(req(1, NEW, command(b"a"), BEGIN)), RunCommand)
    out = reactor.on_command_response_objects(reactor.output_stream(), 1, [])
    assert isinstance(out, SendFrames)
    assert list(out.frames) == []  # as 6.0: no output objects, no frames
    assert reactor.active_requests == set()
    assert isinstance(reactor.on_frame(req(1, NEW, command(b"b"))), RunCommand)


# --- bytes input -----------------------------------------------------------------------------


def test_receive_data_fragmented() -> None:
    body = settings([b"identity"]).to_bytes() + req(1, NEW, command(b"heads")).to_bytes()
    reactor = ServerReactor()
    events = []
    for i in range(len(body)):
        events.extend(reactor.receive_data(body[i : i + 1]))
    assert events == [WantFrame("idle"), RunCommand(1, b"heads", {}, None, None)]
    assert isinstance(reactor.on_input_eof(), NoOp)


def test_input_eof_with_partial_frame() -> None:
    reactor = ServerReactor()
    assert reactor.receive_data(b"\x05\x00\x00\x01") == []
    event = reactor.on_input_eof()
    assert isinstance(event, ProtocolErrorEvent)
    assert event.message.startswith("received incomplete frame")


def test_incomplete_requests_reported_at_eof() -> None:
    reactor = ServerReactor(defer_output=True)
    assert isinstance(reactor.on_frame(req(1, NEW | MORE, b"\xa1", BEGIN)), WantFrame)
    assert reactor.incomplete_requests == [1]
    assert isinstance(reactor.on_input_eof(), NoOp)


# --- command data ----------------------------------------------------------------------------


def test_data_collected_by_default() -> None:
    reactor = ServerReactor()
    assert isinstance(reactor.on_frame(req(1, NEW | HAVE_DATA, command(b"a"), BEGIN)), WantFrame)
    cont, eos = CommandDataFlag.CONTINUATION, CommandDataFlag.EOS
    assert isinstance(reactor.on_frame(req(1, cont, b"ab", type_id=2)), WantFrame)
    event = reactor.on_frame(req(1, eos, b"cd", type_id=2))
    assert event == RunCommand(1, b"a", {}, None, b"abcd")
    assert reactor.state is ServerState.IDLE


def test_streaming_command_data() -> None:
    reactor = ServerReactor(stream_command_data=True)
    event = reactor.on_frame(req(1, NEW | HAVE_DATA, command(b"push"), BEGIN))
    assert isinstance(event, RunCommand)
    data = event.data
    assert isinstance(data, CommandData)
    assert reactor.state is ServerState.COMMAND_RECEIVING
    cont, eos = CommandDataFlag.CONTINUATION, CommandDataFlag.EOS
    # Another request interleaves while data streams in.
    assert isinstance(reactor.on_frame(req(3, NEW, command(b"b"))), RunCommand)
    assert reactor.on_frame(req(1, cont, b"abc", type_id=2)) == CommandDataReceived(1, 3, False)
    assert data.read() == b"abc"
    assert not data.eos
    assert reactor.on_frame(req(1, eos, b"de", type_id=2)) == CommandDataReceived(1, 2, True)
    assert data.read() == b"de"
    assert data.eos
    assert data.received == 5
    assert reactor.state is ServerState.IDLE
    expect_error(
        reactor.on_frame(req(1, eos, b"x", type_id=2)),
        "expected command request frame; got 2",
        "idle",
    )


def test_streaming_data_without_flags() -> None:
    reactor = ServerReactor(stream_command_data=True)
    assert isinstance(reactor.on_frame(req(1, NEW | HAVE_DATA, command(b"a"), BEGIN)), RunCommand)
    expect_error(
        reactor.on_frame(req(1, 0, b"x", type_id=2)),
        "command data frame without flags",
        "command-receiving",
    )


# --- output ----------------------------------------------------------------------------------


def test_large_bytes_are_not_copied() -> None:
    reactor = started()
    big = bytes(range(256)) * 1000  # 256000 bytes
    out = reactor.on_command_response_objects(reactor.output_stream(), 1, [big])
    assert isinstance(out, SendFrames)
    frames = list(out.frames)
    slices = [f for f in frames if isinstance(f.payload, memoryview)]
    assert len(slices) == -(-len(big) // 32768)
    assert all(f.payload.obj is big for f in slices)  # type: ignore[union-attr]
    assert all(len(f.payload) <= 32768 for f in frames)
    assert decode_response(frames) == {1: [{b"status": b"ok"}, big]}


def test_status_ok_in_its_own_frame_and_eos_last() -> None:
    reactor = started()
    out = reactor.on_command_response_objects(reactor.output_stream(), 1, [1, 2])
    assert isinstance(out, SendFrames)
    frames = list(out.frames)
    assert [f.type_id for f in frames] == [9, 3, 3, 3]
    assert bytes(frames[1].payload) == cbor.dumps({b"status": b"ok"})
    assert frames[-1].flags == CommandResponseFlag.EOS
    assert frames[-1].payload == b""


def test_encoded_response_passed_through() -> None:
    reactor = started()
    out = reactor.on_command_response_objects(
        reactor.output_stream(), 1, [EncodedResponse(cbor.dumps([1, 2]))]
    )
    assert isinstance(out, SendFrames)
    assert decode_response(list(out.frames)) == {1: [{b"status": b"ok"}, [1, 2]]}


def test_indefinite_bytestring_response() -> None:
    reactor = started()
    chunks = [b"a" * 40000, b"b" * 10]
    out = reactor.on_command_response_objects(
        reactor.output_stream(), 1, [cbor.IndefiniteBytes(iter(chunks))]
    )
    assert isinstance(out, SendFrames)
    data = b"".join(bytes(f.payload) for f in out.frames if f.type_id == 3)
    values = cbor.Decoder().feed(data)
    assert values[0] == {b"status": b"ok"}
    assert b"".join(v.data for v in values[1:]) == b"".join(chunks)


def test_command_error_mid_output_drops_buffered_data() -> None:
    """As 6.0: data still buffered when the command fails is not sent (spec §3.4)."""

    def objs() -> Iterator[Any]:
        yield b"partial"
        raise CommandError(b"failed: %s", [b"x"])

    reactor = started()
    out = reactor.on_command_response_objects(reactor.output_stream(), 1, objs())
    assert isinstance(out, SendFrames)
    frames = list(out.frames)
    assert decode_response(frames) == {
        1: [
            {b"status": b"ok"},
            {b"status": b"error", b"error": {b"message": b"failed: %s", b"args": [b"x"]}},
        ]
    }
    assert frames[-1].stream_flags & StreamFlag.ENCODED == 0
    assert reactor.active_requests == set()


def test_other_exception_becomes_error_response() -> None:
    def objs() -> Iterator[Any]:
        raise ValueError("boom")
        yield 1  # pragma: no cover

    reactor = started()
    out = reactor.on_command_response_objects(reactor.output_stream(), 1, objs())
    assert isinstance(out, SendFrames)
    (frame,) = out.frames
    assert frame.type_id == FrameType.ERROR_RESPONSE
    assert cbor.Decoder().feed(bytes(frame.payload)) == [
        {b"type": b"server", b"message": [{b"msg": b"boom"}]}
    ]


def test_unencodable_object_becomes_error_response() -> None:
    reactor = started()
    out = reactor.on_command_response_objects(reactor.output_stream(), 1, ["text"])
    assert isinstance(out, SendFrames)
    frames = list(out.frames)
    assert frames[-1].type_id == FrameType.ERROR_RESPONSE
    assert reactor.active_requests == set()


def test_redirect_must_be_first_and_only() -> None:
    loc = AlternateLocationResponse(url=b"https://x/y", mediatype=b"application/mercurial-cbor")
    reactor = started()
    out = reactor.on_command_response_objects(reactor.output_stream(), 1, [loc, b"more"])
    assert isinstance(out, SendFrames)
    frames = list(out.frames)
    assert frames[-1].type_id == FrameType.ERROR_RESPONSE
    first = cbor.Decoder().feed(bytes(frames[1].payload))[0]
    assert first == {b"status": b"redirect", b"location": loc.location()}

    reactor = started()
    out = reactor.on_command_response_objects(reactor.output_stream(), 1, [b"x", loc])
    assert isinstance(out, SendFrames)
    assert list(out.frames)[-1].type_id == FrameType.ERROR_RESPONSE


def test_server_error_message_truncated_to_fit_a_frame() -> None:
    reactor = started()
    out = reactor.on_server_error(reactor.output_stream(), 1, b"x" * 100000)
    assert isinstance(out, SendFrames)
    (frame,) = out.frames
    assert len(frame.payload) <= 32768


def test_deferred_output_in_completion_order() -> None:
    reactor = ServerReactor(defer_output=True)
    assert isinstance(reactor.on_frame(req(1, NEW | MORE, b"\xa1", BEGIN)), WantFrame)
    assert isinstance(reactor.on_frame(req(3, NEW, command(b"b"))), RunCommand)
    stream = reactor.output_stream()
    assert isinstance(reactor.on_command_response_objects(stream, 3, [b"three"]), NoOp)
    assert isinstance(reactor.on_frame(req(1, CONT, command(b"a")[1:])), RunCommand)
    assert isinstance(reactor.on_command_error(stream, 1, b"bad"), NoOp)
    out = reactor.on_input_eof()
    assert isinstance(out, SendFrames)
    frames = read_frames(out.to_bytes())
    assert [f.request_id for f in frames] == [3, 3, 3, 3, 1]
    assert reactor.active_requests == set()


def test_text_output_and_progress_frames() -> None:
    reactor = started()
    stream = reactor.output_stream()
    out = reactor.send_text_output(stream, 1, [(b"hello %s\n", [b"world"], [b"label"])])
    assert isinstance(out, SendFrames)
    (frame,) = out.frames
    assert frame.type_id == FrameType.TEXT_OUTPUT
    assert cbor.Decoder().feed(bytes(frame.payload)) == [
        [{b"msg": b"hello %s\n", b"args": [b"world"], b"labels": [b"label"]}]
    ]
    out = reactor.send_progress(stream, 1, b"files", 3, 10, item=b"a.txt")
    assert isinstance(out, SendFrames)
    (frame,) = out.frames
    assert frame.type_id == FrameType.PROGRESS
    assert cbor.Decoder().feed(bytes(frame.payload)) == [
        {b"topic": b"files", b"pos": 3, b"total": 10, b"item": b"a.txt"}
    ]
    with pytest.raises(FrameError):
        reactor.send_text_output(stream, 1, [(b"x" * 40000, [], [])])


def test_output_streams_are_even_and_distinct() -> None:
    reactor = started()
    assert [reactor.output_stream().stream_id for _ in range(3)] == [2, 4, 6]


def test_encoding_choice_server_preference_wins() -> None:
    reactor = ServerReactor()
    assert isinstance(reactor.on_frame(settings([b"identity", b"zlib", b"zstd-8mb"])), WantFrame)
    assert reactor.output_stream().encoding == "zstd-8mb"
    reactor = ServerReactor(encodings=("zlib", "identity"))
    assert isinstance(reactor.on_frame(settings([b"identity", b"zlib", b"zstd-8mb"])), WantFrame)
    assert reactor.output_stream().encoding == "zlib"


@pytest.mark.parametrize("encoding", [b"zlib", b"zstd-8mb"])
def test_deviation_failure_on_compressed_stream_keeps_it_decodable(encoding: bytes) -> None:
    """6.0 drops output the compressor already consumed, corrupting later responses on the
    stream; hgwire sends it and flushes the compressor before the error."""
    from hgwire.wire.client import ClientReactor

    def failing() -> Iterator[Any]:
        yield b"x" * 1000
        raise ValueError("boom")

    client = ClientReactor(content_encodings=[encoding])
    first, _ = client.call_command(b"a")
    second, _ = client.call_command(b"b")
    body = client.flush_commands()
    assert isinstance(body, SendFrames)
    server = ServerReactor()
    runs = [e for e in server.receive_data(body.to_bytes()) if isinstance(e, RunCommand)]
    assert len(runs) == 2
    stream = server.output_stream()
    assert stream.encoding == encoding.decode()
    out1 = server.on_command_response_objects(stream, 1, failing())
    out2 = server.on_command_response_objects(stream, 3, [b"fine"])
    assert isinstance(out1, SendFrames)
    assert isinstance(out2, SendFrames)
    events = client.receive_data(out1.to_bytes() + out2.to_bytes())
    assert not [e for e in events if isinstance(e, ProtocolErrorEvent)]
    assert first.server_error is not None
    assert list(second) == [{b"status": b"ok"}, b"fine"]


def test_answer_empty_output_option() -> None:
    """Optional difference from 6.0: a command without objects still gets a status."""
    reactor = started(answer_empty_output=True)
    out = reactor.on_command_response_objects(reactor.output_stream(), 1, [])
    assert isinstance(out, SendFrames)
    frames = list(out.frames)
    assert decode_response(frames) == {1: [{b"status": b"ok"}]}
    assert frames[-1].flags == CommandResponseFlag.EOS


@pytest.mark.parametrize("encoding", [b"zlib", b"zstd-8mb"])
def test_failure_before_output_on_compressed_stream(encoding: bytes) -> None:
    """Nothing was compressed yet: only the unencoded error goes out, no settings frame."""

    def failing() -> Iterator[Any]:
        raise CommandError(b"bad")
        yield 1  # pragma: no cover

    server = ServerReactor()
    server.on_frame(settings([encoding]))
    assert isinstance(server.on_frame(req(1, NEW, command(b"a"))), RunCommand)
    out = server.on_command_response_objects(server.output_stream(), 1, failing())
    assert isinstance(out, SendFrames)
    (frame,) = out.frames
    assert frame.stream_flags == BEGIN
    assert cbor.Decoder().feed(bytes(frame.payload)) == [
        {b"status": b"error", b"error": {b"message": b"bad"}}
    ]
