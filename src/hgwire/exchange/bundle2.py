"""Bundle2 (``HG20``) streams: encoder, streaming decoder, capabilities, payload codecs.

Spec storage §9: stream header and parameters (§9.1), parts (§9.2), body compression
(§9.4), the capabilities blob (§9.5) and the part payload encodings of the catalogue
(§9.6). Legacy ``HG10`` bundle files (§11) are recognised by :func:`readbundle`.

Everything here is transport-free: encoders return iterators of bytes, decoders read
from any object with ``read(n)``.
"""

from __future__ import annotations

import bz2
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, unquote_to_bytes

from hgwire.errors import AbortError, BundleError, BundleUnknownFeatureError, HgwireError
from hgwire.exchange.changegroup import Readable, readexactly

MAGIC = b"HG20"
#: Payload chunk size Mercurial uses for generated payloads (§9.2).
PREFERRED_CHUNK = 32768
#: Chunk size marking an interrupt (an out-of-band part follows, §9.2).
FLAG_INTERRUPT = -1

_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_PARTTYPE_FORBIDDEN = re.compile(rb"[^a-zA-Z0-9_:-]")

WDIRID = b"\xff" * 20
NULLID = b"\0" * 20


# ---------------------------------------------------------------------------------------
# Errors carried in bundle2 replies


class RemoteAbortError(AbortError):
    """An ``error:abort`` part (or a local abort to be sent as one): message and hint."""

    def __init__(self, message: bytes, hint: bytes | None = None) -> None:
        self.message = message
        self.hint = hint
        text = message.decode("utf-8", "replace")
        if hint:
            text += f" ({hint.decode('utf-8', 'replace')})"
        super().__init__(text)


class PushRacedError(AbortError):
    """The repository changed while a push was prepared (``error:pushraced``, §9.8)."""

    def __init__(self, message: bytes = b"remote repository changed while pushing") -> None:
        self.message = message
        super().__init__(message.decode("utf-8", "replace"))


class PushkeyFailedError(AbortError):
    """A mandatory ``pushkey`` part failed (``error:pushkey``)."""

    def __init__(self, partid: bytes, **fields: bytes) -> None:
        self.partid = partid
        self.fields = fields
        super().__init__(f"failed to update value for {fields!r} (part {partid.decode()})")


# ---------------------------------------------------------------------------------------
# Compression engines of the bundle body (§9.4) and of HG10 files (§11)

_COMPRESSIONS = (b"UN", b"GZ", b"BZ", b"ZS")


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


def _decompressor(engine: bytes) -> Callable[[], _Decompressor]:
    if engine == b"GZ":
        return zlib.decompressobj
    if engine == b"BZ":
        return bz2.BZ2Decompressor
    if engine == b"ZS":
        import zstandard

        dctx = zstandard.ZstdDecompressor()
        return lambda: dctx.decompressobj()
    raise BundleUnknownFeatureError(params=(b"Compression",))


class DecompressingReader:
    """A ``read(n)`` view of ``fh`` decompressed with ``engine`` (``GZ``, ``BZ``, ``ZS``).

    Concatenated streams/frames are read through; ``max_size`` bounds the decompressed
    total (a :class:`BundleError` beyond it).
    """

    def __init__(
        self, fh: Readable, engine: bytes, max_size: int | None = None, prefix: bytes = b""
    ) -> None:
        self._fh = fh
        self._factory = _decompressor(engine)
        self._d = self._factory()
        self._buf = bytearray()
        self._pending = prefix
        self._eof = False
        self._total = 0
        self._max = max_size
        self._fed = False
        self.engine = engine

    def _fill(self, want: int) -> None:
        while len(self._buf) < want and not self._eof:
            data = self._pending or self._fh.read(65536)
            self._pending = b""
            if not data:
                if self._fed:
                    raise BundleError(
                        f"compressed bundle stream ({self.engine.decode()}) truncated"
                    )
                self._eof = True
                break
            self._fed = True
            try:
                out = self._d.decompress(data)
            except Exception as exc:  # zlib.error, OSError, zstd.ZstdError
                raise BundleError(
                    f"invalid {self.engine.decode()} compressed bundle data: {exc}"
                ) from exc
            self._total += len(out)
            if self._max is not None and self._total > self._max:
                raise BundleError(f"decompressed bundle exceeds {self._max} bytes")
            self._buf += out
            if self._d.eof:
                # a complete stream/frame: another one may follow
                self._pending = self._d.unused_data
                self._d = self._factory()
                self._fed = False

    def read(self, n: int = -1, /) -> bytes:
        if n < 0:
            while not self._eof:
                self._fill(len(self._buf) + 65536)
            out = bytes(self._buf)
            self._buf.clear()
            return out
        self._fill(n)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


#: Size of the pieces :func:`coalesce` yields (fewer, larger compressor and socket writes).
COALESCE_SIZE = 1 << 16


def coalesce(chunks: Iterable[bytes], size: int = COALESCE_SIZE) -> Iterator[bytes]:
    """``chunks`` joined into pieces of at least ``size`` bytes (the last may be shorter).
    If ``chunks`` raises, what was buffered goes out before the exception."""
    parts: list[bytes] = []
    have = 0
    it = iter(chunks)
    while True:
        try:
            c = next(it)
        except StopIteration:
            break
        except Exception:
            if parts:
                yield b"".join(parts)
            raise
        if not c:
            continue
        parts.append(c)
        have += len(c)
        if have >= size:
            yield parts[0] if len(parts) == 1 else b"".join(parts)
            parts = []
            have = 0
    if parts:
        yield b"".join(parts)


def compresschunks(
    chunks: Iterable[bytes], engine: bytes | None, level: int = -1
) -> Iterator[bytes]:
    """``chunks`` compressed as one stream with ``engine`` (``None``/``UN``: unchanged)."""
    if engine in (None, b"UN"):
        yield from chunks
        return
    comp: Any
    if engine == b"GZ":
        comp = zlib.compressobj(level if level >= 0 else 6)
    elif engine == b"BZ":
        comp = bz2.BZ2Compressor(level if level > 0 else 9)
    elif engine == b"ZS":
        import zstandard

        comp = zstandard.ZstdCompressor(level=level if level > 0 else 3).compressobj()
    else:
        raise BundleError(f"unknown bundle compression {engine!r}")
    for c in chunks:
        out = comp.compress(c)
        if out:
            yield out
    tail = comp.flush()
    if tail:
        yield tail


# ---------------------------------------------------------------------------------------
# URL quoting, capabilities blob (§9.5), stream parameters (§9.1)


def urlquote(value: bytes) -> bytes:
    """Percent-encode like Mercurial's ``urlreq.quote`` (``/`` stays as is)."""
    return quote(value, safe="/").encode("ascii")


def urlunquote(value: bytes) -> bytes:
    """Undo :func:`urlquote` (and any other percent-encoding)."""
    return unquote_to_bytes(value)


Capabilities = dict[bytes, list[bytes]]


def encodecaps(caps: Mapping[bytes, Iterable[bytes]]) -> bytes:
    """The capabilities blob: sorted lines ``name`` or ``name=v1,v2``, URL-quoted."""
    lines = []
    for name in sorted(caps):
        vals = [urlquote(v) for v in caps[name]]
        line = urlquote(name)
        if vals:
            line += b"=" + b",".join(vals)
        lines.append(line)
    return b"\n".join(lines)


def decodecaps(blob: bytes) -> Capabilities:
    """Parse a capabilities blob (empty lines ignored; no ``=`` means no values)."""
    caps: Capabilities = {}
    for line in blob.splitlines():
        if not line:
            continue
        if b"=" in line:
            key, vals = line.split(b"=", 1)
            caps[urlunquote(key)] = [urlunquote(v) for v in vals.split(b",")]
        else:
            caps[urlunquote(line)] = []
    return caps


def encodestreamparams(params: Sequence[tuple[bytes, bytes | None]]) -> bytes:
    """The stream parameter blob: space-separated ``name`` or ``name=value``, quoted."""
    out = []
    for name, value in params:
        if not name or not name[:1].isalpha():
            raise BundleError(f"invalid bundle2 stream parameter name {name!r}")
        item = urlquote(name)
        if value is not None:
            item += b"=" + urlquote(value)
        out.append(item)
    return b" ".join(out)


