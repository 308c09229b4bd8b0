"""Changegroup framing and parsing against bundles made by real Mercurial (spec §8, §11)."""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import pytest

from hgwire.errors import BundleError
from hgwire.exchange import bundle2, changegroup
from hgwire.exchange.changegroup import CgUnpacker, RevisionDelta
from hgwire.repo import mdiff
from tests.conftest import make_runner
from tests.exchange.conftest import ALL_BUNDLES, bundles_for

NULLID = b"\0" * 20
CG_TYPES = (
    "none-v1",
    "bzip2-v1",
    "gzip-v1",
    "none-v2",
    "zstd-v2",
    "gzip-v2",
    "bzip2-v2",
    "none-v3",
    "zstd-v3",
)

UNCOMPRESSED = [(v, t) for v, t in ALL_BUNDLES if t.startswith("none-")]


def changegroup_of(path: Path) -> tuple[bytes, bytes]:
    """(version, raw changegroup bytes) of a bundle file (HG10 or the HG20 cg part)."""
    with open(path, "rb") as fh:
        b = bundle2.readbundle(fh)
        if b.kind == "HG10":
            assert b.reader is not None
            return b"01", b.reader.read()
        assert b.unbundler is not None
        for part in b.unbundler:
            if part.type == b"changegroup":
                return part.params.get(b"version", b"01"), part.read()
    raise AssertionError(f"no changegroup in {path}")


def debuglines(version: bytes, data: bytes) -> list[tuple[str, list[str]]]:
    """Our parse formatted like ``hg debugbundle --all`` (sections and delta lines)."""
    out: list[tuple[str, list[str]]] = []
    cg = CgUnpacker(io.BytesIO(data), version)
    for g in cg.groups():
        name = g.kind if g.kind in ("changelog", "manifest") else g.name.decode("utf-8")
        lines = [
            f"{d.node.hex()} {d.p1.hex()} {d.p2.hex()} {d.linknode.hex()} "
            f"{d.deltabase.hex()} {len(d.delta)}"
            for d in g.deltas
        ]
        out.append((name, lines))
    assert cg.done
    return out


def parse_debugbundle(text: str) -> list[tuple[str, list[str]]]:
    """Sections of ``hg debugbundle --all`` output: a name after a blank line, then
    delta lines."""
    out: list[tuple[str, list[str]]] = []
    prev_blank = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            prev_blank = True
            continue
        if prev_blank:
            out.append((raw.lstrip(" "), []))
        elif out and len(line.split(" ")) == 6 and len(line.split(" ")[0]) == 40:
            out[-1][1].append(line)
        prev_blank = False
    return out


@pytest.mark.interop
@pytest.mark.parametrize(("hgversion", "btype"), ALL_BUNDLES)
def test_parse_matches_hg_debugbundle(
    request: pytest.FixtureRequest, hgversion: str, btype: str
) -> None:
    repo, bundles = bundles_for(request, hgversion)
    version, data = changegroup_of(bundles[btype])
    assert version == {"1": b"01", "2": b"02", "3": b"03"}[btype[-1]]
    ours = debuglines(version, data)
    hg = make_runner(repo.hg)
    theirs = parse_debugbundle(hg("debugbundle", "--all", bundles[btype]).stdout.decode())
    # hg's debugbundle stops before the files of a cg3 (it reads the empty tree list
    # as the end of the file list), so compare what it shows.
    assert theirs, "debugbundle printed nothing"
    assert ours[: len(theirs)] == theirs
    if version != b"03":
        assert len(ours) == len(theirs)


def _rebuild(version: bytes, data: bytes) -> dict[str, dict[bytes, tuple[bytes, bytes, bytes]]]:
    """Apply every delta in memory, checking each node hash; {revlog: {node: text...}}."""
    texts: dict[str, dict[bytes, tuple[bytes, bytes, bytes]]] = {}
    cg = CgUnpacker(io.BytesIO(data), version)
    for g in cg.groups():
        key = g.kind if g.kind in ("changelog", "manifest") else g.name.decode("utf-8")
        store = texts.setdefault(key, {})
        for d in g.deltas:
            base = b"" if d.deltabase == NULLID else store[d.deltabase][0]
            text = mdiff.patch(base, d.delta)
            a, b = sorted([d.p1, d.p2])
            assert hashlib.sha1(a + b + text).digest() == d.node, (key, d.node.hex())
            for p in (d.p1, d.p2):
                assert p == NULLID or p in store, f"{key}: parent sent after child"
            if g.kind == "changelog":
                assert d.linknode == d.node
            else:
                assert d.linknode in texts["changelog"]
            store[d.node] = (text, d.p1, d.p2)
    return texts


@pytest.mark.interop
@pytest.mark.parametrize(("hgversion", "btype"), UNCOMPRESSED)
def test_every_revision_rebuilds_to_hg_content(
    request: pytest.FixtureRequest, hgversion: str, btype: str
) -> None:
    repo, bundles = bundles_for(request, hgversion)
    texts = _rebuild(*changegroup_of(bundles[btype]))
    facts = repo.facts()
    assert [n.hex() for n in texts["changelog"]] == [r["node"] for r in facts["changelog"]]
    assert {n.hex() for n in texts["manifest"]} == {r["node"] for r in facts["manifestlog"]}
    files = {k: v for k, v in texts.items() if k not in ("changelog", "manifest")}
    assert sorted(files) == sorted(facts["filelogs"])
    for path, revs in facts["filelogs"].items():
        got = files[path]
        for r in revs:
            text = got[bytes.fromhex(r["node"])][0]
            assert hashlib.sha256(text).hexdigest() == r["sha256"]


