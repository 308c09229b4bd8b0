"""Store path encoding (spec §5) and the fncache, checked against Mercurial's own encoder."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from hgwire.errors import RepositoryError
from hgwire.repo import store
from hgwire.repo.vfs import VFS

# (unencoded, encoded) pairs from spec §5.3 (dotencode).
SPEC_EXAMPLES = [
    (b"data/README.txt.i", b"data/_r_e_a_d_m_e.txt.i"),
    (b"data/foo.i/bar.i", b"data/foo.i.hg/bar.i"),
    (b"data/.hgtags.i", b"data/~2ehgtags.i"),
    (b"data/ space.i", b"data/~20space.i"),
    (b"data/aux.c.i", b"data/au~78.c.i"),
    (b"data/sub/com1.txt.i", b"data/sub/co~6d1.txt.i"),
    (b"data/lpt9/x.i", b"data/lp~749/x.i"),
    (b"data/lpt0.i", b"data/lpt0.i"),
    (b"data/trailing./file .i", b"data/trailing~2e/file .i"),
    (b"data/sub/Hello World..i", b"data/sub/_hello _world..i"),
    (b"data/a:b?c.i", b"data/a~3ab~3fc.i"),
    ("data/café.txt.i".encode(), b"data/caf~c3~a9.txt.i"),
    (b"data/under_score.i", b"data/under__score.i"),
    (b"data/tilde~x.i", b"data/tilde~7ex.i"),
    (b"data/x.hg/y.i", b"data/x.hg.hg/y.i"),
    (b"data/AUX.txt.i", b"data/_a_u_x.txt.i"),
    (b"data/" + b"a" * 113 + b".i", b"data/" + b"a" * 113 + b".i"),
    (
        b"data/" + b"a" * 114 + b".i",
        b"dh/" + b"a" * 75 + b"548b13ba3e029dd285b8d6d92e88862c44caa165.i",
    ),
    (
        b"data/" + b"A" * 70 + b".txt.i",
        b"dh/" + b"a" * 70 + b".txt.c9afe551693da36431a45a9486364099b4dd5ed9.i",
    ),
    (
        b"data/" + b"A" * 70 + b".txt.d",
        b"dh/" + b"a" * 70 + b".txt.47c72e20408e10f6f234b28471d4188bfa73500c.d",
    ),
    (
        b"data/" + b"".join(b"DirectoryNumber%02d/" % i for i in range(10)) + b"SomeFile.txt.i",
        b"dh/" + b"director/" * 7 + b"somefile.txtc343b6649beedffb721a7111bc5e793c179ae891.i",
    ),
    (
        b"data/foo.i/" + b"b" * 120 + b".i",
        b"dh/foo.i.hg/" + b"b" * 66 + b"82811cc98bbb09bbaf0ecb37108dd0e7916fe3b4.i",
    ),
]


@pytest.mark.parametrize(("path", "expected"), SPEC_EXAMPLES)
def test_spec_examples(path: bytes, expected: bytes) -> None:
    assert store.pathencode(path) == expected


def test_hashed_names_are_at_most_120_bytes() -> None:
    for n in range(100, 400, 7):
        enc = store.pathencode(b"data/" + b"Q" * n + b".txt.i")
        assert enc.startswith(b"dh/")
        assert len(enc) <= store.MAXSTOREPATHLEN


def test_without_dotencode_leading_dot_kept() -> None:
    assert store.hybridencode(b"data/.hgtags.i", False) == b"data/.hgtags.i"
    assert store.hybridencode(b"data/ space.i", False) == b"data/ space.i"


def test_remembered_names_keep_the_dotencode_flags_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "_ENCODED", ({}, {}))
    monkeypatch.setattr(store, "_ENCODED_MAX", 3)
    for _ in range(2):  # computed, then remembered
        assert store.hybridencode(b"data/.hgtags.i", True) == b"data/~2ehgtags.i"
        assert store.hybridencode(b"data/.hgtags.i", False) == b"data/.hgtags.i"
    for i in range(10):  # bounded
        assert store.pathencode(b"data/F%d.i" % i) == b"data/_f%d.i" % i
        assert len(store._ENCODED[True]) <= 3


def test_encodefilename_round_trip() -> None:
    rng = random.Random(7)
    for _ in range(500):
        path = b"data/" + _random_path(rng)
        assert store.decodefilename(store.encodefilename(path)) == path


def test_encodedir_round_trip() -> None:
    for p in (b"data/a.i/b.d/c.hg/x.i", b"data/.hg/.i/.d/y.d", b"plain"):
        assert store.decodedir(store.encodedir(p)) == p


_ALPHABET = (
    [bytes([c]) for c in range(1, 256) if c != 0x2F]
    + [b"aux", b"con", b"prn", b"nul", b"com1", b"lpt9", b"com0", b"AUX", b"Com1"]
    + [b".", b" ", b".hg", b".i", b".d", b"/", b"/", b"/", b"_", b"~", b"A", b"a", b"z"]
)


def _random_path(rng: random.Random) -> bytes:
    length = rng.choice([1, 3, 8, 20, 40, 80, 115, 116, 130, 200])
    parts = [rng.choice(_ALPHABET) for _ in range(length)]
    # working-tree paths have no empty components (Mercurial 6.0's pure-Python hashed
    # encoder even crashes on them)
    path = b"/".join(c for c in b"".join(parts).split(b"/") if c) or b"x"
    return path + rng.choice([b".i", b".d", b"/00manifest.i"])


HG_ENCODER = r"""
import sys, binascii
from mercurial import store
out = []
for line in sys.stdin.buffer.read().split(b"\n"):
    if not line:
        continue
    p = binascii.unhexlify(line)
    out.append(b"%s %s %s" % (
        binascii.hexlify(store._pathencode(p)),
        binascii.hexlify(store._hybridencode(p, False)),
        binascii.hexlify(store.encodefilename(p)),
    ))
