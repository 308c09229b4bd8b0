"""Malformed requests never stop the server (spec §3.7, DESIGN: bad input becomes an
error sent back to that peer). In-process with random bodies, and against a real
``hgwire serve`` over sockets (garbage, truncation, disconnects mid-body, lies about
lengths) followed by a working clone."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hgwire.server.app import HgwireApp
from hgwire.wire.human import parse_human_frame
from tests.conftest import HgRunner
from tests.server.conftest import FRAMING, VECTOR_CONFIGS, call, decode_frames, make_app, v2_headers

SETTINGS = parse_human_frame(
    "1 1 stream-begin sender-protocol-settings eos cbor:{b'contentencodings': [b'identity']}"
).to_bytes()
HEADS = (
    SETTINGS + parse_human_frame("1 1 0 command-request new cbor:{b'name': b'heads'}").to_bytes()
)


@pytest.fixture(scope="module")
def app(public_repo: Path) -> HgwireApp:
    return make_app(public_repo, VECTOR_CONFIGS["default"])


def heads_ok(app: HgwireApp) -> bool:
    got = call(app, "POST", "/api/exp-http-v2-0003/ro/heads", v2_headers(), HEADS)
    return got.status == 200 and decode_frames(got.body)[1][1].eos


def test_random_bodies(app: HgwireApp) -> None:
    rng = random.Random(20261121)
    bodies: list[bytes] = []
    for _ in range(60):
        base = bytearray(HEADS)
        for _ in range(rng.randint(1, 4)):
            base[rng.randrange(len(base))] = rng.randrange(256)
        cut = rng.randint(0, len(base))
        bodies.append(bytes(base[:cut]) if rng.random() < 0.3 else bytes(base))
    bodies += [rng.randbytes(rng.randint(1, 200)) for _ in range(20)]
    bodies.append(b"\xff\xff\xff\x01\x00\x01\x01\x11")  # announces a 16 MiB frame
    for body in bodies:
        for command in ("heads", "multirequest"):
            got = call(app, "POST", f"/api/exp-http-v2-0003/ro/{command}", v2_headers(), body)
            assert got.status in (200, 403)
            ctype = got.header("content-type")
            assert ctype in ("text/plain", FRAMING)
            if ctype == FRAMING:
                frames, responses = decode_frames(got.body)
                assert frames and all(r.eos or r.error is not None for r in responses.values())
            else:
                assert got.body.strip()
    assert heads_ok(app)


def test_v1_garbage(app: HgwireApp) -> None:
    for target, headers in [
        ("/?cmd=batch", [("X-HgArg-1", "cmds=%ZZ;;;")]),
        ("/?cmd=getbundle", [("X-HgArg-1", "heads=zz&common=00")]),
        ("/?cmd=known", [("X-HgArg-1", "nodes=xyz")]),
        ("/?cmd=lookup", [("X-HgArg-1", "key=%00%ff")]),
        ("/?cmd=capabilities", [("X-HgProto-1", "\x00 0.2 comp=")]),
    ]:
        got = call(app, "GET", target, headers)
        assert got.status in (200, 400, 500)
    assert heads_ok(app)


def _raw(port: int, data: bytes, read: bool = True) -> bytes:
    """Send raw bytes; what came back (a server answering early may reset the rest)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        try:
            s.sendall(data)
            if not read:
                return b""
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass
    return b"".join(chunks)


def _post(path: str, body: bytes, length: int | None = None) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {FRAMING}\r\n"
        f"Content-Type: {FRAMING}\r\nContent-Length: {len(body) if length is None else length}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


@pytest.mark.interop
def test_real_server_survives(
    hg60: HgRunner,
    public_repo: Path,
    server_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    with server_factory(str(public_repo)) as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        api = "/api/exp-http-v2-0003/ro/heads"
        replies = [
            _raw(port, _post(api, b"")),
            _raw(port, _post(api, HEADS[:-3])),
            _raw(port, _post(api, b"\x00" * 5000 + HEADS)),
            _raw(port, _post(api, HEADS, length=len(HEADS) + 100), read=False),  # short body
            _raw(port, _post(api, random.Random(1).randbytes(300000))),
            _raw(port, b"GARBAGE / HTTP/9.9\r\n\r\n"),
            _raw(port, _post("/?cmd=unbundle", b"x" * 1000)),
        ]
        assert replies[0].startswith(b"HTTP/1.1 200 OK")
        assert b"no command request received" in replies[0]
        assert replies[1].startswith(b"HTTP/1.1 200 OK") and b"text/plain" in replies[1]
        assert replies[4] == b"" or replies[4].startswith(b"HTTP/1.1 200 OK")
        assert replies[5].startswith(b"HTTP/1.1 ")
        assert replies[6].startswith(b"HTTP/1.1 403 ssl required")
        ok = _raw(port, _post(api, HEADS))
        assert ok.startswith(b"HTTP/1.1 200 OK") and FRAMING.encode() in ok
        hg60("clone", "-U", "--config", "experimental.httppeer.advertise-v2=true",
             server.url, tmp_path / "clone")  # fmt: skip
        log = server.output()
    assert "Traceback" not in log
    assert hg60("verify", cwd=tmp_path / "clone").returncode == 0
