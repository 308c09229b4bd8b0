"""Changegroups generated from and applied to repositories, checked by real hg (§8)."""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from hgwire.errors import AbortError, BundleError, HgwireError
from hgwire.exchange import bundle2, changegroup
from hgwire.exchange.changegroup import CgUnpacker, RevisionDelta
from hgwire.repo.localrepo import Repository
from tests.conftest import HgRunner, make_runner
from tests.exchange.conftest import bundles_for
from tests.repo import hgrepos

NULLID = b"\0" * 20


LOG_TEMPLATE = (
    "{node} {p1node} {p2node} {manifest} {branch} {author|json} {date|hgdate}"
    " {desc|json} {files|json} {file_copies|json}\n"
)


def log_lines(hg: HgRunner, repo: Path, revs: str | None = None) -> list[str]:
    """What a changegroup carries of each changeset, newest first (same text from hg
    6.0 and 7.2; ``hg log --debug`` output differs between them)."""
    args = ["-R", repo, "log", "--debug", "-T", LOG_TEMPLATE]
    if revs:
        args += ["-r", revs]
    return hg(*args).stdout.decode("utf-8", "replace").splitlines()


def write_bundle(path: Path, chunks: Iterator[bytes], version: bytes, nb: int) -> Path:
    """A bundle file: HG10UN for cg1, else HG20 with one changegroup part."""
    if version == b"01":
        path.write_bytes(b"".join(bundle2.hg10chunks(chunks, b"UN")))
        return path
    b = bundle2.Bundler()
    b.newpart(b"changegroup", [(b"version", version)], [(b"nbchanges", b"%d" % nb)], chunks)
    path.write_bytes(b.tobytes())
    return path


def store_state(repo: Path) -> dict[str, str]:
    """Digest of every file under ``.hg/store`` (to prove nothing was written)."""
    out = {}
    base = repo / ".hg" / "store"
    for dirpath, _dirs, files in os.walk(base):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(base))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


GEN_CASES = [
    ("7.2.4", b"01", "7.2.4"),
    ("7.2.4", b"02", "6.0"),
    ("7.2.4", b"03", "7.2.4"),
    ("7.2.4", b"03", "6.0"),
    ("6.0", b"02", "7.2.4"),
    ("6.0", b"01", "6.0"),
]


@pytest.mark.interop
@pytest.mark.parametrize(("srcversion", "cgversion", "dstversion"), GEN_CASES)
def test_full_changegroup_accepted_by_hg(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    srcversion: str,
    cgversion: bytes,
    dstversion: str,
) -> None:
    src: hgrepos.GeneratedRepo = request.getfixturevalue(
        {"6.0": "full_repo60", "7.2.4": "full_repo72"}[srcversion]
    )
    repo = Repository.open(src.path)
    outgoing = changegroup.findoutgoing(repo, [])
    # the secret changeset (and only it) is not served
    facts = src.facts()
    assert outgoing.nbchanges == sum(1 for c in facts["changesets"] if c["phase"] < 2)
    path = write_bundle(
        tmp_path / "b.hg",
        changegroup.makechangegroup(repo, outgoing, cgversion),
        cgversion,
        outgoing.nbchanges,
    )
    hg = make_runner(
        request.getfixturevalue({"6.0": "hg60_path", "7.2.4": "hg72_path"}[dstversion])
    )
    dest = tmp_path / "dest"
    hg("init", dest)
    hg("-R", dest, "unbundle", "-q", path)
    hg("-R", dest, "verify", "-q")
    srchg = make_runner(src.hg)
    assert log_lines(hg, dest) == log_lines(srchg, src.path, "reverse(not secret())")


@pytest.mark.interop
@pytest.mark.parametrize("cgversion", [b"01", b"02", b"03"])
def test_incremental_changegroup_accepted_by_hg(
    full_repo72: hgrepos.GeneratedRepo, hg72: HgRunner, tmp_path: Path, cgversion: bytes
) -> None:
    """The receiver has revisions 0..7 (a clone -r 7): only what it lacks is sent, with
    deltas against revisions it has."""
    dest = tmp_path / "dest"
    hg72("clone", "-q", "-U", "-r", "7", full_repo72.path, dest)
    repo = Repository.open(full_repo72.path)
    common = [repo.changelog.node(7)]
    outgoing = changegroup.findoutgoing(repo, common)
    assert min(outgoing.missing) > 7
    chunks = list(changegroup.makechangegroup(repo, outgoing, cgversion))
    data = b"".join(chunks)
    # nothing the receiver has is sent again
    have = set(repo.changelog.node(r) for r in range(8))
    sent = [d.node for d in CgUnpacker(io.BytesIO(data), cgversion).changelog()]
    assert not have & set(sent)
    path = write_bundle(tmp_path / "b.hg", iter([data]), cgversion, outgoing.nbchanges)
    hg72("-R", dest, "unbundle", "-q", path)
    hg72("-R", dest, "verify", "-q")
    assert log_lines(hg72, dest) == log_lines(hg72, full_repo72.path, "reverse(not secret())")


