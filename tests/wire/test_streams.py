"""Streams and content encodings (spec §2): profiles, state across responses, limits,
encoding choice and the settings payloads."""

from __future__ import annotations

import json
import random
import subprocess
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from hgwire.errors import EncodingError, ProtocolError
from hgwire.wire import cbor
from hgwire.wire import streams as S
from hgwire.wire.frames import Frame, FrameType, StreamFlag
from tests.conftest import hg_env

MiB = 1 << 20
PROFILES = ["identity", "zlib", "zstd-8mb"]


def text(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"\x00\x01", b"node"]
    return b" ".join(rng.choice(words) for _ in range(n))


# -- profiles ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROFILES)
def test_state_persists_across_responses(name: str) -> None:
    """One context per stream: the second response continues the first one's stream."""
    enc = S.make_encoder(name)
    dec = S.make_decoder(name.encode())
    first = random.Random(1).randbytes(10000)
    second = first  # a repeat: only a shared context can compress it
    wire1 = bytes(enc.encode(first)) + enc.flush()
    wire2 = bytes(enc.encode(second)) + enc.flush()
    assert dec.decode(wire1) == first
    assert dec.decode(wire2) == second
    if name == "identity":
        assert wire1 == first and wire2 == second
        return
    magic = b"\x78\x9c" if name == "zlib" else b"\x28\xb5\x2f\xfd"
    assert wire1.startswith(magic)
    assert not wire2.startswith(magic)
    assert len(wire2) < len(wire1) // 4
    fresh = S.make_decoder(name.encode())
    with pytest.raises(EncodingError):
        fresh.decode(wire2)  # the continuation cannot be decoded without the context


def test_zlib_flush_is_sync_flush_and_never_finished() -> None:
    enc = S.make_encoder(b"zlib")
    data = bytes(enc.encode(b"hello")) + enc.flush()
    assert data.startswith(b"\x78\x9c")
    assert data.endswith(b"\x00\x00\xff\xff")
    d = zlib.decompressobj()
    assert d.decompress(data) == b"hello"
    assert not d.eof  # no final block, no Adler-32
    assert zlib.compressobj().compress(b"hello") + zlib.compressobj().flush() != data


def test_zstd_is_one_unfinished_frame_at_level_3() -> None:
    enc = S.make_encoder("zstd-8mb")
    data = bytes(enc.encode(b"hello" * 100)) + enc.flush()
    params = zstandard.get_frame_parameters(data)
    assert params.window_size <= S.ZSTD_8MB_MAX_WINDOW
    dobj = zstandard.ZstdDecompressor().decompressobj()
    assert dobj.decompress(data) == b"hello" * 100
    assert not dobj.eof


def test_identity_encoder_copies_nothing() -> None:
    data = b"x" * 1000
    enc = S.make_encoder("identity")
    assert enc.encode(data) is data
    view = enc.encode(bytearray(b"ab"))
    assert isinstance(view, memoryview) and bytes(view) == b"ab"
    assert enc.flush() == b""


def test_unknown_profiles() -> None:
    with pytest.raises(EncodingError, match="unknown stream encoder: brotli"):
        S.make_encoder(b"brotli")
    with pytest.raises(EncodingError, match=r"^unknown stream decoder: brotli$"):
        S.make_decoder(b"brotli")
    with pytest.raises(EncodingError, match="unknown stream decoder: 5"):
        S.make_decoder(5)


@pytest.mark.parametrize(
    ("name", "label"), [("identity", "identity"), ("zlib", "zlib"), ("zstd-8mb", "zstd8mb")]
)
def test_decoder_extra_values_use_6_0_messages(name: str, label: str) -> None:
    with pytest.raises(EncodingError) as info:
        S.make_decoder(name.encode(), [b"level", 3])
    assert str(info.value) == f"{label} decoder received unexpected additional values"


@pytest.mark.parametrize("name", ["zlib", "zstd-8mb"])
def test_corrupt_input_is_an_encoding_error(name: str) -> None:
    dec = S.make_decoder(name.encode())
    with pytest.raises(EncodingError, match="decoding failed"):
        dec.decode(b"\xde\xad\xbe\xef" * 8)


