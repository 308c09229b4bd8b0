"""Unit tests of hgwire.wire.cbor: encoder details, decoder API, limits, linear cost,
and every deliberate difference from Mercurial 6.0 (tests named ``test_deviation_*``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hgwire.errors import CBORDecodeError, CBOREncodeError
from hgwire.wire import cbor
from hgwire.wire.cbor import BytestringChunk, Decoder


def decode_pieces(data: bytes, size: int, **limits: int) -> list[list[Any]]:
    """Feed ``data`` in ``size``-byte pieces; the values returned by each feed."""
    dec = Decoder(**limits)
    steps = [dec.feed(data[i : i + size]) for i in range(0, len(data), size)]
    dec.finish()
    return steps


def both_engines(data: bytes, **limits: int) -> Any:
    """Decode ``data`` one-shot with and without the fast path; they must agree."""
    results = []
    for fast in (True, False):
        dec = Decoder(**limits)
        dec._fast = fast
        try:
            values = dec.feed(data)
            dec.finish()
            results.append(("ok", values))
        except CBORDecodeError as exc:
            results.append(("error", str(exc)))
    assert results[0] == results[1]
    return results[0]


# ----------------------------------------------------------------------------- encoder


class Name(bytes):
    """A bytes subclass: Mercurial sorts it under its own type name."""


def test_map_keys_sorted_by_type_name_then_value() -> None:
    """Spec §4.1: (type name, value) order, bytewise for byte strings, not RFC canonical."""
    value = {2: b"i", b"zz": b"z", b"aaa": b"a", None: b"n", True: b"t"}
    order = [None, True, b"aaa", b"zz", 2]  # NoneType < bool < bytes < int
    encoded = cbor.dumps(value)
    assert encoded == b"\xa5" + b"".join(cbor.dumps(k) + cbor.dumps(value[k]) for k in order)
    assert cbor.loads(encoded) == value


def test_subclass_keys_sort_under_their_own_type_name() -> None:
    value = {Name(b"b"): 1, b"c": 2, b"a": 3}
    # type names: "Name" < "bytes" (uppercase sorts first), as in hg's _mixedtypesortkey
    assert cbor.dumps(value) == bytes.fromhex("a3") + b"".join(
        cbor.dumps(k) + cbor.dumps(v) for k, v in [(b"b", 1), (b"a", 3), (b"c", 2)]
    )


def test_bool_and_int_keys_sort_bool_first() -> None:
    assert cbor.dumps({0: b"", True: b""}) == bytes.fromhex("a2 f5 40 00 40")
    assert cbor.dumps({False, -1}) == bytes.fromhex("d9010282 f4 20")


def test_subclasses_encode_as_base_types() -> None:
    class L(list[Any]):
        pass

    class D(dict[Any, Any]):
        pass

    class I(int):  # noqa: E742
        pass

    assert cbor.dumps(L([1, 2])) == cbor.dumps([1, 2])
    assert cbor.dumps(D({b"b": 1, b"a": 2})) == cbor.dumps({b"a": 2, b"b": 1})
    assert cbor.dumps(I(300)) == cbor.dumps(300)
    assert cbor.dumps(Name(b"x")) == b"\x41x"


@pytest.mark.parametrize(
    ("value", "hexed"),
    [(2**64 - 1, "1bffffffffffffffff"), (-(2**64), "3bffffffffffffffff"), (-257, "390100")],
)
def test_integer_bounds(value: int, hexed: str) -> None:
    assert cbor.dumps(value).hex() == hexed
    assert cbor.loads(bytes.fromhex(hexed)) == value


@pytest.mark.parametrize("value", [2**64, -(2**64) - 1, [2**70]])
def test_big_integers_refused(value: Any) -> None:
    with pytest.raises(CBOREncodeError, match="big integers not supported"):
        cbor.dumps(value)


@pytest.mark.parametrize(
    "value", ["text", 1.5, frozenset(), {b"k": "v"}, object(), b"x".decode, {("a", 1): 2}]
)
def test_unencodable_values_raise_cborencodeerror(value: Any) -> None:
    with pytest.raises(CBOREncodeError):
        cbor.dumps(value)


def test_unorderable_keys_raise_cborencodeerror() -> None:
    with pytest.raises(CBOREncodeError, match="cannot order"):
        cbor.dumps({(1,): 1, (b"a",): 2})


def test_iter_encode_keeps_large_bodies_separate_and_uncopied() -> None:
    big = bytes(range(256)) * 1024
    value = {b"data": big, b"list": [b"x"] * 10, b"n": 1}
    pieces = list(cbor.iter_encode(value))
    assert b"".join(pieces) == cbor.dumps(value)
    (body,) = [p for p in pieces if isinstance(p, memoryview)]
    assert body.obj is big  # a view on the caller's bytes, not a copy
    assert len(pieces) == 3  # what precedes the body, the body, what follows it


def test_iter_encode_coalesces_many_small_values() -> None:
    value = [[i, b"v" * (i % 7)] for i in range(20000)]
    pieces = list(cbor.iter_encode(value))
    assert b"".join(pieces) == cbor.dumps(value)
    assert len(pieces) == 1  # joined once, not one piece per item


def test_iter_encode_pulls_indefinite_chunks_lazily() -> None:
    pulled: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(3):
            pulled.append(i)
            yield bytes([i]) * 5

    stream = cbor.iter_encode(cbor.IndefiniteBytes(chunks()))
    assert next(stream) == b"\x5f"
    assert pulled == []
    rest = b"".join(stream)
    assert pulled == [0, 1, 2]
    assert rest == b"\x45" + b"\x00" * 5 + b"\x45" + b"\x01" * 5 + b"\x45" + b"\x02" * 5 + b"\xff"


def test_indefinite_from_buffer_is_zero_copy() -> None:
    source = bytearray(b"abcdefghij")
    value = cbor.indefinite_from_buffer(source, 4)
    chunks = list(value.chunks)  # type: ignore[call-overload]
    assert [bytes(c) for c in chunks] == [b"abcd", b"efgh", b"ij"]
    source[0:1] = b"A"  # the chunks are views on the buffer, not copies
    assert bytes(chunks[0]) == b"Abcd"
    assert cbor.dumps(value) == b"\x5f\x44Abcd\x44efgh\x42ij\xff"
    with pytest.raises(CBOREncodeError):
        cbor.indefinite_from_buffer(b"x", 0)


def test_large_indefinite_chunks_are_not_copied() -> None:
    big = b"z" * (cbor.LARGE_BYTES * 2)
    pieces = list(cbor.iter_encode(cbor.IndefiniteBytes([big, b"tail"])))
    assert any(p is big for p in pieces)
    assert cbor.loads(b"".join(pieces)) == big + b"tail"


def test_indefinite_chunk_must_be_bytes() -> None:
    with pytest.raises(CBOREncodeError, match="chunk must be bytes"):
        cbor.dumps(cbor.IndefiniteBytes([b"ok", "text"]))  # type: ignore[list-item]


# ----------------------------------------------------------------------------- decoder API


def test_values_come_out_as_soon_as_complete() -> None:
    data = cbor.dumps({b"status": b"ok"}) + cbor.dumps([1, 2]) + cbor.dumps(b"x" * 300)
    first_end = len(cbor.dumps({b"status": b"ok"}))
    dec = Decoder()
    assert dec.feed(data[: first_end - 1]) == []
    assert dec.in_progress
    assert dec.feed(data[first_end - 1 : first_end]) == [{b"status": b"ok"}]
    assert not dec.in_progress
    assert dec.feed(data[first_end:-1]) == [[1, 2]]
    assert dec.feed(data[-1:]) == [b"x" * 300]
    dec.finish()


def test_top_level_indefinite_bytestring_chunks_stream_out() -> None:
    data = b"\x5f\x43abc\x42de\xff\x01"
    assert decode_pieces(data, 1) == [
        [],
        [],
        [],
        [],
        [BytestringChunk(b"abc", first=True)],
        [],
        [],
        [BytestringChunk(b"de")],
        [BytestringChunk(b"", last=True)],
        [1],
    ]


def test_feed_accepts_bytearray_and_memoryview() -> None:
    dec = Decoder()
    assert dec.feed(bytearray(b"\x82\x01")) == []
    assert dec.feed(memoryview(b"\x02")) == [[1, 2]]
    assert dec.feed(b"") == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x82\x01", "input data not complete"),
        (b"\x5f\x41a", "input data not complete"),
        (b"\x82\x01\x18", "input data not fully consumed"),
        (b"\x43ab", "input data not fully consumed"),
    ],
)
def test_finish_reports_partial_values(data: bytes, message: str) -> None:
    dec = Decoder()
    dec.feed(data)
    with pytest.raises(CBORDecodeError, match=f"^{message}$"):
        dec.finish()


def test_decoder_unusable_after_an_error() -> None:
    dec = Decoder()
    with pytest.raises(CBORDecodeError, match="string major type"):
        dec.feed(b"\x01\x61a")
    with pytest.raises(CBORDecodeError, match="already failed: string major type"):
        dec.feed(b"\x01")
    with pytest.raises(CBORDecodeError, match="already failed"):
        dec.finish()


def test_loads_exactly_one_value() -> None:
    assert cbor.loads(b"\x82\x01\x02") == [1, 2]
    with pytest.raises(CBORDecodeError, match=r"^input data not fully consumed$"):
        cbor.loads(b"\x01\x02")
    with pytest.raises(CBORDecodeError, match=r"^input data not complete$"):
        cbor.loads(b"")
    assert cbor.loads_all(b"") == []


def test_non_shortest_forms_are_accepted() -> None:
    """hg accepts any argument size; so does hgwire, on both engines."""
    assert both_engines(bytes.fromhex("1900011a000000021b0000000000000003")) == ("ok", [1, 2, 3])
    assert both_engines(bytes.fromhex("da00000102 81 01")) == ("ok", [{1}])
    assert both_engines(bytes.fromhex("5800 590001 61")) == ("ok", [b"", b"a"])


def test_values_the_fast_path_leaves_to_the_exact_engine() -> None:
    """Int/None/bool map keys, int set members, non-shortest tags, indefinite byte
    strings: decoded right, in order, mixed with values the fast path takes itself."""
    values: list[Any] = [
        {1: b"one", None: [True], False: {b"k": 2}},
        {3, -4, b"x", None},
        [{b"a": 1}],
        b"y" * 40,
    ]
    data = b"".join(cbor.dumps(v) for v in values)
    data += b"\x5f\x41a\xff" + bytes.fromhex("d9010281 01") + cbor.dumps(values[0])
    expected = [
        *values,
        BytestringChunk(b"a", first=True),
        BytestringChunk(b"", last=True),
        {1},
        values[0],
    ]
    assert both_engines(data) == ("ok", expected)
    for size in (1, 2, 3, 7):
        assert [v for step in decode_pieces(data, size) for v in step] == expected


@pytest.mark.parametrize("size", [1, 3, 64, 4096])
def test_big_array_in_pieces_mixing_fast_and_exact_items(size: int) -> None:
    """Items of an open array go to cbor2 in bulk, except those it cannot vouch for."""
    items: list[Any] = []
    for i in range(400):
        items += [i, b"n" * (i % 300), {b"k": [i]}, {i: b"int key"}, {-i, b"s"}, [[], {}]]
    value = [items, b"tail"]
    data = cbor.dumps(value)
    steps = decode_pieces(data, size)
    assert [v for step in steps for v in step] == [value]
    assert steps[-1] == [value]
    broken = data.replace(cbor.dumps({7: b"int key"}), b"\xa1\x07\x61x", 1)
    with pytest.raises(CBORDecodeError, match=r"^string major type not supported$"):
        decode_pieces(broken, size)


def test_batches_match_value_by_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small values per feed are decoded in batches (one cbor2 call for many);
    misses, slow-path values and errors inside a batch give the exact same results."""
    batches: list[int] = []
    original = Decoder._batch

    def batch(self: Decoder, *args: Any) -> tuple[int, int, bool]:
        result = original(self, *args)
        batches.append(result[2])
        return result

    monkeypatch.setattr(Decoder, "_batch", batch)
    values: list[Any] = []
    for i in range(6000):
        values.append([i, b"v" * (i % 37)] if i % 3 else {b"n": i, b"s": {b"a", b"b"}})
        if i % 500 == 7:
            values.append({i: b"int key: not for cbor2"})
    data = b"".join(cbor.dumps(v) for v in values)
    for size in (4096, 65536, len(data)):
        batches.clear()
        assert [v for step in decode_pieces(data, size) for v in step] == values
        assert batches.count(True) >= 10
    bad = data.replace(cbor.dumps([2999, b"v" * (2999 % 37)]), b"\x82\x01\xfa", 1)
    for size in (4096, len(bad)):
        with pytest.raises(CBORDecodeError, match=r"^special type 26 not allowed$"):
            decode_pieces(bad, size)
    assert both_engines(bad) == ("error", "special type 26 not allowed")


