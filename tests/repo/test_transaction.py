"""Transactions (spec §7.2): journal format, abort, close into undo files, and hg recover."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hgwire.errors import AbortError, RepositoryError
from hgwire.repo import transaction as trmod
from hgwire.repo.localrepo import Repository
from tests.conftest import HgRunner, hg_env


def _append(repo: Repository, tr: trmod.Transaction, path: str, data: bytes) -> None:
    tr.add(path, repo.svfs.size(path))
    with repo.svfs(path, "ab") as fh:
        fh.write(data)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    r = Repository.create(tmp_path / "r")
    r.svfs.atomic_write("00changelog.i", b"A" * 10)
    r.svfs.atomic_write("fncache", b"data/old.i\n")
    r.svfs.atomic_write("data/old.i", b"old")
    r.svfs.atomic_write("phaseroots", b"roots")
    return r


def _store(repo: Repository) -> dict[str, bytes]:
    """Store content minus transaction bookkeeping (journal*, undo*, lock)."""
    base = repo.path / "store"
    return {
        str(p.relative_to(base)): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file() and not p.name.startswith(("journal", "undo", "lock"))
    }


def test_journal_lines_in_mercurial_format(repo: Repository) -> None:
    tr = repo.transaction(b"commit")
    _append(repo, tr, "data/a.txt.i", b"new")
    _append(repo, tr, "00changelog.i", b"B")
    _append(repo, tr, "00changelog.i", b"C")  # journaled once
    tr.addbackup("phaseroots")
    assert repo.svfs.read("journal") == b"data/a.txt.i\x000\n00changelog.i\x0010\n"
    assert repo.svfs.read("journal.backupfiles") == (
        b"2\n\x00phaseroots\x00journal.backup.phaseroots.bck\x000\n"
    )
    assert repo.vfs.read("journal.desc") == b"0\ncommit\n"
    assert tr.findoffset("00changelog.i") == 10 and tr.findoffset(b"data/a.txt.i") == 0
    tr.abort()


def test_abort_restores_store_exactly(repo: Repository) -> None:
    before = _store(repo)
    with pytest.raises(RuntimeError), repo.transaction(b"x") as tr:
        _append(repo, tr, "00changelog.i", b"more")
        _append(repo, tr, "data/New/File.txt.i", b"fresh")
        tr.addbackup("phaseroots")
        repo.svfs.atomic_write("phaseroots", b"rewritten")
        tr.addbackup("bookmarks")  # did not exist: deleted on abort
        repo.svfs.atomic_write("bookmarks", b"bm")
        tr.addbackup("bookmarks", location="plain")
        repo.vfs.atomic_write("bookmarks", b"plain bm")
        raise RuntimeError("boom")
    assert _store(repo) == before
    assert not repo.vfs.exists("bookmarks")
    assert not repo.svfs.exists("journal") and not repo.svfs.exists("journal.backupfiles")
    assert not (repo.path / "store" / "lock").is_symlink()


def test_rewrite_after_append_is_undone(repo: Repository) -> None:
    """A file appended to, then rewritten in place (an inline revlog split by another
    revlog object), is restored exactly: backup first, then truncation."""
    before = _store(repo)
    with pytest.raises(RuntimeError), repo.transaction(b"x") as tr:
        _append(repo, tr, "data/old.i", b" appended")
        tr.addbackup("data/old.i")
        repo.svfs.atomic_write("data/old.i", b"rewritten")
        raise RuntimeError
    assert _store(repo) == before


def test_close_writes_fncache_and_undo_files(repo: Repository) -> None:
    with repo.transaction(b"commit") as tr:
        _append(repo, tr, "data/Sub/B.txt.i", b"b")
        _append(repo, tr, "00changelog.i", b"more")
        tr.addbackup("phaseroots")
        repo.svfs.atomic_write("phaseroots", b"new roots")
    store = repo.path / "store"
    assert (store / "fncache").read_bytes() == b"data/old.i\ndata/Sub/B.txt.i\n"
    assert (store / "data" / "_sub" / "_b.txt.i").read_bytes() == b"b"
    assert not list(store.glob("journal*")) and not list(repo.path.glob("journal*"))
    assert (store / "undo").read_bytes() == b"data/Sub/B.txt.i\x000\n00changelog.i\x0010\n"
    assert repo.vfs.read("undo.desc") == b"0\ncommit\n"
    listing = trmod.read_backupfiles((store / "undo.backupfiles").read_bytes(), "undo")
    assert {(f, b) for _, f, b, _ in listing} == {
        (b"phaseroots", b"undo.backup.phaseroots.bck"),
        (b"fncache", b"undo.backup.fncache.bck"),
    }
    assert (store / "undo.backup.phaseroots.bck").read_bytes() == b"roots"
    assert (store / "undo.backup.fncache.bck").read_bytes() == b"data/old.i\n"


def test_undo_can_roll_back_the_last_transaction(repo: Repository) -> None:
    before = _store(repo)
    with repo.transaction(b"commit") as tr:
        _append(repo, tr, "data/x.i", b"x")
        _append(repo, tr, "00changelog.i", b"more")
    assert _store(repo) != before
    trmod.rollback(repo.svfs, repo.vfs_map, "undo")
    assert _store(repo) == before


def test_nested_transaction_commits_with_outermost(repo: Repository) -> None:
    order: list[str] = []
    with repo.transaction(b"outer") as tr:
        with repo.transaction(b"inner") as inner:
            assert inner is tr
            _append(repo, tr, "00changelog.i", b"1")
        assert repo.svfs.exists("journal")  # still running
        tr.addfinalize(b"b", lambda t: order.append("finalize-b"))
        tr.addfinalize(b"a", lambda t: order.append("finalize-a"))
        tr.addpostclose(b"p", lambda t: order.append(f"post:{repo.svfs.exists('journal')}"))
        tr.addvalidator(b"v", lambda t: order.append("validate"))
    assert order == ["validate", "finalize-a", "finalize-b", "post:False"]
    with pytest.raises(AbortError):
        tr.add("x", 0)


def test_nested_failure_aborts_everything(repo: Repository) -> None:
    before = _store(repo)
    aborted: list[bool] = []
    with pytest.raises(ValueError), repo.transaction(b"outer") as tr:
        tr.addabort(b"a", lambda t: aborted.append(True))
        _append(repo, tr, "00changelog.i", b"1")
        with repo.transaction(b"inner"):
            _append(repo, tr, "data/y.i", b"y")
            raise ValueError
    assert aborted == [True]
    assert _store(repo) == before


def test_validator_can_refuse(repo: Repository) -> None:
    before = _store(repo)

    def refuse(tr: trmod.Transaction) -> None:
        raise AbortError("no")

    with pytest.raises(AbortError), repo.transaction(b"x") as tr:
        _append(repo, tr, "00changelog.i", b"1")
        tr.addvalidator(b"refuse", refuse)
    assert _store(repo) == before


def test_abandoned_journal_refused_then_recovered(repo: Repository) -> None:
    before = _store(repo)
    tr = repo.transaction(b"x")
    _append(repo, tr, "00changelog.i", b"junk")
    _append(repo, tr, "data/z.i", b"z")
    # simulate a dead writer: drop the transaction and the lock without cleanup
    tr._count = 0
    assert repo._lock is not None
    repo._lock.release()
    other = Repository.open(repo.root, recover=False)
    with pytest.raises(RepositoryError, match="abandoned transaction"):
        other.transaction(b"y")
    assert Repository.open(repo.root).svfs.exists("journal") is False
    assert _store(repo) == before


def test_torn_journal_line_is_skipped(repo: Repository) -> None:
    repo.svfs.atomic_write("journal", b"00changelog.i\x005\n00manif")
    repo.svfs.atomic_write("00changelog.i", b"A" * 9)
    assert repo.recover()
    assert repo.svfs.read("00changelog.i") == b"AAAAA"


def test_truncating_beyond_the_end_fails_and_names_the_file(repo: Repository) -> None:
    repo.svfs.atomic_write("journal", b"00changelog.i\x0099\n")
    with pytest.raises(RepositoryError, match=r"00changelog\.i: cannot truncate to 99"):
        repo.recover()
    assert repo.svfs.exists("journal")  # nothing was thrown away


def test_corrupt_backup_listing_stops_recovery_before_writing(repo: Repository) -> None:
    repo.svfs.atomic_write("journal", b"00changelog.i\x005\n")
    repo.svfs.atomic_write("journal.backupfiles", b"2\n\x00phaseroots\x00x\x000\ngarbage\n")
    before = _store(repo)
    with pytest.raises(
        RepositoryError, match=r"journal\.backupfiles: malformed backup entry at offset 18"
    ):
        Repository.open(repo.root)
    assert _store(repo) == before
    assert repo.svfs.exists("journal")


def test_backupfiles_with_unknown_version_is_ignored() -> None:
    reports: list[str] = []
    assert trmod.read_backupfiles(b"3\nx\x00y\x00z\x000\n", "bf", reports.append) == []
    assert "different version" in reports[0]
    with pytest.raises(RepositoryError, match="bf: malformed backup entry at offset 2"):
        trmod.read_backupfiles(b"2\nonly\x00two\n", "bf")


# -- interop with hg recover -----------------------------------------------------------

CRASHING_WRITER = r"""
import os, signal, sys
from hgwire.repo.localrepo import Repository
repo = Repository.open(sys.argv[1])
tr = repo.transaction(b"crash")
for name in ("00changelog.i", "00changelog.d", "00manifest.i", "data/a.txt.i"):
    tr.add(name, repo.svfs.size(name))
    with repo.svfs(name, "ab") as fh:
        fh.write(b"\0garbage that hg must truncate away")
