"""A minimal changeset writer for the crash tests, independent of the revlog module.

It appends real changesets (filelogs, then manifest, then changelog, spec §3.5/§7.3) with
full-text zlib chunks to inline or split revlog v1 files, journaling every file in the
hgwire transaction first, so that the only thing under test is the repository shell
(store vfs, fncache, journal, rollback). Histories are linear.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

from hgwire.repo.localrepo import Repository
from hgwire.repo.transaction import Transaction

ENTRY = struct.Struct(">Qiiiiii20s12x")
INLINE = 1 << 16
GENERALDELTA = 1 << 17
NULLID = b"\0" * 20


def _hash(text: bytes, p1: bytes, p2: bytes = NULLID) -> bytes:
    a, b = sorted((p1, p2))
    return hashlib.sha1(a + b + text).digest()


@dataclass
class RawRevlog:
    """Just enough of a revlog to append full texts: count, nodes, data end."""

    repo: Repository
    radix: str
    inline: bool
    nodes: list[bytes]
    chunks: list[tuple[int, int]]  # (position in the file holding data, length)

    @classmethod
    def load(cls, repo: Repository, radix: str) -> RawRevlog:
        data = repo.svfs.tryread(radix + ".i")
        if not data:
            return cls(repo, radix, True, [], [])
        inline = bool(struct.unpack(">I", data[:4])[0] & INLINE)
        nodes: list[bytes] = []
        chunks: list[tuple[int, int]] = []
        pos = 0
        while pos + 64 <= len(data):
            entry = ENTRY.unpack_from(data, pos)
            offset = 0 if not nodes else entry[0] >> 16
            nodes.append(entry[7])
            if inline:
                chunks.append((pos + 64, entry[1]))
                pos += 64 + entry[1]
            else:
                chunks.append((offset, entry[1]))
                pos += 64
        return cls(repo, radix, inline, nodes, chunks)

    def text(self, rev: int) -> bytes:
        name = self.radix + (".i" if self.inline else ".d")
        start, length = self.chunks[rev]
        with self.repo.svfs(name) as fh:
            fh.seek(start)
            chunk = fh.read(length)
        return zlib.decompress(chunk) if chunk[:1] == b"x" else chunk[1:]

    def dataend(self) -> int:
        if not self.nodes:
            return 0
        if self.inline:  # logical offset: data bytes only
            return sum(length for _, length in self.chunks)
        return self.chunks[-1][0] + self.chunks[-1][1]

    def append(self, tr: Transaction, text: bytes, linkrev: int, p1: bytes) -> bytes:
        node = _hash(text, p1)
        chunk = zlib.compress(text)
        rev = len(self.nodes)
        p1rev = self.nodes.index(p1) if p1 != NULLID else -1
        offset = self.dataend()
        flags = (offset << 16) if rev else ((1 | GENERALDELTA | INLINE) << 32)
        entry = ENTRY.pack(flags, len(chunk), len(text), rev, linkrev, p1rev, -1, node)
        index = self.radix + ".i"
        if self.inline:
            tr.add(index, self.repo.svfs.size(index))
            with self.repo.svfs(index, "ab") as fh:
                fh.write(entry + chunk)
            self.chunks.append((self.repo.svfs.size(index) - len(chunk), len(chunk)))
        else:
            datafile = self.radix + ".d"
            tr.add(datafile, self.repo.svfs.size(datafile))
            with self.repo.svfs(datafile, "ab") as fh:
                fh.write(chunk)
            tr.add(index, self.repo.svfs.size(index))
            with self.repo.svfs(index, "ab") as fh:
                fh.write(entry)
            self.chunks.append((offset, len(chunk)))
        self.nodes.append(node)
        return node


def parse_manifest(text: bytes) -> dict[bytes, bytes]:
    return dict(line.split(b"\0", 1) for line in text.splitlines())


def add_changesets(repo: Repository, tr: Transaction, count: int, tag: int) -> None:
    """Append ``count`` linear changesets: each edits ``common.txt`` and adds a file."""
    cl = RawRevlog.load(repo, "00changelog")
    ml = RawRevlog.load(repo, "00manifest")
    mf: dict[bytes, bytes] = {}
    if ml.nodes:
        mf = parse_manifest(ml.text(len(ml.nodes) - 1))
    for i in range(count):
        linkrev = len(cl.nodes)
        p1 = cl.nodes[-1] if cl.nodes else NULLID
        n = linkrev
        new = b"dir%d/File_%d_%d.txt" % (n % 3, n, tag)
        if n % 5 == 4:
            new = b"deep/" + b"VeryLongDirectoryName/" * 6 + b"f%d.txt" % n
        changed = [b"common.txt", new]
        for path in changed:
            fl = RawRevlog.load(repo, "data/" + path.decode() + "")
            old = bytes.fromhex(mf[path].decode()[:40]) if path in mf else NULLID
            body = b"revision %d of %s (tx %d, item %d)\n" % (n, path, tag, i) * (1 + n % 4)
            fnode = fl.append(tr, body, linkrev, old)
            mf[path] = fnode.hex().encode()
        mtext = b"".join(b"%s\0%s\n" % (p, mf[p]) for p in sorted(mf))
        mp1 = ml.nodes[-1] if ml.nodes else NULLID
        mnode = ml.append(tr, mtext, linkrev, mp1)
        ctext = b"%s\ntest <test@example.com>\n%d 0\n%s\n\nchange %d" % (
            mnode.hex().encode(),
            1700000000 + n,
            b"\n".join(sorted(changed)),
            n,
        )
        cl.append(tr, ctext, linkrev, p1)


def _noise(seed: bytes, size: int) -> bytes:
    """Deterministic incompressible bytes (grows a filelog past the inline limit)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + b"%d" % counter).digest()
        counter += 1
    return bytes(out[:size])


