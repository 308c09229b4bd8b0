"""CBOR as Mercurial uses it (spec §4): an exact encoder and a sans-IO incremental decoder.

Mercurial's CBOR is a small subset: integers, byte strings, arrays, maps, sets (tag 258),
``true``/``false``/``null`` and, at the top level only, indefinite length byte strings.
The encoder reproduces Mercurial's bytes exactly (§4.1: shortest lengths, map keys and
set members sorted by ``(type name, value)``). The decoder accepts exactly what
Mercurial 6.0 accepts (§4.2) and raises :class:`~hgwire.errors.CBORDecodeError` with
Mercurial's messages for what it rejects, plus limits Mercurial lacks (``max_length``,
``max_depth``, ``max_buffer``).

Decoding has two engines that always agree:

* a fast path: a regex (run by ``re`` in C) confirms that every item in the buffer starts
  with an initial byte Mercurial accepts (so no tag but 258 reaches cbor2), then
  ``cbor2``'s C decoder, set up to refuse indefinite lengths and collections as keys or
  set members, decodes the
  complete top-level values (and the items of a big open array) straight from the
  buffer, many small values per call where it can (see ``Decoder._batch``);
* an exact pure-Python engine, resumable item by item, which mirrors Mercurial's state
  machine. It takes over whenever the fast path cannot prove a value acceptable (errors,
  top-level indefinite byte strings) and for a value still incomplete at the end of the
  input, so each byte is parsed a bounded number of times: total cost stays linear in
  the input whatever the chunk boundaries.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, cast

import cbor2

from hgwire.errors import CBORDecodeError, CBOREncodeError

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_LENGTH",
    "BytestringChunk",
    "Decoder",
    "IndefiniteBytes",
    "PieceAppender",
    "append_pieces",
    "dumps",
    "indefinite_from_buffer",
    "iter_encode",
    "iter_indefinite_pieces",
    "iter_pieces",
    "loads",
    "loads_all",
]

#: Largest declared byte string length or collection item count accepted (hg: none).
DEFAULT_MAX_LENGTH: Final = 1 << 30
#: Deepest nesting of arrays/maps/sets accepted; a top-level array is depth 1 (hg: none).
DEFAULT_MAX_DEPTH: Final = 64
#: Largest encoded size of one top-level value (one chunk for an indefinite byte string).
DEFAULT_MAX_BUFFER: Final = (1 << 30) + 64
#: Hard ceiling for ``max_depth``: deeper values would strain recursive code everywhere
#: (cbor2's C decoder, ``repr``, ``==``, callers walking the result).
MAX_DEPTH_CEILING: Final = 256

#: Byte strings at least this long are emitted by :func:`iter_encode` as their own piece.
LARGE_BYTES: Final = 16384

_TAG_SET_HEADER: Final = b"\xd9\x01\x02"  # tag 258, "mathematical finite set"


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class BytestringChunk:
    """One chunk of a top-level indefinite length byte string, as the decoder yields it.

    ``first`` marks the first chunk, ``last`` the closing break (always an empty chunk),
    matching Mercurial's ``bytestringchunk`` (§4.2). A string with no chunks decodes to
    one empty chunk that is both first and last.
    """

    data: bytes
    first: bool = False
    last: bool = False


class IndefiniteBytes:
    """A value encoded as an indefinite length byte string: ``5f``, each chunk, ``ff``.

    Equivalent to Mercurial's ``streamencodebytestringfromiter`` (§4.1). The chunks are
    consumed lazily by :func:`iter_encode`, so a generator reading a file streams. Only
    valid as a top-level value: Mercurial's decoder rejects it anywhere else.
    """

    __slots__ = ("chunks",)

    def __init__(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self.chunks = chunks

    def __repr__(self) -> str:
        return f"IndefiniteBytes({self.chunks!r})"


def indefinite_from_buffer(
    data: bytes | bytearray | memoryview, chunk_size: int = 65536
) -> IndefiniteBytes:
    """Cut ``data`` into ``chunk_size`` pieces as one indefinite byte string.

    Mirrors ``streamencodeindefinitebytestring`` (same default chunk size): an empty
    buffer still gives one empty chunk (``5f 40 ff``). Chunks are zero-copy memoryview
    slices.
    """
    if chunk_size <= 0:
        raise CBOREncodeError(f"chunk size must be positive, not {chunk_size}")
    view = memoryview(_byteview(data))
    if not len(view):
        return IndefiniteBytes([b""])
    return IndefiniteBytes([view[i : i + chunk_size] for i in range(0, len(view), chunk_size)])


# --------------------------------------------------------------------------- encoder


def _make_head_table(major: int) -> list[bytes]:
    return [_head(major, n) for n in range(256)]


_PACK_16: Final = struct.Struct(">BH").pack
_PACK_32: Final = struct.Struct(">BI").pack
_PACK_64: Final = struct.Struct(">BQ").pack


def _head(major: int, n: int) -> bytes:
    """Initial byte plus shortest big-endian argument for ``n`` (spec §4.1)."""
    mt = major << 5
    if n < 0x100:
        return bytes((mt | n,)) if n < 24 else bytes((mt | 24, n))
    if n < 0x10000:
        return _PACK_16(mt | 25, n)
    if n < 0x100000000:
        return _PACK_32(mt | 26, n)
    if n < 0x10000000000000000:
        return _PACK_64(mt | 27, n)
    raise CBOREncodeError("big integers not supported")


_UINT: Final = _make_head_table(0)
_NINT: Final = _make_head_table(1)
_BYTES_HEAD: Final = _make_head_table(2)
_ARRAY_HEAD: Final = _make_head_table(4)
_MAP_HEAD: Final = _make_head_table(5)
_BYTESLIKE: Final = (bytes, bytearray, memoryview)


def _sortkey(v: Any) -> tuple[str, Any]:
    """Mercurial's mixed-type order: type name first, then value (§4.1)."""
    return (type(v).__name__, v)


