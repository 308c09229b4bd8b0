"""Revlog interop with real Mercurial 6.0 and 7.2.4.

Reading: repositories created by hg (both versions, zstd and zlib, inline and split
revlogs, >1 MB revisions, binary files, copies, flags, a merge, a closed branch) are read
with hgwire and every revision of every revlog is compared with what Mercurial's own revlog
API reports (node, parents, linkrev, flags, delta parent, SHA-1 of the rawtext), driven in
the hg virtualenv's python. Writing: hgwire appends changesets (filelogs, manifest,
changelog) and copies whole repositories through ``addgroup``; ``hg verify`` of both
versions must be clean and Mercurial must read back the same data.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hgwire.repo import mdiff, nodemap
from hgwire.repo.changelog import Changelog
from hgwire.repo.filelog import Filelog
from hgwire.repo.manifest import Manifest, ManifestRevlog
from hgwire.repo.revlog import RevisionDelta, Revlog, nullid, nullrev
from hgwire.repo.store import StoreVFS
from hgwire.repo.vfs import VFS
from tests.conftest import hg_env

pytestmark = [pytest.mark.interop, pytest.mark.slow]

Runner = Callable[..., subprocess.CompletedProcess[bytes]]

DUMP = r"""
import hashlib, json, sys
from mercurial import hg, ui as uimod
from mercurial.node import hex
u = uimod.ui.load()
for item in sys.argv[2:]:
    sec, rest = item.split(".", 1)
    key, val = rest.split("=", 1)
    u.setconfig(sec.encode(), key.encode(), val.encode())
repo = hg.repository(u, sys.argv[1].encode()).unfiltered()
def dump(rl):
    rl = getattr(rl, "_revlog", rl)
    out = []
    for r in rl:
        p1, p2 = rl.parentrevs(r)
        out.append([hex(rl.node(r)).decode(), p1, p2, rl.linkrev(r), rl.flags(r), rl.deltaparent(r),
                    hashlib.sha1(rl.rawdata(r)).hexdigest()])
    return out
res = {"00changelog": dump(repo.changelog), "00manifest": dump(repo.manifestlog.getstorage(b""))}
for line in repo.svfs.tryread(b"fncache").splitlines():
    if line.startswith(b"data/") and line.endswith(b".i"):
        res[line[:-2].decode("utf-8", "surrogateescape")] = dump(repo.file(line[5:-2]))
cl = repo.changelog
res["changesets"] = []
for r in cl:
    c = cl.changelogrevision(r)
    extra = dict(c.extra)
    if extra.get(b"branch") == b"default":  # hg fills in the default branch
        del extra[b"branch"]
    res["changesets"].append([hex(c.manifest).decode(), c.user.decode("latin-1"), list(c.date),
        [f.decode("latin-1") for f in c.files], c.description.decode("latin-1"),
        {k.decode("latin-1"): v.decode("latin-1") for k, v in extra.items()}])
