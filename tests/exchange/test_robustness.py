"""Damaged input never escapes as anything but an hgwire error, and never half-applies."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hgwire.errors import HgwireError
from hgwire.exchange import bundle2, changegroup
from hgwire.exchange.bundle2 import Bundler, Unbundler
from hgwire.exchange.changegroup import CgUnpacker
from hgwire.repo import mdiff
from hgwire.repo.revlog import RevisionDelta, hashrevision
from tests.conftest import HgRunner
from tests.exchange.test_bundle2_format import CAPS72
from tests.exchange.test_changegroup_repo import store_state
from tests.repo import hgrepos

NULLID = b"\0" * 20


def _sample_cg(version: bytes) -> bytes:
    text = b"hello\n"
    node = hashrevision(text, NULLID, NULLID)
    d = RevisionDelta(node, NULLID, NULLID, node, NULLID, mdiff.trivialdiffheader(6) + text)
    return b"".join(changegroup.packgroups(version, [d], [d], [(b"f", [d])]))


def _sample_bundle(compression: bytes | None = None) -> bytes:
    b = Bundler(compression=compression)
    b.newpart(b"replycaps", data=bundle2.encodecaps(CAPS72))
    b.newpart(b"changegroup", [(b"version", b"03")], [(b"nbchanges", b"1")], _sample_cg(b"03"))
    b.newpart(b"phase-heads", data=bundle2.encodephaseheads({0: [b"\1" * 20]}))
    b.newpart(b"bookmarks", data=bundle2.encodebookmarks([(b"book", b"\1" * 20)]))
    b.newpart(b"listkeys", [(b"namespace", b"phases")], data=b"publishing\tTrue")
    b.newpart(b"output", data=iter([b"x" * 40000]), mandatory=False)
    return b.tobytes()


def _parse_everything(data: bytes) -> None:
    for part in Unbundler(io.BytesIO(data), max_decompressed=1 << 20).iterparts():
        if part.type == b"changegroup":
            CgUnpacker(part, part.params.get(b"version", b"01")).consume()
        elif part.type == b"phase-heads":
            bundle2.decodephaseheads(part.read())
        elif part.type == b"bookmarks":
            bundle2.decodebookmarks(part.read())
        elif part.type == b"listkeys":
            bundle2.decodekeys(part.read())
        elif part.type == b"replycaps":
            bundle2.decodecaps(part.read())


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


@pytest.mark.parametrize("compression", [None, b"GZ", b"ZS", b"BZ"])
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_damaged_bundles_raise_hgwire_errors(compression: bytes | None, data: st.DataObject
                                             ) -> None:  # fmt: skip
    damaged = data.draw(mutated(_sample_bundle(compression)))
    try:
        _parse_everything(damaged)
    except Exception as exc:
        assert isinstance(exc, HgwireError), repr(exc)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_damaged_changegroups_raise_hgwire_errors(data: st.DataObject) -> None:
    version = data.draw(st.sampled_from([b"01", b"02", b"03"]))
    damaged = data.draw(mutated(_sample_cg(version)))
    try:
        CgUnpacker(io.BytesIO(damaged), version).consume()
    except Exception as exc:
        assert isinstance(exc, HgwireError), repr(exc)


@pytest.mark.interop
def test_damaged_pushes_are_refused_atomically(
    full_repo72: hgrepos.GeneratedRepo, hg72: HgRunner, tmp_path: Path
) -> None:
    """Random damage to a real push bundle: unbundle always answers with a reply, and
    when it reports an error the repository is exactly as before."""
    from hgwire.repo.localrepo import Repository

    server = tmp_path / "server"
    hg72("clone", "-q", "-U", "-r", "7", full_repo72.path, server)
    src = Repository.open(full_repo72.path)
    outgoing = changegroup.findoutgoing(src, [src.changelog.node(7)])
    b = Bundler()
    b.newpart(b"replycaps", data=bundle2.encodecaps(CAPS72))
    b.newpart(b"check:heads", data=src.changelog.node(7))
    b.newpart(b"changegroup", [(b"version", b"02")],
              data=changegroup.makechangegroup(src, outgoing, b"02"))  # fmt: skip
    b.newpart(b"phase-heads", data=bundle2.encodephaseheads({0: [src.changelog.node(16)]}))
    base = b.tobytes()
    outcomes: list[bool] = []

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        damaged = data.draw(mutated(base))
        before = store_state(server)
        reply = bundle2.unbundle(Repository.open(server), io.BytesIO(damaged))
        chunks = b"".join(reply.getchunks())
        assert chunks.startswith(b"HG20")
        outcomes.append(reply.error is None)
        if reply.error is not None:
            assert store_state(server) == before
            last = list(Unbundler(io.BytesIO(chunks)).iterparts())
            assert last and last[-1].type.startswith(b"error:")

    run()
    assert False in outcomes  # damage was detected at least once
    hg72("-R", server, "verify", "-q")
