"""Local repository commands: ``init``, ``verify``, ``log`` and ``debugindex``.

hgwire is server-side: these commands work on a repository's store and never touch a
working directory (``init`` creates none; there is no ``.`` revision). Output follows
Mercurial's own layout (``hg log``, ``hg verify``, ``hg debugindex`` of 6.0) so the two can
be compared line by line; ``log`` adds a ``phase:`` line to every changeset (Mercurial
prints it with ``--debug`` only).
"""

from __future__ import annotations

import argparse
import codecs
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from hgwire.errors import AbortError, LookupNodeError, RepositoryError
from hgwire.repo import bookmarks as bookmod
from hgwire.repo import branchmap, dagops
from hgwire.repo import phases as phasemod
from hgwire.repo import tags as tagsmod
from hgwire.repo.dagops import DAG
from hgwire.repo.localrepo import Repository

NULLID = b"\0" * 20
SERVER_SIDE = (
    "hgwire is a server-side tool: repositories have no working directory and files are "
    "never checked out."
)


def _out() -> IO[bytes]:
    return sys.stdout.buffer


# ---------------------------------------------------------------------------------------
# Revision lookup


@dataclass
class RepoView:
    """A repository with the derived data the commands need, computed once."""

    repo: Repository
    dag: DAG = field(init=False)
    _cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dag = DAG.from_storage(self.repo.changelog)

    @property
    def phases(self) -> phasemod.PhaseCache:
        if "phases" not in self._cache:
            self._cache["phases"] = phasemod.PhaseCache.load(self.repo, self.dag)
        pc: phasemod.PhaseCache = self._cache["phases"]
        return pc

    @property
    def bookmarks(self) -> bookmod.Bookmarks:
        if "bookmarks" not in self._cache:
            self._cache["bookmarks"] = bookmod.Bookmarks(self.repo)
        bm: bookmod.Bookmarks = self._cache["bookmarks"]
        return bm

    @property
    def tags(self) -> dict[bytes, bytes]:
        if "tags" not in self._cache:
            self._cache["tags"] = tagsmod.tags(self.repo, self.dag)
        tagmap: dict[bytes, bytes] = self._cache["tags"]
        return tagmap

    @property
    def branchmap(self) -> branchmap.BranchMap:
        if "branchmap" not in self._cache:
            self._cache["branchmap"] = branchmap.for_repo(self.repo, self.dag)
        bm: branchmap.BranchMap = self._cache["branchmap"]
        return bm

    def lookup(self, symbol: str) -> int:
        """One revision from a symbol, in Mercurial's order: revision number, full hex
        node, bookmark, tag, branch name (its tip), unique hex prefix; ``null``."""
        cl = self.repo.changelog
        n = len(cl)
        if symbol == "null":
            return -1
        if symbol == ".":
            raise AbortError("'.' needs a working directory; hgwire has none")
        try:
            rev = int(symbol)
            if str(rev) != symbol:
                raise ValueError
            if rev < 0:
                rev += n
            if 0 <= rev < n:
                return rev
        except ValueError:
            pass
        if len(symbol) == 40:
            try:
                return int(cl.rev(bytes.fromhex(symbol)))
            except (ValueError, LookupNodeError):
                pass
        name = symbol.encode("utf-8", "surrogateescape")
        node = self.bookmarks.get(name)
        if node is None:
            node = self.tags.get(name)
        if node is not None:
            return int(cl.rev(node))
        if name in self.branchmap:
            return self.branchmap.branchtip(name)
        return self._prefix(symbol)

    def _prefix(self, symbol: str) -> int:
        try:
            if not symbol or len(symbol) > 40:
                raise ValueError
            int(symbol, 16)
        except ValueError:
            raise AbortError(f"unknown revision '{symbol}'") from None
        cl = self.repo.changelog
        prefix = symbol.lower()
        matches = [r for r in range(len(cl)) if cl.node(r).hex().startswith(prefix)]
        if not matches:
            raise AbortError(f"unknown revision '{symbol}'")
        if len(matches) > 1:
            raise AbortError(f"ambiguous identifier '{symbol}'")
        return matches[0]

    def revs(self, spec: str) -> list[int]:
        """Revisions of ``spec``: a symbol, ``A:B`` (numeric range, either direction,
        ends optional) or ``A::B`` (descendants of A that are ancestors of B)."""
        if "::" in spec:
            a, b = spec.split("::", 1)
            roots = [self.lookup(a)] if a else [0]
            heads = [self.lookup(b)] if b else dagops.headrevs(self.dag)
            return dagops.dagrange(self.dag, roots, heads)
        if ":" in spec and spec not in self.bookmarks and spec.encode() not in self.tags:
            a, b = spec.split(":", 1)
            start = self.lookup(a) if a else 0
            end = self.lookup(b) if b else len(self.dag) - 1
            step = 1 if end >= start else -1
            return [r for r in range(start, end + step, step) if r >= 0]
        return [self.lookup(spec)]


# ---------------------------------------------------------------------------------------
# log