@pytest.mark.interop
@pytest.mark.parametrize(
    ("hgversion", "btype"),
    [("7.2.4", "none-v3"), ("7.2.4", "bzip2-v1"), ("6.0", "zstd-v2"), ("6.0", "gzip-v1")],
)
def test_apply_hg_bundle_then_hg_verify(
    request: pytest.FixtureRequest, tmp_path: Path, hgversion: str, btype: str
) -> None:
    src, bundles = bundles_for(request, hgversion)
    hg = make_runner(src.hg)
    repo = Repository.create(tmp_path / "dest", format=hgversion)
    with open(bundles[btype], "rb") as fh:
        b = bundle2.readbundle(fh)
        if b.kind == "HG10":
            assert b.reader is not None
            result = changegroup.apply(repo, CgUnpacker(b.reader, b"01"))
        else:
            assert b.unbundler is not None
            for part in b.unbundler:
                if part.type == b"changegroup":
                    result = changegroup.apply(repo, CgUnpacker(part, part.params[b"version"]))
    hg("-R", tmp_path / "dest", "verify", "-q")
    facts = src.facts()
    assert result.changesets == len(facts["changesets"])
    assert result.summary().startswith(b"added %d changesets with " % result.changesets)
    assert log_lines(hg, tmp_path / "dest") == log_lines(hg, src.path)
    phases = hg("-R", tmp_path / "dest", "log", "-T", "{phase}\n").stdout.split()
    assert set(phases) == {b"draft"}


@pytest.mark.interop
def test_apply_in_two_steps_reports_like_hg(
    full_repo72: hgrepos.GeneratedRepo, hg72: HgRunner, tmp_path: Path
) -> None:
    """Two heads arrive first (ret 2), then the rest (two new heads close their branch:
    ret 1); the summaries match what ``hg unbundle`` prints for the same bundles."""
    src = full_repo72.path
    first = tmp_path / "first.hg"
    rest = tmp_path / "rest.hg"
    hg72("-R", src, "bundle", "-q", "-r", "5", "-r", "6", "--base", "null", "-t", "none-v2", first)
    hg72("-R", src, "bundle", "-q", "--base", "5+6", "--all", "-t", "none-v2", rest)
    repo = Repository.create(tmp_path / "dest", format="7.2")
    hg72("init", tmp_path / "ref")
    results = []
    for path in (first, rest):
        with open(path, "rb") as fh:
            u = bundle2.readbundle(fh).unbundler
            assert u is not None
            for part in u:
                if part.type == b"changegroup":
                    results.append(changegroup.apply(repo, CgUnpacker(part, b"02")))
        out = hg72("-R", tmp_path / "ref", "unbundle", path).stdout
        summary = results[-1].summary()
        assert summary in out, (summary, out)
    hg72("-R", tmp_path / "dest", "verify", "-q")
    assert [r.ret for r in results] == [2, 1]
    assert log_lines(hg72, tmp_path / "dest") == log_lines(hg72, src)


def _hg_cg(request: pytest.FixtureRequest) -> tuple[bytes, bytes]:
    """The changegroup of the 7.2 full repository's ``none-v2`` bundle made by hg."""
    _src, bundles = bundles_for(request, "7.2.4")
    with open(bundles["none-v2"], "rb") as fh:
        u = bundle2.readbundle(fh).unbundler
        assert u is not None
        for part in u:
            if part.type == b"changegroup":
                return b"02", part.read()
    raise AssertionError("no changegroup")


@pytest.mark.interop
@pytest.mark.parametrize("cut", [100, 5000, -900_000, -10])
def test_truncated_bundle_writes_nothing(
    request: pytest.FixtureRequest, tmp_path: Path, cut: int
) -> None:
    version, data = _hg_cg(request)
    dest = tmp_path / "dest"
    repo = Repository.create(dest, format="7.2")
    before = store_state(dest)
    with pytest.raises(BundleError, match="stream ended unexpectedly"):
        changegroup.apply(repo, CgUnpacker(io.BytesIO(data[:cut]), version))
    assert store_state(dest) == before
    assert len(Repository.open(dest)) == 0