sys.stdout.buffer.write(b"\n".join(out))
"""


@pytest.mark.interop
@pytest.mark.parametrize("version", ["6.0", "7.2.4"])
def test_encoder_matches_mercurial(version: str, hg60_path: Path, hg72_path: Path) -> None:
    """Thousands of random paths encode exactly as Mercurial's (C) encoder does."""
    hg = hg60_path if version == "6.0" else hg72_path
    python = hg.parent / "python"
    rng = random.Random(20261121 + len(version))
    paths = [rng.choice([b"data/", b"meta/"]) + _random_path(rng) for _ in range(4000)]
    proc = subprocess.run(
        [str(python), "-c", HG_ENCODER],
        input=b"\n".join(p.hex().encode() for p in paths),
        capture_output=True,
        check=True,
    )
    lines = proc.stdout.split(b"\n")
    assert len(lines) == len(paths)
    mismatches = []
    hashed = 0
    for path, line in zip(paths, lines, strict=True):
        dot, nodot, plain = (bytes.fromhex(x.decode()) for x in line.split(b" "))
        ours = (
            store.hybridencode(path, True),
            store.hybridencode(path, False),
            store.encodefilename(path),
        )
        if ours != (dot, nodot, plain):
            mismatches.append((path, ours, (dot, nodot, plain)))
        hashed += dot.startswith(b"dh/")
    assert mismatches == []
    assert hashed > 200  # the sample really exercises the hashed encoding


def test_fncache_parse_and_append(tmp_path: Path) -> None:
    vfs = VFS(tmp_path)
    vfs.atomic_write("fncache", b"data/a.i\ndata/foo.i.hg/bar.i\n")
    fnc = store.FnCache(vfs)
    assert b"data/foo.i/bar.i" in fnc
    assert list(fnc) == [b"data/a.i", b"data/foo.i/bar.i"]
    fnc.add(b"data/a.i")
    fnc.add(b"data/x.d/y.d")
    assert fnc.pending == [b"data/x.d/y.d"]

    backups: list[str] = []

    class FakeTr:
        def addbackup(self, path: str) -> None:
            backups.append(path)

    fnc.write(FakeTr())  # type: ignore[arg-type]
    assert backups == ["fncache"]
    assert vfs.read("fncache") == b"data/a.i\ndata/foo.i.hg/bar.i\ndata/x.d.hg/y.d\n"


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"data/a.i\ndata/b", "offset 9"), (b"data/a.i\n\ndata/b.i\n", "offset 9")],
)
def test_fncache_corrupt(tmp_path: Path, content: bytes, needle: str) -> None:
    vfs = VFS(tmp_path)
    vfs.atomic_write("fncache", content)
    with pytest.raises(RepositoryError, match="fncache") as exc:
        list(store.FnCache(vfs))
    assert needle in str(exc.value)


def test_store_vfs_encodes_and_registers(tmp_path: Path) -> None:
    svfs = store.StoreVFS(tmp_path)
    with svfs("data/Foo/BAR.txt.i", "ab") as fh:
        fh.write(b"x")
    assert (tmp_path / "data" / "_foo" / "_b_a_r.txt.i").read_bytes() == b"x"
    assert svfs.read(b"data/Foo/BAR.txt.i") == b"x"
    assert svfs.exists("data/Foo/BAR.txt.i")
    assert svfs.size("data/Foo/BAR.txt.i") == 1
    with svfs("00changelog.i", "ab") as fh:
        fh.write(b"y")
    assert svfs.fncache is not None
    assert svfs.fncache.pending == [b"data/Foo/BAR.txt.i"]
    names = [n for n, _, _ in svfs.revlog_files()]
    assert names == [b"data/Foo/BAR.txt.i", b"00changelog.i"]
