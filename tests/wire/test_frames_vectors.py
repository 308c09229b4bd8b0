"""Every case of vectors/frames.json (recorded from Mercurial 6.0) against hgwire's frames."""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest

from hgwire.errors import FrameError
from hgwire.wire import frames as F
from hgwire.wire.human import format_human_frame, format_human_header, parse_human_frame
from hgwire.wire.streams import OutputStream
from tests.conftest import VECTORS
from tests.wire.cborjson import from_json as typed

CASES: list[dict[str, Any]] = json.loads((VECTORS / "frames.json").read_text())["cases"]


def cases(kind: str) -> list[Any]:
    return [pytest.param(c, id=c["name"]) for c in CASES if c["kind"] == kind]


def fields(frame: F.Frame) -> dict[str, Any]:
    return {
        "requestid": frame.request_id,
        "streamid": frame.stream_id,
        "streamflags": frame.stream_flags,
        "typeid": frame.type_id,
        "flags": frame.flags,
        "payload_hex": bytes(frame.payload).hex(),
    }


def test_vector_file_has_every_kind() -> None:
    kinds = {c["kind"] for c in CASES}
    assert kinds == {"header", "makeframe_edge", "human", "readframe", "builder"}


# -- header ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases("header"))
def test_header_encode_decode(case: dict[str, Any]) -> None:
    header = bytes.fromhex(case["header_hex"])
    assert (
        F.encode_header(
            case["length"],
            case["requestid"],
            case["streamid"],
            case["streamflags"],
            case["typeid"],
            case["flags"],
        )
        == header
    )
    decoded = F.decode_header(header)
    assert (
        decoded.length,
        decoded.request_id,
        decoded.stream_id,
        decoded.stream_flags,
        decoded.type_id,
        decoded.flags,
    ) == (
        case["length"],
        case["requestid"],
        case["streamid"],
        case["streamflags"],
        case["typeid"],
        case["flags"],
    )
    frame = F.Frame(
        case["requestid"], case["streamid"], case["streamflags"], case["typeid"], case["flags"]
    )
    assert format_human_header(frame) == case["human_header"]
    if case["type_name"] is not None:
        assert F.FRAME_TYPE_NAMES[case["type_name"]] == case["typeid"]
    if "frame_hex" in case:
        data = bytes.fromhex(case["frame_hex"])
        (read,) = F.read_frames(data)
        assert bytes(read.payload) == data[8:]
        assert len(read.payload) == case["length"]
        assert read.to_bytes() == data


@pytest.mark.parametrize(
    "case", [p for p in cases("header") if p.values[0]["hg60_parse_matches_spec"]]
)
def test_header_length_agrees_with_hg60_parseheader_below_65536(case: dict[str, Any]) -> None:
    """Where 6.0 parses the length right, hgwire reads exactly what 6.0 reads (the other
    cases are the deliberate difference tested below)."""
    hg = case["parsed_by_hg60"]
    decoded = F.decode_header(bytes.fromhex(case["header_hex"]))
    assert decoded.length == hg["length"] == case["length"]
    assert (decoded.request_id, decoded.stream_id, decoded.type_id, decoded.flags) == (
        hg["requestid"],
        hg["streamid"],
        hg["typeid"],
        hg["flags"],
    )


def test_header_deliberate_difference_true_24bit_length_unlike_hg60() -> None:
    """DELIBERATE DIFFERENCE: 6.0's parseheader() weights the third length byte by 16384;
    hgwire reads the true 24-bit little-endian length (spec §1.1)."""
    wrong = [c for c in CASES if c["kind"] == "header" and not c["hg60_parse_matches_spec"]]
    assert len(wrong) >= 5
    for case in wrong:
        raw = bytes.fromhex(case["header_hex"])
        decoded = F.decode_header(raw)
        assert decoded.length == raw[0] | raw[1] << 8 | raw[2] << 16 == case["length"]
        assert case["parsed_by_hg60"]["length"] == raw[0] + 256 * raw[1] + 16384 * raw[2]
        assert decoded.length != case["parsed_by_hg60"]["length"]
        assert decoded.length >= 65536


# -- makeframe_edge ----------------------------------------------------------------------

EDGE = {c["name"]: c for c in CASES if c["kind"] == "makeframe_edge"}


def _edge_inputs(name: str) -> tuple[dict[str, Any], bytes]:
    inputs = EDGE[name]["inputs"]
    return inputs, bytes(inputs["payload_length"])


def test_edge_payload_2_24_refused_where_hg60_truncates_length() -> None:
    """CHOICE: refuse. 6.0 writes a header announcing length 0 for a 16 MiB payload,
    which desynchronises the peer; hgwire raises FrameError."""
    case = EDGE["payload of 2**24 bytes"]
    assert case["header_hex"][:6] == "000000"  # what 6.0 did
    inputs, payload = _edge_inputs("payload of 2**24 bytes")
    with pytest.raises(FrameError, match="24 bits"):
        F.make_frame(
            inputs["requestid"],
            inputs["streamid"],
            inputs["streamflags"],
            inputs["typeid"],
            inputs["flags"],
            payload,
        )


@pytest.mark.parametrize(
    ("name", "match"), [("request id 65536", "16 bits"), ("stream id 256", "8 bits")]
)
def test_edge_out_of_range_ids_refused_like_hg60(name: str, match: str) -> None:
    """CHOICE: mirror hg (refuse), with a FrameError instead of struct.error."""
    assert EDGE[name]["raises"]["type"] == "error"
    inputs, payload = _edge_inputs(name)
    with pytest.raises(FrameError, match=match):
        F.make_frame(
            inputs["requestid"],
            inputs["streamid"],
            inputs["streamflags"],
            inputs["typeid"],
            inputs["flags"],
            payload,
        )


