"""The repository object: layout, requirements, locks and transactions around the store.

``Repository.open`` refuses requirements hgwire does not understand (spec §1.4) and rolls
back a transaction a dead writer left behind (spec §7.2); ``Repository.create`` writes what
``hg init`` of Mercurial 6.0 or 7.2.4 writes (spec §1.3). Writers hold the store lock
(``.hg/store/lock``, spec §7.1) and write inside :meth:`Repository.transaction`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hgwire.errors import LockError, RepositoryError
from hgwire.repo import requirements as reqmod
from hgwire.repo.changelog import Changelog
from hgwire.repo.filelog import Filelog
from hgwire.repo.lock import Lock
from hgwire.repo.manifest import ManifestRevlog
from hgwire.repo.store import StoreVFS, encoder_for
from hgwire.repo.transaction import Transaction, rollback
from hgwire.repo.vfs import VFS

#: Content of the dummy ``.hg/00changelog.i`` that keeps pre-``store`` clients out (§1.5).
DUMMY_CHANGELOG = b"\0\0\xff\xff dummy changelog to prevent using the old repo layout"

#: Mercurial's default ``ui.timeout`` for taking a lock, in seconds.
DEFAULT_LOCK_TIMEOUT = 600.0


def find_root(path: str | os.PathLike[str]) -> Path:
    """The repository root containing ``path`` (walking up like hg does)."""
    start = Path(path).absolute()
    for candidate in (start, *start.parents):
        if (candidate / ".hg").is_dir():
            return candidate
    raise RepositoryError(f"repository {path} not found (no .hg directory)")


class Repository:
    """A local Mercurial repository as hgwire sees it: a store, no working directory."""

    def __init__(self, root: Path) -> None:
        """Use :meth:`open` or :meth:`create`; this only wires up the vfses."""
        self.root = root
        self.path = root / ".hg"
        self.vfs = VFS(self.path)
        if not self.path.is_dir():
            raise RepositoryError(f"repository {root} not found")
        try:
            wc_reqs = reqmod.parse(self.vfs.tryread("requires"), str(self.vfs.join("requires")))
            self.sharedpath = self._sharedpath(wc_reqs)
            storebase = self.sharedpath / "store"
            rawstore = VFS(storebase)
            if reqmod.SHARESAFE in wc_reqs:
                if not rawstore.exists("requires"):
                    raise RepositoryError(f"{rawstore.join('requires')}: missing (share-safe)")
                name = str(rawstore.join("requires"))
                store_reqs = reqmod.parse(rawstore.read("requires"), name)
                self.requirements = frozenset(wc_reqs | store_reqs)
            else:
                self.requirements = frozenset(wc_reqs)
        except OSError as exc:  # unreadable requires/sharedpath: not a usable repository
            raise RepositoryError(f"cannot read repository {root}: {exc}") from exc
        reqmod.check(self.requirements)
        self.svfs = StoreVFS(
            storebase,
            encode=encoder_for(self.requirements),
            use_fncache=reqmod.FNCACHE in self.requirements,
        )
        self.cachevfs = VFS(self.path / "cache")
        self.lock_timeout = DEFAULT_LOCK_TIMEOUT
        self.lock_poll = 1.0
        self._lock: Lock | None = None
        self._wlock: Lock | None = None
        # weak, like Mercurial: a transaction nobody holds any more is aborted (its __del__)
        self._transaction: weakref.ref[Transaction] | None = None
        self._cache: dict[Any, Any] = {}

    def _sharedpath(self, wc_reqs: set[bytes]) -> Path:
        """The ``.hg`` holding the store: ours, or the share source's (spec §1.2)."""
        if reqmod.SHARED not in wc_reqs and reqmod.RELSHARED not in wc_reqs:
            return self.path
        raw = self.vfs.tryread("sharedpath").rstrip(b"\r\n")
        if not raw:
            raise RepositoryError(f"{self.vfs.join('sharedpath')}: missing or empty")
        target = Path(os.fsdecode(raw))
        if reqmod.RELSHARED in wc_reqs:
            target = self.path / target
        target = Path(os.path.normpath(target))
        if not (target / "store").is_dir():
            raise RepositoryError(f".hg/sharedpath points to {target}, which has no store")
        return target

    # -- opening and creating ------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, recover: bool = True, search: bool = True
    ) -> Repository:
        """Open the repository at ``path`` (its root or, with ``search``, a directory
        below it; servers should pass ``search=False`` so a wrong path never serves an
        enclosing repository).

        A journal left by a writer that no longer holds the lock is rolled back first
        (``recover=False`` leaves it for ``hg recover``).
        """
        repo = cls(find_root(path) if search else Path(path).absolute())
        if recover and repo.svfs.exists("journal"):
            repo.recover(wait=False)
        return repo

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        format: str = "7.2",
        requirements: Iterable[bytes] | None = None,
    ) -> Repository:
        """Create a repository as ``hg init`` of Mercurial ``format`` does (spec §1.3).

        ``requirements`` replaces the format's set (e.g. a clone keeping its source's
        format); it must be one hgwire supports.
        """
        if requirements is not None:
            reqs = frozenset(requirements)
            reqmod.check(reqs)
        else:
            reqs = reqmod.for_format("7.2" if format == "7.2.4" else format)
        root = Path(path).absolute()
        hgdir = root / ".hg"
        if hgdir.exists():
            raise RepositoryError(f"repository {root} already exists")
        root.mkdir(parents=True, exist_ok=True)
        hgdir.mkdir()
        try:
            vfs = VFS(hgdir)
            for sub in ("cache", "wcache", "store"):
                vfs.makedirs(sub)
            reqmod.write(vfs, reqs)
            vfs.atomic_write("00changelog.i", DUMMY_CHANGELOG)
        except BaseException:
            shutil.rmtree(hgdir, ignore_errors=True)
            raise
        return cls(root)

    def __repr__(self) -> str:
        return f"<Repository {self.root}>"

    # -- revlog options ------------------------------------------------------------------

    @property
    def revlog_options(self) -> dict[str, Any]:
        """How revlogs of this repository are read and created (from the requirements)."""
        reqs = self.requirements
        return {
            "generaldelta": reqmod.GENERALDELTA in reqs or reqmod.SPARSEREVLOG in reqs,
            "sparse": reqmod.SPARSEREVLOG in reqs,
            "compression": "zstd" if reqmod.ZSTD in reqs else "zlib",
            "persistent_nodemap": reqmod.NODEMAP in reqs,
        }

    def _changelog_length(self) -> int:
        """Revisions in the changelog, from its index alone (for ``journal.desc``)."""
        size = self.svfs.size("00changelog.i")
        if size < 4:
            return 0
        with self.svfs("00changelog.i") as fh:
            header = struct.unpack(">I", fh.read(4))[0]
            if not header & (1 << 16):  # not inline: fixed 64-byte entries
                return size // 64
            fh.seek(0)
            data = fh.read()
        count = offset = 0
        while offset + 64 <= len(data):
            complen = struct.unpack(">i", data[offset + 8 : offset + 12])[0]
            offset += 64 + complen
            count += 1
        return count

    def __len__(self) -> int:
        return self._changelog_length()

    # -- locks -----------------------------------------------------------------------

    def _take(self, current: Lock | None, vfs: VFS, name: str, desc: str, wait: bool) -> Lock:
        if current is not None and current.held:
            return current.acquire()
        timeout = self.lock_timeout if wait else 0
        lk = Lock(vfs, name, timeout=timeout, desc=desc, poll=self.lock_poll)
        return lk.acquire()

    def lock(self, wait: bool = True) -> Lock:
        """Take the store lock ``.hg/store/lock`` (re-entrant within this object).

        Taking it afresh drops what was read before: another writer may have committed
        while we did not hold it (Mercurial invalidates the same way).
        """
        fresh = self._lock is None or not self._lock.held
        self._lock = self._take(self._lock, self.svfs.rawvfs, "lock", "repository lock", wait)
        self._lock.releasefn = self.invalidate
        if fresh:
            self.invalidate()
        return self._lock

    def wlock(self, wait: bool = True) -> Lock:
        """Take ``.hg/wlock`` (for ``.hg/bookmarks`` etc.); take it before :meth:`lock`."""
        self._wlock = self._take(self._wlock, self.vfs, "wlock", "working directory lock", wait)
        return self._wlock

    def currentlock(self) -> Lock | None:
        return self._lock if self._lock is not None and self._lock.held else None

    # -- transactions --------------------------------------------------------------------

    @property
    def vfs_map(self) -> dict[str, VFS]:
        """Mercurial's transaction locations: ``""``/``store`` = store, ``plain`` = ``.hg``."""
        return {"": self.svfs, "store": self.svfs, "plain": self.vfs}

    def currenttransaction(self) -> Transaction | None:
        tr = self._transaction() if self._transaction is not None else None
        return tr if tr is not None and tr.running() else None

    def transaction(self, desc: bytes) -> Transaction:
        """Start (or nest into) the store transaction; takes the store lock if needed.

        Refuses to start over an abandoned journal, like Mercurial (spec §7.2).
        """
        tr = self.currenttransaction()
        if tr is not None:
            return tr.nest(desc)
        lk = self.lock()  # one more level of the store lock, released with the transaction
        try:
            if self.svfs.exists("journal"):
                raise RepositoryError(
                    f"{self.svfs.join('journal')}: abandoned transaction found "
                    "(run 'hg recover' or reopen with hgwire)"
                )
            with self.vfs("journal.desc", "wb") as fh:  # informational only, like hg
                fh.write(b"%d\n%s\n" % (len(self), desc))

            def released(tr: Transaction, success: bool) -> None:
                self.invalidate()
                lk.release(success)

            tr = Transaction(
                self.svfs,
                self.vfs_map,
                journal_files=[(self.vfs, "journal.desc")],
                releasefn=released,
                name=desc,
            )
        except BaseException:
            lk.release(False)
            raise
        tr.changes[b"origrepolen"] = len(self)
        if self.svfs.fncache is not None:
            tr.addfinalize(b"flush-fncache", self.svfs.fncache.write)
        if reqmod.NODEMAP in self.requirements:
            # the revlog writer deletes the docket of a revlog it appends to (§3.8);
            # keep copies so a rollback restores the store exactly
            for docket in ("00changelog.n", "00manifest.n"):
                tr.addbackup(docket)
        self._transaction = weakref.ref(tr)
        return tr

    def recover(self, wait: bool = True) -> bool:
        """Roll back an abandoned transaction (``hg recover``); True if there was one.

        With ``wait=False`` a lock held by a live writer means its journal is not
        abandoned: nothing is done.
        """
        try:
            lk = self.lock(wait=wait)
        except LockError:
            if wait:
                raise
            return False
        with lk:
            if not self.svfs.exists("journal"):
                return False
            rollback(self.svfs, self.vfs_map, "journal")
            self.vfs.unlink("journal.desc")
            self._clear_caches()
            self.invalidate()
            return True

    def _clear_caches(self) -> None:
        """Caches may describe revisions that are gone after a rollback (spec §3.9)."""
        cachedir = self.path / "cache"
        if cachedir.is_dir():
            for entry in cachedir.iterdir():
                with contextlib.suppress(OSError):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
        (self.path / "wcache" / "manifestfulltextcache").unlink(missing_ok=True)

    # -- revlogs -------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Forget everything read from the store (after a write, a rollback or a wait).

        Within a transaction the changelog object is kept when it holds delayed entries
        (spec §7.3), and the fncache keeps the names added since it started: both exist
        nowhere else until the transaction finalizes (and the store lock held for it
        keeps other writers out).
        """
        intr = self.currenttransaction() is not None
        cl = self._cache.get("changelog")
        self._cache.clear()
        if isinstance(cl, Changelog) and cl.delayed and intr:
            self._cache["changelog"] = cl
        if self.svfs.fncache is not None and not intr:
            self.svfs.fncache.invalidate()

    @property
    def changelog(self) -> Changelog:
        """The changelog as it is now on disk (re-read after :meth:`invalidate`)."""
        cl = self._cache.get("changelog")
        if cl is None:
            cl = self._cache["changelog"] = Changelog(self.svfs, **self.revlog_options)
        assert isinstance(cl, Changelog)
        return cl

    @property
    def manifestlog(self) -> ManifestRevlog:
        """The (flat) root manifest revlog."""
        ml = self._cache.get("manifestlog")
        if ml is None:
            ml = self._cache["manifestlog"] = ManifestRevlog(self.svfs, **self.revlog_options)
        assert isinstance(ml, ManifestRevlog)
        return ml

    def file(self, path: bytes) -> Filelog:
        """The filelog of working-tree file ``path`` (``data/<path>.i``, encoded)."""
        if not path or path.startswith(b"/") or b"\0" in path or b"\n" in path:
            raise RepositoryError(f"invalid file path {path!r}")
        tr = self.currenttransaction()
        if tr is None:
            return Filelog(self.svfs, path, **self.revlog_options)
        # Within a transaction every caller gets the same object: a revlog knows its
        # on-disk size from what it loaded and appended, so a second object appending to
        # the same file would leave the first one's view stale (the split decision itself
        # is asked of the transaction and is safe either way).
        files: dict[bytes, Filelog] = self._cache.setdefault(("files", id(tr)), {})
        fl = files.get(path)
        if fl is None:
            fl = files[path] = Filelog(self.svfs, path, **self.revlog_options)
        return fl

    def store_files(self) -> Iterator[tuple[bytes, str, int]]:
        """Every revlog file of the store: (unencoded name, encoded name, size)."""
        return self.svfs.revlog_files()
