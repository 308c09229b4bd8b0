"""hg over a real OpenSSH connection to hgwire: ``sshd`` on 127.0.0.1 runs the
``hgwire-hg`` shim as the remote command (``ssh://user@127.0.0.1:PORT//abs/path``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import HgRunner
from tests.repo import hgrepos
from tests.server.sshd import Sshd, sshd  # noqa: F401
from tests.server.test_ssh_interop import check_same, commit

SHIM = Path(sys.executable).with_name("hgwire-hg")

pytestmark = pytest.mark.interop


def options(server: Sshd) -> list[str]:
    return ["--config", f"ui.ssh={server.ssh_command}", "--config", f"ui.remotecmd={SHIM}"]


def test_clone_push_pull_through_sshd(
    sshd: Sshd,  # noqa: F811
    hg72: HgRunner,
    hg60: HgRunner,
    public_repo: Path,
    tmp_path: Path,
) -> None:
    server = hgrepos.copy_repo(public_repo, tmp_path / "server")
    (server / ".hg" / "hgrc").write_text("[phases]\npublish = false\n")
    url = sshd.url(server)
    assert url == f"ssh://{sshd.user}@127.0.0.1:{sshd.port}/{server}"  # //abs/path
    clone = tmp_path / "clone"
    out = hg72("clone", url, clone, extra=options(sshd))
    assert b"added 8 changesets" in out.stdout
    check_same(hg72, server, clone)
    commit(hg72, clone, "over-sshd.txt", "pushed through sshd\n")
    out = hg72("-R", clone, "push", url, extra=options(sshd))
    assert b"remote: added 1 changesets with 1 changes to 1 files" in out.stdout + out.stderr
    check_same(hg72, server, clone)
    # another client (6.0) pulls what was pushed
    other = tmp_path / "other"
    hg60("clone", "-q", "-U", "-r", "0", url, other, extra=options(sshd))
    out = hg60("-R", other, "pull", url, extra=options(sshd))
    assert b"added 8 changesets" in out.stdout
    check_same(hg72, server, other)
    log = sshd.log.read_text(errors="replace")
    assert "Accepted publickey" in log
