"""The version 1 HTTP transport: ``?cmd=<name>`` at a repository's root (spec §5.1-§5.4).

Arguments come from the query string, ``X-HgArg-<N>`` headers or the start of a POST
body (``X-HgArgs-Post``, ``httppostargs``); ``X-HgProto-<N>`` names the client's media
types and compression engines. Responses are rendered as hgweb renders them (§5.2):
``application/mercurial-0.1`` raw or zlib, ``-0.2`` with the negotiated engine, or
``application/hg-error``. ``?cmd=capabilities`` with ``X-HgUpgrade`` and ``cbor`` answers
the CBOR API descriptor of the upgrade handshake (§5.4).

Deliberate differences from hgweb: a missing required argument gets an
``application/hg-error`` reply naming it (hgweb fails with HTTP 500); an unknown command
gets ``400 no such method: <cmd>`` as plain text (hgwire has no web UI to fall back to).
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import anyio.to_thread
import zstandard

from hgwire.commands.context import CommandContext, ServerConfig
from hgwire.commands.registry import (
    BytesResponse,
    OutOfBandError,
    PushError,
    PushResponse,
    Registry,
    StreamResponse,
    V1Command,
    V1Response,
)
from hgwire.errors import HgwireError, RepositoryError
from hgwire.repo.localrepo import Repository
from hgwire.server import auth
from hgwire.server.asgi import (
    Request,
    Response,
    Send,
    parse_query,
    send_response,
    start_response,
    stream_pieces,
)
from hgwire.server.config import ServedRepo
from hgwire.wire import cbor

log = logging.getLogger("hgwire.server")

HGTYPE = "application/mercurial-0.1"
HGTYPE2 = "application/mercurial-0.2"
HGERRTYPE = "application/hg-error"
CBORTYPE = "application/mercurial-cbor"
#: The only API hgwire serves under ``/api/`` (spec §5.5).
HTTP_V2_API = "exp-http-v2-0003"
#: Streamed bodies are sent in HTTP chunks of about this size.
STREAM_BATCH = 256 * 1024

OK_REASON = "Script output follows"


# --- request decoding (spec §5.1) ----------------------------------------------------------


def protocaps(request: Request) -> frozenset[bytes]:
    """The client's ``X-HgProto`` parameters (spec §5.1)."""
    value = request.header_series("x-hgproto")
    return frozenset(value.encode("latin-1").split(b" ")) - {b""}


def header_args(request: Request) -> bytes:
    """The ``X-HgArg-<N>`` argument string (spec §5.1 way 2)."""
    return request.header_series("x-hgarg").encode("latin-1")


def merge_args(query: list[tuple[bytes, bytes]], encoded: bytes) -> dict[bytes, list[bytes]]:
    """Query parameters updated with the header/body argument string (header wins)."""
    args: dict[bytes, list[bytes]] = {}
    for k, v in query:
        args.setdefault(k, []).append(v)
    extra: dict[bytes, list[bytes]] = {}
    for k, v in parse_query(encoded):
        extra.setdefault(k, []).append(v)
    args.update(extra)
    return args


class MissingArgument(HgwireError):
    """A v1 command was called without one of its named arguments."""


def command_args(spec: bytes, given: dict[bytes, list[bytes]]) -> dict[bytes, bytes]:
    """The arguments a v1 command receives: its named ones (all required, as in hg) and,
    for ``*`` commands, every other parameter except ``cmd``."""
    names = spec.split()
    out: dict[bytes, bytes] = {}
    for name in names:
        if name == b"*":
            for key, values in given.items():
                if key != b"cmd" and key not in names:
                    out[key] = values[0]
            continue
        if name not in given:
            raise MissingArgument(f"missing argument for command: {name.decode('latin-1')}")
        out[name] = given[name][0]
    return out


# --- response type and compression (spec §5.2) -----------------------------------------------


def client_compression(caps: frozenset[bytes]) -> list[bytes]:
    """Engines named by ``comp=`` in the client's parameters; ``zlib,none`` without."""
    for cap in sorted(caps):
        if cap.startswith(b"comp="):
            return cap[5:].split(b",")
    return [b"zlib", b"none"]


def response_type(
    caps: frozenset[bytes], config: ServerConfig, prefer_uncompressed: bool
) -> tuple[str, str, int | None]:
    """``(media type, engine, level)`` for a compressible stream (``_httpresponsetype``)."""
    if b"0.2" in caps:
        if prefer_uncompressed:
            return HGTYPE2, "none", None
        wanted = client_compression(caps)
        for engine in config.compressionengines:
            if engine == b"none":
                continue  # server priority 0: never chosen by the server (spec §5.2)
            if engine in wanted:
                level = config.zstdlevel if engine == b"zstd" else config.zliblevel
                return HGTYPE2, engine.decode(), level
    return HGTYPE, "zlib", config.zliblevel


