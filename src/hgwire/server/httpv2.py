"""The ``/api/`` URL space and the HTTP frame-protocol service (spec §3.7, §5.5, §5.6).

``POST /api/exp-http-v2-0003/{ro,rw}/<command>`` is checked in 6.0's order (§5.6), the
request body is fed to a half-duplex :class:`~hgwire.wire.server.ServerReactor` as it
arrives, each command is dispatched as soon as it is complete (its output generator is
queued), and after the end of the body every response is streamed, its frames produced
in a worker thread (repository reads never run on the event loop).

Deliberate differences from 6.0, each answering where 6.0 misbehaves:

* ``ro/<command>`` for a command needing ``push`` is refused with ``403 Forbidden``,
  ``insufficient permissions to execute command: <name>`` (6.0 runs it, Appendix B.7) —
  the answer 6.0 itself gives for the same command inside ``ro/multirequest``.
* An empty body, a request left incomplete, a truncated frame, invalid CBOR or an
  ``encoded`` request frame are protocol errors answered like 6.0's other protocol
  errors, ``200 text/plain <message>\\n`` (6.0: HTTP 500, Appendix B.8).
* A client listing only unknown content encodings gets ``identity`` (6.0 breaks the
  response mid-body).
* A command producing no output still gets ``{status: ok}`` and ``eos``.
* Exceptions that are not hgwire errors are logged with their traceback and sent as an
  ``error-response`` frame, like every other server error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio.to_thread

from hgwire.commands.context import CommandContext
from hgwire.commands.registry import Registry, V2Command
from hgwire.errors import CommandError, HgwireError
from hgwire.server import auth
from hgwire.server.asgi import (
    Request,
    Response,
    Send,
    send_response,
    start_response,
    stream_pieces,
    text,
)
from hgwire.server.config import ServedRepo
from hgwire.server.httpv1 import HTTP_V2_API, open_repo, refusal
from hgwire.wire.events import NoOp, ProtocolErrorEvent, RunCommand, SendFrames
from hgwire.wire.frames import FrameReader
from hgwire.wire.server import ServerOutputStream, ServerReactor

log = logging.getLogger("hgwire.server")

FRAMINGTYPE = "application/mercurial-exp-framing-0006"
#: Frames are sent in HTTP chunks of about this size (6.0: one chunk per frame).
CHUNK_BATCH = 64 * 1024


def api_names(served: ServedRepo) -> list[str]:
    """The APIs enabled for this repository (spec §5.5)."""
    return [HTTP_V2_API] if served.settings().config.api_http_v2 else []


async def handle_api(request: Request, send: Send, served: ServedRepo, registry: Registry) -> int:
    """Serve a request below ``/api`` (the API server is enabled; spec §5.5)."""
    parts = request.dispatchparts
    available = api_names(served)
    if len(parts) == 1 or (len(parts) == 2 and parts[1] == ""):
        lines = ["APIs can be accessed at /api/<name>, where <name> can be one of the following:\n"]
        lines.extend(sorted(available) if available else ["(no available APIs)\n"])
        return await send_response(send, text(200, "\n".join(lines)))
    api = parts[1]
    if api != HTTP_V2_API:
        msg = f"Unknown API: {api}\nKnown APIs: {', '.join(sorted(available))}"
        return await send_response(send, text(404, msg))
    if api not in available:
        return await send_response(send, text(404, f"API {api} not enabled\n"))
    urlparts = list(parts[2:])
    if urlparts == [""]:
        urlparts = []
    return await handle_v2(request, send, served, registry, urlparts)


async def handle_v2(
    request: Request, send: Send, served: ServedRepo, registry: Registry, urlparts: list[str]
) -> int:
    """``/api/exp-http-v2-0003/<perm>/<command>`` with 6.0's checks in order (spec §5.6)."""
    if not urlparts:
        return await send_response(send, text(200, "HTTP version 2 API handler"))
    if len(urlparts) == 1:
        path = "/".join(["api", HTTP_V2_API, *urlparts])
        return await send_response(send, text(404, f"do not know how to process {path}\n"))
    permission, command = urlparts[0], urlparts[1]
    request.commands.append(command)
    if permission not in ("ro", "rw"):
        return await send_response(send, text(404, f"unknown permission: {permission}"))
    if request.method != "POST":
        return await send_response(
            send, Response(405, b"commands require POST requests", None, None, [("Allow", "POST")])
        )
    settings = served.settings()
    op: auth.Operation = "pull" if permission == "ro" else "push"
    denied = auth.check(settings.access, op, request.user, request.method, request.scheme)
    if denied is not None:
        return await send_response(send, refusal(request, denied, b"permission denied"))
    if command == "debugreflect":
        if not settings.debugreflect:
            return await send_response(send, text(404, "debugreflect service not available"))
        return await debugreflect(request, send)
    cmdname = command.encode("latin-1")
    if cmdname not in registry.v2 and command != "multirequest":
        return await send_response(send, text(404, f"unknown wire protocol command: {command}\n"))

    repo = await anyio.to_thread.run_sync(open_repo, served)
    ctx = CommandContext(repo, settings.config, "http-v2")
    available = registry.v2commands(ctx)
    if command != "multirequest" and cmdname not in available:
        return await send_response(send, text(404, f"invalid wire protocol command: {command}"))
    if request.headers.get("accept") != FRAMINGTYPE:
        return await send_response(
            send,
            text(406, f"client MUST specify Accept header with value: {FRAMINGTYPE}\n"),
        )
    if request.headers.get("content-type") != FRAMINGTYPE:
        return await send_response(
            send,
            text(415, f"client MUST send Content-Type header with value: {FRAMINGTYPE}\n"),
        )
    if command != "multirequest" and permission == "ro" and available[cmdname].permission == "push":
        # 6.0 runs it (Appendix B.7); hgwire refuses as 6.0's multirequest does.
        return await send_response(
            send, text(403, f"insufficient permissions to execute command: {command}")
        )
    reactor = ServerReactor(
        defer_output=True,
        answer_empty_output=True,
        max_request_size=settings.max_frame_request,
        max_in_flight=settings.max_in_flight,
    )
    return await process(request, send, ctx, available, permission, command, reactor)


