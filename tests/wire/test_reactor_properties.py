"""Property tests of the reactors (hypothesis).

* Requests: any fragmentation of the request bytes and any interleaving of several
  requests' frames give the server the same commands.
* Responses: any interleaving of several responses' frames (one shared identity stream, or
  one compressed stream per response) and any fragmentation give the client the same
  objects.
* Random frames and random bytes never make either reactor raise.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hgwire.errors import CommandError
from hgwire.wire.client import ClientReactor
from hgwire.wire.events import ProtocolErrorEvent, RunCommand, SendFrames, WantFrame
from hgwire.wire.frames import Frame, read_frames
from hgwire.wire.server import ServerReactor

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.binary(max_size=40)
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.booleans()
    | st.none()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.binary(max_size=8), inner, max_size=4)
        | st.frozensets(st.binary(max_size=6), max_size=3).map(set)
    ),
    max_leaves=12,
)
big_bytes = st.integers(min_value=30000, max_value=70000).map(lambda n: bytes([n % 251]) * n)
response_objects = st.lists(values | big_bytes.filter(lambda _: True), max_size=6)

commands = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=12),
        st.dictionaries(st.binary(min_size=1, max_size=6), values, max_size=3),
        st.none() | st.binary(max_size=64) | big_bytes,
    ),
    min_size=1,
    max_size=4,
)


def fragment(data: bytes, rnd: random.Random) -> Iterator[bytes]:
    pos = 0
    while pos < len(data):
        n = rnd.choice([1, 2, 3, 7, 8, 9, 100, 4096, 40000])
        yield data[pos : pos + n]
        pos += n


def interleave(groups: list[list[Frame]], rnd: random.Random) -> list[Frame]:
    """Frames of every group, each group's order kept, groups mixed at random."""
    queues = [list(g) for g in groups if g]
    out: list[Frame] = []
    while queues:
        q = rnd.choice(queues)
        out.append(q.pop(0))
        if not q:
            queues.remove(q)
    return out


def request_body(cmds: list[Any], frame_size: int) -> tuple[bytes, dict[int, Any]]:
    client = ClientReactor(content_encodings=[b"identity"], max_frame_size=frame_size)
    expected = {}
    for name, args, data in cmds:
        request, _ = client.call_command(name, args, data)
        expected[request.request_id] = (name, args, data)
    out = client.flush_commands()
    assert isinstance(out, SendFrames)
    return out.to_bytes(), expected


def run_server(pieces: Iterator[bytes]) -> list[Any]:
    server = ServerReactor()
    events: list[Any] = []
    for piece in pieces:
        events.extend(server.receive_data(piece))
    return events


@SETTINGS
@given(commands, st.integers(min_value=8, max_value=200), st.randoms(use_true_random=False))
def test_request_fragmentation_and_interleaving(
    cmds: list[Any], frame_size: int, rnd: random.Random
) -> None:
    body, expected = request_body(cmds, frame_size)
    whole = run_server(iter([body]))
    runs = [e for e in whole if isinstance(e, RunCommand)]
    assert {e.request_id: (e.command, e.args, e.data) for e in runs} == expected
    assert all(isinstance(e, RunCommand | WantFrame) for e in whole)

    assert run_server(fragment(body, rnd)) == whole

    frames = read_frames(body)
    groups: dict[int, list[Frame]] = {}
    for frame in frames[1:]:
        groups.setdefault(frame.request_id, []).append(frame)
    mixed = [frames[0], *interleave(list(groups.values()), rnd)]
    shuffled = run_server(fragment(b"".join(f.to_bytes() for f in mixed), rnd))
    assert not [e for e in shuffled if isinstance(e, ProtocolErrorEvent)]
    got = {e.request_id: (e.command, e.args, e.data) for e in shuffled if isinstance(e, RunCommand)}
    assert got == expected


def outcome_objects(objs: list[Any], outcome: str) -> Iterator[Any]:
    """The objects, then the failure named by ``outcome`` (none for "ok")."""
    yield from objs
    if outcome == "command-error":
        raise CommandError(b"bad %s", [b"x"])
    if outcome == "exception":
        raise ValueError("boom")


