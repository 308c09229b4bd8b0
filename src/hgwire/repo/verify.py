"""Repository integrity check, like ``hg verify`` (storage spec §4.4, §3.1, §5.5).

Checks, reporting each problem with the file (revlog) and changeset it concerns:

* every revlog (changelog, manifest, each filelog): the index parses, the data file has
  exactly the size the index describes, every revision rebuilds to its recorded size and
  hashes to its node, parents exist and precede it, no node appears twice;
* changelog entries parse; their manifest nodes exist in the manifest revlog;
* manifest and file revision linkrevs point at a changeset that references them
  (manifest node in the changeset / path in its file list);
* every manifest revision is used by some changeset; every path listed by a changeset
  appears in some manifest and vice versa; every file node a manifest names exists in
  the filelog and every filelog revision is named by some manifest;
* copy sources (``copy``/``copyrev`` metadata) name an existing file revision;
* every filelog file is listed in ``store/fncache`` and fncache names no orphan files;
* a leftover ``store/journal`` (abandoned transaction) is reported.

Messages follow ``hg verify``'s wording and ``<file>@<linkrev>: <message>`` layout so they
are easy to compare; the exit status is 0 when clean and 1 when errors were found.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from hgwire.errors import HgwireError, RepositoryError
from hgwire.repo import mdiff
from hgwire.repo.changelog import Changelog, parse_changeset
from hgwire.repo.filelog import Filelog, parsemeta
from hgwire.repo.manifest import ManifestRevlog
from hgwire.repo.revlog import REVIDX_NOHASH_FLAGS, Revlog, hashrevision

NULLID = b"\0" * 20
_R = TypeVar("_R", bound=Revlog)
LinkrevsFn = Callable[[int, bytes], "list[int] | set[int] | None"]
_HUNK = struct.Struct(">lll")


def short(node: bytes) -> str:
    return node[:6].hex()


@dataclass
class Problem:
    """One finding: ``error`` or ``warning``, with the changeset and file it concerns."""

    severity: str
    message: str
    linkrev: int | None = None
    filename: str | None = None

    def format(self) -> str:
        """The line ``hg verify`` would print (errors are indented by one space)."""
        if self.severity == "warning":
            return self.message
        where = "?" if self.linkrev is None else str(self.linkrev)
        text = f"{where}: {self.message}"
        if self.filename:
            text = f"{self.filename}@{text}"
        return " " + text


@dataclass
class VerifyReport:
    """Everything :func:`verify` found, and the counts ``hg verify`` prints."""

    problems: list[Problem] = field(default_factory=list)
    changesets: int = 0
    changes: int = 0
    files: int = 0

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if p.severity == "warning")

    @property
    def first_damaged(self) -> int | None:
        revs = [p.linkrev for p in self.problems if p.severity == "error" and p.linkrev is not None]
        return min(revs) if revs else None

    @property
    def status(self) -> int:
        """The exit status: 1 when there are errors, else 0."""
        return 1 if self.errors else 0

    def summary(self) -> list[str]:
        """The closing lines, as ``hg verify`` prints them."""
        lines = [
            f"checked {self.changesets} changesets with {self.changes} changes to "
            f"{self.files} files"
        ]
        if self.warnings:
            lines.append(f"{self.warnings} warnings encountered!")
        if self.errors:
            lines.append(f"{self.errors} integrity errors encountered!")
            if self.first_damaged is not None:
                lines.append(f"(first damaged changeset appears to be {self.first_damaged})")
        return lines


def iter_rawtexts(rl: Revlog) -> Iterator[tuple[int, bytes | None, HgwireError | None]]:
    """Every revision's rawtext in revision order, each built by one delta from its delta
    parent's text (kept only until its last use), with size and hash checked.

    Yields ``(rev, text, None)`` or ``(rev, None, error)``; a revision whose delta parent
    failed fails too. Reading a whole revlog this way costs one patch per revision instead
    of one delta chain per revision.
    """
    n = len(rl)
    bases = [rl.deltaparent(r) for r in range(n)]
    lastuse = [-1] * n
    for r, b in enumerate(bases):
        if b >= 0:
            lastuse[b] = r
    texts: dict[int, bytes] = {}
    broken: set[int] = set()
    for rev in range(n):
        base = bases[rev]
        try:
            if base in broken:
                raise RepositoryError(f"{rl.indexfile}: delta parent {base} of {rev} is damaged")
            stored_base, delta = rl.storeddelta(rev)  # a full text comes as a delta vs b""
            text = mdiff.patch(texts[base] if stored_base >= 0 else b"", delta)
            if len(text) != rl.rawsize(rev):
                raise RepositoryError(
                    f"{rl.indexfile}: revision {rev} unpacked size is {len(text)}, "
                    f"{rl.rawsize(rev)} expected"
                )
            if not rl.flags(rev) & REVIDX_NOHASH_FLAGS:
                p1, p2 = rl.parentrevs(rev)
                if hashrevision(text, rl.node(p1), rl.node(p2)) != rl.node(rev):
                    raise RepositoryError(
                        f"{rl.indexfile}: integrity check failed on revision {rev} "
                        f"(node {rl.node(rev).hex()})"
                    )
        except (HgwireError, mdiff.PatchError, IndexError, KeyError) as exc:
            broken.add(rev)
            err = (
                exc
                if isinstance(exc, HgwireError)
                else RepositoryError(f"{rl.indexfile}: cannot rebuild revision {rev}: {exc}")
            )
            yield rev, None, err
        else:
            if lastuse[rev] > rev:
                texts[rev] = text
            yield rev, text, None
        if base >= 0 and lastuse[base] <= rev:
            texts.pop(base, None)


class _Verifier:
    def __init__(self, repo: Any, progress: Callable[[str], None] | None) -> None:
        self.repo = repo
        self.report = VerifyReport()
        self.progress = progress or (lambda _msg: None)

    def err(self, linkrev: int | None, msg: str, filename: str | None = None) -> None:
        self.report.problems.append(Problem("error", msg, linkrev, filename))

    def warn(self, msg: str) -> None:
        self.report.problems.append(Problem("warning", msg))

    # -- per-revlog structure and content ---------------------------------------------

    def open_revlog(self, factory: Callable[[], _R], label: str) -> _R | None:
        try:
            return factory()
        except HgwireError as exc:
            self.err(None, f"broken revlog! ({exc})", label)
            return None

    def check_sizes(self, rl: Revlog, label: str) -> None:
        """The data file must end where the last revision's chunk ends (spec §3.1)."""
        n = len(rl)
        expected = rl.end(n - 1) if n else 0
        if rl.inline:
            return  # the loader already walked entry/chunk pairs to the end of the file
        actual = rl.opener.size(rl.datafile)
        if actual != expected:
            self.err(None, f"data length off by {actual - expected} bytes", label)

    def check_revisions(
        self,
        rl: Revlog,
        label: str,
        linkrevs: LinkrevsFn,
        filename: str | None = None,
    ) -> Iterator[tuple[int, bytes, int | None, bytes | None]]:
        """Check each revision; yields ``(rev, node, trusted linkrev or None, rawtext or
        None when it could not be rebuilt)``."""
        seen: dict[bytes, int] = {}
        ncl = self.ncl
        texts = iter_rawtexts(rl)
        for rev in range(len(rl)):
            node = rl.node(rev)
            lr: int | None = rl.linkrev(rev)
            expected = linkrevs(rev, node)
            assert lr is not None
            if lr < 0 or (expected is not None and lr not in expected):
                if lr < 0 or lr >= ncl:
                    self.err(None, f"rev {rev} points to nonexistent changeset {lr}", filename)
                else:
                    self.err(None, f"rev {rev} points to unexpected changeset {lr}", filename)
                if expected:
                    shown = " ".join(str(x) for x in sorted(expected))
                    self.warn(f" (expected {shown})")
                lr = None
            p1, p2 = rl.parentrevs(rev)
            for i, p in ((1, p1), (2, p2)):
                if p >= rev or p < -1:
                    self.err(lr, f"unknown parent {i} of {short(node)} (rev {p})", filename)
            if node in seen:
                self.err(lr, f"duplicate revision {rev} ({seen[node]})", filename)
            seen[node] = rev
            _rev, text, problem = next(texts)
            if problem is not None:
                self.err(lr, f"unpacking {short(node)}: {problem}", filename or label)
            yield rev, node, lr, text

    # -- the three phases -------------------------------------------------------------

    def run(self) -> VerifyReport:
        repo = self.repo
        svfs = repo.svfs
        if svfs.exists("journal"):
            self.warn("abandoned transaction found - run hg recover")
        opts = repo.revlog_options

        self.progress("checking changesets")
        cl = self.open_revlog(lambda: Changelog(svfs, **opts), "changelog")
        self.ncl = len(cl) if cl is not None else 0
        mflinkrevs: dict[bytes, list[int]] = {}
        filelinkrevs: dict[bytes, list[int]] = {}
        if cl is not None:
            self.check_sizes(cl, "00changelog.i")
            for rev, node, _lr, text in self.check_revisions(
                cl, "00changelog.i", lambda r, _n: [r], "changelog"
            ):
                if text is None:
                    continue
                try:
                    entry = parse_changeset(text, f"00changelog.i revision {rev}")
                except HgwireError as exc:
                    self.err(rev, f"unpacking changeset {short(node)}: {exc}")
                    continue
                if entry.manifest != NULLID:
                    mflinkrevs.setdefault(entry.manifest, []).append(rev)
                for f in entry.files:
                    filelinkrevs.setdefault(f, []).append(rev)
        self.report.changesets = self.ncl

        self.progress("checking manifests")
        filenodes: dict[bytes, dict[bytes, int | None]] = {}
        mf = self.open_revlog(lambda: ManifestRevlog(svfs, **opts), "manifest")
        if mf is not None:
            self.check_sizes(mf, "00manifest.i")
            for rev, node, lr, _text in self.check_revisions(
                mf,
                "00manifest.i",
                lambda _r, n: mflinkrevs.get(n, []) if cl is not None else None,
                "manifest",
            ):
                if node in mflinkrevs:
                    del mflinkrevs[node]
                else:
                    self.err(lr, f"{short(node)} not in changesets", "manifest")
                try:
                    for path, fnode in self.manifest_delta(mf, rev):
                        filenodes.setdefault(path, {}).setdefault(fnode, lr)
                except HgwireError as exc:
                    self.err(lr, f"reading delta {short(node)}: {exc}", "manifest")
        for mnode, revs in sorted(mflinkrevs.items(), key=lambda kv: kv[1][0]):
            for c in revs:
                self.err(c, f"changeset refers to unknown revision {short(mnode)}", "manifest")

        self.progress("crosschecking files in changesets and manifests")
        if mf is not None:
            for f in sorted(filelinkrevs):
                if f not in filenodes:
                    self.err(filelinkrevs[f][0], "in changeset but not in manifest", _name(f))
        if cl is not None:
            for f in sorted(filenodes):
                if f not in filelinkrevs:
                    self.err(None, "in manifest but not in changeset", _name(f))

        self.progress("checking files")
        self.check_files(filenodes, filelinkrevs)
        return self.report

    def manifest_delta(self, mf: Revlog, rev: int) -> Iterator[tuple[bytes, bytes]]:
        """(path, file node) entries new in ``rev`` relative to its delta base, as Mercurial
        reads them for verification (every entry of every manifest is seen this way)."""
        base, delta = mf.storeddelta(rev)
        entries: list[tuple[bytes, bytes]] = []
        pos = 0
        try:
            while pos < len(delta):
                _start, _end, size = _HUNK.unpack_from(delta, pos)
                pos += 12
                data = delta[pos : pos + size]
                pos += size
                for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else [None]:
                    if line is None:
                        raise ValueError("hunk not line aligned")
                    path, sep, rest = line.partition(b"\0")
                    if not sep or len(rest) < 40:
                        raise ValueError("bad manifest line")
                    entries.append((path, bytes.fromhex(rest[:40].decode("ascii"))))
        except (ValueError, struct.error, UnicodeDecodeError):
            # Not line aligned (or not parseable): compare the full texts instead.
            new = _manifest_entries(mf.rawdata(rev))
            old = _manifest_entries(mf.rawdata(base)) if base >= 0 else {}
            entries = [(p, n) for p, n in new.items() if old.get(p) != n]
        for path, fnode in entries:
            if not path:
                raise RepositoryError("entry without name in manifest")
            yield path, fnode

    def check_files(
        self,
        filenodes: dict[bytes, dict[bytes, int | None]],
        filelinkrevs: dict[bytes, list[int]],
    ) -> None:
        repo = self.repo
        svfs = repo.svfs
        opts = repo.revlog_options
        fncache = svfs.fncache
        storefiles: set[bytes] = set()
        if fncache is not None:
            for name in fncache:
                if name.startswith(b"data/") and svfs.size(name) > 0:
                    storefiles.add(name)
        files = sorted(set(filenodes) | set(filelinkrevs))
        revisions = 0
        for f in files:
            name = _name(f)
            linkrevs = filelinkrevs.get(f, [])
            lr0 = linkrevs[0] if linkrevs else None
            fl = self.open_revlog(partial(Filelog, svfs, f, **opts), name)
            if fl is None:
                continue
            for suffix in (b".i", b".d"):
                ff = b"data/" + f + suffix
                if suffix == b".d" and (fl.inline or not svfs.exists(ff)):
                    continue
                if fncache is not None:
                    if ff in storefiles:
                        storefiles.discard(ff)
                    elif ff not in fncache and svfs.exists(ff):
                        self.warn(f" warning: revlog '{_name(ff)}' not in fncache!")
            if not len(fl):
                self.err(lr0, f"empty or missing {name}")
                continue
            self.check_sizes(fl, name)
            expected_links = set(linkrevs)
            known = filenodes.get(f)
            for rev, node, lr, text in self.check_revisions(
                fl, fl.indexfile, _constant(expected_links), name
            ):
                revisions += 1
                if known is not None:
                    if node not in known:
                        self.err(lr, f"{short(node)} not in manifests", name)
                    else:
                        del known[node]
                if text is not None:
                    self.check_rename(fl, rev, node, lr, name, text)
            if known:
                for node, lr in sorted(known.items(), key=lambda kv: (kv[1] or -1, kv[0])):
                    self.err(lr, f"manifest refers to unknown revision {short(node)}", name)
        for orphan in sorted(storefiles):
            self.warn(f"warning: orphan data file '{_name(orphan)}'")
        self.report.files = len(files)
        self.report.changes = revisions

    def check_rename(
        self, fl: Filelog, rev: int, node: bytes, lr: int | None, name: str, text: bytes
    ) -> None:
        """A copy's source (``copy``/``copyrev`` metadata, p1 null, spec §4.3) must be an
        existing revision of an existing filelog."""
        if fl.parentrevs(rev)[0] != -1 or not text.startswith(b"\x01\n"):
            return
        try:
            meta = parsemeta(text)[0] or {}
            if b"copy" not in meta or b"copyrev" not in meta:
                return
            src = meta[b"copy"]
            try:
                srcnode = bytes.fromhex(meta[b"copyrev"].decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                raise RepositoryError(f"bad copyrev {meta[b'copyrev']!r}") from None
            fl2 = self.repo.file(src)
            if not len(fl2):
                source = f"{_name(src)}:{short(srcnode)}"
                self.err(lr, f"empty or missing copy source revlog {source}", name)
            elif srcnode != NULLID:
                fl2.rev(srcnode)
        except HgwireError as exc:
            self.err(lr, f"checking rename of {short(node)}: {exc}", name)


def _constant(value: set[int]) -> LinkrevsFn:
    return lambda _rev, _node: value


def _name(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


def _manifest_entries(text: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for line in text.split(b"\n"):
        if line:
            path, _sep, rest = line.partition(b"\0")
            out[path] = bytes.fromhex(rest[:40].decode("ascii"))
    return out


def verify(repo: Any, progress: Callable[[str], None] | None = None) -> VerifyReport:
    """Check ``repo`` (a :class:`~hgwire.repo.localrepo.Repository`) completely.

    ``progress`` receives the stage names as ``hg verify`` prints them.
    """
    return _Verifier(repo, progress).run()