def compressor(engine: str, level: int | None) -> Callable[[bytes | None], bytes]:
    """A function compressing successive chunks; ``None`` flushes the end of the stream."""
    if engine == "none":
        return lambda chunk: chunk or b""
    if engine == "zlib":
        z = zlib.compressobj(-1 if level is None else level)

        def zl(chunk: bytes | None) -> bytes:
            return z.compress(chunk) if chunk is not None else z.flush()

        return zl
    if engine == "zstd":
        c = zstandard.ZstdCompressor(level=3 if level is None else level).compressobj()

        def zs(chunk: bytes | None) -> bytes:
            return c.compress(chunk) if chunk is not None else c.flush()

        return zs
    raise HgwireError(f"unknown compression engine {engine}")


def advertised_engines(config: ServerConfig) -> list[bytes]:
    """Engines for the ``compression=`` capability (server priority > 0, §7.1)."""
    return [e for e in config.compressionengines if e != b"none"]


# --- permission refusals ---------------------------------------------------------------------


def refusal(request: Request, denied: auth.Denied, body: bytes) -> Response:
    """hgweb's answer to a refused permission check (spec §5.2): no Content-Type."""
    headers: list[tuple[str, str]] = []
    if denied.status == 401 and request.auth_enabled and not request.credentials:
        headers.append(("WWW-Authenticate", f'Basic realm="{auth.REALM}"'))
    return Response(denied.status, body, None, denied.reason, headers)


def v1_refusal(request: Request, denied: auth.Denied) -> Response:
    return refusal(request, denied, b"0\n%s\n" % denied.reason.encode())


# --- dispatch ----------------------------------------------------------------------------------


def open_repo(served: ServedRepo) -> Repository:
    """The repository, opened for one request (readers never roll back journals). An
    error names the repository by its URL path, never by where it lives on the server
    (the filesystem path is logged)."""
    try:
        return Repository.open(served.root, recover=False, search=False)
    except RepositoryError as exc:
        log.error("opening %s: %s", served.root, exc)
        message = str(exc).replace(str(served.root), "/" + served.name)
        raise RepositoryError(message) from None


def run_v1(
    cmd: V1Command, ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None
) -> V1Response:
    return cmd.func(ctx, args, payload)


def v1_capabilities(registry: Registry, served: ServedRepo, caps: frozenset[bytes]) -> bytes:
    """What the v1 ``capabilities`` command answers over HTTP (b"" when not registered)."""
    cmd = registry.v1.get(b"capabilities")
    if cmd is None:
        return b""
    ctx = CommandContext(open_repo(served), served.settings().config, "http-v1", caps)
    rsp = cmd.func(ctx, {}, None)
    if isinstance(rsp, BytesResponse):
        return rsp.data
    raise HgwireError("capabilities did not answer bytes")


def handshake_map(
    registry: Registry, served: ServedRepo, request: Request, caps: frozenset[bytes]
) -> dict[bytes, Any] | None:
    """The CBOR map of the upgrade handshake, or None to answer v1 (spec §5.4)."""
    from hgwire.commands import v2

    config = served.settings().config
    if not config.apiserver:
        return None
    clientapis = request.header_series("x-hgupgrade")
    if not clientapis or not caps or b"cbor" not in caps:
        return None
    available = {HTTP_V2_API} if config.api_http_v2 else set()
    apis: dict[bytes, Any] = {}
    for api in sorted(set(clientapis.split()) & available):
        ctx = CommandContext(open_repo(served), config, "http-v2", caps)
        apis[api.encode()] = v2.capabilities_map(ctx)
    return {
        b"apibase": b"api/",
        b"apis": apis,
        b"v1capabilities": v1_capabilities(registry, served, caps),
    }