def test_error_after_good_values_in_one_feed() -> None:
    data = cbor.dumps([1, 2]) * 100 + b"\xa1\x80\x01" + cbor.dumps(3)
    assert both_engines(data) == ("error", "collections not supported as map keys")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x5f\x5f\xff\xff", "unexpected special value when expecting bytestring chunk: 1"),
        (b"\xa1\x41a\xff", "unhandled special item when expecting map value: 5"),
        (b"\xd9\x01\x02\x81\xff", "unhandled special item when expecting set value: 5"),
        (b"\xd9\x01\x02\x61", "string major type not supported"),
        (b"\xd9\x01\x02\xc0", "semantic tag 0 not allowed"),
        (b"\xd9\x01\x02\xd9\x01\x02\x80", "expected array after finite set semantic tag"),
        (b"\xdc", "unsupported subtype on integer type: 28"),
        (b"\xdf", "indefinite length uint not allowed here"),
        (b"\x5c", "unsupported subtype on integer type: 28"),
        (b"\xa1\xf9\x00\x00\x01", "special type 25 not allowed"),
        (b"\x81\x7f", "string major type not supported"),
        (b"\xfc", "special type 28 not allowed"),
    ],
)
def test_more_rejections_follow_hg_messages(data: bytes, message: str) -> None:
    """Cases beyond the vectors, with the message 6.0's decoder gives (cborutil.py)."""
    assert both_engines(data) == ("error", message)


