"""Persistent nodemap files of ``persistent-nodemap`` repositories (spec §3.8).

A non-inline changelog/manifest may have a *docket* ``<radix>.n`` naming a data file
``<radix>-<uid>.nd`` that holds a 16-ary trie of node→rev (blocks of 16 ``>l``: -1 empty,
``>= 0`` child block number, ``<= -2`` revision ``-(v + 2)``; children before parents, the
root block last). The docket is trusted only if ``tip_rev`` is in the index and its node
matches ``tip_node``.

Choice made for writing (checked with hg 6.0 and 7.2.4, see ``tests/repo/test_revlog_interop.py``):
hgwire never reads the nodemap (its own lazy map is enough), and on the first append to a
revlog in a transaction it **deletes the docket** (``invalidate``). Mercurial then treats
the nodemap as absent: it reads, verifies and ``debugnodemap --check`` cleanly, and its next
transaction writes a fresh docket. Keeping a stale docket would be riskier (older data
files are shared with concurrent readers and Mercurial's incremental update assumes its
own bookkeeping), and rewriting the trie on every append would cost O(revisions) each time.
For a caller that wants the accelerator back without waiting for Mercurial, :func:`persist`
writes a complete, fresh docket + data file (new uid) for a revlog — a full rebuild, meant
for the end of a transaction.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hgwire.repo.vfs import VFS

if TYPE_CHECKING:
    from hgwire.repo.revlog import Revlog

ONDISK_VERSION = 1
S_VERSION = struct.Struct(">B")
S_HEADER = struct.Struct(">BQQQQ")
S_BLOCK = struct.Struct(">16l")
NO_ENTRY = -1


@dataclass
class Docket:
    """The content of a ``<radix>.n`` file."""

    uid: bytes
    tip_rev: int
    tip_node: bytes
    data_length: int
    data_unused: int = 0

    def serialize(self) -> bytes:
        return b"".join(
            [
                S_VERSION.pack(ONDISK_VERSION),
                S_HEADER.pack(
                    len(self.uid),
                    self.tip_rev,
                    self.data_length,
                    self.data_unused,
                    len(self.tip_node),
                ),
                self.uid,
                self.tip_node,
            ]
        )


def docket_path(radix: str) -> str:
    return radix + ".n"


def data_path(radix: str, uid: bytes) -> str:
    return f"{radix}-{uid.decode('ascii')}.nd"


def parse_docket(data: bytes) -> Docket | None:
    """A docket, or None for an empty, unknown-version or truncated one (= no nodemap)."""
    if len(data) < S_VERSION.size + S_HEADER.size or data[0] != ONDISK_VERSION:
        return None
    uid_size, tip_rev, length, unused, node_size = S_HEADER.unpack_from(data, 1)
    pos = 1 + S_HEADER.size
    if len(data) < pos + uid_size + node_size:
        return None
    uid = data[pos : pos + uid_size]
    tip_node = data[pos + uid_size : pos + uid_size + node_size]
    return Docket(uid, tip_rev, tip_node, length, unused)


def read_docket(opener: VFS, radix: str) -> Docket | None:
    return parse_docket(opener.tryread(docket_path(radix)))


def invalidate(opener: VFS, radix: str) -> None:
    """Delete the docket so Mercurial ignores the (now stale) nodemap and rebuilds it."""
    if opener.exists(docket_path(radix)):
        opener.unlink(docket_path(radix))


def build_trie(nodes: list[bytes]) -> bytes:
    """The ``.nd`` data for ``nodes`` (index order): blocks, children first, root last."""
    # A block is a list of 16 slots: None, a rev (int), or a child block (list).
    root: list[object] = [None] * 16

    def insert(block: list[object], level: int, rev: int) -> None:
        node = nodes[rev]
        while True:
            digit = (node[level // 2] >> (4 if level % 2 == 0 else 0)) & 0xF
            slot = block[digit]
            if slot is None:
                block[digit] = rev
                return
            if isinstance(slot, list):
                block = slot
                level += 1
                continue
            assert isinstance(slot, int)
            other = slot
            new: list[object] = [None] * 16
            block[digit] = new
            insert(new, level + 1, other)
            block = new
            level += 1

    for rev in range(len(nodes)):
        insert(root, 0, rev)

    out: list[bytes] = []

    def dump(block: list[object]) -> int:
        values = []
        for slot in block:
            if slot is None:
                values.append(NO_ENTRY)
            elif isinstance(slot, list):
                values.append(dump(slot))
            else:
                assert isinstance(slot, int)
                values.append(-(slot + 2))
        out.append(S_BLOCK.pack(*values))
        return len(out) - 1

    dump(root)
    return b"".join(out)


def lookup(data: bytes, node: bytes) -> int | None:
    """The rev the trie in ``data`` maps ``node``'s prefix to (caller checks the node)."""
    if not data:
        return None
    block = len(data) // S_BLOCK.size - 1
    for level in range(40):
        digit = (node[level // 2] >> (4 if level % 2 == 0 else 0)) & 0xF
        v: int = S_BLOCK.unpack_from(data, block * S_BLOCK.size)[digit]
        if v == NO_ENTRY:
            return None
        if v >= 0:
            block = v
            continue
        return -(v + 2)
    return None


def persist(revlog: Revlog) -> Docket:
    """Write a complete fresh nodemap for ``revlog`` (non-inline, non-empty) and its docket.

    The data file gets a new uid and is fully written before the docket is atomically
    replaced, so a concurrent reader sees the old or the new nodemap; older ``.nd`` files
    of this revlog are removed afterwards.
    """
    if revlog.inline or not len(revlog):
        raise ValueError("inline or empty revlogs have no persistent nodemap")
    opener = revlog.opener
    old = read_docket(opener, revlog.radix)
    nodes = [revlog.node(r) for r in revlog]
    data = build_trie(nodes)
    uid = os.urandom(4).hex().encode("ascii")
    with opener(data_path(revlog.radix, uid), "wb") as fh:
        fh.write(data)
    docket = Docket(uid, len(revlog) - 1, nodes[-1], len(data))
    opener.atomic_write(docket_path(revlog.radix), docket.serialize())
    if old is not None and old.uid != uid:
        opener.unlink(data_path(revlog.radix, old.uid))
    return docket
