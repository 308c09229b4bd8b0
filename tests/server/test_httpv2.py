"""The ``/api/`` v2 service beyond the vectors: error mapping of failing commands,
``debugreflect``, content encodings chosen from the client's settings frame, commands
answered in the order they became complete (spec §3.7, §5.6)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hgwire.commands.context import CommandContext
from hgwire.commands.registry import Arg, Registry, V2Command
from hgwire.errors import AbortError, CommandError
from hgwire.server.app import HgwireApp, ServerOptions
from hgwire.wire import cbor
from hgwire.wire.frames import Frame, FrameType
from hgwire.wire.human import parse_human_frame
from tests.server.conftest import (
    VECTOR_CONFIGS,
    acall,
    call,
    decode_frames,
    stand_in_registry,
    v2_headers,
)


def settings(*encodings: bytes) -> str:
    return (
        "1 1 stream-begin sender-protocol-settings eos "
        f"cbor:{{b'contentencodings': {list(encodings)!r}}}"
    )


def body(*frames: str) -> bytes:
    return b"".join(parse_human_frame(f).to_bytes() for f in frames)


def req(rid: int, name: str, flags: str = "new", args: dict[bytes, Any] | None = None) -> str:
    m: dict[bytes, Any] = {b"name": name.encode()}
    if args is not None:
        m[b"args"] = args
    return f"{rid} 1 0 command-request {flags} cbor:{m!r}"


def _boom(ctx: CommandContext) -> Iterator[Any]:
    yield {b"first": 1}
    raise RuntimeError("unexpected bug")


def _abort(ctx: CommandContext) -> Iterator[Any]:
    raise AbortError("repository is busy")
    yield  # pragma: no cover


def _cmderror(ctx: CommandContext, x: Any) -> Iterator[Any]:
    raise CommandError(b"bad value: %s", [repr(x).encode()])
    yield  # pragma: no cover


def _empty(ctx: CommandContext) -> Iterator[Any]:
    return iter(())


RELEASE = threading.Event()
STARTED = threading.Event()


def _wait(ctx: CommandContext) -> Iterator[Any]:
    """Blocks (in its worker thread) until another request's command releases it."""
    STARTED.set()
    yield RELEASE.wait(timeout=60)


PRODUCED = [0]


def _endless(ctx: CommandContext) -> Iterator[Any]:
    while True:
        PRODUCED[0] += 1
        yield b"x" * 10000


def _release(ctx: CommandContext) -> Iterator[Any]:
    RELEASE.set()
    yield True


@pytest.fixture(scope="module")
def app(public_repo: Path) -> HgwireApp:
    base = stand_in_registry()
    reg = Registry(v1=base.v1, v2=dict(base.v2))
    reg.v2[b"boom"] = V2Command(b"boom", _boom, {}, "pull")
    reg.v2[b"abortive"] = V2Command(b"abortive", _abort, {}, "pull")
    reg.v2[b"cmderror"] = V2Command(b"cmderror", _cmderror, {b"x": Arg("int")}, "pull")
    reg.v2[b"empty"] = V2Command(b"empty", _empty, {}, "pull")
    reg.v2[b"wait"] = V2Command(b"wait", _wait, {}, "pull")
    reg.v2[b"release"] = V2Command(b"release", _release, {}, "pull")
    reg.v2[b"endless"] = V2Command(b"endless", _endless, {}, "pull")
    overrides = [*VECTOR_CONFIGS["default"], "experimental.web.api.debugreflect=true"]
    return HgwireApp(ServerOptions(repo=public_repo, overrides=overrides), reg)


def post(app: HgwireApp, command: str, data: bytes) -> Any:
    return call(app, "POST", f"/api/exp-http-v2-0003/ro/{command}", v2_headers(), data)


def test_failures_become_frames(app: HgwireApp, caplog: pytest.LogCaptureFixture) -> None:
    data = body(
        settings(b"identity"),
        req(1, "boom"),
        req(3, "abortive"),
        req(5, "cmderror", args={b"x": 7}),
        req(7, "cmderror", args={b"y": 1}),
        req(9, "empty"),
        req(11, "heads"),
    )
    with caplog.at_level(logging.ERROR, logger="hgwire.server"):
        got = post(app, "multirequest", data)
    assert got.status == 200
    _, r = decode_frames(got.body)
    assert r[1].error == {b"type": b"server", b"message": [{b"msg": b"unexpected bug"}]}
    assert r[3].error == {b"type": b"server", b"message": [{b"msg": b"repository is busy"}]}
    assert r[5].objects == [
        {b"status": b"error", b"error": {b"message": b"bad value: %s", b"args": [b"7"]}}
    ]
    assert r[7].objects[0][b"status"] == b"error"
    assert r[9].objects == [{b"status": b"ok"}] and r[9].eos
    assert r[11].objects[0] == {b"status": b"ok"} and len(r[11].objects[1]) == 2
    assert "unexpected bug" in caplog.text  # logged with its traceback
    assert "repository is busy" not in caplog.text  # hgwire errors are not bugs


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ([b"zstd-8mb", b"zlib", b"identity"], b"zstd-8mb"),
        ([b"zlib", b"zstd-8mb"], b"zstd-8mb"),  # the server's preference wins
        ([b"zlib"], b"zlib"),
        ([b"identity"], b"identity"),
        ([b"nope"], b"identity"),
    ],
)
def test_encoding_from_settings(app: HgwireApp, offered: list[bytes], chosen: bytes) -> None:
    data = body(settings(*offered), req(1, "heads"), req(3, "capabilities"))
    got = post(app, "multirequest", data)
    frames, r = decode_frames(got.body)
    assert cbor.loads(bytes(frames[0].payload)) == chosen
    assert r[1].eos and r[3].eos
    assert b"changesetdata" in r[3].objects[1][b"commands"]


