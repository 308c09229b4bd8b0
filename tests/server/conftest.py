"""Server test helpers: an in-process ASGI driver, a frame-response decoder, and
``hgwire serve`` started as a subprocess on 127.0.0.1 (stopped by pid at teardown)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hgwire.commands.registry import REGISTRY, BytesResponse, Registry, V1Command
from hgwire.server.app import HgwireApp, ServerOptions, load_commands
from hgwire.wire import cbor, streams
from hgwire.wire.cbor import BytestringChunk
from hgwire.wire.frames import MAX_PAYLOAD_LENGTH, Frame, FrameReader, FrameType, StreamFlag
from tests.repo.conftest import (  # noqa: F401
    corpus10k,
    full_repo60,
    full_repo72,
    public_repo,
    repo_copy,
)

ROOT = Path(__file__).resolve().parents[2]
FRAMING = "application/mercurial-exp-framing-0006"
#: The vectors' server configuration texts, as --config overrides.
VECTOR_CONFIGS = {
    "default": [
        "experimental.web.apiserver=true",
        "experimental.web.api.http-v2=true",
        "phases.publish=false",
    ],
    "publishing": [
        "experimental.web.apiserver=true",
        "experimental.web.api.http-v2=true",
        "phases.publish=true",
    ],
}


@dataclass
class Result:
    """What the application sent for one request."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    chunks: list[bytes] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def call(
    app: HgwireApp,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    scheme: str = "http",
    body_pieces: int = 1,
) -> Result:
    """Run one request through the ASGI app (the body delivered in ``body_pieces``)."""
    return asyncio.run(acall(app, method, target, headers, body, scheme, body_pieces))


async def acall(
    app: HgwireApp,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    scheme: str = "http",
    body_pieces: int = 1,
) -> Result:
    """:func:`call` inside a running event loop (for concurrent requests)."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 12345),
        "server": ("127.0.0.1", 8000),
    }
    size = max(1, -(-len(body) // body_pieces)) if body else 1
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
        for i, p in enumerate(pieces)
    ]
    out: dict[str, Any] = {"chunks": []}

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["reason"] = message.get("reason", "")
            out["headers"] = [(k.decode(), v.decode()) for k, v in message["headers"]]
        elif message["type"] == "http.response.body" and message.get("body"):
            out["chunks"].append(bytes(message["body"]))

    await app(scope, receive, send)  # type: ignore[arg-type]
    return Result(out["status"], out["reason"], out["headers"], out["chunks"])


def v2_headers(extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    return [("Accept", FRAMING), ("Content-Type", FRAMING), *extra]


@dataclass
class DecodedResponse:
    """One request's part of a framed response."""

    objects: list[Any] = field(default_factory=list)
    error: Any = None
    eos: bool = False


def decode_frames(body: bytes) -> tuple[list[Frame], dict[int, DecodedResponse]]:
    """Every frame of a framed body and, per request id, the decoded CBOR objects
    (indefinite byte strings joined) or the error-response map."""
    reader = FrameReader(MAX_PAYLOAD_LENGTH)
    frames = reader.feed(body)
    reader.eof()
    inputs: dict[int, streams.InputStream] = {}
    data: dict[int, bytearray] = {}
    out: dict[int, DecodedResponse] = {}
    for frame in frames:
        stream = inputs.setdefault(frame.stream_id, streams.InputStream(frame.stream_id))
        if frame.type_id == FrameType.STREAM_SETTINGS:
            values = cbor.Decoder().feed(bytes(frame.payload))
            stream.set_decoder(values[0], values[1:])
            continue
        payload = stream.frame_payload(frame)
        rec = out.setdefault(frame.request_id, DecodedResponse())
        if frame.type_id == FrameType.ERROR_RESPONSE:
            rec.error = cbor.Decoder().feed(payload)[0]
        elif frame.type_id == FrameType.COMMAND_RESPONSE:
            data.setdefault(frame.request_id, bytearray()).extend(payload)
            if frame.flags & 0x02:
                rec.eos = True
    for rid, raw in data.items():
        out[rid].objects = join_chunks(cbor.Decoder().feed(bytes(raw)))
    return frames, out


def join_chunks(values: list[Any]) -> list[Any]:
    """Indefinite byte strings (chunk objects) as one bytes value each."""
    result: list[Any] = []
    pending: list[bytes] | None = None
    for v in values:
        if isinstance(v, BytestringChunk):
            if v.first:
                pending = []
            assert pending is not None
            pending.append(v.data)
            if v.last:
                result.append(b"".join(pending))
                pending = None
        else:
            result.append(v)
    return result


def frame_stream_flags(frames: list[Frame]) -> list[int]:
    return [f.stream_flags & ~int(StreamFlag.ENCODED) for f in frames]


def stand_in_registry() -> Registry:
    """The process registry, plus a minimal v1 ``capabilities`` when ``commands/v1.py``
    has not landed (tests only; the real one comes from the v1 commands)."""
    load_commands()
    if b"capabilities" in REGISTRY.v1:
        return REGISTRY
    reg = Registry(v1=dict(REGISTRY.v1), v2=REGISTRY.v2)

    def caps(ctx: Any, args: dict[bytes, bytes], payload: Any) -> BytesResponse:
        return BytesResponse(b"batch branchmap httpheader=1024 known lookup")

    reg.v1[b"capabilities"] = V1Command(b"capabilities", caps, b"", "pull")
    return reg


def make_app(repo: Path, overrides: Sequence[str] = (), passwords: Path | None = None) -> HgwireApp:
    opts = ServerOptions(repo=repo, overrides=list(overrides), passwords=passwords)
    return HgwireApp(opts, stand_in_registry())


# --- subprocess servers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def peak_rss_mb(self) -> float:
        """The server process's peak resident memory (Linux ``VmHWM``)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc status")


@contextlib.contextmanager
def run_server(
    args: Sequence[str], tmp: Path, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """``hgwire serve ARGS`` on a free 127.0.0.1 port; stopped by pid afterwards."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    full_env = dict(os.environ)
    full_env.update(env or {})
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hgwire", "serve", "--host", "127.0.0.1",
             "--port", str(port), *args],
            stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"hgwire serve exited:\n{log.read_text(errors='replace')}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"hgwire serve did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield ServerProcess(f"http://127.0.0.1:{port}/", proc, log)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def server_factory(
    tmp_path: Path,
) -> Callable[..., contextlib.AbstractContextManager[ServerProcess]]:
    def factory(*args: str, env: dict[str, str] | None = None) -> Any:
        return run_server(args, tmp_path, env)

    return factory
