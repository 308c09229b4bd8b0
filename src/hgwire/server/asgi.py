"""ASGI plumbing shared by the HTTP transports: the parsed request, the request body,
responses (fixed and streamed), and hgweb's status reason phrases.

ASGI has no field for the reason phrase, yet hgweb's statuses carry meaningful ones
(``401 pull not authorized``, ``403 ssl required``, spec §5.2). A response passes its
reason as an extra ``reason`` key of ``http.response.start``; :func:`install_reason_phrases`
makes uvicorn's h11 protocol use it (a context variable read by its phrase table).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, BinaryIO, cast
from urllib.parse import unquote_to_bytes

import anyio.to_thread

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Request bodies larger than this are spooled to a temporary file.
SPOOL_THRESHOLD = 1 << 20

log = logging.getLogger("hgwire.server")

_REASON: contextvars.ContextVar[str | None] = contextvars.ContextVar("hgwire_reason", default=None)


class ClientDisconnected(Exception):
    """The client went away while its request body was being read."""


class RequestTooLarge(Exception):
    """The request body is larger than the configured limit (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")
        self.limit = limit


def reason_for(status: int) -> str:
    """The standard reason phrase of ``status``."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class _Phrases(dict[int, bytes]):
    """uvicorn's status phrase table, answering the current response's own reason."""

    def __missing__(self, key: int) -> bytes:
        return reason_for(key).encode("latin-1")

    def __getitem__(self, key: int) -> bytes:
        reason = _REASON.get()
        if reason:
            return reason.encode("latin-1", "replace")
        return dict.__getitem__(self, key)


def install_reason_phrases() -> None:
    """Make uvicorn's h11 protocol send the reason phrases hgwire sets (idempotent)."""
    try:
        from uvicorn.protocols.http import h11_impl
    except ImportError:  # pragma: no cover - uvicorn is a dependency
        return
    table = getattr(h11_impl, "STATUS_PHRASES", None)
    if isinstance(table, dict) and not isinstance(table, _Phrases):
        h11_impl.STATUS_PHRASES = _Phrases(table)


def parse_query(qs: bytes) -> list[tuple[bytes, bytes]]:
    """Form-urlencoded pairs as bytes, blank values kept; any percent escape decodes to
    its byte (no text decoding, so arbitrary bytes survive)."""
    out: list[tuple[bytes, bytes]] = []
    for part in qs.split(b"&"):
        if not part:
            continue
        key, _, value = part.partition(b"=")
        out.append(
            (unquote_to_bytes(key.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" ")))
        )
    return out


