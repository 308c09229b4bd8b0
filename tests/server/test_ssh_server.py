"""The SSH stdio server in-process: push payload framing, push results and refusals,
out-of-band errors, malformed requests (spec §6.2, §6.5, §9.5)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from hgwire.commands import common
from hgwire.commands.context import ServerConfig
from hgwire.commands.registry import REGISTRY, BytesResponse, Registry
from hgwire.exchange import bundle2
from hgwire.repo.localrepo import Repository
from hgwire.server import hgshim
from hgwire.server.sshserver import SshServer, load_commands
from tests.commands.test_v1_commands import HANDSHAKE, request
from tests.conftest import HgRunner
from tests.repo import hgrepos

load_commands()


class Session:
    """One in-process session; ``run(data)`` serves it and keeps the outputs."""

    def __init__(self, repo: Path, config: ServerConfig | None = None) -> None:
        self.repo = repo
        self.config = config or ServerConfig()
        self.stdout = b""
        self.stderr = b""
        self.code = -1

    def run(self, data: bytes) -> bytes:
        fout, ferr = io.BytesIO(), io.BytesIO()
        server = SshServer(
            Repository.open(self.repo),
            io.BytesIO(data),
            fout,
            ferr,
            self.config,  # type: ignore[arg-type]
        )
        self.code = server.serve()
        self.stdout, self.stderr = fout.getvalue(), ferr.getvalue()
        return self.stdout


def chunked(payload: bytes, size: int = 4096) -> bytes:
    """The push upload as hg writes it (§6.5)."""
    out = [b"%d\n%s" % (len(payload[i : i + size]), payload[i : i + size])
           for i in range(0, len(payload), size)]  # fmt: skip
    return b"".join(out) + b"0\n"


def string(value: bytes) -> bytes:
    return b"%d\n%s" % (len(value), value)


def heads_reply(repo: Path) -> bytes:
    view = common.served(Repository.open(repo))
    return string(b" ".join(n.hex().encode() for n in common.heads(view)) + b"\n")


@pytest.fixture
def pair(hg72: HgRunner, public_repo: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A server repository (the vector repository minus its last changeset) and a local
    repository with that changeset plus one more."""
    server = tmp_path / "server"
    hg72("clone", "-q", "-U", "-r", "6", public_repo, server)
    local = hgrepos.copy_repo(public_repo, tmp_path / "local")
    return server, local


def bundle(hg72: HgRunner, local: Path, server: Path, kind: str, out: Path) -> bytes:
    hg72("-R", local, "bundle", "-q", "-t", kind, "-r", "tip", out, server)
    return out.read_bytes()


def test_bundle2_push_over_stdio(hg72: HgRunner, pair: tuple[Path, Path], tmp_path: Path) -> None:
    server, local = pair
    payload = bundle(hg72, local, server, "none-v2", tmp_path / "b.hg")
    assert payload.startswith(b"HG20")
    s = Session(server)
    out = s.run(request(b"unbundle", {b"heads": b"force".hex().encode()})
                + chunked(payload, 100) + request(b"heads"))  # fmt: skip
    assert out.startswith(b"0\n")  # the go-ahead
    reply = out[2 : len(out) - len(heads_reply(server))]
    parts = list(bundle2.Unbundler(io.BytesIO(reply)).iterparts())
    assert [p.type for p in parts] == []  # a bundle file has no replycaps: empty reply
    assert out.endswith(heads_reply(server))
    assert b"adding changesets\n" in s.stderr and b"added 1 changesets" in s.stderr
    assert s.code == 0
    hg72("-R", server, "verify", "-q")
    assert hg72("-R", server, "log", "-r", "tip", "-T", "{node} {phase}").stdout == (
        hg72("-R", local, "log", "-r", "tip", "-T", "{node} public").stdout
    )


