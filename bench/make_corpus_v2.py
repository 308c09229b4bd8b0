"""Deterministic corpus for the HTTP v2 server benchmark (no file removals).

hg 6.0's frame-protocol server aborts on a changeset that removes a file, so this
history only ever adds, edits and copies files: a ``default`` line of development,
short anonymous feature branches merged back, and a ``stable`` named branch merged
into ``default`` now and then. Every changeset is public; users, dates and contents
come from a seeded PRNG, so the same seed gives the same nodes.

It runs inside Mercurial's own interpreter (it imports ``mercurial``), e.g.::

    ~/.cache/hgwire/hg-6.0/bin/python bench/make_corpus_v2.py DEST [--changesets 10000]

``bench/bench_serve_v2.py`` calls it. Never commit the result.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

BASE_DATE = 1_600_000_000
USERS = [
    b"Ann Writer <ann@example.net>",
    b"Ben Coder <ben@example.net>",
    b"Cid Tester <cid@example.net>",
    b"Dee Porter <dee@example.net>",
    b"Eli Fixer <eli@example.net>",
]
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "value",
    "index",
    "node",
    "store",
    "chunk",
    "frame",
    "reader",
    "writer",
    "buffer",
    "offset",
    "length",
    "parent",
    "child",
    "merge",
    "branch",
    "commit",
    "revision",
    "manifest",
    "changelog",
    "filelog",
    "encode",
    "decode",
    "stream",
    "server",
    "client",
    "request",
    "response",
    "error",
    "result",
    "return",
    "yield",
    "self",
]
DIRS = ["core", "core/io", "net", "net/http", "util", "docs", "tests", "tests/data", "tools"]
EXTS = [".py", ".py", ".py", ".c", ".h", ".txt", ".rst"]


class Gen:
    """The PRNG-driven content of the history (independent of Mercurial)."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.counter = 0

    def line(self) -> bytes:
        r = self.rnd
        indent = "    " * r.randint(0, 3)
        words = " ".join(r.choice(WORDS) for _ in range(r.randint(2, 9)))
        return (indent + words + f" = {r.randint(0, 99999)}\n").encode()

    def new_file(self, state: dict[bytes, bytes]) -> bytes:
        r = self.rnd
        while True:
            self.counter += 1
            name = f"{r.choice(DIRS)}/{r.choice(WORDS)}_{self.counter}{r.choice(EXTS)}"
            path = name.encode()
            if path not in state:
                return path

    def content(self, nlines: int) -> bytes:
        return b"".join(self.line() for _ in range(nlines))

    def edit(self, data: bytes) -> bytes:
        """Replace, insert or append a few lines."""
        r = self.rnd
        lines = data.splitlines(keepends=True)
        for _ in range(r.randint(1, 3)):
            pos = r.randint(0, len(lines))
            drop = r.randint(0, min(4, len(lines) - pos))
            lines[pos : pos + drop] = [self.line() for _ in range(r.randint(0 if drop else 1, 5))]
        if not lines:
            lines = [self.line()]
        return b"".join(lines)


