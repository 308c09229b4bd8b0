"""Tags: global tags from ``.hgtags`` across heads, local tags, and ``tip``.

Storage spec §6.4. ``.hgtags`` holds ``<40 hex node> <name>`` lines; within one file a later
line for a name overrides earlier ones and keeps them as that name's history; a ``nullid``
value deletes the tag. Global tags combine the ``.hgtags`` of every head, oldest head
first (each distinct file revision once): when two heads disagree, the newer head's value
wins unless the older value supersedes it, i.e. the older history contains the newer
value and the newer history does not contain the older one (or is shorter). Tags whose
value is ``nullid`` or a node unknown to the changelog are dropped; ``tip`` is added.
These rules follow what Mercurial 6.0 and 7.2 compute.

A server asks per request: :func:`tags` remembers its last answer per store, valid while
the changelog length, tip node, visible set and ``localtags`` are the same (the inputs:
``.hgtags`` revisions are named by the heads' manifests).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from hgwire.errors import LookupNodeError, RepositoryError
from hgwire.repo import dagops
from hgwire.repo.dagops import DAG
from hgwire.repo.store import store_key

NULLID = b"\0" * 20

#: name -> (node, older nodes of that name, oldest first)
TagHistory = dict[bytes, tuple[bytes, list[bytes]]]


def parse(data: bytes, warn: Callable[[str], None] | None = None) -> TagHistory:
    """One ``.hgtags``/``localtags`` text: name -> (last node, earlier nodes in file order).

    Lines that do not parse are skipped (Mercurial only reports them in debug output).
    """
    hist: dict[bytes, list[bytes]] = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line:
            continue
        nodehex, sep, name = line.partition(b" ")
        name = name.strip()
        try:
            if not sep or len(nodehex) != 40:
                raise ValueError
            node = bytes.fromhex(nodehex.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            if warn is not None:
                warn(f"line {lineno}: cannot parse tag entry {line!r}")
            continue
        hist.setdefault(name, []).append(node)
    return {name: (nodes[-1], nodes[:-1]) for name, nodes in hist.items()}


def update(filetags: TagHistory, alltags: TagHistory) -> None:
    """Merge one file's tags into ``alltags`` (Mercurial's precedence rule)."""
    for name, (anode, ahist) in filetags.items():
        if name not in alltags:
            alltags[name] = (anode, list(ahist))
            continue
        bnode, bhist = alltags[name]
        ahist = list(ahist)
        if bnode != anode and anode in bhist and (bnode not in ahist or len(bhist) > len(ahist)):
            anode = bnode
        ahist.extend(n for n in bhist if n not in ahist)
        alltags[name] = (anode, ahist)


def hgtags_filenode(repo: Any, rev: int) -> bytes | None:
    """The ``.hgtags`` file node in the manifest of changeset ``rev`` (None if absent).

    Looks the entry up in the raw manifest text (spec §4.2: ``<path>\\0<hex>``, sorted
    lines; ``.hgtags`` sorts near the top) instead of parsing the whole manifest.
    """
    mnode = repo.changelog.read(rev).manifest
    if mnode == NULLID:
        return None
    text = bytes(repo.manifestlog.revision(mnode))
    key = b".hgtags\0"
    if text.startswith(key):
        start = len(key)
    else:
        pos = text.find(b"\n" + key)
        if pos < 0:
            return None
        start = pos + 1 + len(key)
    try:
        return bytes.fromhex(text[start : start + 40].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise RepositoryError(f"manifest {mnode.hex()}: bad .hgtags entry") from None


def findglobaltags(repo: Any, heads: Iterable[int]) -> TagHistory:
    """Global tags from the ``.hgtags`` of ``heads`` (revisions, any order)."""
    fnodes: list[bytes] = []
    seen: set[bytes] = set()
    for head in sorted(h for h in heads if h >= 0):  # oldest to newest
        fnode = hgtags_filenode(repo, head)
        if fnode is not None and fnode not in seen:
            seen.add(fnode)
            fnodes.append(fnode)
    alltags: TagHistory = {}
    if not fnodes:
        return alltags
    fl = repo.file(b".hgtags")
    for fnode in fnodes:
        update(parse(fl.read(fnode)), alltags)
    return alltags


#: (store, local) -> (changelog length, tip node, visible set, localtags, answer)
_CACHE: dict[tuple[str, bool], tuple[int, bytes, bytes | None, bytes, dict[bytes, bytes]]] = {}
_CACHE_MAX = 16
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every remembered answer."""
    with _CACHE_LOCK:
        _CACHE.clear()


def tags(
    repo: Any,
    dag: DAG | None = None,
    visible: bytearray | bytes | None = None,
    local: bool = True,
) -> dict[bytes, bytes]:
    """Tag name -> node as ``hg tags`` shows them for the revisions in ``visible`` (all
    when None): global tags of the visible heads, ``.hg/localtags`` when ``local``, and
    ``tip`` (the highest visible revision)."""
    cl = repo.changelog
    if dag is None:
        dag = DAG.from_storage(cl)
    n = len(dag)
    localdata = repo.vfs.tryread("localtags") if local else b""
    state = (n, cl.node(n - 1) if n else b"", None if visible is None else bytes(visible[:n]))
    key = store_key(repo)
    hit = _CACHE.get((key, local)) if key is not None else None
    if hit is not None and hit[:4] == (*state, localdata):
        return dict(hit[4])
    heads = dagops.headrevs(dag) if visible is None else dagops.headrevs_filtered(dag, visible)
    alltags = findglobaltags(repo, heads)
    if local:
        update(parse(localdata), alltags)
    out: dict[bytes, bytes] = {}
    for name, (node, _hist) in alltags.items():
        if node == NULLID:
            continue
        try:
            rev = cl.rev(node)
        except LookupNodeError:
            continue
        if rev >= n or (visible is not None and not visible[rev]):
            continue
        out[name] = node
    tiprev = n - 1
    if visible is not None:
        while tiprev >= 0 and not visible[tiprev]:
            tiprev -= 1
    out[b"tip"] = cl.node(tiprev) if tiprev >= 0 else NULLID
    if key is not None:
        with _CACHE_LOCK:
            _CACHE.pop((key, local), None)
            _CACHE[(key, local)] = (*state, localdata, dict(out))
            while len(_CACHE) > _CACHE_MAX:
                del _CACHE[next(iter(_CACHE))]
    return out


def tags_by_node(tagmap: dict[bytes, bytes]) -> dict[bytes, list[bytes]]:
    """node -> sorted tag names (for log output)."""
    out: dict[bytes, list[bytes]] = {}
    for name, node in tagmap.items():
        out.setdefault(node, []).append(name)
    for names in out.values():
        names.sort()
    return out