@pytest.mark.interop
@pytest.mark.parametrize(("hgversion", "btype"), UNCOMPRESSED)
def test_repack_is_byte_identical(
    request: pytest.FixtureRequest, hgversion: str, btype: str
) -> None:
    _repo, bundles = bundles_for(request, hgversion)
    version, data = changegroup_of(bundles[btype])
    cg = CgUnpacker(io.BytesIO(data), version)

    def named(it: object) -> list[tuple[bytes, list[RevisionDelta]]]:
        return [(n, list(ds)) for n, ds in it]  # type: ignore[attr-defined]

    cl = list(cg.changelog())
    mf = list(cg.manifests())
    trees = named(cg.trees())
    files = named(cg.files())
    assert cg.done
    assert b"".join(changegroup.packgroups(version, cl, mf, files, trees)) == data


# ---------------------------------------------------------------------------------------
# Synthetic streams and bad input


def _delta(node: int, p1: bytes = NULLID, base: bytes = NULLID, text: bytes = b"x\n"):
    return RevisionDelta(
        node=bytes([node]) * 20,
        p1=p1,
        p2=NULLID,
        linknode=bytes([node]) * 20,
        deltabase=base,
        delta=mdiff.trivialdiffheader(len(text)) + text,
    )


def _sample(version: bytes) -> bytes:
    a = _delta(1)
    b = _delta(2, p1=a.node, base=a.node)
    f = _delta(3)
    return b"".join(changegroup.packgroups(version, [a, b], [a], [(b"f.txt", [f])]))


@pytest.mark.parametrize("version", [b"01", b"02", b"03"])
def test_synthetic_roundtrip_and_structure(version: bytes) -> None:
    data = _sample(version)
    groups = [
        (g.kind, g.name, [d.node[:1] for d in g.deltas])
        for g in CgUnpacker(io.BytesIO(data), version).groups()
    ]
    assert groups == [
        ("changelog", b"", [b"\x01", b"\x02"]),
        ("manifest", b"", [b"\x01"]),
        ("file", b"f.txt", [b"\x03"]),
    ]
    # cg3 carries the (empty) tree list: exactly one more empty chunk than cg2 (§8.2)
    empties = data.count(struct.pack(">l", 0))
    assert empties >= 4
    if version == b"03":
        assert len(data) == len(_sample(b"02")) + 4 + 2 * 4


def test_cg1_base_is_implicit() -> None:
    a = _delta(1)
    b = _delta(2, p1=a.node, base=a.node)
    data = b"".join(changegroup.packgroups(b"01", [a, b], [], []))
    got = list(CgUnpacker(io.BytesIO(data), b"01").changelog())
    assert [d.deltabase for d in got] == [NULLID, a.node]
    bad = _delta(2, p1=a.node, base=NULLID)
    with pytest.raises(BundleError, match="cg1"):
        b"".join(changegroup.packgroups(b"01", [a, bad], [], []))


def test_getchunk_rejects_bad_lengths() -> None:
    for n in (1, 2, 3, 4):
        with pytest.raises(BundleError, match="invalid chunk length"):
            changegroup.getchunk(io.BytesIO(struct.pack(">l", n) + b"xxxx"))
    with pytest.raises(BundleError, match="invalid chunk length"):
        changegroup.getchunk(io.BytesIO(struct.pack(">l", -7)))
    assert changegroup.getchunk(io.BytesIO(struct.pack(">l", 0))) == b""
    assert changegroup.getchunk(io.BytesIO(changegroup.chunk(b"abc"))) == b"abc"


@pytest.mark.parametrize("cut", [1, 3, 10, 50, 130, -5, -1])
def test_truncated_stream_is_a_bundle_error(cut: int) -> None:
    data = _sample(b"02")
    with pytest.raises(BundleError, match="stream ended unexpectedly"):
        CgUnpacker(io.BytesIO(data[:cut]), b"02").consume()


def test_short_delta_header_and_empty_file_group() -> None:
    short = changegroup.chunk(b"\1" * 50) + changegroup.closechunk()
    with pytest.raises(BundleError, match="shorter than a cg2 delta header"):
        list(CgUnpacker(io.BytesIO(short), b"02").changelog())
    empty = (
        changegroup.closechunk() * 2
        + changegroup.chunk(b"f")
        + changegroup.closechunk()
        + changegroup.closechunk()
    )
    with pytest.raises(BundleError, match="received file revlog f group is empty"):
        CgUnpacker(io.BytesIO(empty), b"02").consume()
    with pytest.raises(BundleError, match="unsupported changegroup version"):
        CgUnpacker(io.BytesIO(b""), b"07")


def test_sections_must_be_read_in_order() -> None:
    cg = CgUnpacker(io.BytesIO(_sample(b"02")), b"02")
    with pytest.raises(BundleError, match="out of order"):
        list(cg.files())
    # unread deltas are skipped when moving on
    cg = CgUnpacker(io.BytesIO(_sample(b"02")), b"02")
    cg.changelog()
    assert [d.node[:1] for d in cg.manifests()] == [b"\x01"]
    assert [n for n, _ in cg.files()] == [b"f.txt"]
    assert cg.done
