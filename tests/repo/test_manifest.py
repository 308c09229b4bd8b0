"""Flat manifests (spec §4.2) and their line-aligned deltas (§3.3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hgwire.errors import RepositoryError
from hgwire.repo import mdiff
from hgwire.repo.manifest import Manifest, ManifestRevlog, manifestdiff
from hgwire.repo.revlog import nullid
from hgwire.repo.vfs import VFS
from tests.repo.test_revlog import FakeTransaction

NODE = bytes.fromhex("2c186c8c5bc0df5af5b951afe407d803f9e6b8c9")


def test_spec_example(tmp_path: Path) -> None:
    m = Manifest()
    m[b"a.txt"] = (NODE, b"")
    assert m.text() == b"a.txt\x002c186c8c5bc0df5af5b951afe407d803f9e6b8c9\n"
    ml = ManifestRevlog(VFS(tmp_path))
    node = ml.add(m, FakeTransaction(VFS(tmp_path)), 0, nullid, nullid)
    assert node.hex() == "12a740b79149c7c4c9d8d90d0dc06746e2bdcf80"
    assert ml.read(node) == m


def test_sorted_flags_and_round_trip() -> None:
    m = Manifest()
    for path, flags in ((b"z", b"x"), (b"a/b", b"l"), (b"a", b""), (b"a-b", b"")):
        m[path] = (NODE, flags)
    assert list(m) == [b"a", b"a-b", b"a/b", b"z"]
    parsed = Manifest.parse(m.text())
    assert parsed == m and parsed.flags(b"z") == b"x"
    del m[b"a-b"]
    assert b"a-b" not in m and len(m) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"a\x00" + b"0" * 40, "did not end in a newline"),
        (b"a" + b"0" * 40 + b"\n", "invalid manifest line at offset 0"),
        (b"a\x00" + b"0" * 39 + b"\n", "invalid manifest line"),
        (b"a\x00" + b"g" * 40 + b"\n", "invalid manifest line"),
        (b"a\x00" + b"0" * 40 + b"q\n", "invalid manifest line"),
        (b"b\x00" + b"0" * 40 + b"\na\x00" + b"0" * 40 + b"\n", "not sorted at offset 43"),
        (b"a\x00" + b"0" * 40 + b"\na\x00" + b"0" * 40 + b"\n", "not sorted"),
    ],
)
def test_parse_rejects_bad_manifests(text: bytes, message: str) -> None:
    with pytest.raises(RepositoryError, match=message):
        Manifest.parse(text)


def test_bad_entries_rejected() -> None:
    m = Manifest()
    with pytest.raises(ValueError):
        m[b"a\nb"] = (NODE, b"")
    with pytest.raises(ValueError):
        m[b"a"] = (NODE, b"q")


paths = st.lists(st.sampled_from([b"a", b"b/c", b"b/d", b"e.txt", b"f", b"g/h/i"]), unique=True)


def manifest_of(items: list[bytes], salt: int) -> Manifest:
    m = Manifest()
    for i, p in enumerate(items):
        m[p] = (bytes([salt + i % 2]) * 20, b"x" if (salt + i) % 3 == 0 else b"")
    return m


@given(paths, paths, st.integers(0, 5))
def test_manifestdiff_is_line_aligned_and_correct(
    a: list[bytes], b: list[bytes], salt: int
) -> None:
    old = manifest_of(a, 0).text()
    new = manifest_of(b, salt).text()
    delta = manifestdiff(old, new)
    assert mdiff.patch(old, delta) == new
    assert mdiff.is_line_aligned(old, delta)


def test_revlog_stores_line_aligned_deltas(tmp_path: Path) -> None:
    vfs = VFS(tmp_path)
    ml = ManifestRevlog(vfs)
    tr = FakeTransaction(vfs)
    m = Manifest({b"f%04d" % i: (NODE, b"") for i in range(500)})
    p1 = nullid
    for i in range(20):
        m[b"f%04d" % (i * 17)] = (bytes([i + 1]) * 20, b"")
        if i % 4 == 0:
            del m[b"f%04d" % (i * 13 + 1)]
        p1 = ml.add(m, tr, i, p1, nullid)
    again = ManifestRevlog(vfs)
    assert again.read(p1) == m
    deltas = 0
    for r in again:
        base, delta = again.storeddelta(r)
        if base != -1:
            deltas += 1
            assert mdiff.is_line_aligned(again.rawdata(base), delta)
    assert deltas == 19


@given(st.binary(max_size=300))
def test_garbage_parses_or_raises_repository_error(data: bytes) -> None:
    for text in (data, b"a\x00" + b"0" * 40 + b"\n" + data):
        try:
            m = Manifest.parse(text)
        except RepositoryError as exc:
            assert "manifest" in str(exc)
            continue
        assert m.text() == text  # whatever parses is canonical