def test_edge_flags_16_refused_where_hg60_ors_into_type() -> None:
    """CHOICE: refuse. 6.0 ORs flags 16 into the type nibble (here it lands on the type's
    own bit, so the flag silently vanishes); hgwire raises FrameError."""
    case = EDGE["flags 16"]
    assert case["header_hex"][-2:] == "10"  # 6.0: (1 << 4) | 16 == 0x10
    inputs, payload = _edge_inputs("flags 16")
    with pytest.raises(FrameError, match="4 bits"):
        F.make_frame(
            inputs["requestid"],
            inputs["streamid"],
            inputs["streamflags"],
            inputs["typeid"],
            inputs["flags"],
            payload,
        )


def test_every_edge_case_has_a_named_choice() -> None:
    assert set(EDGE) == {"payload of 2**24 bytes", "request id 65536", "stream id 256", "flags 16"}


# -- human -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases("human"))
def test_human_parse(case: dict[str, Any]) -> None:
    frame = parse_human_frame(case["human"])
    assert frame.to_bytes().hex() == case["frame_hex"]
    expected = {k: case[k] for k in ("requestid", "streamid", "streamflags", "typeid", "flags")}
    expected["payload_hex"] = case["payload_hex"]
    assert fields(frame) == expected


@pytest.mark.parametrize("case", cases("human"))
def test_human_format_round_trips(case: dict[str, Any]) -> None:
    frame = F.read_frames(bytes.fromhex(case["frame_hex"]))[0]
    for decode in (True, False):
        text = format_human_frame(frame, decode_cbor=decode)
        assert parse_human_frame(text).to_bytes().hex() == case["frame_hex"]


# -- readframe ---------------------------------------------------------------------------


def _expected_frames(case: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in case["frames"] if f is not None]


@pytest.mark.parametrize("case", cases("readframe"))
def test_readframe(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["input_hex"])
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        reader = F.FrameReader()
        got: list[F.Frame] = []
        for piece in pieces:
            got.extend(reader.feed(piece))
        assert [fields(f) for f in got] == _expected_frames(case)
        if "raises" not in case:
            assert case["frames"][-1] is None  # 6.0: clean end of input
            reader.eof()
            continue
        message = case["raises"]["message"]
        with pytest.raises(FrameError) as info:
            reader.eof()
        if message.startswith("received incomplete frame"):
            # DELIBERATE DIFFERENCE: 6.0 embeds the zero-filled raw header bytes; hgwire
            # names the bytes received in hex.
            prefix = message.split(": got ")[0]
            count = int(message.split(": got ")[1].split(" ")[0])
            tail = data[len(data) - count :]
            assert str(info.value) == f"{prefix}: got {count} bytes: {tail.hex()}"
        else:
            assert str(info.value) == message


# -- builder -----------------------------------------------------------------------------


def _build(case: dict[str, Any]) -> list[F.Frame | None]:
    fn = case["function"]
    i = case["inputs"]
    if fn == "createcommandframes":
        stream = OutputStream(i["streamid"], active=i["stream_active"])
        data = None if i["data"] is None else bytes.fromhex(i["data"])
        return list(
            F.create_command_frames(
                stream,
                i["requestid"],
                typed(i["command"]),
                typed(i["args"]),
                data,
                max_frame_size=i["maxframesize"],
                redirect=None if i["redirect"] is None else typed(i["redirect"]),
            )
        )
    if fn == "createtextoutputframe":
        atoms = i["atoms"]
        atoms = ast.literal_eval(atoms) if isinstance(atoms, str) else typed(atoms)
        stream = OutputStream(i.get("streamid", 1))
        return [F.create_text_output_frame(stream, i.get("requestid", 1), atoms)]
    stream = OutputStream(i["streamid"])
    if fn == "createerrorframe":
        return [
            F.create_error_frame(stream, i["requestid"], typed(i["message"]), typed(i["errtype"]))
        ]
    if fn == "createcommanderrorresponse":
        args = None if i["args"] is None else typed(i["args"])
        return [F.create_command_error_response(stream, i["requestid"], typed(i["message"]), args)]
    if fn == "createcommandresponseokframe":
        return [F.create_command_response_ok_frame(stream, i["requestid"])]
    if fn == "outputstream":
        stream = OutputStream(i["streamid"], i["encoder"])
        return [
            stream.make_settings_frame(i["requestid"]),
            F.create_command_response_ok_frame(stream, i["requestid"]),
            *F.create_command_response_eos_frames(stream, i["requestid"]),
        ]
    if fn == "createalternatelocationresponseframe":
        location = {k: typed(v) for k, v in i["location"].items()}
        return [F.create_alternate_location_response_frame(stream, i["requestid"], **location)]
    raise AssertionError(f"unknown builder {fn}")


@pytest.mark.parametrize("case", cases("builder"))
def test_builder(case: dict[str, Any]) -> None:
    if "raises" in case:
        # 6.0 raises UnicodeEncodeError for a non-ASCII format string; hgwire a FrameError.
        assert case["raises"]["type"] == "UnicodeEncodeError"
        with pytest.raises(FrameError, match="ASCII"):
            _build(case)
        return
    built = _build(case)
    assert all(f is not None for f in built)
    assert [f.to_bytes().hex() for f in built if f is not None] == [
        f["hex"] for f in case["frames"]
    ]
    assert [format_human_header(f) for f in built if f is not None] == [
        f["human_header"] for f in case["frames"]
    ]
