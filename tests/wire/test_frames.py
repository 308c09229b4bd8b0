"""Frames: header fields, the reader (limits, fragmentation, fuzz) and the frame builders."""

from __future__ import annotations

import array
import io
import json
import random
import subprocess
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hgwire.errors import FrameError
from hgwire.wire import cbor
from hgwire.wire import frames as F
from hgwire.wire.human import format_human_header
from hgwire.wire.streams import InputStream, OutputStream
from tests.conftest import hg_env

MiB = 1 << 20


def headers(frames: list[F.Frame]) -> list[str]:
    return [format_human_header(f) for f in frames]


def sizes(frames: list[F.Frame]) -> list[int]:
    return [len(f.payload) for f in frames]


# -- names and header ----------------------------------------------------------------------


def test_every_type_and_flag_has_its_spec_name() -> None:
    assert {k: int(v) for k, v in F.FRAME_TYPE_NAMES.items()} == {
        "command-request": 1,
        "command-data": 2,
        "command-response": 3,
        "error-response": 5,
        "text-output": 6,
        "progress": 7,
        "sender-protocol-settings": 8,
        "stream-settings": 9,
    }
    assert {k: int(v) for k, v in F.STREAM_FLAG_NAMES.items()} == {
        "stream-begin": 1,
        "stream-end": 2,
        "encoded": 4,
    }
    names = {t.name: {k: int(v) for k, v in f.items()} for t, f in F.FRAME_FLAG_NAMES.items()}
    assert names["COMMAND_REQUEST"] == {"new": 1, "continuation": 2, "more": 4, "have-data": 8}
    for kind in ("COMMAND_DATA", "COMMAND_RESPONSE", "SENDER_PROTOCOL_SETTINGS", "STREAM_SETTINGS"):
        assert names[kind] == {"continuation": 1, "eos": 2}
    for kind in ("ERROR_RESPONSE", "TEXT_OUTPUT", "PROGRESS"):
        assert names[kind] == {}


def test_frame_repr_like_mercurial() -> None:
    frame = F.Frame(1, 2, F.StreamFlag.BEGIN, F.FrameType.STREAM_SETTINGS, 2, b"123456789")
    assert repr(frame) == (
        "frame(size=9; request=1; stream=2; streamflags=stream-begin; "
        "type=stream-settings; flags=eos)"
    )
    odd = F.Frame(1, 2, 0x84, 4, 0x8)
    assert "streamflags=encoded|<unknown 0x80>" in repr(odd)
    assert "type=4" in repr(odd)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        (0, 1 << 24, "24 bits"),
        (0, -1, "24 bits"),
        (1, 1 << 16, "16 bits"),
        (2, 256, "8 bits"),
        (3, 256, "8 bits"),
        (4, 16, "4 bits"),
        (5, 16, "4 bits"),
        (5, -1, "4 bits"),
    ],
)
def test_encode_header_refuses_values_that_do_not_fit(field: int, value: int, match: str) -> None:
    values = [0, 1, 1, 0, 1, 0]
    values[field] = value
    with pytest.raises(FrameError, match=match):
        F.encode_header(*values)


@given(
    st.integers(0, F.MAX_PAYLOAD_LENGTH),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFF),
    st.integers(0, 0xFF),
    st.integers(0, 15),
    st.integers(0, 15),
)
def test_header_round_trip(
    length: int, rid: int, sid: int, sflags: int, type_id: int, flags: int
) -> None:
    raw = F.encode_header(length, rid, sid, sflags, type_id, flags)
    assert len(raw) == F.FRAME_HEADER_SIZE
    assert raw[:3] == length.to_bytes(3, "little")
    h = F.decode_header(raw)
    assert (h.length, h.request_id, h.stream_id, h.stream_flags, h.type_id, h.flags) == (
        length,
        rid,
        sid,
        sflags,
        type_id,
        flags,
    )


def test_frame_chunks_and_bytes() -> None:
    frame = F.make_frame(3, 1, 0, F.FrameType.COMMAND_DATA, F.CommandDataFlag.EOS, b"abc")
    header, payload = frame.chunks()
    assert payload == b"abc"
    assert header == bytes.fromhex("0300000300010022")
    assert bytes(frame) == header + b"abc" == frame.to_bytes()
    assert frame.frame_type is F.FrameType.COMMAND_DATA
    assert F.Frame(1, 1, 0, 4, 0).frame_type is None


