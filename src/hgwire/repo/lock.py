"""Mercurial-compatible repository locks (spec §7.1).

A lock is a symlink whose target names the holder, ``<host>:<pid>`` (on Linux the host
part carries the pid-namespace inode: ``myhost/effffffc:12345``). Creating a symlink is
atomic and fails when it exists, so hg and hgwire exclude each other. A lock left by a
dead process of this host (same pid namespace) is broken, but only while holding
``<name>.break``, exactly like Mercurial, so two breakers cannot both win.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Callable
from types import TracebackType

from hgwire.errors import LockError
from hgwire.repo.vfs import VFS


class LockHeld(LockError):
    """The lock is held by someone else (``locker`` names them, ``b''`` if unknown)."""

    def __init__(self, path: str, locker: bytes, desc: str) -> None:
        self.path = path
        self.locker = locker
        who = locker.decode("utf-8", "replace") or "another process"
        super().__init__(f"{desc} held by {who} ({path})")


_PREFIX: bytes | None = None


def lock_prefix() -> bytes:
    """This host's lock prefix: hostname, plus ``/<pid-ns inode hex>`` on Linux."""
    global _PREFIX
    if _PREFIX is None:
        prefix = socket.gethostname().encode("utf-8", "surrogateescape")
        with contextlib.suppress(OSError):
            prefix += b"/%x" % os.stat("/proc/self/ns/pid").st_ino
        _PREFIX = prefix
    return _PREFIX


def pid_alive(pid: int) -> bool:
    """False only when ``pid`` certainly does not exist."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def makelock(info: bytes, path: str) -> None:
    """Create the lock ``path`` holding ``info`` atomically; EEXIST if it exists."""
    try:
        os.symlink(info, path)
        return
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise
        # file systems without symlinks: fall back to an exclusive regular file
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    try:
        os.write(fd, info)
    finally:
        os.close(fd)


def readlock(path: str) -> bytes:
    """The holder written in lock ``path`` (FileNotFoundError when there is none)."""
    try:
        return os.fsencode(os.readlink(path))
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS):
            raise
    with open(path, "rb") as fh:
        return fh.read()


class Lock:
    """An advisory lock on ``vfs/name``; re-entrant through :meth:`acquire` counting.

    ``timeout`` is how long to wait for a holder, in seconds (0: fail at once, negative:
    forever); Mercurial polls once a second, ``poll`` allows tests to go faster.
    """

    def __init__(
        self,
        vfs: VFS,
        name: str,
        *,
        timeout: float = 0,
        desc: str = "lock",
        poll: float = 1.0,
        releasefn: Callable[[], None] | None = None,
    ) -> None:
        self.vfs = vfs
        self.name = name
        self.path = str(vfs.join(name))
        self.timeout = timeout
        self.desc = desc
        self.poll = poll
        self.releasefn = releasefn
        self.held = 0
        self.pid = os.getpid()
        self.postrelease: list[Callable[[bool], None]] = []

    @property
    def info(self) -> bytes:
        return b"%s:%d" % (lock_prefix(), self.pid)

    def acquire(self) -> Lock:
        """Take the lock (or one more level of it), waiting up to ``timeout``."""
        if self.held:
            self.held += 1
            return self
        deadline = None if self.timeout < 0 else time.monotonic() + self.timeout
        while True:
            try:
                self._trylock()
                return self
            except LockHeld:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                time.sleep(self.poll)

    def _trylock(self) -> None:
        locker = b""
        for _attempt in range(5):
            try:
                makelock(self.info, self.path)
                self.held = 1
                return
            except FileExistsError:
                pass
            except OSError as exc:
                raise LockError(f"cannot create {self.desc} {self.path}: {exc.strerror}") from exc
            current = self._readlock()
            if current is None:
                continue  # released meanwhile: try again
            left = self._testlock(current)
            if left is not None:
                raise LockHeld(self.path, left, self.desc)
            locker = current
        raise LockHeld(self.path, locker if locker else b"", self.desc)

    def _readlock(self) -> bytes | None:
        try:
            return readlock(self.path)
        except FileNotFoundError:
            return None

    @staticmethod
    def _should_break(locker: bytes | None) -> bool:
        """Whether ``locker`` is a dead process of this host (old pid-only locks: never)."""
        if locker is None or b":" not in locker:
            return False
        host, _, pid = locker.rpartition(b":")
        if host != lock_prefix():
            return False
        try:
            number = int(pid)
        except ValueError:
            return False
        return not pid_alive(number)

    def _testlock(self, locker: bytes) -> bytes | None:
        """``locker`` if the lock is valid; None after breaking a stale lock."""
        if not self._should_break(locker):
            return locker
        breaker = Lock(self.vfs, self.name + ".break", timeout=0, desc=self.desc + " breaker")
        try:
            breaker.acquire()
        except LockError:
            return locker
        try:
            current = self._readlock()
            if current is not None and not self._should_break(current):
                return current
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return None
        finally:
            breaker.release()

    def release(self, success: bool = True) -> None:
        """Drop one level; the last one removes the lock file (not in a forked child)."""
        if self.held > 1:
            self.held -= 1
            return
        if self.held != 1:
            return
        self.held = 0
        if os.getpid() != self.pid:
            return
        try:
            if self.releasefn is not None:
                self.releasefn()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        callbacks, self.postrelease = self.postrelease, []
        for callback in callbacks:
            callback(success)

    def __enter__(self) -> Lock:
        if not self.held:
            self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release(success=exc_type is None)


def holder(vfs: VFS, name: str) -> bytes | None:
    """Who holds lock ``vfs/name`` now (None if nobody)."""
    try:
        return readlock(str(vfs.join(name)))
    except FileNotFoundError:
        return None