def build(dest: str, changesets: int, seed: int) -> bytes:
    """Create the repository at ``dest``; return the tip node (hex)."""
    from mercurial import context, hg, node
    from mercurial import ui as uimod

    u = uimod.ui.load()
    u.setconfig(b"phases", b"new-commit", b"public", b"corpus")
    u.setconfig(b"ui", b"quiet", b"true", b"corpus")
    repo = hg.repository(u, dest.encode(), create=True)
    gen = Gen(seed)
    r = gen.rnd

    # per head: (node, state path -> content, paths touched since the fork)
    state: dict[bytes, bytes] = {}
    for _ in range(150):
        path = gen.new_file(state)
        state[path] = gen.content(r.randint(10, 200))
    heads: dict[str, tuple[bytes, dict[bytes, bytes]]] = {}
    feature: tuple[bytes, dict[bytes, bytes], set[bytes], int] | None = None
    stable_touched: set[bytes] = set()
    made = 0
    t0 = time.time()

    def commit(
        parents: tuple[bytes, bytes],
        old: dict[bytes, bytes],
        new: dict[bytes, bytes],
        branch: bytes,
        copies: dict[bytes, bytes],
        text: bytes,
    ) -> bytes:
        nonlocal made
        files = sorted(p for p, v in new.items() if old.get(p) != v)

        def filectxfn(_repo: object, mctx: object, path: bytes) -> object:
            return context.memfilectx(_repo, mctx, path, new[path], copysource=copies.get(path))

        made += 1
        ctx = context.memctx(
            repo,
            parents,
            text,
            files,
            filectxfn,
            user=USERS[made % len(USERS)],
            date=(BASE_DATE + made * 617, 0),
            extra={b"branch": branch},
        )
        n: bytes = repo.commitctx(ctx)
        return n

    def change(old: dict[bytes, bytes]) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
        new = dict(old)
        copies: dict[bytes, bytes] = {}
        paths = sorted(old)
        roll = r.random()
        if roll < 0.06:
            for _ in range(r.randint(1, 3)):
                p = gen.new_file(new)
                new[p] = gen.content(r.randint(5, 150))
        elif roll < 0.07:
            src = r.choice(paths)
            dst = gen.new_file(new)
            new[dst] = gen.edit(old[src])
            copies[dst] = src
        elif roll < 0.075:
            for p in r.sample(paths, min(40, len(paths))):
                new[p] = gen.edit(old[p])
        for p in r.sample(paths, r.randint(1, 4)):
            new[p] = gen.edit(new[p])
        return new, copies

    with repo.wlock(), repo.lock(), repo.transaction(b"corpus"):
        nullid = repo.nullid
        root = commit((nullid, nullid), {}, state, b"default", {}, b"initial import")
        heads["default"] = (root, state)
        while made < changesets:
            left = changesets - made
            roll = r.random()
            dnode, dstate = heads["default"]
            if "stable" not in heads and made > 200:
                s2, _ = change(dstate)
                n = commit((dnode, nullid), dstate, s2, b"stable", {}, b"start stable")
                heads["stable"] = (n, s2)
                stable_touched = set()
            elif feature is not None and (feature[3] <= 0 or left <= 2):
                fnode, fstate, touched, _ = feature
                merged = dict(dstate)
                for p in touched:
                    if p in dstate and dstate[p] != fstate[p]:
                        merged[p] = fstate[p] + gen.line()  # both sides: resolved anew
                    else:
                        merged[p] = fstate[p]
                n = commit((dnode, fnode), dstate, merged, b"default", {}, b"merge feature")
                heads["default"] = (n, merged)
                feature = None
            elif "stable" in heads and roll < 0.012 and left > 2:
                snode, sstate = heads["stable"]
                merged = dict(dstate)
                for p in stable_touched:
                    merged[p] = sstate[p]
                n = commit((dnode, snode), dstate, merged, b"default", {}, b"merge stable")
                heads["default"] = (n, merged)
                stable_touched = set()
            elif "stable" in heads and roll < 0.1:
                snode, sstate = heads["stable"]
                s2, copies = change(sstate)
                n = commit((snode, nullid), sstate, s2, b"stable", copies, b"fix on stable")
                stable_touched.update(p for p in s2 if sstate.get(p) != s2[p])
                heads["stable"] = (n, s2)
            elif feature is None and roll < 0.14 and left > 10:
                s2, copies = change(dstate)
                n = commit((dnode, nullid), dstate, s2, b"default", copies, b"start feature")
                touched = {p for p in s2 if dstate.get(p) != s2[p]}
                feature = (n, s2, touched, r.randint(2, 12))
            elif feature is not None and roll < 0.35:
                fnode, fstate, touched, todo = feature
                s2, copies = change(fstate)
                n = commit((fnode, nullid), fstate, s2, b"default", copies, b"feature work")
                touched |= {p for p in s2 if fstate.get(p) != s2[p]}
                feature = (n, s2, touched, todo - 1)
            else:
                s2, copies = change(dstate)
                n = commit((dnode, nullid), dstate, s2, b"default", copies, b"work on default")
                heads["default"] = (n, s2)
            if made % 1000 == 0:
                sys.stderr.write(f"{made} changesets, {time.time() - t0:.0f}s\n")
    tip: bytes = repo.changelog.tip()
    return node.hex(tip).decode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest")
    ap.add_argument("--changesets", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=20261121)
    args = ap.parse_args()
    if os.environ.get("PYTHONHASHSEED") != "0":  # fncache is written in set order
        env = dict(os.environ, PYTHONHASHSEED="0", HGRCPATH="", HGPLAIN="1")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if os.path.exists(args.dest):
        sys.exit(f"{args.dest} exists")
    tip = build(args.dest, args.changesets, args.seed)
    print(f"{args.dest}: {args.changesets} changesets, tip {tip}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
