"""Revlog engine: reading, writing, delta choice, inline split, rollback, bad input."""

from __future__ import annotations

import hashlib
import os
import random
import struct
import zlib
from pathlib import Path

import pytest
import zstandard

from hgwire.errors import LookupNodeError, RepositoryError
from hgwire.repo import mdiff
from hgwire.repo.revlog import (
    ENTRY_SIZE,
    INDEX_ENTRY,
    MAX_CHAIN_LEN,
    MAX_INLINE,
    RevisionDelta,
    Revlog,
    hashrevision,
    nullid,
    nullrev,
)
from hgwire.repo.transaction import Transaction
from hgwire.repo.vfs import VFS


class FakeTransaction:
    """Journals like Mercurial's transaction: truncation offsets and whole-file backups."""

    def __init__(self, vfs: VFS) -> None:
        self.vfs = vfs
        self.entries: dict[str, int] = {}
        self.backups: dict[str, bytes | None] = {}

    def add(self, path: str, offset: int) -> None:
        assert path not in self.backups, "add after addbackup on one file"
        self.entries.setdefault(path, offset)

    def findoffset(self, path: str) -> int | None:
        return self.entries.get(path)

    def hasbackup(self, path: str) -> bool:
        return path in self.backups

    def addbackup(self, path: str) -> None:
        assert path not in self.entries, "addbackup after add on one file"
        self.backups.setdefault(path, self.vfs.read(path) if self.vfs.exists(path) else None)

    def rollback(self, backups_first: bool = False) -> None:
        steps = [self._truncate, self._restore]
        for step in reversed(steps) if backups_first else steps:
            step()

    def _truncate(self) -> None:
        for path, offset in self.entries.items():
            if offset == 0:
                self.vfs.unlink(path)
            else:
                with self.vfs(path, "r+b") as fh:
                    fh.truncate(offset)

    def _restore(self) -> None:
        for path, data in self.backups.items():
            if data is None:
                self.vfs.unlink(path)
            else:
                self.vfs.atomic_write(path, data)


@pytest.fixture
def vfs(tmp_path: Path) -> VFS:
    return VFS(tmp_path)


