"""Our command output through the sans-IO server reactor: what a 6.0 client would read.

The objects are framed by :class:`~hgwire.wire.server.ServerReactor` (identity stream),
the command-response payloads joined and decoded again; store files stream as
indefinite byte strings of 128 KiB chunks (spec §3.3, §8.7).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hgwire.commands import v2
from hgwire.commands.context import CommandContext, ServerConfig
from hgwire.commands.registry import REGISTRY
from hgwire.repo.localrepo import Repository
from hgwire.wire import cbor
from hgwire.wire.cbor import BytestringChunk
from hgwire.wire.frames import FrameType
from hgwire.wire.server import ServerReactor
from tests.commands.conftest import run_command

MAX_FRAME = 32768


def framed(repo: Repository, name: bytes, args: dict[bytes, Any]) -> tuple[list[Any], list[int]]:
    """Decoded objects and payload sizes of the command-response frames."""
    ctx = CommandContext(repo, ServerConfig(), "http-v2")
    checked = REGISTRY.v2[name].checkargs(args)
    objects = REGISTRY.v2[name].func(ctx, **{k.decode(): v for k, v in checked.items()})
    reactor = ServerReactor()
    stream = reactor.output_stream()
    event = reactor.on_command_response_objects(stream, 1, objects)
    frames = list(event.frames)  # type: ignore[union-attr]
    responses = [f for f in frames if f.type_id == FrameType.COMMAND_RESPONSE]
    data = b"".join(bytes(f.payload) for f in responses)
    return cbor.loads_all(data), [len(f.payload) for f in responses]


def test_changesets_and_manifests_through_the_reactor(corpus10k: Path) -> None:
    repo = Repository.open(corpus10k)
    cl = repo.changelog
    nodes = [cl.node(r) for r in range(600, 700)]
    for name, args in (
        (b"changesetdata", {b"revisions": [{b"type": b"changesetexplicit", b"nodes": nodes}],
                            b"fields": {b"parents", b"revision", b"phase"}}),
        (b"filesdata", {b"revisions": [{b"type": b"changesetexplicit", b"nodes": nodes}],
                        b"fields": {b"parents", b"revision"}, b"haveparents": True}),
    ):  # fmt: skip
        objs, sizes = framed(repo, name, args)
        assert objs == run_command(repo, name, args)
        assert len(objs) > 200
        assert max(sizes) <= MAX_FRAME


def test_rawstorefiledata_streams_through_the_reactor(corpus10k: Path) -> None:
    repo = Repository.open(corpus10k)
    objs, sizes = framed(repo, b"rawstorefiledata", {b"files": [b"manifestlog"]})
    assert max(sizes) <= MAX_FRAME
    assert objs[0] == {b"status": b"ok"}
    header, meta = objs[1], objs[2]
    assert header[b"filecount"] == 2 and meta[b"path"] == b"00manifest.d"
    chunks = []
    for obj in objs[3:]:
        if not isinstance(obj, BytestringChunk):
            break
        chunks.append(obj)
    assert chunks[0].first and chunks[-1].last and chunks[-1].data == b""
    body = [c.data for c in chunks[:-1]]
    assert all(len(c) == v2.RAW_CHUNK for c in body[:-1]) and len(body) > 2
    assert b"".join(body) == (corpus10k / ".hg" / "store" / "00manifest.d").read_bytes()