def _sorted_keys(keys: Any) -> list[Any]:
    """Keys (or set members) in Mercurial's order, cheaply when they share one type."""
    try:
        if len(set(map(type, keys))) <= 1:
            return sorted(keys)
        return sorted(keys, key=_sortkey)
    except TypeError as exc:
        raise CBOREncodeError(f"cannot order map keys or set members: {exc}") from None


#: Map key orders already worked out, by the keys in insertion order (only all-``bytes``
#: key sets: no other hashable type compares equal to ``bytes`` with another encoding).
_KEY_ORDERS: dict[tuple[Any, ...], list[Any]] = {}
_MAX_KEY_ORDERS: Final = 4096


def _map_keys(obj: dict[Any, Any]) -> list[Any]:
    """``obj``'s keys in Mercurial's order; remembered for maps shaped alike."""
    keys = tuple(obj)
    order = _KEY_ORDERS.get(keys)
    if order is None:
        order = _sorted_keys(keys)
        if all(type(k) is bytes for k in keys):
            if len(_KEY_ORDERS) >= _MAX_KEY_ORDERS:
                _KEY_ORDERS.clear()
            _KEY_ORDERS[keys] = order
    return order


#: ``append_pieces(obj, out)``: appends ``obj``'s encoding to ``out`` as pieces.
PieceAppender = Callable[[Any, list[Any]], None]


def make_piece_appender(*, frozensets: bool = False) -> PieceAppender:
    """The piece-level encoder: ``append(obj, out)`` adds ``obj``'s CBOR to ``out``.

    Pieces are those of Mercurial's ``streamencode``: every item head is its own piece and
    a byte string body (not copied) follows its head, so frames cut from them keep 6.0's
    boundaries (spec §3.3). ``frozensets`` also encodes frozensets as sets (the server's
    output objects); :func:`dumps` refuses them, like Mercurial's ``cborutil``.
    """
    set_types = (set, frozenset) if frozensets else (set,)

    def append_pieces(obj: Any, out: list[Any]) -> None:
        t = type(obj)
        if t is bytes:
            n = len(obj)
            if n < 256:
                out.append(_BYTES_HEAD[n])
            else:
                out.append(_PACK_16(0x59, n) if n < 0x10000 else _head(2, n))
            if n:
                out.append(obj)
        elif t is int:
            if 0 <= obj < 256:
                out.append(_UINT[obj])
            elif -256 <= obj < 0:
                out.append(_NINT[-1 - obj])
            elif obj >= 0:
                out.append(_head(0, obj))
            else:
                out.append(_head(1, -1 - obj))
        elif t is dict:
            append = out.append
            n = len(obj)
            append(_MAP_HEAD[n] if n < 256 else _head(5, n))
            for k in obj if n < 2 else _map_keys(obj):
                if type(k) is bytes and 0 < len(k) < 256:
                    append(_BYTES_HEAD[len(k)])
                    append(k)
                else:
                    append_pieces(k, out)
                v = obj[k]
                tv = type(v)
                if tv is bytes:
                    if 0 < len(v) < 256:
                        append(_BYTES_HEAD[len(v)])
                        append(v)
                        continue
                elif tv is int and 0 <= v < 0x10000:
                    append(_UINT[v] if v < 256 else _PACK_16(0x19, v))
                    continue
                append_pieces(v, out)
        elif t is list or t is tuple:
            append = out.append
            n = len(obj)
            append(_ARRAY_HEAD[n] if n < 256 else _head(4, n))
            for v in obj:
                tv = type(v)
                if tv is bytes:
                    if 0 < len(v) < 256:
                        append(_BYTES_HEAD[len(v)])
                        append(v)
                        continue
                elif tv is int and 0 <= v < 0x10000:
                    append(_UINT[v] if v < 256 else _PACK_16(0x19, v))
                    continue
                append_pieces(v, out)
        elif obj is None:
            out.append(b"\xf6")
        elif obj is True:
            out.append(b"\xf5")
        elif obj is False:
            out.append(b"\xf4")
        elif t in set_types:
            n = len(obj)
            out.append(_TAG_SET_HEADER)
            out.append(_ARRAY_HEAD[n] if n < 256 else _head(4, n))
            for v in _sorted_keys(obj):
                append_pieces(v, out)
        else:
            _append_other(obj, out, append_pieces, set_types)

    return append_pieces


