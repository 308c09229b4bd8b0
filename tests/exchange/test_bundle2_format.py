"""Bundle2 encoding/decoding against real Mercurial (spec §9, §11)."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from hgwire.errors import BundleError, BundleUnknownFeatureError
from hgwire.exchange import bundle2
from hgwire.exchange.bundle2 import Bundler, Part, Unbundler
from tests.conftest import make_runner
from tests.exchange.conftest import bundles_for

# The default 7.2 client/server capabilities (spec §9.5).
CAPS72 = {
    b"HG20": [],
    b"bookmarks": [],
    b"changegroup": [b"01", b"02", b"03"],
    b"checkheads": [b"related"],
    b"delta-compression": [b"none", b"zlib", b"zstd"],
    b"digests": [b"md5", b"sha1", b"sha512"],
    b"error": [b"abort", b"unsupportedcontent", b"pushraced", b"pushkey"],
    b"hgtagsfnodes": [],
    b"listkeys": [],
    b"phases": [b"heads"],
    b"pushkey": [],
    b"remote-changegroup": [b"http", b"https"],
    b"stream": [b"v2"],
}
# From the captured 7.2 clone arguments (spec §9.7), the bundlecaps value once unquoted.
CAPTURED = (
    "HG20%0Abookmarks%0Achangegroup%3D01%2C02%2C03%0Acheckheads%3Drelated%0A"
    "delta-compression%3Dnone%2Czlib%2Czstd%0Adigests%3Dmd5%2Csha1%2Csha512%0A"
    "error%3Dabort%2Cunsupportedcontent%2Cpushraced%2Cpushkey%0Ahgtagsfnodes%0Alistkeys%0A"
    "phases%3Dheads%0Apushkey%0Aremote-changegroup%3Dhttp%2Chttps%0Astream%3Dv2"
)


def parts_of(path: Path) -> list[tuple[bytes, bool, list[tuple[bytes, bytes]], list, bytes]]:
    with open(path, "rb") as fh:
        b = bundle2.readbundle(fh)
        assert b.unbundler is not None
        return [
            (p.type, p.mandatory, p.mandatoryparams, p.advisoryparams, p.read())
            for p in b.unbundler
        ]


def test_caps_blob_matches_captured_client() -> None:
    blob = bundle2.encodecaps(CAPS72)
    assert bundle2.urlquote(blob) == CAPTURED.encode()
    token = bundle2.capstoken(CAPS72)
    assert token == b"bundle2=" + CAPTURED.encode()
    assert bundle2.caps_from_bundlecaps([b"HG20", token]) == CAPS72
    assert bundle2.bundle2_requested([b"HG20", token])
    assert not bundle2.bundle2_requested([b"HG10GZ"])
    assert bundle2.decodecaps(bundle2.urlunquote(CAPTURED.encode())) == CAPS72
    assert bundle2.decodecaps(b"a%3Db=x%2Cy,z\n\nplain") == {b"a=b": [b"x,y", b"z"], b"plain": []}


def test_spec_worked_example_header() -> None:
    part = Part(b"changegroup", [(b"version", b"02")], [(b"nbchanges", b"1")], data=b"")
    b = Bundler()
    b.addpart(part)
    data = b.tobytes()
    expected = (
        bytes.fromhex(
            "48473230 00000000 00000029 0b 4348414e47454752 4f5550 00000000 01 01 07 02 09 01"
        )
        + b"version02nbchanges1"
        + b"\0\0\0\0"
        + b"\0\0\0\0"
    )
    assert data == expected
    (got,) = list(Unbundler(io.BytesIO(data)))
    assert (got.type, got.mandatory, got.id) == (b"changegroup", True, 0)
    assert got.params == {b"version": b"02", b"nbchanges": b"1"}
    assert got.mandatorykeys == {b"version"}


def _reencode(path: Path, compression: bytes | None) -> bytes:
    out = Bundler(compression=compression)
    for ptype, mandatory, mparams, aparams, payload in parts_of(path):

        def chunks(data: bytes = payload) -> Iterator[bytes]:
            yield data

        out.newpart(ptype, mparams, aparams, data=chunks(), mandatory=mandatory)
    return out.tobytes()


@pytest.mark.interop
@pytest.mark.parametrize("hgversion", ["6.0", "7.2.4"])
def test_reencode_uncompressed_is_byte_identical(
    request: pytest.FixtureRequest, hgversion: str
) -> None:
    _repo, bundles = bundles_for(request, hgversion)
    for btype in ("none-v2", "none-v3"):
        if btype in bundles:
            assert _reencode(bundles[btype], None) == bundles[btype].read_bytes()


@pytest.mark.interop
@pytest.mark.parametrize("hgversion", ["6.0", "7.2.4"])
def test_compressed_bundles_decode_to_the_same_parts(
    request: pytest.FixtureRequest, hgversion: str
) -> None:
    _repo, bundles = bundles_for(request, hgversion)
    reference = parts_of(bundles["none-v2"])
    for btype in ("zstd-v2", "gzip-v2", "bzip2-v2"):
        assert parts_of(bundles[btype]) == reference, btype
    head = {b"zstd-v2": b"ZS", b"gzip-v2": b"GZ", b"bzip2-v2": b"BZ"}
    for btype, engine in head.items():
        with open(bundles[btype.decode()], "rb") as fh:
            u = bundle2.readbundle(fh).unbundler
            assert u is not None and u.compression == engine


@pytest.mark.interop
@pytest.mark.parametrize("engine", [b"ZS", b"GZ", b"BZ", b"UN"])
def test_hg_reads_our_compressed_bundles(request: pytest.FixtureRequest, engine: bytes) -> None:
    repo, bundles = bundles_for(request, "7.2.4")
    tmp: Path = request.getfixturevalue("tmp_path")
    ours = tmp / "ours.hg"
    ours.write_bytes(_reencode(bundles["none-v3"], engine))
    hg = make_runner(repo.hg)
    got = hg("debugbundle", "--all", ours).stdout
    want = hg("debugbundle", "--all", bundles["none-v3"]).stdout
    assert (
        got.replace(b"Compression: " + engine, b"") == want
        or got.splitlines()[1:] == (want.splitlines()[1:])
    )
    assert b"changegroup -- {nbchanges: " in got


@pytest.mark.interop
def test_hg10_roundtrip_through_hg(request: pytest.FixtureRequest) -> None:
    repo, bundles = bundles_for(request, "7.2.4")
    tmp: Path = request.getfixturevalue("tmp_path")
    with open(bundles["none-v1"], "rb") as fh:
        b = bundle2.readbundle(fh)
        assert b.kind == "HG10" and b.reader is not None
        cg = b.reader.read()
    hg = make_runner(repo.hg)
    want = hg("debugbundle", "--all", bundles["none-v1"]).stdout
    for engine in (b"UN", b"GZ", b"BZ"):
        path = tmp / f"ours-{engine.decode()}.hg"
        path.write_bytes(b"".join(bundle2.hg10chunks([cg[:1000], cg[1000:]], engine)))
        assert hg("debugbundle", "--all", path).stdout == want
        with open(path, "rb") as fh:
            again = bundle2.readbundle(fh)
            assert again.compression == engine and again.reader is not None
            assert again.reader.read() == cg


def test_forwardchunks_copies_exactly_one_stream() -> None:
    b = Bundler()
    b.newpart(b"output", data=iter([b"x" * 70000]), mandatory=False)
    b.newpart(b"listkeys", [(b"namespace", b"bookmarks")], data=b"a\tb")
    data = b.tobytes()
    fh = io.BytesIO(data + b"trailing")
    assert b"".join(bundle2.forwardchunks(fh)) == data
    assert fh.read() == b"trailing"


def test_payload_chunking_and_streaming_read() -> None:
    payload = bytes(range(256)) * 500
    b = Bundler()
    b.newpart(b"output", data=iter([payload[:10], payload[10:]]), mandatory=False)
    data = b.tobytes()
    # chunks of 32768 as Mercurial generates them
    assert struct.pack(">i", 32768) in data
    part = next(iter(Unbundler(io.BytesIO(data))))
    got = [part.read(1000), part.read(7), part.read()]
    assert b"".join(got) == payload and len(got[0]) == 1000


def test_parts_skipped_when_not_read() -> None:
    b = Bundler()
    b.newpart(b"output", data=b"a" * 100, mandatory=False)
    b.newpart(b"phase-heads", data=bundle2.encodephaseheads({0: [b"\1" * 20]}))
    parts = list(Unbundler(io.BytesIO(b.tobytes())))
    assert [p.type for p in parts] == [b"output", b"phase-heads"]
    assert [p.id for p in parts] == [0, 1]


def test_stream_params() -> None:
    blob = bundle2.encodestreamparams(
        [(b"Compression", b"GZ"), (b"simple", None), (b"e q", b"a b")]
    )
    assert blob == b"Compression=GZ simple e%20q=a%20b"
    assert bundle2.decodestreamparams(blob) == [
        (b"Compression", b"GZ"),
        (b"simple", None),
        (b"e q", b"a b"),
    ]
    # unknown advisory parameters are ignored, unknown mandatory ones refused (§9.1)
    adv = b"HG20" + struct.pack(">i", 7) + b"unknown" + b"\0\0\0\0"
    assert list(Unbundler(io.BytesIO(adv))) == []
    man = b"HG20" + struct.pack(">i", 7) + b"Unknown" + b"\0\0\0\0"
    with pytest.raises(BundleUnknownFeatureError, match="Unknown") as info:
        Unbundler(io.BytesIO(man))
    assert info.value.params == (b"Unknown",)
    with pytest.raises(BundleUnknownFeatureError, match="Compression"):
        Unbundler(io.BytesIO(b"HG20" + struct.pack(">i", 14) + b"Compression=XX"))
    with pytest.raises(BundleError, match="start with a letter"):
        Unbundler(io.BytesIO(b"HG20" + struct.pack(">i", 3) + b"1ab"))
    with pytest.raises(BundleError, match="negative bundle param size"):
        Unbundler(io.BytesIO(b"HG20" + struct.pack(">i", -3)))
    with pytest.raises(BundleError, match="not a bundle2 stream"):
        Unbundler(io.BytesIO(b"HG21\0\0\0\0"))


def test_bad_part_headers() -> None:
    good = Bundler()
    good.newpart(b"check:heads", data=b"\1" * 20)
    data = good.tobytes()
    # header size claims more than there is
    with pytest.raises(BundleError, match="stream ended unexpectedly"):
        list(Unbundler(io.BytesIO(data[:20])))
    # header whose parameter sizes run past its end
    bad = b"HG20\0\0\0\0" + struct.pack(">i", 9) + b"\x02ab" + b"\0\0\0\0" + b"\x01\x00"
    with pytest.raises(BundleError, match="part header truncated"):
        list(Unbundler(io.BytesIO(bad)))
    # forbidden characters in the type
    bad = b"HG20\0\0\0\0" + struct.pack(">i", 9) + b"\x03a b" + b"\0\0\0\0" + b"\0\0"
    with pytest.raises(BundleError, match="invalid bundle2 part type"):
        list(Unbundler(io.BytesIO(bad)))
    with pytest.raises(BundleError, match="invalid bundle2 part type"):
        Part(b"bad type")
    # a negative payload chunk size other than the interrupt flag
    header = Part(b"output", mandatory=False).header(0)
    bad = b"HG20\0\0\0\0" + struct.pack(">i", len(header)) + header + struct.pack(">i", -2)
    with pytest.raises(BundleError, match="negative payload chunk size"):
        list(p.read() for p in Unbundler(io.BytesIO(bad)))


def test_interrupt_carries_remote_abort() -> None:
    def failing() -> Iterator[bytes]:
        yield b"d" * 40000  # one full 32 KiB chunk goes out before the failure
        raise ValueError("producer broke")

    b = Bundler()
    b.newpart(b"output", data=failing(), mandatory=False)
    chunks = []
    with pytest.raises(ValueError, match="producer broke"):
        for c in b.getchunks():
            chunks.append(c)
    data = b"".join(chunks)
    assert struct.pack(">i", -1) in data
    part = next(Unbundler(io.BytesIO(data)).iterparts())
    with pytest.raises(bundle2.RemoteAbortError, match="unexpected error: producer broke"):
        part.read()
    seen: list[bytes] = []
    unbundler = Unbundler(
        io.BytesIO(data + b"\0\0\0\0"), on_interrupt=lambda p: seen.append(p.params[b"message"])
    )
    part = next(unbundler.iterparts())
    assert part.read() == b"d" * 32768
    assert seen == [b"unexpected error: producer broke"]


def test_payload_codecs() -> None:
    n1, n2 = b"\1" * 20, b"\2" * 20
    heads = bundle2.encodephaseheads({1: [n2, n1], 0: [n2]})
    assert heads == struct.pack(">i20s", 0, n2) + struct.pack(">i20s", 1, n1) + struct.pack(
        ">i20s", 1, n2
    )
    assert bundle2.decodephaseheads(heads) == {0: [n2], 1: [n1, n2], 2: []}
    books = bundle2.encodebookmarks([(b"newbook", None), (b"mybook", n1)])
    assert books == n1 + b"\x00\x06mybook" + b"\xff" * 20 + b"\x00\x07newbook"
    assert bundle2.decodebookmarks(books) == [(b"mybook", n1), (b"newbook", None)]
    with pytest.raises(BundleError):
        bundle2.decodebookmarks(books[:-1])
    with pytest.raises(BundleError):
        bundle2.decodephaseheads(heads[:-1])
    keys = bundle2.encodekeys([(b"mybook", n1.hex().encode())])
    assert bundle2.decodekeys(keys) == {b"mybook": n1.hex().encode()}
    assert bundle2.decodenodes(n1 + n2) == [n1, n2]
    with pytest.raises(BundleError):
        bundle2.decodenodes(n1[:5])


def test_decompression_limits_and_truncation() -> None:
    b = Bundler(compression=b"GZ")
    b.newpart(b"output", data=b"z" * 100000, mandatory=False)
    data = b.tobytes()
    with pytest.raises(BundleError, match="exceeds"):
        list(p.read() for p in Unbundler(io.BytesIO(data), max_decompressed=1000))
    with pytest.raises(BundleError, match=r"truncated|ended"):
        list(p.read() for p in Unbundler(io.BytesIO(data[:-6])))


def test_coalesce_joins_small_chunks_and_keeps_bytes() -> None:
    pieces = [bytes([i % 251]) * (i % 7000) for i in range(100)]
    out = list(bundle2.coalesce(iter(pieces), 65536))
    assert b"".join(out) == b"".join(pieces)
    assert all(len(c) >= 65536 for c in out[:-1])
    assert len(out) < len(pieces)
