"""Mercurial 6.0's frame-protocol (v2) commands, served from hgwire storage.

Importing this module registers every v2 command of 6.0 in
:data:`~hgwire.commands.registry.REGISTRY` with 6.0's exact argument specs (wire spec
§8.2), so the capabilities descriptor built from the registry is 6.0's (§7.3). Each
command is a generator of the objects that follow ``{status: ok}`` (§3.3).

Differences from 6.0, all deliberate:

* Secret changesets are never served: they are unknown to ``changesetdata`` (also in
  ``changesetexplicit``), ``filesdata``, ``lookup`` (6.0's "filtered revision" error),
  and bookmarks on them are not listed (6.0's ``changesetdata`` leaks those).
* Arguments of the wrong type, malformed revision specifiers and unknown nodes give a
  command error before any output, where 6.0 fails with an internal (server) error.
* ``filesdata`` serves histories that remove files (6.0 aborts with "No such manifest
  entry", spec §8.5 step 4) and finds the file revisions from manifest deltas instead of
  rebuilding a full manifest per changeset. With ``haveparents``, a touched path whose
  manifest line equals its parent's is not re-sent (6.0 re-sends that file revision
  when the parent is on the client; the client already has it).
* Revision data is a stored delta when its base is a revision sent earlier in the
  response or (``haveparents``) a parent; otherwise a full text — never a delta computed
  on the fly (6.0 diffs against the previously sent revision, §8.9).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

from hgwire.commands import common
from hgwire.commands.registry import REGISTRY, Arg
from hgwire.errors import CommandError, LookupNodeError, RepositoryError
from hgwire.repo import dagops, mdiff
from hgwire.repo.manifest import manifest_lines
from hgwire.wire.cbor import IndefiniteBytes

if TYPE_CHECKING:
    from hgwire.commands.context import CommandContext
    from hgwire.repo.revlog import Revlog

NULLID = common.NULLID
NULLREV = common.NULLREV

#: The only framing media type 6.0 speaks (spec §7.3).
FRAMINGTYPE = b"application/mercurial-exp-framing-0006"
#: Path filter pattern kinds ``filesdata`` accepts (spec §8.5).
PATHFILTER_PREFIXES = (b"path:", b"rootfilesin:")
#: 6.0's ``localrepository.supportedformats``; ``rawrepoformats`` is the
#: intersection with the repository's requirements (spec §7.3).
SUPPORTED_FORMATS = frozenset(
    {
        b"revlogv1",
        b"generaldelta",
        b"treemanifest",
        b"exp-copies-sidedata-changeset",
        b"exp-revlogv2.2",
        b"exp-changelog-v2",
        b"sparserevlog",
        b"persistent-nodemap",
        b"bookmarksinstore",
        b"share-safe",
        b"dirstate-v2",
    }
)
#: ``rawstorefiledata`` reads and sends store files in pieces of this size (spec §8.7).
RAW_CHUNK = 131072
#: Progress is reported every this many items (and at the end).
PROGRESS_STEP = 1000

_CENSORED = 1 << 15
_REVLOG_MAIN_EXT = (b".i", b"i.tmpcensored")
_REVLOG_OTHER_EXT = (b".idx", b".d", b".dat", b".n", b".nd", b".sda", b"d.tmpcensored")
_REVLOG_VOLATILE_EXT = (b".n", b".nd")


# ---------------------------------------------------------------------------------------
# argument helpers


def _want(name: bytes, value: Any, kind: type | tuple[type, ...], what: bytes) -> None:
    """A command error when ``value`` (argument ``name``) is not of type ``kind``."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CommandError(b"%s must be %s", [name, what])


def _nodelist(name: bytes, value: Any) -> list[bytes]:
    _want(name, value, list, b"an array of nodes")
    for n in value:
        if not isinstance(n, bytes):
            raise CommandError(b"%s must be an array of nodes", [name])
    return list(value)


def _fields(value: Any) -> set[Any]:
    _want(b"fields", value, (set, frozenset), b"a set")
    return set(value)


def _progress(ctx: CommandContext, topic: bytes, pos: int, total: int | None) -> None:
    ctx.progress(topic, pos, total)


# ---------------------------------------------------------------------------------------
# revision specifiers (spec §8.8)