tr.addbackup("fncache")
repo.svfs.atomic_write("fncache", b"data/a.txt.i\ndata/bogus.i\n")
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.interop
@pytest.mark.parametrize("runner", ["hg60", "hg72"])
def test_hg_recover_rolls_back_hgwire_journal(
    tmp_path: Path, runner: str, request: pytest.FixtureRequest
) -> None:
    hg: HgRunner = request.getfixturevalue(runner)
    root = tmp_path / "r"
    hg("init", root)
    (root / "a.txt").write_text("a\n")
    hg("commit", "-Am", "a", cwd=root)
    repo = Repository.open(root)
    before = _store(repo)
    proc = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(root)], env=hg_env())
    assert proc.returncode == -9
    assert _store(repo) != before
    out = hg("recover", "--config", "ui.timeout=2", cwd=root, check=False)
    assert b"rolling back interrupted transaction" in out.stdout, out.stderr
    assert _store(repo) == before
    hg("verify", cwd=root)


@pytest.mark.interop
def test_hgwire_recovers_journal_of_killed_hg(tmp_path: Path, hg72: HgRunner) -> None:
    """hg 7.2 killed (SIGKILL) after finalizing a commit: hgwire rolls it back."""
    root = tmp_path / "r"
    hg72("init", root)
    (root / "a.txt").write_text("a\n")
    hg72("commit", "-Am", "a", cwd=root)
    before = _store(Repository.open(root))
    (root / "b.txt").write_text("b\n")
    (root / "a.txt").write_text("aa\n")
    proc = hg72(
        "commit",
        "-Am",
        "b",
        "--config",
        "devel.debug.abort-transaction=kill-9-post-finalize",
        cwd=root,
        check=False,
    )
    assert proc.returncode != 0
    assert (root / ".hg" / "store" / "journal").exists()
    repo = Repository.open(root)
    assert not repo.svfs.exists("journal")
    assert _store(repo) == before
    hg72("verify", cwd=root)
    assert hg72("log", "-T", "{desc}\n", cwd=root).stdout == b"a\n"


