"""Typed events returned by the sans-IO reactors of the frame protocol (spec §3.7, §3.8).

A reactor never performs I/O: it is told what happened (a frame arrived, a command
produced objects, input ended) and answers with one of these frozen dataclasses telling
the caller what to do next. They replace Mercurial's ``(action, dict)`` tuples.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hgwire.errors import ProtocolError, format_message
from hgwire.wire.frames import Frame


class ReactorProtocolError(ProtocolError):
    """A peer violated the frame protocol; ``state`` is the reactor state it happened in."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.message = message
        self.state = state


# --- events shared by both reactors -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendFrames:
    """Send these frames to the peer, in order.

    ``frames`` may be a lazy iterator (a command's response is produced while it is sent);
    the reactor assumes every frame is sent once the iterator is exhausted.
    """

    frames: Iterable[Frame]

    def iter_chunks(self) -> Iterator[bytes | memoryview]:
        """Header and payload of each frame as separate chunks (payloads are not copied)."""
        for frame in self.frames:
            header, payload = frame.chunks()
            yield header
            if payload:
                yield payload

    def to_bytes(self) -> bytes:
        """All frames joined (convenient for tests and small responses)."""
        return b"".join(bytes(c) for c in self.iter_chunks())


@dataclass(frozen=True, slots=True)
class ProtocolErrorEvent:
    """The peer violated the protocol (message as Mercurial words it).

    ``state`` is the reactor state the offending frame arrived in. A server reactor is
    ``errored`` from then on.
    """

    message: str
    state: str

    def exception(self) -> ReactorProtocolError:
        """The same error as an exception, for callers that prefer raising."""
        return ReactorProtocolError(self.message, self.state)


@dataclass(frozen=True, slots=True)
class NoOp:
    """Nothing to do."""


# --- server events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WantFrame:
    """Nothing to do until more frames arrive; ``state`` is the server state."""

    state: str


class CommandData:
    """Command data (``command-data`` frames) readable while it arrives (spec §3.2).

    Only handed out when the server reactor runs with ``stream_command_data=True``; by
    default the data is collected and given to :class:`RunCommand` as bytes at ``eos``.
    """

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self._chunks: list[bytes] = []
        self.received = 0
        self.eos = False

    def feed(self, data: bytes, eos: bool) -> None:
        """Called by the reactor for each data frame."""
        if data:
            self._chunks.append(data)
            self.received += len(data)
        if eos:
            self.eos = True

    def read(self) -> bytes:
        """Every byte received since the last call."""
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


@dataclass(frozen=True, slots=True)
class RunCommand:
    """A command request is complete: run it (spec §3.1, §3.7).

    ``data`` is None without ``have-data``; bytes once data arrived completely (default);
    or a :class:`CommandData` still being fed in streaming mode.
    """

    request_id: int
    command: bytes
    args: dict[bytes, Any]
    redirect: dict[bytes, Any] | None = None
    data: bytes | CommandData | None = None


@dataclass(frozen=True, slots=True)
class CommandDataReceived:
    """More data arrived for a command already dispatched (streaming mode only)."""

    request_id: int
    size: int
    eos: bool


# --- client events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseData:
    """Decoded ``command-response`` payload bytes for ``request_id`` (spec §3.3)."""

    request_id: int
    data: bytes
    eos: bool
    expect_more: bool = False


@dataclass(frozen=True, slots=True)
class ResponseObjects:
    """CBOR values decoded from a response so far (the status map comes first)."""

    request_id: int
    objects: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ResponseComplete:
    """The response to ``request_id`` ended (``eos``) without a server error."""

    request_id: int


@dataclass(frozen=True, slots=True)
class CommandFailed:
    """The status map said ``error`` (a command error, spec §3.4 kind 1)."""

    request_id: int
    message: bytes
    args: list[bytes]

    def formatted(self) -> bytes:
        """``message % args`` as Mercurial renders it."""
        return format_message(self.message, tuple(self.args))


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An ``error-response`` frame (spec §3.4 kind 2): ``message`` is the list of atoms."""

    request_id: int
    type: bytes
    message: Any


@dataclass(frozen=True, slots=True)
class Redirect:
    """The status map is a content redirect (spec §3.6); the transport fetches ``location``."""

    request_id: int
    location: dict[bytes, Any]


@dataclass(frozen=True, slots=True)
class TextOutput:
    """A ``text-output`` frame (spec §3.5): atoms of ``{msg, args?, labels?}`` maps."""

    request_id: int
    atoms: list[Any]


@dataclass(frozen=True, slots=True)
class Progress:
    """A ``progress`` frame (spec §3.5)."""

    request_id: int
    topic: bytes
    pos: int | None
    total: int | None
    label: bytes | None = None
    item: bytes | None = None


ServerEvent = RunCommand | SendFrames | WantFrame | NoOp | ProtocolErrorEvent | CommandDataReceived
ClientEvent = (
    SendFrames
    | NoOp
    | ProtocolErrorEvent
    | ResponseData
    | ResponseObjects
    | ResponseComplete
    | CommandFailed
    | ErrorResponse
    | Redirect
    | TextOutput
    | Progress
)