def resolve_revisions(view: common.ServedView, revisions: Any) -> list[tuple[bytes, int | None]]:
    """The ``(node, rev)`` pairs a ``revisions`` argument names, in order, each node
    once. ``rev`` is None for nodes of ``changesetexplicit`` that are not served (6.0
    passes those through; commands decide). Errors are command errors (6.0's texts)."""
    if not isinstance(revisions, list):
        raise CommandError(b"revisions must be defined as an array")
    seen: set[bytes] = set()
    out: list[tuple[bytes, int | None]] = []

    def add(node: bytes, rev: int | None) -> None:
        if node not in seen:
            seen.add(node)
            out.append((node, rev))

    for spec in revisions:
        if not isinstance(spec, dict):
            raise CommandError(b"revision specifier must be a map")
        if b"type" not in spec:
            raise CommandError(b"type key not present in revision specifier")
        typ = spec[b"type"]
        if typ == b"changesetexplicit":
            if b"nodes" not in spec:
                raise CommandError(b"nodes key not present in changesetexplicit revision specifier")
            for node in _nodelist(b"nodes", spec[b"nodes"]):
                add(node, view.rev(node))
        elif typ == b"changesetexplicitdepth":
            for key in (b"nodes", b"depth"):
                if key not in spec:
                    raise CommandError(
                        b"%s key not present in changesetexplicitdepth revision specifier",
                        [key],
                    )
            depth = spec[b"depth"]
            _want(b"depth", depth, int, b"an integer")
            revs = [_served_rev(view, n) for n in _nodelist(b"nodes", spec[b"nodes"])]
            for rev in _ancestors_depth(view.dag, revs, depth - 1):
                add(view.node(rev), rev)
        elif typ == b"changesetdagrange":
            for key in (b"roots", b"heads"):
                if key not in spec:
                    raise CommandError(
                        b"%s key not present in changesetdagrange revision specifier",
                        [key],
                    )
            roots = _nodelist(b"roots", spec[b"roots"])
            headnodes = _nodelist(b"heads", spec[b"heads"])
            if not headnodes:
                raise CommandError(b"heads key in changesetdagrange cannot be empty")
            common_revs = [r for r in (view.rev(n) for n in roots) if r is not None]
            head_revs = [_served_rev(view, n) for n in headnodes]
            for rev in dagops.findmissingrevs(view.dag, common_revs, head_revs):
                add(view.node(rev), rev)
        else:
            shown = typ if isinstance(typ, bytes) else repr(typ).encode()
            raise CommandError(b"unknown revision specifier type: %s", [shown])
    return out


def _served_rev(view: common.ServedView, node: bytes) -> int:
    rev = view.rev(node)
    if rev is None:
        raise CommandError(b"unknown node: %s", [node.hex().encode()])
    return rev


def _ancestors_depth(dag: dagops.DAG, revs: list[int], depth: int) -> list[int]:
    """``ancestors(revs, depth)``: ``revs`` and their ancestors at most ``depth``
    generations up (none for a negative depth), ascending."""
    if depth < 0:
        return []
    found = {r for r in revs if r >= 0}
    frontier = set(found)
    p1, p2 = dag.p1, dag.p2
    for _ in range(depth):
        nxt = set()
        for r in frontier:
            for p in (p1[r], p2[r]):
                if p >= 0 and p not in found:
                    found.add(p)
                    nxt.add(p)
        if not nxt:
            break
        frontier = nxt
    return sorted(found)


# ---------------------------------------------------------------------------------------
# revision emission (spec §8.4, §8.9)


def emit_revisions(
    rl: Revlog,
    revs: Sequence[int],
    fields: set[Any],
    haveparents: bool,
    linknode: Callable[[int], bytes] | None = None,
    progress: Callable[[], None] | None = None,
) -> Iterator[Any]:
    """The records of ``revs`` (ascending) of ``rl`` as ``filedata`` sends them.

    Data is the stored delta when its base was sent earlier in this call or, with
    ``haveparents``, is a parent; else the full text (censored revisions included).
    ``linknode`` is added when given and ``linknode`` is in ``fields``.
    """
    wantdata = b"revision" in fields
    wantparents = b"parents" in fields
    wantlink = linknode is not None and b"linknode" in fields
    node = rl.node
    sent: set[int] = set()
    for rev in revs:
        d: dict[bytes, Any] = {b"node": node(rev)}
        if wantparents:
            p1, p2 = rl.parentrevs(rev)
            d[b"parents"] = [node(p1), node(p2)]
        if wantlink:
            assert linknode is not None
            d[b"linknode"] = linknode(rev)
        if not wantdata:
            yield d
            if progress is not None:
                progress()
            continue
        base = rl.deltaparent(rev)
        usable = False
        if base != NULLREV and not rl.flags(rev) & _CENSORED:
            usable = base in sent or (haveparents and base in rl.parentrevs(rev))
            if usable and rl.flags(base) & _CENSORED:
                usable = False
        if usable:
            data = rl.storeddelta(rev)[1]
            d[b"deltabasenode"] = node(base)
            d[b"fieldsfollowing"] = [[b"delta", len(data)]]
        else:
            if base == NULLREV and not rl.flags(rev):
                # a stored full text: its chunk, without rebuilding or re-hashing
                data = rl.storeddelta(rev)[1][12:]
            else:
                data = rl.rawdata(rev)
            d[b"fieldsfollowing"] = [[b"revision", len(data)]]
        yield d
        yield data
        sent.add(rev)
        if progress is not None:
            progress()