@dataclass
class Request:
    """One HTTP request as the transports see it."""

    scope: Scope
    receive: Receive
    method: str
    #: Path segments after the repository's own path (hgweb's ``dispatchparts``).
    dispatchparts: list[str]
    #: Query parameters in order, bytes (``keep_blank_values``).
    query: list[tuple[bytes, bytes]]
    #: Lower-case header name -> value (the first of repeated headers).
    headers: dict[str, str]
    scheme: str
    client: str
    #: The authenticated user (HTTP Basic against the password file), if any.
    user: str | None = None
    #: Whether the request carried credentials at all.
    credentials: bool = False
    #: Whether the server authenticates users (a password file is configured).
    auth_enabled: bool = False
    #: Set by the transports for the access log: the command(s) served.
    commands: list[str] = field(default_factory=list)
    body_consumed: bool = False
    #: The largest body :meth:`body_chunks` delivers (None: no limit).
    max_body: int | None = None

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive, dispatchparts: list[str]) -> Request:
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            key = name.decode("latin-1").lower()
            if key not in headers:
                headers[key] = value.decode("latin-1")
        client = scope.get("client") or ("-", 0)
        return cls(
            scope=scope,
            receive=receive,
            method=scope.get("method", "GET"),
            dispatchparts=dispatchparts,
            query=parse_query(scope.get("query_string", b"")),
            headers=headers,
            scheme=scope.get("scheme", "http"),
            client=str(client[0]),
        )

    def path_parts(self) -> list[str]:
        """The non-empty segments of the request path."""
        return [p for p in str(self.scope.get("path", "/")).split("/") if p]

    def qs(self, name: bytes) -> bytes | None:
        """The first value of query parameter ``name``."""
        for k, v in self.query:
            if k == name:
                return v
        return None

    def header_series(self, prefix: str) -> str:
        """``<prefix>-1``, ``<prefix>-2``... concatenated up to the first missing one."""
        chunks = []
        i = 1
        prefix = prefix.lower()
        while (v := self.headers.get(f"{prefix}-{i}")) is not None:
            chunks.append(v)
            i += 1
        return "".join(chunks)

    async def body_chunks(self) -> AsyncIterator[bytes]:
        """The request body as it arrives."""
        if self.body_consumed:
            return
        self.body_consumed = True
        limit = self.max_body
        if limit is not None:
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise RequestTooLarge(limit)
        received = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            if chunk:
                received += len(chunk)
                if limit is not None and received > limit:
                    raise RequestTooLarge(limit)
                yield chunk
            if not message.get("more_body", False):
                return

    @contextlib.asynccontextmanager
    async def disconnect_watch(self) -> AsyncIterator[Callable[[], bool]]:
        """While streaming a response: a function telling whether the client went away
        (then production stops instead of computing a response nobody reads)."""
        gone = False

        async def watch() -> None:
            nonlocal gone
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    return

        task = asyncio.ensure_future(watch())
        try:
            yield lambda: gone
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def read_exactly(self, n: int, chunks: AsyncIterator[bytes]) -> tuple[bytes, bytes]:
        """The first ``n`` bytes of ``chunks`` and what was read past them."""
        buf = bytearray()
        async for chunk in chunks:
            buf += chunk
            if len(buf) >= n:
                break
        return bytes(buf[:n]), bytes(buf[n:])

    async def spool(self, chunks: AsyncIterator[bytes], first: bytes = b"") -> BinaryIO:
        """The rest of the body in a file-like object (on disk above the threshold)."""
        spooled = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=SPOOL_THRESHOLD))  # noqa: SIM115
        try:
            if first:
                spooled.write(first)
            async for chunk in chunks:
                spooled.write(chunk)
        except BaseException:
            spooled.close()
            raise
        spooled.seek(0)
        return spooled


@dataclass
class Response:
    """A complete (non-streamed) response."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


def _encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def start_response(
    send: Send,
    status: int,
    headers: list[tuple[str, str]],
    reason: str | None = None,
) -> None:
    """Send ``http.response.start`` with hgweb's reason phrase."""
    reason = reason or reason_for(status)
    _REASON.set(reason)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": _encode_headers(headers),
            "reason": reason,
        }
    )


async def send_response(send: Send, response: Response) -> int:
    """Send a complete response; returns the body length."""
    headers = list(response.headers)
    if response.content_type is not None:
        headers.append(("Content-Type", response.content_type))
    headers.append(("Content-Length", str(len(response.body))))
    await start_response(send, response.status, headers, response.reason)
    await send({"type": "http.response.body", "body": response.body, "more_body": False})
    return len(response.body)


def text(status: int, body: str | bytes, reason: str | None = None, **kw: Any) -> Response:
    """A ``text/plain`` response."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    return Response(status, data, "text/plain", reason, **kw)


async def stream_pieces(
    send: Send,
    request: Request | None,
    pieces: Iterator[bytes | memoryview],
    batch_size: int,
) -> int:
    """Send ``pieces`` as the rest of a started response's body, produced in a worker
    thread and joined into HTTP chunks of about ``batch_size`` bytes. Production stops
    when the client goes away; ``pieces`` is closed in any case (releasing what its
    producer holds). Returns the number of bytes sent."""
    it = iter(pieces)
    done = False

    def batch() -> bytes:
        nonlocal done
        out: list[bytes | memoryview] = []
        size = 0
        while size < batch_size:
            try:
                piece = next(it)
            except StopIteration:
                done = True
                break
            out.append(piece)
            size += len(piece)
        return b"".join(out)

    sent = 0
    async with contextlib.AsyncExitStack() as stack:
        gone = (
            await stack.enter_async_context(request.disconnect_watch())
            if request is not None
            else (lambda: False)
        )
        try:
            while not done and not gone():
                data = await anyio.to_thread.run_sync(batch)
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                    sent += len(data)
        except Exception:
            # Headers are out: the only way to tell the client is to cut the stream short.
            log.exception("error while streaming a response")
            raise
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return sent