def _grow(repo: Repository, entries: dict[bytes, tuple[bytes, bytes]], link: int) -> bytes:
    """The next ``big.bin``: the tail of the previous one plus 12 KiB of new noise."""
    previous = b""
    if b"big.bin" in entries:
        previous = repo.file(b"big.bin").read(entries[b"big.bin"][0])
    return previous[-36864:] + _noise(b"%d" % link, 12288)


def add_changesets_with_revlogs(repo: Repository, tr: Transaction, count: int, tag: int) -> None:
    """Like :func:`add_changesets` but through hgwire's changelog/manifest/filelog writers.

    Besides small edits, ``big.bin`` gets 12 KiB of fresh incompressible data each time (as a new
    revlog object each time, like independent callers),
    so its filelog is split from inline to ``.i`` + ``.d`` within some transaction (§3.4).
    """
    from hgwire.repo.manifest import Manifest

    cl, ml = repo.changelog, repo.manifestlog
    for i in range(count):
        link = len(cl)
        p1 = cl.tip() if link else NULLID
        mp1 = cl.read(p1).manifest if link else NULLID
        old = ml.read(mp1) if link else Manifest()
        entries = {path: (old[path][0], old.flags(path)) for path in old}
        files = {
            b"common.txt": b"line %d of tx %d\n" % (link, tag) * (1 + link % 7),
            b"Sub Dir/New_%d.txt" % link: b"new %d\n" % i,
            b"big.bin": _grow(repo, entries, link),
        }
        if link % 4 == 3:
            files[b"aux/" + b"Long Name " * 14 + b"%d" % link] = b"hashed\n"
        for path, content in files.items():
            fl = repo.file(path)
            parent = entries.get(path, (NULLID, b""))[0]
            entries[path] = (fl.add(content, None, tr, link, parent, NULLID), b"")
        mnode = ml.add(Manifest(entries), tr, link, mp1, NULLID)
        cl.add(
            mnode,
            sorted(files),
            b"change %d (tx %d)" % (link, tag),
            tr,
            p1,
            NULLID,
            b"test <test@example.com>",
            (1700000000 + link, 0),
        )