# -- reader ------------------------------------------------------------------------------


def test_reader_refuses_oversized_length_from_the_header_alone() -> None:
    reader = F.FrameReader(max_payload=F.DEFAULT_MAX_FRAME_SIZE)
    header = F.encode_header(F.DEFAULT_MAX_FRAME_SIZE + 1, 1, 1, 0, 2, 0)
    with pytest.raises(FrameError, match="exceeds the maximum of 32768"):
        reader.feed(header)
    # Also when the header arrives in pieces after a buffered start.
    reader = F.FrameReader(max_payload=100)
    assert reader.feed(header[:5]) == []
    with pytest.raises(FrameError, match="frame length 32769 exceeds"):
        reader.feed(header[5:])
    with pytest.raises(FrameError, match="already failed"):
        reader.feed(b"")


def test_reader_allocates_nothing_large_for_a_16mib_header() -> None:
    data = bytes.fromhex("ffffff0100010021") + b"0123456789"
    tracemalloc.start()
    try:
        reader = F.FrameReader()  # default maximum: 16 MiB - 1, so the header is legal
        assert reader.feed(data) == []
        assert reader.feed(b"x" * 10) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024
    assert reader.buffered == 28
    with pytest.raises(FrameError, match="frame length error: expected 16777215; got 20"):
        reader.eof()
    with pytest.raises(FrameError, match="exceeds the maximum"):
        F.FrameReader(max_payload=MiB).feed(data)


def test_reader_large_frame_in_pieces_and_following_frames() -> None:
    payload = bytes(range(256)) * 1000
    big = F.make_frame(1, 2, 0, F.FrameType.COMMAND_RESPONSE, 1, payload).to_bytes()
    small = F.make_frame(1, 2, 0, F.FrameType.COMMAND_RESPONSE, 2, b"").to_bytes()
    stream = big + small + big
    reader = F.FrameReader()
    got: list[F.Frame] = []
    for i in range(0, len(stream), 7777):
        got.extend(reader.feed(memoryview(stream)[i : i + 7777]))
    reader.eof()
    assert [bytes(f.payload) for f in got] == [payload, b"", payload]
    assert all(type(f.payload) is bytes for f in got)
    assert reader.buffered == 0


def test_reader_accepts_bytearray_and_keeps_no_reference_to_it() -> None:
    data = bytearray(F.make_frame(1, 1, 1, 1, 1, b"hello").to_bytes() + b"\x05\x00")
    reader = F.FrameReader()
    (frame,) = reader.feed(data)
    data[:] = b""  # resizing fails if a view on it were still alive
    assert frame.payload == b"hello"
    assert reader.buffered == 2


def test_reader_accepts_any_buffer_shape() -> None:
    raw = F.make_frame(1, 1, 1, 1, 1, b"hi").to_bytes()  # 10 bytes
    words = array.array("H", raw)
    assert [f.payload for f in F.FrameReader().feed(words)] == [b"hi"]
    doubled = bytes(b for b in raw for _ in range(2))
    strided = memoryview(doubled)[::2]
    assert not strided.c_contiguous
    assert [f.payload for f in F.FrameReader().feed(strided)] == [b"hi"]
    reader = F.FrameReader()
    assert reader.feed(memoryview(words)[:2]) == []  # 4 bytes of header
    assert [f.payload for f in reader.feed(memoryview(words)[2:])] == [b"hi"]


FRAME = st.builds(
    F.make_frame,
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFF),
    st.integers(0, 0xFF),
    st.integers(0, 15),
    st.integers(0, 15),
    st.binary(max_size=300),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(FRAME, max_size=8), st.data())
def test_reader_random_fragmentation_equals_one_shot(
    frames: list[F.Frame], data: st.DataObject
) -> None:
    stream = b"".join(f.to_bytes() for f in frames)
    one_shot = F.read_frames(stream)
    assert [f.to_bytes() for f in one_shot] == [f.to_bytes() for f in frames]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    reader = F.FrameReader()
    got: list[F.Frame] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        got.extend(reader.feed(stream[last:cut]))
        last = cut
    reader.eof()
    assert got == one_shot


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 70000))
def test_reader_random_bytes_raise_only_frame_error(data: bytes, max_payload: int) -> None:
    reader = F.FrameReader(max_payload=max_payload)
    try:
        for i in range(0, len(data), 13):
            for frame in reader.feed(data[i : i + 13]):
                assert len(frame.payload) <= max_payload
        reader.eof()
    except FrameError:
        pass