def _append_other(
    obj: Any, out: list[Any], append_pieces: PieceAppender, set_types: tuple[type, ...]
) -> None:
    """Subclasses of supported types, other byte-likes, and what cannot be encoded."""
    if isinstance(obj, IndefiniteBytes):
        raise CBOREncodeError(
            "indefinite length byte strings can only be encoded as top-level values"
        )
    if isinstance(obj, bool):  # pragma: no cover - bool cannot be subclassed
        out.append(b"\xf5" if obj else b"\xf4")
    elif isinstance(obj, _BYTESLIKE):
        view = _byteview(obj)
        n = len(view)
        out.append(_head(2, n))
        if n:
            out.append(view)
    elif isinstance(obj, int):
        append_pieces(int(obj), out)
    elif isinstance(obj, list | tuple):
        append_pieces(list(obj), out)
    elif isinstance(obj, dict):
        append_pieces(dict(obj), out)
    elif isinstance(obj, set_types):
        append_pieces(set(cast(Iterable[Any], obj)), out)
    elif isinstance(obj, str):
        raise CBOREncodeError("cannot encode text strings (str); Mercurial CBOR has none")
    else:
        raise CBOREncodeError(f"cannot encode {type(obj).__name__} as Mercurial CBOR")


#: The piece encoder of :func:`dumps` and :func:`iter_encode` (no frozensets).
append_pieces: Final = make_piece_appender()


def _byteview(obj: bytes | bytearray | memoryview) -> bytes | memoryview:
    """``obj`` with ``len()`` in bytes (memoryviews are cast to unsigned bytes)."""
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, bytearray):
        return memoryview(obj)
    try:
        return obj.cast("B") if obj.format != "B" or obj.ndim != 1 else obj
    except TypeError as exc:
        raise CBOREncodeError(f"cannot encode this memoryview: {exc}") from None


def iter_indefinite_pieces(value: IndefiniteBytes) -> Iterator[bytes | memoryview]:
    """A top-level indefinite byte string as Mercurial streams it: ``5f``, each chunk's
    head and body (pulled lazily, not copied), ``ff``."""
    yield b"\x5f"
    for chunk in value.chunks:
        if not isinstance(chunk, _BYTESLIKE):
            raise CBOREncodeError(
                f"indefinite byte string chunk must be bytes, not {type(chunk).__name__}"
            )
        view = _byteview(chunk)
        n = len(view)
        yield _BYTES_HEAD[n] if n < 256 else _head(2, n)
        if n:
            yield view
    yield b"\xff"