@pytest.mark.interop
@pytest.mark.parametrize(("fmt", "runner"), [("6.0", "hg60"), ("7.2", "hg72")])
def test_hg_rollback_uses_hgwire_undo_files(
    tmp_path: Path, fmt: str, runner: str, request: pytest.FixtureRequest
) -> None:
    """``hg rollback`` undoes hgwire's last transaction from the undo files it left."""
    from tests.repo.test_localrepo import _commit

    hg: HgRunner = request.getfixturevalue(runner)
    repo = Repository.create(tmp_path / "r", format=fmt)
    _commit(repo, {b"a": b"1\n"}, b"one")
    before = _store(repo)
    _commit(repo, {b"a": b"2\n", b"New File": b"b\n"}, b"two")
    out = hg("rollback", "-f", cwd=repo.root).stdout
    assert b"rolled back to revision 0 (undo commit)" in out
    after = _store(repo)
    if after.get("phaseroots") == b"":  # hg 6.0 writes its (empty) phase roots afterwards
        del after["phaseroots"]
    assert after == before
    hg("verify", cwd=repo.root)


def test_forgotten_transaction_is_aborted_when_dropped(repo: Repository) -> None:
    import gc

    before = _store(repo)
    tr = repo.transaction(b"forgotten")
    _append(repo, tr, "00changelog.i", b"junk")
    del tr
    gc.collect()
    assert _store(repo) == before
    assert not repo.svfs.exists("journal")
    assert not (repo.path / "store" / "lock").is_symlink()


