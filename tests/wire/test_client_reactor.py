"""Unit tests of the client reactor (spec §3.8): sending, every error path, responses in
any interleaving, decoding per stream, status handling, side channels, redirects."""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from hgwire.wire import cbor
from hgwire.wire.client import ClientReactor, ClientUsageError
from hgwire.wire.events import (
    CommandFailed,
    ErrorResponse,
    NoOp,
    Progress,
    ProtocolErrorEvent,
    Redirect,
    ResponseComplete,
    ResponseData,
    ResponseObjects,
    RunCommand,
    SendFrames,
    TextOutput,
)
from hgwire.wire.frames import (
    CommandResponseFlag,
    Frame,
    FrameType,
    SettingsFlag,
    StreamFlag,
    read_frames,
)
from hgwire.wire.server import AlternateLocationResponse, ServerReactor

BEGIN = StreamFlag.BEGIN
ENC = StreamFlag.ENCODED
CONT = CommandResponseFlag.CONTINUATION
EOS = CommandResponseFlag.EOS


def response(rid: int, flags: int, payload: bytes, sflags: int = 0, stream: int = 2) -> Frame:
    return Frame(rid, stream, sflags, FrameType.COMMAND_RESPONSE, flags, payload)


def sent(**kwargs: Any) -> tuple[ClientReactor, Any]:
    """A client that sent one command (request 1)."""
    reactor = ClientReactor(buffer_sends=False, **kwargs)
    request, event = reactor.call_command(b"heads")
    assert isinstance(event, SendFrames)
    list(event.frames)
    return reactor, request


def errors(events: list[Any]) -> list[str]:
    return [e.message for e in events if isinstance(e, ProtocolErrorEvent)]


# --- sending ---------------------------------------------------------------------------------


def test_request_ids_and_settings_frame() -> None:
    reactor = ClientReactor(content_encodings=[b"zlib", b"identity"])
    ids = [reactor.call_command(b"c%d" % i)[0].request_id for i in range(3)]
    assert ids == [1, 3, 5]
    out = reactor.flush_commands()
    assert isinstance(out, SendFrames)
    frames = read_frames(out.to_bytes())
    assert [f.type_id for f in frames] == [8, 1, 1, 1]
    assert frames[0].stream_flags == BEGIN
    assert all(f.stream_id == 1 and f.stream_flags == 0 for f in frames[1:])
    assert cbor.loads(frames[0].payload) == {b"contentencodings": [b"zlib", b"identity"]}
    with pytest.raises(ClientUsageError, match="cannot issue new commands"):
        reactor.call_command(b"x")


def test_multiple_sends() -> None:
    reactor = ClientReactor(buffer_sends=True, multiple_send=True)
    reactor.call_command(b"a")
    first = reactor.flush_commands()
    assert isinstance(first, SendFrames)
    assert len(list(first.frames)) == 1
    assert isinstance(reactor.flush_commands(), NoOp)
    request, event = reactor.call_command(b"b")
    assert request.request_id == 3
    assert isinstance(event, NoOp)
    second = reactor.flush_commands()
    assert isinstance(second, SendFrames)
    (frame,) = second.frames
    assert frame.stream_flags == 0


def test_single_send_refuses_second_flush() -> None:
    reactor = ClientReactor(buffer_sends=False)
    reactor.call_command(b"a")
    with pytest.raises(ClientUsageError):
        reactor.call_command(b"b")


def test_requests_understood_by_server_reactor() -> None:
    reactor = ClientReactor(content_encodings=[b"zstd-8mb", b"identity"])
    big = {b"blob": b"x" * 70000}
    reactor.call_command(b"one", big)
    reactor.call_command(b"two", {b"k": b"v"}, data=b"d" * 40000)
    out = reactor.flush_commands()
    assert isinstance(out, SendFrames)
    server = ServerReactor()
    events = server.receive_data(out.to_bytes())
    runs = [e for e in events if isinstance(e, RunCommand)]
    assert runs == [
        RunCommand(1, b"one", big, None, None),
        RunCommand(3, b"two", {b"k": b"v"}, None, b"d" * 40000),
    ]
    assert server.output_stream().encoding == "zstd-8mb"


