"""Stream clones v1/v2: parsing hg's, generating ours, applying both (spec §10)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from hgwire.errors import AbortError, BundleError
from hgwire.exchange import bundle2, streamclone
from hgwire.repo.localrepo import Repository
from tests.conftest import HgRunner, make_runner
from tests.exchange.conftest import bundles_for
from tests.repo import hgrepos

LOG = "{node} {phase} {p1node} {p2node} {manifest} {files|json}\n"


def caps() -> list[bytes]:
    blob = bundle2.encodecaps(bundle2.client_capabilities())
    return [b"HG20", b"bundle2=" + bundle2.urlquote(blob)]


def test_uvarint() -> None:
    for value, enc in ((0, b"\0"), (14, b"\x0e"), (1337, b"\xb9\x0a"), (2**40, None)):
        data = streamclone.uvarint(value)
        if enc is not None:
            assert data == enc
        assert streamclone.read_uvarint(io.BytesIO(data)) == value
    with pytest.raises(BundleError):
        streamclone.read_uvarint(io.BytesIO(b"\x80"))


def test_capability_token() -> None:
    assert streamclone.stream_capability([b"revlogv1", b"store", b"fncache"]) == b"stream"
    reqs = [
        b"revlogv1",
        b"generaldelta",
        b"sparserevlog",
        b"store",
        b"dotencode",
        b"revlog-compression-zstd",
        b"share-safe",
        b"fncache",
    ]
    assert streamclone.stream_capability(reqs) == (
        b"streamreqs=generaldelta,revlog-compression-zstd,revlogv1,sparserevlog"
    )


@pytest.mark.interop
@pytest.mark.parametrize("hgversion", ["6.0", "7.2.4"])
def test_parse_hg_stream_bundles(request: pytest.FixtureRequest, hgversion: str) -> None:
    src, bundles = bundles_for(request, hgversion)
    store = src.path / ".hg" / "store"
    with open(bundles["stream-v1"], "rb") as fh:
        b = bundle2.readbundle(fh)
        assert b.kind == "HGS1" and b.reader is not None
        count, size, reqs = streamclone.read_hgs1_header(b.reader, magic_read=True)
        assert {b"revlogv1", b"generaldelta"} <= reqs
        seen = 0
        names = []
        for f in streamclone.read_v1(b.reader, count):
            data = b"".join(f.chunks)
            seen += len(data)
            names.append(f.name)
        assert seen == size and len(names) == count
        assert b.reader.read(1) == b""
    repo = Repository.open(src.path)
    ours = [name for name, _enc, _size in repo.store_files()]
    assert sorted(names) == sorted(ours)
    assert (store / "00changelog.i").stat().st_size > 0
    with open(bundles["stream-v2"], "rb") as fh:
        u = bundle2.readbundle(fh).unbundler
        assert u is not None
        part = next(u.iterparts())
        assert part.type == b"stream2"
        count = int(part.params[b"filecount"])
        total = 0
        for f in streamclone.read_v2(part, count):
            total += sum(len(c) for c in f.chunks)
        assert total == int(part.params[b"bytecount"])


@pytest.mark.interop
def test_apply_hg_stream_v2_bundle(
    request: pytest.FixtureRequest, tmp_path: Path, hg72: HgRunner
) -> None:
    src, bundles = bundles_for(request, "7.2.4")
    repo = Repository.create(tmp_path / "dest", format="7.2")
    with open(bundles["stream-v2"], "rb") as fh:
        res = bundle2.apply_pull(repo, fh)
    assert res.streamed is not None and res.streamed[0] > 10
    hg72("-R", tmp_path / "dest", "verify", "-q")
    got = hg72("-R", tmp_path / "dest", "log", "-T", LOG).stdout
    want = hg72("-R", src.path, "log", "-T", LOG).stdout
    # a publishing repository streams no phaseroots: everything arrives public
    assert got == want.replace(b" draft ", b" public ").replace(b" secret ", b" public ")


@pytest.mark.interop
def test_our_stream_v2_applied_by_hg_and_hgwire(
    nosecret_repo72: hgrepos.GeneratedRepo, tmp_path: Path, hg72: HgRunner
) -> None:
    src = Repository.open(nosecret_repo72.path)
    data = b"".join(
        bundle2.getbundle(
            src, bundlecaps=caps(), cg=False, stream=True, bookmarks=True,
            listkeys=[b"bookmarks"],
        )
    )  # fmt: skip
    path = tmp_path / "stream.hg"
    path.write_bytes(data)
    want = hg72("-R", nosecret_repo72.path, "log", "-T", LOG).stdout.replace(b"draft", b"public")
    # hg applies it
    hg72("init", tmp_path / "byhg")
    hg72("-R", tmp_path / "byhg", "unbundle", "-q", path)
    hg72("-R", tmp_path / "byhg", "verify", "-q")
    assert hg72("-R", tmp_path / "byhg", "log", "-T", LOG).stdout == want
    books = hg72("-R", tmp_path / "byhg", "bookmarks", "-T", "{bookmark} {node}\n").stdout
    assert (
        books == hg72("-R", nosecret_repo72.path, "bookmarks", "-T", "{bookmark} {node}\n").stdout
    )
    # hgwire applies it
    dest = Repository.create(tmp_path / "byus", format="7.2")
    with open(path, "rb") as fh:
        res = bundle2.apply_pull(dest, fh)
    assert res.streamed is not None
    assert {name for name, _node in res.bookmarks} == set(res.listkeys[b"bookmarks"])
    hg72("-R", tmp_path / "byus", "verify", "-q")
    assert hg72("-R", tmp_path / "byus", "log", "-T", LOG).stdout == want


@pytest.mark.interop
def test_our_stream_v1_and_hgs1(
    nosecret_repo72: hgrepos.GeneratedRepo, tmp_path: Path, hg72: HgRunner
) -> None:
    src = Repository.open(nosecret_repo72.path)
    want = hg72("-R", nosecret_repo72.path, "log", "-T", LOG).stdout
    fh = io.BytesIO(b"".join(streamclone.generate_v1(src)))
    count, size = streamclone.read_v1_status(fh)
    dest = Repository.create(tmp_path / "v1", format="7.2")
    assert streamclone.apply_files(dest, streamclone.read_v1(fh, count)) == (count, size)
    hg72("-R", tmp_path / "v1", "verify", "-q")
    # v1 carries no phaseroots from a publishing server: everything is public
    assert hg72("-R", tmp_path / "v1", "log", "-T", LOG).stdout == want.replace(b"draft", b"public")
    (tmp_path / "s.hgs1").write_bytes(b"".join(streamclone.generate_hgs1(src)))
    hg72("init", tmp_path / "byhg")
    hg72("-R", tmp_path / "byhg", "debugapplystreamclonebundle", tmp_path / "s.hgs1")
    hg72("-R", tmp_path / "byhg", "verify", "-q")


@pytest.mark.interop
def test_stream_refused_with_secret_changesets(full_repo72: hgrepos.GeneratedRepo) -> None:
    src = Repository.open(full_repo72.path)
    data = b"".join(bundle2.getbundle(src, bundlecaps=caps(), cg=False, stream=True))
    part = next(bundle2.Unbundler(io.BytesIO(data)).iterparts())
    assert part.type == b"error:abort"
    assert b"secret" in part.params[b"message"]
    assert b"".join(streamclone.generate_v1(src, allowed=False)) == b"1\n"
    assert b"".join(streamclone.generate_v1(src)) == b"1\n"  # secret changesets


def test_v1_status_and_bad_entries() -> None:
    with pytest.raises(AbortError, match="forbidden"):
        streamclone.read_v1_status(io.BytesIO(b"1\n"))
    with pytest.raises(AbortError, match="locking"):
        streamclone.read_v1_status(io.BytesIO(b"2\n"))
    with pytest.raises(BundleError, match="unexpected response"):
        streamclone.read_v1_status(io.BytesIO(b"0\nnot numbers\n"))
    fh = io.BytesIO(b"data/a.i\x005\nabc")
    with pytest.raises(BundleError, match="truncated"):
        for f in streamclone.read_v1(fh, 1):
            b"".join(f.chunks)
    fh = io.BytesIO(b"s" + streamclone.uvarint(3) + streamclone.uvarint(1) + b"../x")
    with pytest.raises(BundleError, match="refusing"):
        streamclone._check_name(next(streamclone.read_v2(fh, 1)).name)
    with pytest.raises(BundleError, match="source"):
        list(streamclone.read_v2(io.BytesIO(b"x\0\0"), 1))
    header = b"HGS1UN" + struct.pack(">QQH", 1, 2, 3) + b"ab\0"
    assert streamclone.read_hgs1_header(io.BytesIO(header)) == (1, 2, frozenset({b"ab"}))
    with pytest.raises(BundleError):
        streamclone.read_hgs1_header(io.BytesIO(b"HGS1GZ"))


def test_apply_refuses_non_empty_and_unknown_format(
    tmp_path: Path, full_repo72: hgrepos.GeneratedRepo
) -> None:
    dest = Repository.create(tmp_path / "d", format="7.2")
    with pytest.raises(AbortError, match="unsupported format"):
        streamclone.apply_files(dest, iter([]), [b"revlogv1", b"exp-unknown-format"])
    full = Repository.open(full_repo72.path)
    with pytest.raises(AbortError, match="non-empty"):
        streamclone.apply_files(full, iter([]))
    _ = make_runner


@pytest.mark.interop
@pytest.mark.parametrize("btype", ["stream-v1", "bzip2-v1", "zstd-v2"])
def test_applybundle_any_kind(
    request: pytest.FixtureRequest, tmp_path: Path, hg72: HgRunner, btype: str
) -> None:
    src, bundles = bundles_for(request, "7.2.4")
    dest = Repository.create(tmp_path / "dest", format="7.2")
    with open(bundles[btype], "rb") as fh:
        res = bundle2.applybundle(dest, fh)
    assert (res.streamed is not None) == (btype == "stream-v1")
    hg72("-R", tmp_path / "dest", "verify", "-q")
    nodes = hg72("-R", tmp_path / "dest", "log", "-T", "{node}\n").stdout
    assert nodes == hg72("-R", src.path, "log", "-T", "{node}\n").stdout


@pytest.mark.interop
def test_snapshot_survives_appends_and_inline_splits(
    nosecret_repo72: hgrepos.GeneratedRepo, tmp_path: Path, hg72: HgRunner
) -> None:
    """After the lock is released, revlogs grow in place and inline ``.i`` files are
    replaced by new files (a split): the stream still carries the snapshot's bytes."""
    src = tmp_path / "src"
    hg72("clone", "-q", "-U", "--pull", nosecret_repo72.path, src)  # own files, no hardlinks
    repo = Repository.open(src)
    store = src / ".hg" / "store"
    listed = {name: enc for name, enc, _size in repo.store_files()}
    inline = [
        n for n in listed if n.endswith(b".i") and n[:-2] + b".d" not in listed
    ]  # fmt: skip
    assert inline
    before = {n: (store / enc).read_bytes() for n, enc in listed.items()}
    snap = streamclone.snapshot(repo)
    with snap:
        assert all(streamclone._is_volatile(n, inline=n in inline) == (n in inline) for n in listed)
        for n in inline[: len(inline) // 2]:  # replaced by a new file, as a split does
            path = store / listed[n]
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(b"\0\0\0\1" + b"x" * 100)
            tmp.replace(path)
        for n, enc in listed.items():  # appended to in place
            if (store / enc).exists() and n not in inline[: len(inline) // 2]:
                with open(store / enc, "ab") as fh:
                    fh.write(b"appended")
        got = {e.name: b"".join(snap.filechunks(e)) for e in snap.entries if e.source == b"s"}
    for n, data in before.items():
        if data or n.endswith(b".i"):
            assert got[n] == data, n