def test_pending_callbacks_run_once_and_tmp_files_go(repo: Repository) -> None:
    """``writepending`` (spec §7.3): e.g. ``00changelog.i.a`` for hooks, a registered
    temporary removed at the end either way."""
    calls: list[str] = []

    def pending(tr: trmod.Transaction) -> bool:
        tr.registertmp("00changelog.i.a")
        repo.svfs.atomic_write("00changelog.i.a", b"pending view")
        calls.append("pending")
        return True

    with repo.transaction(b"x") as tr:
        tr.addpending(b"cl", pending)
        assert tr.writepending() is True
        assert tr.writepending() is True  # nothing new, but pending data exists
        assert calls == ["pending"]
        assert repo.svfs.exists("00changelog.i.a")
    assert not repo.svfs.exists("00changelog.i.a")


SPLITTING_WRITER = r"""
import os, signal, sys
from hgwire.repo.localrepo import Repository
from tests.repo._crash_writer import add_changesets_with_revlogs
repo = Repository.open(sys.argv[1])
tr = repo.transaction(b"crash")
add_changesets_with_revlogs(repo, tr, 1, 9)  # first append to big.bin: split first
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.interop
@pytest.mark.parametrize("runner", ["hg60", "hg72"])
def test_hg_recover_undoes_an_inline_split(
    tmp_path: Path, runner: str, request: pytest.FixtureRequest
) -> None:
    """Killed after splitting an inline filelog (past 128 KiB) and appending to it:
    ``hg recover`` finds the index backup under the encoded ``data/`` name and restores
    the store exactly. The split waits for a transaction's first append to the file."""
    from tests.repo import _crash_writer

    hg: HgRunner = request.getfixturevalue(runner)
    repo = Repository.create(tmp_path / "r", format="6.0" if runner == "hg60" else "7.2")
    with repo.transaction(b"seed") as tr:
        _crash_writer.add_changesets_with_revlogs(repo, tr, 2, 0)
    with repo.transaction(b"grow") as tr:  # past 128 KiB, but appended to: stays inline
        _crash_writer.add_changesets_with_revlogs(repo, tr, 10, 1)
    assert not repo.svfs.exists("data/big.bin.d")
    before = _store(repo)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", SPLITTING_WRITER, str(repo.root)], env=hg_env(), cwd=root
    )
    assert proc.returncode == -9
    listing = repo.svfs.read("journal.backupfiles")
    assert b"\x00data/big.bin.i\x00data/journal.backup.big.bin.i.bck\x00" in listing
    assert repo.svfs.exists("data/big.bin.d")
    out = hg("recover", cwd=repo.root, check=False)
    assert b"rolling back interrupted transaction" in out.stdout, out.stderr
    assert _store(repo) == before
    hg("verify", cwd=repo.root)
