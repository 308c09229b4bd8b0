"""The embedded demo repository ``hgwire serve`` serves when given none.

Written once into ``~/.cache/hgwire/demo`` (``$HGWIRE_CACHE/demo``) with hgwire's own
storage writers: a few changesets on ``default`` and a named branch ``stable``, files in
directories, a binary file, a rename, a merge, a tag (``.hgtags``), a bookmark, and a
draft changeset at the tip (the others public).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hgwire.repo.bookmarks import Bookmarks
from hgwire.repo.dagops import DAG
from hgwire.repo.localrepo import Repository
from hgwire.repo.manifest import Manifest
from hgwire.repo.phases import DRAFT, PhaseCache

NULLID = b"\0" * 20
USER = b"hgwire demo <demo@hgwire.invalid>"
#: Bumped when the demo history changes (a new directory is written).
DEMO_VERSION = 1

Changes = dict[bytes, bytes | None]


def cache_dir() -> Path:
    """Where hgwire keeps its caches (``$HGWIRE_CACHE`` or ``~/.cache/hgwire``)."""
    env = os.environ.get("HGWIRE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hgwire"


def demo_path() -> Path:
    return cache_dir() / "demo"


class _Writer:
    """Commits through the revlog writers (filelogs, manifest, changelog)."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.when = 1700000000

    def commit(
        self,
        changes: Changes,
        desc: str,
        p1: bytes,
        p2: bytes = NULLID,
        branch: bytes | None = None,
        copies: dict[bytes, bytes] | None = None,
    ) -> bytes:
        repo = self.repo
        cl, ml = repo.changelog, repo.manifestlog
        parent = ml.read(cl.read(p1).manifest) if p1 != NULLID else Manifest()
        other = ml.read(cl.read(p2).manifest) if p2 != NULLID else Manifest()
        entries = {path: (parent[path][0], parent.flags(path)) for path in parent}
        for path in other:
            if path not in entries:
                entries[path] = (other[path][0], other.flags(path))
        link = len(cl)
        with repo.transaction(b"commit") as tr:
            for path, content in sorted(changes.items()):
                if content is None:
                    entries.pop(path, None)
                    continue
                fl = repo.file(path)
                fp1 = parent[path][0] if path in parent else NULLID
                fp2 = other[path][0] if path in other and p2 != NULLID else NULLID
                meta = None
                if copies and path in copies:
                    src = copies[path]
                    meta = {b"copy": src, b"copyrev": parent[src][0].hex().encode()}
                    fp1, fp2 = NULLID, NULLID
                if fp1 == fp2:
                    fp2 = NULLID
                entries[path] = (fl.add(content, meta, tr, link, fp1, fp2), b"")
            mp1 = cl.read(p1).manifest if p1 != NULLID else NULLID
            mp2 = cl.read(p2).manifest if p2 != NULLID else NULLID
            mnode = ml.add(Manifest(entries), tr, link, mp1, mp2)
            extra = {b"branch": branch} if branch else None
            self.when += 3600
            node = cl.add(
                mnode, sorted(changes), desc.encode(), tr, p1, p2, USER, (self.when, 0), extra
            )
        repo.invalidate()
        return node


def build(dest: Path) -> Path:
    """Write the demo repository at ``dest`` (which must not exist)."""
    repo = Repository.create(dest)
    w = _Writer(repo)
    readme = b"hgwire demo repository\n\nServed by hgwire, a Mercurial server in Python.\n"
    n0 = w.commit(
        {
            b"README.txt": readme,
            b"src/hello.py": b'print("hello")\n',
            b"docs/guide.txt": b"A short guide.\n",
        },
        "initial import",
        NULLID,
    )
    n1 = w.commit(
        {
            b"src/hello.py": b'import sys\n\nprint("hello", *sys.argv[1:])\n',
            b"data/logo.bin": bytes(range(256)) * 16,
        },
        "hello takes arguments; add a binary logo",
        n0,
    )
    n2 = w.commit({b".hgtags": n1.hex().encode() + b" v1.0\n"}, "Added tag v1.0 for changeset", n1)
    s1 = w.commit(
        {b"docs/guide.txt": b"A short guide.\n\nStable notes.\n"},
        "stable: document the release",
        n1,
        branch=b"stable",
    )
    n3 = w.commit(
        {b"docs/manual.txt": b"A short guide.\n", b"docs/guide.txt": None},
        "rename the guide to manual",
        n2,
        copies={b"docs/manual.txt": b"docs/guide.txt"},
    )
    n4 = w.commit({b"src/util.py": b"def double(x):\n    return 2 * x\n"}, "add util", n3)
    merge_text = b"A short guide.\n\nStable notes.\n"
    n5 = w.commit({b"docs/manual.txt": merge_text}, "merge stable into default", n4, s1)
    n6 = w.commit({b"src/util.py": b"def double(x):\n    return x + x\n"}, "util: draft work", n5)
    repo = Repository.open(dest)
    with repo.wlock(), repo.lock(), repo.transaction(b"demo-meta") as tr:
        marks = Bookmarks(repo)
        marks.set(b"main", n5)
        marks.write(tr)
        cl = repo.changelog
        phases = PhaseCache.load(repo, DAG.from_storage(cl))
        phases.retract_boundary(DRAFT, [cl.rev(n6)])
        phases.write(tr, repo.svfs)
    return dest


def ensure_demo_repo() -> Path:
    """The demo repository, built on first use (atomically: built aside, then renamed)."""
    dest = demo_path()
    stamp = dest / ".hg" / "hgwire-demo-version"
    if stamp.is_file() and stamp.read_text().strip() == str(DEMO_VERSION):
        return dest
    tmp = dest.with_name(f"demo.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    build(tmp)
    (tmp / ".hg" / "hgwire-demo-version").write_text(f"{DEMO_VERSION}\n")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest
