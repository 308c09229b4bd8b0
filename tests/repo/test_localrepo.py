"""The Repository object: opening, creating, shares, revlog wiring, caches, bad input."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from hgwire.errors import RepositoryError
from hgwire.repo import localrepo
from hgwire.repo.localrepo import Repository
from hgwire.repo.manifest import Manifest
from hgwire.repo.revlog import nullid
from tests.conftest import HgRunner
from tests.repo import hgrepos

NODEMAP_OK = ("--config", "storage.revlog.persistent-nodemap.slow-path=allow")


def _commit(repo: Repository, files: dict[bytes, bytes], desc: bytes) -> bytes:
    """A linear commit through the revlog writers (filelogs, manifest, changelog)."""
    cl, ml = repo.changelog, repo.manifestlog
    p1 = cl.tip() if len(cl) else nullid
    link = len(cl)
    mf = ml.read(cl.read(p1).manifest) if p1 != nullid else Manifest()
    entries = {path: (mf[path][0], mf.flags(path)) for path in mf}
    with repo.transaction(b"commit") as tr:
        for path, content in files.items():
            fl = repo.file(path)
            old = entries.get(path, (nullid, b""))[0]
            entries[path] = (fl.add(content, None, tr, link, old, nullid), b"")
        mp1 = cl.read(p1).manifest if p1 != nullid else nullid
        mnode = ml.add(Manifest(entries), tr, link, mp1, nullid)
        node = cl.add(mnode, sorted(files), desc, tr, p1, nullid, b"t <t@e>", (0, 0))
    return node


def test_create_and_open(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r")
    assert (repo.path / "00changelog.i").read_bytes() == localrepo.DUMMY_CHANGELOG
    assert len(localrepo.DUMMY_CHANGELOG) == 57
    again = Repository.open(tmp_path / "r" / "some" / "subdir")  # found from below
    assert again.root == repo.root and again.requirements == repo.requirements
    assert len(again) == 0 and len(again.changelog) == 0
    with pytest.raises(RepositoryError, match="already exists"):
        Repository.create(tmp_path / "r")
    with pytest.raises(RepositoryError, match="unknown repository format"):
        Repository.create(tmp_path / "x", format="5.0")


def test_create_with_explicit_requirements(tmp_path: Path) -> None:
    reqs = {b"revlogv1", b"store", b"fncache", b"dotencode", b"generaldelta"}
    repo = Repository.create(tmp_path / "r", requirements=reqs)
    assert repo.requirements == reqs
    assert (
        repo.path / "requires"
    ).read_bytes() == b"dotencode\nfncache\ngeneraldelta\nrevlogv1\nstore\n"
    with pytest.raises(RepositoryError, match="treemanifest"):
        Repository.create(tmp_path / "t", requirements=reqs | {b"treemanifest"})
    assert not (tmp_path / "t").exists()  # refused before anything was written


def test_open_missing(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="not found"):
        Repository.open(tmp_path)
    Repository.create(tmp_path / "r")
    (tmp_path / "r" / "sub").mkdir()
    assert Repository.open(tmp_path / "r" / "sub").root == tmp_path / "r"
    with pytest.raises(RepositoryError, match="not found"):
        Repository.open(tmp_path / "r" / "sub", search=False)


def test_revlog_options_follow_requirements(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r", format="6.0")
    assert repo.revlog_options == {
        "generaldelta": True,
        "sparse": True,
        "compression": "zstd",
        "persistent_nodemap": False,
    }
    (repo.path / "requires").write_bytes(b"fncache\nrevlogv1\nstore\n")
    plain = Repository.open(repo.root)
    assert plain.revlog_options["compression"] == "zlib"
    assert plain.revlog_options["generaldelta"] is False


def test_commit_and_read_back(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r")
    n1 = _commit(repo, {b"a.txt": b"one\n", b"Dir/B.txt": b"b\n"}, b"first")
    n2 = _commit(repo, {b"a.txt": b"two\n"}, b"second")
    fresh = Repository.open(repo.root)
    assert len(fresh) == 2 and fresh.changelog.node(1) == n2 and fresh.changelog.node(0) == n1
    assert fresh.file(b"a.txt").read(1) == b"two\n"
    assert fresh.svfs.read("undo").startswith(b"data/a.txt.i\x00")
    assert repo.vfs.read("undo.desc") == b"1\ncommit\n"
    assert sorted(fresh.svfs.fncache or []) == [b"data/Dir/B.txt.i", b"data/a.txt.i"]
    assert (repo.path / "store" / "data" / "_dir" / "_b.txt.i").is_file()
    names = [name for name, _enc, _size in fresh.store_files()]
    assert names[-3:] == [b"00manifest.i", b"00changelog.i", b"00changelog.d"]


@pytest.mark.parametrize("path", [b"", b"/abs", b"a\nb", b"a\0b"])
def test_bad_file_paths(tmp_path: Path, path: bytes) -> None:
    with pytest.raises(RepositoryError, match="invalid file path"):
        Repository.create(tmp_path / "r").file(path)


def test_invalidate_sees_other_writers(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r")
    assert len(repo.changelog) == 0
    _commit(Repository.open(repo.root), {b"f": b"x\n"}, b"elsewhere")
    repo.invalidate()
    assert len(repo.changelog) == 1


@pytest.mark.interop
def test_shared_repository_uses_source_store(tmp_path: Path, hg72: HgRunner) -> None:
    src = tmp_path / "src"
    hg72("init", src)
    (src / "f").write_text("f\n")
    hg72("commit", "-Am", "f", cwd=src)
    hg72("share", src, tmp_path / "shared", "--config", "extensions.share=")
    hg72("share", "--relative", src, tmp_path / "rel", "--config", "extensions.share=")
    for name in ("shared", "rel"):
        repo = Repository.open(tmp_path / name)
        assert repo.sharedpath.resolve() == (src / ".hg").resolve()
        assert len(repo.changelog) == 1
        assert b"shared" in repo.requirements or b"relshared" in repo.requirements
    with Repository.open(tmp_path / "shared").lock():
        assert (src / ".hg" / "store" / "lock").is_symlink()


def test_share_pointing_nowhere(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r")
    (repo.path / "requires").write_bytes(b"share-safe\nshared\n")
    with pytest.raises(RepositoryError, match="sharedpath: missing"):
        Repository.open(repo.root)
    (repo.path / "sharedpath").write_bytes(os.fsencode(tmp_path / "nowhere" / ".hg"))
    with pytest.raises(RepositoryError, match="has no store"):
        Repository.open(repo.root)


def test_recover_clears_caches(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r")
    _commit(repo, {b"f": b"1\n"}, b"one")
    (repo.path / "cache" / "branch2-served").write_bytes(b"stale")
    (repo.path / "wcache").mkdir(exist_ok=True)
    (repo.path / "wcache" / "manifestfulltextcache").write_bytes(b"stale")
    tr = repo.transaction(b"dies")
    tr.add("00changelog.i", repo.svfs.size("00changelog.i"))
    with repo.svfs("00changelog.i", "ab") as fh:
        fh.write(b"partial")
    tr._count = 0  # a dead writer: journal and lock left behind
    assert repo._lock is not None
    repo._lock.release()
    reopened = Repository.open(repo.root)
    assert len(reopened.changelog) == 1
    assert not (repo.path / "cache" / "branch2-served").exists()
    assert not (repo.path / "wcache" / "manifestfulltextcache").exists()


def test_open_does_not_write_corrupt_store(tmp_path: Path) -> None:
    """Damaged revlogs are reported with file and offset; nothing is written."""
    repo = Repository.create(tmp_path / "r")
    _commit(repo, {b"f": b"1\n"}, b"one")
    index = repo.path / "store" / "00changelog.i"
    index.write_bytes(index.read_bytes()[:-5])
    before = {p: p.read_bytes() for p in repo.path.rglob("*") if p.is_file()}
    with pytest.raises(RepositoryError, match=r"00changelog\.i.*(offset|bytes)"):
        Repository.open(repo.root).changelog.node(0)
    assert {p: p.read_bytes() for p in repo.path.rglob("*") if p.is_file()} == before


def test_corrupt_fncache_refuses_transaction_commit(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r")
    repo.svfs.atomic_write("fncache", b"data/a.i\ndata/b")
    before = repo.svfs.read("fncache")
    with pytest.raises(RepositoryError, match=r"fncache: does not end with a newline \(offset 9\)"):
        _commit(repo, {b"new": b"x\n"}, b"c")
    assert repo.svfs.read("fncache") == before
    assert len(Repository.open(repo.root).changelog) == 0
    assert not repo.svfs.exists("data/new.i")


@pytest.mark.interop
def test_persistent_nodemap_repository(tmp_path: Path, hg72: HgRunner) -> None:
    """hgwire drops the stale docket when appending; an abort restores it exactly."""
    root = tmp_path / "r"
    hg72("init", root, "--config", "format.use-persistent-nodemap=yes", *NODEMAP_OK)
    for i in range(3):
        (root / "f").write_text(f"{i}\n")
        hg72("commit", "-Am", f"c{i}", *NODEMAP_OK, cwd=root)
    repo = Repository.open(root)
    assert b"persistent-nodemap" in repo.requirements
    docket = root / ".hg" / "store" / "00changelog.n"
    saved = docket.read_bytes()
    with pytest.raises(RuntimeError), repo.transaction(b"x"):
        _commit(repo, {b"g": b"g\n"}, b"nested then aborted")
        raise RuntimeError
    assert docket.read_bytes() == saved
    _commit(repo, {b"g": b"g\n"}, b"kept")
    assert not docket.exists()
    hg72("verify", *NODEMAP_OK, cwd=root)
    assert hg72("log", "-r", "tip", "-T", "{desc}", *NODEMAP_OK, cwd=root).stdout == b"kept"


@pytest.mark.interop
def test_hg_reads_what_hgwire_commits(tmp_path: Path, hg60: HgRunner, hg72: HgRunner) -> None:
    for fmt in ("6.0", "7.2"):
        repo = Repository.create(tmp_path / fmt, format=fmt)
        _commit(repo, {b"AUX/Con.txt": b"x\n", hgrepos.LONG_PATH.encode(): b"long\n"}, b"one")
        _commit(repo, {b"AUX/Con.txt": b"y\n"}, b"two")
        for hg in (hg60, hg72):
            hg("verify", cwd=repo.root)
            out = hg("log", "-T", "{desc}:{files}\n", cwd=repo.root).stdout
            assert (
                out
                == b"two:AUX/Con.txt\none:"
                + b" ".join(sorted([b"AUX/Con.txt", hgrepos.LONG_PATH.encode()]))
                + b"\n"
            )


@pytest.mark.interop
def test_readers_during_a_transaction(tmp_path: Path, hg72: HgRunner) -> None:
    """Mid-transaction (files and manifest written, changelog not yet), readers see the
    old history and nobody rolls back the live writer's journal (spec §7.4)."""
    repo = Repository.create(tmp_path / "r")
    _commit(repo, {b"f": b"1\n"}, b"one")
    cl, ml = repo.changelog, repo.manifestlog
    with repo.transaction(b"commit") as tr:
        fnode = repo.file(b"f").add(b"2\n", None, tr, 1, repo.file(b"f").node(0), nullid)
        mnode = ml.add(Manifest({b"f": (fnode, b"")}), tr, 1, ml.node(0), nullid)
        reader = Repository.open(repo.root)  # the lock's holder is alive: no rollback
        assert reader.svfs.exists("journal")
        assert len(reader.changelog) == 1
        assert hg72("log", "-T", "{desc}\n", cwd=repo.root).stdout == b"one\n"
        cl.add(mnode, [b"f"], b"two", tr, cl.node(0), nullid, b"t <t@e>", (0, 0))
    assert hg72("log", "-T", "{desc}\n", cwd=repo.root).stdout == b"two\none\n"
    hg72("verify", cwd=repo.root)