def texts(n: int, size: int = 2000, seed: int = 0) -> list[bytes]:
    """A line-oriented history: each version edits a few lines of the previous one."""
    import random

    rnd = random.Random(seed)
    lines = [b"line %d %s\n" % (i, os.urandom(4).hex().encode()) for i in range(size // 20)]
    out = []
    for _ in range(n):
        for _ in range(3):
            lines[rnd.randrange(len(lines))] = b"edit %d\n" % rnd.randrange(10**9)
        out.append(b"".join(lines))
    return out


class SplitRevlog(Revlog):
    """A revlog created non-inline (as 7.2 creates changelogs)."""

    _may_inline = False


def build(vfs: VFS, data: list[bytes], radix: str = "data/f", **kw: object) -> Revlog:
    rl = Revlog(vfs, radix, **kw)  # type: ignore[arg-type]
    tr = FakeTransaction(vfs)
    p1 = nullid
    for i, t in enumerate(data):
        rev = rl.addrevision(t, tr, i, p1, nullid)
        p1 = rl.node(rev)
    return rl


@pytest.mark.parametrize("compression", ["zlib", "zstd", "none"])
@pytest.mark.parametrize("generaldelta", [True, False])
def test_write_then_read_back(vfs: VFS, compression: str, generaldelta: bool) -> None:
    data = texts(30)
    rl = build(vfs, data, compression=compression, generaldelta=generaldelta)
    again = Revlog(vfs, "data/f")
    assert len(again) == 30
    assert again.generaldelta == generaldelta
    for r, t in enumerate(data):
        assert again.revision(r) == t
        assert again.rev(again.node(r)) == r
        assert again.node(r) == rl.node(r)
        assert again.linkrev(r) == r
        assert again.parentrevs(r) == (r - 1, nullrev)
    assert again.headrevs() == [29]
    assert any(again.deltaparent(r) != nullrev for r in again)


def test_nodes_hash_like_mercurial(vfs: VFS) -> None:
    rl = build(vfs, [b"a\n", b"b\n"])
    n0 = hashlib.sha1(nullid + nullid + b"a\n").digest()
    assert rl.node(0) == n0
    assert rl.node(1) == hashlib.sha1(nullid + n0 + b"b\n").digest()
    assert hashrevision(b"x", n0, nullid) == hashrevision(b"x", nullid, n0)


def test_generaldelta_deltas_against_p1_and_legacy_against_prev(vfs: VFS) -> None:
    base = texts(1)[0]
    gd = Revlog(vfs, "gd")
    tr = FakeTransaction(vfs)
    r0 = gd.addrevision(base, tr, 0, nullid, nullid)
    gd.addrevision(base + b"other\n", tr, 1, nullid, nullid)  # unrelated root
    r2 = gd.addrevision(base + b"child\n", tr, 2, gd.node(r0), nullid)
    assert gd.deltaparent(r2) == r0
    legacy = Revlog(vfs, "legacy", generaldelta=False)
    for i, t in enumerate([base, base + b"x\n", base + b"y\n"]):
        legacy.addrevision(t, tr, i, nullid, nullid)
    assert [legacy.deltaparent(r) for r in legacy] == [nullrev, 0, 1]
    # legacy base field holds the chain start
    assert [legacy._entry(r)[3] for r in legacy] == [0, 0, 0]
    assert Revlog(vfs, "legacy").revision(2) == base + b"y\n"


def test_chain_length_is_capped(vfs: VFS) -> None:
    lines = [b"%d\n" % i for i in range(400)]
    rl = Revlog(vfs, "long", compression="none")
    tr = FakeTransaction(vfs)
    p1 = nullid
    for i in range(MAX_CHAIN_LEN + 20):
        lines[i % 400] = b"v%d\n" % i
        p1 = rl.node(rl.addrevision(b"".join(lines), tr, i, p1, nullid))
    assert max(rl.chainlen(r) for r in rl) <= MAX_CHAIN_LEN
    assert Revlog(vfs, "long").revision(len(rl) - 1) == b"".join(lines)


def test_chain_size_bound_forces_snapshots(vfs: VFS) -> None:
    # each revision rewrites a third of a small text: deltas pile up fast
    rl = Revlog(vfs, "churn", compression="none")
    tr = FakeTransaction(vfs)
    p1 = nullid
    for i in range(60):
        text = b"".join(b"%d-%d\n" % (i if j % 3 == i % 3 else 0, j) for j in range(90))
        p1 = rl.node(rl.addrevision(text, tr, i, p1, nullid))
    for r in rl:
        if rl.deltaparent(r) != nullrev:
            assert rl._chainsize(r) <= 2 * rl.rawsize(r)


def test_identical_revision_is_not_added_twice(vfs: VFS) -> None:
    rl = build(vfs, [b"a\n"])
    tr = FakeTransaction(vfs)
    assert rl.addrevision(b"a\n", tr, 5, nullid, nullid) == 0
    assert len(rl) == 1


def test_addrevision_checks_given_node(vfs: VFS) -> None:
    rl = Revlog(vfs, "x")
    with pytest.raises(RepositoryError, match="integrity error"):
        rl.addrevision(b"a", FakeTransaction(vfs), 0, nullid, nullid, node=b"\1" * 20)
    with pytest.raises(LookupNodeError):
        rl.addrevision(b"a", FakeTransaction(vfs), 0, b"\2" * 20, nullid)


def test_compression_rule(vfs: VFS) -> None:
    rl = Revlog(vfs, "c", compression="zlib")
    assert rl.compress(b"") == b""
    assert rl.compress(b"short") == b"ushort"
    assert rl.compress(b"\0binary") == b"\0binary"
    big = b"a" * 1000
    assert rl.compress(big) == zlib.compress(big)
    noisy = os.urandom(1000)
    assert rl.compress(noisy) in (b"u" + noisy, noisy)
    zs = Revlog(vfs, "z", compression="zstd")
    assert zs.compress(big)[:4] == b"\x28\xb5\x2f\xfd"
    assert zstandard.ZstdDecompressor().decompress(zs.compress(big)) == big
    assert zs.compress(b"x" * 49) == b"u" + b"x" * 49  # zstd not tried below 50 bytes


def test_lookup_errors(vfs: VFS) -> None:
    rl = build(vfs, [b"a\n"])
    with pytest.raises(LookupNodeError) as info:
        rl.rev(b"\5" * 20)
    assert info.value.key == b"\5" * 20
    assert isinstance(info.value, RepositoryError)
    with pytest.raises(LookupNodeError):
        rl.revision(7)
    assert not rl.hasnode(b"\5" * 20)
    assert not rl.hasnode(nullid)
    assert rl.rev(nullid) == nullrev
    assert rl.revision(nullrev) == b""


@pytest.mark.parametrize("n", [60000, 5000])
def test_rev_lookup_in_large_revlog_without_building_the_map(vfs: VFS, n: int) -> None:
    nodes = [hashlib.sha1(b"%d" % i).digest() for i in range(n)]
    entries = bytearray()
    for i, node in enumerate(nodes):
        entries += INDEX_ENTRY.pack(0, 0, 0, i, i, -1, -1, node)
    entries[0:4] = struct.pack(">I", 1)
    vfs.atomic_write("big.i", bytes(entries))
    rl = Revlog(vfs, "big")
    assert rl.rev(nodes[n // 5]) == n // 5
    assert rl._nodemap is None  # answered by a scan
    with pytest.raises(LookupNodeError):
        rl.rev(b"\0" * 19 + b"\1")
    for i in range(0, n, n // 20):
        assert rl.rev(nodes[i]) == i
    assert rl._nodemap is not None
    p1s, p2s = rl.parentrevs_array()
    assert len(p1s) == n and set(p2s) == {-1}
    assert list(rl.linkrevs_array()[:3]) == [0, 1, 2]
    assert rl.headrevs() == list(range(n))


def test_inline_split_at_threshold(vfs: VFS) -> None:
    rl = Revlog(vfs, "data/big", compression="none")
    tr = FakeTransaction(vfs)
    chunk = os.urandom(40000)
    rl.addrevision(chunk, tr, 0, nullid, nullid)
    assert rl.inline
    rl.addrevision(os.urandom(40000), tr, 1, nullid, nullid)
    assert rl.inline and not vfs.exists("data/big.d")
    rl.addrevision(os.urandom(60000), tr, 2, nullid, nullid)  # crosses 131072
    assert not rl.inline
    assert vfs.size("data/big.i") == 3 * ENTRY_SIZE
    assert vfs.size("data/big.d") == rl.end(2) >= MAX_INLINE
    (header,) = struct.unpack(">I", vfs.read("data/big.i")[:4])
    assert header == 0x00020001
    again = Revlog(vfs, "data/big")
    assert again.revision(0) == chunk
    # a file that was new in the transaction rolls back to nothing
    tr.rollback()
    assert not vfs.exists("data/big.i") and not vfs.exists("data/big.d")


@pytest.mark.parametrize("backups_first", [False, True])
def test_split_in_later_transaction_rolls_back_exactly(vfs: VFS, backups_first: bool) -> None:
    rl = Revlog(vfs, "data/f", compression="none")
    tr1 = FakeTransaction(vfs)
    for i in range(3):
        rl.addrevision(os.urandom(40000), tr1, i, nullid, nullid)
    assert rl.inline
    before = vfs.read("data/f.i")
    tr2 = FakeTransaction(vfs)
    rl.addrevision(os.urandom(40000), tr2, 3, nullid, nullid)  # split before appending
    assert not rl.inline
    assert "data/f.i" in tr2.backups and "data/f.i" not in tr2.entries
    rl.addrevision(os.urandom(100), tr2, 4, nullid, nullid)
    tr2.rollback(backups_first)
    assert vfs.read("data/f.i") == before
    assert not vfs.exists("data/f.d")
    again = Revlog(vfs, "data/f")
    assert again.inline and len(again) == 3


def test_stays_inline_when_split_mid_transaction_would_be_unsafe(vfs: VFS) -> None:
    rl = Revlog(vfs, "data/f", compression="none")
    rl.addrevision(b"x" * 100, FakeTransaction(vfs), 0, nullid, nullid)
    tr = FakeTransaction(vfs)
    for i in range(1, 5):
        rl.addrevision(os.urandom(40000), tr, i, nullid, nullid)
    assert rl.inline  # journaled by truncation: splitting now would break rollback
    tr.rollback()
    assert len(Revlog(vfs, "data/f")) == 1
    # the next transaction splits it first
    again = Revlog(vfs, "data/f", compression="none")
    for i in range(1, 5):
        again.addrevision(os.urandom(40000), FakeTransaction(vfs), i, nullid, nullid)
    assert not Revlog(vfs, "data/f").inline


def test_second_object_never_splits_a_file_appended_to_in_the_transaction(vfs: VFS) -> None:
    # the decision to split comes from the transaction, not from the object's memory
    Revlog(vfs, "data/f", compression="none").addrevision(
        b"x" * 100, FakeTransaction(vfs), 0, nullid, nullid
    )
    before = vfs.read("data/f.i")
    tr = Transaction(vfs, {"store": vfs, "plain": vfs}, undo=None)
    first = Revlog(vfs, "data/f", compression="none")
    first.addrevision(os.urandom(1000), tr, 1, nullid, nullid)
    second = Revlog(vfs, "data/f", compression="none")
    second.addrevision(os.urandom(140000), tr, 2, nullid, nullid)  # crosses 128 KiB
    assert second.inline  # appended to by `first`: rewriting it would break hg 6.0 recover
    assert not tr.hasbackup("data/f.i")
    assert tr.journaled() == [(b"data/f.i", len(before))]
    assert Revlog(vfs, "data/f").revision(2) == second.revision(2)
    tr.abort()
    assert vfs.read("data/f.i") == before and not vfs.exists("data/f.d")


def test_appends_are_journaled_with_sizes(vfs: VFS) -> None:
    rl = SplitRevlog(vfs, "00changelog", generaldelta=False)
    tr = FakeTransaction(vfs)
    rl.addrevision(b"first", tr, 0, nullid, nullid)
    tr2 = FakeTransaction(vfs)
    rl.addrevision(b"second" * 20, tr2, 1, rl.node(0), nullid)
    assert tr2.entries == {"00changelog.i": 64, "00changelog.d": 6}
    tr2.rollback()
    assert len(Revlog(vfs, "00changelog")) == 1


def test_addgroup_stores_received_delta_as_is(vfs: VFS) -> None:
    data = texts(5)
    src = build(vfs, data, radix="src")
    dst = Revlog(vfs, "dst")
    tr = FakeTransaction(vfs)
    group = []
    prev = nullid
    for r in src:
        base = src.node(r - 1) if r else nullid
        delta = src.revdiff(r - 1, r) if r else mdiff.trivialdiffheader(len(data[0])) + data[0]
        group.append(RevisionDelta(src.node(r), prev, nullid, b"L%d" % r, base, delta))
        prev = src.node(r)
    links = {b"L%d" % r: r * 10 for r in src}
    revs = dst.addgroup(group, links.__getitem__, tr)
    assert revs == [0, 1, 2, 3, 4]
    assert [dst.linkrev(r) for r in revs] == [0, 10, 20, 30, 40]
    for r in src:
        assert dst.revision(r) == data[r]
    assert dst.storeddelta(2) == (1, group[2].delta)
    # existing nodes are skipped
    assert dst.addgroup(group[:2], links.__getitem__, tr) == [0, 1]
    assert len(dst) == 5


def test_addgroup_rejects_bad_input(vfs: VFS) -> None:
    dst = Revlog(vfs, "dst")
    tr = FakeTransaction(vfs)
    full = mdiff.trivialdiffheader(2) + b"a\n"
    node = hashrevision(b"a\n", nullid, nullid)
    with pytest.raises(RepositoryError, match="integrity"):
        dst.addgroup([RevisionDelta(b"\7" * 20, nullid, nullid, b"", nullid, full)], len, tr)
    with pytest.raises(LookupNodeError, match="delta base"):
        dst.addgroup([RevisionDelta(node, nullid, nullid, b"", b"\7" * 20, full)], len, tr)
    with pytest.raises(RepositoryError, match="bad delta"):
        bad = struct.pack(">lll", 0, 5, 0)
        dst.addgroup([RevisionDelta(node, nullid, nullid, b"", nullid, bad)], len, tr)
    assert len(dst) == 0


def test_storeddelta_and_revdiff(vfs: VFS) -> None:
    data = texts(3)
    rl = build(vfs, data)
    base, delta = rl.storeddelta(0)
    assert base == nullrev and mdiff.patch(b"", delta) == data[0]
    for r1 in (nullrev, 0, 1, 2):
        for r2 in (0, 1, 2):
            assert mdiff.patch(rl.rawdata(r1), rl.revdiff(r1, r2)) == data[r2]


# ---------------------------------------------------------------- damaged revlogs


def corrupt(vfs: VFS, path: str, offset: int, data: bytes) -> None:
    raw = bytearray(vfs.read(path))
    raw[offset : offset + len(data)] = data
    vfs.atomic_write(path, bytes(raw))


def split_revlog(vfs: VFS) -> Revlog:
    rl = SplitRevlog(vfs, "s")
    tr = FakeTransaction(vfs)
    for i, t in enumerate(texts(3)):
        rl.addrevision(t, tr, i, rl.node(i - 1), nullid)
    assert vfs.exists("s.d")
    return rl


def test_truncated_index_names_file_and_offset(vfs: VFS) -> None:
    split_revlog(vfs)
    raw = vfs.read("s.i")
    vfs.atomic_write("s.i", raw[:-10])
    with pytest.raises(RepositoryError, match=r"s\.i: corrupt index, partial entry at offset 128"):
        Revlog(vfs, "s")


def test_truncated_inline_index(vfs: VFS) -> None:
    build(vfs, texts(3), radix="i")
    raw = vfs.read("i.i")
    vfs.atomic_write("i.i", raw[:-5])
    with pytest.raises(RepositoryError, match=r"i\.i: truncated revision data at offset \d+"):
        Revlog(vfs, "i")
    vfs.atomic_write("i.i", raw + b"\0" * 10)
    with pytest.raises(RepositoryError, match=r"i\.i: corrupt inline index, partial entry"):
        Revlog(vfs, "i")


def test_truncated_data_file(vfs: VFS) -> None:
    rl = split_revlog(vfs)
    vfs.atomic_write("s.d", vfs.read("s.d")[: rl.start(2) + 3])
    again = Revlog(vfs, "s")
    assert again.revision(1)
    with pytest.raises(RepositoryError, match=r"s\.d: truncated revision data at offset \d+"):
        again.revision(2)


def test_unknown_compression_header(vfs: VFS) -> None:
    rl = split_revlog(vfs)
    corrupt(vfs, "s.d", rl.start(0), b"Q")
    with pytest.raises(
        RepositoryError, match=r"s\.d: unknown compression type b'Q' for revision 0 at offset 0"
    ):
        Revlog(vfs, "s").revision(0)


def test_corrupted_zlib_chunk(vfs: VFS) -> None:
    rl = split_revlog(vfs)
    assert vfs.read("s.d")[rl.start(0) : rl.start(0) + 1] == b"x"
    corrupt(vfs, "s.d", rl.start(0) + 5, b"\xff\xff\xff\xff")
    with pytest.raises(RepositoryError, match=r"s\.d: cannot decompress revision 0 at offset 0"):
        Revlog(vfs, "s").revision(0)


def test_corrupted_delta_and_hash_mismatch(vfs: VFS) -> None:
    text = b"".join(b"line %d\n" % i for i in range(50))
    rl = build(vfs, [text, text + b"more\n"], radix="h", compression="none")
    assert rl.deltaparent(1) == 0
    pos = rl.start(1) + 2 * ENTRY_SIZE
    corrupt(vfs, "h.i", pos + 2, b"\x7f")  # hunk start way out of range
    with pytest.raises(RepositoryError, match=r"h\.i: cannot rebuild revision 1"):
        Revlog(vfs, "h").revision(1)
    build(vfs, [b"hello world\n"], radix="g", compression="none")
    corrupt(vfs, "g.i", ENTRY_SIZE + 1, b"J")
    with pytest.raises(RepositoryError, match="integrity check failed on revision 0"):
        Revlog(vfs, "g").revision(0)


def test_bad_header(vfs: VFS) -> None:
    vfs.atomic_write("v.i", struct.pack(">I", 2) + b"\0" * 60)
    with pytest.raises(RepositoryError, match="unsupported revlog version"):
        Revlog(vfs, "v")
    vfs.atomic_write("v.i", struct.pack(">I", (1 << 20) | 1) + b"\0" * 60)
    with pytest.raises(RepositoryError, match="unknown flags"):
        Revlog(vfs, "v")


def test_base_above_revision_is_an_error(vfs: VFS) -> None:
    build(vfs, [b"a\n", b"b\n"], radix="b", compression="none")
    raw = bytearray(vfs.read("b.i"))
    # rev 1 lives after entry 0 and chunk 0; set its base to 7
    pos = ENTRY_SIZE + INDEX_ENTRY.unpack_from(raw, 0)[1]
    raw[pos + 16 : pos + 20] = struct.pack(">i", 7)
    vfs.atomic_write("b.i", bytes(raw))
    with pytest.raises(RepositoryError, match="invalid delta base 7"):
        Revlog(vfs, "b").revision(1)


def test_refuses_to_append_to_a_revlog_changed_on_disk(vfs: VFS) -> None:
    first = build(vfs, [b"a\n"], radix="shared")
    second = Revlog(vfs, "shared")
    first.addrevision(b"b\n", FakeTransaction(vfs), 1, first.node(0), nullid)
    with pytest.raises(RepositoryError, match=r"shared\.i: changed on disk"):
        second.addrevision(b"c\n", FakeTransaction(vfs), 1, second.node(0), nullid)
    assert Revlog(vfs, "shared").revision(1) == b"b\n"
    split = SplitRevlog(vfs, "s2")
    split.addrevision(b"x" * 100, FakeTransaction(vfs), 0, nullid, nullid)
    with vfs("s2.d", "ab") as fh:
        fh.write(b"junk")
    with pytest.raises(RepositoryError, match=r"s2\.d: changed on disk \(size 16, expected 12\)"):
        split.addrevision(b"y" * 100, FakeTransaction(vfs), 1, nullid, nullid)


def test_headrevs_and_columns_on_random_dags(vfs: VFS) -> None:
    import random

    rnd = random.Random(5)
    for t in range(30):
        rl = Revlog(vfs, f"dag{t}", compression="none")
        tr = FakeTransaction(vfs)
        for i in range(rnd.randint(1, 40)):
            p1 = i - 1 if rnd.random() < 0.6 else rnd.randint(-1, i - 1)
            p2 = -1 if rnd.random() < 0.7 else rnd.randint(-1, i - 1)
            rl.addrevision(b"%d\n" % i, tr, i, rl.node(p1), rl.node(p2))
        parents = {p for r in rl for p in rl.parentrevs(r)}
        assert rl.headrevs() == [r for r in rl if r not in parents]
        p1s, p2s = Revlog(vfs, f"dag{t}").parentrevs_array()
        assert [(a, b) for a, b in zip(p1s, p2s, strict=True)] == [rl.parentrevs(r) for r in rl]
        assert list(rl.column("base")) == [rl._entry(r)[3] for r in rl]
        # cached columns follow later appends
        rl.addrevision(b"tip\n", tr, len(rl), rl.node(0), nullid)
        assert list(rl.column("p1"))[-1] == 0 and len(rl.column("linkrev")) == len(rl)
        assert rl.headrevs()[-1] == len(rl) - 1
    assert Revlog(vfs, "empty").headrevs() == [nullrev]


@pytest.mark.parametrize("inline", [True, False])
def test_random_damage_raises_only_repository_errors(tmp_path: Path, inline: bool) -> None:
    """Flipped bytes or truncation anywhere: reading fails cleanly or still verifies."""
    import random

    vfs = VFS(tmp_path)
    cls = Revlog if inline else SplitRevlog
    rl = cls(vfs, "d", compression="zlib")
    tr = FakeTransaction(vfs)
    for i, t in enumerate(texts(6, size=600)):
        rl.addrevision(t, tr, i, rl.node(i - 1), nullid)
    files = {name: vfs.read(name) for name in ("d.i", "d.d") if vfs.exists(name)}
    rnd = random.Random(11)
    detected = 0
    for trial in range(300):
        name = rnd.choice(sorted(files))
        data = bytearray(files[name])
        if trial % 3 == 0:
            del data[rnd.randrange(len(data)) :]
        else:
            for _ in range(rnd.randint(1, 3)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        for other, content in files.items():
            vfs.atomic_write(other, bytes(data) if other == name else content)
        try:
            damaged = Revlog(vfs, "d")
            for r in damaged:
                damaged.revision(r)
                damaged.parentrevs(r)
            damaged.headrevs()
        except RepositoryError as exc:
            assert "d." in str(exc)  # names the damaged file
            detected += 1
    assert detected > 150


def test_missing_data_file(vfs: VFS) -> None:
    split_revlog(vfs)
    vfs.unlink("s.d")
    again = Revlog(vfs, "s")
    with pytest.raises(RepositoryError, match=r"s\.d: cannot (open|read)"):
        again.revision(0)
    with pytest.raises(RepositoryError, match=r"s\.d: cannot (open|read)"):
        again.revision(2)


def test_addgroup_splits_a_new_revlog_midway(vfs: VFS) -> None:
    """Append handles kept open by addgroup survive the inline -> split conversion."""
    blobs = [os.urandom(30000) + b"\n" + b"line %d\n" % i for i in range(8)]
    group = []
    prev = nullid
    for blob in blobs:
        node = hashrevision(blob, prev, nullid)
        delta = mdiff.trivialdiffheader(len(blob)) + blob
        group.append(RevisionDelta(node, prev, nullid, b"L", nullid, delta))
        prev = node
    rl = Revlog(vfs, "data/grp", compression="none")
    tr = FakeTransaction(vfs)
    assert rl.addgroup(group, lambda _n: 0, tr) == list(range(8))
    assert not rl.inline and rl._handles is None
    again = Revlog(vfs, "data/grp")
    assert not again.inline
    assert [again.revision(r) for r in again] == blobs
    assert vfs.size("data/grp.d") == again.end(7)
    tr.rollback()
    assert not vfs.exists("data/grp.i") and not vfs.exists("data/grp.d")


def _write_dag_index(vfs: VFS, parents: list[tuple[int, int]]) -> None:
    """A non-inline index of empty full texts with the given parent revs."""
    buf = bytearray()
    for rev, (p1, p2) in enumerate(parents):
        node = hashlib.sha1(b"%d" % rev).digest()
        buf += INDEX_ENTRY.pack(0, 0, 0, rev, rev, p1, p2, node)
    if buf:
        buf[0:4] = (0x00020001).to_bytes(4, "big")
    vfs.atomic_write("dag.i", bytes(buf))


@pytest.mark.parametrize("seed", range(6))
def test_headrevs_matches_a_naive_count_fresh_and_with_columns(vfs: VFS, seed: int) -> None:
    rnd = random.Random(seed)
    n = rnd.choice([1, 2, 300, 70000])
    parents = []
    for rev in range(n):
        p1 = rev - 1 if rnd.random() < 0.9 else rnd.randrange(-1, rev)
        p2 = rnd.randrange(-1, rev) if rnd.random() < 0.05 else -1
        parents.append((p1, p2))
    haschild = {p for pair in parents for p in pair}
    expected = [r for r in range(n) if r not in haschild]
    _write_dag_index(vfs, parents)
    assert Revlog(vfs, "dag").headrevs() == expected  # raw big-endian columns
    rl = Revlog(vfs, "dag")
    rl.parentrevs_array()
    assert rl.headrevs() == expected  # converted columns


@pytest.mark.parametrize(("bad", "field"), [((5, -1), 24), ((-3, -1), 24), ((1, 9), 28)])
def test_headrevs_rejects_out_of_range_parents(vfs: VFS, bad: tuple[int, int], field: int) -> None:
    parents = [(-1, -1), (0, -1), (1, -1), bad]
    _write_dag_index(vfs, parents)
    with pytest.raises(
        RepositoryError, match=f"revision 3 has invalid parent .* offset {192 + field}"
    ):
        Revlog(vfs, "dag").headrevs()
