"""The human-readable frame syntax (spec §1.7): parsing, printing, exact round trips."""

from __future__ import annotations

import codecs
import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hgwire.errors import FrameError
from hgwire.wire import cbor
from hgwire.wire.frames import (
    FRAME_FLAG_NAMES,
    FRAME_TYPE_NAMES,
    STREAM_FLAG_NAMES,
    FrameType,
    make_frame,
)
from hgwire.wire.human import (
    escape_bytes,
    format_human_frame,
    parse_human_frame,
    unescape_bytes,
)
from tests.conftest import hg_env


def payload_of(line: str) -> bytes:
    return bytes(parse_human_frame(line).payload)


# -- parsing -------------------------------------------------------------------------------


def test_spec_examples() -> None:
    assert parse_human_frame("1 1 stream-begin command-request new cbor:{b'name': b'heads'}")
    frame = parse_human_frame(
        "1 1 stream-begin sender-protocol-settings eos "
        "cbor:{b'contentencodings': [b'zlib', b'identity']}"
    )
    assert frame.to_bytes().hex() == (
        "2100000100010182a150636f6e74656e74656e636f64696e677382447a6c6962486964656e74697479"
    )
    assert payload_of("3 1 0 command-request new|more \\xa1Dname") == b"\xa1Dname"
    assert payload_of("1 1 0 command-data eos somebytes") == b"somebytes"


def test_payload_keeps_spaces_and_may_be_empty() -> None:
    assert payload_of("1 1 0 command-data eos  two  spaces ") == b" two  spaces "
    assert payload_of("1 1 0 command-data eos ") == b""
    # hgwire convenience: five fields mean an empty payload too.
    assert payload_of("1 1 0 command-data eos") == b""


@pytest.mark.parametrize(
    "body",
    [
        "plain",
        "\\x00\\xff\\xA1",
        "\\n\\r\\t\\\\\\'\\\"\\a\\b\\f\\v",
        "\\0\\7\\101\\1234",
        "keep \\q unknown \\d escapes",
        "line\\\ncontinued",
        "caf\u00e9 utf-8",
    ],
)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_unescape_matches_python_escape_decode(body: str) -> None:
    assert unescape_bytes(body) == codecs.escape_decode(body.encode("utf-8"))[0]


