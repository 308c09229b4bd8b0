"""Locks (spec §7.1): format, re-entrancy, stale-lock breaking, and exclusion with real hg."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hgwire.repo import lock as lockmod
from hgwire.repo.localrepo import Repository
from hgwire.repo.vfs import VFS
from tests.conftest import HgRunner, hg_env


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_lock_file_is_symlink_naming_host_and_pid(tmp_path: Path) -> None:
    lk = lockmod.Lock(VFS(tmp_path), "lock").acquire()
    path = tmp_path / "lock"
    assert path.is_symlink()
    target = os.readlink(path).encode()
    assert target == lockmod.lock_prefix() + b":%d" % os.getpid()
    assert target.startswith(os.uname().nodename.encode())
    lk.release()
    assert not path.exists() and not path.is_symlink()


def test_lock_is_reentrant(tmp_path: Path) -> None:
    lk = lockmod.Lock(VFS(tmp_path), "lock")
    with lk:
        lk.acquire()
        lk.release()
        assert (tmp_path / "lock").is_symlink()
    assert not (tmp_path / "lock").is_symlink()


def test_live_holder_blocks(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    info = lockmod.lock_prefix() + b":%d" % sleeper.pid
    os.symlink(info, tmp_path / "lock")
    with pytest.raises(lockmod.LockHeld) as exc:
        lockmod.Lock(VFS(tmp_path), "lock", timeout=0.2, poll=0.05).acquire()
    assert exc.value.locker == info
    assert str(sleeper.pid) in str(exc.value)
    assert os.readlink(tmp_path / "lock").encode() == info


def test_stale_lock_of_dead_local_pid_is_broken(tmp_path: Path) -> None:
    os.symlink(lockmod.lock_prefix() + b":%d" % _dead_pid(), tmp_path / "lock")
    lk = lockmod.Lock(VFS(tmp_path), "lock").acquire()
    assert os.readlink(tmp_path / "lock").endswith(f":{os.getpid()}")
    assert not (tmp_path / "lock.break").exists()
    lk.release()


def test_stale_lock_in_regular_file_is_broken(tmp_path: Path) -> None:
    (tmp_path / "lock").write_bytes(lockmod.lock_prefix() + b":%d" % _dead_pid())
    lockmod.Lock(VFS(tmp_path), "lock").acquire().release()


@pytest.mark.parametrize(
    "content",
    [b"some-other-host:%d", b"%d"],  # other host / old-style pid-only: never broken
)
def test_foreign_or_old_style_locks_are_not_broken(tmp_path: Path, content: bytes) -> None:
    info = content % _dead_pid()
    os.symlink(info, tmp_path / "lock")
    with pytest.raises(lockmod.LockHeld):
        lockmod.Lock(VFS(tmp_path), "lock").acquire()
    assert os.readlink(tmp_path / "lock").encode() == info


def test_break_lock_held_means_no_breaking(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """Someone else is breaking the stale lock right now: we do not break it too."""
    os.symlink(lockmod.lock_prefix() + b":%d" % _dead_pid(), tmp_path / "lock")
    os.symlink(lockmod.lock_prefix() + b":%d" % sleeper.pid, tmp_path / "lock.break")
    with pytest.raises(lockmod.LockHeld):
        lockmod.Lock(VFS(tmp_path), "lock").acquire()
    assert (tmp_path / "lock").is_symlink()


def test_repository_locks_live_where_hg_expects(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r")
    with repo.wlock(), repo.lock():
        assert (repo.path / "wlock").is_symlink()
        assert (repo.path / "store" / "lock").is_symlink()
        with repo.lock():  # re-entrant within the repository object
            pass
        assert (repo.path / "store" / "lock").is_symlink()
    assert not (repo.path / "store" / "lock").is_symlink()
    assert not (repo.path / "wlock").is_symlink()


# -- against real Mercurial ------------------------------------------------------------

HOLD_LOCK = r"""
import sys
from mercurial import hg, ui as uimod
repo = hg.repository(uimod.ui.load(), sys.argv[1].encode())
lk = repo.lock()
tr = repo.transaction(b"hold")
print("locked", flush=True)
sys.stdin.read()
tr.close()
lk.release()
"""


def _working_repo(hg: HgRunner, path: Path) -> None:
    hg("init", path)
    (path / "a.txt").write_text("one\n")
    hg("commit", "-Am", "one", cwd=path)
    (path / "a.txt").write_text("two\n")


@pytest.mark.interop
@pytest.mark.parametrize("runner", ["hg60", "hg72"])
def test_hg_cannot_write_while_hgwire_holds_lock(
    tmp_path: Path, runner: str, request: pytest.FixtureRequest
) -> None:
    hg: HgRunner = request.getfixturevalue(runner)
    root = tmp_path / "r"
    _working_repo(hg, root)
    repo = Repository.open(root)
    with repo.lock():
        proc = hg("commit", "-m", "two", "--config", "ui.timeout=1", cwd=root, check=False)
        assert proc.returncode != 0
        assert b"lock" in proc.stderr
        assert str(os.getpid()).encode() in proc.stderr  # hg names us as the holder
    assert len(hg("log", "-T", "x", cwd=root).stdout) == 1
    hg("commit", "-m", "two", cwd=root)  # lock released: hg proceeds
    assert len(hg("log", "-T", "x", cwd=root).stdout) == 2


@pytest.mark.interop
@pytest.mark.parametrize("runner", ["hg60", "hg72"])
def test_hgwire_cannot_write_while_hg_holds_lock(
    tmp_path: Path, runner: str, request: pytest.FixtureRequest
) -> None:
    hg: HgRunner = request.getfixturevalue(runner)
    hg_path: Path = request.getfixturevalue(runner + "_path")
    root = tmp_path / "r"
    _working_repo(hg, root)
    holder = subprocess.Popen(
        [str(hg_path.parent / "python"), "-c", HOLD_LOCK, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=hg_env(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        repo = Repository.open(root)  # the live writer's journal is not rolled back
        assert repo.svfs.exists("journal")
        repo.lock_timeout, repo.lock_poll = 0.3, 0.1
        with pytest.raises(lockmod.LockHeld) as exc:
            repo.transaction(b"test")
        assert exc.value.locker.endswith(b":%d" % holder.pid)
        with pytest.raises(lockmod.LockHeld):
            repo.lock(wait=False)
    finally:
        holder.communicate(b"")
    assert holder.returncode == 0
    with Repository.open(root).transaction(b"test"):
        pass


@pytest.mark.interop
@pytest.mark.parametrize("runner", ["hg60", "hg72"])
def test_locks_of_killed_processes_are_broken_both_ways(
    tmp_path: Path, runner: str, request: pytest.FixtureRequest
) -> None:
    hg: HgRunner = request.getfixturevalue(runner)
    hg_path: Path = request.getfixturevalue(runner + "_path")
    root = tmp_path / "r"
    _working_repo(hg, root)
    # hg killed while holding the lock: hgwire breaks the lock and recovers the journal
    holder = subprocess.Popen(
        [str(hg_path.parent / "python"), "-c", HOLD_LOCK, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=hg_env(),
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (root / ".hg" / "store" / "lock").is_symlink()
    repo = Repository.open(root)
    assert not repo.svfs.exists("journal")
    assert not (root / ".hg" / "store" / "lock").is_symlink()
    # hgwire killed while holding the lock: hg breaks it and commits
    code = (
        "import sys, time\n"
        "from hgwire.repo.localrepo import Repository\n"
        "r = Repository.open(sys.argv[1]); r.lock(); print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, env=hg_env()
    )
    assert child.stdout is not None and child.stdout.readline() == b"locked\n"
    child.kill()
    child.wait()
    assert (root / ".hg" / "store" / "lock").is_symlink()
    hg("commit", "-m", "two", "--config", "ui.timeout=1", cwd=root)
    hg("verify", cwd=root)


def test_transaction_inside_explicit_locks_releases_everything(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "r")
    for fail in (False, True):
        try:
            with repo.wlock(), repo.lock(), repo.transaction(b"t"):
                if fail:
                    raise KeyError
        except KeyError:
            pass
        assert not (repo.path / "store" / "lock").is_symlink()
        assert not (repo.path / "wlock").is_symlink()