print(json.dumps(res))
"""

NODEMAP_OK = ["storage.revlog.persistent-nodemap.slow-path=allow"]


def hg_python(hg_path: Path) -> Path:
    return hg_path.parent / "python"


def hg_dump(hg_path: Path, repo: Path, config: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    proc = subprocess.run(
        [str(hg_python(hg_path)), "-c", DUMP, str(repo), *config],
        capture_output=True,
        env=hg_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def open_store(repo: Path) -> StoreVFS:
    return StoreVFS(repo / ".hg" / "store")


def compression_of(repo: Path) -> str:
    req = (repo / ".hg" / "requires").read_bytes()
    store_req = repo / ".hg" / "store" / "requires"
    if store_req.exists():
        req += store_req.read_bytes()
    return "zstd" if b"revlog-compression-zstd" in req else "zlib"


def revlog_names(store: StoreVFS) -> list[str]:
    names = ["00changelog", "00manifest"]
    for line in store.rawvfs.tryread("fncache").splitlines():
        if line.startswith(b"data/") and line.endswith(b".i"):
            names.append(line[:-2].decode("utf-8", "surrogateescape"))
    return names


def our_dump(repo: Path) -> dict[str, Any]:
    store = open_store(repo)
    res: dict[str, Any] = {}
    for name in revlog_names(store):
        rl = Revlog(store, name)
        rows = []
        for r in rl:
            p1, p2 = rl.parentrevs(r)
            rows.append(
                [
                    rl.node(r).hex(),
                    p1,
                    p2,
                    rl.linkrev(r),
                    rl.flags(r),
                    rl.deltaparent(r),
                    hashlib.sha1(rl.rawdata(r)).hexdigest(),
                ]
            )
        res[name] = rows
    cl = Changelog(store)
    res["changesets"] = []
    for r in cl:
        c = cl.read(r)
        res["changesets"].append(
            [
                c.manifest.hex(),
                c.user.decode("latin-1"),
                [c.date[0], c.date[1]],
                [f.decode("latin-1") for f in c.files],
                c.description.decode("latin-1"),
                {k.decode("latin-1"): v.decode("latin-1") for k, v in c.extra.items()},
            ]
        )
    return res


def make_history(
    hg: Runner, repo: Path, compression: str, commits: int = 6, legacy: bool = False
) -> None:
    """A small but varied history created by real hg."""
    cfg = ["--config", f"format.revlog-compression={compression}"]
    if legacy:  # no generaldelta: deltas against the previous revision, chain-base field
        cfg += ["--config", "format.usegeneraldelta=no", "--config", "format.sparse-revlog=no"]
    hg("init", repo, extra=cfg)
    rnd = random.Random(7)
    big = bytearray(rnd.randbytes(600_000) + b"".join(b"row %d\n" % i for i in range(60_000)))
    text = [b"line %d of the text file\n" % i for i in range(300)]

    def commit(msg: str, *args: str) -> None:
        hg("commit", "-A", "-m", msg, "-d", f"{1700000000 + len(msg)} -3600", *args, cwd=repo)

    (repo / "text.txt").write_bytes(b"".join(text))
    (repo / "bin.dat").write_bytes(rnd.randbytes(3000))
    (repo / "big.dat").write_bytes(bytes(big))
    (repo / "meta.txt").write_bytes(b"\x01\nstarts with a metadata marker\n")
    commit("initial")
    for i in range(commits):
        text[rnd.randrange(len(text))] = b"edited %d\n" % i
        (repo / "text.txt").write_bytes(b"".join(text))
        pos = rnd.randrange(len(big) - 100)
        big[pos : pos + 50] = rnd.randbytes(50)
        (repo / "big.dat").write_bytes(bytes(big))
        if i % 3 == 0:
            (repo / "bin.dat").write_bytes(rnd.randbytes(3000))
        commit(f"edit {i}")
    hg("cp", "text.txt", "copy.txt", cwd=repo)
    hg("mv", "bin.dat", "moved.dat", cwd=repo)
    (repo / "exe.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(repo / "exe.sh", 0o755)
    os.symlink("text.txt", repo / "link")
    commit("copies, exec, symlink")
    hg("branch", "feature", cwd=repo)
    (repo / "feature.txt").write_bytes(b"feature\n")
    commit("on a branch")
    hg("update", "default", cwd=repo)
    (repo / "text.txt").write_bytes(b"".join(text) + b"default side\n")
    commit("default side")
    hg("merge", "feature", cwd=repo)
    commit("merge feature")
    hg("update", "feature", cwd=repo)
    commit("close feature", "--close-branch")


@pytest.fixture(scope="module")
def hg_repos(
    tmp_path_factory: pytest.TempPathFactory, hg60: Runner, hg72: Runner
) -> dict[str, Path]:
    repos = {}
    for label, runner in (("6.0", hg60), ("7.2", hg72)):
        for comp in ("zstd", "zlib"):
            path = tmp_path_factory.mktemp("hgrepos") / f"r{label}-{comp}"
            make_history(runner, path, comp)
            repos[f"{label}-{comp}"] = path
    path = tmp_path_factory.mktemp("hgrepos") / "r6.0-legacy"
    make_history(hg60, path, "zlib", commits=4, legacy=True)
    repos["6.0-legacy"] = path
    return repos


@pytest.mark.parametrize("which", ["6.0-zstd", "6.0-zlib", "7.2-zstd", "7.2-zlib", "6.0-legacy"])
def test_every_revision_matches_mercurial(
    which: str, hg_repos: dict[str, Path], hg60_path: Path, hg72_path: Path
) -> None:
    repo = hg_repos[which]
    hg_path = hg60_path if which.startswith("6.0") else hg72_path
    theirs = hg_dump(hg_path, repo)
    ours = our_dump(repo)
    assert set(ours) == set(theirs)
    for name in theirs:
        assert ours[name] == theirs[name], name
    store = open_store(repo)
    # the history really covers the interesting layouts
    assert not Revlog(store, "data/big.dat").inline
    assert Revlog(store, "data/text.txt").inline
    assert max(Revlog(store, "data/big.dat").rawsize(r) for r in range(3)) > 1_000_000
    assert Revlog(store, "data/text.txt").generaldelta == (which != "6.0-legacy")
    cl = Changelog(store)
    assert cl.inline == which.startswith("6.0")
    heads = [cl.branchinfo(r) for r in cl.headrevs()]
    assert (b"feature", True) in heads
    fl = Filelog(store, b"copy.txt")
    assert fl.renamed(0) is not None and fl.renamed(0)[0] == b"text.txt"  # type: ignore[index]
    assert Filelog(store, b"meta.txt").read(0) == b"\x01\nstarts with a metadata marker\n"
    m = ManifestRevlog(store).read(cl.read(len(cl) - 1).manifest)
    assert m[b"exe.sh"][1] == b"x" and m[b"link"][1] == b"l"
    assert Manifest.parse(m.text()) == m


# ------------------------------------------------------------------ writing


class Journal:
    """A minimal transaction for the writer tests (truncate / restore on rollback)."""

    def __init__(self, vfs: VFS) -> None:
        self.vfs = vfs
        self.entries: dict[str, int] = {}
        self.backups: dict[str, bytes | None] = {}

    def add(self, path: str, offset: int) -> None:
        self.entries.setdefault(path, offset)

    def findoffset(self, path: str) -> int | None:
        return self.entries.get(path)

    def hasbackup(self, path: str) -> bool:
        return path in self.backups

    def addbackup(self, path: str) -> None:
        self.backups.setdefault(path, self.vfs.tryread(path) if self.vfs.exists(path) else None)


def hgwire_commit(
    store: StoreVFS,
    changes: dict[bytes, tuple[bytes, bytes] | None],
    desc: bytes,
    *,
    copies: dict[bytes, bytes] | None = None,
    extra: dict[bytes, bytes] | None = None,
) -> bytes:
    """Commit on top of the changelog tip with hgwire's storage API only."""
    root = Path(store.base).parent.parent
    comp = compression_of(root)
    gd = b"generaldelta" in (root / ".hg" / "requires").read_bytes() + (
        store.rawvfs.tryread("requires")
    )
    tr = Journal(store)
    cl = Changelog(store, compression=comp)
    ml = ManifestRevlog(store, compression=comp, generaldelta=gd)
    p1 = cl.tip() if len(cl) else nullid
    pm_node = cl.read(p1).manifest if p1 != nullid else nullid
    parent = ml.read(pm_node) if pm_node != nullid else Manifest()
    m = parent.copy()
    link = len(cl)
    for path, change in sorted(changes.items()):
        if change is None:
            del m[path]
            continue
        content, flags = change
        fl = Filelog(store, path, compression=comp, generaldelta=gd)
        fp1 = parent[path][0] if path in parent else nullid
        fp2 = nullid
        meta = None
        if copies and path in copies:
            src = copies[path]
            meta = {b"copy": src, b"copyrev": parent[src][0].hex().encode()}
            fp1, fp2 = nullid, fp1
        m[path] = (fl.add(content, meta, tr, link, fp1, fp2), flags)
    mnode = ml.add(m, tr, link, pm_node, nullid)
    node = cl.add(
        mnode,
        list(changes),
        desc,
        tr,
        p1,
        nullid,
        b"hgwire <w@example.com>",
        (1700001000, 0),
        extra,
    )
    assert store.fncache is not None
    store.fncache.write(tr)
    return node