def test_bundle1_push_and_race(hg72: HgRunner, pair: tuple[Path, Path], tmp_path: Path) -> None:
    server, local = pair
    payload = bundle(hg72, local, server, "none-v1", tmp_path / "b1.hg")
    assert payload.startswith(b"HG10UN")
    view = common.served(Repository.open(server))
    theirs = b" ".join(n.hex().encode() for n in common.heads(view))
    # stale heads: refused before the payload is asked for; the session goes on
    s = Session(server)
    stale = request(b"unbundle", {b"heads": b"1" * 40})
    out = s.run(stale + request(b"heads"))
    msg = b"repository changed while preparing changes - please try again"
    assert out == string(msg) + heads_reply(server)
    # hashed heads (unbundlehash), then the bundle1 result: 0\n then the integer
    import hashlib

    digest = hashlib.sha1(b"".join(sorted(common.heads(view)))).hexdigest().encode()
    hashed = b"hashed".hex().encode() + b" " + digest
    out = s.run(request(b"unbundle", {b"heads": hashed}) + chunked(payload) + request(b"heads"))
    # the go-ahead, then the result: 2 (one head added, r7 is not r6's child)
    assert out == b"0\n0\n1\n2" + heads_reply(server)
    assert b"added 1 changesets" in s.stderr
    hg72("-R", server, "verify", "-q")
    # bundle1 pushes refused by configuration: out-of-band error, payload consumed
    cfg = ServerConfig(extra={(b"server", b"bundle1"): b"false"})
    s = Session(server, cfg)
    _ = theirs
    out = s.run(request(b"unbundle", {b"heads": b"force".hex().encode()}) + chunked(payload)
                + request(b"heads"))  # fmt: skip
    assert out == b"0\n\n" + heads_reply(server)
    assert s.stderr.startswith(b"incompatible Mercurial client; bundle2 required\n(see ")
    assert s.stderr.endswith(b"\n-\n")


def test_bundle2_push_race_reply(hg72: HgRunner, pair: tuple[Path, Path], tmp_path: Path) -> None:
    """A ``check:heads`` naming other heads: an ``error:pushraced`` reply, nothing
    applied."""
    server, local = pair
    cg = bundle2.Unbundler(io.BytesIO(bundle(hg72, local, server, "none-v2", tmp_path / "b")))
    cgpart = next(p for p in cg.iterparts() if p.type == b"changegroup")
    cgdata, version = cgpart.read(), cgpart.params[b"version"]
    b = bundle2.Bundler()
    b.newpart(b"replycaps", data=bundle2.encodecaps(bundle2.client_capabilities()))
    b.newpart(b"check:heads", data=b"\x11" * 20)
    b.newpart(b"changegroup", [(b"version", version)], data=cgdata)
    before = hg72("-R", server, "log", "-T", "{node}\n").stdout
    s = Session(server)
    out = s.run(request(b"unbundle", {b"heads": b"force".hex().encode()}) + chunked(b.tobytes()))
    parts = list(bundle2.Unbundler(io.BytesIO(out[2:])).iterparts())
    assert [p.type for p in parts] == [b"error:pushraced"]
    assert parts[0].params[b"message"] == (
        b"remote repository changed while pushing - please try again"
    )
    assert hg72("-R", server, "log", "-T", "{node}\n").stdout == before
    hg72("-R", server, "verify", "-q")


def test_failing_commands_are_out_of_band(public_repo: Path) -> None:
    s = Session(public_repo)
    out = s.run(request(b"known", {b"nodes": b"zz"}) + request(b"heads"))
    assert out == b"\n" + heads_reply(public_repo)
    assert s.stderr == b"invalid hex node: zz\n-\n" and s.code == 0
    cfg = ServerConfig(extra={(b"server", b"bundle1"): b"false"})
    s = Session(public_repo, cfg)
    out = s.run(request(b"getbundle", {b"common": b"0" * 40}) + request(b"heads"))
    assert out == b"\n" + heads_reply(public_repo)
    assert s.stderr.startswith(b"incompatible Mercurial client; bundle2 required")


@pytest.mark.parametrize(
    "data",
    [
        b"lookup\nkeyx 3\ntip",  # undeclared argument name
        b"lookup\nkey three\ntip",  # not a length
        b"lookup\nkey 30\ntip",  # value cut short by EOF
        b"lookup\n",  # EOF before the argument
        b"changegroupsubset\nbases 0\nbases 0\n",  # a name twice, another missing
    ],
)
def test_malformed_arguments_stop_the_server(public_repo: Path, data: bytes) -> None:
    s = Session(public_repo)
    out = s.run(data + request(b"heads"))
    assert out == b"\n" and s.code == 255
    assert s.stderr.startswith(b"abort: ") and s.stderr.endswith(b"\n-\n")


