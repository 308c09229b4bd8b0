"""The one exception hierarchy of hgwire.

Everything hgwire raises on purpose derives from :class:`HgwireError`. Bad input from a
peer becomes a :class:`ProtocolError` or :class:`CommandError` sent back to that peer;
damaged or unsupported repositories raise :class:`RepositoryError`.
"""

from __future__ import annotations


class HgwireError(Exception):
    """Base class of every error hgwire raises deliberately."""


class ProtocolError(HgwireError):
    """A peer violated the wire protocol (framing, state machine, settings)."""


class FrameError(ProtocolError):
    """A frame could not be read or built (bad header, short payload, too large)."""


class CBORDecodeError(ProtocolError):
    """Bytes that are not CBOR hgwire accepts (Mercurial's subset, within limits)."""


class CBOREncodeError(HgwireError):
    """A value that cannot be encoded in Mercurial's CBOR subset."""


class EncodingError(ProtocolError):
    """A content-encoding (zlib, zstd-8mb) stream failed or exceeded its limits."""


def format_message(message: bytes, args: list[bytes] | tuple[bytes, ...]) -> bytes:
    """``message % args`` as Mercurial renders a v2 error; the raw format when the
    peer-supplied format does not fit its arguments (``b"%\xfb" % x`` even overflows)."""
    if not args:
        return message
    try:
        return message % tuple(args)
    except (TypeError, ValueError, OverflowError):
        return message


class CommandError(HgwireError):
    """A command rejected its arguments or failed in a way the client should be told.

    ``message`` is a bytes format with ``%s`` placeholders filled from ``args``, the shape
    Mercurial's v2 status map uses.
    """

    def __init__(self, message: bytes, args: list[bytes] | None = None) -> None:
        self.message = message
        self.msgargs = list(args or [])
        super().__init__(format_message(message, self.msgargs).decode("utf-8", "replace"))


class RepositoryError(HgwireError):
    """A repository is damaged, unsupported or cannot be opened."""


class LockError(RepositoryError):
    """A repository lock could not be taken."""


class AbortError(HgwireError):
    """An operation was stopped with a message for the user (like Mercurial's abort)."""


class LookupNodeError(RepositoryError):
    """A node (or revision number) is not in a revlog; ``key`` is what was looked up."""

    def __init__(self, key: bytes | int, name: str = "") -> None:
        self.key = key
        self.name = name
        shown = key.hex() if isinstance(key, bytes) else str(key)
        super().__init__(f"{name}: no node {shown}" if name else f"no node {shown}")


class BundleError(ProtocolError):
    """A changegroup, bundle2 or stream-clone byte stream is malformed or truncated."""


class BundleUnknownFeatureError(BundleError):
    """A bundle2 stream needs something we do not support (spec storage §9.1, §9.2).

    ``parttype`` names an unknown mandatory part, ``params`` unknown mandatory
    parameters (of that part, or of the stream when ``parttype`` is ``None``).
    """

    def __init__(self, parttype: bytes | None = None, params: tuple[bytes, ...] = ()) -> None:
        self.parttype = parttype
        self.params = tuple(params)
        what = []
        if parttype is not None:
            what.append("part type " + parttype.decode("latin-1"))
        if self.params:
            names = ", ".join(p.decode("latin-1") for p in self.params)
            what.append("parameters " + names)
        super().__init__("missing support for " + "; ".join(what or ["unknown feature"]))


class UnknownRevisionError(HgwireError):
    """A revision symbol (``lookup`` key) names no served changeset.

    Not a :class:`CommandError`: Mercurial 6.0 answers an unknown ``lookup`` key with a
    server error (an ``error-response`` frame, wire spec §3.4 / §8.2), whose message is
    ``str()`` of this exception, e.g. ``unknown revision 'nope'``.
    """

    def __init__(self, message: bytes) -> None:
        self.message = message
        super().__init__(message.decode("utf-8", "surrogateescape"))