# --- receiving: error paths ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([response(1, EOS, b"", BEGIN, stream=1)], "received frame with odd numbered stream ID: 1"),
        (
            [response(1, EOS, b"", 0)],
            "received frame on unknown stream without beginning of stream flag set",
        ),
        ([response(3, EOS, b"", BEGIN)], "received frame for inactive request ID: 3"),
        (
            [Frame(1, 2, BEGIN, FrameType.STREAM_SETTINGS, 0, b"")],
            "stream encoding settings frame must have continuation or end of stream flag set",
        ),
        (
            [Frame(1, 2, BEGIN, FrameType.STREAM_SETTINGS, 3, b"")],
            "stream encoding settings frame cannot have both continuation and end of stream "
            "flags set",
        ),
        (
            [Frame(1, 2, BEGIN, FrameType.STREAM_SETTINGS, 2, b"")],
            "stream encoding settings frame did not contain CBOR data",
        ),
        (
            [Frame(1, 2, BEGIN, FrameType.STREAM_SETTINGS, 2, b"\x61a")],
            "error decoding CBOR from stream encoding settings frame: "
            "b'string major type not supported'",
        ),
        (
            [Frame(1, 2, BEGIN, FrameType.STREAM_SETTINGS, 2, cbor.dumps(b"lz4"))],
            "error setting stream decoder: unknown stream decoder: lz4",
        ),
        ([Frame(1, 2, BEGIN, 4, 0, b"")], "unhandled frame type: 4"),
        (
            [response(1, EOS, b"\xa1", BEGIN)],
            "error decoding CBOR response to request 1: ",
        ),
        (
            [response(1, EOS, cbor.dumps([1]), BEGIN)],
            "response to request 1 does not start with a status map",
        ),
        (
            [response(1, EOS, cbor.dumps({b"status": b"what"}), BEGIN)],
            "unknown status in response to request 1: b'what'",
        ),
        (
            [Frame(1, 2, BEGIN, FrameType.ERROR_RESPONSE, 0, cbor.dumps([1]))],
            "error response frame did not contain a CBOR map",
        ),
        (
            [Frame(1, 2, BEGIN, FrameType.TEXT_OUTPUT, 0, cbor.dumps({}))],
            "text output frame did not contain a CBOR array",
        ),
        (
            [Frame(1, 2, BEGIN, FrameType.PROGRESS, 0, cbor.dumps({b"pos": 1}))],
            "progress frame did not contain a map with a topic",
        ),
    ],
)
def test_error_paths(frames: list[Frame], message: str) -> None:
    reactor, _ = sent()
    events: list[Any] = []
    for frame in frames:
        events.extend(reactor.on_frame(frame))
    found = errors(events)
    assert found
    if message.endswith(": "):
        assert found[-1].startswith(message)
    else:
        assert found[-1] == message


def test_truncated_input_and_unfinished_response() -> None:
    reactor, _ = sent()
    data = response(1, CONT, cbor.dumps({b"status": b"ok"}), BEGIN).to_bytes()
    events = reactor.receive_data(data + b"\x01\x00")
    assert not errors(events)
    messages = errors(reactor.on_input_eof())
    assert messages[0].startswith("received incomplete frame")
    assert messages[1] == "response for request 1 ended prematurely"


def test_corrupt_compressed_payload() -> None:
    reactor, _ = sent()
    assert reactor.on_frame(Frame(1, 2, BEGIN, 9, 2, cbor.dumps(b"zlib"))) == []
    events = reactor.on_frame(response(1, EOS, b"not zlib at all", ENC))
    assert errors(events)[0].startswith("error decoding frame payload on stream 2")


# --- receiving: responses --------------------------------------------------------------------


def test_response_objects_and_iteration() -> None:
    reactor, request = sent()
    ok = cbor.dumps({b"status": b"ok"})
    body = ok + cbor.dumps([b"n1", b"n2"]) + cbor.dumps(7)
    events = reactor.on_frame(response(1, CONT, body[:5], BEGIN))
    assert events == [ResponseData(1, body[:5], False, True)]
    events = reactor.on_frame(response(1, EOS, body[5:]))
    assert events == [
        ResponseData(1, body[5:], True, False),
        ResponseObjects(1, [{b"status": b"ok"}, [b"n1", b"n2"], 7]),
        ResponseComplete(1),
    ]
    assert request.status == {b"status": b"ok"}
    assert request.complete
    assert list(request) == [{b"status": b"ok"}, [b"n1", b"n2"], 7]
    assert list(request) == []
    assert request.state == "received"
    assert reactor.active_requests == {}


def test_command_error_status() -> None:
    reactor, request = sent()
    m = {b"status": b"error", b"error": {b"message": b"unknown file: %s", b"args": [b"x"]}}
    events = reactor.on_frame(response(1, EOS, cbor.dumps(m), BEGIN))
    failed = [e for e in events if isinstance(e, CommandFailed)]
    assert failed == [CommandFailed(1, b"unknown file: %s", [b"x"])]
    assert failed[0].formatted() == b"unknown file: x"
    assert request.error is not None
    assert str(request.error) == "unknown file: x"