def respond(
    responses: list[list[Any]],
    encoding: bytes,
    rnd: random.Random,
    outcomes: list[str] | None = None,
) -> tuple[bytes, ClientReactor, list[Any]]:
    client = ClientReactor(content_encodings=[encoding])
    requests = [client.call_command(b"cmd%d" % i)[0] for i in range(len(responses))]
    body = client.flush_commands()
    assert isinstance(body, SendFrames)
    server = ServerReactor(answer_empty_output=True)
    events = server.receive_data(body.to_bytes())
    runs = [e for e in events if isinstance(e, RunCommand)]
    assert len(runs) == len(responses)
    shared = server.output_stream()
    groups = []
    for run, objs in zip(runs, responses, strict=True):
        # Identity: one stream shared by all; compressed: one stream (context) each.
        stream = shared if encoding == b"identity" else server.output_stream()
        outcome = outcomes[run.request_id // 2] if outcomes else "ok"
        out = server.on_command_response_objects(
            stream, run.request_id, outcome_objects(objs, outcome)
        )
        assert isinstance(out, SendFrames)
        groups.append(list(out.frames))
    if encoding == b"identity":
        # The stream's first frame (stream-begin, stream settings) must stay first.
        flat = [f for g in groups for f in g]
        head = flat[:1]
        rest = [[f for f in g if f is not flat[0]] for g in groups]
        mixed = head + interleave(rest, rnd)
    else:
        mixed = interleave(groups, rnd)
    return b"".join(f.to_bytes() for f in mixed), client, requests


@SETTINGS
@given(
    st.lists(response_objects, min_size=1, max_size=4),
    st.sampled_from([b"identity", b"zlib", b"zstd-8mb"]),
    st.randoms(use_true_random=False),
)
def test_response_interleaving_and_fragmentation(
    responses: list[list[Any]], encoding: bytes, rnd: random.Random
) -> None:
    wire, client, requests = respond(responses, encoding, rnd)
    events: list[Any] = []
    for piece in fragment(wire, rnd):
        events.extend(client.receive_data(piece))
    events.extend(client.on_input_eof())
    assert not [e for e in events if isinstance(e, ProtocolErrorEvent)]
    for request, objs in zip(requests, responses, strict=True):
        assert request.complete
        assert list(request) == [{b"status": b"ok"}, *objs]


frames = st.builds(
    Frame,
    st.integers(min_value=0, max_value=6),
    st.integers(min_value=0, max_value=4),
    st.integers(min_value=0, max_value=7),
    st.integers(min_value=0, max_value=15),
    st.integers(min_value=0, max_value=15),
    st.binary(max_size=40)
    | st.sampled_from(
        [
            b"\xa1Dname",
            b"\xa1DnameEheads",
            b"\xa1FstatusBok",
            b"Hidentity",
            b"Dzlib",
            b"\xa1Pcontentencodings\x81Dzlib",
        ]
    ),
)


@SETTINGS
@given(st.lists(frames, max_size=12), st.booleans())
def test_random_frames_never_raise_server(received: list[Frame], defer: bool) -> None:
    server = ServerReactor(defer_output=defer)
    sent: list[Frame] = []
    for frame in received:
        event = server.on_frame(frame)
        if isinstance(event, RunCommand):
            out = server.on_command_response_objects(server.output_stream(), event.request_id, [1])
            if isinstance(out, SendFrames):
                sent.extend(out.frames)
    final = server.on_input_eof()
    if isinstance(final, SendFrames):
        sent.extend(final.frames)
    assert all(isinstance(f, Frame) for f in sent)


@SETTINGS
@given(st.lists(frames, max_size=12))
def test_random_frames_never_raise_client(received: list[Frame]) -> None:
    client = ClientReactor(buffer_sends=False, multiple_send=True)
    for i in range(3):
        _, out = client.call_command(b"c%d" % i)
        assert isinstance(out, SendFrames)
        list(out.frames)
    for frame in received:
        for event in client.on_frame(frame):
            assert event is not None
    client.on_input_eof()


@SETTINGS
@given(st.binary(max_size=300), st.randoms(use_true_random=False))
def test_random_bytes_never_raise(data: bytes, rnd: random.Random) -> None:
    server = ServerReactor()
    client = ClientReactor(buffer_sends=False)
    _, out = client.call_command(b"x")
    assert isinstance(out, SendFrames)
    list(out.frames)
    for piece in fragment(data, rnd):
        server.receive_data(piece)
        client.receive_data(piece)
    server.on_input_eof()
    client.on_input_eof()


@SETTINGS
@given(
    st.lists(
        st.tuples(response_objects, st.sampled_from(["ok", "command-error", "exception"])),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([b"identity", b"zlib", b"zstd-8mb"]),
    st.randoms(use_true_random=False),
)
def test_failing_commands_leave_other_responses_intact(
    cases: list[tuple[list[Any], str]], encoding: bytes, rnd: random.Random
) -> None:
    responses = [objs for objs, _ in cases]
    outcomes = [outcome for _, outcome in cases]
    wire, client, requests = respond(responses, encoding, rnd, outcomes)
    events: list[Any] = []
    for piece in fragment(wire, rnd):
        events.extend(client.receive_data(piece))
    for request, (objs, outcome) in zip(requests, cases, strict=True):
        assert request.complete
        if outcome == "ok":
            assert request.decode_error is None
            assert list(request) == [{b"status": b"ok"}, *objs]
        elif outcome == "exception":
            assert request.server_error is not None
        elif not objs:
            assert request.error is not None
            assert str(request.error) == "bad x"
