"""The v1 ``unbundle`` command (``hgwire.commands.unbundle``): pushes are all or
nothing, replies carry what the client expects, output goes where the transport wants
it (wire spec §9.5, storage §9.8)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hgwire.commands import v1  # noqa: F401  (registers the v1 commands)
from hgwire.commands.context import CommandContext, ServerConfig
from hgwire.commands.registry import REGISTRY, PushError, PushResponse, StreamResponse
from hgwire.exchange import bundle2
from hgwire.repo.localrepo import Repository
from tests.conftest import HgRunner
from tests.repo import hgrepos

FORCE = b"force".hex().encode()


@pytest.fixture
def pushable(hg72: HgRunner, public_repo: Path, tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """(server repository without the vector repository's tip, cg02 data of that tip,
    the tip's node)."""
    server = tmp_path / "server"
    hg72("clone", "-q", "-U", "-r", "6", public_repo, server)
    local = hgrepos.copy_repo(public_repo, tmp_path / "local")
    out = tmp_path / "b.hg"
    hg72("-R", local, "bundle", "-q", "-t", "none-v2", "-r", "tip", out, server)
    part = next(
        p
        for p in bundle2.Unbundler(io.BytesIO(out.read_bytes())).iterparts()
        if p.type == b"changegroup"
    )
    node = bytes.fromhex(hg72("-R", local, "log", "-r", "tip", "-T", "{node}").stdout.decode())
    return server, part.read(), node


def push(
    server: Path, parts: list[bundle2.Part], transport: str = "ssh-v1", **config: object
) -> tuple[list[bundle2.UnbundlePart], list[bytes]]:
    """Run ``unbundle`` with a bundle of ``parts``; (reply parts, side-channel output)."""
    b = bundle2.Bundler()
    b.newpart(b"replycaps", data=bundle2.encodecaps(bundle2.client_capabilities()))
    for p in parts:
        b.addpart(p)
    said: list[bytes] = []
    ctx = CommandContext(
        Repository.open(server), ServerConfig(**config), transport,  # type: ignore[arg-type]
        output=said.append,
    )  # fmt: skip
    rsp = REGISTRY.v1[b"unbundle"].func(ctx, {b"heads": FORCE}, io.BytesIO(b.tobytes()))
    assert isinstance(rsp, StreamResponse) and not rsp.compressible
    reply = bundle2.Unbundler(io.BytesIO(b"".join(rsp.chunks)))
    parts_out = []
    for p in reply.iterparts():
        p.data = p.read()  # type: ignore[attr-defined]
        parts_out.append(p)
    return parts_out, said


def hg_summary(hg72: HgRunner, server: Path) -> bytes:
    """What hg 7.2 says when it applies the same bundle to a copy of ``server``
    (the bundle file is kept next to it)."""
    copy = hgrepos.copy_repo(server, server.parent / "hgcopy")
    out = hg72("-R", copy, "unbundle", server.parent / "b.hg").stdout
    return next(line for line in out.splitlines(keepends=True) if line.startswith(b"added "))


def cgpart(data: bytes) -> bundle2.Part:
    return bundle2.Part(b"changegroup", [(b"version", b"02")], data=data)


def state(hg72: HgRunner, repo: Path) -> bytes:
    hg72("-R", repo, "verify", "-q")
    return hg72("-R", repo, "log", "-T", "{node} {phase} {bookmarks}\n").stdout


def test_push_replies_and_output(hg72: HgRunner, pushable: tuple[Path, bytes, bytes]) -> None:
    server, data, node = pushable
    summary = hg_summary(hg72, server)
    parts, said = push(server, [cgpart(data)])
    assert [p.type for p in parts] == [b"reply:changegroup"]
    assert parts[0].params[b"return"] == b"2"  # one head added
    assert b"".join(said) == (
        b"adding changesets\nadding manifests\nadding file changes\n" + summary
    )
    assert hg72("-R", server, "log", "-r", node.hex(), "-T", "{phase}").stdout == b"public"


def test_http_push_output_parts(hg72: HgRunner, pushable: tuple[Path, bytes, bytes]) -> None:
    server, data, node = pushable
    summary = hg_summary(hg72, server)
    parts, said = push(server, [cgpart(data)], "http-v1", publishing=False)
    assert said == []
    assert [p.type for p in parts] == [b"reply:changegroup", b"output", b"output"]
    text = b"".join(p.data for p in parts[1:])  # type: ignore[attr-defined]
    assert text.endswith(summary)
    assert hg72("-R", server, "log", "-r", node.hex(), "-T", "{phase}").stdout == b"draft"


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (
            bundle2.Part(
                b"pushkey",
                [(b"namespace", b"bookmarks"), (b"key", b"b"), (b"old", b"1" * 40), (b"new", b"")],
            ),
            b"error:pushkey",
        ),
        (bundle2.Part(b"NO-SUCH-PART"), b"error:unsupportedcontent"),
        (bundle2.Part(b"check:heads", data=b"\x22" * 20), b"error:pushraced"),
    ],
    ids=["failed-pushkey", "unknown-mandatory-part", "race"],
)
def test_push_is_all_or_nothing(
    hg72: HgRunner, pushable: tuple[Path, bytes, bytes], extra: bundle2.Part, error: bytes
) -> None:
    """Whatever part fails, after or before the changegroup, nothing is applied."""
    server, data, _node = pushable
    before = state(hg72, server)
    for parts in ([cgpart(data), extra], [extra, cgpart(data)]):
        fresh = [bundle2.Part(p.type, p.mandatoryparams, p.advisoryparams, p.data) for p in parts]
        replies, _said = push(server, fresh)
        assert replies[-1].type == error
        assert state(hg72, server) == before


def test_bundle1_push_results(hg72: HgRunner, public_repo: Path, tmp_path: Path) -> None:
    server = tmp_path / "server"
    hg72("clone", "-q", "-U", "-r", "6", public_repo, server)
    out = tmp_path / "b1.hg"
    hg72("-R", public_repo, "bundle", "-q", "-t", "gzip-v1", "-r", "tip", out, server)
    ctx = CommandContext(Repository.open(server), ServerConfig(), "http-v1")
    cmd = REGISTRY.v1[b"unbundle"]
    stale = cmd.func(ctx, {b"heads": b"3" * 40}, io.BytesIO(out.read_bytes()))
    assert stale == PushError(b"repository changed while preparing changes - please try again")
    ok = cmd.func(ctx, {b"heads": FORCE}, io.BytesIO(out.read_bytes()))
    assert isinstance(ok, PushResponse) and ok.result == 2
    assert ok.output.endswith(b"added 1 changesets with 2 changes to 2 files (+1 heads)\n")
    broken = out.read_bytes()[:-40]
    before = state(hg72, server)
    bad = cmd.func(ctx, {b"heads": FORCE}, io.BytesIO(broken))
    assert isinstance(bad, PushResponse) and bad.result == 0
    assert bad.output.startswith(b"abort: ")
    assert state(hg72, server) == before