def verify(hg: Runner, repo: Path, config: list[str] = ()) -> None:  # type: ignore[assignment]
    extra = [a for c in config for a in ("--config", c)]
    proc = hg("verify", cwd=repo, extra=extra, check=False)
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, out
    assert "warning" not in out and "error" not in out, out


@pytest.mark.parametrize("which", ["6.0-zstd", "7.2-zlib", "6.0-legacy"])
def test_hgwire_commits_pass_hg_verify(
    which: str,
    hg_repos: dict[str, Path],
    tmp_path: Path,
    hg60: Runner,
    hg72: Runner,
    hg60_path: Path,
    hg72_path: Path,
) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-a", str(hg_repos[which]), str(repo)], check=True)
    store = open_store(repo)
    rnd = random.Random(3)
    text = (repo / "text.txt").read_bytes()
    big = bytearray((repo / "big.dat").read_bytes())
    copied = b""
    for i in range(8):
        text += b"hgwire line %d\n" % i
        big[i * 1000 : i * 1000 + 10] = rnd.randbytes(10)
        changes: dict[bytes, tuple[bytes, bytes] | None] = {
            b"text.txt": (text, b""),
            b"big.dat": (bytes(big), b""),
            b"new/dir/file %d.txt" % i: (b"new %d\n" % i, b"x" if i % 2 else b""),
            b"grows.dat": (rnd.randbytes(30_000 * (i + 1)), b""),  # inline -> split
        }
        copies = None
        if i == 3:
            changes[b"copied.txt"] = (text, b"")
            copied = text
            copies = {b"copied.txt": b"text.txt"}
        if i == 5:
            changes[b"new/dir/file 0.txt"] = None
        hgwire_commit(store, changes, b"hgwire commit %d\n\n  " % i, copies=copies)
    assert not Revlog(store, "data/grows.dat").inline
    assert Revlog(store, "data/grows.dat").generaldelta == (which != "6.0-legacy")
    for runner in (hg60, hg72):
        verify(runner, repo)
    for hg_path in (hg60_path, hg72_path):
        assert hg_dump(hg_path, repo) == our_dump(repo)
    out = hg72("cat", "-r", "tip", "text.txt", "copied.txt", cwd=repo).stdout
    assert out == copied + text  # hg cat prints in path order
    log = hg72("log", "-r", "tip", "-T", "{desc}|{branch}|{file_dels}", cwd=repo).stdout
    assert log == b"hgwire commit 7|default|"
    renamed = hg60("log", "-r", "-5", "-T", "{file_copies}", cwd=repo).stdout
    assert renamed == b"copied.txt (text.txt)"
    # Mercurial keeps working on top of what hgwire wrote
    hg72("update", "tip", cwd=repo)
    (repo / "text.txt").write_bytes(text + b"by hg\n")
    hg72("commit", "-m", "hg on top", cwd=repo)
    verify(hg60, repo)
    store = open_store(repo)
    cl = Changelog(store)
    tipmanifest = ManifestRevlog(store).read(cl.read(len(cl) - 1).manifest)
    assert Filelog(store, b"text.txt").read(tipmanifest[b"text.txt"][0]) == text + b"by hg\n"