def decodestreamparams(blob: bytes) -> list[tuple[bytes, bytes | None]]:
    """Parse a stream parameter blob into ``(name, value or None)`` pairs."""
    out: list[tuple[bytes, bytes | None]] = []
    if not blob:
        return out
    for item in blob.split(b" "):
        if b"=" in item:
            name, value = item.split(b"=", 1)
            out.append((urlunquote(name), urlunquote(value)))
        else:
            out.append((urlunquote(item), None))
    for name, _ in out:
        if not name:
            raise BundleError("empty bundle2 stream parameter name")
        if not (name[:1].isalpha() and name[:1].isascii()):
            raise BundleError(f"bundle2 stream parameter {name!r} must start with a letter")
    return out


# ---------------------------------------------------------------------------------------
# Encoder (§9.1, §9.2)


Payload = bytes | Iterable[bytes]


@dataclass
class Part:
    """An outgoing part. ``mandatory`` parts are written upper-case, advisory lower-case.

    ``data`` is bytes (one payload chunk) or an iterable of bytes (re-chunked into
    :data:`PREFERRED_CHUNK`-sized chunks, streamed).
    """

    type: bytes
    mandatoryparams: list[tuple[bytes, bytes]] = field(default_factory=list)
    advisoryparams: list[tuple[bytes, bytes]] = field(default_factory=list)
    data: Payload = b""
    mandatory: bool = True
    id: int | None = None

    def __post_init__(self) -> None:
        validateparttype(self.type)
        seen: set[bytes] = set()
        for k, _v in (*self.mandatoryparams, *self.advisoryparams):
            if k in seen:
                raise BundleError(f"duplicated parameter {k!r} in part {self.type!r}")
            seen.add(k)

    def addparam(self, name: bytes, value: bytes = b"", mandatory: bool = True) -> None:
        """Add a parameter (names unique within the part)."""
        if any(k == name for k, _ in (*self.mandatoryparams, *self.advisoryparams)):
            raise BundleError(f"duplicated parameter {name!r} in part {self.type!r}")
        (self.mandatoryparams if mandatory else self.advisoryparams).append((name, value))

    def header(self, partid: int) -> bytes:
        """The part header (without its size prefix)."""
        ptype = self.type.upper() if self.mandatory else self.type.lower()
        params = [*self.mandatoryparams, *self.advisoryparams]
        if len(self.mandatoryparams) > 255 or len(self.advisoryparams) > 255:
            raise BundleError(f"too many parameters in part {self.type!r}")
        out = [struct.pack(">B", len(ptype)), ptype, _U32.pack(partid)]
        out.append(struct.pack(">BB", len(self.mandatoryparams), len(self.advisoryparams)))
        for k, v in params:
            if len(k) > 255 or len(v) > 255:
                raise BundleError(f"parameter {k[:40]!r} of part {self.type!r} too long")
            out.append(struct.pack(">BB", len(k), len(v)))
        for k, v in params:
            out.append(k)
            out.append(v)
        return b"".join(out)

    def payloadchunks(self) -> Iterator[bytes]:
        """The payload as chunks (no framing)."""
        data = self.data
        if isinstance(data, bytes | bytearray | memoryview):
            if data:
                yield bytes(data)
            return
        buf = bytearray()
        for piece in data:
            if not piece:
                continue
            buf += piece
            while len(buf) >= PREFERRED_CHUNK:
                yield bytes(buf[:PREFERRED_CHUNK])
                del buf[:PREFERRED_CHUNK]
        if buf:
            yield bytes(buf)

    def getchunks(self, partid: int) -> Iterator[bytes]:
        """The framed part. If the payload generator raises, an interrupt carrying an
        ``error:abort`` part is emitted and the payload closed before re-raising (§9.2).
        """
        header = self.header(partid)
        yield _I32.pack(len(header))
        yield header
        try:
            for c in self.payloadchunks():
                yield _I32.pack(len(c))
                yield c
        except GeneratorExit:
            raise
        except Exception as exc:
            msg = b"unexpected error: " + str(exc).encode("utf-8", "replace")
            inter = Part(b"error:abort", [(b"message", msg[:255])], mandatory=False)
            yield _I32.pack(FLAG_INTERRUPT)
            yield from inter.getchunks(0)
            yield _I32.pack(0)
            raise
        yield _I32.pack(0)


def validateparttype(parttype: bytes) -> None:
    """Refuse part types outside ``[a-zA-Z0-9_:-]`` (or empty, or over 255 bytes)."""
    if not parttype or len(parttype) > 255 or _PARTTYPE_FORBIDDEN.search(parttype):
        raise BundleError(f"invalid bundle2 part type {parttype!r}")


class Bundler:
    """Collects parts and encodes an ``HG20`` stream (ids 0, 1, 2, ... in order).

    ``compression`` (``GZ``/``BZ``/``ZS``) adds the ``Compression`` stream parameter and
    compresses the body (§9.4); ``UN`` writes the parameter without compressing.
    """

    def __init__(
        self,
        params: Sequence[tuple[bytes, bytes | None]] = (),
        compression: bytes | None = None,
        capabilities: Mapping[bytes, Sequence[bytes]] | None = None,
    ) -> None:
        self.params: list[tuple[bytes, bytes | None]] = list(params)
        self.compression = compression
        if compression is not None:
            if compression not in _COMPRESSIONS:
                raise BundleError(f"unknown bundle compression {compression!r}")
            self.params.append((b"Compression", compression))
        self.capabilities: dict[bytes, Sequence[bytes]] = dict(capabilities or {})
        self.parts: list[Part] = []

    def addpart(self, part: Part) -> Part:
        part.id = len(self.parts)
        self.parts.append(part)
        return part

    def newpart(
        self,
        parttype: bytes,
        mandatoryparams: Sequence[tuple[bytes, bytes]] = (),
        advisoryparams: Sequence[tuple[bytes, bytes]] = (),
        data: Payload = b"",
        mandatory: bool = True,
    ) -> Part:
        return self.addpart(
            Part(parttype, list(mandatoryparams), list(advisoryparams), data, mandatory)
        )

    @property
    def nbparts(self) -> int:
        return len(self.parts)

    def getchunks(self) -> Iterator[bytes]:
        """The whole stream as chunks (parts are encoded lazily, in order)."""
        blob = encodestreamparams(self.params)
        yield MAGIC + _I32.pack(len(blob)) + blob
        yield from compresschunks(coalesce(self._body()), self.compression)

    def _body(self) -> Iterator[bytes]:
        for i, part in enumerate(self.parts):
            yield from part.getchunks(i if part.id is None else part.id)
        yield _I32.pack(0)

    def tobytes(self) -> bytes:
        return b"".join(self.getchunks())


# ---------------------------------------------------------------------------------------
# Decoder (§9.1, §9.2)