def test_error_response_frame() -> None:
    reactor, request = sent()
    payload = cbor.dumps({b"type": b"server", b"message": [{b"msg": b"boom"}]})
    events = reactor.on_frame(Frame(1, 2, BEGIN, FrameType.ERROR_RESPONSE, 0, payload))
    assert events == [ErrorResponse(1, b"server", [{b"msg": b"boom"}])]
    assert request.state == "errored"
    assert request.server_error == events[0]
    assert errors(reactor.on_frame(response(1, EOS, b""))) == [
        "received frame for inactive request ID: 1"
    ]


def test_text_output_and_progress() -> None:
    server = ServerReactor()
    server.on_frame(Frame(1, 1, BEGIN, 1, 1, cbor.dumps({b"name": b"x"})))
    stream = server.output_stream()
    text = server.send_text_output(stream, 1, [(b"hi %s\n", [b"you"], [])])
    progress = server.send_progress(stream, 1, b"files", 1, 2)
    assert isinstance(text, SendFrames)
    assert isinstance(progress, SendFrames)
    reactor, _ = sent()
    events = reactor.receive_data(text.to_bytes() + progress.to_bytes())
    assert events == [
        TextOutput(1, [{b"msg": b"hi %s\n", b"args": [b"you"]}]),
        Progress(1, b"files", 1, 2, None, None),
    ]


def test_redirect_then_fetched_body() -> None:
    server = ServerReactor()
    server.on_frame(Frame(1, 1, BEGIN, 1, 1, cbor.dumps({b"name": b"x"})))
    loc = AlternateLocationResponse(url=b"https://cdn/x", mediatype=b"application/mercurial-cbor")
    out = server.on_command_response_objects(server.output_stream(), 1, [loc])
    assert isinstance(out, SendFrames)
    reactor, request = sent()
    events = reactor.receive_data(out.to_bytes())
    (redirect,) = [e for e in events if isinstance(e, Redirect)]
    assert redirect.location == loc.location()
    assert request.redirect == loc.location()
    assert isinstance(events[-1], ResponseComplete)
    assert request.feed_redirected(cbor.dumps(b"a") + cbor.dumps(b"b")) == [b"a", b"b"]
    assert list(request) == [{b"status": b"redirect", b"location": loc.location()}, b"a", b"b"]


def test_interleaved_responses_on_two_streams_with_zlib() -> None:
    reactor = ClientReactor(buffer_sends=True)
    one, _ = reactor.call_command(b"a")
    two, _ = reactor.call_command(b"b")
    sendout = reactor.flush_commands()
    assert isinstance(sendout, SendFrames)
    list(sendout.frames)
    comp = {2: zlib.compressobj(), 4: zlib.compressobj()}
    ok = cbor.dumps({b"status": b"ok"})
    frames = [
        Frame(1, 2, BEGIN, 9, SettingsFlag.EOS, cbor.dumps(b"zlib")),
        Frame(3, 4, BEGIN, 9, SettingsFlag.EOS, cbor.dumps(b"zlib")),
        response(3, CONT, comp[4].compress(ok + cbor.dumps(b"two")), ENC, stream=4),
        response(1, CONT, comp[2].compress(ok), ENC, stream=2),
        response(3, EOS, comp[4].flush(zlib.Z_SYNC_FLUSH), ENC, stream=4),
        response(1, EOS, comp[2].compress(cbor.dumps(b"one")) + comp[2].flush(2), ENC),
    ]
    events: list[Any] = []
    for frame in frames:
        events.extend(reactor.on_frame(frame))
    assert not errors(events)
    assert list(one) == [{b"status": b"ok"}, b"one"]
    assert list(two) == [{b"status": b"ok"}, b"two"]


def test_retain_objects_off() -> None:
    reactor, request = sent(retain_objects=False)
    events = reactor.on_frame(response(1, EOS, cbor.dumps({b"status": b"ok"}) + b"\x01", BEGIN))
    assert ResponseObjects(1, [{b"status": b"ok"}, 1]) in events
    assert list(request) == []


def test_receive_frame_size_limit() -> None:
    reactor, _ = sent(max_receive_frame_size=100)
    data = response(1, EOS, b"\x00" * 101, BEGIN).to_bytes()
    (event,) = reactor.receive_data(data)
    assert isinstance(event, ProtocolErrorEvent)
    assert "101" in event.message


def test_command_failed_formatted_survives_overflowing_formats() -> None:
    """A peer-supplied format like ``b"%\\xfb"`` overflows ``%``; the raw format is shown."""
    from hgwire.wire.events import CommandFailed

    failed = CommandFailed(request_id=1, message=b"%\xfbx", args=[b"a"])
    assert failed.formatted() == b"%\xfbx"
    assert CommandFailed(request_id=1, message=b"bad %s", args=[b"a"]).formatted() == b"bad a"