def test_repository_copied_through_addgroup(
    hg_repos: dict[str, Path], tmp_path: Path, hg60: Runner, hg72: Runner, hg72_path: Path
) -> None:
    """Every revlog re-added from (base, delta) pairs like a pull; deltas stored as-is."""
    src_repo = hg_repos["7.2-zstd"]
    dst_repo = tmp_path / "copy"
    hg72("init", dst_repo)
    src = open_store(src_repo)
    dst = open_store(dst_repo)
    tr = Journal(dst)
    src_cl = Changelog(src)
    dst_cl = Changelog(dst, compression="zstd")
    linkmap = {src_cl.node(r): r for r in src_cl}
    names = revlog_names(src)
    order = [n for n in names if n.startswith("data/")] + ["00manifest"]
    storedasis = 0
    for name in order:
        s = Revlog(src, name)
        d: Revlog
        if name == "00manifest":
            d = ManifestRevlog(dst, compression="zstd")
        else:
            d = Filelog(dst, name[5:].encode(), compression="zstd")
        group = []
        for r in s:
            p1, p2 = s.parentrevs(r)
            base = p1 if p1 != nullrev else nullrev
            linknode = src_cl.node(s.linkrev(r))
            delta = s.revdiff(base, r)
            group.append(
                RevisionDelta(s.node(r), s.node(p1), s.node(p2), linknode, s.node(base), delta)
            )
        revs = d.addgroup(group, linkmap.__getitem__, tr)
        assert [d.node(r) for r in revs] == [s.node(r) for r in s]
        storedasis += sum(1 for r in d if d.deltaparent(r) == d.parentrevs(r)[0] != nullrev)
    cl_group = []
    for r in src_cl:
        p1, p2 = src_cl.parentrevs(r)
        node = src_cl.node(r)
        delta = src_cl.revdiff(p1, r)
        cl_group.append(
            RevisionDelta(node, src_cl.node(p1), src_cl.node(p2), node, src_cl.node(p1), delta)
        )
    dst_cl.addgroup(cl_group, linkmap.__getitem__, tr)
    assert dst.fncache is not None
    dst.fncache.write(tr)
    assert storedasis > 10
    verify(hg60, dst_repo)
    verify(hg72, dst_repo)
    theirs = hg_dump(hg72_path, dst_repo)
    assert theirs["changesets"] == hg_dump(hg72_path, src_repo)["changesets"]