class UnbundlePart:
    """An incoming part: ``type`` (lower-case), ``mandatory``, ``id``, parameters and a
    streaming payload (``read(n)``, iteration over chunks, :meth:`consume`).
    """

    def __init__(
        self,
        header: bytes,
        fh: Readable,
        on_interrupt: Callable[[UnbundlePart], None] | None = None,
    ) -> None:
        self._fh = fh
        self._on_interrupt = on_interrupt
        pos = 0

        def take(n: int) -> bytes:
            nonlocal pos
            if pos + n > len(header):
                raise BundleError("bundle2 part header truncated")
            out = header[pos : pos + n]
            pos += n
            return out

        typesize = take(1)[0]
        rawtype = take(typesize)
        try:
            validateparttype(rawtype)
        except BundleError:
            raise BundleError(f"invalid bundle2 part type {rawtype!r}") from None
        self.mandatory = rawtype != rawtype.lower()
        self.type = rawtype.lower()
        self.id: int = _U32.unpack(take(4))[0]
        mancount, advcount = take(1)[0], take(1)[0]
        sizes = take(2 * (mancount + advcount))
        values = []
        for i in range(mancount + advcount):
            k = take(sizes[2 * i])
            v = take(sizes[2 * i + 1])
            values.append((k, v))
        if pos != len(header):
            raise BundleError(f"bundle2 part header of {self.type!r} has trailing bytes")
        self.mandatoryparams: list[tuple[bytes, bytes]] = values[:mancount]
        self.advisoryparams: list[tuple[bytes, bytes]] = values[mancount:]
        self.params: dict[bytes, bytes] = dict(values)
        if len(self.params) != len(values):
            raise BundleError(f"duplicated parameter in bundle2 part {self.type!r}")
        self._chunks = self._payloadchunks()
        self._buf = b""
        self._bufpos = 0
        self.consumed = False

    @property
    def mandatorykeys(self) -> frozenset[bytes]:
        return frozenset(k for k, _ in self.mandatoryparams)

    def param(self, name: bytes) -> bytes:
        """A required parameter; its absence is a :class:`BundleError`."""
        try:
            return self.params[name]
        except KeyError:
            raise BundleError(f"part {self.type!r} lacks parameter {name!r}") from None

    def intparam(self, name: bytes) -> int:
        """A required decimal parameter."""
        value = self.param(name)
        try:
            return int(value)
        except ValueError:
            raise BundleError(f"part {self.type!r}: bad {name!r} value {value!r}") from None

    def _payloadchunks(self) -> Iterator[bytes]:
        fh = self._fh
        while True:
            size = _I32.unpack(readexactly(fh, 4))[0]
            if size == 0:
                break
            if size > 0:
                yield readexactly(fh, size)
            elif size == FLAG_INTERRUPT:
                self._interrupt()
            else:
                raise BundleError(f"negative payload chunk size: {size}")
        self.consumed = True

    def _interrupt(self) -> None:
        size = _I32.unpack(readexactly(self._fh, 4))[0]
        if size == 0:
            return
        if size < 0:
            raise BundleError(f"negative part header size: {size}")
        inner = UnbundlePart(readexactly(self._fh, size), self._fh)
        try:
            if self._on_interrupt is not None:
                self._on_interrupt(inner)
            else:
                default_interrupt(inner)
        finally:
            inner.consume()

    def __iter__(self) -> Iterator[bytes]:
        if self._bufpos < len(self._buf):
            rest = self._buf[self._bufpos :]
            self._buf, self._bufpos = b"", 0
            yield rest
        yield from self._chunks

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` payload bytes (all remaining when ``n`` < 0)."""
        if n < 0:
            return b"".join(self)
        out = []
        want = n
        while want > 0:
            if self._bufpos >= len(self._buf):
                nxt = next(self._chunks, None)
                if nxt is None:
                    break
                self._buf, self._bufpos = nxt, 0
            piece = self._buf[self._bufpos : self._bufpos + want]
            self._bufpos += len(piece)
            want -= len(piece)
            out.append(piece)
        return b"".join(out)

    def consume(self) -> None:
        """Skip the rest of the payload (needed before the next part can be read)."""
        self._buf, self._bufpos = b"", 0
        for _ in self._chunks:
            pass

    def __repr__(self) -> str:
        return f"<UnbundlePart {self.type!r} id={self.id} params={self.params!r}>"


def default_interrupt(part: UnbundlePart) -> None:
    """What an out-of-band part does by default: ``error:abort`` raises, others are read."""
    if part.type == b"error:abort":
        raise RemoteAbortError(part.params.get(b"message", b""), part.params.get(b"hint"))
    if part.mandatory:
        raise BundleUnknownFeatureError(parttype=part.type)


#: Stream parameters this decoder understands (lower-case names).
KNOWN_STREAM_PARAMS = frozenset({b"compression"})


class Unbundler:
    """Reads an ``HG20`` stream from ``fh`` (the 4-byte magic may already be consumed:
    pass ``magic_read=True``). Unknown mandatory stream parameters, unknown compression
    and bad headers raise :mod:`hgwire.errors` bundle errors.
    """

    def __init__(
        self,
        fh: Readable,
        *,
        magic_read: bool = False,
        max_decompressed: int | None = None,
        on_interrupt: Callable[[UnbundlePart], None] | None = None,
    ) -> None:
        if not magic_read:
            magic = readexactly(fh, 4)
            if magic != MAGIC:
                raise BundleError(f"not a bundle2 stream (magic {magic!r})")
        size = _I32.unpack(readexactly(fh, 4))[0]
        if size < 0:
            raise BundleError(f"negative bundle param size: {size}")
        self.params = decodestreamparams(readexactly(fh, size) if size else b"")
        self.compression: bytes | None = None
        for name, value in self.params:
            if name.lower() not in KNOWN_STREAM_PARAMS:
                if name[:1].isupper():
                    raise BundleUnknownFeatureError(params=(name,))
                continue
            if value not in _COMPRESSIONS:
                raise BundleUnknownFeatureError(params=(b"Compression",))
            self.compression = value
        self._fh: Readable = fh
        if self.compression not in (None, b"UN"):
            assert self.compression is not None
            self._fh = DecompressingReader(fh, self.compression, max_decompressed)
        self._on_interrupt = on_interrupt
        self._current: UnbundlePart | None = None
        self._done = False

    def _readpartheader(self) -> bytes | None:
        size = _I32.unpack(readexactly(self._fh, 4))[0]
        if size < 0:
            raise BundleError(f"negative part header size: {size}")
        if size == 0:
            return None
        return readexactly(self._fh, size)

    def iterparts(self) -> Iterator[UnbundlePart]:
        """Each part in order; a part's unread payload is skipped when moving on."""
        while not self._done:
            if self._current is not None:
                self._current.consume()
                self._current = None
            header = self._readpartheader()
            if header is None:
                self._done = True
                return
            part = UnbundlePart(header, self._fh, self._on_interrupt)
            self._current = part
            yield part
        if self._current is not None:
            self._current.consume()
            self._current = None

    def __iter__(self) -> Iterator[UnbundlePart]:
        return self.iterparts()


def forwardchunks(fh: Readable) -> Iterator[bytes]:
    """Copy exactly one bundle2 stream from ``fh`` (uncompressed body), chunk by chunk.

    For transports (SSH ``getbundle``) where only parsing tells where the reply ends.
    """
    magic = readexactly(fh, 4)
    if magic != MAGIC:
        raise BundleError(f"not a bundle2 stream (magic {magic!r})")
    size = _I32.unpack(readexactly(fh, 4))[0]
    if size < 0:
        raise BundleError(f"negative bundle param size: {size}")
    blob = readexactly(fh, size) if size else b""
    if any(
        name.lower() == b"compression" and v not in (None, b"UN")
        for name, v in decodestreamparams(blob)
    ):
        raise BundleError("cannot forward a compressed bundle2 stream")
    yield magic + _I32.pack(size) + blob
    while True:
        raw = readexactly(fh, 4)
        yield raw
        hsize = _I32.unpack(raw)[0]
        if hsize < 0:
            raise BundleError(f"negative part header size: {hsize}")
        if hsize == 0:
            return
        yield readexactly(fh, hsize)
        yield from _forwardpayload(fh)


def _forwardpayload(fh: Readable) -> Iterator[bytes]:
    while True:
        raw = readexactly(fh, 4)
        yield raw
        size = _I32.unpack(raw)[0]
        if size == 0:
            return
        if size > 0:
            yield readexactly(fh, size)
        elif size == FLAG_INTERRUPT:
            raw = readexactly(fh, 4)
            yield raw
            hsize = _I32.unpack(raw)[0]
            if hsize < 0:
                raise BundleError(f"negative part header size: {hsize}")
            if hsize > 0:
                yield readexactly(fh, hsize)
                yield from _forwardpayload(fh)
        else:
            raise BundleError(f"negative payload chunk size: {size}")


# ---------------------------------------------------------------------------------------
# Part payload encodings (§9.6)

_PHASE_ENTRY = struct.Struct(">i20s")
_BOOK_ENTRY = struct.Struct(">20sH")
PHASE_NAMES = (b"public", b"draft", b"secret")


def encodephaseheads(headsbyphase: Mapping[int, Iterable[bytes]]) -> bytes:
    """Binary phase heads: ``>i20s`` per (phase, node), phases ascending, nodes sorted."""
    out = []
    for phase in sorted(headsbyphase):
        for node in sorted(headsbyphase[phase]):
            out.append(_PHASE_ENTRY.pack(phase, node))
    return b"".join(out)


def decodephaseheads(data: bytes) -> dict[int, list[bytes]]:
    """Parse binary phase heads into ``{phase: [node, ...]}`` (phases 0..2 present)."""
    if len(data) % _PHASE_ENTRY.size:
        raise BundleError(f"bad phase-heads payload length {len(data)}")
    out: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    for phase, node in _PHASE_ENTRY.iter_unpack(data):
        if phase < 0:
            raise BundleError(f"bad phase number {phase} in phase-heads")
        out.setdefault(phase, []).append(node)
    return out


def encodebookmarks(books: Iterable[tuple[bytes, bytes | None]]) -> bytes:
    """Binary bookmarks: ``>20sH`` + name per (name, node); ``None`` node = deleted."""
    out = []
    for name, node in sorted(books):
        out.append(_BOOK_ENTRY.pack(WDIRID if node is None else node, len(name)))
        out.append(name)
    return b"".join(out)


def decodebookmarks(data: bytes) -> list[tuple[bytes, bytes | None]]:
    """Parse binary bookmarks into ``(name, node or None)`` pairs."""
    out: list[tuple[bytes, bytes | None]] = []
    pos = 0
    while pos < len(data):
        if pos + _BOOK_ENTRY.size > len(data):
            raise BundleError("bad bookmarks payload: truncated entry")
        node, size = _BOOK_ENTRY.unpack_from(data, pos)
        pos += _BOOK_ENTRY.size
        if pos + size > len(data):
            raise BundleError("bad bookmarks payload: truncated name")
        name = data[pos : pos + size]
        pos += size
        out.append((name, None if node == WDIRID else node))
    return out


def encodekeys(keys: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Pushkey namespace listing: ``key\\tvalue`` lines joined with ``\\n``."""
    return b"\n".join(k + b"\t" + v for k, v in keys)


def decodekeys(data: bytes) -> dict[bytes, bytes]:
    """Parse a pushkey listing (lines without a tab are refused)."""
    out: dict[bytes, bytes] = {}
    for line in data.splitlines():
        if not line:
            continue
        if b"\t" not in line:
            raise BundleError(f"bad pushkey listing line {line[:60]!r}")
        k, v = line.split(b"\t", 1)
        out[k] = v
    return out


def encodenodes(nodes: Iterable[bytes]) -> bytes:
    return b"".join(nodes)


def decodenodes(data: bytes) -> list[bytes]:
    """A concatenated 20-byte node list (``check:heads``, ``check:updated-heads``)."""
    if len(data) % 20:
        raise BundleError(f"bad node list length {len(data)}")
    return [data[i : i + 20] for i in range(0, len(data), 20)]


def decodehgtagsfnodes(data: bytes) -> list[tuple[bytes, bytes]]:
    """``hgtagsfnodes`` payload: (changeset node, ``.hgtags`` filenode) pairs."""
    if len(data) % 40:
        raise BundleError(f"bad hgtagsfnodes payload length {len(data)}")
    return [(data[i : i + 20], data[i + 20 : i + 40]) for i in range(0, len(data), 40)]


_RBC = struct.Struct(">III")


def decoderevbranchcache(data: bytes) -> list[tuple[bytes, list[bytes], list[bytes]]]:
    """``cache:rev-branch-cache`` payload: (branch, open nodes, closed nodes) entries."""
    out = []
    pos = 0
    while pos < len(data):
        if pos + _RBC.size > len(data):
            raise BundleError("bad rev-branch-cache payload")
        size, nopen, nclosed = _RBC.unpack_from(data, pos)
        pos += _RBC.size
        end = pos + size + 20 * (nopen + nclosed)
        if end > len(data):
            raise BundleError("bad rev-branch-cache payload")
        name = data[pos : pos + size]
        pos += size
        nodes = decodenodes(data[pos:end])
        pos = end
        out.append((name, nodes[:nopen], nodes[nopen:]))
    return out


def encoderevbranchcache(entries: Iterable[tuple[bytes, Iterable[bytes], Iterable[bytes]]]
                         ) -> bytes:  # fmt: skip
    """``cache:rev-branch-cache`` payload: per (branch, open nodes, closed nodes), branches
    sorted and nodes sorted, as Mercurial writes it."""
    out = []
    for name, opened, closed in sorted((n, list(o), list(c)) for n, o, c in entries):
        o, c = sorted(opened), sorted(closed)
        out.append(_RBC.pack(len(name), len(o), len(c)) + name + b"".join(o) + b"".join(c))
    return b"".join(out)


# ---------------------------------------------------------------------------------------
# Bundle files (§9, §11)


@dataclass
class BundleFile:
    """What :func:`readbundle` found: ``kind`` is ``HG20``, ``HG10`` or ``HGS1``.

    For ``HG20``, ``unbundler`` is set; for ``HG10``, ``reader`` is the (decompressed)
    cg1 stream and ``compression`` its engine; for ``HGS1``, ``reader`` is positioned
    after the 6-byte header.
    """

    kind: str
    compression: bytes | None = None
    unbundler: Unbundler | None = None
    reader: Readable | None = None


def readbundle(fh: Readable, max_decompressed: int | None = None) -> BundleFile:
    """Recognise a bundle file or stream by its magic (``HG20``, ``HG10xx``, ``HGS1``)."""
    magic = readexactly(fh, 4)
    if magic == MAGIC:
        return BundleFile(
            "HG20", unbundler=Unbundler(fh, magic_read=True, max_decompressed=max_decompressed)
        )
    if magic == b"HG10":
        comp = readexactly(fh, 2)
        if comp == b"UN":
            return BundleFile("HG10", b"UN", reader=fh)
        if comp == b"GZ":
            return BundleFile(
                "HG10", b"GZ", reader=DecompressingReader(fh, b"GZ", max_decompressed)
            )
        if comp == b"BZ":
            # the leading "BZ" of the bzip2 stream doubles as the end of the magic (§11)
            return BundleFile(
                "HG10",
                b"BZ",
                reader=DecompressingReader(fh, b"BZ", max_decompressed, prefix=b"BZ"),
            )
        raise BundleError(f"unknown HG10 bundle compression {comp!r}")
    if magic == b"HGS1":
        return BundleFile("HGS1", reader=fh)
    if magic[:2] == b"\0\0":
        raise BundleError("headerless changegroup streams are not bundle files")
    raise BundleError(f"not a Mercurial bundle (magic {magic!r})")


def hg10chunks(cgchunks: Iterable[bytes], compression: bytes = b"BZ") -> Iterator[bytes]:
    """An ``HG10`` bundle file around a cg1 stream (§11)."""
    if compression == b"BZ":
        first = True
        for c in compresschunks(cgchunks, b"BZ"):
            if first:
                if c[:2] != b"BZ":
                    raise BundleError("bzip2 stream does not start with BZ")
                c = b"HG10" + c
                first = False
            yield c
        return
    if compression not in (b"UN", b"GZ"):
        raise BundleError(f"unknown HG10 bundle compression {compression!r}")
    yield b"HG10" + compression
    yield from compresschunks(cgchunks, compression)


# ---------------------------------------------------------------------------------------
# Serving pulls: the getbundle reply (§9.7)

#: Changegroup versions hgwire applies and produces (§8.8).
CG_VERSIONS = (b"01", b"02", b"03")


def server_capabilities(stream: bool = True) -> Capabilities:
    """The bundle2 capabilities an hgwire server advertises (``bundle2=`` token, §9.5)."""
    caps: Capabilities = {
        b"HG20": [],
        b"bookmarks": [],
        b"changegroup": list(CG_VERSIONS),
        b"checkheads": [b"related"],
        b"error": [b"abort", b"unsupportedcontent", b"pushraced", b"pushkey"],
        b"hgtagsfnodes": [],
        b"listkeys": [],
        b"phases": [b"heads"],
        b"pushkey": [],
    }
    if stream:
        caps[b"stream"] = [b"v2"]
    return caps


def client_capabilities() -> Capabilities:
    """The bundle2 capabilities hgwire sends as a client (``bundlecaps``/``replycaps``)."""
    caps = server_capabilities(stream=True)
    return caps


def capstoken(caps: Mapping[bytes, Iterable[bytes]]) -> bytes:
    """The ``bundle2=<urlquoted blob>`` token of a v1 ``capabilities`` reply or of the
    ``bundlecaps`` argument (§9.5)."""
    return b"bundle2=" + urlquote(encodecaps(caps))


def bundle2_requested(bundlecaps: Iterable[bytes] | None) -> bool:
    """Whether a ``getbundle`` asked for a bundle2 reply (a cap starting with ``HG2``)."""
    return any(c.startswith(b"HG2") for c in bundlecaps or ())


def caps_from_bundlecaps(bundlecaps: Iterable[bytes] | None) -> Capabilities:
    """The client's bundle2 capabilities from the ``bundlecaps`` argument (§9.5)."""
    for cap in bundlecaps or ():
        if cap.startswith(b"bundle2="):
            return decodecaps(urlunquote(cap[len(b"bundle2=") :]))
    return {}


def _truncate(value: bytes) -> bytes:
    return value if len(value) <= 255 else value[:252] + b"..."


def error_abort_part(message: bytes, hint: bytes | None = None) -> Part:
    """An ``error:abort`` part (message/hint cut to the 255-byte parameter limit)."""
    advisory = [(b"hint", _truncate(hint))] if hint else []
    return Part(b"error:abort", [(b"message", _truncate(message))], advisory)


def _served(repo: Any) -> tuple[Any, Any]:
    from hgwire.repo import dagops, phases

    dag = dagops.DAG.from_storage(repo.changelog)
    pc = phases.PhaseCache.load(repo, dag)
    return dag, pc


def _listkeys(
    repo: Any, namespace: bytes, publishing: bool, pc: Any, served: bytearray
) -> list[tuple[bytes, bytes]]:
    from hgwire.repo.bookmarks import Bookmarks

    cl = repo.changelog
    if namespace == b"bookmarks":

        def visible(node: bytes) -> bool:
            return bool(served[cl.rev(node)])

        return sorted(Bookmarks(repo).listkeys(visible).items())
    if namespace == b"phases":
        return sorted(pc.listkeys(publishing, served).items())
    if namespace == b"namespaces":
        return [(b"bookmarks", b""), (b"namespaces", b""), (b"phases", b"")]
    return []


def listkeys(repo: Any, namespace: bytes, publishing: bool = True) -> dict[bytes, bytes]:
    """A pushkey namespace (``bookmarks``, ``phases``, ``namespaces``) as served."""
    _dag, pc = _served(repo)
    return dict(_listkeys(repo, namespace, publishing, pc, pc.servable()))


def getbundle(
    repo: Any,
    *,
    heads: Sequence[bytes] | None = None,
    common: Sequence[bytes] = (),
    bundlecaps: Iterable[bytes] | None = None,
    cg: bool = True,
    phases: bool = False,
    bookmarks: bool = False,
    listkeys: Iterable[bytes] = (),
    stream: bool = False,
    publishing: bool = True,
    allow_stream: bool = True,
) -> Iterator[bytes]:
    """The reply to ``getbundle`` (wire §9.4, storage §9.7) as chunks.

    With ``HG20`` in ``bundlecaps``: a bundle2 stream with, as applicable, ``stream2``,
    ``changegroup`` (max common version), ``bookmarks``, ``listkeys`` and
    ``phase-heads`` parts; an :class:`AbortError` while preparing it becomes an
    ``error:abort`` part. Otherwise a bare cg1 stream (bundle1), whose errors propagate.
    Secret changesets are never served.
    """
    from hgwire.exchange import changegroup as cgmod

    if not heads:
        heads = None  # no (or empty) heads: everything served, as Mercurial
    caps = list(bundlecaps or ())
    if not bundle2_requested(caps):
        outgoing = cgmod.findoutgoing(repo, common, heads)
        return cgmod.makechangegroup(repo, outgoing, b"01")
    try:
        bundler = _getbundle2(
            repo, heads, common, caps_from_bundlecaps(caps), cg, phases, bookmarks,
            listkeys, stream, publishing, allow_stream,
        )  # fmt: skip
    except AbortError as exc:
        bundler = Bundler()
        hint = getattr(exc, "hint", None)
        bundler.addpart(error_abort_part(str(exc).encode("utf-8", "replace"), hint))
    return bundler.getchunks()


def _getbundle2(
    repo: Any,
    heads: Sequence[bytes] | None,
    common: Sequence[bytes],
    b2caps: Capabilities,
    cg: bool,
    phases: bool,
    bookmarks: bool,
    namespaces: Iterable[bytes],
    stream: bool,
    publishing: bool,
    allow_stream: bool,
) -> Bundler:
    from hgwire.exchange import changegroup as cgmod
    from hgwire.exchange import streamclone
    from hgwire.repo import dagops
    from hgwire.repo import phases as phasemod
    from hgwire.repo.bookmarks import Bookmarks

    cl = repo.changelog
    dag, pc = _served(repo)
    served = pc.servable()
    bundler = Bundler(capabilities=b2caps)
    if stream:
        if not allow_stream:
            raise RemoteAbortError(
                b"stream data requested but server does not allow this feature",
                b"the client seems buggy",
            )
        if b"v2" not in b2caps.get(b"stream", []):
            raise RemoteAbortError(b"the client does not support streaming clone format v2")
        if pc.hidden_revs():
            raise RemoteAbortError(b"cannot stream clone a repository with secret changesets")
        bundler.addpart(streamclone.stream2_part(repo, phases=not publishing))
    # a stream part carries everything: what is missing is only needed without one (the
    # heads asked for are still checked)
    outgoing = None
    if not stream or heads is not None:
        outgoing = cgmod.findoutgoing(repo, common, heads, served=served, dag=dag)
    if cg and not stream and outgoing is not None and outgoing.missing:
        versions = b2caps.get(b"changegroup")
        produce = cgmod.outgoingversions(repo.requirements)
        if versions:
            common_versions = [v for v in versions if v in produce]
            if not common_versions:
                raise RemoteAbortError(b"no common changegroup version")
            version = max(common_versions)
        else:
            version = b"01"
        part = bundler.newpart(b"changegroup", data=cgmod.makechangegroup(repo, outgoing, version))
        if versions:
            part.addparam(b"version", version)
        part.addparam(b"nbchanges", b"%d" % outgoing.nbchanges, mandatory=False)
    if bookmarks:
        if b"bookmarks" not in b2caps:
            raise RemoteAbortError(b"no common bookmarks exchange method")
        marks = [(n, node) for n, node in Bookmarks(repo).items() if served[cl.rev(node)]]
        data = encodebookmarks(marks)
        if data:
            bundler.newpart(b"bookmarks", data=data)
    for ns in namespaces:
        keys = _listkeys(repo, ns, publishing, pc, served)
        bundler.newpart(b"listkeys", [(b"namespace", ns)], data=encodekeys(keys))
    if phases and not stream:
        if b"heads" not in b2caps.get(b"phases", []):
            raise RemoteAbortError(b"no common phases exchange method")
        assert outgoing is not None
        headrevs = [cl.rev(n) for n in outgoing.heads]
        byphase: dict[int, set[int]] = {}
        if publishing:
            byphase[phasemod.PUBLIC] = set(headrevs)
        else:
            for r in headrevs:
                byphase.setdefault(pc.phase(r), set()).add(r)
            draft = byphase.get(phasemod.DRAFT, set())
            if draft:
                public = byphase.get(phasemod.PUBLIC, set())
                inpublic = dagops.ancestor_marks(dag, public)
                indraft = dagops.ancestor_marks(dag, draft)
                only = [
                    r
                    for r in range(len(dag))
                    if indraft[r] and not inpublic[r] and pc.phase(r) == phasemod.PUBLIC
                ]
                byphase.setdefault(phasemod.PUBLIC, set()).update(dagops.headrevs_subset(dag, only))
        bundler.newpart(
            b"phase-heads",
            data=encodephaseheads({ph: [cl.node(r) for r in revs] for ph, revs in
                                   byphase.items()}),
        )  # fmt: skip
    if cg and not stream and outgoing is not None and outgoing.missing:
        if b"hgtagsfnodes" in b2caps:
            tags = hgtagsfnodes_part(repo, outgoing.heads)
            if tags is not None:
                bundler.addpart(tags)
        if b"rev-branch-cache" in b2caps:
            bundler.addpart(revbranchcache_part(repo, outgoing.missing))
    return bundler


def revbranchcache_part(repo: Any, revs: Iterable[int]) -> Part:
    """The advisory ``cache:rev-branch-cache`` part for changeset ``revs``."""
    cl = repo.changelog
    data: dict[bytes, tuple[list[bytes], list[bytes]]] = {}
    for r in revs:
        branch, closed = cl.branchinfo(r)
        data.setdefault(branch, ([], []))[1 if closed else 0].append(cl.node(r))
    payload = encoderevbranchcache((b, o, c) for b, (o, c) in data.items())
    return Part(b"cache:rev-branch-cache", data=payload, mandatory=False)


def hgtagsfnodes_part(repo: Any, heads: Iterable[bytes]) -> Part | None:
    """The advisory ``hgtagsfnodes`` part: the ``.hgtags`` filenode of each head
    (``nullid`` when it has none), which spares the client a manifest read per head."""
    from hgwire.exchange.changegroup import _manifestnode

    cl = repo.changelog
    ml = repo.manifestlog
    out = []
    for node in heads:
        mnode = _manifestnode(cl.rawdata(node))
        fnode = NULLID
        if mnode != NULLID:
            entry = ml.read(mnode).get(b".hgtags")
            if entry is not None:
                fnode = entry[0]
        out.append(node + fnode)
    if not out:
        return None
    return Part(b"hgtagsfnodes", data=b"".join(out), mandatory=False)


def makebundle(
    repo: Any,
    outgoing: Any,
    version: bytes = b"02",
    compression: bytes | None = b"BZ",
    phases: bool | None = None,
) -> Iterator[bytes]:
    """A bundle file as ``hg bundle -t <comp>-v2|v3`` writes it (§11): ``changegroup``,
    ``hgtagsfnodes``, ``cache:rev-branch-cache`` and, for v3 (or ``phases``),
    ``phase-heads`` with the phases of the bundled heads."""
    from hgwire.exchange import changegroup as cgmod
    from hgwire.repo import dagops

    b = Bundler(compression=compression)
    cgpart = b.newpart(
        b"changegroup",
        [(b"version", version)],
        [(b"nbchanges", b"%d" % outgoing.nbchanges)],
        cgmod.makechangegroup(repo, outgoing, version),
    )
    tags = hgtagsfnodes_part(repo, outgoing.heads)
    if tags is not None:
        b.addpart(tags)
    b.addpart(revbranchcache_part(repo, outgoing.missing))
    if phases or (phases is None and version == b"03"):
        # per phase, the heads of the bundled changesets in exactly that phase; new
        # changesets are first added in the highest phase of the heads (``targetphase``)
        dag, pc = _served(repo)
        cl = repo.changelog
        byphase: dict[int, list[bytes]] = {}
        for phase in (0, 1, 2):
            revs = [r for r in outgoing.missing if pc.phase(r) == phase]
            heads = dagops.headrevs_subset(dag, revs)
            byphase[phase] = [cl.node(r) for r in heads]
        target = max([1, *(pc.phase(cl.rev(n)) for n in outgoing.heads)])
        if target > 1:
            cgpart.addparam(b"targetphase", b"%d" % target, mandatory=False)
        b.newpart(b"phase-heads", data=encodephaseheads(byphase))
    return b.getchunks()


# ---------------------------------------------------------------------------------------
# Serving pushes: processing an unbundle request (§9.8)


def check_heads(
    repo: Any, their_heads: Sequence[bytes], context: bytes = b"preparing changes"
) -> None:
    """The ``heads`` argument of ``unbundle`` (wire §9.5): ``force``, a ``hashed`` digest
    or the served heads the client saw; a mismatch is a push race."""
    import hashlib

    if list(their_heads) == [b"force"]:
        return
    _dag, pc = _served(repo)
    cl = repo.changelog
    heads = [cl.node(r) for r in pc.served_heads()] or [NULLID]
    digest = hashlib.sha1(b"".join(sorted(heads))).digest()
    if sorted(their_heads) == sorted(heads):
        return
    if len(their_heads) == 2 and their_heads[0] == b"hashed" and their_heads[1] == digest:
        return
    raise PushRacedError(b"repository changed while " + context + b" - please try again")


@dataclass
class PushReply:
    """The outcome of :func:`unbundle`: the reply bundle, the text Mercurial would print
    on the server (for SSH stderr when not captured in ``output`` parts), the changegroup
    result and the error that aborted the push, if any."""

    bundler: Bundler
    output: list[bytes] = field(default_factory=list)
    result: Any = None
    error: Exception | None = None

    def getchunks(self) -> Iterator[bytes]:
        return self.bundler.getchunks()


_RACE = b"remote repository changed while pushing - please try again"


@dataclass
class _PushOp:
    repo: Any
    tr: Any
    publishing: bool
    capture: bool
    reply: Bundler | None = None
    replycaps: Capabilities = field(default_factory=dict)
    output: list[bytes] = field(default_factory=list)
    partoutput: list[bytes] = field(default_factory=list)
    result: Any = None

    def say(self, text: bytes) -> None:
        self.partoutput.append(text)


def _handle_replycaps(op: _PushOp, part: UnbundlePart) -> None:
    op.replycaps = decodecaps(part.read())
    if op.reply is None:
        op.reply = Bundler(capabilities=op.replycaps)


def _served_heads(op: _PushOp) -> list[bytes]:
    _dag, pc = _served(op.repo)
    cl = op.repo.changelog
    return [cl.node(r) for r in pc.served_heads()] or [NULLID]


def _handle_check_heads(op: _PushOp, part: UnbundlePart) -> None:
    heads = decodenodes(part.read())
    if sorted(heads) != sorted(_served_heads(op)):
        raise PushRacedError(_RACE)


def _handle_check_updated_heads(op: _PushOp, part: UnbundlePart) -> None:
    from hgwire.repo import branchmap

    heads = decodenodes(part.read())
    dag, pc = _served(op.repo)
    bmap = branchmap.for_repo(op.repo, dag, pc.servable())
    allheads = {r for _b, revs in bmap.items() for r in revs}
    cl = op.repo.changelog
    for n in heads:
        try:
            r = cl.rev(n)
        except HgwireError:
            raise PushRacedError(_RACE) from None
        if r not in allheads:
            raise PushRacedError(_RACE)


def _handle_check_phases(op: _PushOp, part: UnbundlePart) -> None:
    expected = decodephaseheads(part.read())
    _dag, pc = _served(op.repo)
    cl = op.repo.changelog
    for phase, nodes in sorted(expected.items()):
        for n in nodes:
            try:
                actual = pc.phase(cl.rev(n))
            except HgwireError:
                raise PushRacedError(_RACE + b" (%s is unknown)" % n.hex()[:12].encode()) from None
            if actual != phase:
                raise PushRacedError(
                    _RACE
                    + b" (%s is %s expected %s)"
                    % (n.hex()[:12].encode(), _phasename(actual), _phasename(phase))
                )


def _phasename(phase: int) -> bytes:
    return PHASE_NAMES[phase] if 0 <= phase < len(PHASE_NAMES) else b"%d" % phase


def _handle_check_bookmarks(op: _PushOp, part: UnbundlePart) -> None:
    from hgwire.repo.bookmarks import Bookmarks

    marks = Bookmarks(op.repo)
    for name, node in decodebookmarks(part.read()):
        current = marks.get(name)
        if current == node:
            continue
        if node is None:
            assert current is not None
            detail = b'(bookmark "%s" set on %s, expected missing)' % (
                name,
                current.hex()[:12].encode(),
            )
        elif current is None:
            detail = b'(bookmark "%s" is missing, expected %s)' % (name, node.hex()[:12].encode())
        else:
            detail = b'(bookmark "%s" move from %s to %s)' % (
                name,
                node.hex()[:12].encode(),
                current.hex()[:12].encode(),
            )
        raise PushRacedError(_RACE + b" " + detail)


def _handle_changegroup(op: _PushOp, part: UnbundlePart) -> None:
    from hgwire.exchange import changegroup as cgmod
    from hgwire.repo import phases as phasemod

    version = part.params.get(b"version", b"01")
    if version not in CG_VERSIONS:
        raise BundleUnknownFeatureError(parttype=b"changegroup", params=(b"version",))
    if b"treemanifest" in part.params:
        raise RemoteAbortError(
            b"bundle contains tree manifests, but this repository does not use them"
        )
    expected = None
    if b"nbchanges" in part.params:
        expected = part.intparam(b"nbchanges")
    op.say(b"adding changesets\nadding manifests\nadding file changes\n")
    phase = phasemod.PUBLIC if op.publishing else phasemod.DRAFT
    result = cgmod.apply(
        op.repo,
        cgmod.CgUnpacker(part, version),
        tr=op.tr,
        targetphase=phase,
        phaseall=phase,
        expectedtotal=expected,
    )
    if op.result is None:
        op.result = result
    else:  # several changegroup parts: add up
        op.result.added += result.added
        op.result.changesets += result.changesets
        op.result.revisions += result.revisions
        op.result.files += result.files
        op.result.deltaheads += result.deltaheads
    if op.reply is not None:
        op.reply.newpart(
            b"reply:changegroup",
            advisoryparams=[(b"in-reply-to", b"%d" % part.id), (b"return", b"%d" % result.ret)],
            mandatory=False,
        )


def _handle_phase_heads(op: _PushOp, part: UnbundlePart) -> None:
    from hgwire.repo import phases as phasemod

    byphase = decodephaseheads(part.read())
    pc = phasemod.PhaseCache.load(op.repo)
    cl = op.repo.changelog
    for phase in sorted(byphase):
        revs = []
        for n in byphase[phase]:
            try:
                revs.append(cl.rev(n))
            except HgwireError:
                raise RemoteAbortError(
                    b"phase-heads: unknown revision %s" % n.hex().encode()
                ) from None
        if revs and phase in phasemod.PHASE_NAMES:
            pc.advance_boundary(phase, revs)
    pc.write(op.tr, op.repo.svfs)


def _isdivergent(name: bytes) -> bool:
    return b"@" in name and not name.endswith(b"@")


def _handle_bookmarks(op: _PushOp, part: UnbundlePart) -> None:
    from hgwire.repo.bookmarks import Bookmarks

    changes = decodebookmarks(part.read())
    marks = Bookmarks(op.repo)
    for name, _node in changes:
        if _isdivergent(name):
            raise RemoteAbortError(b"cannot accept divergent bookmark %s!" % name)
    for name, node in changes:
        if node is None:
            marks.delete(name)
        else:
            try:
                marks.set(name, node)
            except HgwireError as exc:
                raise RemoteAbortError(
                    b"bookmark %s: %s" % (name, str(exc).encode("utf-8", "replace"))
                ) from None
    marks.write(op.tr)


def _pushkey_in(repo: Any, tr: Any, ns: bytes, key: bytes, old: bytes, new: bytes) -> bool:
    """Apply one pushkey update inside ``tr``; False when refused (as Mercurial's)."""
    from hgwire.repo import phases as phasemod
    from hgwire.repo.bookmarks import Bookmarks

    if ns == b"bookmarks":
        marks = Bookmarks(repo)
        ok = marks.pushkey(key, old, new)
        if ok:
            marks.write(tr)
        return ok
    if ns == b"phases":
        try:
            rev = repo.changelog.rev(bytes.fromhex(key.decode("ascii")))
            oldp, newp = abs(int(old)), abs(int(new))
        except (HgwireError, ValueError, UnicodeDecodeError):
            return False
        pc = phasemod.PhaseCache.load(repo)
        cur = pc.phase(rev)
        if cur == oldp and newp < oldp:
            pc.advance_boundary(newp, [rev])
            pc.write(tr, repo.svfs)
            return True
        return bool(cur == newp)  # raced, but the result is what was asked
    return False


def pushkey(repo: Any, namespace: bytes, key: bytes, old: bytes, new: bytes) -> bool:
    """The legacy ``pushkey`` wire command: move a bookmark (``old``/``new`` hex, empty
    for absent) or a phase (``key`` hex node, ``old``/``new`` phase numbers) under the
    locks, in its own transaction. Returns whether it was applied."""
    from hgwire.repo.bookmarks import BOOKMARKS_IN_STORE

    locks = []
    try:
        if BOOKMARKS_IN_STORE not in repo.requirements:
            locks.append(repo.wlock())
        locks.append(repo.lock())
        with repo.transaction(b"pushkey") as tr:
            return _pushkey_in(repo, tr, namespace, key, old, new)
    finally:
        for lk in reversed(locks):
            lk.release()


def _handle_pushkey(op: _PushOp, part: UnbundlePart) -> None:
    ns = part.param(b"namespace")
    key, old, new = part.param(b"key"), part.param(b"old"), part.param(b"new")
    ok = _pushkey_in(op.repo, op.tr, ns, key, old, new)
    if op.reply is not None:
        op.reply.newpart(
            b"reply:pushkey",
            advisoryparams=[(b"in-reply-to", b"%d" % part.id), (b"return", b"%d" % ok)],
        )
    if part.mandatory and not ok:
        fields = {k.decode(): part.params[k] for k in (b"namespace", b"key", b"new", b"old")}
        raise PushkeyFailedError(b"%d" % part.id, **fields)


def _ignore(op: _PushOp, part: UnbundlePart) -> None:
    part.consume()


_Handler = Callable[[_PushOp, UnbundlePart], None]

#: Part handlers of the push side: lower-case type -> (known parameters, handler).
PUSH_HANDLERS: dict[bytes, tuple[frozenset[bytes], _Handler]] = {
    b"replycaps": (frozenset(), _handle_replycaps),
    b"check:heads": (frozenset(), _handle_check_heads),
    b"check:updated-heads": (frozenset(), _handle_check_updated_heads),
    b"check:phases": (frozenset(), _handle_check_phases),
    b"check:bookmarks": (frozenset(), _handle_check_bookmarks),
    b"changegroup": (
        frozenset(
            {
                b"version",
                b"nbchanges",
                b"treemanifest",
                b"targetphase",
                b"exp-sidedata",
                b"exp-wanted-sidedata",
            }
        ),
        _handle_changegroup,
    ),
    b"phase-heads": (frozenset(), _handle_phase_heads),
    b"bookmarks": (frozenset(), _handle_bookmarks),
    b"pushkey": (frozenset({b"namespace", b"key", b"old", b"new"}), _handle_pushkey),
    b"pushvars": (frozenset(), _ignore),
    b"output": (frozenset(), _ignore),
    b"hgtagsfnodes": (frozenset(), _ignore),
    b"cache:rev-branch-cache": (frozenset(), _ignore),
}


def _dispatch(
    handlers: Mapping[bytes, tuple[frozenset[bytes], Callable[[Any, UnbundlePart], None]]],
    op: Any,
    part: UnbundlePart,
) -> bool:
    """Run the handler of ``part``; unknown advisory parts (or advisory parts with unknown
    mandatory parameters) are skipped, unknown mandatory ones raise (§9.2)."""
    entry = handlers.get(part.type)
    if entry is None:
        if part.mandatory:
            raise BundleUnknownFeatureError(parttype=part.type)
        part.consume()
        return False
    known, handler = entry
    unknown = tuple(sorted(k for k in part.mandatorykeys if k not in known))
    if unknown:
        if part.mandatory:
            raise BundleUnknownFeatureError(parttype=part.type, params=unknown)
        part.consume()
        return False
    handler(op, part)
    part.consume()
    return True


def _drain(fh: Readable) -> None:
    while fh.read(65536):
        pass


def unbundle(
    repo: Any,
    fh: Readable,
    *,
    publishing: bool = True,
    capture_output: bool = True,
    max_decompressed: int | None = None,
) -> PushReply:
    """Process a bundle2 push request read from ``fh`` (storage §9.8).

    Takes the locks (``wlock`` first when bookmarks live in ``.hg``), applies every
    part in one transaction and returns the reply bundle: ``reply:changegroup`` /
    ``reply:pushkey`` results and, when ``capture_output``, ``output`` parts with what
    Mercurial would print; on failure everything is rolled back and the reply carries
    ``error:abort``, ``error:pushraced``, ``error:pushkey`` or
    ``error:unsupportedcontent``. ``fh`` must end where the request ends: it is drained
    on error so the connection stays usable.
    """
    from hgwire.repo.bookmarks import BOOKMARKS_IN_STORE

    op: _PushOp | None = None
    locks: list[Any] = []
    try:
        unbundler = Unbundler(fh, max_decompressed=max_decompressed)
        if BOOKMARKS_IN_STORE not in repo.requirements:
            locks.append(repo.wlock())
        locks.append(repo.lock())
        tr = repo.transaction(b"push")
        op = _PushOp(repo, tr, publishing, capture_output)
        try:
            for part in unbundler.iterparts():
                op.partoutput = []
                _dispatch(PUSH_HANDLERS, op, part)
                if op.partoutput:
                    text = b"".join(op.partoutput)
                    op.output.append(text)
                    if capture_output and op.reply is not None:
                        op.reply.newpart(
                            b"output",
                            advisoryparams=[(b"in-reply-to", b"%d" % part.id)],
                            data=text,
                            mandatory=False,
                        )
            tr.close()
        finally:
            tr.release()
        if op.result is not None:
            summary = op.result.summary()
            op.output.append(summary)
            if capture_output and op.reply is not None:
                op.reply.newpart(b"output", data=summary, mandatory=False)
        reply = op.reply if op.reply is not None else Bundler()
        return PushReply(reply, op.output, op.result)
    except Exception as exc:  # any failure becomes an error part, never a traceback
        _drain(fh)
        err = Bundler()
        output = op.output if op is not None else []
        if capture_output:
            for text in output:
                err.newpart(b"output", data=text, mandatory=False)
        err.addpart(_error_part(exc, op.replycaps if op is not None else {}))
        return PushReply(err, output, None, exc)
    finally:
        for lk in reversed(locks):
            lk.release()
        repo.invalidate()


class PrefixedReader:
    """``fh`` with ``prefix`` read back in front (after peeking at a magic)."""

    def __init__(self, prefix: bytes, fh: Readable) -> None:
        self._prefix = prefix
        self._fh = fh

    def read(self, n: int = -1, /) -> bytes:
        if not self._prefix:
            return self._fh.read(n)
        if n < 0:
            out = self._prefix + self._fh.read()
            self._prefix = b""
            return out
        out = self._prefix[:n]
        self._prefix = self._prefix[n:]
        if len(out) < n:
            out += self._fh.read(n - len(out))
        return out


def peekmagic(fh: Readable) -> tuple[bytes, Readable]:
    """The first 4 bytes of ``fh`` (``HG20``, ``HG10``...) and a reader from the start."""
    magic = readexactly(fh, 4)
    return magic, PrefixedReader(magic, fh)


def unbundle_bundle1(repo: Any, fh: Readable, *, publishing: bool = True) -> tuple[int, bytes]:
    """Apply an ``HG10`` push (legacy clients): ``(result, output text)`` for the
    ``<int>\n<output>`` reply (wire §9.5). Errors propagate with nothing written."""
    from hgwire.exchange import changegroup as cgmod
    from hgwire.repo import phases as phasemod
    from hgwire.repo.bookmarks import BOOKMARKS_IN_STORE

    b = readbundle(fh)
    if b.kind != "HG10" or b.reader is None:
        raise BundleError(f"expected an HG10 bundle, got {b.kind}")
    phase = phasemod.PUBLIC if publishing else phasemod.DRAFT
    locks = []
    try:
        if BOOKMARKS_IN_STORE not in repo.requirements:
            locks.append(repo.wlock())
        locks.append(repo.lock())
        result = cgmod.apply(
            repo, cgmod.CgUnpacker(b.reader, b"01"), targetphase=phase, phaseall=phase
        )
    finally:
        for lk in reversed(locks):
            lk.release()
    text = b"adding changesets\nadding manifests\nadding file changes\n" + result.summary()
    return result.ret, text


def _error_part(exc: Exception, replycaps: Capabilities) -> Part:
    """The reply part describing ``exc`` (as Mercurial's wire ``unbundle`` builds it)."""
    if isinstance(exc, PushkeyFailedError) and b"pushkey" in replycaps.get(b"error", [b"pushkey"]):
        part = Part(b"error:pushkey", [(b"in-reply-to", exc.partid)])
        for k in ("namespace", "key", "new", "old", "ret"):
            if k in exc.fields:
                part.addparam(k.encode(), _truncate(exc.fields[k]), mandatory=False)
        return part
    if isinstance(exc, BundleUnknownFeatureError):
        part = Part(b"error:unsupportedcontent")
        if exc.parttype is not None:
            part.addparam(b"parttype", exc.parttype)
        if exc.params:
            part.addparam(b"params", _truncate(b"\0".join(exc.params)))
        return part
    if isinstance(exc, BundleError):
        return Part(b"error:unsupportedcontent")
    if isinstance(exc, PushRacedError):
        return Part(b"error:pushraced", [(b"message", _truncate(exc.message))])
    if isinstance(exc, RemoteAbortError):
        return error_abort_part(exc.message, exc.hint)
    if isinstance(exc, HgwireError):
        return error_abort_part(str(exc).encode("utf-8", "replace"))
    return error_abort_part(b"unexpected error: " + repr(exc).encode("utf-8", "replace"))


# ---------------------------------------------------------------------------------------
# Client side: reading replies (pull bundles and push replies)


@dataclass
class PullResult:
    """What :func:`apply_pull` did: the changegroup result (if any), bookmarks the
    server sent (``bookmarks`` part), pushkey listings (``listkeys`` parts), stream files
    written and the server's output lines."""

    changegroup: Any = None
    bookmarks: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    listkeys: dict[bytes, dict[bytes, bytes]] = field(default_factory=dict)
    streamed: tuple[int, int] | None = None
    output: list[bytes] = field(default_factory=list)


def apply_pull(repo: Any, fh: Readable, *, max_decompressed: int | None = None) -> PullResult:
    """Apply a ``getbundle`` bundle2 reply to ``repo`` in one transaction (§9.7).

    Changesets arrive draft, then ``phase-heads`` lowers phases; ``bookmarks`` and
    ``listkeys`` are returned for the caller to act on; ``stream2`` writes the store
    (``repo`` must be empty); ``error:abort`` raises :class:`RemoteAbortError`.
    """
    from hgwire.exchange import changegroup as cgmod
    from hgwire.exchange import streamclone
    from hgwire.repo import phases as phasemod

    res = PullResult()
    unbundler = Unbundler(fh, max_decompressed=max_decompressed)
    with repo.transaction(b"pull") as tr:
        for part in unbundler.iterparts():
            t = part.type
            if t == b"changegroup":
                version = part.params.get(b"version", b"01")
                if version not in CG_VERSIONS:
                    raise BundleUnknownFeatureError(parttype=t, params=(b"version",))
                unknown = tuple(sorted(part.mandatorykeys - {b"version", b"nbchanges"}))
                if unknown:
                    raise BundleUnknownFeatureError(parttype=t, params=unknown)
                target = phasemod.DRAFT
                if b"targetphase" in part.params:
                    target = part.intparam(b"targetphase")
                res.changegroup = cgmod.apply(
                    repo, cgmod.CgUnpacker(part, version), tr=tr, targetphase=target
                )
            elif t == b"phase-heads":
                _handle_phase_heads(_PushOp(repo, tr, True, False), part)
            elif t == b"bookmarks":
                res.bookmarks = decodebookmarks(part.read())
            elif t == b"listkeys":
                res.listkeys[part.param(b"namespace")] = decodekeys(part.read())
            elif t == b"stream2":
                count = part.intparam(b"filecount")
                reqs = streamclone.stream2_requirements(part.param(b"requirements"))
                res.streamed = streamclone.apply_files(
                    repo, streamclone.read_v2(part, count), reqs, tr=tr
                )
            elif t == b"output":
                res.output += part.read().splitlines()
            elif t == b"error:abort":
                raise RemoteAbortError(part.params.get(b"message", b""), part.params.get(b"hint"))
            elif part.mandatory:
                raise BundleUnknownFeatureError(parttype=t)
            part.consume()
    return res


def applybundle(repo: Any, fh: Readable, *, max_decompressed: int | None = None) -> PullResult:
    """Apply a bundle file of any kind (``hg unbundle``): ``HG20`` as :func:`apply_pull`,
    ``HG10`` as a draft changegroup, ``HGS1`` as a stream clone into an empty repo."""
    from hgwire.exchange import changegroup as cgmod
    from hgwire.exchange import streamclone

    magic, reader = peekmagic(fh)
    if magic == MAGIC:
        return apply_pull(repo, reader, max_decompressed=max_decompressed)
    b = readbundle(reader, max_decompressed=max_decompressed)
    assert b.reader is not None
    if b.kind == "HG10":
        return PullResult(changegroup=cgmod.apply(repo, cgmod.CgUnpacker(b.reader, b"01")))
    count, _size, reqs = streamclone.read_hgs1_header(b.reader, magic_read=True)
    files = streamclone.read_v1(b.reader, count)
    return PullResult(streamed=streamclone.apply_files(repo, files, reqs))


@dataclass
class PushResult:
    """A push reply read by :func:`read_push_reply`: ``changegroup`` results by
    in-reply-to part id, ``pushkey`` results likewise, and ``output`` lines."""

    changegroup: dict[int, int] = field(default_factory=dict)
    pushkey: dict[int, int] = field(default_factory=dict)
    output: list[bytes] = field(default_factory=list)


def read_push_reply(fh: Readable) -> PushResult:
    """Read an ``unbundle`` reply; error parts raise the matching exception."""
    res = PushResult()
    for part in Unbundler(fh).iterparts():
        p = part.params
        t = part.type
        if t == b"reply:changegroup":
            res.changegroup[part.intparam(b"in-reply-to")] = part.intparam(b"return")
        elif t == b"reply:pushkey":
            res.pushkey[part.intparam(b"in-reply-to")] = part.intparam(b"return")
        elif t == b"output":
            res.output += part.read().splitlines()
        elif t == b"error:abort":
            raise RemoteAbortError(p.get(b"message", b""), p.get(b"hint"))
        elif t == b"error:pushraced":
            raise PushRacedError(p.get(b"message", b""))
        elif t == b"error:unsupportedcontent":
            params = tuple(p[b"params"].split(b"\0")) if b"params" in p else ()
            raise BundleUnknownFeatureError(parttype=p.get(b"parttype"), params=params)
        elif t == b"error:pushkey":
            fields = {k.decode(): v for k, v in p.items() if k != b"in-reply-to"}
            raise PushkeyFailedError(p.get(b"in-reply-to", b"?"), **fields)
        elif part.mandatory:
            raise BundleUnknownFeatureError(parttype=t)
    return res
