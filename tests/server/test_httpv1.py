"""The v1 HTTP transport (spec §5.1-§5.4) with stand-in commands: argument sources,
``X-HgProto`` negotiation, media types and compression, error shapes, payload spooling.

The v1 command implementations are tested by their own module; these commands only
echo what the transport gave them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

import pytest
import zstandard

from hgwire.commands.context import CommandContext
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
from hgwire.errors import AbortError
from hgwire.server import httpv1
from hgwire.server.app import HgwireApp, ServerOptions
from hgwire.server.asgi import SPOOL_THRESHOLD
from hgwire.wire import cbor
from tests.server.conftest import Result, call, stand_in_registry

STREAM = [b"HG20", b"x" * 100000, b"tail"]


def _echo(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    shown = {k.decode(): v.decode() for k, v in sorted(args.items())}
    return BytesResponse(
        json.dumps({"args": shown, "caps": sorted(c.decode() for c in ctx.protocaps)}).encode()
    )


def _payload(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    data = payload.read() if payload is not None else b""
    rolled = bool(getattr(payload, "_rolled", False))
    return PushResponse(len(data), hashlib.sha256(data).hexdigest().encode() + b" %d" % rolled)


def _stream(kind: str) -> Any:
    def func(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
        chunks: Iterator[bytes] = iter(STREAM)
        if kind == "raw":
            return StreamResponse(chunks, compressible=False)
        return StreamResponse(chunks, prefer_uncompressed=kind == "prefer")

    return func


def _fixed(rsp: V1Response) -> Any:
    return lambda ctx, args, payload: rsp


def _abort(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    raise AbortError("nope: refused")


def _crash(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    raise RuntimeError("bug")


def registry() -> Registry:
    base = stand_in_registry()
    reg = Registry(v1=dict(base.v1), v2=base.v2)
    cmds = [
        V1Command(b"echo", _echo, b"key nodes", "pull"),
        V1Command(b"echostar", _echo, b"key *", "pull"),
        V1Command(b"upload", _payload, b"heads", "push"),
        V1Command(b"bundle", _stream("cg"), b"", "pull"),
        V1Command(b"rawstream", _stream("raw"), b"", "pull"),
        V1Command(b"preferraw", _stream("prefer"), b"", "pull"),
        V1Command(b"pushres", _fixed(PushResponse(1, b"remote: ok\n")), b"", "pull"),
        V1Command(b"pusherr", _fixed(PushError(b"push race")), b"", "pull"),
        V1Command(b"oob", _fixed(OutOfBandError(b"bundle2 required\n")), b"", "pull"),
        V1Command(b"abort", _abort, b"", "pull"),
        V1Command(b"crash", _crash, b"", "pull"),
        V1Command(b"sshonly", _echo, b"", "pull", frozenset({"ssh-v1"})),
    ]
    for c in cmds:
        reg.v1[c.name] = c
    return reg


@pytest.fixture(scope="module")
def app(public_repo: Path) -> HgwireApp:
    opts = ServerOptions(repo=public_repo, overrides=["web.allow-push=*", "web.push_ssl=false"])
    return HgwireApp(opts, registry())


def echo(result: Result) -> Any:
    assert (result.status, result.reason) == (200, "Script output follows")
    assert result.header("content-type") == "application/mercurial-0.1"
    assert result.header("content-length") == str(len(result.body))
    return json.loads(result.body)


def test_args_from_query_string(app: HgwireApp) -> None:
    got = echo(call(app, "GET", "/?cmd=echo&nodes=a+b&key=%3D%26x&other=1"))
    assert got["args"] == {"key": "=&x", "nodes": "a b"}


def test_args_from_headers_split(app: HgwireApp) -> None:
    """A long argument string cut into 1009-character X-HgArg headers (spec §5.1)."""
    encoded = urlencode(sorted({"key": "k" * 2500, "nodes": ""}.items()))
    pieces = [encoded[i : i + 1009] for i in range(0, len(encoded), 1009)]
    headers = [(f"X-HgArg-{i}", p) for i, p in enumerate(pieces, 1)]
    headers.append(("X-HgProto-1", "0.1 0.2 comp=zstd,zlib,none,bzip2 partial-pull"))
    got = echo(call(app, "GET", "/?cmd=echo&key=fromquery", headers))
    assert got["args"] == {"key": "k" * 2500, "nodes": ""}  # headers win over the query
    assert got["caps"] == ["0.1", "0.2", "comp=zstd,zlib,none,bzip2", "partial-pull"]


def test_star_args(app: HgwireApp) -> None:
    got = echo(call(app, "GET", "/?cmd=echostar", [("X-HgArg-1", "a=1&key=k&z=")]))
    assert got["args"] == {"a": "1", "key": "k", "z": ""}


def test_missing_argument_is_an_hg_error(app: HgwireApp) -> None:
    got = call(app, "GET", "/?cmd=echo&key=1")
    assert got.status == 200 and got.header("content-type") == "application/hg-error"
    assert got.body == b"missing argument for command: nodes\n"


@pytest.mark.parametrize("size", [10, SPOOL_THRESHOLD * 2])
def test_post_args_and_payload(app: HgwireApp, size: int) -> None:
    """httppostargs: arguments at the start of the body, the payload after them."""
    args = urlencode({"heads": "666f726365"}).encode()
    payload = bytes(range(256)) * (size // 256 + 1)
    headers = [("X-HgArgs-Post", str(len(args))), ("Content-Type", "application/mercurial-0.1")]
    got = call(app, "POST", "/?cmd=upload", headers, args + payload, body_pieces=7)
    assert got.header("content-type") == "application/mercurial-0.1"
    count, _, rest = got.body.partition(b"\n")
    digest, rolled = rest.split()
    assert int(count) == len(payload)
    assert digest.decode() == hashlib.sha256(payload).hexdigest()
    assert rolled == (b"1" if size > SPOOL_THRESHOLD else b"0")


def test_push_result_shapes(app: HgwireApp) -> None:
    assert call(app, "GET", "/?cmd=pushres").body == b"1\nremote: ok\n"
    assert call(app, "GET", "/?cmd=pusherr").body == b"0\npush race\n"
    oob = call(app, "GET", "/?cmd=oob")
    assert oob.header("content-type") == "application/hg-error"
    assert oob.body == b"bundle2 required\n"
    abort = call(app, "GET", "/?cmd=abort")
    assert abort.header("content-type") == "application/hg-error"
    assert abort.body == b"nope: refused\n"
    crash = call(app, "GET", "/?cmd=crash")
    assert crash.status == 500
    assert call(app, "GET", "/?cmd=pushres").status == 200  # still serving


def _decompress(result: Result) -> tuple[str, str, bytes]:
    ctype = result.header("content-type") or ""
    body = result.body
    if ctype == "application/mercurial-0.2":
        n = body[0]
        engine = body[1 : 1 + n].decode()
        data = body[1 + n :]
        if engine == "zstd":
            out = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        elif engine == "zlib":
            out = zlib.decompress(data)
        else:
            out = data
        return ctype, engine, out
    return ctype, "zlib", zlib.decompress(body)


@pytest.mark.parametrize(
    ("proto", "mediatype", "engine"),
    [
        (None, "application/mercurial-0.1", "zlib"),
        ("0.1 0.2 comp=zstd,zlib,none,bzip2 partial-pull", "application/mercurial-0.2", "zstd"),
        ("0.1 0.2 comp=zlib,zstd", "application/mercurial-0.2", "zstd"),  # server order wins
        ("0.1 0.2 comp=zlib,none", "application/mercurial-0.2", "zlib"),
        ("0.1 0.2 comp=none", "application/mercurial-0.1", "zlib"),
        ("0.1 0.2", "application/mercurial-0.2", "zlib"),
        ("0.1", "application/mercurial-0.1", "zlib"),
    ],
)
def test_compression_negotiation(
    app: HgwireApp, proto: str | None, mediatype: str, engine: str
) -> None:
    headers = [("X-HgProto-1", proto)] if proto else []
    got = call(app, "GET", "/?cmd=bundle", headers)
    assert (got.status, got.reason) == (200, "Script output follows")
    assert got.header("content-length") is None  # streamed
    assert _decompress(got) == (mediatype, engine, b"".join(STREAM))


def test_uncompressed_streams(app: HgwireApp) -> None:
    proto = [("X-HgProto-1", "0.1 0.2 comp=zstd,zlib,none")]
    raw = call(app, "GET", "/?cmd=rawstream", proto)
    assert raw.header("content-type") == "application/mercurial-0.1"
    assert raw.body == b"".join(STREAM)
    prefer = call(app, "GET", "/?cmd=preferraw", proto)
    assert prefer.header("content-type") == "application/mercurial-0.2"
    assert prefer.body == b"\x04none" + b"".join(STREAM)


def test_response_type_respects_server_engines() -> None:
    from hgwire.commands.context import ServerConfig

    cfg = ServerConfig(compressionengines=(b"zlib",))
    caps = frozenset({b"0.2", b"comp=zstd,zlib"})
    assert httpv1.response_type(caps, cfg, False) == ("application/mercurial-0.2", "zlib", -1)


def test_routing_errors(app: HgwireApp) -> None:
    sub = call(app, "GET", "/some/path?cmd=capabilities")
    assert sub.status == 404 and sub.body == b"0\nNot Found\n"
    assert sub.header("content-type") == "application/mercurial-0.1"
    unknown = call(app, "GET", "/?cmd=nosuch")
    assert (unknown.status, unknown.reason) == (400, "no such method: nosuch")
    ssh = call(app, "GET", "/?cmd=sshonly")
    assert ssh.header("content-type") == "application/hg-error"
    assert ssh.body == b"requested wire protocol command is not available over HTTP"
    bad = call(app, "POST", "/?cmd=upload", [("X-HgArgs-Post", "x")], b"heads=1")
    assert bad.status == 400


def test_handshake(app: HgwireApp, public_repo: Path) -> None:
    plain = call(app, "GET", "/?cmd=capabilities")
    assert plain.header("content-type") == "application/mercurial-0.1"
    upgrade = [("X-HgUpgrade-1", "exp-http-v2-0003 other"), ("X-HgProto-1", "cbor")]
    got = call(app, "GET", "/?cmd=capabilities", upgrade)
    assert got.header("content-type") == "application/mercurial-cbor"
    m = cbor.loads(got.body)
    assert sorted(m) == [b"apibase", b"apis", b"v1capabilities"]
    assert list(m[b"apis"]) == [b"exp-http-v2-0003"]
    assert m[b"v1capabilities"] == plain.body
    assert b"changesetdata" in m[b"apis"][b"exp-http-v2-0003"][b"commands"]
    # With the v2 API switched off: still CBOR, no API (spec §5.4).
    off = HgwireApp(
        ServerOptions(repo=public_repo, overrides=["experimental.web.api.http-v2=false"]),
        registry(),
    )
    m2 = cbor.loads(call(off, "GET", "/?cmd=capabilities", upgrade).body)
    assert m2[b"apis"] == {}
    assert call(off, "GET", "/api/").body.endswith(b"(no available APIs)\n")
    # With the API server off: the v1 answer, and /api is not routed.
    noapi = HgwireApp(
        ServerOptions(repo=public_repo, overrides=["experimental.web.apiserver=false"]),
        registry(),
    )
    v1 = call(noapi, "GET", "/?cmd=capabilities", upgrade)
    assert v1.header("content-type") == "application/mercurial-0.1"
    assert call(noapi, "GET", "/api/").status == 400


def test_post_args_longer_than_the_body_are_refused(app: HgwireApp) -> None:
    """A body cut short inside its X-HgArgs-Post arguments is a 400, not truncated args."""
    args = urlencode({"heads": "666f726365"}).encode()
    headers = [("X-HgArgs-Post", str(len(args) + 10))]
    got = call(app, "POST", "/?cmd=upload", headers, args)
    assert got.status == 400
    assert b"X-HgArgs-Post" in got.body


def test_request_body_limit(public_repo: Path) -> None:
    """``hgwire.max-request-body`` refuses larger bodies with 413 (declared or streamed)."""
    opts = ServerOptions(
        repo=public_repo,
        overrides=["web.allow-push=*", "web.push_ssl=false", "hgwire.max-request-body=1000"],
    )
    limited = HgwireApp(opts, registry())
    ok = call(limited, "POST", "/?cmd=upload&heads=00", [], b"x" * 1000, body_pieces=3)
    assert ok.status == 200 and ok.body.startswith(b"1000\n")
    streamed = call(limited, "POST", "/?cmd=upload&heads=00", [], b"x" * 1001, body_pieces=3)
    assert streamed.status == 413
    assert b"1000 bytes" in streamed.body
    declared = call(limited, "POST", "/?cmd=upload&heads=00", [("Content-Length", "5000")], b"x")
    assert declared.status == 413
    postargs = [("X-HgArgs-Post", "2000")]
    assert call(limited, "POST", "/?cmd=upload", postargs, b"h" * 2000).status == 413


def _gone_test(app: HgwireApp, after: int) -> tuple[int, list[str]]:
    """Run an endless v1 stream whose client leaves after ``after`` body messages."""
    events: list[str] = []

    def endless() -> Iterator[bytes]:
        try:
            while True:
                events.append("chunk")
                yield os.urandom(50000)  # incompressible: every chunk reaches the client
        finally:
            events.append("closed")

    def func(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
        return StreamResponse(endless())

    app.registry.v1[b"endless"] = V1Command(b"endless", func, b"", "pull")
    gone = asyncio.Event()
    sent: list[bytes] = []
    if after == 0:
        gone.set()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            sent.append(message["body"])
            if len(sent) >= after:
                gone.set()

    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"cmd=endless",
             "scheme": "http", "client": ("127.0.0.1", 1), "headers": []}  # fmt: skip
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return len(sent), events


@pytest.mark.parametrize("after", [0, 3])
def test_v1_client_gone_stops_and_closes_the_stream(app: HgwireApp, after: int) -> None:
    """A client leaving mid-stream stops production and closes the producer (its
    ``finally`` runs: locks and files are released), even before the first chunk."""
    count, events = _gone_test(app, after)
    assert count <= after + 5
    assert events.count("chunk") < 100
    if "chunk" in events:
        assert events[-1] == "closed"