def datestr(when: float, tz: int) -> str:
    """Mercurial's default date format: local time of the committer and its offset."""
    t = time.gmtime(int(when) - tz)
    sign = "-" if tz > 0 else "+"
    minutes = abs(tz) // 60
    hours, minutes = divmod(minutes, 60)
    return time.strftime("%a %b %d %H:%M:%S %Y", t) + f" {sign}{hours:02d}{minutes:02d}"


def _escape(value: bytes) -> bytes:
    escaped: bytes = codecs.escape_encode(value)[0]
    return escaped


class LogPrinter:
    """Formats changesets like ``hg log`` (default, ``-v`` and ``--debug`` modes)."""

    def __init__(self, view: RepoView, debug: bool = False, verbose: bool = False) -> None:
        self.view = view
        self.debug = debug
        self.verbose = verbose or debug
        self.cl = view.repo.changelog
        self.tagsbynode = tagsmod.tags_by_node(view.tags)
        self._mcache: dict[bytes, bytes] = {}

    def _id(self, rev: int) -> bytes:
        node = self.cl.node(rev) if rev >= 0 else NULLID
        shown = node.hex() if self.debug else node.hex()[:12]
        return b"%d:%s" % (rev, shown.encode())

    def format(self, rev: int) -> bytes:
        view, cl = self.view, self.cl
        entry = cl.read(rev)
        node = cl.node(rev) if rev >= 0 else NULLID
        lines: list[bytes] = [b"changeset:   " + self._id(rev)]
        branch = entry.branch
        if branch != b"default":
            lines.append(b"branch:      " + branch)
        for name in view.bookmarks.names_for(node):
            lines.append(b"bookmark:    " + name)
        for name in self.tagsbynode.get(node, []):
            lines.append(b"tag:         " + name)
        lines.append(b"phase:       " + phasemod.PHASE_NAMES[view.phases.phase(rev)].encode())
        p1, p2 = view.dag.parentrevs(rev) if rev >= 0 else (-1, -1)
        if self.debug or p2 != -1:
            parents = [p1, p2]
        elif p1 < rev - 1:
            parents = [p1]
        else:
            parents = []
        for p in parents:
            lines.append(b"parent:      " + self._id(p))
        if self.debug:
            mrev = self._manifest_rev(entry.manifest)
            lines.append(b"manifest:    %d:%s" % (mrev, entry.manifest.hex().encode()))
        lines.append(b"user:        " + entry.user)
        lines.append(b"date:        " + datestr(*entry.date).encode())
        if self.debug:
            modified, added, removed = self._status(entry.files, entry.manifest, p1, p2)
            for label, files in (
                (b"files:       ", modified),
                (b"files+:      ", added),
                (b"files-:      ", removed),
            ):
                if files:
                    lines.append(label + b" ".join(files))
        elif self.verbose and entry.files:
            lines.append(b"files:       " + b" ".join(entry.files))
        if self.debug:
            extra = dict(entry.extra)
            extra.setdefault(b"branch", b"default")
            for key in sorted(extra):
                lines.append(b"extra:       %s=%s" % (key, _escape(extra[key])))
        description = entry.description.strip()
        if self.verbose:
            if description:
                lines.append(b"description:")
                lines.append(description)
                lines.append(b"")
        elif description:
            lines.append(b"summary:     " + description.splitlines()[0])
        return b"\n".join(lines) + b"\n\n"

    def _manifest_rev(self, mnode: bytes) -> int:
        if mnode == NULLID:
            return -1
        try:
            return int(self._manifests().rev(mnode))
        except LookupNodeError:
            return -1

    def _mtext(self, mnode: bytes) -> bytes:
        """A manifest's raw text, with a small cache (a changeset and its parents)."""
        if mnode == NULLID:
            return b""
        cache = self._mcache
        text = cache.get(mnode)
        if text is None:
            text = bytes(self._manifests().revision(mnode))
            if len(cache) >= 8:
                del cache[next(iter(cache))]
            cache[mnode] = text
        return text

    def _manifests(self) -> Any:
        return self.view.repo.manifestlog

    def _status(
        self, files: list[bytes], mnode: bytes, p1: int, p2: int
    ) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """Files modified, added and removed among those the changeset lists, as
        Mercurial 7.2's ``log --debug`` derives them: added = in no parent, removed = not
        in the changeset (for merges: only if a parent had it), modified = the rest."""
        if not files:
            return [], [], []
        new = self._mtext(mnode)
        parents = [self._mtext(self.cl.read(p).manifest) for p in (p1, p2) if p >= 0]
        added = [f for f in files if not any(_has(m, f) for m in parents)]
        removed = [f for f in files if not _has(new, f) and f not in added]
        modified = [f for f in files if f not in added and f not in removed]
        return modified, added, removed


def _has(text: bytes, path: bytes) -> bool:
    """Whether a flat manifest text has an entry for ``path`` (no full parse needed)."""
    return text.startswith(path + b"\0") or (b"\n" + path + b"\0") in text


