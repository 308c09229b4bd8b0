"""Store transactions with Mercurial's journal, so hg and hgwire can recover each other.

Before a store file is first appended to, its size goes to ``store/journal``
(``<path>\\0<offset>\\n``); before a file is rewritten, a copy is taken and listed in
``store/journal.backupfiles`` (spec §7.2). Rolling back truncates, deletes and restores
from those two files; committing runs the finalizers (which make the changelog visible,
spec §7.3) and then renames the journal files to ``undo*`` as Mercurial does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from hgwire.errors import AbortError, RepositoryError
from hgwire.repo.store import fsbytes, fsstr
from hgwire.repo.vfs import VFS

VERSION = 2  # journal.backupfiles format version
Report = Callable[[str], None]
Callback = Callable[["Transaction"], Any]

#: Undo files Mercurial may leave from a previous transaction (location, name pattern);
#: ``undo`` itself goes last so an interrupted clean-up is noticed.
UNDO_FILES = (
    ("store", "%s.narrowspec"),
    ("plain", "%s.narrowspec.dirstate"),
    ("plain", "%s.branch"),
    ("plain", "%s.bookmarks"),
    ("store", "%s.phaseroots"),
    ("plain", "%s.dirstate"),
    ("plain", "%s.desc"),
    ("store", "%s"),
)


def _noreport(msg: str) -> None:
    pass


BackupEntry = tuple[str, bytes, bytes, bool]  # location, file, backup file, cache flag


def read_backupfiles(data: bytes, name: str, report: Report = _noreport) -> list[BackupEntry]:
    """Parse a ``*.backupfiles`` file; unknown versions are reported and ignored (like hg)."""
    lines = data.split(b"\n")
    if not data:
        return []
    if lines[0] != b"%d" % VERSION:
        report(f"{name}: journal was created by a different version of Mercurial")
        return []
    entries: list[BackupEntry] = []
    offset = len(lines[0]) + 1
    for line in lines[1:]:
        if line:
            fields = line.split(b"\0")
            if len(fields) != 4:
                raise RepositoryError(f"{name}: malformed backup entry at offset {offset}")
            loc, f, b, c = fields
            entries.append((loc.decode("ascii", "replace"), f, b, c not in (b"", b"0")))
        offset += len(line) + 1
    return entries


def read_journal(data: bytes, name: str, report: Report = _noreport) -> list[tuple[bytes, int]]:
    """Parse ``journal`` lines ``<file>\\0<offset>``; a torn last line is skipped (hg too)."""
    entries: list[tuple[bytes, int]] = []
    for line in data.split(b"\n"):
        if not line:
            continue
        f, sep, o = line.partition(b"\0")
        try:
            if not sep:
                raise ValueError
            entries.append((f, int(o)))
        except ValueError:
            report(f"{name}: couldn't read journal entry {line!r}")
    return entries


def _playback(
    journal: str,
    report: Report,
    opener: VFS,
    vfsmap: dict[str, VFS],
    entries: list[tuple[bytes, int]],
    backupentries: list[BackupEntry],
) -> None:
    """Undo a transaction: restore backups, truncate appended files, delete new ones."""
    restored: list[tuple[VFS, bytes]] = []

    def restore(vfs: VFS, f: bytes, b: bytes) -> None:
        # copy then rename: the backup may be a hard link of the file (Mercurial makes
        # them), and readers must never see a half-restored file
        dest = vfs.join(f)
        tmp = dest.with_name(dest.name + ".hgwire-restore")
        shutil.copyfile(vfs.join(b), tmp)
        os.replace(tmp, dest)
        restored.append((vfs, b))

    store_backups = {
        e[1]: e for e in backupentries if e[1] and e[2] and vfsmap.get(e[0], opener) is opener
    }
    done: set[BackupEntry] = set()
    for f, offset in sorted(dict(entries).items()):
        bck = store_backups.get(f)
        if bck is not None:
            restore(opener, bck[1], bck[2])
            done.add(bck)
        if offset:
            path = opener.join(f)
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                size = 0
            if size < offset:
                raise RepositoryError(
                    f"{path}: cannot truncate to {offset} bytes, it has only {size}"
                )
            os.truncate(path, offset)
        else:
            opener.unlink(f)
    for entry in backupentries:
        if entry in done:
            continue
        loc, f, b, cache = entry
        vfs = vfsmap.get(loc)
        if vfs is None:
            report(f"couldn't handle {fsstr(b)}: unknown cache location {loc}")
            continue
        try:
            if f and b:
                restore(vfs, f, b)
            else:
                vfs.unlink(f or b)
        except OSError:
            if not cache:
                raise
    _sweep_temporaries(opener, vfsmap, entries, backupentries)
    opener.unlink(journal + ".backupfiles")
    opener.unlink(journal)
    for vfs, b in restored:
        with contextlib.suppress(OSError):
            vfs.unlink(b)


def _sweep_temporaries(
    opener: VFS,
    vfsmap: dict[str, VFS],
    entries: list[tuple[bytes, int]],
    backupentries: list[BackupEntry],
) -> None:
    """Delete atomic-write temporaries a killed writer left next to journaled files."""
    targets = [(opener, f) for f, _ in entries]
    targets += [(vfsmap.get(loc, opener), f) for loc, f, _b, _c in backupentries if f]
    for vfs, f in targets:
        path = vfs.join(f)
        prefix = VFS.temp_prefix(path.name)
        with contextlib.suppress(OSError):
            for leftover in path.parent.iterdir():
                if leftover.name.startswith(prefix):
                    leftover.unlink()


def rollback(
    opener: VFS, vfsmap: dict[str, VFS], journal: str = "journal", report: Report = _noreport
) -> None:
    """Roll back the transaction recorded in ``journal`` (``hg recover`` / ``hg rollback``)."""
    entries = read_journal(opener.read(journal), str(opener.join(journal)), report)
    backupname = journal + ".backupfiles"
    backups = read_backupfiles(opener.tryread(backupname), str(opener.join(backupname)), report)
    _playback(journal, report, opener, vfsmap, entries, backups)


def cleanup_undo_files(vfsmap: dict[str, VFS], report: Report, prefix: str = "undo") -> None:
    """Remove the undo files of the previous transaction (before writing new ones)."""
    svfs = vfsmap["store"]
    listing = prefix + ".backupfiles"
    name = str(svfs.join(listing))
    targets: list[tuple[VFS, bytes | str]] = []
    for loc, _f, b, _c in read_backupfiles(svfs.tryread(listing), name, report):
        if loc in vfsmap and b:
            targets.append((vfsmap[loc], b))
    targets.append((svfs, listing))
    for loc, pattern in UNDO_FILES:
        targets.append((vfsmap[loc], pattern % prefix))
    plain = vfsmap["plain"]
    with contextlib.suppress(OSError):
        for entry in os.listdir(plain.base):
            if entry.startswith(f"{prefix}.backup.dirstate.") and entry.endswith(".bck"):
                targets.append((plain, entry))
    for vfs, path in targets:
        try:
            vfs.unlink(path)
        except OSError as exc:
            report(f"error removing {vfs.join(path)}: {exc.strerror}")


class Transaction:
    """One store transaction; nested uses share it (see :meth:`nest`).

    ``opener`` is the store vfs (encoded); ``vfsmap`` maps Mercurial's location keys
    (``""``/``"store"`` and ``"plain"`` for ``.hg``) to vfses. Use it as a context manager:
    leaving the block normally closes it, an exception aborts it.
    """

    def __init__(
        self,
        opener: VFS,
        vfsmap: dict[str, VFS],
        *,
        journal: str = "journal",
        undo: str | None = "undo",
        journal_files: Iterable[tuple[VFS, str]] = (),
        report: Report = _noreport,
        releasefn: Callable[[Transaction, bool], None] | None = None,
        name: bytes = b"<unnamed>",
    ) -> None:
        self._opener = opener
        self._vfsmap = {**vfsmap, "": opener}
        self._journal = journal
        self._undo = undo
        self._journal_files = [(opener, journal), *journal_files]
        self._report = report
        self._releasefn = releasefn
        self._names = [name]
        self._count = 1
        self._usages = 1
        self._offsets: dict[bytes, int] = {}
        self._newfiles: set[bytes] = set()
        self._backupentries: list[BackupEntry] = []
        self._backupmap: dict[tuple[str, bytes], int] = {}  # (location, file) -> entry
        self._tmpfiles: set[bytes] = set()
        self._pending: dict[bytes, Callback] = {}
        self._finalize: dict[bytes, Callback] | None = {}
        self._postclose: dict[bytes, Callback] = {}
        self._abort_cbs: dict[bytes, Callback] = {}
        self._validators: dict[bytes, Callback] = {}
        self.changes: dict[bytes, Any] = {}
        self.hookargs: dict[bytes, Any] = {}
        self._any_pending = False
        opener.makedirs("")
        # The backup listing is truncated before the journal exists: the journal marks a
        # transaction, and a listing a killed commit left behind must never be read as
        # this transaction's (it would restore stale backups).
        self._backupname = journal + ".backupfiles"
        self._backupsfile = opener(self._backupname, "wb")
        self._backupsfile.write(b"%d\n" % VERSION)
        self._backupsfile.flush()
        self._file = opener(journal, "wb")

    def __del__(self) -> None:
        """A transaction dropped while running is aborted (and its lock level released),
        so a forgotten ``release`` cannot keep a server's repository locked forever."""
        try:
            if getattr(self, "_count", 0) > 0:
                self._abort()
        except Exception:
            pass  # best effort during garbage collection

    def __repr__(self) -> str:
        name = b"/".join(self._names).decode("utf-8", "replace")
        return f"<Transaction {name} count={self._count} usages={self._usages}>"

    # -- state -----------------------------------------------------------------------

    def running(self) -> bool:
        return self._count > 0

    def _active(self) -> None:
        if self._count == 0:
            raise AbortError("transaction used after it was committed or aborted")

    @property
    def finalized(self) -> bool:
        return self._finalize is None

    # -- journaling ------------------------------------------------------------------

    def add(self, path: str | bytes, offset: int) -> None:
        """Record ``path``'s size before its first append (0: new file, deleted on abort)."""
        self._active()
        f = fsbytes(path)
        if f in self._newfiles or f in self._offsets or ("", f) in self._backupmap:
            return
        if f in self._tmpfiles:
            return
        if offset:
            self._offsets[f] = offset
        else:
            self._newfiles.add(f)
        self._file.write(b"%s\0%d\n" % (f, offset))
        self._file.flush()

    def findoffset(self, path: str | bytes) -> int | None:
        """The journaled size of ``path`` (0 for new files), None if not journaled."""
        f = fsbytes(path)
        if f in self._newfiles:
            return 0
        return self._offsets.get(f)

    def journaled(self) -> list[tuple[bytes, int]]:
        """The journal entries in the order written."""
        self._file.flush()
        return read_journal(self._opener.read(self._journal), self._journal)

    def addbackup(self, path: str | bytes, location: str = "", for_offset: bool = False) -> None:
        """Copy ``path`` aside before it is rewritten; abort restores (or deletes) it.

        The copy is complete before its entry is written, so a crash in between leaves
        only an unused copy. ``for_offset`` is accepted for Mercurial's signature; files
        journaled by size are always backed up.
        """
        self._active()
        f = fsbytes(path)
        key = self._key(location, f)
        store = key[0] == ""
        if key in self._backupmap or (store and f in self._newfiles):
            return
        # A file already journaled by size is backed up too (Mercurial 7.2 only does so
        # with ``for_offset``), keeping its first ``offset`` bytes, i.e. its content
        # before the transaction: our rollback and 7.2's restore it then truncate (a
        # no-op). Mercurial 6.0 truncates first and fails if the rewritten file is now
        # shorter, so writers should still avoid rewriting files they appended to.
        vfs = self._vfsmap[location]
        dirname, _, filename = f.rpartition(b"/")
        backup = b"%s.backup.%s.bck" % (self._journal.encode(), filename)
        if dirname:
            backup = dirname + b"/" + backup
        if vfs.exists(f):
            dest = vfs.join(backup)
            dest.parent.mkdir(parents=True, exist_ok=True)
            offset = self._offsets.get(f) if store else None
            if offset is None:
                shutil.copyfile(vfs.join(f), dest)
            else:  # appended in this transaction: keep only the original bytes
                with open(vfs.join(f), "rb") as src, open(dest, "wb") as out:
                    out.write(src.read(offset))
        else:
            backup = b""
        self._addbackupentry((location, f, backup, False))

    def _key(self, location: str, path: bytes) -> tuple[str, bytes]:
        return ("" if self._vfsmap.get(location) is self._opener else location, path)

    def hasbackup(self, path: str | bytes, location: str = "") -> bool:
        """Whether ``path`` was already backed up (or registered as temporary)."""
        return self._key(location, fsbytes(path)) in self._backupmap

    def registertmp(self, path: str | bytes, location: str = "") -> None:
        """A temporary file deleted when the transaction ends either way."""
        self._active()
        f = fsbytes(path)
        self._tmpfiles.add(f)
        self._addbackupentry((location, b"", f, False))

    def _addbackupentry(self, entry: BackupEntry) -> None:
        self._backupentries.append(entry)
        self._backupmap[self._key(entry[0], entry[1])] = len(self._backupentries) - 1
        loc, f, b, c = entry
        self._backupsfile.write(b"%s\0%s\0%s\0%d\n" % (loc.encode(), f, b, c))
        self._backupsfile.flush()

    # -- callbacks -------------------------------------------------------------------

    def addpending(self, category: bytes, callback: Callback) -> None:
        """``callback(tr)`` writes pending data (e.g. ``00changelog.i.a``) for hooks."""
        self._pending[category] = callback

    def writepending(self) -> bool:
        """Run the pending callbacks once; True if any wrote pending data."""
        self._active()
        for cat in sorted(self._pending):
            self._any_pending = bool(self._pending.pop(cat)(self)) or self._any_pending
        return self._any_pending

    def addfinalize(self, category: bytes, callback: Callback) -> None:
        """``callback(tr)`` runs at close, sorted by category (spec §7.3 finalization)."""
        if self._finalize is None:
            raise AbortError("transaction already finalized")
        self._finalize[category] = callback

    def hasfinalize(self, category: bytes) -> bool:
        return self._finalize is not None and category in self._finalize

    def addpostclose(self, category: bytes, callback: Callback) -> None:
        """``callback(tr)`` runs after the transaction committed and the journal is gone."""
        self._postclose[category] = callback

    def addabort(self, category: bytes, callback: Callback) -> None:
        """``callback(tr)`` runs when the transaction aborts, before the rollback."""
        self._abort_cbs[category] = callback

    def addvalidator(self, category: bytes, callback: Callback) -> None:
        """``callback(tr)`` runs first at close and may raise to abort."""
        self._validators[category] = callback

    # -- nesting and the context manager ------------------------------------------------

    def nest(self, name: bytes = b"<unnamed>") -> Transaction:
        self._active()
        self._count += 1
        self._usages += 1
        self._names.append(name)
        return self

    def release(self) -> None:
        """End one use; a transaction left without :meth:`close` is aborted."""
        if self._count > 0:
            self._usages -= 1
        if self._names:
            self._names.pop()
        if self._count > 0 and self._usages == 0:
            self._abort()

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.close()
        finally:
            self.release()

    # -- commit and abort ------------------------------------------------------------

    def close(self) -> None:
        """Commit: validate, finalize, then retire the journal into ``undo`` files."""
        self._active()
        if self._count == 1:
            for cat in sorted(self._validators):
                self._validators[cat](self)
            while self._finalize:
                callbacks, self._finalize = self._finalize, {}
                for cat in sorted(callbacks):
                    callbacks[cat](self)
            self._finalize = None
        self._count -= 1
        if self._count:
            return
        self._file.close()
        self._backupsfile.close()
        for loc, f, b, _c in self._backupentries:
            if not f and b:
                self._vfsmap[loc].unlink(b)
        self._offsets = {}
        self._newfiles = set()
        self._writeundo()
        self._opener.unlink(self._backupname)
        self._opener.unlink(self._journal)
        for loc, _f, b, _c in self._backupentries:
            if b:
                self._vfsmap[loc].unlink(b)
        self._backupentries = []
        if self._releasefn is not None:
            self._releasefn(self, True)
            self._releasefn = None
        for cat in sorted(self._postclose):
            self._postclose[cat](self)
        self._postclose = {}

    def _undoname(self, name: bytes | str) -> bytes:
        raw = fsbytes(name)
        base, _, leaf = raw.rpartition(b"/")
        journal = self._journal.encode()
        assert self._undo is not None and leaf.startswith(journal)
        new = leaf.replace(journal, self._undo.encode(), 1)
        return base + b"/" + new if base else new

    def _writeundo(self) -> None:
        """Keep what ``hg rollback`` needs: undo.backupfiles + backups, undo, undo.desc."""
        if self._undo is None:
            return
        cleanup_undo_files(self._vfsmap, self._report, self._undo)
        lines = [b"%d\n" % VERSION]
        for loc, f, b, c in self._backupentries:
            if not f:
                continue
            u = b""
            if b:
                vfs = self._vfsmap[loc]
                u = self._undoname(b)
                try:
                    os.link(vfs.join(b), vfs.join(u))
                except OSError:
                    shutil.copyfile(vfs.join(b), vfs.join(u))
            lines.append(b"%s\0%s\0%s\0%d\n" % (loc.encode(), f, u, c))
        with self._opener(self._undo + ".backupfiles", "wb") as fh:
            fh.write(b"".join(lines))
        for vfs, src in self._journal_files:
            dest = self._undoname(src)
            vfs.unlink(dest)
            with contextlib.suppress(FileNotFoundError):
                os.rename(vfs.join(src), vfs.join(dest))

    def abort(self) -> None:
        """Roll back everything this transaction wrote."""
        self._active()
        self._abort()

    def _abort(self) -> None:
        self._file.flush()
        entries = read_journal(self._opener.read(self._journal), self._journal)
        self._count = 0
        self._usages = 0
        self._file.close()
        self._backupsfile.close()
        try:
            for cat in sorted(self._abort_cbs):
                self._abort_cbs[cat](self)
            if not entries and not any(e[1] for e in self._backupentries):
                for loc, _f, b, _c in self._backupentries:
                    self._vfsmap[loc].unlink(b)
                self._opener.unlink(self._backupname)
                self._opener.unlink(self._journal)
            else:
                self._report("transaction abort!")
                try:
                    _playback(
                        self._journal,
                        self._report,
                        self._opener,
                        self._vfsmap,
                        entries,
                        self._backupentries,
                    )
                    self._report("rollback completed")
                except BaseException as exc:
                    self._report(f"rollback failed ({exc}): run 'hg recover'")
                    raise
        finally:
            if self._releasefn is not None:
                self._releasefn(self, False)
                self._releasefn = None