def test_session_ends_on_eof_and_empty_line(public_repo: Path) -> None:
    s = Session(public_repo)
    assert s.run(b"") == b"" and s.code == 0
    assert s.run(b"heads\n\nheads\n") == heads_reply(public_repo)
    out = s.run(HANDSHAKE + b"heads")  # last line without newline is still a command
    assert out.endswith(heads_reply(public_repo)) and out.count(b"capabilities: ") == 1


def test_protocaps_reach_later_commands(public_repo: Path) -> None:
    seen: list[frozenset[bytes]] = []
    s = SshServer(
        Repository.open(public_repo),
        io.BytesIO(request(b"protocaps", {b"caps": b"partial-pull comp=zlib"}) + b"heads\n"),  # type: ignore[arg-type]
        io.BytesIO(), io.BytesIO(),  # type: ignore[arg-type]
    )  # fmt: skip
    original: Callable[..., object] = s.context

    def spy() -> object:
        ctx = original()
        seen.append(ctx.protocaps)  # type: ignore[attr-defined]
        return ctx

    s.context = spy  # type: ignore[method-assign]
    assert s.serve() == 0
    assert seen == [frozenset(), frozenset({b"partial-pull", b"comp=zlib"})]


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        (["-R", "/r", "serve", "--stdio"], "/r"),
        (["serve", "--stdio", "-R", "/r"], "/r"),
        (["--repository", "/r", "serve", "--stdio"], "/r"),
        (["-R", "/r", "serve"], None),
        (["-R", "--x", "serve", "--stdio"], None),
        (["serve", "--stdio"], None),
    ],
)
def test_shim_parse(argv: list[str], path: str | None) -> None:
    assert hgshim.parse(argv) == path


def test_internal_error_is_reported_and_session_continues(public_repo: Path) -> None:
    registry = Registry()
    registry.v1.update(REGISTRY.v1)

    @registry.v1command(b"boom")
    def boom(ctx: object, args: object, payload: object) -> BytesResponse:
        raise RuntimeError("kaput")

    fout, ferr = io.BytesIO(), io.BytesIO()
    server = SshServer(
        Repository.open(public_repo), io.BytesIO(b"boom\nheads\n"), fout, ferr,  # type: ignore[arg-type]
        registry=registry,
    )  # fmt: skip
    assert server.serve() == 0
    assert fout.getvalue() == b"\n" + heads_reply(public_repo)
    assert b"RuntimeError: kaput" in ferr.getvalue()
    assert ferr.getvalue().endswith(b"internal error: kaput\n-\n")


@pytest.mark.parametrize(("value", "upgraded"), [("always", True), ("on", True), (None, False)])
def test_support_v2_is_read_as_hg_reads_booleans(
    public_repo: Path, tmp_path: Path, value: str | None, upgraded: bool
) -> None:
    """``experimental.sshserver.support-v2`` takes every hg boolean (``always`` was
    ignored) and is off by default, as in 6.0."""
    from hgwire.server.sshserver import serve_stdio

    repo = hgrepos.copy_repo(public_repo, tmp_path / "r")
    overrides = [] if value is None else [f"experimental.sshserver.support-v2={value}"]
    data = b"upgrade tok proto=exp-ssh-v2-0003\nhello\nbetween\npairs 81\n" + b"0" * 40
    data += b"-" + b"0" * 40
    fout, ferr = io.BytesIO(), io.BytesIO()
    serve_stdio(str(repo), io.BytesIO(data), fout, ferr, overrides)  # type: ignore[arg-type]
    assert fout.getvalue().startswith(b"upgraded tok exp-ssh-v2-0003\n") == upgraded


def test_huge_announced_sizes_are_refused(public_repo: Path) -> None:
    """An argument or push chunk announcing more than MAX_VALUE bytes ends with an error
    message (reading it from a buffered stdin tried to allocate it: MemoryError)."""
    from hgwire.server.sshserver import MAX_VALUE

    huge = MAX_VALUE * 1000000
    for data in (
        b"lookup\nkey %d\ntip" % huge,
        request(b"unbundle", {b"heads": b"force".hex().encode()}) + b"%d\nabc" % huge,
    ):
        fout, ferr = io.BytesIO(), io.BytesIO()
        fin = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
        server = SshServer(Repository.open(public_repo), fin, fout, ferr)  # type: ignore[arg-type]
        code = server.serve()
        assert b"Traceback" not in ferr.getvalue() and code != 1
        assert b"exceeds %d" % MAX_VALUE in ferr.getvalue()
        assert ferr.getvalue().endswith(b"\n-\n")