@pytest.mark.parametrize("limit", [None, MiB])
@pytest.mark.parametrize(
    ("name", "finish"),
    [("zlib", zlib.compress), ("zstd-8mb", zstandard.ZstdCompressor().compress)],
)
def test_data_after_a_finished_stream_is_refused(name: str, finish: Any, limit: Any) -> None:
    """hgwire streams are never finished (spec §2.1); bytes after an end are an error."""
    finished = finish(b"abc")
    stream = S.InputStream(2, max_frame_output=limit)
    stream.set_decoder(name.encode())
    with pytest.raises(EncodingError, match="past its end"):
        stream.decode(finished + b"junk")
    stream = S.InputStream(2, max_frame_output=limit)
    stream.set_decoder(name.encode())
    assert stream.decode(finished) == b"abc"
    assert stream.decode(b"") == b""
    with pytest.raises(EncodingError, match="past its end"):
        stream.decode(b"more")


# -- limits --------------------------------------------------------------------------------


def zstd_with_window_log(window_log: int, data: bytes) -> bytes:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=window_log)
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    return cobj.compress(data) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


def test_zstd_window_over_8mib_refused() -> None:
    too_big = zstd_with_window_log(24, b"abc" * 100)
    assert zstandard.get_frame_parameters(too_big).window_size == 16 * MiB
    with pytest.raises(EncodingError, match="zstd-8mb decoding failed"):
        S.make_decoder(b"zstd-8mb").decode(too_big)
    limit = zstd_with_window_log(23, b"abc" * 100)
    assert zstandard.get_frame_parameters(limit).window_size == 8 * MiB
    assert S.make_decoder(b"zstd-8mb").decode(limit) == b"abc" * 100


def compressed_zeros(name: str, size: int) -> bytes:
    enc = S.make_encoder(name)
    return bytes(enc.encode(bytes(size))) + enc.flush()


@pytest.mark.parametrize(("name", "bomb_size"), [("zlib", 40 * MiB), ("zstd-8mb", 200 * MiB)])
def test_output_limit_stops_a_decompression_bomb_early(name: str, bomb_size: int) -> None:
    bomb = compressed_zeros(name, bomb_size)
    assert len(bomb) < 64 * 1024
    stream = S.InputStream(2, max_frame_output=MiB)
    stream.set_decoder(name.encode())
    tracemalloc.start()
    try:
        with pytest.raises(EncodingError, match=f"exceeds the limit of {MiB} bytes"):
            stream.decode(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB


@pytest.mark.parametrize("name", PROFILES)
def test_output_within_limit_is_exact(name: str) -> None:
    data = text(20000, 3)
    enc = S.make_encoder(name)
    wire = bytes(enc.encode(data)) + enc.flush()
    stream = S.InputStream(2, max_frame_output=len(data))
    stream.set_decoder(name.encode())
    assert stream.decode(wire) == data
    strict = S.InputStream(2, max_frame_output=len(data) - 1)
    strict.set_decoder(name.encode())
    with pytest.raises(EncodingError, match="exceeds the limit"):
        strict.decode(wire)


@pytest.mark.parametrize("name", PROFILES)
def test_total_output_limit_across_frames(name: str) -> None:
    enc = S.make_encoder(name)
    stream = S.InputStream(2, max_frame_output=None, max_total_output=150_000)
    stream.set_decoder(name.encode())
    assert len(stream.decode(bytes(enc.encode(bytes(100_000))) + enc.flush())) == 100_000
    assert stream.total_output == 100_000
    with pytest.raises(EncodingError, match="exceeds the limit of 50000 bytes"):
        stream.decode(bytes(enc.encode(bytes(100_000))) + enc.flush())


def test_input_stream_without_decoder_passes_payloads_through() -> None:
    stream = S.InputStream(2, max_frame_output=4)
    assert stream.decoder_name is None
    assert stream.decode(b"abcd") == b"abcd"
    with pytest.raises(EncodingError, match="exceeds the limit of 4"):
        stream.decode(b"abcde")


# -- streams ---------------------------------------------------------------------------------


def test_output_stream_flags_and_settings() -> None:
    stream = S.OutputStream(2, b"zlib")
    assert (stream.encoding, stream.active, stream.settings_sent) == (b"zlib", False, False)
    settings_frame = stream.make_settings_frame(7)
    assert settings_frame is not None
    assert settings_frame.to_bytes().hex() == "0500000700020192447a6c6962"
    assert stream.active and stream.settings_sent
    assert stream.make_settings_frame(9) is None
    frame = stream.make_frame(7, FrameType.COMMAND_RESPONSE, 1, b"x", encoded=True)
    assert frame.stream_flags == StreamFlag.ENCODED
    plain = stream.make_frame(7, FrameType.ERROR_RESPONSE, 0, b"y")
    assert plain.stream_flags == 0


def test_output_stream_settings_mid_stream_without_stream_begin() -> None:
    """Spec §2.4: after an unencoded frame opened the stream, settings have flags 0."""
    stream = S.OutputStream(2, "identity")
    stream.make_frame(1, FrameType.COMMAND_RESPONSE, 2, b"err")
    settings_frame = stream.make_settings_frame(5)
    assert settings_frame is not None
    assert settings_frame.to_bytes().hex() == "0900000500020092486964656e74697479"


def test_client_output_stream_has_no_encoder() -> None:
    stream = S.OutputStream(1)
    assert stream.encoding is None
    assert stream.make_settings_frame(1) is None
    data = b"abc"
    assert stream.encode(data) is data
    assert stream.flush() == b""


def test_input_stream_frame_payload_honours_encoded_flag() -> None:
    enc = S.make_encoder("zstd-8mb")
    wire = bytes(enc.encode(b"payload")) + enc.flush()
    stream = S.InputStream(2)
    stream.set_decoder(b"zstd-8mb")
    assert stream.decoder_name == b"zstd-8mb"
    assert S.is_encoded(Frame(1, 2, StreamFlag.ENCODED, 3, 1, wire))
    assert stream.frame_payload(Frame(1, 2, StreamFlag.ENCODED, 3, 1, wire)) == b"payload"
    raw = Frame(1, 2, 0, 3, 2, memoryview(b"raw"))
    assert stream.frame_payload(raw) == b"raw"


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(PROFILES),
    st.lists(st.lists(st.binary(max_size=3000), max_size=5), min_size=1, max_size=4),
    st.integers(1, 5000),
)
def test_any_responses_round_trip_under_any_framing(
    name: str, responses: list[list[bytes]], cut: int
) -> None:
    out = S.OutputStream(2, name)
    inp = S.InputStream(2)
    inp.set_decoder(name.encode())
    for chunks in responses:
        wire = b"".join(bytes(out.encode(c)) for c in chunks) + out.flush()
        got = b"".join(inp.decode(wire[i : i + cut]) for i in range(0, len(wire), cut))
        assert got == b"".join(chunks)


