"""Processing a push (unbundle, spec §9.8) the way a 7.2 client sends it."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from hgwire.errors import BundleUnknownFeatureError
from hgwire.exchange import bundle2, changegroup
from hgwire.exchange.bundle2 import Bundler, Part, Unbundler
from hgwire.repo.localrepo import Repository
from tests.conftest import HgRunner
from tests.exchange.test_bundle2_format import CAPS72
from tests.exchange.test_changegroup_repo import store_state
from tests.repo import hgrepos

LOG = "{node} {phase} {p1node} {p2node} {manifest} {files|json}\n"
WDIR = b"\xff" * 20


class Setup:
    """A server repository (hg clone -r 7 of the full repository) and what a client
    holding the full repository pushes to it."""

    def __init__(self, full: hgrepos.GeneratedRepo, hg: HgRunner, tmp: Path) -> None:
        self.hg = hg
        self.full = full
        self.path = tmp / "server"
        hg("clone", "-q", "-U", "-r", "7", full.path, self.path)
        self.src = Repository.open(full.path)
        self.server_heads = [self.src.changelog.node(7)]
        outgoing = changegroup.findoutgoing(self.src, self.server_heads)
        self.outgoing = outgoing
        self.cg = b"".join(changegroup.makechangegroup(self.src, outgoing, b"03"))
        self.newhead = self.src.changelog.node(16)

    def bundle(self, *extra: Part, check: Part | None = None, cg: bool = True,
               phases: bool = True, books: bool = True) -> bytes:  # fmt: skip
        b = Bundler()
        b.newpart(b"replycaps", data=bundle2.encodecaps(CAPS72))
        b.addpart(check or Part(b"check:heads", data=b"".join(self.server_heads)))
        for part in extra:
            b.addpart(part)
        if cg:
            b.newpart(b"changegroup", [(b"version", b"03")], data=iter([self.cg]))
        if phases:
            b.newpart(b"phase-heads", data=bundle2.encodephaseheads({0: [self.newhead]}))
        if books:
            b.newpart(b"bookmarks", data=bundle2.encodebookmarks([(b"newbook", self.newhead)]))
        return b.tobytes()

    def push(self, data: bytes, **kw: object) -> bundle2.PushReply:
        repo = Repository.open(self.path)
        return bundle2.unbundle(repo, io.BytesIO(data), **kw)  # type: ignore[arg-type]

    def log(self) -> bytes:
        return self.hg("-R", self.path, "log", "-T", LOG).stdout


@pytest.fixture
def setup(full_repo72: hgrepos.GeneratedRepo, hg72: HgRunner, tmp_path: Path) -> Setup:
    return Setup(full_repo72, hg72, tmp_path)


def reply_parts(reply: bundle2.PushReply) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    data = b"".join(reply.getchunks())
    return [(p.type, dict(p.params), p.read()) for p in Unbundler(io.BytesIO(data)).iterparts()]


@pytest.mark.interop
def test_successful_push(setup: Setup, tmp_path: Path) -> None:
    reply = setup.push(setup.bundle())
    assert reply.error is None
    got = reply_parts(reply)
    assert [t for t, _p, _d in got] == [b"reply:changegroup", b"output", b"output"]
    # the changegroup is part 2 (replycaps 0, check:heads 1); one new open head
    assert got[0][1] == {b"in-reply-to": b"2", b"return": b"2"}
    assert got[1][1] == {b"in-reply-to": b"2"}
    assert got[1][2] == b"adding changesets\nadding manifests\nadding file changes\n"
    n = setup.outgoing.nbchanges
    assert got[2][2].startswith(b"added %d changesets with " % n)
    res = bundle2.read_push_reply(io.BytesIO(b"".join(reply.getchunks())))
    assert res.changegroup == {2: 2}
    setup.hg("-R", setup.path, "verify", "-q")
    # publishing server: everything pushed is public
    want = setup.hg("-R", setup.full.path, "log", "-r", "reverse(not secret())", "-T", LOG)
    assert setup.log() == want.stdout.replace(b" draft ", b" public ")
    books = setup.hg("-R", setup.path, "bookmarks", "-T", "{bookmark} {node}\n").stdout
    assert b"newbook " + setup.newhead.hex().encode() + b"\n" in books
    # hg itself parses the reply
    path = tmp_path / "reply.hg"
    path.write_bytes(b"".join(reply.getchunks()))
    text = setup.hg("debugbundle", "--all", path).stdout
    assert b"reply:changegroup -- {in-reply-to: 2, return: 2} (mandatory: False)" in text


@pytest.mark.interop
def test_non_publishing_push_stays_draft(setup: Setup) -> None:
    reply = setup.push(setup.bundle(phases=False), publishing=False)
    assert reply.error is None
    phases = setup.hg("-R", setup.path, "log", "-r", "8:", "-T", "{phase}\n").stdout.split()
    assert set(phases) == {b"draft"}


@pytest.mark.interop
def test_output_not_captured_for_ssh(setup: Setup) -> None:
    reply = setup.push(setup.bundle(), capture_output=False)
    assert [t for t, _p, _d in reply_parts(reply)] == [b"reply:changegroup"]
    assert reply.output[0].startswith(b"adding changesets")
    assert reply.output[-1].startswith(b"added ")


@pytest.mark.interop
@pytest.mark.parametrize("case", ["heads", "updated-heads", "phases", "bookmarks"])
def test_push_races_change_nothing(setup: Setup, case: str) -> None:
    cl = setup.src.changelog
    before = store_state(setup.path)
    extra: list[Part] = []
    check = None
    if case == "heads":
        check = Part(b"check:heads", data=cl.node(5))
    elif case == "updated-heads":
        check = Part(b"check:updated-heads", data=cl.node(2))
    elif case == "phases":
        # the server has r7 public; the client expects it draft
        extra.append(Part(b"check:phases", data=bundle2.encodephaseheads({1: [cl.node(7)]})))
    else:
        extra.append(
            Part(b"check:bookmarks", data=bundle2.encodebookmarks([(b"nobook", cl.node(3))]))
        )
    reply = setup.push(setup.bundle(*extra, check=check))
    got = reply_parts(reply)
    assert [t for t, _p, _d in got] == [b"error:pushraced"]
    assert got[0][1][b"message"].startswith(b"remote repository changed while pushing")
    if case == "phases":
        assert b"is public expected draft" in got[0][1][b"message"]
    if case == "bookmarks":
        assert b'bookmark "nobook" is missing' in got[0][1][b"message"]
    with pytest.raises(bundle2.PushRacedError):
        bundle2.read_push_reply(io.BytesIO(b"".join(reply.getchunks())))
    assert store_state(setup.path) == before


@pytest.mark.interop
def test_updated_heads_that_are_heads_pass(setup: Setup) -> None:
    cl = setup.src.changelog
    reply = setup.push(setup.bundle(check=Part(b"check:updated-heads", data=cl.node(7))))
    assert reply.error is None


@pytest.mark.interop
def test_unknown_mandatory_content(setup: Setup) -> None:
    before = store_state(setup.path)
    reply = setup.push(setup.bundle(Part(b"exp-unknown-part", data=b"x")))
    got = reply_parts(reply)
    assert got == [(b"error:unsupportedcontent", {b"parttype": b"exp-unknown-part"}, b"")]
    assert store_state(setup.path) == before
    # an unknown mandatory parameter of a known part
    b = Bundler()
    b.newpart(b"changegroup", [(b"version", b"03"), (b"frobnicate", b"1")], data=setup.cg)
    got = reply_parts(setup.push(b.tobytes()))
    assert got[0][1] == {b"parttype": b"changegroup", b"params": b"frobnicate"}
    with pytest.raises(BundleUnknownFeatureError, match="frobnicate"):
        bundle2.read_push_reply(io.BytesIO(b"".join(setup.push(b.tobytes()).getchunks())))
    assert store_state(setup.path) == before
    # unknown advisory parts are ignored
    reply = setup.push(setup.bundle(Part(b"exp-unknown-part", data=b"x", mandatory=False)))
    assert reply.error is None


@pytest.mark.interop
def test_truncated_push_is_rejected_cleanly(setup: Setup) -> None:
    before = store_state(setup.path)
    data = setup.bundle()
    rest = io.BytesIO(data[: len(data) // 2])
    reply = bundle2.unbundle(Repository.open(setup.path), rest)
    assert reply.error is not None
    assert [t for t, _p, _d in reply_parts(reply)][-1] == b"error:unsupportedcontent"
    assert rest.read() == b""  # the request was drained
    assert store_state(setup.path) == before


@pytest.mark.interop
def test_pushkey_parts(setup: Setup) -> None:
    # a mandatory pushkey that fails (the node is unknown without the changegroup)
    head = setup.newhead.hex().encode()
    bad = Part(b"pushkey", [(b"namespace", b"bookmarks"), (b"key", b"pk"), (b"old", b""),
                            (b"new", head)])  # fmt: skip
    before = store_state(setup.path)
    got = reply_parts(setup.push(setup.bundle(bad, cg=False, phases=False, books=False)))
    assert [t for t, _p, _d in got] == [b"error:pushkey"]
    assert got[0][1][b"in-reply-to"] == b"2" and got[0][1][b"key"] == b"pk"
    assert store_state(setup.path) == before
    # the same as an advisory part only reports the failure
    soft = Part(bad.type, [], bad.mandatoryparams, mandatory=False)
    got = reply_parts(setup.push(setup.bundle(soft, cg=False, phases=False, books=False)))
    assert got == [(b"reply:pushkey", {b"in-reply-to": b"2", b"return": b"0"}, b"")]
    # with the changegroup first it succeeds
    ok = Part(b"pushkey", [(b"namespace", b"bookmarks"), (b"key", b"pk"), (b"old", b""),
                           (b"new", head)])  # fmt: skip
    b = Bundler()
    b.newpart(b"replycaps", data=bundle2.encodecaps(CAPS72))
    b.newpart(b"changegroup", [(b"version", b"03")], data=setup.cg)
    b.addpart(ok)
    got = reply_parts(setup.push(b.tobytes()))
    assert (b"reply:pushkey", {b"in-reply-to": b"2", b"return": b"1"}, b"") in got
    books = setup.hg("-R", setup.path, "bookmarks", "-T", "{bookmark} {node}\n").stdout
    assert b"pk " + head + b"\n" in books


def test_check_heads_argument(tmp_path: Path, full_repo72: hgrepos.GeneratedRepo) -> None:
    repo = Repository.open(full_repo72.path)
    facts = full_repo72.facts()
    heads = [bytes.fromhex(h) for h in facts["served_heads"]]
    bundle2.check_heads(repo, [b"force"])
    bundle2.check_heads(repo, list(reversed(heads)))
    digest = hashlib.sha1(b"".join(sorted(heads))).digest()
    bundle2.check_heads(repo, [b"hashed", digest])
    with pytest.raises(bundle2.PushRacedError, match="preparing changes"):
        bundle2.check_heads(repo, heads[:1])


@pytest.mark.interop
def test_bundle1_push(setup: Setup) -> None:
    cg1 = changegroup.makechangegroup(setup.src, setup.outgoing, b"01")
    data = b"".join(bundle2.hg10chunks(cg1, b"GZ"))
    magic, fh = bundle2.peekmagic(io.BytesIO(data))
    assert magic == b"HG10"
    ret, text = bundle2.unbundle_bundle1(Repository.open(setup.path), fh)
    assert ret == 2
    assert text.startswith(b"adding changesets\n")
    assert b"added %d changesets" % setup.outgoing.nbchanges in text
    setup.hg("-R", setup.path, "verify", "-q")
    phases = setup.hg("-R", setup.path, "log", "-T", "{phase}\n").stdout.split()
    assert set(phases) == {b"public"}


@pytest.mark.interop
def test_legacy_pushkey_command(setup: Setup) -> None:
    repo = Repository.open(setup.path)
    node7 = setup.server_heads[0].hex().encode()
    assert bundle2.pushkey(repo, b"bookmarks", b"legacy", b"", node7)
    assert not bundle2.pushkey(repo, b"bookmarks", b"legacy", b"", node7)  # not absent now
    assert bundle2.pushkey(repo, b"bookmarks", b"legacy", node7, b"")  # delete
    assert not bundle2.pushkey(repo, b"unknown-namespace", b"k", b"", b"v")
    # phases: r7 is public on the server; asking public -> public is a no-op success
    assert bundle2.pushkey(repo, b"phases", node7, b"0", b"0")
    assert not bundle2.pushkey(repo, b"phases", node7, b"1", b"2")
    setup.hg("-R", setup.path, "verify", "-q")
    books = setup.hg("-R", setup.path, "bookmarks", "-T", "{bookmark}\n").stdout.split()
    assert b"legacy" not in books
