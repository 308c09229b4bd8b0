"""``hgwire serve`` (demo repository, ``--root``, ``--passwords``), ``hgwire passwd``,
``hgwire debugwireproto`` and the server configuration parser."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hgwire.server import auth, demo
from hgwire.server.app import HgwireApp, ServerOptions, find_repositories
from hgwire.server.config import ConfigError, parse_hgrc, parse_list, settings_from_items
from tests.conftest import HgRunner
from tests.repo import hgrepos
from tests.server.conftest import ROOT, call, stand_in_registry, v2_headers

V2 = ("--config", "experimental.httppeer.advertise-v2=true")


def hgwire(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Any:
    import os

    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "hgwire", *args], capture_output=True,
                          env=full, input=stdin, cwd=ROOT, check=False)  # fmt: skip


@pytest.mark.interop
def test_demo_served_and_cloned(
    hg60: HgRunner, hg72: HgRunner, server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    env = {"HGWIRE_CACHE": str(tmp_path / "cache")}
    with server_factory(env=env) as server:
        out = server.output()
        assert "hgwire demo repository" in out
        assert f"hg clone {server.url} demo" in out
        assert f"hg clone --config experimental.httppeer.advertise-v2=true {server.url}" in out
        hg60("clone", "-U", *V2, server.url, tmp_path / "v2")
        hg72("clone", "-U", server.url, tmp_path / "v1")
        frames_file = tmp_path / "frames.txt"
        frames_file.write_text(
            "# settings, then the command\n"
            "1 1 stream-begin sender-protocol-settings eos cbor:{b'contentencodings': [b'zlib']}\n"
            "1 1 0 command-request new cbor:{b'name': b'heads'}\n"
        )
        frames = hgwire("debugwireproto", server.url, "--frames", str(frames_file))
    source = demo.demo_path().__class__(tmp_path / "cache" / "demo")
    for clone, hg in ((tmp_path / "v2", hg60), (tmp_path / "v1", hg72)):
        assert hg("verify", cwd=clone).returncode == 0
        log = hg("log", "-T", "{node} {branch} {bookmarks} {tags}\n", cwd=clone).stdout
        assert log == hg("log", "-T", "{node} {branch} {bookmarks} {tags}\n", cwd=source).stdout
        assert b" stable " in log and b" main " in log and b"v1.0" in log
        assert hg("log", "-r", "merge()", "-T", "x", cwd=clone).stdout == b"x"
    assert frames.returncode == 0, frames.stderr
    text = frames.stdout.decode()
    assert "HTTP/1.1 200 OK" in text
    assert "received: 1 2 stream-begin stream-settings eos cbor:b'zlib'" in text
    # the decoded status map and the heads (tip of the demo)
    tip = hg72("log", "-r", "tip", "-T", "{node}", cwd=tmp_path / "v1").stdout.decode()
    assert f"response 1: [{{b'status': b'ok'}}, [{bytes.fromhex(tip)!r}]]" in text


def test_demo_repository_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HGWIRE_CACHE", str(tmp_path))
    first = demo.ensure_demo_repo()
    stamp = (first / ".hg" / "hgwire-demo-version").stat().st_mtime_ns
    assert demo.ensure_demo_repo() == first  # built once
    assert (first / ".hg" / "hgwire-demo-version").stat().st_mtime_ns == stamp
    from hgwire.repo.localrepo import Repository

    repo = Repository.open(first)
    assert len(repo) == 8


@pytest.mark.interop
def test_root_serves_every_repository(
    hg72: HgRunner,
    public_repo: Path,
    full_repo72: hgrepos.GeneratedRepo,
    server_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    hgrepos.copy_repo(public_repo, root / "public")
    hgrepos.copy_repo(full_repo72.path, root / "group" / "full")
    assert set(find_repositories(root)) == {"public", "group/full"}
    with server_factory("--root", str(root)) as server:
        hg72("clone", "-U", server.url + "group/full", tmp_path / "c1")
        hg72("clone", "-U", server.url + "public", tmp_path / "c2")
        missing = hg72("clone", "-U", server.url + "nothere", tmp_path / "c3", check=False)
    assert missing.returncode != 0
    tips = [hg72("log", "-r", "tip", "-T", "{node}", cwd=p).stdout for p in
            (tmp_path / "c2", public_repo)]  # fmt: skip
    assert tips[0] == tips[1]


@pytest.mark.interop
def test_passwords_end_to_end(
    hg72: HgRunner, public_repo: Path, server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    pw = tmp_path / "users"
    done = hgwire("passwd", str(pw), "alice", "--password-stdin", stdin=b"s3cret\n")
    assert done.returncode == 0, done.stderr
    assert list(auth.read_entries(pw)) == ["alice"]
    assert "s3cret" not in pw.read_text()
    args = ("--passwords", str(pw), "--config", "web.allow_read=alice")
    with server_factory(str(public_repo), *args) as server:
        anon = hg72("clone", "-U", server.url, tmp_path / "anon", check=False,
                    extra=["--config", "ui.interactive=false"])  # fmt: skip
        url = server.url.replace("http://", "http://alice:s3cret@")
        hg72("clone", "-U", url, tmp_path / "alice")
        wrong = hg72("clone", "-U", server.url.replace("http://", "http://alice:nope@"),
                     tmp_path / "wrong", check=False)  # fmt: skip
    assert anon.returncode != 0 and b"authorization" in anon.stderr + anon.stdout
    assert wrong.returncode != 0
    assert hg72("verify", cwd=tmp_path / "alice").returncode == 0


def test_index_page(public_repo: Path) -> None:
    app = HgwireApp(ServerOptions(repo=public_repo), stand_in_registry())
    page = call(app, "GET", "/", [("Host", "example.test:8000")])
    assert page.status == 200 and b"hg clone http://example.test:8000/" in page.body


def test_hgrc_parsing(tmp_path: Path) -> None:
    inc = tmp_path / "inc.rc"
    inc.write_text("[web]\ndeny_push = mallory\n")
    rc = tmp_path / "hgrc"
    rc.write_text(
        "# comment\n[web]\nallow-push = alice,\n  bob carol\npush_ssl = No\n"
        "%include inc.rc\n[phases]\npublish = false\n[server]\ncompressionengines = zlib\n"
        "zliblevel = 5\n[experimental]\nweb.api.http-v2 = off\nhttppostargs = yes\n"
    )
    s = settings_from_items(parse_hgrc(rc))
    assert s.access.allow_push == ["alice", "bob", "carol"]
    assert s.access.deny_push == ["mallory"] and s.access.push_ssl is False
    assert s.config.publishing is False and s.config.compressionengines == (b"zlib",)
    assert s.config.zliblevel == 5 and s.config.api_http_v2 is False
    assert s.config.httppostargs is True and s.config.apiserver is True
    assert parse_list('"a b", c') == ["a b", "c"]
    bad = tmp_path / "bad"
    bad.write_text("[web]\n= nothing\n")
    with pytest.raises(ConfigError):
        parse_hgrc(bad)
    with pytest.raises(ConfigError):
        settings_from_items({("web", "push_ssl"): "maybe"})


def test_root_routing_in_process(public_repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    hgrepos.copy_repo(public_repo, root / "a" / "b")
    app = HgwireApp(ServerOptions(root=root), stand_in_registry())
    listing = call(app, "GET", "/", [("Host", "h")])
    assert listing.status == 200 and b"http://h/a/b" in listing.body
    assert call(app, "GET", "/a/b?cmd=capabilities").status == 200
    assert call(app, "GET", "/a?cmd=capabilities").status == 404
    sub = call(app, "GET", "/a/b/c?cmd=capabilities")
    assert sub.status == 404 and sub.body == b"0\nNot Found\n"
    hgrepos.copy_repo(public_repo, root / "late")  # found by a rescan (throttled)
    app._last_scan = 0.0
    assert call(app, "GET", "/late?cmd=capabilities").status == 200


def test_missing_repository(public_repo: Path, tmp_path: Path) -> None:
    proc = hgwire("serve", str(tmp_path / "nothing"), "--port", "1")
    assert proc.returncode == 255 and b"abort: repository" in proc.stderr
    copy = hgrepos.copy_repo(public_repo, tmp_path / "gone")
    app = HgwireApp(ServerOptions(repo=copy), stand_in_registry())
    assert call(app, "GET", "/?cmd=heads").status == 200
    import shutil

    shutil.rmtree(copy / ".hg")
    gone = call(app, "GET", "/?cmd=heads")
    assert gone.header("content-type") == "application/hg-error" and b"not found" in gone.body
    api = call(app, "POST", "/api/exp-http-v2-0003/ro/heads", v2_headers(), b"")
    assert api.status == 500 and b"not found" in api.body
    # the client learns the URL path, not where the repository lives on the server
    assert str(tmp_path).encode() not in gone.body + api.body


@pytest.mark.interop
def test_workers(
    hg72: HgRunner, public_repo: Path, server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    with server_factory(str(public_repo), "--workers", "2") as server:
        for i in range(3):
            hg72("clone", "-U", server.url, tmp_path / f"c{i}")
        log = server.output()
    assert log.count('"GET /?cmd=getbundle"') == 3
    tip = hg72("log", "-r", "tip", "-T", "{node}", cwd=public_repo).stdout
    assert hg72("log", "-r", "tip", "-T", "{node}", cwd=tmp_path / "c2").stdout == tip


def test_deny_read_hides_pages_and_listing(public_repo: Path, tmp_path: Path) -> None:
    """A repository hidden by deny_read is neither listed nor shows its page (hgwebdir)."""
    root = tmp_path / "root"
    hgrepos.copy_repo(public_repo, root / "open")
    secret = hgrepos.copy_repo(public_repo, root / "secret")
    (secret / ".hg" / "hgrc").write_text("[web]\ndeny_read = *\n")
    app = HgwireApp(ServerOptions(root=root), stand_in_registry())
    listing = call(app, "GET", "/", [("Host", "h")])
    assert listing.status == 200 and b"http://h/open" in listing.body
    assert b"secret" not in listing.body
    page = call(app, "GET", "/open", [("Host", "h")])
    assert page.status == 200 and b"secret" not in page.body
    for target in ("/secret", "/secret/nosuch"):
        hidden = call(app, "GET", target, [("Host", "h")])
        assert (hidden.status, hidden.reason) == (401, "read not authorized")
        assert b"secret" not in hidden.body
    assert call(app, "GET", "/secret?cmd=capabilities").status == 401


def test_root_does_not_follow_symlinks_out(public_repo: Path, tmp_path: Path) -> None:
    """Neither a linked directory nor a linked ``.hg`` serves a repository outside --root."""
    outside = hgrepos.copy_repo(public_repo, tmp_path / "outside")
    root = tmp_path / "root"
    hgrepos.copy_repo(public_repo, root / "inside")
    (root / "linked").symlink_to(outside)
    (root / "fake").mkdir()
    (root / "fake" / ".hg").symlink_to(outside / ".hg")
    app = HgwireApp(ServerOptions(root=root), stand_in_registry())
    assert sorted(app.repositories) == ["inside"]
    for target in ("/linked", "/fake", "/inside/../fake", "/inside/%2e%2e/fake"):
        assert call(app, "GET", f"{target}?cmd=capabilities").status == 404, target


def test_root_rescan_runs_off_the_event_loop(
    public_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The --root rescan triggered by an unknown path walks the tree in a worker thread."""
    import threading

    from hgwire.server import app as appmod

    root = tmp_path / "root"
    hgrepos.copy_repo(public_repo, root / "a")
    app = HgwireApp(ServerOptions(root=root), stand_in_registry())
    threads: list[threading.Thread] = []
    real = appmod.find_repositories

    def recording(path: Path) -> dict[str, Path]:
        threads.append(threading.current_thread())
        return real(path)

    monkeypatch.setattr(appmod, "find_repositories", recording)
    app._last_scan = 0.0
    assert call(app, "GET", "/nothing?cmd=capabilities").status == 404
    assert len(threads) == 1 and threads[0] is not threading.main_thread()
    assert call(app, "GET", "/nothing-either?cmd=capabilities").status == 404
    assert len(threads) == 1  # throttled