def test_every_tag_but_258_rejected() -> None:
    for tag, head in [(0, "c0"), (23, "d7"), (24, "d818"), (257, "d90101"), (259, "d90103"),
                      (55799, "d9d9f7"), (2**32, "db0000000100000000")]:  # fmt: skip
        assert both_engines(bytes.fromhex(head + "80")) == (
            "error",
            f"semantic tag {tag} not allowed",
        )


# ----------------------------------------------------------------------------- cost


def count_parsed_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every buffer the decoder parses."""
    sizes: list[int] = []
    original = Decoder._run

    def run(self: Decoder, buf: bytes, out: list[Any]) -> int:
        sizes.append(len(buf))
        return original(self, buf, out)

    monkeypatch.setattr(Decoder, "_run", run)
    return sizes


def test_large_bytestring_in_small_pieces_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = count_parsed_bytes(monkeypatch)
    body = bytes(range(256)) * (8 * 1024)  # 2 MiB
    data = cbor.dumps(body)
    steps = decode_pieces(data, 4096)
    assert [v for step in steps for v in step] == [body]
    assert steps[-1] == [body]
    # the header is looked at once, the whole item once more when complete
    assert sum(sizes) <= len(data) + 4096 * 2


def test_many_small_values_in_pieces_cost_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = count_parsed_bytes(monkeypatch)
    values = [{b"node": bytes([i % 256]) * 20, b"rev": i} for i in range(20000)]
    data = b"".join(cbor.dumps(v) for v in values)
    assert [v for step in decode_pieces(data, 4096) for v in step] == values
    assert sum(sizes) <= len(data) * 2


def test_large_collection_in_small_pieces_cost_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    """One big value across many feeds: items are consumed as they arrive."""
    sizes = count_parsed_bytes(monkeypatch)
    value = [[i, b"x" * (i % 50)] for i in range(30000)]
    data = cbor.dumps(value)
    assert decode_pieces(data, 4096)[-1] == [value]
    assert sum(sizes) <= len(data) * 2


# ----------------------------------------------------------------------------- deviations


@pytest.mark.parametrize("data", ["5f03ff", "5ff5ff", "5ff6ff", "5f416120ff"])
def test_deviation_non_bytestring_chunk_rejected(data: str) -> None:
    """6.0 turns an int (or bool) chunk into that many zero bytes and crashes with a
    TypeError on ``null``; RFC 8949 allows only definite byte strings as chunks."""
    assert both_engines(bytes.fromhex(data)) == (
        "error",
        "indefinite length bytestring chunks must be definite bytestrings",
    )


def test_deviation_max_length_limit() -> None:
    """hg has no limit on declared lengths; hgwire refuses them at the header."""
    dec = Decoder(max_length=1000)
    with pytest.raises(CBORDecodeError, match="bytestring length 1001 exceeds the limit of 1000"):
        dec.feed(b"\x59\x03\xe9")  # header only: refused before any data is buffered
    with pytest.raises(CBORDecodeError, match="array length 2000 exceeds"):
        Decoder(max_length=1000).feed(b"\x99\x07\xd0")
    with pytest.raises(CBORDecodeError, match="map length 18446744073709551615 exceeds"):
        Decoder().feed(b"\xbb" + b"\xff" * 8)
    with pytest.raises(CBORDecodeError, match="bytestring length"):
        Decoder().feed(b"\x5b" + b"\xff" * 8)
    assert both_engines(cbor.dumps(b"x" * 1000), max_length=1000) == ("ok", [b"x" * 1000])
    assert both_engines(cbor.dumps(b"x" * 1001), max_length=1000)[0] == "error"
    assert both_engines(cbor.dumps([0] * 1001) * 3, max_length=1000)[0] == "error"


@pytest.mark.parametrize("depth", [0, 1, 5, 64])
def test_deviation_max_depth_limit(depth: int) -> None:
    """hg nests without limit; hgwire refuses nesting deeper than ``max_depth``."""
    ok: Any = 1
    for _ in range(depth):
        ok = [ok]
    assert both_engines(cbor.dumps(ok), max_depth=depth) == ("ok", [ok])
    assert both_engines(cbor.dumps([ok]), max_depth=depth) == (
        "error",
        f"nesting deeper than the limit of {depth} levels",
    )
    if depth:
        innermost_set: Any = {1}
        for _ in range(depth - 1):
            innermost_set = {b"k": innermost_set}
        assert both_engines(cbor.dumps(innermost_set), max_depth=depth) == (
            "ok",
            [innermost_set],
        )
    for size in (1, 2, 5):  # the same limits when the value arrives in pieces
        assert decode_pieces(cbor.dumps([1, ok, 2]), size, max_depth=depth + 1)[-1] == [[1, ok, 2]]
        with pytest.raises(CBORDecodeError, match="nesting deeper"):
            decode_pieces(cbor.dumps([1, [ok], 2]), size, max_depth=depth + 1)
    with pytest.raises(ValueError):
        Decoder(max_depth=cbor.MAX_DEPTH_CEILING + 1)


def test_deviation_max_buffer_limit() -> None:
    """hg buffers any amount; hgwire bounds the encoded size of one value (one chunk of
    an indefinite byte string)."""
    big = cbor.dumps([b"x" * 10] * 20)  # 222 bytes
    assert both_engines(big, max_buffer=len(big)) == ("ok", [[b"x" * 10] * 20])
    assert both_engines(big, max_buffer=len(big) - 1) == (
        "error",
        f"value larger than the buffer limit of {len(big) - 1} bytes",
    )
    with pytest.raises(CBORDecodeError, match="buffer limit"):
        Decoder(max_buffer=100).feed(b"\x59\x01\x00")  # a 256-byte string can never fit
    chunks = cbor.dumps(cbor.IndefiniteBytes([b"y" * 90] * 5))
    assert both_engines(chunks, max_buffer=100)[0] == "ok"


def test_deviation_encode_errors_are_cborencodeerror() -> None:
    """6.0 raises ValueError, or TypeError from its own broken message formatting."""
    for value in (2**64, "text", 1.5, frozenset({b"a"})):
        with pytest.raises(CBOREncodeError):
            cbor.dumps(value)


def test_deviation_bytearray_and_memoryview_encode_as_bytes() -> None:
    """6.0 refuses them; hgwire encodes them as byte strings (zero-copy when large)."""
    assert cbor.dumps(bytearray(b"ab")) == b"\x42ab"
    assert cbor.dumps(memoryview(b"abcd")[1:3]) == b"\x42bc"
    assert cbor.dumps(memoryview(bytes(8)).cast("Q")) == b"\x48" + bytes(8)


def test_deviation_indefinite_bytes_only_at_top_level() -> None:
    """hg's decoder rejects indefinite byte strings below the top level, so hgwire's
    encoder refuses to produce them there."""
    with pytest.raises(CBOREncodeError, match="top-level"):
        cbor.dumps([cbor.IndefiniteBytes([b"a"])])


def test_deviation_loads_joins_an_indefinite_bytestring() -> None:
    """hg has only decodeall (chunks); hgwire's loads returns the joined bytes."""
    assert cbor.loads(b"\x5f\x41a\x42bc\xff") == b"abc"
    assert cbor.loads_all(b"\x5f\x41a\xff") == [
        BytestringChunk(b"a", first=True),
        BytestringChunk(b"", last=True),
    ]
    with pytest.raises(CBORDecodeError, match="not fully consumed"):
        cbor.loads(b"\x5f\xff\x01")


def test_byte_strings_spanning_feeds_come_out_whole() -> None:
    """A top-level byte string completed by a later feed is joined from the pieces; what
    follows it in the same feed is decoded as usual."""
    big = bytes(range(256)) * 400
    values = [b"a", big, [1, b"x"], big[:300], big[:30], {b"k": big[:5]}]
    data = b"".join(cbor.dumps(v) for v in values)
    for size in (1, 2, 7, 300, 4096, 65536, len(data)):
        got = [v for step in decode_pieces(data, size) for v in step]
        assert got == values
        assert [type(v) for v in got] == [type(v) for v in values]
    with pytest.raises(CBORDecodeError, match="buffer limit"):
        dec = Decoder(max_buffer=1000)
        for i in range(0, len(data), 512):
            dec.feed(data[i : i + 512])