def _record_emitter(ctx: CommandContext, topic: bytes, total: int) -> Callable[[], None]:
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] % PROGRESS_STEP == 0 or count[0] == total:
            ctx.progress(topic, count[0], total)

    return tick


# ---------------------------------------------------------------------------------------
# path filters (spec §8.5, §8.8)


def _normpat(pat: bytes) -> bytes:
    pat = posixpath.normpath(pat) if pat else b"."
    return b"" if pat in (b".", b"/") else pat.strip(b"/")


def path_matcher(pathfilter: Any) -> Callable[[bytes], bool] | None:
    """A predicate for ``filesdata``'s ``pathfilter`` (None: every path).

    ``path:d`` matches ``d`` and everything below it (``path:`` or ``path:.``: all);
    ``rootfilesin:d`` matches the files directly in ``d`` (empty: at the root).
    """
    if not pathfilter:
        return None
    _want(b"pathfilter", pathfilter, dict, b"a map")
    compiled: dict[bytes, list[tuple[bool, bytes]]] = {}
    for key in (b"include", b"exclude"):
        pats = pathfilter.get(key, [])
        _want(key, pats, list, b"an array of patterns")
        out = []
        for pat in pats:
            if not isinstance(pat, bytes) or not pat.startswith(PATHFILTER_PREFIXES):
                shown = pat if isinstance(pat, bytes) else repr(pat).encode()
                raise CommandError(
                    b"%s pattern must begin with `path:` or `rootfilesin:`; got %s",
                    [key, shown],
                )
            if pat.startswith(b"path:"):
                out.append((False, _normpat(pat[5:])))
            else:
                out.append((True, _normpat(pat[12:])))
        compiled[key] = out
    include, exclude = compiled[b"include"], compiled[b"exclude"]

    def hit(path: bytes, pats: list[tuple[bool, bytes]]) -> bool:
        for rootfilesin, d in pats:
            if rootfilesin:
                slash = path.rfind(b"/")
                if (path[:slash] if slash >= 0 else b"") == d:
                    return True
            elif not d or path == d or path.startswith(d + b"/"):
                return True
        return False

    def match(path: bytes) -> bool:
        if include and not hit(path, include):
            return False
        return not (exclude and hit(path, exclude))

    return match


# ---------------------------------------------------------------------------------------
# file revisions introduced by changesets (filesdata step 3, spec §8.5)