@pytest.mark.parametrize("body", ["trailing\\", "\\x4", "\\xzz", "\\777"])
def test_bad_escapes(body: str) -> None:
    with pytest.raises(FrameError):
        unescape_bytes(body)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("1 1 0 command-data", "needs"),
        ("", "needs"),
        ("x 1 0 command-data 0 ", "invalid request id"),
        ("+1 1 0 command-data 0 ", "invalid request id"),
        ("\u0661 1 0 command-data 0 ", "invalid request id"),  # an Arabic-Indic digit
        ("1 -1 0 command-data 0 ", "invalid stream id"),
        ("1 1 begin command-data 0 ", "unknown stream flag"),
        ("1 1 stream-begin| command-data 0 ", "unknown stream flag"),
        ("1 1 0 command-dat 0 ", "invalid frame type"),
        ("1 1 0 command-data new ", "unknown frame flag"),  # new is a request flag
        ("1 1 0 4 eos ", "unknown frame flag"),  # an unassigned type has no names
        ("65536 1 0 1 0 ", "16 bits"),
        ("1 256 0 1 0 ", "8 bits"),
        ("1 1 256 1 0 ", "8 bits"),
        ("1 1 0 16 0 ", "4 bits"),
        ("1 1 0 1 16 ", "4 bits"),
        ("1 1 0 1 0 cbor:", "invalid Python literal"),
        ("1 1 0 1 0 cbor:{b'a': }", "invalid Python literal"),
        ("1 1 0 1 0 cbor:{[1]: 2}", "invalid Python literal"),
        ("1 1 0 1 0 cbor:'text'", "cannot encode"),
        ("1 1 0 1 0 cbor:1.5", "cannot encode"),
        ("1 1 0 1 0 cbor:frozenset()", "invalid Python literal"),
        ("1 1 0 1 0 cbor:2**64", "invalid Python literal"),
        ("1 1 0 1 0 cbor:" + "[" * 5000 + "]" * 5000, "invalid Python literal"),
    ],
)
def test_bad_lines_are_frame_errors(line: str, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        parse_human_frame(line)


def test_cbor_literals_are_never_evaluated_as_code(tmp_path: Any) -> None:
    marker = tmp_path / "pwned"
    line = f"1 1 0 1 0 cbor:__import__('pathlib').Path({str(marker)!r}).touch()"
    with pytest.raises(FrameError, match="invalid Python literal"):
        parse_human_frame(line)
    assert not marker.exists()


def test_numeric_and_named_flags_combine() -> None:
    frame = parse_human_frame("1 1 stream-begin|4 1 new|8|more ")
    assert (frame.stream_flags, frame.type_id, frame.flags) == (5, 1, 13)
    frame = parse_human_frame("1 1 0 command-response 0|0 ")
    assert frame.flags == 0


# -- printing ------------------------------------------------------------------------------


def test_cbor_payloads_print_as_literals() -> None:
    frame = make_frame(1, 2, 4, 3, 1, cbor.dumps({b"status": b"ok"}))
    assert format_human_frame(frame) == (
        "1 2 encoded command-response continuation cbor:{b'status': b'ok'}"
    )
    assert format_human_frame(frame, decode_cbor=False) == (
        "1 2 encoded command-response continuation \\xa1Fstatus" + "Bok"
    )
    assert format_human_frame(make_frame(1, 1, 0, 1, 0, cbor.dumps(set()))).endswith(" cbor:set()")


@pytest.mark.parametrize(
    "payload",
    [
        b"\x18\x00",  # 0 in a longer form than needed: re-encoding would differ
        b"\xa2\x41b\x01\x41a\x02",  # map keys out of Mercurial's order
        b"\x01\x02",  # two values
        b"\x82\x01",  # incomplete
        b"\x5f\x41a\xff",  # indefinite byte string
        b"\xa2\x01\x00\xf5\x00",  # keys 1 and True collapse in a Python dict
        b"\x81" * 80 + b"\x80",  # deeper than the literal printer goes
    ],
)
def test_payloads_that_would_not_round_trip_print_as_bytes(payload: bytes) -> None:
    frame = make_frame(1, 1, 0, 3, 1, payload)
    text = format_human_frame(frame)
    assert " cbor:" not in text
    assert bytes(parse_human_frame(text).payload) == payload


def test_payload_starting_with_cbor_colon_is_escaped() -> None:
    frame = make_frame(1, 1, 0, 2, 2, b"cbor:1")
    text = format_human_frame(frame)
    assert text == "1 1 0 command-data eos \\x63bor:1"
    assert bytes(parse_human_frame(text).payload) == b"cbor:1"


def test_unknown_bits_and_types_print_as_numbers() -> None:
    frame = make_frame(7, 9, 0xFF, 4, 15, b"")
    assert format_human_frame(frame) == (
        "7 9 stream-begin|stream-end|encoded|8|16|32|64|128 4 1|2|4|8 "
    )
    assert parse_human_frame(format_human_frame(frame)).to_bytes() == frame.to_bytes()


def test_escape_bytes_is_readable() -> None:
    assert escape_bytes(b"a b\\c\n\t\r\x00\xff'\"") == "a b\\\\c\\n\\t\\r\\x00\\xff'\""


# -- round trips -----------------------------------------------------------------------------

SIMPLE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64 - 1),
    st.binary(max_size=20),
)
VALUES = st.recursive(
    SIMPLE,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.binary(max_size=8), st.integers(0, 100)), inner, max_size=4),
        st.sets(st.binary(max_size=6), max_size=4),
    ),
    max_leaves=12,
)
HEADERS = st.tuples(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFF),
    st.integers(0, 0xFF),
    st.integers(0, 15),
    st.integers(0, 15),
)


