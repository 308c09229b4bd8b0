"""Access control (spec §5.2, §5.6 step 3 and 10): the hgweb permission matrix over v1 and
the ``/api/`` service, HTTP Basic authentication, and push refusals via ``ro`` URLs."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hgwire.commands.registry import BytesResponse, Registry, V1Command
from hgwire.repo.bookmarks import Bookmarks
from hgwire.repo.localrepo import Repository
from hgwire.server import auth
from hgwire.server.app import HgwireApp, ServerOptions
from hgwire.wire.frames import Frame
from hgwire.wire.human import parse_human_frame
from tests.server.conftest import (
    VECTOR_CONFIGS,
    Result,
    call,
    decode_frames,
    stand_in_registry,
    v2_headers,
)

SETTINGS = "1 1 stream-begin sender-protocol-settings eos cbor:{b'contentencodings': [b'identity']}"


def body(*frames: str) -> bytes:
    parsed: list[Frame] = [parse_human_frame(f) for f in (SETTINGS, *frames)]
    return b"".join(f.to_bytes() for f in parsed)


HEADS_FRAME = "1 1 0 command-request new cbor:{b'name': b'heads'}"
HEADS = body(HEADS_FRAME)


def pushkey_frame(rid: int, node: bytes, name: bytes = b"served-mark") -> str:
    args = {b"namespace": b"bookmarks", b"key": name, b"old": b"", b"new": node.hex().encode()}
    return f"{rid} 1 0 command-request new cbor:{{b'name': b'pushkey', b'args': {args!r}}}"


def registry_with_push() -> Registry:
    """The served registry plus a harmless v1 command needing push (transport tests)."""
    base = stand_in_registry()
    reg = Registry(v1=dict(base.v1), v2=base.v2)

    def pushy(ctx: Any, args: dict[bytes, bytes], payload: Any) -> BytesResponse:
        return BytesResponse(b"pushed")

    reg.v1[b"testpush"] = V1Command(b"testpush", pushy, b"", "push")
    return reg


@pytest.fixture(scope="module")
def password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pw = tmp_path_factory.mktemp("auth") / "passwd"
    auth.set_password(pw, "alice", "secret-a")
    auth.set_password(pw, "bob", "secret-b")
    return pw


@pytest.fixture
def app_for(public_repo: Path, password_file: Path) -> Callable[..., HgwireApp]:
    def make(*overrides: str, repo: Path | None = None, passwords: bool = False) -> HgwireApp:
        pw = password_file if passwords else None
        opts = ServerOptions(
            repo=repo or public_repo,
            overrides=[*VECTOR_CONFIGS["default"], *overrides],
            passwords=pw,
        )
        return HgwireApp(opts, registry_with_push())

    return make


def basic(user: str, password: str) -> tuple[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return ("Authorization", f"Basic {token}")


def v2(app: HgwireApp, perm: str, command: str, data: bytes, scheme: str = "http",
       extra: tuple[tuple[str, str], ...] = ()) -> Result:  # fmt: skip
    return call(app, "POST", f"/api/exp-http-v2-0003/{perm}/{command}",
                v2_headers(extra), data, scheme=scheme)  # fmt: skip


def test_pull_allowed_by_default(app_for: Callable[..., HgwireApp]) -> None:
    app = app_for()
    assert v2(app, "ro", "heads", HEADS).status == 200
    assert call(app, "GET", "/?cmd=capabilities").status == 200


@pytest.mark.parametrize(
    ("overrides", "user", "status", "reason"),
    [
        (("web.allow-pull=false",), None, 401, "pull not authorized"),
        (("web.allowpull=false",), None, 401, "pull not authorized"),
        (("web.deny_read=*",), None, 401, "read not authorized"),
        (("web.deny_read=bob",), None, 401, "read not authorized"),  # anonymous is denied
        (("web.deny_read=bob",), "alice", 200, "OK"),
        (("web.deny_read=bob",), "bob", 401, "read not authorized"),
        (("web.allow_read=alice",), None, 401, "read not authorized"),
        (("web.allow_read=alice",), "alice", 200, "OK"),
        (("web.allow_read=alice",), "bob", 401, "read not authorized"),
        (("web.allow_read=*",), None, 200, "OK"),
    ],
)
def test_read_rules(
    app_for: Callable[..., HgwireApp],
    overrides: tuple[str, ...],
    user: str | None,
    status: int,
    reason: str,
) -> None:
    app = app_for(*overrides, passwords=True)
    creds = (basic(user, f"secret-{user[0]}"),) if user else ()
    got = v2(app, "ro", "heads", HEADS, extra=creds)
    assert (got.status, got.reason) == (status, reason)
    v1 = call(app, "GET", "/?cmd=capabilities", list(creds))
    assert v1.status == status
    if status != 200:
        assert got.body == b"permission denied" and got.header("content-type") is None
        assert v1.body == f"0\n{reason}\n".encode() and v1.header("content-type") is None
        # Anonymous refusals challenge for credentials; authenticated ones do not.
        challenged = got.header("www-authenticate") is not None
        assert challenged == (user is None)


@pytest.mark.parametrize(
    ("overrides", "scheme", "user", "status", "reason"),
    [
        ((), "http", None, 403, "ssl required"),
        ((), "https", None, 401, "push not authorized"),
        (("web.allow-push=*",), "http", None, 403, "ssl required"),
        (("web.allow-push=*",), "https", None, 200, "OK"),
        (("web.allow-push=*", "web.push_ssl=false"), "http", None, 200, "OK"),
        (("web.allow-push=alice", "web.push_ssl=false"), "http", None, 401, "push not authorized"),
        (("web.allow-push=alice", "web.push_ssl=false"), "http", "alice", 200, "OK"),
        (("web.allow-push=alice", "web.push_ssl=false"), "http", "bob", 401, "push not authorized"),
        (("web.allow-push=*", "web.deny_push=bob", "web.push_ssl=false"), "http", "bob", 401,
         "push not authorized"),
        (("web.allow-push=*", "web.deny_push=bob", "web.push_ssl=false"), "http", None, 401,
         "push not authorized"),
        (("web.allow-push=*", "web.deny_push=bob", "web.push_ssl=false"), "http", "alice", 200,
         "OK"),
    ],
)  # fmt: skip
def test_push_rules(
    app_for: Callable[..., HgwireApp],
    overrides: tuple[str, ...],
    scheme: str,
    user: str | None,
    status: int,
    reason: str,
) -> None:
    app = app_for(*overrides, passwords=True)
    creds = (basic(user, f"secret-{user[0]}"),) if user else ()
    got = v2(app, "rw", "heads", HEADS, scheme=scheme, extra=creds)
    assert (got.status, got.reason) == (status, reason)
    v1 = call(app, "POST", "/?cmd=testpush", list(creds), scheme=scheme)
    assert (v1.status, v1.reason) == (status, reason if status != 200 else "Script output follows")
    if status == 200:
        assert v1.body == b"pushed"
    else:
        assert got.body == b"permission denied"
        assert v1.body == f"0\n{reason}\n".encode()


def test_push_over_get(app_for: Callable[..., HgwireApp]) -> None:
    app = app_for("web.allow-push=*", "web.push_ssl=false")
    got = call(app, "GET", "/?cmd=testpush")
    assert (got.status, got.reason) == (405, "push requires POST request")
    assert got.body == b"0\npush requires POST request\n"
    api = call(app, "GET", "/api/exp-http-v2-0003/rw/heads", v2_headers())
    assert api.status == 405 and api.header("allow") == "POST"


def test_bad_credentials(app_for: Callable[..., HgwireApp]) -> None:
    app = app_for(passwords=True)
    for creds in (basic("alice", "wrong"), basic("nobody", "x"), ("Authorization", "Basic !!")):
        got = call(app, "GET", "/?cmd=capabilities", [creds])
        assert (got.status, got.reason) == (401, "authorization failed")
        assert got.header("www-authenticate") == 'Basic realm="hgwire"'
    assert call(app, "GET", "/?cmd=capabilities", [basic("alice", "secret-a")]).status == 200


def test_ro_url_never_runs_push_commands(
    app_for: Callable[..., HgwireApp], repo_copy: Callable[[Path], Path], public_repo: Path
) -> None:
    repo = repo_copy(public_repo)
    node = Repository.open(repo).changelog.node(0)
    app = app_for("web.allow-push=*", "web.push_ssl=false", repo=repo)
    single = v2(app, "ro", "pushkey", body(pushkey_frame(1, node)))
    assert single.status == 403
    assert single.body == b"insufficient permissions to execute command: pushkey"
    both = body(HEADS_FRAME, pushkey_frame(3, node))
    multi = v2(app, "ro", "multirequest", both)
    assert multi.status == 403
    assert multi.body == b"insufficient permissions to execute command: pushkey"
    assert b"served-mark" not in Bookmarks(Repository.open(repo))
    # With push permission on rw/ the same requests run.
    ok = v2(app, "rw", "multirequest", both)
    assert ok.status == 200
    _, responses = decode_frames(ok.body)
    assert responses[3].objects == [{b"status": b"ok"}, True]
    assert Bookmarks(Repository.open(repo))[b"served-mark"] == node
    again = v2(app, "rw", "pushkey", body(pushkey_frame(1, node, b"other-mark")))
    assert decode_frames(again.body)[1][1].objects == [{b"status": b"ok"}, True]


def test_config_reloaded_from_hgrc(public_repo: Path, repo_copy: Callable[[Path], Path]) -> None:
    repo = repo_copy(public_repo)
    app = HgwireApp(ServerOptions(repo=repo), stand_in_registry())
    assert call(app, "GET", "/?cmd=capabilities").status == 200
    (repo / ".hg" / "hgrc").write_text("[web]\nallow-pull = no\n")
    got = call(app, "GET", "/?cmd=capabilities")
    assert (got.status, got.reason) == (401, "pull not authorized")


def test_rules_unit() -> None:
    rules = auth.AccessRules(allow_push=["*"], push_ssl=False)
    assert auth.check(rules, "push", None, "POST", "http") is None
    assert auth.check(rules, "push", None, "PUT", "http") == auth.Denied(
        405, "push requires POST request"
    )
    assert auth.check(auth.AccessRules(), "pull", None, "GET", "http") is None


def test_unknown_user_costs_a_hash_verification(password_file: Path) -> None:
    """An unknown user is checked against a hash as a known one is (no timing oracle)."""
    pwfile = auth.PasswordFile(password_file)
    calls: list[str] = []
    real = pwfile._hasher

    class Counting:
        def hash(self, password: str) -> str:
            return real.hash(password)

        def verify(self, hashed: str, password: str) -> bool:
            calls.append(password)
            return real.verify(hashed, password)

    pwfile._hasher = Counting()  # type: ignore[assignment]
    assert pwfile.verify("alice", "wrong") is False
    assert pwfile.verify("nobody", "secret-a") is False
    assert calls == ["wrong", "secret-a"]
    assert pwfile.verify("alice", "secret-a") is True
