"""Binary deltas: application (C mpatch rules), folding chains, computing line deltas."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hgwire.errors import RepositoryError
from hgwire.repo import mdiff


def naive_patch(base: bytes, delta: bytes) -> bytes:
    """Reference application, straight from the format description (spec §2.5)."""
    out, last, pos = [], 0, 0
    while pos < len(delta):
        s, e, n = struct.unpack(">lll", delta[pos : pos + 12])
        pos += 12
        out += [base[last:s], delta[pos : pos + n]]
        pos += n
        last = e
    out.append(base[last:])
    return b"".join(out)


@st.composite
def deltas_for(draw: st.DrawFn, base: bytes) -> bytes:
    """A random valid delta against ``base``."""
    cuts = sorted(draw(st.lists(st.integers(0, len(base)), max_size=8)))
    if len(cuts) % 2:
        cuts.pop()
    out = []
    for k in range(0, len(cuts), 2):
        data = draw(st.binary(max_size=20))
        out.append(struct.pack(">lll", cuts[k], cuts[k + 1], len(data)) + data)
    return b"".join(out)


@st.composite
def chains(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    base = draw(st.binary(max_size=200))
    text = base
    deltas = []
    for _ in range(draw(st.integers(0, 12))):
        d = draw(deltas_for(text))
        deltas.append(d)
        text = naive_patch(text, d)
    return base, deltas


def expected(base: bytes, deltas: list[bytes]) -> bytes:
    for d in deltas:
        base = naive_patch(base, d)
    return base


@settings(max_examples=300, deadline=None)
@given(chains())
def test_patches_equals_sequential_application(chain: tuple[bytes, list[bytes]]) -> None:
    base, deltas = chain
    assert mdiff.patches(base, deltas) == expected(base, deltas)


@settings(max_examples=200, deadline=None)
@given(chains())
def test_fold_path_equals_sequential_path(chain: tuple[bytes, list[bytes]]) -> None:
    # force the composing fold whatever the cost model says
    base, deltas = chain
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mdiff, "COPY_BYTES_PER_PIECE", 10**-9)
        assert mdiff.patches(base, deltas) == expected(base, deltas)


lines = st.lists(st.sampled_from([b"a\n", b"b\n", b"ccc\n", b"\n", b"d", b"x\ry\n", b"\0\n"]))


@settings(max_examples=300, deadline=None)
@given(lines, lines)
def test_textdiff_round_trip(a: list[bytes], b: list[bytes]) -> None:
    old, new = b"".join(a), b"".join(b)
    delta = mdiff.textdiff(old, new)
    assert mdiff.patch(old, delta) == new
    assert mdiff.patchedsize(len(old), delta) == len(new)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a\n", b"b\n", b"cc\n", b"\n", b"d\re\n"])), lines)
def test_textdiff_is_line_aligned_for_newline_terminated_texts(
    a: list[bytes], b: list[bytes]
) -> None:
    old = b"".join(a)
    new = b"".join(b) + b"end\n"
    assert mdiff.is_line_aligned(old, mdiff.textdiff(old, new))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_textdiff_binary_round_trip(a: bytes, b: bytes) -> None:
    assert mdiff.patch(a, mdiff.textdiff(a, b)) == b


def test_textdiff_identical_and_from_empty() -> None:
    assert mdiff.textdiff(b"same\n", b"same\n") == b""
    assert mdiff.textdiff(b"", b"new\n") == mdiff.trivialdiffheader(4) + b"new\n"
    assert mdiff.textdiff(b"a\nb\nc\n", b"a\nB\nc\n") == struct.pack(">lll", 2, 4, 2) + b"B\n"


def test_headers() -> None:
    assert mdiff.trivialdiffheader(5) == b"\0" * 8 + b"\0\0\0\x05"
    assert mdiff.replacediffheader(3, 5) == struct.pack(">lll", 0, 3, 5)
    assert mdiff.patch(b"abc", mdiff.replacediffheader(3, 2) + b"xy") == b"xy"


def test_empty_delta_means_same_text() -> None:
    assert mdiff.patch(b"abc", b"") == b"abc"
    assert mdiff.patches(b"abc", [b"", b""]) == b"abc"


@pytest.mark.parametrize(
    ("delta", "message"),
    [
        (struct.pack(">lll", 0, 1, 0)[:7], "truncated hunk header"),
        (struct.pack(">lll", 0, 1, 5) + b"ab", "hunk data truncated"),
        (struct.pack(">lll", 2, 1, 0), "invalid patch hunk"),
        (struct.pack(">lll", 0, 9, 0), "invalid patch hunk"),
        (struct.pack(">lll", 2, 3, 0) + struct.pack(">lll", 1, 2, 0), "invalid patch hunk"),
        (struct.pack(">lll", 0, 1, -1), "invalid patch hunk"),
        (struct.pack(">lll", -1, 1, 0), "invalid patch hunk"),
    ],
)
def test_bad_deltas_raise_repository_errors(delta: bytes, message: str) -> None:
    with pytest.raises(RepositoryError, match=message):
        mdiff.patch(b"abcd", delta)
    with pytest.raises(RepositoryError, match=message):
        mdiff.patches(b"abcd", [b"", delta])


def test_is_line_aligned() -> None:
    base = b"a\nbb\nc\n"
    assert mdiff.is_line_aligned(base, struct.pack(">lll", 2, 5, 3) + b"xx\n")
    assert not mdiff.is_line_aligned(base, struct.pack(">lll", 3, 5, 3) + b"xx\n")
    assert not mdiff.is_line_aligned(base, struct.pack(">lll", 2, 5, 2) + b"xx")
    assert not mdiff.is_line_aligned(base, b"\0\0")


def test_long_chain_folds_correctly() -> None:
    text = b"".join(b"line %d\n" % i for i in range(2000))
    base = text
    deltas = []
    for k in range(300):
        new = text.replace(b"line %d\n" % (k * 3), b"changed %d\n" % k)
        deltas.append(mdiff.textdiff(text, new))
        text = new
    assert mdiff.patches(base, deltas) == text
