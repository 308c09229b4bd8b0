"""The getbundle reply (spec §9.7): what a 7.2/6.0 client expects, applied by real hg."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hgwire.exchange import bundle2
from hgwire.exchange.bundle2 import Unbundler
from hgwire.repo.localrepo import Repository
from tests.conftest import HgRunner, make_runner
from tests.exchange.test_bundle2_format import CAPS72
from tests.repo import hgrepos

LOG = "{node} {phase} {p1node} {p2node} {manifest} {files|json}\n"
NULLID = b"\0" * 20


def bundlecaps(caps: dict[bytes, list[bytes]]) -> list[bytes]:
    return [b"HG20", b"bundle2=" + bundle2.urlquote(bundle2.encodecaps(caps))]


CAPS60 = {k: v for k, v in CAPS72.items() if k != b"delta-compression"}
CAPS60[b"changegroup"] = [b"01", b"02"]


def clone_reply(repo: Repository, caps: dict[bytes, list[bytes]], **kw: object) -> bytes:
    args: dict[str, object] = dict(
        common=[NULLID], bundlecaps=bundlecaps(caps), cg=True, phases=True, bookmarks=True,
        listkeys=[b"bookmarks"],
    )  # fmt: skip
    args.update(kw)
    return b"".join(bundle2.getbundle(repo, **args))  # type: ignore[arg-type]


def parts(data: bytes) -> list[tuple[bytes, bool, dict[bytes, bytes], bytes]]:
    return [
        (p.type, p.mandatory, dict(p.params), p.read())
        for p in Unbundler(io.BytesIO(data)).iterparts()
    ]


@pytest.mark.interop
@pytest.mark.parametrize(("caps", "version"), [(CAPS72, b"03"), (CAPS60, b"02")])
def test_clone_reply_parts(
    full_repo72: hgrepos.GeneratedRepo, caps: dict[bytes, list[bytes]], version: bytes
) -> None:
    repo = Repository.open(full_repo72.path)
    got = parts(clone_reply(repo, caps))
    assert [(t, m) for t, m, _p, _d in got] == [
        (b"changegroup", True),
        (b"bookmarks", True),
        (b"listkeys", True),
        (b"phase-heads", True),
        (b"hgtagsfnodes", False),
    ]
    facts = full_repo72.facts()
    served = sum(1 for c in facts["changesets"] if c["phase"] < 2)
    assert got[0][2] == {b"version": version, b"nbchanges": b"%d" % served}
    # the bookmark on the secret changeset is not served
    books = dict(bundle2.decodebookmarks(got[1][3]))
    want = {k.encode(): bytes.fromhex(v) for k, v in facts["bookmarks"].items()}
    del want[b"secret-book"]
    assert books == want
    assert bundle2.decodekeys(got[2][3]) == {k: v.hex().encode() for k, v in want.items()}
    heads = bundle2.decodephaseheads(got[3][3])
    assert sorted(h.hex() for h in heads[0]) == sorted(facts["served_heads"])
    # the .hgtags filenode of every head, as hg's manifest says
    hg = make_runner(full_repo72.hg)
    for node, fnode in bundle2.decodehgtagsfnodes(got[4][3]):
        lines = hg("-R", full_repo72.path, "manifest", "--debug", "-r", node.hex()).stdout
        entry = [ln.split()[0] for ln in lines.splitlines() if ln.endswith(b" .hgtags")]
        assert fnode.hex().encode() == (entry[0] if entry else b"0" * 40)


@pytest.mark.interop
@pytest.mark.parametrize("publishing", [True, False])
def test_hg_applies_clone_reply(
    full_repo72: hgrepos.GeneratedRepo, tmp_path: Path, hg72: HgRunner, publishing: bool
) -> None:
    repo = Repository.open(full_repo72.path)
    path = tmp_path / "reply.hg"
    path.write_bytes(clone_reply(repo, CAPS72, publishing=publishing))
    dest = tmp_path / "dest"
    hg72("init", dest)
    hg72("-R", dest, "unbundle", "-q", path)
    hg72("-R", dest, "verify", "-q")
    got = hg72("-R", dest, "log", "-T", LOG).stdout
    want = hg72("-R", full_repo72.path, "log", "-r", "reverse(not secret())", "-T", LOG).stdout
    if publishing:
        want = want.replace(b" draft ", b" public ")
    assert got == want
    tmpl = ["bookmarks", "-T", "{bookmark} {node}\n"]
    books = hg72("-R", dest, *tmpl).stdout.splitlines()
    srcbooks = hg72("-R", full_repo72.path, *tmpl).stdout.splitlines()
    assert books == [b for b in srcbooks if not b.startswith(b"secret-book")]


@pytest.mark.interop
def test_incremental_pull_reply_applied_by_hgwire(
    full_repo72: hgrepos.GeneratedRepo, tmp_path: Path, hg72: HgRunner
) -> None:
    dest = tmp_path / "dest"
    hg72("clone", "-q", "-U", "-r", "4", full_repo72.path, dest)
    src = Repository.open(full_repo72.path)
    common = [src.changelog.node(4)]
    data = b"".join(
        bundle2.getbundle(
            src, common=common, bundlecaps=bundlecaps(CAPS72), phases=True, bookmarks=True,
            listkeys=[b"bookmarks", b"phases"], publishing=False,
        )
    )  # fmt: skip
    res = bundle2.apply_pull(Repository.open(dest), io.BytesIO(data))
    assert res.changegroup is not None
    assert res.changegroup.changesets == 17 - 5
    assert set(res.listkeys) == {b"bookmarks", b"phases"}
    hg72("-R", dest, "verify", "-q")
    got = hg72("-R", dest, "log", "-T", LOG).stdout
    want = hg72("-R", full_repo72.path, "log", "-r", "reverse(not secret())", "-T", LOG).stdout
    assert got == want  # non-publishing: phases as on the server


@pytest.mark.interop
def test_nothing_missing_and_unknown_heads(full_repo72: hgrepos.GeneratedRepo) -> None:
    repo = Repository.open(full_repo72.path)
    cl = repo.changelog
    heads = [cl.node(r) for r in (11, 13, 15, 16)]
    got = parts(clone_reply(repo, CAPS72, common=heads, heads=heads, bookmarks=False,
                            listkeys=[]))  # fmt: skip
    assert [t for t, *_ in got] == [b"phase-heads"]
    got = parts(clone_reply(repo, CAPS72, heads=[b"\x42" * 20]))
    assert [t for t, *_ in got] == [b"error:abort"]
    assert b"unknown revision" in got[0][2][b"message"]
    # empty heads mean every served head (as Mercurial's getbundle)
    assert (
        parts(clone_reply(repo, CAPS72, heads=[]))[0][3]
        == (parts(clone_reply(repo, CAPS72, heads=None))[0][3])
    )
    # asking for the secret head is like asking for an unknown one
    got = parts(clone_reply(repo, CAPS72, heads=[cl.node(17)]))
    assert [t for t, *_ in got] == [b"error:abort"]
    with pytest.raises(bundle2.RemoteAbortError, match="unknown revision"):
        bundle2.apply_pull(repo, io.BytesIO(clone_reply(repo, CAPS72, heads=[b"\x42" * 20])))


@pytest.mark.interop
def test_bundle1_getbundle_is_a_cg1_stream(
    full_repo72: hgrepos.GeneratedRepo, tmp_path: Path, hg72: HgRunner
) -> None:
    repo = Repository.open(full_repo72.path)
    chunks = bundle2.getbundle(repo, common=[NULLID], bundlecaps=[])
    path = tmp_path / "b.hg"
    path.write_bytes(b"".join(bundle2.hg10chunks(chunks, b"UN")))
    dest = tmp_path / "dest"
    hg72("init", dest)
    hg72("-R", dest, "unbundle", "-q", path)
    hg72("-R", dest, "verify", "-q")


@pytest.mark.interop
def test_bundle_file_like_hg_bundle(
    request: pytest.FixtureRequest, full_repo72: hgrepos.GeneratedRepo, tmp_path: Path,
    hg72: HgRunner,
) -> None:  # fmt: skip
    """``makebundle`` writes the parts ``hg bundle --all -t zstd-v3`` writes, with the same
    cache and phase contents, and hg unbundles it."""
    from hgwire.exchange import changegroup
    from tests.exchange.conftest import bundles_for

    _src, bundles = bundles_for(request, "7.2.4")
    theirs = {}
    with open(bundles["none-v3"], "rb") as fh:
        u = bundle2.readbundle(fh).unbundler
        assert u is not None
        for p in u.iterparts():
            theirs[p.type] = p.read()
    repo = Repository.open(full_repo72.path)
    cl = repo.changelog
    everything = changegroup.Outgoing(
        list(range(len(cl))), {-1}, [cl.node(r) for r in cl.headrevs()]
    )
    path = tmp_path / "ours.hg"
    path.write_bytes(b"".join(bundle2.makebundle(repo, everything, b"03", b"ZS")))
    with open(path, "rb") as fh:
        u = bundle2.readbundle(fh).unbundler
        assert u is not None and u.compression == b"ZS"
        mine = {p.type: p.read() for p in u.iterparts()}
    assert set(mine) == set(theirs) | {b"hgtagsfnodes"}
    assert mine[b"cache:rev-branch-cache"] == theirs[b"cache:rev-branch-cache"]
    assert bundle2.decodephaseheads(mine[b"phase-heads"]) == {
        k: sorted(v) for k, v in bundle2.decodephaseheads(theirs[b"phase-heads"]).items()
    }
    # every .hgtags filenode hg knew is the one we computed
    if b"hgtagsfnodes" in theirs:
        assert set(bundle2.decodehgtagsfnodes(theirs[b"hgtagsfnodes"])) <= set(
            bundle2.decodehgtagsfnodes(mine[b"hgtagsfnodes"])
        )
    hg72("init", tmp_path / "dest")
    hg72("-R", tmp_path / "dest", "unbundle", "-q", path)
    hg72("-R", tmp_path / "dest", "verify", "-q")
    want = hg72("-R", full_repo72.path, "log", "-T", LOG).stdout
    assert hg72("-R", tmp_path / "dest", "log", "-T", LOG).stdout == want
    # hgwire applies it the same way (targetphase, then phase-heads)
    dest = Repository.create(tmp_path / "ours", format="7.2")
    with open(path, "rb") as fh:
        bundle2.apply_pull(dest, fh)
    hg72("-R", tmp_path / "ours", "verify", "-q")
    assert hg72("-R", tmp_path / "ours", "log", "-T", LOG).stdout == want