def test_misaligned_manifest_delta_is_recomputed(tmp_path: Path, hg72: Runner) -> None:
    src_repo, dst_repo = tmp_path / "src", tmp_path / "dst"
    hg72("init", src_repo)
    hg72("init", dst_repo)
    src = open_store(src_repo)
    files = {b"f%03d" % i: (b"%d\n" % i, b"") for i in range(40)}
    hgwire_commit(src, files, b"one")
    hgwire_commit(src, {b"f010": (b"changed\n", b""), b"f030": (b"x\n", b"")}, b"two")
    sml = ManifestRevlog(src)
    old, new = sml.rawdata(0), sml.rawdata(1)
    # a byte-level delta replacing only the differing bytes (what spec §3.3 warns about)
    i = next(k for k in range(len(old)) if old[k] != new[k])
    j = next(k for k in range(1, len(old)) if old[-k] != new[-k]) - 1
    bad = struct.pack(">lll", i, len(old) - j, len(new) - j - i) + new[i : len(new) - j]
    assert mdiff.patch(old, bad) == new and not mdiff.is_line_aligned(old, bad)
    good = sml.revdiff(0, 1)
    assert mdiff.is_line_aligned(old, good)
    scl = Changelog(src)
    dst = open_store(dst_repo)
    for delta, expect_asis in ((bad, False), (good, True)):
        for name in ("00manifest.i", "00manifest.d"):
            dst.unlink(name)
        dml = ManifestRevlog(dst)
        full = mdiff.trivialdiffheader(len(old)) + old
        group = [
            RevisionDelta(sml.node(0), nullid, nullid, scl.node(0), nullid, full),
            RevisionDelta(sml.node(1), sml.node(0), nullid, scl.node(1), sml.node(0), delta),
        ]
        dml.addgroup(group, {scl.node(0): 0, scl.node(1): 1}.__getitem__, Journal(dst))
        stored_base, stored = ManifestRevlog(dst).storeddelta(1)
        assert stored_base == 0
        assert mdiff.is_line_aligned(old, stored)
        assert (stored == delta) == expect_asis
        assert ManifestRevlog(dst).revision(1) == new