def test_completion_order(app: HgwireApp) -> None:
    """Request 1 completes after request 3: its response comes second (spec §3.7)."""
    request = cbor.dumps({b"name": b"heads"})
    first = Frame(1, 1, 0, FrameType.COMMAND_REQUEST, 0x01 | 0x04, request[:5]).to_bytes()
    rest = Frame(1, 1, 0, FrameType.COMMAND_REQUEST, 0x02, request[5:]).to_bytes()
    data = body(settings(b"identity")) + first + body(req(3, "branchmap")) + rest
    got = post(app, "multirequest", data)
    order = [f.request_id for f in decode_frames(got.body)[0] if f.type_id == 3]
    assert order and order[0] == 3 and order[-1] == 1


def test_debugreflect(app: HgwireApp) -> None:
    got = post(app, "debugreflect", body(settings(b"identity"), req(1, "heads")))
    assert got.status == 200 and got.header("content-type") == "text/plain"
    lines = got.body.decode().splitlines()
    assert lines[0].startswith("received: 8 2 1 ")
    assert '"runcommand"' in got.body.decode()
    assert "received: <no frame>" in lines


def test_slow_command_does_not_stall_others(app: HgwireApp) -> None:
    """A command blocked in its worker thread leaves the event loop free: a second
    request is served meanwhile and unblocks the first (it would deadlock otherwise)."""
    RELEASE.clear()
    STARTED.clear()

    async def both() -> list[Any]:
        slow = asyncio.create_task(
            acall(app, "POST", "/api/exp-http-v2-0003/ro/wait", v2_headers(),
                  body(settings(b"identity"), req(1, "wait")))
        )  # fmt: skip
        assert await asyncio.to_thread(STARTED.wait, 60)  # the slow command is running
        fast = await acall(app, "POST", "/api/exp-http-v2-0003/ro/release", v2_headers(),
                           body(settings(b"identity"), req(1, "release")))  # fmt: skip
        return [await slow, fast]

    slow, fast = asyncio.run(both())
    assert decode_frames(fast.body)[1][1].objects == [{b"status": b"ok"}, True]
    assert decode_frames(slow.body)[1][1].objects == [{b"status": b"ok"}, True]


def test_client_gone_stops_production(app: HgwireApp) -> None:
    """An endless response stops once the client disconnects (else this never returns)."""
    data = body(settings(b"identity"), req(1, "endless"))
    messages = [{"type": "http.request", "body": data, "more_body": False}]
    gone = asyncio.Event()
    chunks = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            if len(chunks) == 5:
                gone.set()

    scope = {"type": "http", "method": "POST", "path": "/api/exp-http-v2-0003/ro/endless",
             "query_string": b"", "scheme": "http", "client": ("127.0.0.1", 1),
             "headers": [(k.lower().encode(), v.encode()) for k, v in v2_headers()]}  # fmt: skip
    PRODUCED[0] = 0
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert 5 <= len(chunks) < 10
    assert PRODUCED[0] < 100


def test_reactor_limits_from_config(public_repo: Path) -> None:
    """``hgwire.max-frame-request-size`` and ``hgwire.max-requests-in-flight`` reach the
    reactor: a larger request or one request too many is a protocol error."""
    overrides = [
        *VECTOR_CONFIGS["default"],
        "hgwire.max-frame-request-size=64",
        "hgwire.max-requests-in-flight=1",
    ]
    limited = HgwireApp(ServerOptions(repo=public_repo, overrides=overrides), stand_in_registry())
    small = post(limited, "heads", body(settings(b"identity"), req(1, "heads")))
    assert small.status == 200 and decode_frames(small.body)[1][1].eos
    big = req(1, "heads", args={b"publiconly": False, b"pad": b"x" * 100})
    got = post(limited, "heads", body(settings(b"identity"), big))
    assert got.status == 200
    assert b"exceeds the maximum request size of 64 bytes" in got.body
    partial = cbor.dumps({b"name": b"heads"})[:5]
    first = Frame(1, 1, 0, FrameType.COMMAND_REQUEST, 0x01 | 0x04, partial).to_bytes()
    got = post(limited, "multirequest", body(settings(b"identity")) + first + body(req(3, "heads")))
    assert b"too many requests in flight: the limit is 1" in got.body
