"""Every case of vectors/cbor.json (recorded from Mercurial 6.0) against hgwire's CBOR.

Decoding cases run twice: through the normal decoder (cbor2 fast path plus exact engine)
and through the exact engine alone, which must agree. Cases where hgwire deliberately
differs from 6.0 are listed in ``DEVIATIONS`` and checked in ``test_cbor.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from hgwire.errors import CBORDecodeError, CBOREncodeError
from hgwire.wire import cbor
from tests.conftest import VECTORS
from tests.wire.cborjson import from_json, to_json

CASES: list[dict[str, Any]] = json.loads((VECTORS / "cbor.json").read_text())["cases"]

#: Vector cases hgwire deliberately handles differently (see test_cbor.py).
DEVIATIONS = {
    # 6.0 turns an integer inside an indefinite byte string into that many zero bytes.
    "integer inside an indefinite bytestring": "test_deviation_non_bytestring_chunk_rejected",
}


def cases(kind: str) -> list[Any]:
    return [
        pytest.param(c, id=c["name"])
        for c in CASES
        if c["kind"] == kind and c["name"] not in DEVIATIONS
    ]


def make_decoder(fast: bool) -> cbor.Decoder:
    dec = cbor.Decoder()
    dec._fast = fast
    return dec


ENGINES = [pytest.param(True, id="fast"), pytest.param(False, id="exact")]


def test_vector_file_has_every_kind() -> None:
    kinds = {c["kind"] for c in CASES}
    assert kinds == {
        "encode",
        "encode_special",
        "encode_error",
        "decode",
        "decode_error",
        "decode_stream",
    }
    assert set(DEVIATIONS) <= {c["name"] for c in CASES}


@pytest.mark.parametrize("case", cases("encode"))
def test_encode(case: dict[str, Any]) -> None:
    value = from_json(case["value"])
    assert cbor.dumps(value).hex() == case["encoded_hex"]
    assert b"".join(cbor.iter_encode(value)).hex() == case["encoded_hex"]


@pytest.mark.parametrize("case", cases("encode"))
def test_encoded_vectors_decode_back(case: dict[str, Any]) -> None:
    assert cbor.loads(bytes.fromhex(case["encoded_hex"])) == from_json(case["value"])


@pytest.mark.parametrize("case", cases("encode_special"))
def test_encode_special(case: dict[str, Any]) -> None:
    function = case["function"]
    inputs = case["inputs"]
    expected = bytes.fromhex(case["encoded_hex"])
    if function == "streamencodebytestringfromiter":
        value: Any = cbor.IndefiniteBytes(bytes.fromhex(c) for c in inputs["chunks"])
    elif function == "streamencodeindefinitebytestring":
        value = cbor.indefinite_from_buffer(bytes.fromhex(inputs["source"]), inputs["chunksize"])
    else:
        # Indefinite arrays and maps: hgwire has no encoder for them (hg never sends them
        # and its decoder refuses them); check that hgwire's decoder refuses them too.
        assert function in ("streamencodearrayfromiter", "streamencodemapfromiter")
        with pytest.raises(CBORDecodeError, match=r"^indefinite length uint not allowed here$"):
            cbor.loads_all(expected)
        return
    assert b"".join(cbor.iter_encode(value)) == expected
    if function == "streamencodebytestringfromiter":  # the iterator above is spent
        value = cbor.IndefiniteBytes([bytes.fromhex(c) for c in inputs["chunks"]])
    assert cbor.dumps(value) == expected


@pytest.mark.parametrize("case", cases("encode_error"))
def test_encode_error(case: dict[str, Any]) -> None:
    value = eval(case["value_repr"], {"__builtins__": {}, "frozenset": frozenset})
    # 6.0 raises ValueError or (by accident, see the note) TypeError; hgwire raises its
    # own CBOREncodeError for every value it cannot encode.
    with pytest.raises(CBOREncodeError):
        cbor.dumps(value)
    with pytest.raises(CBOREncodeError):
        list(cbor.iter_encode(value))
    if case["raises"]["type"] == "ValueError":
        with pytest.raises(CBOREncodeError, match=f"^{case['raises']['message']}$"):
            cbor.dumps(value)


@pytest.mark.parametrize("fast", ENGINES)
@pytest.mark.parametrize("case", cases("decode"))
def test_decode(case: dict[str, Any], fast: bool) -> None:
    data = bytes.fromhex(case["encoded_hex"])
    dec = make_decoder(fast)
    values = dec.feed(data)
    dec.finish()
    assert values == from_json(case["values"])
    assert [to_json(v) for v in values] == [to_json(from_json(v)) for v in case["values"]]
    assert cbor.loads_all(data) == values


@pytest.mark.parametrize("fast", ENGINES)
@pytest.mark.parametrize("case", cases("decode"))
def test_decode_byte_by_byte(case: dict[str, Any], fast: bool) -> None:
    dec = make_decoder(fast)
    values: list[Any] = []
    for byte in bytes.fromhex(case["encoded_hex"]):
        values.extend(dec.feed(bytes((byte,))))
    dec.finish()
    assert values == from_json(case["values"])


@pytest.mark.parametrize("fast", ENGINES)
@pytest.mark.parametrize("case", cases("decode_error"))
def test_decode_error(case: dict[str, Any], fast: bool) -> None:
    assert case["raises"]["type"] == "CBORDecodeError"
    message = case["raises"]["message"]
    dec = make_decoder(fast)
    with pytest.raises(CBORDecodeError) as info:
        dec.feed(bytes.fromhex(case["encoded_hex"]))
        dec.finish()
    assert str(info.value) == message
    with pytest.raises(CBORDecodeError) as info:
        cbor.loads_all(bytes.fromhex(case["encoded_hex"]))
    assert str(info.value) == message


@pytest.mark.parametrize("fast", ENGINES)
@pytest.mark.parametrize("case", cases("decode_error"))
def test_decode_error_byte_by_byte(case: dict[str, Any], fast: bool) -> None:
    """Fed one byte at a time, the same input fails with the same message."""
    dec = make_decoder(fast)
    with pytest.raises(CBORDecodeError) as info:
        for byte in bytes.fromhex(case["encoded_hex"]):
            dec.feed(bytes((byte,)))
        dec.finish()
    assert str(info.value) == case["raises"]["message"]


@pytest.mark.parametrize("fast", ENGINES)
@pytest.mark.parametrize("case", cases("decode_stream"))
def test_decode_stream(case: dict[str, Any], fast: bool) -> None:
    """Values become available at the same step as with 6.0's buffering decoder."""
    dec = make_decoder(fast)
    for step in case["steps"]:
        got = dec.feed(bytes.fromhex(step["input_hex"]))
        assert got == from_json(step["values"])
        assert bool(got) == step["available"]
    dec.finish()