def nodemap_check(hg: Runner, repo: Path) -> tuple[int, int]:
    """(revisions in index, revisions in nodemap) from a clean ``debugnodemap --check``."""
    cfg = ["--config", "format.use-persistent-nodemap=yes", "--config", NODEMAP_OK[0]]
    out = hg("debugnodemap", "--check", cwd=repo, extra=cfg).stdout
    m = re.fullmatch(rb"revisions? in index: +(\d+)\nrevisions? in nodemap: +(\d+)\n", out)
    assert m is not None, out
    return int(m.group(1)), int(m.group(2))


def nodemap_commit(repo: Path, content: bytes) -> None:
    store = open_store(repo)
    tr = Journal(store)
    cl = Changelog(store, persistent_nodemap=True)
    ml = ManifestRevlog(store, persistent_nodemap=True)
    fl = Filelog(store, b"f")
    p1 = cl.tip()
    pm = cl.read(p1).manifest
    m = ml.read(pm).copy()
    link = len(cl)
    m[b"f"] = (fl.add(content, None, tr, link, m[b"f"][0], nullid), b"")
    mnode = ml.add(m, tr, link, pm, nullid)
    cl.add(mnode, [b"f"], b"by hgwire", tr, p1, nullid, b"w", (1700000000, 0))


def test_persistent_nodemap(tmp_path: Path, hg72: Runner, hg60: Runner) -> None:
    """hgwire deletes the docket on write; hg verifies, checks and rebuilds it (§3.8)."""
    repo = tmp_path / "nm"
    cfg = ["--config", "format.use-persistent-nodemap=yes", "--config", NODEMAP_OK[0]]
    hg72("init", repo, extra=cfg)
    for i in range(3):
        (repo / "f").write_bytes(b"%d\n" % i)
        hg72("commit", "-A", "-m", f"c{i}", cwd=repo, extra=cfg)
    store = open_store(repo)
    assert nodemap.read_docket(store, "00changelog") is not None
    nodemap_commit(repo, b"hgwire\n")
    assert nodemap.read_docket(store, "00changelog") is None
    for runner in (hg72, hg60):
        verify(runner, repo, NODEMAP_OK)
        assert runner("log", "-r", "tip", "-T", "{desc}", cwd=repo, extra=cfg).stdout == (
            b"by hgwire"
        )
    # hg's next transaction writes a fresh docket covering hgwire's revision
    (repo / "f").write_bytes(b"again\n")
    hg72("commit", "-m", "hg again", cwd=repo, extra=cfg)
    docket = nodemap.read_docket(store, "00changelog")
    assert docket is not None and docket.tip_rev == 4
    assert nodemap_check(hg72, repo) == (5, 5)


def test_persisted_trie_matches_mercurial(tmp_path: Path, hg72: Runner, hg60: Runner) -> None:
    repo = tmp_path / "nm"
    cfg = ["--config", "format.use-persistent-nodemap=yes", "--config", NODEMAP_OK[0]]
    hg72("init", repo, extra=cfg)
    for i in range(16):  # enough for shared prefixes, i.e. nested trie blocks
        (repo / "f").write_bytes(b"%d\n" % i)
        hg72("commit", "-A", "-m", f"c{i}", cwd=repo, extra=cfg)
    store = open_store(repo)
    cl = Changelog(store)
    ours = nodemap.build_trie([cl.node(r) for r in cl])
    assert len(ours) > nodemap.S_BLOCK.size  # more than the root block
    theirs = hg72("debugnodemap", "--dump-new", cwd=repo, extra=cfg).stdout
    assert ours == theirs
    for r in cl:
        assert nodemap.lookup(ours, cl.node(r)) == r
    docket = nodemap.persist(cl)
    assert docket.tip_rev == 15
    for runner in (hg72, hg60):
        assert nodemap_check(runner, repo) == (16, 16)
        verify(runner, repo, NODEMAP_OK)