# -- choosing an encoding (spec §2.3) -------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "chosen"),
    [
        (None, b"identity"),
        ([b"identity"], b"identity"),
        ([b"zlib", b"identity"], b"zlib"),
        ([b"identity", b"zlib", b"zstd-8mb"], b"zstd-8mb"),  # the server's order wins
        ([b"brotli", b"zlib"], b"zlib"),
    ],
)
def test_choose_encoding_like_6_0(client: list[bytes] | None, chosen: bytes) -> None:
    assert S.choose_encoding(client) == chosen


@pytest.mark.parametrize("client", [[b"brotli"], [], [b"lz4", b"gzip"]])
def test_choose_encoding_deliberate_difference_unknown_only_falls_back_to_identity(
    client: list[bytes],
) -> None:
    """DELIBERATE DIFFERENCE: 6.0 sets no encoder and crashes mid-response (spec §2.3)."""
    assert S.choose_encoding(client) == b"identity"


def test_choose_encoding_with_configured_preference() -> None:
    assert S.choose_encoding([b"zlib", b"zstd-8mb"], (b"zlib", b"identity")) == b"zlib"
    assert S.SERVER_ENCODING_PREFERENCE == (b"zstd-8mb", b"zlib", b"identity")


# -- settings payloads (spec §2.2, §2.4) ----------------------------------------------------

CONT, EOS = 1, 2


def sender() -> S.SettingsReceiver:
    return S.SettingsReceiver(S.SENDER_SETTINGS)


def stream_settings() -> S.SettingsReceiver:
    return S.SettingsReceiver(S.STREAM_SETTINGS)


@pytest.mark.parametrize(
    ("make", "kind"),
    [(sender, "sender protocol settings"), (stream_settings, "stream encoding settings")],
)
def test_settings_flag_errors(make: Any, kind: str) -> None:
    with pytest.raises(ProtocolError) as info:
        make().add(CONT | EOS, b"\xa0")
    assert str(info.value) == (
        f"{kind} frame cannot have both continuation and end of stream flags set"
    )
    with pytest.raises(ProtocolError) as info:
        make().add(0, b"\xa0")
    assert str(info.value) == f"{kind} frame must have continuation or end of stream flag set"
    with pytest.raises(ProtocolError) as info:
        make().add(EOS, b"")
    assert str(info.value) == f"{kind} frame did not contain CBOR data"
    with pytest.raises(ProtocolError) as info:
        make().add(EOS, b"\x61a")  # a text string: not in Mercurial's subset
    assert str(info.value).startswith(f"error decoding CBOR from {kind} frame: ")
    assert "string major type not supported" in str(info.value)