def iter_pieces(obj: Any) -> Iterator[bytes | memoryview]:
    """``obj``'s encoding in Mercurial's ``streamencode`` pieces (see
    :func:`make_piece_appender`); top-level :class:`IndefiniteBytes` chunks are lazy."""
    if isinstance(obj, IndefiniteBytes):
        return iter_indefinite_pieces(obj)
    out: list[Any] = []
    append_pieces(obj, out)
    return iter(out)


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` to exactly the bytes Mercurial's encoder produces (spec §4.1)."""
    if isinstance(obj, IndefiniteBytes):
        return b"".join(iter_indefinite_pieces(obj))
    out: list[Any] = []
    append_pieces(obj, out)
    return b"".join(out)


def iter_encode(obj: Any) -> Iterator[bytes | memoryview]:
    """Encode ``obj`` as a stream of pieces whose concatenation is ``dumps(obj)``.

    Byte strings of ``LARGE_BYTES`` or more come out as their own piece (a memoryview on
    the caller's object, never a copy); everything between them is joined into one
    piece. The chunks of a top-level :class:`IndefiniteBytes` are pulled lazily.
    """
    if isinstance(obj, IndefiniteBytes):
        yield from iter_indefinite_pieces(obj)
        return
    out: list[Any] = []
    append_pieces(obj, out)
    if max(map(len, out)) < LARGE_BYTES:
        yield b"".join(out)
        return
    start = 0
    for i, piece in enumerate(out):
        if len(piece) >= LARGE_BYTES:  # only a byte string body is that long
            if i > start:
                yield b"".join(out[start:i])
            yield piece if type(piece) is memoryview else memoryview(piece)
            start = i + 1
    if start < len(out):
        yield b"".join(out[start:])


# --------------------------------------------------------------------------- decoder

# Item kinds; the numbers are Mercurial's SPECIAL_* values, which appear in its messages.
_K_VALUE: Final = 0
_K_INDEF: Final = 1
_K_ARRAY: Final = 2
_K_MAP: Final = 3
_K_SET: Final = 4
_K_BREAK: Final = 5

# Container states of the exact engine.
_S_ARRAY: Final = 0
_S_MAP_KEY: Final = 1
_S_MAP_VALUE: Final = 2
_S_SET: Final = 3

_ARG: Final = {
    24: struct.Struct(">B"),
    25: struct.Struct(">H"),
    26: struct.Struct(">I"),
    27: struct.Struct(">Q"),
}

#: cbor2 reads ahead this much per decode() and seeks back: small values decode about 20%
#: faster than with its default of 4096 (measured); large byte strings are unaffected.
_CBOR2_READ_SIZE: Final = 128

#: Values decoded one by one between two attempts at decoding a batch at once.
_STEP_VALUES: Final = 32
#: Typical encoded value size from which values are no longer decoded in batches.
_BATCH_VALUE_SIZE: Final = 64
#: Estimated values left in a region below which the rest is decoded one by one.
_BATCH_REGION: Final = 64
#: Smallest batch worth one attempt.
_MIN_BATCH: Final = 16

_NOT_CONSUMED: Final = "input data not fully consumed"
_NOT_COMPLETE: Final = "input data not complete"


def _items_pattern() -> re.Pattern[bytes]:
    """A regex matching a run of CBOR items whose initial bytes Mercurial accepts.

    Items: integers (any argument size), byte strings with lengths below 256 (whose
    payload the pattern skips), array and map headers of definite length, tag 258 in
    its shortest form, and
    ``false``/``true``/``null``. Text, floats, other simple values and tags, breaks,
    indefinite lengths and reserved additional information all stop the run. The
    quantifier is possessive: one pass, no backtracking state.
    """

    def cls(values: Iterable[int]) -> bytes:
        return b"[" + b"".join(re.escape(bytes((v,))) for v in values) + b"]"

    ints = (0x00, 0x20, 0x80, 0xA0)  # uint, negint, array, map: the argument only
    one = cls([*(m + i for m in ints for i in range(24)), 0x40, 0xF4, 0xF5, 0xF6])
    branches = [one]
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        branches.append(cls(m + info for m in ints) + b".{%d}" % size)
    # One-byte lengths: a literal per length, tried in order by sre's fast first-byte
    # check, so the shortest-form lengths (24..255) come first and this whole branch
    # before the 23 literals of the short byte strings.
    lengths = [*range(24, 256), *range(24)]
    branches.append(
        b"\\x58(?:" + b"|".join(re.escape(bytes((n,))) + b".{%d}" % n for n in lengths) + b")"
    )
    branches.extend(re.escape(bytes((0x40 + n,))) + b".{%d}" % n for n in range(1, 24))
    branches.append(re.escape(_TAG_SET_HEADER))
    return re.compile(b"(?:" + b"|".join(branches) + b")*+", re.DOTALL)


_ITEMS_MATCH: Final = _items_pattern().match
_LONG_BYTES: Final = {
    0x58: struct.Struct(">B"),
    0x59: struct.Struct(">H"),
    0x5A: struct.Struct(">I"),
    0x5B: struct.Struct(">Q"),
}


def _verified_end(buf: bytes, pos: int) -> int:
    """Offset of the first item at or after ``pos`` (an item boundary) that is not
    plainly acceptable or not complete in ``buf``; ``len(buf)`` if there is none.

    Only initial bytes are judged here (in C, by the regex); structure (counts, map
    keys, set members, depth) is cbor2's job. Byte strings of 256 bytes or more are
    skipped in Python, since a regex cannot take a long length from the data.
    """
    n = len(buf)
    while True:
        pos = _ITEMS_MATCH(buf, pos).end()  # type: ignore[union-attr]
        if pos >= n:
            return n
        st = _LONG_BYTES.get(buf[pos])
        if st is None or pos + 1 + st.size > n:
            return pos
        end = pos + 1 + st.size + st.unpack_from(buf, pos + 1)[0]
        if end > n:
            return pos
        pos = end


class _Incomplete(Exception):
    """Internal: the item at the current position needs ``need`` bytes from there."""

    def __init__(self, need: int) -> None:
        self.need = need


class Decoder:
    """Sans-IO incremental decoder for Mercurial's CBOR subset (spec §4.2).

    :meth:`feed` takes bytes in arbitrary pieces and returns every top-level value
    completed so far, as soon as it is complete. Top-level indefinite byte strings come
    out as :class:`BytestringChunk` objects chunk by chunk. Limits (absent in hg):
    ``max_length`` bounds declared byte string lengths and collection item counts,
    ``max_depth`` the nesting of collections, ``max_buffer`` the encoded size of one
    top-level value (of one chunk, for indefinite byte strings). A limit is enforced as
    soon as the offending header is seen, before any allocation for it.

    After a :class:`CBORDecodeError` the decoder is unusable; later calls raise again.
    """

    def __init__(
        self,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        if max_length < 0 or max_buffer < 1:
            raise ValueError("max_length must be >= 0 and max_buffer >= 1")
        if not 0 <= max_depth <= MAX_DEPTH_CEILING:
            raise ValueError(f"max_depth must be between 0 and {MAX_DEPTH_CEILING}")
        self.max_length = max_length
        self.max_depth = max_depth
        self.max_buffer = max_buffer
        self._fast = True  # tests switch this off to compare with the exact engine alone
        # Unconsumed input: the start of an item that is still incomplete.
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._need = 0  # bytes the pending item needs before it is worth parsing again
        # When the pending item is a top-level byte string: where its body starts.
        self._body_at = 0
        # Exact engine state: open containers, indefinite byte string, value size so far.
        self._stack: list[list[Any]] = []  # [state, container, remaining, map key]
        self._indef = 0  # 0: none; 1: want first chunk; 2: want later chunks
        self._vbytes = 0
        self._error: CBORDecodeError | None = None
        self._verified = 0  # in the current buffer, items up to here are plainly acceptable
        self._value_size = 0.0  # typical encoded size of a top-level value (for _batch)
        self._size_bytes = 0.0  # decayed sums behind _value_size
        self._size_values = 0.0
        self._margin = 0.8  # fraction of the expected number of values _batch asks for

    # ------------------------------------------------------------------ public API

    @property
    def in_progress(self) -> bool:
        """Whether part of a value has been received but not yet handed out."""
        return bool(self._pending_len or self._stack or self._indef)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """Add input; return the values (and indefinite byte string chunks) it completed."""
        if self._error is not None:
            raise CBORDecodeError(f"decoder already failed: {self._error}")
        if type(data) is not bytes:
            data = bytes(data)
        if not data:
            return []
        out: list[Any] = []
        if self._pending:
            pending = self._pending
            pending.append(data)
            total = self._pending_len + len(data)
            if total < self._need:
                self._pending_len = total
                return []
            self._pending = []
            self._pending_len = 0
            if self._body_at:
                # A top-level byte string is complete: its body is joined straight from
                # the pieces (one copy), and only what follows it is decoded further.
                last = pending[-1]
                cut = len(last) - (total - self._need)
                pending[0] = memoryview(pending[0])[self._body_at :]  # type: ignore[call-overload]
                pending[-1] = memoryview(last)[:cut]  # type: ignore[call-overload]
                out.append(b"".join(pending))
                self._body_at = 0
                self._need = 0
                if cut == len(last):
                    return out
                buf = last[cut:]
            else:
                buf = b"".join(pending)
        else:
            buf = data
        self._need = 0
        try:
            pos = self._run(buf, out)
        except CBORDecodeError as exc:
            self._error = exc
            raise
        if pos < len(buf):
            rest = buf[pos:]
            self._pending = [rest]
            self._pending_len = len(rest)
        return out

    def finish(self) -> None:
        """Declare the end of input; raise :class:`CBORDecodeError` if a value is partial.

        The messages are those of Mercurial's ``decodeall``: a partial item is
        "input data not fully consumed", an unfinished collection or indefinite byte
        string "input data not complete".
        """
        if self._error is not None:
            raise CBORDecodeError(f"decoder already failed: {self._error}")
        if self._pending_len:
            self._error = CBORDecodeError(_NOT_CONSUMED)
            raise self._error
        if self._stack or self._indef:
            self._error = CBORDecodeError(_NOT_COMPLETE)
            raise self._error

    # ------------------------------------------------------------------ engines

    def _run(self, buf: bytes, out: list[Any]) -> int:
        """Decode as much of ``buf`` as possible; return the first unconsumed offset."""
        n = len(buf)
        pos = 0
        self._verified = 0
        while pos < n:
            if self._fast and not self._stack and not self._indef:
                pos = self._bulk(buf, pos, -1, self.max_depth, out)
                if pos >= n:
                    break
            # The exact engine handles the value at ``pos`` (or its continuation).
            pos = self._run_exact(buf, pos, out)
            if self._need:
                st = _LONG_BYTES.get(buf[pos])
                if st is not None and self._fast and not self._stack and not self._indef:
                    head = 1 + st.size
                    if self._need > head:  # head complete: a top-level byte string's body
                        self._body_at = head
                return pos
        return pos

    def _bulk(self, buf: bytes, pos: int, count: int, max_depth: int, out: list[Any]) -> int:
        """Decode up to ``count`` (-1: any number) complete values from ``pos`` with cbor2.

        Used for top-level values and for the items of an open array. Only values lying
        wholly in a region whose items all have initial bytes Mercurial accepts (see
        :func:`_verified_end`; the verified end is kept per buffer, so each byte is
        verified once) are decoded, so cbor2 can only produce integers, byte strings,
        bools, ``None``, lists, dicts and sets. ``strict_hashable_types`` makes it refuse
        anything but byte (or text) strings as map keys and set members, which rules out
        collections there; its depth limit counts tag 258 as a level, so it is at least
        as strict as ours. Returns the start of the first value it could not vouch for:
        the exact engine decides that one (errors, int keys, indefinite byte strings,
        values cut short).
        """
        limit = self._verified
        if limit <= pos:
            limit = self._verified = _verified_end(buf, pos)
            if limit <= pos:
                return pos
        # A value no longer than max_length cannot declare a length beyond it; bigger
        # values (and those over max_buffer) are left to the exact engine to judge.
        max_size = min(self.max_buffer, self.max_length)
        if limit - pos > max_size:
            return self._one_by_one(buf, pos, limit, count, max_depth, out, -1, max_size)[0]
        while pos < limit and count:
            size = self._value_size
            if size < _BATCH_VALUE_SIZE and limit - pos >= _BATCH_REGION * size:
                # Many small values: most of them in one call.
                pos, count, batched = self._batch(buf, pos, limit, count, max_depth, out)
                if batched:
                    continue
                step = _STEP_VALUES
            else:
                # Big values (one call each costs nothing extra), or a tail of small ones
                # too short for the estimate of their number: one by one, to the end.
                step = -1
            pos, count, stopped = self._one_by_one(buf, pos, limit, count, max_depth, out, step, -1)
            if stopped:
                break
        return pos

    def _one_by_one(
        self,
        buf: bytes,
        pos: int,
        limit: int,
        count: int,
        max_depth: int,
        out: list[Any],
        max_values: int,
        max_size: int,
    ) -> tuple[int, int, bool]:
        """Decode values one cbor2 call each: up to ``max_values`` (-1: no limit), within
        ``limit``, none larger than ``max_size`` (-1: no check).

        Returns ``(pos, count, stopped)``; ``stopped`` means a value could not be vouched
        for (or the region ended), rather than ``max_values`` being reached.
        """
        fp = io.BytesIO(buf)
        fp.seek(pos)
        decode = cbor2.CBORDecoder(
            fp,
            allow_indefinite=False,
            strict_hashable_types=True,
            max_depth=max_depth,
            read_size=_CBOR2_READ_SIZE,
        ).decode
        tell = fp.tell
        append = out.append
        start = pos
        count_in = count
        before = len(out)
        todo = max_values
        stopped = True
        try:
            while pos < limit and count:
                if not todo:
                    stopped = False
                    break
                v = decode()
                end = tell()
                if end > limit or (max_size >= 0 and end - pos > max_size):
                    break
                append(v)
                pos = end
                count -= 1
                todo -= 1
        except Exception:  # whatever cbor2 rejects or cannot finish: exact engine decides
            pass
        done = len(out) - before
        if done and count_in < 0:
            self._learn(pos - start, done)
        return pos, count, stopped

    def _learn(self, size: int, values: int) -> None:
        """Track the typical encoded size of a top-level value (older samples fade)."""
        self._size_bytes = self._size_bytes * 0.5 + size
        self._size_values = self._size_values * 0.5 + values
        self._value_size = self._size_bytes / self._size_values

    def _batch(
        self, buf: bytes, pos: int, limit: int, count: int, max_depth: int, out: list[Any]
    ) -> tuple[int, int, bool]:
        """Decode many values of ``buf[pos:limit]`` in one cbor2 call, if it looks worth it.

        One ``decode()`` call per value costs more than the decoding itself for small
        values. So, knowing the typical encoded size of a value, guess how many complete
        values the region holds (with a safety margin), put a definite array header for
        that many in front and decode them at once: the array ends exactly after them,
        which also gives their end offset. A wrong guess (too many values, or anything
        cbor2 refuses) costs one wasted attempt: the caller goes value by value, which
        finds the exact place to stop. The margin shrinks after each miss.
        Returns ``(pos, count, decoded anything)``.
        """
        if not self._value_size:
            return pos, count, False
        guess = int((limit - pos) * self._margin / self._value_size)
        if 0 <= count < guess:
            guess = count
        if guess < _MIN_BATCH:
            return pos, count, False
        header = _head(4, guess)
        fp = io.BytesIO(header + buf[pos:limit])
        try:
            values = cbor2.CBORDecoder(
                fp,
                allow_indefinite=False,
                strict_hashable_types=True,
                max_depth=max_depth + 1,  # one more level for the wrapping array
                read_size=_CBOR2_READ_SIZE,
            ).decode()
        except Exception:  # too many values guessed, or something for the slow path
            self._margin = max(0.05, self._margin * 0.6)
            return pos, count, False
        self._margin = min(0.9, self._margin + 0.05)
        out.extend(values)
        used = fp.tell() - len(header)
        if count < 0:
            self._learn(used, guess)
        return pos + used, (count - guess if count > 0 else count), True

    def _run_exact(self, buf: bytes, pos: int, out: list[Any]) -> int:
        """Mercurial's decoder state machine, from ``pos`` until one top-level value ends.

        Returns the offset reached. If it stopped inside an item that is cut short, sets
        ``_need`` to the bytes that item needs (items before it stay consumed: containers
        keep their partial contents). Raises :class:`CBORDecodeError` with Mercurial's
        messages.
        """
        stack = self._stack
        n = len(buf)
        no_bulk_at = -1
        while pos < n:
            if stack and self._fast and pos != no_bulk_at and stack[-1][0] == _S_ARRAY:
                # Items of an open array are values like top-level ones: let cbor2 take
                # as many as it can vouch for (a big array spanning many feeds).
                top = stack[-1]
                items: list[Any] = []
                end = self._bulk(buf, pos, top[2], self.max_depth - len(stack), items)
                if items:
                    self._vbytes += end - pos
                    if self._vbytes > self.max_buffer:
                        raise CBORDecodeError(
                            f"value larger than the buffer limit of {self.max_buffer} bytes"
                        )
                    top[1].extend(items)
                    top[2] -= len(items)
                    pos = end
                    if self._close(out):
                        return pos
                    continue
                no_bulk_at = pos
            try:
                kind, value, end = self._item(buf, pos)
            except _Incomplete as inc:
                self._need = inc.need
                return pos
            self._vbytes += end - pos
            if self._vbytes > self.max_buffer:
                raise CBORDecodeError(
                    f"value larger than the buffer limit of {self.max_buffer} bytes"
                )
            pos = end
            if self._indef:
                if kind == _K_VALUE:
                    if type(value) is not bytes:
                        raise CBORDecodeError(
                            "indefinite length bytestring chunks must be definite bytestrings"
                        )
                    out.append(BytestringChunk(value, first=self._indef == 1))
                    self._indef = 2
                    self._vbytes = 0
                    continue
                if kind == _K_BREAK:
                    out.append(BytestringChunk(b"", first=self._indef == 1, last=True))
                    self._indef = 0
                    self._vbytes = 0
                    return pos
                raise CBORDecodeError(
                    f"unexpected special value when expecting bytestring chunk: {kind}"
                )
            if not stack:
                if kind == _K_VALUE:
                    out.append(value)
                    self._vbytes = 0
                    return pos
                if kind == _K_INDEF:
                    self._indef = 1
                    self._vbytes = 0
                    continue
                if kind == _K_BREAK:
                    raise CBORDecodeError(f"unhandled special state: {kind}")
                self._push(kind, value)
            else:
                top = stack[-1]
                state = top[0]
                if state == _S_ARRAY:
                    if kind == _K_VALUE:
                        top[1].append(value)
                        top[2] -= 1
                    elif kind == _K_INDEF:
                        raise CBORDecodeError(
                            "indefinite length bytestrings not allowed as array values"
                        )
                    elif kind == _K_BREAK:
                        raise CBORDecodeError(
                            f"unhandled special item when expecting array value: {kind}"
                        )
                    else:
                        child = self._push(kind, value)
                        top[1].append(child)
                        top[2] -= 1
                elif state == _S_MAP_KEY:
                    if kind == _K_VALUE:
                        top[3] = value
                        top[0] = _S_MAP_VALUE
                    elif kind == _K_INDEF:
                        raise CBORDecodeError(
                            "indefinite length bytestrings not allowed as map keys"
                        )
                    elif kind == _K_BREAK:
                        raise CBORDecodeError(
                            f"unhandled special item when expecting map key: {kind}"
                        )
                    else:
                        raise CBORDecodeError("collections not supported as map keys")
                elif state == _S_MAP_VALUE:
                    if kind == _K_VALUE:
                        top[1][top[3]] = value
                    elif kind == _K_INDEF:
                        raise CBORDecodeError(
                            "indefinite length bytestrings not allowed as map values"
                        )
                    elif kind == _K_BREAK:
                        raise CBORDecodeError(
                            f"unhandled special item when expecting map value: {kind}"
                        )
                    else:
                        top[1][top[3]] = self._push(kind, value)
                    top[0] = _S_MAP_KEY
                    top[3] = None
                    top[2] -= 1
                else:  # _S_SET
                    if kind == _K_VALUE:
                        top[1].add(value)
                        top[2] -= 1
                    elif kind == _K_INDEF:
                        raise CBORDecodeError(
                            "indefinite length bytestrings not allowed as set values"
                        )
                    elif kind == _K_BREAK:
                        raise CBORDecodeError(
                            f"unhandled special item when expecting set value: {kind}"
                        )
                    else:
                        raise CBORDecodeError("collections not allowed as set values")
            if self._close(out):
                return pos
        return pos

    def _close(self, out: list[Any]) -> bool:
        """Close every container that has all its items; True if a top-level one ended."""
        stack = self._stack
        while stack:
            top = stack[-1]
            if top[2] or top[0] == _S_MAP_VALUE:
                return False
            stack.pop()
            if not stack:
                out.append(top[1])
                self._vbytes = 0
                return True
        return False

    def _push(self, kind: int, count: int) -> Any:
        """Open a collection of ``count`` items; return the (still empty) container."""
        if len(self._stack) >= self.max_depth:
            raise CBORDecodeError(f"nesting deeper than the limit of {self.max_depth} levels")
        container: Any
        if kind == _K_ARRAY:
            container = []
            state = _S_ARRAY
        elif kind == _K_MAP:
            container = {}
            state = _S_MAP_KEY
        else:
            container = set()
            state = _S_SET
        self._stack.append([state, container, count, None])
        return container

    def _item(self, buf: bytes, pos: int) -> tuple[int, Any, int]:
        """Parse one item at ``pos``: ``(kind, value or item count, end offset)``.

        Follows Mercurial's ``decodeitem`` (spec §4.2), including the order in which it
        reports problems; raises :class:`_Incomplete` when the item is cut short.
        """
        n = len(buf)
        initial = buf[pos]
        major = initial >> 5
        info = initial & 0x1F
        if major == 3:
            raise CBORDecodeError("string major type not supported")
        if major == 7:
            if info == 20:
                return _K_VALUE, False, pos + 1
            if info == 21:
                return _K_VALUE, True, pos + 1
            if info == 22:
                return _K_VALUE, None, pos + 1
            if info == 31:
                return _K_BREAK, None, pos + 1
            raise CBORDecodeError(f"special type {info} not allowed")
        # Every other major type starts with an unsigned argument.
        if info < 24:
            arg: int | None = info
            start = pos + 1
        elif info == 31:
            if major != 2:
                raise CBORDecodeError("indefinite length uint not allowed here")
            arg = None
            start = pos + 1
        elif info >= 28:
            raise CBORDecodeError(f"unsupported subtype on integer type: {info}")
        else:
            st = _ARG[info]
            start = pos + 1 + st.size
            if start > n:
                raise _Incomplete(start - pos)
            arg = st.unpack_from(buf, pos + 1)[0]
        if major == 0:
            return _K_VALUE, arg, start
        if major == 1:
            assert arg is not None
            return _K_VALUE, -1 - arg, start
        if major == 2:
            if arg is None:
                return _K_INDEF, None, start
            self._check_length(arg, "bytestring length")
            end = start + arg
            if self._vbytes + (end - pos) > self.max_buffer:
                raise CBORDecodeError(
                    f"value larger than the buffer limit of {self.max_buffer} bytes"
                )
            if end > n:
                raise _Incomplete(end - pos)
            return _K_VALUE, buf[start:end], end
        assert arg is not None
        if major == 4:
            self._check_length(arg, "array length")
            return _K_ARRAY, arg, start
        if major == 5:
            self._check_length(arg, "map length")
            return _K_MAP, arg, start
        # major == 6: semantic tag
        if arg != 258:
            raise CBORDecodeError(f"semantic tag {arg} not allowed")
        if start >= n:
            raise _Incomplete(start - pos + 1)
        try:
            kind, count, end = self._item(buf, start)
        except _Incomplete as inc:
            raise _Incomplete(start - pos + inc.need) from None
        if kind != _K_ARRAY:
            raise CBORDecodeError("expected array after finite set semantic tag")
        return _K_SET, count, end

    def _check_length(self, length: int, what: str) -> None:
        if length > self.max_length:
            raise CBORDecodeError(f"{what} {length} exceeds the limit of {self.max_length}")


# --------------------------------------------------------------------------- one-shot


def loads_all(
    data: bytes | bytearray | memoryview,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_buffer: int = DEFAULT_MAX_BUFFER,
) -> list[Any]:
    """Decode every value in ``data``, which must end on a value boundary.

    Like Mercurial's ``decodeall``: indefinite byte strings appear as their chunks.
    """
    dec = Decoder(max_length=max_length, max_depth=max_depth, max_buffer=max_buffer)
    values = dec.feed(data)
    dec.finish()
    return values


def loads(
    data: bytes | bytearray | memoryview,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_buffer: int = DEFAULT_MAX_BUFFER,
) -> Any:
    """Decode exactly one value that spans all of ``data``.

    A top-level indefinite byte string is returned joined, as ``bytes``.
    """
    values = loads_all(data, max_length=max_length, max_depth=max_depth, max_buffer=max_buffer)
    if not values:
        raise CBORDecodeError(_NOT_COMPLETE)
    first = values[0]
    if isinstance(first, BytestringChunk):
        # The input is well formed, so the string ends at the first chunk marked last.
        ends = [i for i, v in enumerate(values) if isinstance(v, BytestringChunk) and v.last]
        if ends != [len(values) - 1]:
            raise CBORDecodeError(_NOT_CONSUMED)
        return b"".join(v.data for v in values)
    if len(values) != 1:
        raise CBORDecodeError(_NOT_CONSUMED)
    return first