async def process(
    request: Request,
    send: Send,
    ctx: CommandContext,
    available: dict[bytes, V2Command],
    permission: str,
    command: str,
    reactor: ServerReactor,
) -> int:
    """Read the frames, dispatch the commands, then stream the responses (spec §3.7)."""
    stream: ServerOutputStream | None = None
    multi = command == "multirequest"
    seen = 0
    if multi:
        request.commands.clear()
    async for chunk in request.body_chunks():
        for event in reactor.receive_data(chunk):
            if isinstance(event, ProtocolErrorEvent):
                return await send_response(send, text(200, event.message + "\n"))
            if not isinstance(event, RunCommand):
                continue
            name = event.command.decode("latin-1")
            if multi:
                request.commands.append(name)
                cmd = available.get(event.command)
                if cmd is None:
                    msg = f"wire protocol command not available: {name}"
                    return await send_response(send, text(200, msg))
                if permission == "ro" and cmd.permission == "push":
                    msg = f"insufficient permissions to execute command: {name}"
                    return await send_response(send, text(403, msg))
            else:
                if seen:
                    msg = "multiple commands cannot be issued to this URL"
                    return await send_response(send, text(200, msg))
                if name != command:
                    msg = "command in frame must match command in URL"
                    return await send_response(send, text(200, msg))
                cmd = available[event.command]
            seen += 1
            if stream is None:
                stream = reactor.output_stream()
            dispatch(reactor, stream, ctx, cmd, event)
    final = reactor.on_input_eof()
    if isinstance(final, ProtocolErrorEvent):
        return await send_response(send, text(200, final.message + "\n"))
    if isinstance(final, NoOp):
        incomplete = reactor.incomplete_requests
        if incomplete:
            ids = ", ".join(str(i) for i in incomplete)
            msg = f"end of input before request {ids} was complete\n"
        else:
            msg = "no command request received\n"
        return await send_response(send, text(200, msg))
    return await stream_frames(send, final, request)


def dispatch(
    reactor: ServerReactor,
    stream: ServerOutputStream,
    ctx: CommandContext,
    cmd: V2Command,
    event: RunCommand,
) -> None:
    """Queue one command's response (argument errors become a command error status)."""
    try:
        checked = cmd.checkargs(event.args)
    except CommandError as exc:
        reactor.on_command_error(stream, event.request_id, exc.message, exc.msgargs)
        return
    kwargs = {k.decode("latin-1"): v for k, v in checked.items()}
    reactor.on_command_response_objects(stream, event.request_id, _objects(cmd, ctx, kwargs))


def _objects(cmd: V2Command, ctx: CommandContext, kwargs: dict[str, Any]) -> Iterator[Any]:
    """The command's objects; unexpected exceptions are logged before the reactor turns
    them into an ``error-response`` frame."""
    try:
        yield from cmd.func(ctx, **kwargs)
    except HgwireError:
        raise
    except Exception:
        log.exception("v2 command %s failed", cmd.name.decode("latin-1"))
        raise


async def stream_frames(send: Send, frames: SendFrames, request: Request) -> int:
    """Send the frames, produced in a worker thread, in chunks of about CHUNK_BATCH."""
    await start_response(send, 200, [("Content-Type", FRAMINGTYPE)])
    return await stream_pieces(send, request, frames.iter_chunks(), CHUNK_BATCH)


async def debugreflect(request: Request, send: Send) -> int:
    """Echo the frames received and the reactor's answers (spec §5.6 step 4)."""
    reactor = ServerReactor(defer_output=True)
    reader = FrameReader()
    lines: list[str] = []
    async for chunk in request.body_chunks():
        for frame in reader.feed(chunk):
            lines.append(
                f"received: {int(frame.type_id)} {int(frame.flags)} {frame.request_id} "
                f"{bytes(frame.payload)!r}"
            )
            event = reactor.on_frame(frame)
            lines.append(json.dumps(_describe(event), sort_keys=True))
    lines.append("received: <no frame>")
    lines.append(json.dumps({"action": _describe(reactor.on_input_eof())[0]}))
    return await send_response(send, text(200, "\n".join(lines)))


def _describe(event: Any) -> list[Any]:
    if isinstance(event, RunCommand):
        return ["runcommand", {"command": event.command.decode("latin-1"),
                               "requestid": event.request_id}]  # fmt: skip
    if isinstance(event, ProtocolErrorEvent):
        return ["error", {"message": event.message}]
    if isinstance(event, SendFrames):
        return ["sendframes", {}]
    if isinstance(event, NoOp):
        return ["noop", {}]
    return ["wantframe", {"state": getattr(event, "state", "")}]


__all__ = ["FRAMINGTYPE", "handle_api", "handle_v2"]