@settings(max_examples=200, deadline=None)
@given(HEADERS, st.one_of(st.binary(max_size=64), VALUES.map(cbor.dumps)), st.booleans())
def test_print_parse_round_trip(
    header: tuple[int, int, int, int, int], payload: bytes, decode: bool
) -> None:
    frame = make_frame(*header, payload)
    text = format_human_frame(frame, decode_cbor=decode)
    assert "\n" not in text
    assert parse_human_frame(text).to_bytes() == frame.to_bytes()


@settings(max_examples=100, deadline=None)
@given(VALUES)
def test_cbor_values_print_as_literals(value: Any) -> None:
    encoded = cbor.dumps(value)
    text = format_human_frame(make_frame(1, 1, 0, 3, 1, encoded))
    assert text.split(" ", 5)[5].startswith("cbor:")
    assert parse_human_frame(text).payload == encoded


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_random_lines_only_raise_frame_error(line: str) -> None:
    try:
        frame = parse_human_frame(line)
    except FrameError:
        return
    assert parse_human_frame(format_human_frame(frame)).to_bytes() == frame.to_bytes()


# -- against Mercurial 6.0's own parser ------------------------------------------------------

_HG_PARSE = """
import json, sys
from mercurial import wireprotoframing
out = []
for line in json.load(sys.stdin):
    try:
        out.append(bytes(wireprotoframing.makeframefromhumanstring(line.encode("utf-8"))).hex())
    except Exception as exc:
        out.append("error: " + type(exc).__name__)
json.dump(out, sys.stdout)
"""


def _random_line(rng: random.Random) -> str:
    def bits(names: list[str], width: int) -> str:
        items = [
            rng.choice(names) if names and rng.random() < 0.6 else str(1 << rng.randrange(width))
            for _ in range(rng.randrange(3))
        ]
        return "|".join(items) or "0"

    type_name = rng.choice(list(FRAME_TYPE_NAMES))
    type_id = int(FRAME_TYPE_NAMES[type_name])
    flag_names = list(FRAME_FLAG_NAMES[FrameType(type_id)])
    kind = rng.randrange(4)
    if kind == 0:
        value: Any = rng.choice(
            [
                {b"name": b"heads"},
                [None, True, False, -(2**64), 2**64 - 1],
                {b"a": [1, {b"x", b"y"}], 3: b"\x00\xff"},
                set(),
                rng.randbytes(rng.randrange(30)),
                rng.randrange(-(10**6), 10**6),
            ]
        )
        payload = "cbor:" + repr(value)
    elif kind == 1:
        payload = escape_bytes(rng.randbytes(rng.randrange(40)))
    elif kind == 2:
        payload = "".join(
            rng.choice(["a", " ", "\\n", "\\x4A", "\\101", "\\t", "\\\\", "\\'", "\\q", "é"])
            for _ in range(rng.randrange(12))
        )
    else:
        payload = ""
    return " ".join(
        [
            str(rng.randrange(65536)),
            str(rng.randrange(256)),
            bits(list(STREAM_FLAG_NAMES), 8),
            type_name if rng.random() < 0.7 else str(type_id),
            bits(flag_names, 4),
            payload,
        ]
    )


@pytest.mark.interop
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_parser_and_printer_agree_with_hg60(hg60_path: Path) -> None:
    """Random lines parse to the same bytes as 6.0's makeframefromhumanstring, and the
    lines hgwire prints are read by 6.0 as the same frames."""
    rng = random.Random(60)
    lines = [_random_line(rng) for _ in range(300)]
    ours = [parse_human_frame(line) for line in lines]
    printed = [format_human_frame(f, decode_cbor=d) for f in ours for d in (True, False)]
    proc = subprocess.run(
        [str(hg60_path.parent / "python"), "-c", _HG_PARSE],
        input=json.dumps(lines + printed),
        capture_output=True,
        text=True,
        env=hg_env(),
    )
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout)
    assert theirs[: len(lines)] == [f.to_bytes().hex() for f in ours]
    assert theirs[len(lines) :] == [f.to_bytes().hex() for f in ours for _ in (0, 1)]
    assert any(line.split(" ", 5)[5].startswith("cbor:") for line in printed)