@pytest.mark.parametrize("abort", [False, True])
def test_changelog_entries_become_visible_at_close(
    tmp_path: Path, hg72: HgRunner, abort: bool
) -> None:
    """New changesets reach 00changelog.i only when the transaction finalizes (spec §7.3):
    a reader never sees a changeset a failing transaction rolls back."""
    repo = Repository.create(tmp_path / "r")
    _commit(repo, {b"f": b"1\n"}, b"one")
    size = repo.svfs.size("00changelog.i")
    failing = pytest.raises(RuntimeError) if abort else contextlib.nullcontext()
    with failing, repo.transaction(b"commit") as tr:
        cl, ml = repo.changelog, repo.manifestlog
        p1 = cl.node(0)
        for i, desc in enumerate((b"two", b"three")):
            fl = repo.file(b"f")
            fnode = fl.add(b"%d\n" % i, None, tr, len(cl), fl.tip(), nullid)
            mnode = ml.add(Manifest({b"f": (fnode, b"")}), tr, len(cl), ml.tip(), nullid)
            p1 = cl.add(mnode, [b"f"], desc, tr, p1, nullid, b"t <t@e>", (0, 0))
        assert cl.read(2).description == b"three"  # the writer sees its changesets
        assert repo.svfs.size("00changelog.i") == size  # nobody else does yet
        assert len(Repository.open(repo.root).changelog) == 1
        assert hg72("log", "-T", "{desc}\n", cwd=repo.root).stdout == b"one\n"
        repo.invalidate()  # pending entries survive an invalidation
        assert repo.changelog is cl
        if abort:
            raise RuntimeError("abort")
    again = Repository.open(repo.root)
    if abort:
        assert repo.svfs.size("00changelog.i") == size and len(again.changelog) == 1
        assert hg72("log", "-T", "{desc}\n", cwd=repo.root).stdout == b"one\n"
    else:
        assert [again.changelog.read(r).description for r in range(3)] == [
            b"one",
            b"two",
            b"three",
        ]
        assert hg72("log", "-T", "{desc}\n", cwd=repo.root).stdout == b"three\ntwo\none\n"
    hg72("verify", cwd=repo.root)


def test_invalidate_within_a_transaction_keeps_new_fncache_entries(tmp_path: Path) -> None:
    """The fncache entries of files created in a transaction are written when it
    finalizes; an invalidation in between (a pushkey part after a changegroup) must not
    drop them, or stream clones would silently miss those files (Appendix B #10)."""
    repo = Repository.create(tmp_path / "r")
    with repo.transaction(b"commit") as tr:
        repo.file(b"new.txt").add(b"x\n", None, tr, 0, nullid, nullid)
        repo.invalidate()
    assert repo.svfs.read("fncache") == b"data/new.txt.i\n"


def test_unreadable_requires_is_a_repository_error(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r")
    (repo.path / "requires").unlink()
    (repo.path / "requires").mkdir()  # reading it fails with an OSError
    with pytest.raises(RepositoryError, match="cannot read repository"):
        Repository.open(repo.root)


def test_file_objects_are_shared_within_a_transaction(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r")
    assert repo.file(b"f") is not repo.file(b"f")
    with repo.transaction(b"t"):
        assert repo.file(b"f") is repo.file(b"f")
    assert repo.file(b"f") is not repo.file(b"f")