def cmd_log(args: argparse.Namespace) -> int:
    repo = Repository.open(args.repository)
    view = RepoView(repo)
    if args.rev:
        revs: list[int] = []
        for spec in args.rev:
            revs.extend(view.revs(spec))
        revs = list(dict.fromkeys(revs))  # several -r give their union, in order (as hg)
    else:
        revs = list(range(len(view.dag) - 1, -1, -1))
    if args.limit is not None:
        revs = revs[: args.limit]
    printer = LogPrinter(view, debug=args.debug, verbose=args.verbose)
    out = _out()
    for rev in revs:
        out.write(printer.format(rev))
    out.flush()
    return 0


# ---------------------------------------------------------------------------------------
# verify, init, debugindex


def cmd_verify(args: argparse.Namespace) -> int:
    from hgwire.repo.verify import verify

    repo = Repository.open(args.repository, recover=False)
    out = _out()

    def progress(stage: str) -> None:
        if not args.quiet:
            out.write(stage.encode() + b"\n")
            out.flush()

    report = verify(repo, progress)
    err = sys.stderr
    for problem in report.problems:
        err.write(problem.format() + "\n")
    summary = report.summary()
    if not args.quiet or report.problems:
        out.write(summary[0].encode() + b"\n")
    for line in summary[1:]:
        err.write(line + "\n")
    out.flush()
    return report.status


def cmd_init(args: argparse.Namespace) -> int:
    Repository.create(args.path, format=args.format)
    return 0


def _open_revlog(repo: Repository, args: argparse.Namespace) -> Any:
    if args.changelog:
        return repo.changelog
    if args.manifest:
        return repo.manifestlog
    if not args.file:
        raise AbortError("debugindex needs -c, -m or a FILE")
    rl = repo.file(args.file.encode("utf-8", "surrogateescape"))
    if not len(rl) and not repo.svfs.exists(rl.indexfile):
        raise RepositoryError(f"no filelog for {args.file}")
    return rl


def cmd_debugindex(args: argparse.Namespace) -> int:
    repo = Repository.open(args.repository)
    rl = _open_revlog(repo, args)
    width = 40 if args.debug else 12
    out = _out()
    out.write(b"   rev linkrev %s %s p2\n" % (b"nodeid".ljust(width), b"p1".ljust(width)))
    nodes = rl.node
    for rev in range(len(rl)):
        p1, p2 = rl.parentrevs(rev)
        ids = [(nodes(r) if r >= 0 else NULLID).hex()[:width].encode() for r in (rev, p1, p2)]
        out.write(b"%6d %7d %s %s %s\n" % (rev, rl.linkrev(rev), ids[0], ids[1], ids[2]))
    out.flush()
    return 0


# ---------------------------------------------------------------------------------------
# registration


def _add_repo_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-R",
        "--repository",
        default=".",
        metavar="PATH",
        help="repository root (or a directory inside it); default: current directory",
    )


def register(subparsers: Any) -> None:
    """Add ``init``, ``verify``, ``log`` and ``debugindex`` to the ``hgwire`` CLI."""
    add: Callable[..., argparse.ArgumentParser] = subparsers.add_parser

    p = add(
        "init",
        help="create a new repository (store only, no working directory)",
        description="Create an empty repository at PATH the way `hg init` does. " + SERVER_SIDE,
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument(
        "--format",
        choices=("6.0", "7.2"),
        default="7.2",
        help="on-disk format of that Mercurial release's `hg init` (default 7.2)",
    )
    p.set_defaults(func=cmd_init)

    p = add(
        "verify",
        help="check the integrity of a repository (like `hg verify`)",
        description="Check every revlog, hash, parent, linkrev and the consistency of "
        "changesets, manifests, file revisions and the fncache. Exits 1 when errors are "
        "found. " + SERVER_SIDE,
    )
    _add_repo_option(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    p.set_defaults(func=cmd_verify)

    p = add(
        "log",
        help="show changeset history (like `hg log`, with phases)",
        description="Show changesets, newest first, in `hg log`'s layout plus a phase line. "
        "REV may be a revision number (negative counts from the end), a full or unique "
        "prefix of a hex node, tip, null, a bookmark, tag or branch name, A:B or A::B. "
        + SERVER_SIDE,
    )
    _add_repo_option(p)
    p.add_argument("-r", "--rev", action="append", metavar="REV", help="revisions to show")
    p.add_argument("-l", "--limit", type=int, metavar="N", help="show at most N changesets")
    p.add_argument("-v", "--verbose", action="store_true", help="list files, full description")
    p.add_argument("--debug", action="store_true", help="all fields, like `hg log --debug`")
    p.set_defaults(func=cmd_log)

    p = add(
        "debugindex",
        help="dump a revlog index (like `hg debugindex`)",
        description="Print rev, linkrev, node and parents of every revision of the "
        "changelog (-c), the manifest (-m) or the filelog of FILE. " + SERVER_SIDE,
    )
    _add_repo_option(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("-c", "--changelog", action="store_true", help="the changelog")
    which.add_argument("-m", "--manifest", action="store_true", help="the manifest")
    p.add_argument("file", nargs="?", metavar="FILE", help="a tracked file's path")
    p.add_argument("--debug", action="store_true", help="full 40-digit nodes")
    p.set_defaults(func=cmd_debugindex)