def test_settings_span_frames_and_ignore_an_incomplete_tail_like_6_0() -> None:
    payload = cbor.dumps({b"contentencodings": [b"zlib", b"identity"]})
    receiver = sender()
    assert receiver.add(CONT, payload[:5]) is None
    assert receiver.add(CONT, payload[5:]) is None
    values = receiver.add(EOS, b"\xa1")  # start of a second map, never completed
    assert values == [{b"contentencodings": [b"zlib", b"identity"]}]
    assert S.parse_sender_settings(values) == [b"zlib", b"identity"]
    with pytest.raises(ProtocolError, match="after end of stream"):
        receiver.add(EOS, payload)
    incomplete = sender()
    with pytest.raises(ProtocolError, match="did not contain CBOR data"):
        incomplete.add(EOS, payload[:-1])


def test_settings_size_limit() -> None:
    receiver = S.SettingsReceiver(S.SENDER_SETTINGS, max_size=10)
    assert receiver.add(CONT, b"\x00" * 10) is None
    with pytest.raises(ProtocolError, match="exceed the limit of 10 bytes"):
        receiver.add(EOS, b"\x00")


def test_parse_sender_settings() -> None:
    assert S.parse_sender_settings([{}]) is None
    assert S.parse_sender_settings([{b"other": 1}]) is None
    assert S.parse_sender_settings([{b"contentencodings": []}]) == []
    with pytest.raises(ProtocolError) as info:
        S.parse_sender_settings([{}, {}])
    assert str(info.value) == "sender protocol settings frame contained multiple CBOR values"
    with pytest.raises(ProtocolError, match="did not contain a CBOR map"):
        S.parse_sender_settings([[b"contentencodings"]])
    for bad in (b"zlib", [b"zlib", 3], {b"zlib": 1}):
        with pytest.raises(ProtocolError, match="must be an array of byte strings"):
            S.parse_sender_settings([{b"contentencodings": bad}])


def test_stream_settings_name_and_extras() -> None:
    receiver = stream_settings()
    values = receiver.add(EOS, cbor.dumps(b"zstd-8mb") + cbor.dumps(b"x"))
    assert values is not None
    name, extras = S.parse_stream_settings(values)
    assert (name, extras) == (b"zstd-8mb", [b"x"])
    stream = S.InputStream(2)
    with pytest.raises(EncodingError, match="zstd8mb decoder received unexpected"):
        stream.set_decoder(name, extras)
    with pytest.raises(ProtocolError, match="did not contain CBOR data"):
        S.parse_stream_settings([])


# -- against Mercurial 6.0's encoders and decoders ------------------------------------------

_HG_CODECS = """
import json, sys
from mercurial import wireprotoframing as w
w.populatestreamencoders()
request = json.load(sys.stdin)
out = {}
for name in ("identity", "zlib", "zstd-8mb"):
    enc_cls, dec_cls = w.STREAM_ENCODERS[name.encode()]
    enc = enc_cls(None)
    encoded = []
    for response in request["responses"]:
        data = b"".join(enc.encode(bytes.fromhex(c)) for c in response) + enc.flush()
        encoded.append(data.hex())
    dec = dec_cls(None, [])
    decoded = [dec.decode(bytes.fromhex(h)).hex() for h in request["ours"][name]]
    out[name] = {"encoded": encoded, "decoded": decoded}
json.dump(out, sys.stdout)
"""


@pytest.mark.interop
def test_codecs_interoperate_with_hg60(hg60_path: Path) -> None:
    """6.0's encoders' output decodes with hgwire's decoders and the reverse, response
    after response on one context (compressed bytes may differ between builds)."""
    rng = random.Random(2)
    responses = [
        [rng.randbytes(rng.randrange(2000)) + text(rng.randrange(3000), i) for _ in range(3)]
        for i in range(4)
    ]
    ours: dict[str, list[str]] = {}
    for name in PROFILES:
        enc = S.make_encoder(name)
        ours[name] = [
            (b"".join(bytes(enc.encode(c)) for c in chunks) + enc.flush()).hex()
            for chunks in responses
        ]
    proc = subprocess.run(
        [str(hg60_path.parent / "python"), "-c", _HG_CODECS],
        input=json.dumps({"responses": [[c.hex() for c in r] for r in responses], "ours": ours}),
        capture_output=True,
        text=True,
        env=hg_env(),
    )
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout)
    expected = [b"".join(chunks) for chunks in responses]
    for name in PROFILES:
        assert [bytes.fromhex(h) for h in theirs[name]["decoded"]] == expected
        stream = S.InputStream(2)
        stream.set_decoder(name.encode())
        got = [stream.decode(bytes.fromhex(h)) for h in theirs[name]["encoded"]]
        assert got == expected