def _corrupt(version: bytes, data: bytes, kind: str, index: int) -> bytes:
    """Re-pack ``data`` with one delta of the ``kind`` group damaged."""
    cg = CgUnpacker(io.BytesIO(data), version)
    cl = list(cg.changelog())
    mf = list(cg.manifests())
    files = [(n, list(ds)) for n, ds in cg.files()]
    target = {"changelog": cl, "manifest": mf, "file": files[index][1]}[kind]
    d = target[-1]
    delta = d.delta[:-1] + bytes([d.delta[-1] ^ 1])
    target[-1] = RevisionDelta(d.node, d.p1, d.p2, d.linknode, d.deltabase, delta, d.flags)
    return b"".join(changegroup.packgroups(version, cl, mf, files))


@pytest.mark.interop
@pytest.mark.parametrize("kind", ["changelog", "manifest", "file"])
def test_corrupt_delta_rolls_back(
    request: pytest.FixtureRequest, hg72: HgRunner, tmp_path: Path, kind: str
) -> None:
    version, data = _hg_cg(request)
    bad = _corrupt(version, data, kind, 3)
    dest = tmp_path / "dest"
    repo = Repository.create(dest, format="7.2")
    before = store_state(dest)
    with pytest.raises(HgwireError, match="integrity"):
        changegroup.apply(repo, CgUnpacker(io.BytesIO(bad), version))
    assert store_state(dest) == before
    hg72("-R", dest, "verify", "-q")


def test_unknown_parent_is_an_abort(tmp_path: Path) -> None:
    text = b"x\n"
    p1 = b"\7" * 20
    a, b = sorted([p1, NULLID])
    node = hashlib.sha1(a + b + text).digest()
    d = RevisionDelta(node, p1, NULLID, node, NULLID, struct.pack(">lll", 0, 0, 2) + text)
    data = b"".join(changegroup.packgroups(b"02", [d], [], []))
    repo = Repository.create(tmp_path / "r", format="7.2")
    with pytest.raises(AbortError, match="unknown parent"):
        changegroup.apply(repo, CgUnpacker(io.BytesIO(data), b"02"))
    assert len(Repository.open(tmp_path / "r")) == 0


def _groups(data: bytes, version: bytes) -> dict[tuple[str, bytes], set[tuple[bytes, ...]]]:
    """Per group: the set of (node, p1, p2, linknode) a changegroup carries."""
    out: dict[tuple[str, bytes], set[tuple[bytes, ...]]] = {}
    for g in CgUnpacker(io.BytesIO(data), version).groups():
        out[(g.kind, g.name)] = {(d.node, d.p1, d.p2, d.linknode) for d in g.deltas}
    return out


@pytest.mark.interop
@pytest.mark.parametrize("cgversion", [b"01", b"02", b"03"])
def test_full_clone_fast_path_matches_slow_path(
    full_repo72: hgrepos.GeneratedRepo, hg72: HgRunner, tmp_path: Path, cgversion: bytes
) -> None:
    """A full clone (nothing common, every changeset) takes the linkrev fast path: the same
    revisions with the same parents and linknodes as the manifest-reading path, and real
    hg applies it and verifies."""
    src = tmp_path / "src"
    hg72("clone", "-q", "-U", full_repo72.path, src)  # no secret changeset: all is served
    repo = Repository.open(src)
    outgoing = changegroup.findoutgoing(repo, [])
    assert changegroup._isfullclone(repo, outgoing)
    fast = b"".join(changegroup.makechangegroup(repo, outgoing, cgversion))
    slow = b"".join(changegroup.makechangegroup(repo, outgoing, cgversion, fastpath=False))
    fastgroups = _groups(fast, cgversion)
    assert fastgroups == _groups(slow, cgversion)
    assert any(kind == "file" for kind, _name in fastgroups)
    path = write_bundle(tmp_path / "b.hg", iter([fast]), cgversion, outgoing.nbchanges)
    dest = tmp_path / "dest"
    hg72("init", dest)
    hg72("-R", dest, "unbundle", "-q", path)
    hg72("-R", dest, "verify", "-q")
    assert log_lines(hg72, dest) == log_lines(hg72, src)


def test_fast_path_not_taken_with_common_or_unserved(
    full_repo72: hgrepos.GeneratedRepo,
) -> None:
    """Secret changesets (not served) or anything common keep the manifest path."""
    repo = Repository.open(full_repo72.path)
    assert not changegroup._isfullclone(repo, changegroup.findoutgoing(repo, []))
    partial = changegroup.findoutgoing(repo, [repo.changelog.node(0)])
    assert not changegroup._isfullclone(repo, partial)