# -- builders: command requests (spec §1.6, §3.1, §3.2) ------------------------------------


def test_command_request_split_in_32768_slices() -> None:
    stream = OutputStream(1)
    args = {b"nodes": [bytes([i % 256]) * 20 for i in range(2000)]}
    frames = list(F.create_command_frames(stream, 1, b"known", args))
    assert sizes(frames) == [32768, 9259]
    assert headers(frames) == [
        "1 1 stream-begin command-request new|more",
        "1 1 0 command-request continuation",
    ]
    assert b"".join(bytes(f.payload) for f in frames) == cbor.dumps(
        {b"name": b"known", b"args": args}
    )


def test_spec_1_6_verified_example_bytes() -> None:
    """The six frame headers of spec §1.6 (a 6.0 client reactor) byte for byte."""
    stream = OutputStream(1)
    out = [F.create_sender_protocol_settings_frame(stream, 1, [b"identity"])]
    nodes = [bytes([i % 256]) * 20 for i in range(2000)]
    out += F.create_command_frames(stream, 1, b"known", {b"nodes": nodes})
    out += F.create_command_frames(stream, 3, b"heads", None, b"x" * 40000)
    assert [f.header().hex() for f in out] == [
        "1c00000100010182",
        "0080000100010015",
        "2b24000100010012",
        "0c00000300010019",
        "0080000300010021",
        "401c000300010022",
    ]


def test_sender_settings_frame_default_6_0_bytes() -> None:
    frame = F.create_sender_protocol_settings_frame(
        OutputStream(1), 1, [b"zstd-8mb", b"zlib", b"identity"]
    )
    assert frame.to_bytes().hex() == (
        "2a00000100010182a150636f6e74656e74656e636f64696e677383487a7374642d386d62"
        "447a6c6962486964656e74697479"
    )


def test_command_request_of_exactly_max_size_has_no_more_flag() -> None:
    encoded = cbor.dumps({b"name": b"x", b"args": {b"k": b"v" * 100}})
    frames = list(
        F.create_command_frames(
            OutputStream(1), 1, b"x", {b"k": b"v" * 100}, max_frame_size=len(encoded)
        )
    )
    assert headers(frames) == ["1 1 stream-begin command-request new"]
    frames = list(
        F.create_command_frames(
            OutputStream(1), 1, b"x", {b"k": b"v" * 100}, max_frame_size=len(encoded) - 1
        )
    )
    assert sizes(frames) == [len(encoded) - 1, 1]


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, [("eos", 0)]),
        (100, [("eos", 100)]),
        (32768, [("continuation", 32768), ("eos", 0)]),
        (65536, [("continuation", 32768), ("continuation", 32768), ("eos", 0)]),
        (70000, [("continuation", 32768), ("continuation", 32768), ("eos", 4464)]),
    ],
)
@pytest.mark.parametrize("as_file", [False, True])
def test_command_data_blocks(length: int, expected: list[tuple[str, int]], as_file: bool) -> None:
    data = bytes(i % 251 for i in range(length))
    source: bytes | io.BytesIO = io.BytesIO(data) if as_file else data
    frames = list(F.create_command_frames(OutputStream(1), 5, b"cmd", None, source))
    request, *blocks = frames
    assert format_human_header(request) == "5 1 stream-begin command-request new|have-data"
    assert [(format_human_header(f).split()[-1], len(f.payload)) for f in blocks] == expected
    assert all(format_human_header(f).startswith("5 1 0 command-data ") for f in blocks)
    assert b"".join(bytes(f.payload) for f in blocks) == data


