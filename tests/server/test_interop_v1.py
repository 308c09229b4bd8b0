"""Real Mercurial clients over the v1 HTTP transport (``?cmd=``) of ``hgwire serve``.

hg 7.2.4 (and 6.0 without ``advertise-v2``) clone and pull: ``capabilities``, ``batch``,
``getbundle`` with the negotiated ``application/mercurial-0.2`` compression (spec §10.1),
with arguments in ``X-HgArg`` headers or, with ``experimental.httppostargs``, in POST
bodies. A push checks that the transport hands the ``unbundle`` body to the command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HgRunner
from tests.repo import hgrepos
from tests.server.test_interop_v2 import SERVE_ARGS, _lines, assert_same

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("postargs", [False, True], ids=["headers", "httppostargs"])
def test_clone_and_pull_hg72(
    hg72: HgRunner,
    full_repo72: hgrepos.GeneratedRepo,
    repo_copy: Callable[[Path], Path],
    server_factory: Callable[..., Any],
    tmp_path: Path,
    postargs: bool,
) -> None:
    src = repo_copy(full_repo72.path)
    extra = ("--config", "experimental.httppostargs=true") if postargs else ()
    clone = tmp_path / "clone"
    with server_factory(str(src), *SERVE_ARGS, *extra) as server:
        hg72("clone", "-U", server.url, clone)
        if postargs:  # the pull below is the same with either argument transport
            assert '"POST /?cmd=getbundle"' in server.output()
            assert_same(hg72, src, clone)
            return
        work = tmp_path / "work"
        hg72("clone", "-q", src, work)
        (work / "v1-new.txt").write_bytes(b"v1\n" * 5000)
        hg72("add", "v1-new.txt", cwd=work)
        hg72("commit", "-m", "v1 pull", "-d", "0 0", cwd=work)
        hg72("push", "-q", "-f", "--config", "phases.publish=false", "-r", ".", src, cwd=work,
             check=False)  # fmt: skip
        mark = _lines(hg72("bookmarks", "-T", "{bookmark}\n", cwd=src)).split()[0]
        hg72("bookmark", "-f", "-r", "tip", mark, cwd=src)
        hg72("pull", server.url, cwd=clone)
        log = server.output()
    assert_same(hg72, src, clone)
    assert '"GET /?cmd=getbundle"' in log


def test_clone_hg60_v1(
    hg60: HgRunner,
    full_repo60: hgrepos.GeneratedRepo,
    server_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    with server_factory(str(full_repo60.path), *SERVE_ARGS) as server:
        hg60("clone", "-U", server.url, tmp_path / "clone")
        assert "/api/" not in server.output()
    assert_same(hg60, full_repo60.path, tmp_path / "clone")


def test_push_over_http(
    hg72: HgRunner,
    public_repo: Path,
    repo_copy: Callable[[Path], Path],
    server_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    src = repo_copy(public_repo)
    work = tmp_path / "work"
    hg72("clone", "-q", src, work)
    (work / "pushed.bin").write_bytes(bytes(range(256)) * 8000)
    hg72("add", "pushed.bin", cwd=work)
    hg72("commit", "-m", "pushed over http", "-d", "0 0", cwd=work)
    node = _lines(hg72("log", "-r", ".", "-T", "{node}", cwd=work))
    args = ("--config", "web.allow-push=*", "--config", "web.push_ssl=false")
    with server_factory(str(src), *args) as server:
        hg72("push", "-r", ".", server.url, cwd=work)
        log = server.output()
    assert '"POST /?cmd=unbundle"' in log
    assert _lines(hg72("log", "-r", node, "-T", "{node} {phase}", cwd=src)) == f"{node} public"
    proc = hg72("verify", cwd=src, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_push_refused_without_ssl(
    hg72: HgRunner,
    public_repo: Path,
    repo_copy: Callable[[Path], Path],
    server_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    src = repo_copy(public_repo)
    work = tmp_path / "work"
    hg72("clone", "-q", src, work)
    (work / "x.txt").write_bytes(b"x\n")
    hg72("add", "x.txt", cwd=work)
    hg72("commit", "-m", "refused", "-d", "0 0", cwd=work)
    with server_factory(str(src), "--config", "web.allow-push=*") as server:
        proc = hg72("push", "-r", ".", server.url, cwd=work, check=False)
    assert proc.returncode != 0
    assert b"ssl required" in proc.stderr + proc.stdout
    assert not _lines(hg72("log", "-r", "desc(refused)", "-T", "x", cwd=src, check=False))


def test_long_header_arguments(public_repo: Path, server_factory: Callable[..., Any]) -> None:
    """A ``known`` of 3000 nodes: about 120 KB of ``X-HgArg`` headers (spec §5.1)."""
    import http.client
    from urllib.parse import urlencode

    from hgwire.repo.localrepo import Repository

    real = Repository.open(public_repo).changelog.node(0).hex()
    nodes = [real] + [f"{i:040x}" for i in range(1, 3000)]
    encoded = urlencode({"nodes": " ".join(nodes)})
    headers = {f"X-HgArg-{i + 1}": encoded[o : o + 1009]
               for i, o in enumerate(range(0, len(encoded), 1009))}  # fmt: skip
    with server_factory(str(public_repo)) as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/?cmd=known", headers=headers)
        rsp = conn.getresponse()
        body = rsp.read()
        conn.close()
    assert rsp.status == 200
    assert body == b"1" + b"0" * 2999


def test_push_over_https(
    hg72: HgRunner,
    public_repo: Path,
    repo_copy: Callable[[Path], Path],
    server_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """With TLS the default ``push_ssl`` is satisfied (spec §5.2)."""
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)  # fmt: skip
    src = repo_copy(public_repo)
    work = tmp_path / "work"
    hg72("clone", "-q", src, work)
    (work / "tls.txt").write_bytes(b"over tls\n")
    hg72("add", "tls.txt", cwd=work)
    hg72("commit", "-m", "pushed over https", "-d", "0 0", cwd=work)
    args = ("--certfile", str(cert), "--keyfile", str(key), "--config", "web.allow-push=*")
    with server_factory(str(src), *args) as server:
        url = server.url.replace("http://", "https://")
        hg72("push", "--insecure", "-r", ".", url, cwd=work)
    assert _lines(hg72("log", "-r", "tip", "-T", "{desc}", cwd=src)) == "pushed over https"