def _changeset_header(text: bytes) -> tuple[bytes, list[bytes]]:
    """``(manifest node, files)`` of a changelog entry text."""
    sep = text.find(b"\n\n")
    lines = (text[:sep] if sep >= 0 else text).split(b"\n")
    try:
        mnode = bytes.fromhex(lines[0].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise RepositoryError("bad manifest node in changelog entry") from None
    return mnode, lines[3:]


def _manifest_lines(data: bytes) -> dict[bytes, bytes] | None:
    """``path -> hex file node`` of whole manifest lines (None when malformed)."""
    lines = manifest_lines(data)
    return None if lines is None else dict(lines)


def _find_line(text: bytes, path: bytes) -> bytes | None:
    """The hex file node of ``path`` in a manifest text, or None."""
    needle = path + b"\0"
    if text.startswith(needle):
        pos = 0
    else:
        pos = text.find(b"\n" + needle)
        if pos < 0:
            return None
        pos += 1
    start = pos + len(needle)
    return text[start : start + 40]


class FileRevisionCollector:
    """Which file revisions a set of changesets brings, and the changeset that
    introduces each (the first in processing order), as 6.0's ``filesdata`` computes
    them: with ``haveparents``, the files each changeset touched (its changelog
    ``files``) at their manifest version; otherwise every file of every manifest.

    Manifest contents come from the stored manifest deltas: a delta against an already
    covered manifest (or a parent's) holds every line that can be new; a full text is
    read only when that does not settle a path. Removed paths are skipped.
    """

    def __init__(
        self,
        view: common.ServedView,
        haveparents: bool,
        match: Callable[[bytes], bool] | None,
    ) -> None:
        self.view = view
        self.repo = view.repo
        self.haveparents = haveparents
        self.match = match
        #: path -> {file node: introducing changeset node}
        self.fnodes: dict[bytes, dict[bytes, bytes]] = {}
        self._covered: set[int] = set()  # manifest revs whose every line is registered
        self._mrevs: dict[int, int] = {}  # changeset rev -> manifest rev

    def _mrev_of(self, crev: int) -> int:
        mrev = self._mrevs.get(crev)
        if mrev is None:
            if crev == NULLREV:
                return NULLREV
            mnode = _changeset_header(self.view.cl.revision(crev))[0]
            mrev = self.repo.manifestlog.rev(mnode)
            self._mrevs[crev] = mrev
        return mrev

    def _register(self, path: bytes, hexnode: bytes, linknode: bytes) -> None:
        try:
            fnode = bytes.fromhex(hexnode.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise RepositoryError(f"bad file node in manifest for {path!r}") from None
        known = self.fnodes.get(path)
        if known is None:
            self.fnodes[path] = {fnode: linknode}
        elif fnode not in known:
            known[fnode] = linknode

    def _delta_data(self, mrev: int, base: int) -> bytes | None:
        """The new lines of ``mrev``'s stored delta against ``base`` (the data of its
        hunks, whole lines), or None when that delta is not against ``base`` or its
        hunks do not hold whole lines."""
        stored, delta = self.repo.manifestlog.storeddelta(mrev)
        if stored != base:
            return None
        try:
            data = b"".join(h[2] for h in mdiff.hunks(delta))
        except mdiff.PatchError:
            return None
        if data and not data.endswith(b"\n"):
            return None
        return data

    def _delta_lines(self, mrev: int, base: int) -> dict[bytes, bytes] | None:
        """Lines inside the hunks of ``mrev``'s stored delta against ``base``."""
        data = self._delta_data(mrev, base)
        return None if data is None else _manifest_lines(data)

    def _full_lines(self, mrev: int) -> dict[bytes, bytes]:
        lines = _manifest_lines(self.repo.manifestlog.rawdata(mrev))
        if lines is None:
            raise RepositoryError(f"00manifest: revision {mrev} is not a valid manifest")
        return lines

    def add(self, crev: int) -> None:
        """Register what changeset ``crev`` (served) introduces."""
        text = self.view.cl.revision(crev)
        mnode, files = _changeset_header(text)
        if mnode == NULLID:
            self._mrevs[crev] = NULLREV
            return
        ml = self.repo.manifestlog
        mrev = ml.rev(mnode)
        self._mrevs[crev] = mrev
        linknode = self.view.cl.node(crev)
        if self.haveparents:
            self._add_touched(crev, mrev, files, linknode)
        else:
            self._add_all(mrev, linknode)

    def _add_all(self, mrev: int, linknode: bytes) -> None:
        if mrev in self._covered:
            return
        base = self.repo.manifestlog.deltaparent(mrev)
        lines = None
        if base != NULLREV and base in self._covered:
            lines = self._delta_lines(mrev, base)
        if lines is None:
            lines = self._full_lines(mrev)
        match = self.match
        for path, hexnode in lines.items():
            if match is None or match(path):
                self._register(path, hexnode, linknode)
        self._covered.add(mrev)

    def _add_touched(self, crev: int, mrev: int, files: list[bytes], linknode: bytes) -> None:
        match = self.match
        touched = [p for p in files if match is None or match(p)]
        if not touched:
            return
        ml = self.repo.manifestlog
        base = ml.deltaparent(mrev)
        data = self._delta_data(mrev, base) if base != NULLREV else None
        if data is None:
            # a full text: a touched path it lacks was removed
            text = ml.rawdata(mrev)
            for p in touched:
                hexnode = _find_line(text, p)
                if hexnode is not None:
                    self._register(p, hexnode, linknode)
            return
        unresolved = []
        for p in touched:
            hexnode = _find_line(data, p)
            if hexnode is None:
                unresolved.append(p)
            else:
                self._register(p, hexnode, linknode)
        if not unresolved:
            return
        # Outside the delta's hunks a line equals the base's. When the base is a
        # parent's manifest, such a file revision is the parent's: already registered
        # or on the client (haveparents). Otherwise look the paths up in the text.
        p1, p2 = self.view.dag.parentrevs(crev)
        if base in (self._mrev_of(p1), self._mrev_of(p2)):
            return
        text = ml.rawdata(mrev)
        for p in unresolved:
            hexnode = _find_line(text, p)
            if hexnode is not None:
                self._register(p, hexnode, linknode)


# ---------------------------------------------------------------------------------------
# capabilities (spec §7.3)


def stream_allowed(ctx: CommandContext, view: common.ServedView | None = None) -> bool:
    """Whether stream clones (``rawstorefiledata``) may be served: ``server.uncompressed``
    and, when secret changesets exist, ``server.uncompressedallowsecret``."""
    if not ctx.config.uncompressed:
        return False
    if ctx.config.uncompressedallowsecret:
        return True
    if view is None:
        view = common.served(ctx.repo)
    return not view.hassecret()


def capabilities_map(ctx: CommandContext) -> dict[bytes, Any]:
    """The v2 capabilities structure (spec §7.3), built from the registry."""
    commands = {name: cmd.descriptor(ctx) for name, cmd in sorted(REGISTRY.v2commands(ctx).items())}
    caps: dict[bytes, Any] = {
        b"commands": commands,
        b"framingmediatypes": [FRAMINGTYPE],
        b"pathfilterprefixes": set(PATHFILTER_PREFIXES),
        b"rawrepoformats": sorted(ctx.repo.requirements & SUPPORTED_FORMATS),
    }
    targets = ctx.config.redirect_targets
    if targets:
        entries = []
        for target in targets:
            entry = {k: target[k] for k in (b"name", b"protocol", b"uris")}
            for key in (b"snirequired", b"tlsversions"):
                if key in target:
                    entry[key] = target[key]
            entries.append(entry)
        caps[b"redirect"] = {b"targets": entries, b"hashes": [b"sha256", b"sha1"]}
    return caps


@REGISTRY.v2command(b"capabilities")
def capabilities(ctx: CommandContext) -> Iterator[Any]:
    """The capabilities map (spec §7.3)."""
    yield capabilities_map(ctx)


# ---------------------------------------------------------------------------------------
# simple commands (spec §8.2)


@REGISTRY.v2command(b"branchmap")
def branchmap(ctx: CommandContext) -> Iterator[Any]:
    """Branch name -> head nodes of the served changesets."""
    yield common.branchmap(common.served(ctx.repo))


@REGISTRY.v2command(b"heads", args={b"publiconly": Arg("bool", default=lambda: False)})
def heads(ctx: CommandContext, publiconly: Any) -> Iterator[Any]:
    """Served heads (highest revision first); ``publiconly``: public heads."""
    _want(b"publiconly", publiconly, bool, b"a boolean")
    yield common.heads(common.served(ctx.repo), publiconly)


@REGISTRY.v2command(b"known", args={b"nodes": Arg("list", default=list)})
def known(ctx: CommandContext, nodes: Any) -> Iterator[Any]:
    """``0``/``1`` per node: whether it is a served changeset."""
    _want(b"nodes", nodes, list, b"an array of nodes")
    flags = common.known(common.served(ctx.repo), nodes)
    yield b"".join(b"1" if f else b"0" for f in flags)


@REGISTRY.v2command(b"listkeys", args={b"namespace": Arg("bytes", required=True)})
def listkeys(ctx: CommandContext, namespace: Any) -> Iterator[Any]:
    """A pushkey namespace (``{}`` when unknown)."""
    _want(b"namespace", namespace, bytes, b"a bytestring")
    yield common.listkeys(common.served(ctx.repo), namespace, ctx.config.publishing)


@REGISTRY.v2command(b"lookup", args={b"key": Arg("bytes", required=True)})
def lookup(ctx: CommandContext, key: Any) -> Iterator[Any]:
    """The node a symbol names; an unknown symbol raises
    :class:`~hgwire.errors.UnknownRevisionError`, which transports send as a server
    error (``error-response`` frame, as 6.0 does)."""
    _want(b"key", key, bytes, b"a bytestring")
    yield common.lookup(common.served(ctx.repo), key)


@REGISTRY.v2command(
    b"pushkey",
    args={
        b"namespace": Arg("bytes", required=True),
        b"key": Arg("bytes", required=True),
        b"old": Arg("bytes", required=True),
        b"new": Arg("bytes", required=True),
    },
    permission="push",
)
def pushkey(ctx: CommandContext, namespace: Any, key: Any, old: Any, new: Any) -> Iterator[Any]:
    """Apply a pushkey update (bookmarks, phases); yields True/False."""
    for name, value in ((b"namespace", namespace), (b"key", key), (b"old", old), (b"new", new)):
        _want(name, value, bytes, b"a bytestring")
    yield common.pushkey(ctx.repo, namespace, key, old, new)


# ---------------------------------------------------------------------------------------
# changesetdata (spec §8.3)


@REGISTRY.v2command(
    b"changesetdata",
    args={
        b"revisions": Arg("list", required=True),
        b"fields": Arg(
            "set",
            default=set,
            validvalues=frozenset({b"bookmarks", b"parents", b"phase", b"revision"}),
        ),
    },
)
def changesetdata(ctx: CommandContext, revisions: Any, fields: Any) -> Iterator[Any]:
    """Changeset records for the resolved revisions, then bookmarks elsewhere."""
    fields = _fields(fields)
    view = common.served(ctx.repo)
    resolved = resolve_revisions(view, revisions)
    if fields & {b"parents", b"phase", b"revision"}:
        for node, rev in resolved:
            if rev is None:
                raise CommandError(b"unknown node: %s", [node.hex().encode()])
    yield from _changesetdata(ctx, view, resolved, fields)


def _changesetdata(
    ctx: CommandContext,
    view: common.ServedView,
    resolved: list[tuple[bytes, int | None]],
    fields: set[Any],
) -> Iterator[Any]:
    cl = view.cl
    total = len(resolved)
    yield {b"totalitems": total}
    marks = common.bookmarks_by_node(view) if b"bookmarks" in fields else {}
    publishing = ctx.config.publishing
    wantparents = b"parents" in fields
    wantphase = b"phase" in fields
    wantrev = b"revision" in fields
    wantmarks = b"bookmarks" in fields
    p1s, p2s = view.dag.p1, view.dag.p2
    node_of = view.node
    for i, (node, rev) in enumerate(resolved, 1):
        d: dict[bytes, Any] = {b"node": node}
        if rev is not None:
            if wantparents:
                d[b"parents"] = (
                    [node_of(p1s[rev]), node_of(p2s[rev])] if rev >= 0 else [NULLID, NULLID]
                )
            if wantphase:
                d[b"phase"] = common.phase_name(view, rev, publishing) if rev >= 0 else b"public"
        if wantmarks and node in marks:
            d[b"bookmarks"] = marks.pop(node)
        if wantrev and rev is not None:
            text = cl.revision(rev) if rev >= 0 else b""
            d[b"fieldsfollowing"] = [[b"revision", len(text)]]
            yield d
            yield text
        else:
            yield d
        if i % PROGRESS_STEP == 0 or i == total:
            _progress(ctx, b"changesets", i, total)
    if wantmarks:
        for node in sorted(marks):
            yield {b"node": node, b"bookmarks": marks[node]}


# ---------------------------------------------------------------------------------------
# manifestdata, filedata, filesdata (spec §8.4-§8.6)


@REGISTRY.v2command(
    b"manifestdata",
    args={
        b"nodes": Arg("list", required=True),
        b"haveparents": Arg("bool", default=lambda: False),
        b"fields": Arg("set", default=set, validvalues=frozenset({b"parents", b"revision"})),
        b"tree": Arg("bytes", required=True),
    },
    extracapabilities=lambda ctx: {b"recommendedbatchsize": ctx.config.manifestdata_batchsize},
)
def manifestdata(
    ctx: CommandContext, nodes: Any, haveparents: Any, fields: Any, tree: Any
) -> Iterator[Any]:
    """Manifest revisions by node (root manifest only: hgwire has no tree manifests)."""
    fields = _fields(fields)
    _nodelist(b"nodes", nodes)
    _want(b"haveparents", haveparents, bool, b"a boolean")
    _want(b"tree", tree, bytes, b"a bytestring")
    ml = ctx.repo.manifestlog
    revs = []
    for node in nodes:
        rev = None
        if not tree and len(node) == 20 and node != NULLID:
            try:
                rev = ml.rev(node)
            except LookupNodeError:
                rev = None
        if rev is None:
            raise CommandError(b"unknown node: %s", [node])
        revs.append(rev)
    revs.sort()
    yield from _manifestdata(ctx, ml, revs, fields, haveparents)


def _manifestdata(
    ctx: CommandContext, ml: Revlog, revs: list[int], fields: set[Any], haveparents: bool
) -> Iterator[Any]:
    yield {b"totalitems": len(revs)}
    tick = _record_emitter(ctx, b"manifests", len(revs))
    yield from emit_revisions(ml, revs, fields, haveparents, progress=tick)


@REGISTRY.v2command(
    b"filedata",
    args={
        b"haveparents": Arg("bool", default=lambda: False),
        b"nodes": Arg("list", required=True),
        b"fields": Arg(
            "set", default=set, validvalues=frozenset({b"linknode", b"parents", b"revision"})
        ),
        b"path": Arg("bytes", required=True),
    },
)
def filedata(
    ctx: CommandContext, haveparents: Any, nodes: Any, fields: Any, path: Any
) -> Iterator[Any]:
    """Revisions of one file by node, in revision order."""
    fields = _fields(fields)
    _want(b"path", path, bytes, b"a bytestring")
    _nodelist(b"nodes", nodes)
    _want(b"haveparents", haveparents, bool, b"a boolean")
    repo = ctx.repo
    try:
        fl = repo.file(path)
        empty = len(fl) == 0
    except RepositoryError:
        empty = True
    if empty:
        raise CommandError(b"unknown file: %s", [path])
    view = common.served(repo) if b"linknode" in fields else None
    revs = []
    for node in nodes:
        try:
            rev = fl.rev(node) if node != NULLID else None
        except LookupNodeError:
            rev = None
        # the linknode of a revision only secret changesets introduced stays hidden
        if rev is None or (view is not None and not view.is_served(fl.linkrev(rev))):
            raise CommandError(b"unknown file node: %s", [node.hex().encode()])
        revs.append(rev)
    revs.sort()
    yield from _filedata(ctx, fl, revs, fields, haveparents, view)


def _filedata(
    ctx: CommandContext,
    fl: Revlog,
    revs: list[int],
    fields: set[Any],
    haveparents: bool,
    view: common.ServedView | None,
) -> Iterator[Any]:
    yield {b"totalitems": len(revs)}
    linknode = None
    if view is not None:
        cl = view.cl

        def linknode(rev: int) -> bytes:
            return cl.node(fl.linkrev(rev))

    yield from emit_revisions(fl, revs, fields, haveparents, linknode)


@REGISTRY.v2command(
    b"filesdata",
    args={
        b"haveparents": Arg("bool", default=lambda: False),
        b"fields": Arg(
            "set",
            default=set,
            validvalues=frozenset({b"firstchangeset", b"linknode", b"parents", b"revision"}),
        ),
        b"pathfilter": Arg("dict", default=lambda: None),
        b"revisions": Arg("list", required=True),
    },
    extracapabilities=lambda ctx: {b"recommendedbatchsize": ctx.config.filesdata_batchsize},
)
def filesdata(
    ctx: CommandContext, haveparents: Any, fields: Any, pathfilter: Any, revisions: Any
) -> Iterator[Any]:
    """The file revisions the given changesets introduce, grouped by path (sorted)."""
    fields = _fields(fields)
    _want(b"haveparents", haveparents, bool, b"a boolean")
    view = common.served(ctx.repo)
    resolved = resolve_revisions(view, revisions)
    match = path_matcher(pathfilter)
    revs = []
    for node, rev in resolved:
        if rev is None:
            raise CommandError(b"unknown node: %s", [node.hex().encode()])
        revs.append(rev)
    yield from _filesdata(ctx, view, revs, fields, haveparents, match)


def _filesdata(
    ctx: CommandContext,
    view: common.ServedView,
    revs: list[int],
    fields: set[Any],
    haveparents: bool,
    match: Callable[[bytes], bool] | None,
) -> Iterator[Any]:
    collector = FileRevisionCollector(view, haveparents, match)
    total = len(revs)
    for i, rev in enumerate(revs, 1):
        if rev >= 0:
            collector.add(rev)
        if i % PROGRESS_STEP == 0 or i == total:
            _progress(ctx, b"changesets", i, total)
    fnodes = collector.fnodes
    totalitems = sum(len(v) for v in fnodes.values())
    yield {b"totalitems": totalitems, b"totalpaths": len(fnodes)}
    tick = _record_emitter(ctx, b"files", totalitems)
    repo = ctx.repo
    for path in sorted(fnodes):
        links = fnodes[path]
        fl = repo.file(path)
        frevs = []
        for fnode in links:
            try:
                frevs.append(fl.rev(fnode))
            except LookupNodeError:
                raise RepositoryError(
                    f"data/{path.decode('utf-8', 'replace')}.i: missing file revision {fnode.hex()}"
                ) from None
        frevs.sort()
        yield {b"path": path, b"totalitems": len(frevs)}
        yield from emit_revisions(
            fl,
            frevs,
            fields,
            haveparents,
            lambda r, fl=fl, links=links: links[fl.node(r)],  # type: ignore[misc]
            tick,
        )


# ---------------------------------------------------------------------------------------
# rawstorefiledata (spec §8.7)


def _store_toplevel(storepath: str) -> list[tuple[bytes, str]]:
    """Top-level revlog files of the store in 6.0's ``topfiles`` order (by file kind
    then name, reversed): ``(name, path)``."""
    entries = []
    with os.scandir(storepath) as it:
        for de in it:
            if not de.is_file(follow_symlinks=False):
                continue
            name = os.fsencode(de.name)
            if name.endswith(_REVLOG_MAIN_EXT):
                kind = 2
            elif name.endswith(_REVLOG_OTHER_EXT):
                kind = 2049 | ((1 << 20) if name.endswith(_REVLOG_VOLATILE_EXT) else 0)
            else:
                continue
            entries.append((kind, name, de.path))
    entries.sort()
    entries.reverse()
    return [(name, path) for _kind, name, path in entries]


def _filechunks(fh: IO[bytes], size: int) -> Iterator[bytes]:
    """``size`` bytes of ``fh`` in :data:`RAW_CHUNK` pieces; closes ``fh``."""
    try:
        left = size
        while left > 0:
            data = fh.read(min(RAW_CHUNK, left))
            if not data:
                raise RepositoryError(f"{fh.name}: file shrank while being sent")
            left -= len(data)
            yield data
    finally:
        fh.close()


@REGISTRY.v2command(
    b"rawstorefiledata",
    args={b"files": Arg("list", required=True), b"pathfilter": Arg("list", default=lambda: None)},
    available=stream_allowed,
)
def rawstorefiledata(ctx: CommandContext, files: Any, pathfilter: Any) -> Iterator[Any]:
    """The changelog and/or manifest revlog files, raw (``pathfilter`` is ignored)."""
    if not stream_allowed(ctx):
        raise CommandError(b"stream clone is disabled")
    _want(b"files", files, list, b"an array")
    wanted = set(files)
    unsupported = wanted - {b"changelog", b"manifestlog"}
    if unsupported:
        shown = sorted(u if isinstance(u, bytes) else repr(u).encode() for u in unsupported)
        raise CommandError(b"unknown file type: %s", [b", ".join(shown)])
    prefixes = tuple(
        p
        for p, kind in ((b"00changelog", b"changelog"), (b"00manifest", b"manifestlog"))
        if kind in wanted
    )
    repo = ctx.repo
    opened: list[tuple[bytes, int, IO[bytes]]] = []
    try:
        # sizes and open handles under the lock: what is sent is one consistent state
        with repo.lock():
            storepath = str(repo.sharedpath / "store")
            for name, path in _store_toplevel(storepath):
                if not name.startswith(prefixes) or not prefixes:
                    continue
                fh = open(path, "rb")  # noqa: SIM115 - closed by _filechunks
                opened.append((name, os.fstat(fh.fileno()).st_size, fh))
    except BaseException:
        for _n, _s, ofh in opened:
            ofh.close()
        raise
    yield from _rawstorefiledata(opened)


def _rawstorefiledata(opened: list[tuple[bytes, int, IO[bytes]]]) -> Iterator[Any]:
    done = False
    try:
        yield {b"filecount": len(opened), b"totalsize": sum(s for _n, s, _f in opened)}
        for name, size, fh in opened:
            yield {b"location": b"store", b"path": name, b"size": size}
            yield IndefiniteBytes(_filechunks(fh, size))
        done = True
    finally:
        if not done:  # abandoned: nobody will read the files (else _filechunks closes)
            for _n, _s, fh in opened:
                fh.close()


__all__ = [
    "FileRevisionCollector",
    "capabilities_map",
    "emit_revisions",
    "path_matcher",
    "resolve_revisions",
    "stream_allowed",
]