def test_have_data_is_on_every_request_frame() -> None:
    frames = list(
        F.create_command_frames(
            OutputStream(1), 1, b"c", {b"a": b"b" * 50}, b"data", max_frame_size=16
        )
    )
    requests = [f for f in frames if f.type_id == F.FrameType.COMMAND_REQUEST]
    encoded = cbor.dumps({b"name": b"c", b"args": {b"a": b"b" * 50}})
    assert len(requests) == -(-len(encoded) // 16)
    assert all(f.flags & F.CommandRequestFlag.HAVE_DATA for f in requests)


def test_command_data_slices_are_views_not_copies() -> None:
    data = b"z" * 100000
    frames = list(F.create_command_frames(OutputStream(1), 1, b"c", None, data))
    views = [f.payload for f in frames[1:] if len(f.payload)]
    assert all(isinstance(v, memoryview) and v.obj is data for v in views)


def test_second_request_on_active_stream_has_no_stream_begin() -> None:
    stream = OutputStream(1)
    first = list(F.create_command_frames(stream, 1, b"heads"))
    second = list(F.create_command_frames(stream, 3, b"heads"))
    assert headers(first + second) == [
        "1 1 stream-begin command-request new",
        "3 1 0 command-request new",
    ]


# -- builders: responses (spec §2.5, §3.3, §3.4) ------------------------------------------


def test_identity_response_frames() -> None:
    stream = OutputStream(2, "identity")
    assert stream.make_settings_frame(1) is not None
    assert stream.make_settings_frame(1) is None  # once per stream
    ok = F.create_command_response_ok_frame(stream, 1)
    assert ok is not None
    assert format_human_header(ok) == "1 2 encoded command-response continuation"
    (eos,) = F.create_command_response_eos_frames(stream, 1)
    assert eos.to_bytes().hex() == "0000000100020032"


def test_ok_frame_unencoded_before_settings() -> None:
    stream = OutputStream(2, "zlib")
    ok = F.create_command_response_ok_frame(stream, 1)
    assert ok is not None
    assert ok.to_bytes().hex() == "0b00000100020131a146737461747573426f6b"


def test_zlib_ok_frame_omitted_when_encoder_returns_nothing() -> None:
    """Spec §2.6 (b): the second request's ok frame disappears into the zlib buffer."""
    stream = OutputStream(2, "zlib")
    stream.make_settings_frame(1)
    first = F.create_command_response_ok_frame(stream, 1)
    assert first is not None
    assert bytes(first.payload) == b"\x78\x9c"
    (eos1,) = F.create_command_response_eos_frames(stream, 1)
    assert format_human_header(eos1) == "1 2 encoded command-response eos"
    assert bytes(eos1.payload).endswith(b"\x00\x00\xff\xff")
    assert F.create_command_response_ok_frame(stream, 3) is None
    (eos3,) = F.create_command_response_eos_frames(stream, 3)
    decoder = zlib.decompressobj()
    decoded = decoder.decompress(bytes(first.payload) + bytes(eos1.payload))
    assert decoded == cbor.dumps({b"status": b"ok"})
    assert decoder.decompress(bytes(eos3.payload)) == decoded


def test_eos_frames_slice_a_large_flush() -> None:
    data = random.Random(0).randbytes(20000)
    stream = OutputStream(2, "zlib")
    stream.make_settings_frame(1)
    early = bytes(stream.encode(data))
    frames = list(F.create_command_response_eos_frames(stream, 1, max_frame_size=1024))
    assert len(frames) >= 2
    assert [format_human_header(f).split()[-1] for f in frames] == ["continuation"] * (
        len(frames) - 1
    ) + ["eos"]
    assert all(f.stream_flags & F.StreamFlag.ENCODED for f in frames)
    assert all(len(f.payload) == 1024 for f in frames[:-1])
    flushed = b"".join(bytes(f.payload) for f in frames)
    assert zlib.decompressobj().decompress(early + flushed) == data


def test_encoded_frame_before_settings_is_refused() -> None:
    from hgwire.errors import EncodingError

    stream = OutputStream(2, "zstd-8mb")
    with pytest.raises(EncodingError, match="without sending stream settings"):
        stream.make_frame(1, F.FrameType.COMMAND_RESPONSE, 1, b"x", encoded=True)
    assert not stream.active  # a refused frame does not open the stream


def test_command_error_and_error_frames() -> None:
    stream = OutputStream(2, "zlib")
    err = F.create_command_error_response(stream, 1, b"unknown file: %s", [b"nope"])
    assert format_human_header(err) == "1 2 stream-begin command-response eos"
    assert cbor.loads(err.payload) == {
        b"status": b"error",
        b"error": {b"message": b"unknown file: %s", b"args": [b"nope"]},
    }
    frame = F.create_error_frame(stream, 3, b"unknown revision 'x'")
    assert format_human_header(frame) == "3 2 0 error-response 0"
    assert cbor.loads(frame.payload) == {
        b"type": b"server",
        b"message": [{b"msg": b"unknown revision 'x'"}],
    }


def test_error_frame_cuts_overlong_message() -> None:
    """DELIBERATE DIFFERENCE: 6.0 asserts; hgwire shortens the message to fit one frame."""
    frame = F.create_error_frame(OutputStream(2), 1, b"m" * 100000)
    assert len(frame.payload) <= F.DEFAULT_MAX_FRAME_SIZE
    message = cbor.loads(frame.payload)[b"message"][0][b"msg"]
    assert message.endswith(b"...") and message.startswith(b"mmm")


def test_text_output_refusals() -> None:
    stream = OutputStream(2)
    with pytest.raises(FrameError, match="labels must be ASCII"):
        F.create_text_output_frame(stream, 1, [(b"x", [], [b"caf\xc3\xa9"])])
    with pytest.raises(FrameError, match="must be bytes"):
        F.create_text_output_frame(stream, 1, [("x", [], [])])  # type: ignore[list-item]
    with pytest.raises(FrameError, match="single frame"):
        F.create_text_output_frame(stream, 1, [(b"x" * 40000, [], [])])


def test_redirect_frame_refuses_unknown_field() -> None:
    with pytest.raises(FrameError, match="unknown redirect location field"):
        F.create_alternate_location_response_frame(
            OutputStream(2), 1, b"https://x", b"m", colour=b"red"
        )


# -- response emitter ----------------------------------------------------------------------


def test_emitter_coalesces_and_flushes_like_6_0() -> None:
    stream = OutputStream(2, "identity")
    stream.make_settings_frame(1)
    emitter = F.ResponseEmitter(stream, 1)
    assert emitter.send(b"a" * 100) == []
    assert emitter.send(b"b" * 32000) == []
    # 100 + 32000 + 668 == 32768 is not strictly less: flush, then buffer the new chunk.
    frames = emitter.send(b"c" * 668)
    assert sizes(frames) == [32100]
    big = b"d" * 70000
    frames = emitter.send(big)
    assert sizes(frames) == [668, 32768, 32768, 4464]
    assert all(isinstance(f.payload, memoryview) and f.payload.obj is big for f in frames[1:])
    assert all(
        format_human_header(f) == "1 2 encoded command-response continuation" for f in frames
    )
    assert emitter.send(b"") == []
    assert emitter.send(b"e") == []
    assert sizes(emitter.flush()) == [1]
    assert emitter.flush() == []


@pytest.mark.parametrize("encoding", ["identity", "zlib", "zstd-8mb"])
def test_two_responses_through_emitter_decode_with_one_input_stream(encoding: str) -> None:
    out = OutputStream(2, encoding)
    inp = InputStream(2)
    responses = {1: [b"x" * 50000, bytes(range(256)) * 300], 3: [b"tail" * 10]}
    frames: list[F.Frame] = []
    for rid, chunks in responses.items():
        settings_frame = out.make_settings_frame(rid)
        if settings_frame is not None:
            frames.append(settings_frame)
        ok = F.create_command_response_ok_frame(out, rid)
        if ok is not None:
            frames.append(ok)
        emitter = F.ResponseEmitter(out, rid)
        for chunk in chunks:
            frames += emitter.send(chunk)
        frames += emitter.flush()
        frames += F.create_command_response_eos_frames(out, rid)
    wire = b"".join(f.to_bytes() for f in frames)
    got: dict[int, bytes] = {1: b"", 3: b""}
    for frame in F.read_frames(wire):
        assert frame.stream_id == 2
        assert len(frame.payload) <= F.DEFAULT_MAX_FRAME_SIZE
        if frame.type_id == F.FrameType.STREAM_SETTINGS:
            inp.set_decoder(cbor.loads(frame.payload))
            continue
        got[frame.request_id] += inp.frame_payload(frame)
    ok = cbor.dumps({b"status": b"ok"})
    assert got == {rid: ok + b"".join(chunks) for rid, chunks in responses.items()}


# -- against Mercurial 6.0's own builders ----------------------------------------------------

_HG_BUILD = """
import ast, io, json, sys
from mercurial import wireprotoframing as w
w.populatestreamencoders()
out = []
for case in json.load(sys.stdin):
    kind, spec = case[0], ast.literal_eval(case[1])
    frames = []
    if kind == "request":
        rid, name, args, data, mfs = spec
        stream = w.stream(1)
        datafh = None if data is None else io.BytesIO(data)
        frames = list(w.createcommandframes(stream, rid, name, args, datafh, mfs))
    elif kind == "response":
        rid, chunks = spec
        stream = w.outputstream(2)
        stream.setencoder(None, b"identity")
        frames.append(stream.makestreamsettingsframe(rid))
        frames.append(w.createcommandresponseokframe(stream, rid))
        emitter = w.bufferingcommandresponseemitter(stream, rid)
        for chunk in chunks + [None]:
            frames.extend(emitter.send(chunk))
        frames.extend(w.createcommandresponseeosframes(stream, rid))
    elif kind == "text":
        rid, atoms = spec
        frames = list(w.createtextoutputframe(w.stream(2), rid, atoms))
    elif kind == "error":
        rid, message, args = spec
        frames = list(w.createcommanderrorresponse(w.stream(2), rid, message, args))
        frames += list(w.createerrorframe(w.stream(2), rid, message, b"server"))
    out.append([bytes(f).hex() for f in frames])
json.dump(out, sys.stdout)
"""


def _random_value(rng: random.Random, depth: int = 0) -> object:
    pick = rng.randrange(6 if depth < 2 else 3)
    if pick == 0:
        return rng.randbytes(rng.randrange(40))
    if pick == 1:
        return rng.randrange(-(2**40), 2**40)
    if pick == 2:
        return rng.choice([None, True, False])
    if pick == 3:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if pick == 4:
        return {rng.randbytes(rng.randrange(1, 6)) for _ in range(rng.randrange(4))}
    return {
        rng.randbytes(rng.randrange(1, 8)): _random_value(rng, depth + 1)
        for _ in range(rng.randrange(4))
    }


@pytest.mark.interop
def test_builders_agree_with_hg60(hg60_path: Path) -> None:
    """Random requests, identity responses, text output and errors, byte for byte."""
    rng = random.Random(6)
    cases: list[tuple[str, object]] = []
    for _ in range(60):
        args = {rng.randbytes(rng.randrange(1, 10)): _random_value(rng) for _ in range(3)}
        if rng.random() < 0.2:
            args[b"big"] = rng.randbytes(rng.randrange(30000, 80000))
        data = rng.choice([None, b"", rng.randbytes(rng.randrange(100000))])
        size = rng.choice([16, 100, 32768])
        cases.append(("request", (rng.randrange(65536), b"cmd", args, data, size)))
    for _ in range(30):
        chunks = [rng.randbytes(rng.choice([0, 5, 300, 32767, 32768, 40000])) for _ in range(5)]
        cases.append(("response", (rng.randrange(65536), chunks)))
    cases.append(("text", (1, [(b"a %s", [b"\xff\xfe", b"x"], [b"l"]), (b"plain", [], [])])))
    cases.append(("error", (3, b"unknown file: %s", [b"nope"])))
    cases.append(("error", (3, b"no args", None)))
    proc = subprocess.run(
        [str(hg60_path.parent / "python"), "-c", _HG_BUILD],
        input=json.dumps([[kind, repr(spec)] for kind, spec in cases]),
        capture_output=True,
        text=True,
        env=hg_env(),
    )
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout)
    assert len(theirs) == len(cases)
    for (kind, spec), expected in zip(cases, theirs, strict=True):
        assert [f.to_bytes().hex() for f in _build_like_hg(kind, spec)] == expected, kind


def _build_like_hg(kind: str, spec: Any) -> list[F.Frame]:
    if kind == "request":
        rid, name, args, data, size = spec
        return list(
            F.create_command_frames(OutputStream(1), rid, name, args, data, max_frame_size=size)
        )
    if kind == "response":
        rid, chunks = spec
        stream = OutputStream(2, "identity")
        frames = [stream.make_settings_frame(rid), F.create_command_response_ok_frame(stream, rid)]
        emitter = F.ResponseEmitter(stream, rid)
        for chunk in chunks:
            frames += emitter.send(chunk)
        frames += emitter.flush()
        frames += F.create_command_response_eos_frames(stream, rid)
        return [f for f in frames if f is not None]
    if kind == "text":
        rid, atoms = spec
        return [F.create_text_output_frame(OutputStream(2), rid, atoms)]
    rid, message, args = spec
    return [
        F.create_command_error_response(OutputStream(2), rid, message, args),
        F.create_error_frame(OutputStream(2), rid, message),
    ]
