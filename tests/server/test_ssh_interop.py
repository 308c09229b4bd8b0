"""Real Mercurial clients (7.2.4 and 6.0) over SSH against hgwire's stdio server.

``ui.ssh`` is a stand-in that runs the remote command on this machine (no sshd; the
real-sshd run is in ``test_ssh_sshd.py``) and ``ui.remotecmd`` is the ``hgwire-hg``
shim, so the client runs ``hgwire-hg -R <path> serve --stdio`` exactly as it would run
``hg`` remotely. After each step both repositories pass ``hg verify`` and
``hg log --debug`` of the served changesets equals the client's.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import HGWIRE_HG_SHIM, HgRunner
from tests.repo import conftest as repo_fixtures
from tests.repo import hgrepos

pytestmark = pytest.mark.interop


@pytest.fixture(scope="session")
def full72(tmp_path_factory: pytest.TempPathFactory) -> hgrepos.GeneratedRepo:
    """The feature-rich repository built by hg 7.2 (secret, closed heads, tags...)."""
    return repo_fixtures._full(tmp_path_factory, "7.2.4")


def url(path: Path) -> str:
    return f"ssh://user@example.invalid/{path}"


def log(hg: HgRunner, repo: Path, revs: str = "all()") -> list[bytes]:
    """``hg log --debug`` of ``revs``, one entry per changeset sorted by node, without
    local revision numbers and the ``tip`` tag (the server's tip may be secret)."""
    out = hg("-R", repo, "log", "--debug", "-r", revs).stdout
    out = re.sub(rb"(?m)^tag:\s+tip\n", b"", out)
    out = re.sub(rb"(?m)^.*cache/.*\n", b"", out)  # hg's own cache debug messages
    out = re.sub(rb"-?\d+:([0-9a-f]{40})", rb"\1", out)
    return sorted(block for block in out.split(b"\n\n\n") if block.strip())


def marks(hg: HgRunner, repo: Path, revs: str = "all()") -> set[tuple[bytes, bytes]]:
    """(bookmark, node) pairs of the bookmarks on ``revs``."""
    tmpl = "{bookmarks % '{bookmark} {node}\\n'}"
    out = hg("-R", repo, "log", "-r", f"bookmark() and ({revs})", "-T", tmpl).stdout
    return {tuple(line.split(b" ")) for line in out.splitlines()}  # type: ignore[misc]


def check_same(hg: HgRunner, server: Path, client: Path, served: str = "not secret()") -> None:
    """Both sides verify; the client has exactly the served changesets, same metadata."""
    hg("-R", server, "verify", "-q")
    hg("-R", client, "verify", "-q")
    assert log(hg, client) == log(hg, server, served)  # bookmarks and phases included


def set_hgrc(repo: Path, text: str) -> None:
    (repo / ".hg" / "hgrc").write_text(text)


NONPUBLISHING = "[phases]\npublish = false\n"


def commit(hg: HgRunner, repo: Path, name: str, content: str, *args: str) -> None:
    (repo / name).write_text(content)
    hg("-R", repo, "add", "-q", repo / name)
    hg("-R", repo, "commit", "-q", "-m", f"edit {name}", *args)


@pytest.mark.parametrize("client", ["hg72", "hg60"])
def test_clone_pull_push_bookmarks_phases(
    request: pytest.FixtureRequest,
    full72: hgrepos.GeneratedRepo,
    tmp_path: Path,
    ssh: list[str],
    client: str,
) -> None:
    hg: HgRunner = request.getfixturevalue(client)
    hg72: HgRunner = request.getfixturevalue("hg72")
    server = hgrepos.copy_repo(full72.path, tmp_path / "server")
    set_hgrc(server, NONPUBLISHING)

    # clone: every served changeset, phases and bookmarks as on the server
    clone = tmp_path / "clone"
    hg("clone", "-q", url(server), clone, extra=ssh)
    check_same(hg72, server, clone)
    assert marks(hg72, clone) == marks(hg72, server, "not secret()")
    assert (b"secret-book", hg72("-R", server, "log", "-r", "secret-book", "-T", "{node}")
            .stdout) in marks(hg72, server)  # fmt: skip

    # pull: a partial clone catches up
    partial = tmp_path / "partial"
    hg("clone", "-q", "-U", "-r", "4", url(server), partial, extra=ssh)
    assert len(hg72("-R", partial, "log", "-T", "x").stdout) == 5
    out = hg("-R", partial, "pull", url(server), extra=ssh).stdout
    assert b"added 12 changesets" in out
    check_same(hg72, server, partial)

    # push new changesets and a new bookmark
    hg("-R", clone, "update", "-q", "main")
    commit(hg, clone, "pushed.txt", "one\n")
    commit(hg, clone, "pushed.txt", "two\n")
    hg("-R", clone, "bookmark", "-q", "pushed-book")
    out = hg("-R", clone, "push", "-B", "pushed-book", url(server), extra=ssh)
    text = out.stdout + out.stderr
    assert b"remote: added 2 changesets with 2 changes to 1 files" in text, text
    check_same(hg72, server, clone)
    assert hg72("-R", server, "log", "-r", "pushed-book", "-T", "{phase}").stdout == b"draft"

    # a new head needs -f; a new named branch needs --new-branch
    hg("-R", clone, "update", "-q", "7")
    commit(hg, clone, "head.txt", "new head\n")
    refused = hg("-R", clone, "push", "-r", ".", url(server), extra=ssh, check=False)
    assert refused.returncode != 0 and b"new remote head" in refused.stderr
    hg("-R", clone, "push", "-f", "-r", ".", url(server), extra=ssh)
    hg("-R", clone, "branch", "-q", "brand-new")
    commit(hg, clone, "branch.txt", "on a new branch\n")
    refused = hg("-R", clone, "push", "-r", ".", url(server), extra=ssh, check=False)
    assert refused.returncode != 0 and b"new remote branches" in refused.stderr
    hg("-R", clone, "push", "--new-branch", "-r", ".", url(server), extra=ssh)
    check_same(hg72, server, clone)

    # phases: publishing a changeset locally moves it on the server too
    hg("-R", clone, "phase", "--public", "-r", "pushed-book")
    hg("-R", clone, "push", "-r", "pushed-book", url(server), extra=ssh, check=False)
    assert hg72("-R", server, "log", "-r", "pushed-book", "-T", "{phase}").stdout == b"public"
    check_same(hg72, server, clone)

    # bookmarks: move and delete remotely, pull one back
    hg("-R", clone, "bookmark", "-q", "-f", "-r", "main", "pushed-book")
    hg("-R", clone, "push", "-B", "pushed-book", url(server), extra=ssh, check=False)
    main = hg72("-R", server, "log", "-r", "main", "-T", "{node}").stdout
    assert hg72("-R", server, "log", "-r", "pushed-book", "-T", "{node}").stdout == main
    hg("-R", clone, "bookmark", "-q", "-d", "pushed-book")
    hg("-R", clone, "push", "-B", "pushed-book", url(server), extra=ssh, check=False)
    assert b"pushed-book" not in hg72("-R", server, "bookmarks").stdout
    hg72("-R", server, "bookmark", "-q", "-r", "stable", "from-server")
    hg("-R", partial, "pull", "-B", "from-server", url(server), extra=ssh)
    stable = hg72("-R", server, "log", "-r", "stable", "-T", "{node}").stdout
    assert hg72("-R", partial, "log", "-r", "from-server", "-T", "{node}").stdout == stable
    hg("-R", clone, "pull", "-q", url(server), extra=ssh)
    check_same(hg72, server, clone)


def test_push_to_publishing_server_makes_public(
    hg72: HgRunner, public_repo: Path, tmp_path: Path, ssh: list[str]
) -> None:
    server = hgrepos.copy_repo(public_repo, tmp_path / "server")
    local = tmp_path / "local"
    hg72("clone", "-q", url(server), local, extra=ssh)
    commit(hg72, local, "f.txt", "x\n")
    assert hg72("-R", local, "log", "-r", "tip", "-T", "{phase}").stdout == b"draft"
    hg72("-R", local, "push", url(server), extra=ssh)
    assert hg72("-R", server, "log", "-r", "tip", "-T", "{phase}").stdout == b"public"
    assert hg72("-R", local, "log", "-r", "tip", "-T", "{phase}").stdout == b"public"
    check_same(hg72, server, local)
    # nothing more to push
    again = hg72("-R", local, "push", url(server), extra=ssh, check=False)
    assert again.returncode == 1 and b"no changes found" in again.stdout
    # read-only commands: identify (lookup), incoming/outgoing (discovery)
    tip = hg72("-R", server, "log", "-r", "main", "-T", "{node|short}\n").stdout
    assert hg72("identify", "--id", "-r", "main", url(server), extra=ssh).stdout == tip
    commit(hg72, local, "g.txt", "y\n")
    out = hg72("-R", local, "outgoing", "-q", "-T", "{desc}\n", url(server), extra=ssh)
    assert out.stdout == b"edit g.txt\n"
    none = hg72("-R", local, "incoming", url(server), extra=ssh, check=False)
    assert none.returncode == 1 and b"no changes found" in none.stdout


def test_push_race_refused(
    hg72: HgRunner, hg72_path: Path, public_repo: Path, tmp_path: Path, ssh: list[str]
) -> None:
    """Client B's push is prepared (discovery done) when client A's push lands: the
    server's ``check:updated-heads`` fails, nothing of B's is applied."""
    server = hgrepos.copy_repo(public_repo, tmp_path / "server")
    a, b = tmp_path / "a", tmp_path / "b"
    for side in (a, b):
        hg72("clone", "-q", url(server), side, extra=ssh)
        hg72("-R", side, "update", "-q", "main")
        commit(hg72, side, f"{side.name}.txt", f"from {side.name}\n")
    before = log(hg72, server)
    # B's preoutgoing hook (after discovery, before the bundle is sent) pushes A.
    hook = " ".join([f"'{os.fspath(hg72_path)}'", *[f"'{x}'" for x in ssh],
                     "-R", f"'{a}'", "push", "-q", f"'{url(server)}'"])  # fmt: skip
    raced = hg72("-R", b, "push", url(server), "--config", f"hooks.preoutgoing={hook}",
                 extra=ssh, check=False)  # fmt: skip
    assert raced.returncode != 0
    assert b"remote repository changed while pushing - please try again" in raced.stderr
    after = log(hg72, server)
    assert after != before  # A's push landed
    check_same(hg72, server, a)
    bnode = hg72("-R", b, "log", "-r", ".", "-T", "{node}").stdout.decode()
    assert hg72("-R", server, "log", "-r", f"{bnode}", check=False).returncode != 0
    hg72("-R", server, "verify", "-q")


def test_stream_clone(hg72: HgRunner, public_repo: Path, tmp_path: Path, ssh: list[str]) -> None:
    server = hgrepos.copy_repo(public_repo, tmp_path / "server")
    set_hgrc(server, NONPUBLISHING)
    dest = tmp_path / "stream"
    out = hg72("clone", "-U", "--stream", url(server), dest, extra=ssh).stdout
    assert b"streaming all changes" in out
    check_same(hg72, server, dest)
    # stream-preferred: a plain clone streams too
    set_hgrc(server, NONPUBLISHING + "[server]\npreferuncompressed = true\n")
    dest3 = tmp_path / "preferred"
    out = hg72("clone", "-U", url(server), dest3, extra=ssh).stdout
    assert b"streaming all changes" in out
    check_same(hg72, server, dest3)
    # refused when the server disallows it: hg falls back to a regular clone
    set_hgrc(server, "[server]\nuncompressed = false\n")
    dest2 = tmp_path / "nostream"
    out = hg72("clone", "-U", "--stream", url(server), dest2, extra=ssh).stdout
    assert b"streaming all changes" not in out and b"added 8 changesets" in out
    hg72("-R", dest2, "verify", "-q")


def test_hg60_upgrades_to_sshv2_and_clones(
    hg60: HgRunner, hg72: HgRunner, full72: hgrepos.GeneratedRepo, tmp_path: Path,
    ssh: list[str],
) -> None:  # fmt: skip
    server = hgrepos.copy_repo(full72.path, tmp_path / "server")
    set_hgrc(server, NONPUBLISHING + "[experimental]\nsshserver.support-v2 = true\n")
    dest = tmp_path / "clone"
    v2 = ["--config", "experimental.sshpeer.advertise-v2=true"]
    out = hg60("--debug", "clone", "-U", url(server), dest, extra=[*ssh, *v2])
    assert b"protocol upgraded to exp-ssh-v2-0003" in out.stdout + out.stderr
    check_same(hg72, server, dest)
    # without support-v2 (the default) the upgrade is declined and v1 carries on
    set_hgrc(server, NONPUBLISHING)
    dest2 = tmp_path / "clone2"
    out = hg60("--debug", "clone", "-U", url(server), dest2, extra=[*ssh, *v2])
    assert b"protocol upgraded" not in out.stdout + out.stderr
    check_same(hg72, server, dest2)


def test_missing_repository_and_unsafe_invocation(
    hg72: HgRunner, tmp_path: Path, ssh: list[str]
) -> None:
    out = hg72("clone", url(tmp_path / "nothere"), tmp_path / "x", extra=ssh, check=False)
    assert out.returncode != 0
    assert b"remote: abort: repository" in out.stderr and b"not found" in out.stderr
    cmd = [str(HGWIRE_HG_SHIM), "-R", str(tmp_path), "serve", "--stdio", "--debugger"]
    proc = subprocess.run(cmd, input=b"", capture_output=True, check=False)
    assert proc.returncode == 255
    assert proc.stderr.startswith(b"abort: potentially unsafe serve --stdio invocation")


def test_clone_bundles(hg72: HgRunner, public_repo: Path, tmp_path: Path, ssh: list[str]) -> None:
    """With ``.hg/clonebundles.manifest`` the server advertises ``clonebundles``; a 7.2
    client fetches the bundle it names (over HTTP from a local file server), then pulls
    the rest over SSH."""
    server = hgrepos.copy_repo(public_repo, tmp_path / "server")
    set_hgrc(server, NONPUBLISHING)
    files = tmp_path / "files"
    files.mkdir()
    hg72(
        "-R",
        server,
        "bundle",
        "-q",
        "--base",
        "null",
        "-r",
        "4",
        "-t",
        "gzip-v2",
        files / "part.hg",
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    httpd = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
         "--directory", str(files)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):  # wait until it listens
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        manifest = f"http://127.0.0.1:{port}/part.hg BUNDLESPEC=gzip-v2\n"
        (server / ".hg" / "clonebundles.manifest").write_text(manifest)
        dest = tmp_path / "clone"
        out = hg72("clone", "-U", url(server), dest, extra=ssh)
        text = out.stdout + out.stderr
        assert f"applying clone bundle from http://127.0.0.1:{port}/part.hg".encode() in text
        # ::4 (revisions 0, 1, 2, 4) from the bundle, the other 4 over SSH
        assert text.count(b"added 4 changesets") == 2
        check_same(hg72, server, dest)
    finally:
        os.kill(httpd.pid, signal.SIGTERM)
        httpd.wait()
