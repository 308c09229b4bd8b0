"""Changelog entries (spec §4.1): parsing, building, extras, branch info."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hgwire.errors import RepositoryError
from hgwire.repo.changelog import (
    Changelog,
    build_changeset,
    decodeextra,
    encodeextra,
    parse_changeset,
    stripdesc,
)
from hgwire.repo.revlog import nullid
from hgwire.repo.vfs import VFS
from tests.repo.test_revlog import FakeTransaction

MANIFEST = bytes.fromhex("12a740b79149c7c4c9d8d90d0dc06746e2bdcf80")


def test_spec_example_text_and_node(tmp_path: Path) -> None:
    text = build_changeset(
        MANIFEST, [b"a.txt"], b"first", b"Alice <a@example.com>", (1700000000, 0), None
    )
    assert text == (
        b"12a740b79149c7c4c9d8d90d0dc06746e2bdcf80\nAlice <a@example.com>\n"
        b"1700000000 0\na.txt\n\nfirst"
    )
    cl = Changelog(VFS(tmp_path))
    tr = FakeTransaction(VFS(tmp_path))
    node = cl.add(
        MANIFEST,
        [b"a.txt"],
        b"first",
        tr,
        nullid,
        nullid,
        b"Alice <a@example.com>",
        (1700000000, 0),
    )
    assert node.hex() == "1b96017e86d15f140abb9ca5eedf4765c8529822"
    assert not cl.inline and not cl.generaldelta  # like 7.2's new changelogs
    assert cl.linkrev(0) == 0


def test_parse_round_trip_with_extras() -> None:
    extra = {b"branch": b"feature", b"close": b"1", b"weird": b"a\\b\nc\0d\re"}
    text = build_changeset(
        MANIFEST, [b"b", b"a", b"b"], b"  desc  \n\nline2   \n\n", b" u ", (1.0, -3600), extra
    )
    entry = parse_changeset(text)
    assert entry.manifest == MANIFEST
    assert entry.user == b"u"
    assert entry.date == (1.0, -3600)
    assert entry.files == [b"a", b"b"]
    assert entry.description == b"  desc\n\nline2"
    assert entry.extra == extra
    assert entry.branch == b"feature" and entry.closed


def test_default_branch_is_omitted() -> None:
    text = build_changeset(MANIFEST, [], b"d", b"u", (0, 0), {b"branch": b"default"})
    assert text == MANIFEST.hex().encode() + b"\nu\n0 0\n\nd"
    entry = parse_changeset(text)
    assert entry.extra == {} and entry.branch == b"default" and not entry.closed


@pytest.mark.parametrize("branch", [b".", b"null", b"tip"])
def test_reserved_branch_names(branch: bytes) -> None:
    with pytest.raises(RepositoryError, match="reserved"):
        build_changeset(MANIFEST, [], b"", b"u", (0, 0), {b"branch": branch})


def test_bad_users_and_files() -> None:
    with pytest.raises(RepositoryError, match="empty username"):
        build_changeset(MANIFEST, [], b"", b"  ", (0, 0), None)
    with pytest.raises(RepositoryError, match="newline"):
        build_changeset(MANIFEST, [], b"", b"a\nb", (0, 0), None)
    with pytest.raises(RepositoryError, match="newline"):
        build_changeset(MANIFEST, [b"a\rb"], b"", b"u", (0, 0), None)


def test_parse_errors() -> None:
    with pytest.raises(RepositoryError, match="no description separator"):
        parse_changeset(b"abc\nu\n0 0")
    with pytest.raises(RepositoryError, match="bad manifest node"):
        parse_changeset(b"zz\nu\n0 0\n\nd")
    with pytest.raises(RepositoryError, match="bad date"):
        parse_changeset(MANIFEST.hex().encode() + b"\nu\nnow 0\n\nd")
    # a non-integer timezone reads as 0, like Mercurial
    assert parse_changeset(MANIFEST.hex().encode() + b"\nu\n5 x\n\nd").date == (5.0, 0)
    assert parse_changeset(b"").manifest == nullid


def test_description_with_blank_lines_and_no_files() -> None:
    text = build_changeset(MANIFEST, [], b"a\n\n\nb", b"u", (0, 0), None)
    assert parse_changeset(text).description == b"a\n\n\nb"
    assert parse_changeset(text).files == []


def test_stripdesc() -> None:
    assert stripdesc(b"\n\n  x  \t\ny \n\n") == b"  x\ny"


@given(
    st.dictionaries(
        st.binary(min_size=1).filter(lambda k: b":" not in k and b"\0" not in k), st.binary()
    )
)
def test_extra_escaping_round_trip(extra: dict[bytes, bytes]) -> None:
    assert decodeextra(encodeextra(extra)) == extra


def test_extra_escaping_of_backslash_zero() -> None:
    assert encodeextra({b"k": b"\\0"}) == b"k:\\\\0"
    assert decodeextra(b"k:\\\\0") == {b"k": b"\\0"}
    assert decodeextra(b"k:a\\0b") == {b"k": b"a\0b"}


def test_branchinfo_matches_full_parse(tmp_path: Path) -> None:
    vfs = VFS(tmp_path)
    cl = Changelog(vfs)
    tr = FakeTransaction(vfs)
    extras: list[dict[bytes, bytes] | None] = [
        None,
        {b"branch": b"stable"},
        {b"branch": b"x", b"close": b"1"},
        {b"amend_source": b"abc", b"branch": b"with\\backslash"},
        {b"close": b"1"},
    ]
    p1 = nullid
    for i, extra in enumerate(extras):
        p1 = cl.add(MANIFEST, [b"f"], b"d%d" % i, tr, p1, nullid, b"u", (i, 0), extra)
    for r in cl:
        entry = cl.read(r)
        assert cl.branchinfo(r) == (entry.branch, entry.closed)
    assert cl.branchinfo(2) == (b"x", True)
    assert cl.branchinfo(3) == (b"with\\backslash", False)


@given(st.binary(max_size=300))
def test_garbage_parses_or_raises_repository_error(data: bytes) -> None:
    for text in (data, MANIFEST.hex().encode() + b"\n" + data):
        try:
            entry = parse_changeset(text)
        except RepositoryError as exc:
            assert str(exc)
            continue
        assert len(entry.manifest) == 20
        assert entry.description == (text.split(b"\n\n", 1)[1] if text else b"")
