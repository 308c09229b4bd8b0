"""Real hg 6.0/7.2 clients cloning, pulling and pushing through hgwire's exchange layer.

The client reaches hgwire's own SSH stdio server (the ``hgwire-hg`` shim as
``ui.remotecmd``, through a local ssh stand-in), so everything it receives (getbundle
replies, stream clones, push replies) comes from :mod:`hgwire.exchange`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import HgRunner
from tests.repo import hgrepos

NULLID = b"\0" * 20
LOG = "{node} {phase} {p1node} {p2node} {manifest} {files|json}\n"


def url(path: Path) -> str:
    return f"ssh://fakehost/{path}"


@pytest.mark.interop
@pytest.mark.parametrize("client", ["hg60", "hg72"])
def test_real_client_clones_and_pulls(
    request: pytest.FixtureRequest, full_repo72: hgrepos.GeneratedRepo, tmp_path: Path,
    client: str, ssh: list[str],
) -> None:  # fmt: skip
    hg: HgRunner = request.getfixturevalue(client)
    hg72: HgRunner = request.getfixturevalue("hg72")
    server = tmp_path / "server"
    hgrepos.copy_repo(full_repo72.path, server)
    dest = tmp_path / "clone"
    hg("clone", "-q", "-U", url(server), dest, extra=ssh)
    hg("-R", dest, "verify", "-q")
    want = hg72("-R", server, "log", "-r", "reverse(not secret())", "-T", LOG).stdout
    assert hg72("-R", dest, "log", "-T", LOG).stdout == want.replace(b" draft ", b" public ")
    books = hg72("-R", dest, "bookmarks", "-T", "{bookmark} {node}\n").stdout
    srcbooks = hg72("-R", server, "bookmarks", "-T", "{bookmark} {node}\n").stdout
    assert books.splitlines() == [b for b in srcbooks.splitlines() if b"secret" not in b]
    # incremental pull: a partial clone catches up
    part = tmp_path / "partial"
    hg72("clone", "-q", "-U", "-r", "4", full_repo72.path, part)
    out = hg("-R", part, "pull", url(server), extra=ssh).stdout
    assert b"added 12 changesets" in out
    hg("-R", part, "verify", "-q")
    assert hg72("-R", part, "log", "-T", "{node}\n").stdout.split() == (
        hg72("-R", dest, "log", "-T", "{node}\n").stdout.split()
    )


@pytest.mark.interop
@pytest.mark.parametrize("stream2", [True, False], ids=["v2", "v1"])
def test_real_client_stream_clone(
    hg72: HgRunner,
    nosecret_repo72: hgrepos.GeneratedRepo,
    tmp_path: Path,
    ssh: list[str],
    stream2: bool,
) -> None:
    """``hg clone --stream``: bundle2 ``stream2`` part, or ``stream_out`` (v1) when the
    server does not offer ``stream=v2``."""
    server = tmp_path / "server"
    hgrepos.copy_repo(nosecret_repo72.path, server)
    if not stream2:
        (server / ".hg" / "hgrc").write_text("[server]\nbundle2.stream = false\n")
    dest = tmp_path / "clone"
    proc = hg72("clone", "-U", "--stream", url(server), dest, extra=ssh)
    out = proc.stdout + proc.stderr
    assert b"streaming all changes" in out
    # A legacy ``stream_out`` clone is followed by an ordinary pull (which finds
    # nothing); the bundle2 ``stream2`` part carries everything in one getbundle.
    assert (b"searching for changes" in out) == (not stream2), out
    hg72("-R", dest, "verify", "-q")
    assert hg72("-R", dest, "log", "-T", "{node}\n").stdout == (
        hg72("-R", server, "log", "-T", "{node}\n").stdout
    )


@pytest.mark.interop
@pytest.mark.parametrize("client", ["hg60", "hg72"])
def test_real_client_pushes(
    request: pytest.FixtureRequest, full_repo72: hgrepos.GeneratedRepo, tmp_path: Path,
    client: str, ssh: list[str],
) -> None:  # fmt: skip
    hg: HgRunner = request.getfixturevalue(client)
    hg72: HgRunner = request.getfixturevalue("hg72")
    server = tmp_path / "server"
    hg72("clone", "-q", "-U", "-r", "7", full_repo72.path, server)
    local = tmp_path / "local"
    hgrepos.copy_repo(full_repo72.path, local)
    out = hg("-R", local, "push", "-r", "16", "-B", "main", url(server), extra=ssh)
    text = out.stdout + out.stderr
    assert b"remote: added 4 changesets with 5 changes to 3 files" in text, text
    hg72("-R", server, "verify", "-q")
    got = hg72("-R", server, "log", "-T", "{node} {phase}\n").stdout.split(b"\n")
    assert all(line.endswith(b" public") for line in got if line)
    assert hg72("-R", server, "log", "-r", "tip", "-T", "{node}").stdout == (
        hg72("-R", local, "log", "-r", "16", "-T", "{node}").stdout
    )
    books = hg72("-R", server, "bookmarks", "-T", "{bookmark} {node}\n").stdout
    assert b"main " + hg72("-R", local, "log", "-r", "16", "-T", "{node}").stdout in books
    # pushing again: nothing to do
    again = hg("-R", local, "push", "-r", "16", url(server), extra=ssh, check=False)
    assert again.returncode == 1 and b"no changes found" in again.stdout