async def handle(
    request: Request, send: Send, served: ServedRepo, registry: Registry, cmdname: bytes
) -> int:
    """Serve one ``?cmd=`` request; returns the number of body bytes sent."""
    name = cmdname.decode("latin-1")
    request.commands.append(name)
    cmd = registry.v1.get(cmdname)
    # The handshake does not need the v1 command (it may not be registered).
    handshake_only = cmd is None and cmdname == b"capabilities"
    if cmd is None and not handshake_only:
        return await send_response(
            send, Response(400, f"no such method: {name}\n".encode(), "text/plain",
                           f"no such method: {name}")
        )  # fmt: skip
    if request.dispatchparts:
        return await send_response(send, Response(404, b"0\nNot Found\n", HGTYPE))
    if cmd is not None and "http-v1" not in cmd.transports:
        msg = b"requested wire protocol command is not available over HTTP"
        return await send_response(send, Response(200, msg, HGERRTYPE, OK_REASON))
    settings = served.settings()
    permission: auth.Operation = cmd.permission if cmd is not None else "pull"
    denied = auth.check(settings.access, permission, request.user, request.method, request.scheme)
    if denied is not None:
        return await send_response(send, v1_refusal(request, denied))
    caps = protocaps(request)

    if cmdname == b"capabilities":
        m = await anyio.to_thread.run_sync(handshake_map, registry, served, request, caps)
        if m is not None:
            return await send_response(send, Response(200, cbor.dumps(m), CBORTYPE))
    if cmd is None:
        return await send_response(
            send, Response(400, f"no such method: {name}\n".encode(), "text/plain",
                           f"no such method: {name}")
        )  # fmt: skip

    chunks = request.body_chunks()
    postlen_text = request.headers.get("x-hgargs-post", "0")
    try:
        postlen = int(postlen_text)
    except ValueError:
        postlen = -1
    if postlen < 0:
        msg = b"invalid X-HgArgs-Post header\n"
        return await send_response(send, Response(400, msg, "text/plain"))
    if postlen:
        encoded, rest = await request.read_exactly(postlen, chunks)
        if len(encoded) < postlen:
            msg = b"request body shorter than its X-HgArgs-Post arguments\n"
            return await send_response(send, Response(400, msg, "text/plain"))
    else:
        encoded, rest = header_args(request), b""
    given = merge_args(request.query, encoded)
    try:
        args = command_args(cmd.args, given)
    except MissingArgument as exc:
        return await send_response(
            send, Response(200, str(exc).encode() + b"\n", HGERRTYPE, OK_REASON)
        )
    payload: BinaryIO | None = None
    if request.method == "POST":
        payload = await request.spool(chunks, rest)
        if payload.seek(0, 2) == 0:
            payload.close()
            payload = None
        else:
            payload.seek(0)

    # What this request may do, for sub-commands of ``batch`` (hg checks each one).
    held = frozenset(
        op
        for op in ("pull", "push")
        if auth.check(settings.access, op, request.user, request.method, request.scheme) is None
    )

    def dispatch() -> V1Response:
        ctx = CommandContext(open_repo(served), settings.config, "http-v1", caps, permissions=held)
        return run_v1(cmd, ctx, args, payload)

    try:
        try:
            rsp = await anyio.to_thread.run_sync(dispatch)
        except HgwireError as exc:
            log.info("v1 command %s failed: %s", name, exc)
            return await send_response(
                send, Response(200, str(exc).encode() + b"\n", HGERRTYPE, OK_REASON)
            )
        except Exception:
            log.exception("v1 command %s failed", name)
            return await send_response(send, Response(500, b"Internal Server Error", "text/plain"))
        return await render(send, rsp, caps, settings.config, request)
    finally:
        if payload is not None:
            payload.close()


async def render(
    send: Send,
    rsp: V1Response,
    caps: frozenset[bytes],
    config: ServerConfig,
    request: Request | None = None,
) -> int:
    """Send a v1 response as hgweb does (spec §5.2 table)."""
    if isinstance(rsp, BytesResponse):
        return await send_response(send, Response(200, rsp.data, HGTYPE, OK_REASON))
    if isinstance(rsp, PushResponse):
        body = b"%d\n%s" % (rsp.result, rsp.output)
        return await send_response(send, Response(200, body, HGTYPE, OK_REASON))
    if isinstance(rsp, PushError):
        return await send_response(send, Response(200, b"0\n%s\n" % rsp.message, HGTYPE, OK_REASON))
    if isinstance(rsp, OutOfBandError):
        return await send_response(send, Response(200, rsp.message, HGERRTYPE, OK_REASON))
    if isinstance(rsp, StreamResponse):
        if rsp.compressible:
            mediatype, engine, level = response_type(caps, config, rsp.prefer_uncompressed)
        else:
            mediatype, engine, level = HGTYPE, "none", None
        prefix = b""
        if mediatype == HGTYPE2:
            prefix = struct.pack("B", len(engine)) + engine.encode()
        return await stream_body(
            send, mediatype, rsp.chunks, compressor(engine, level), prefix, request
        )
    raise HgwireError(f"unknown v1 response type {type(rsp).__name__}")


class Compressed:
    """``chunks`` through ``compress``, its end flushed; closing this closes ``chunks``
    (even before the first piece was asked for)."""

    def __init__(self, chunks: Iterator[bytes], compress: Callable[[bytes | None], bytes]):
        self._chunks = chunks
        self._pieces = self._run(iter(chunks), compress)

    @staticmethod
    def _run(it: Iterator[bytes], compress: Callable[[bytes | None], bytes]) -> Iterator[bytes]:
        for chunk in it:
            data = compress(bytes(chunk))
            if data:
                yield data
        tail = compress(None)
        if tail:
            yield tail

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._pieces)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


async def stream_body(
    send: Send,
    mediatype: str,
    chunks: Iterator[bytes],
    compress: Callable[[bytes | None], bytes],
    prefix: bytes = b"",
    request: Request | None = None,
) -> int:
    """Stream ``chunks`` (produced and compressed in a worker thread) as a chunked body."""
    await start_response(send, 200, [("Content-Type", mediatype)], OK_REASON)
    sent = 0
    if prefix:
        await send({"type": "http.response.body", "body": prefix, "more_body": True})
        sent += len(prefix)
    return sent + await stream_pieces(send, request, Compressed(chunks, compress), STREAM_BATCH)
