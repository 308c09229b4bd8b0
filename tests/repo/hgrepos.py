"""Test repositories built with real Mercurial, and loaders for the shared repositories.

Everyone's storage and exchange tests use these. The generated repository
(:func:`build_full_repo`) is deterministic (fixed users, dates and contents) and covers
the storage corner cases: copies and renames, merges (one with a two-parent file
revision), binary data, a file over 1 MB (split revlog), uppercase, very long (hashed
``dh/``), Windows-reserved, dotted, spaced and non-ASCII paths, a directory named
``foo.i``, exec and symlink flags, a file whose content starts with ``\\x01\\n``, files
removed (and one re-added) in history, named branches ``default``/``stable`` plus a
closed branch ``feature`` and a closed head on ``default``, two heads on ``default``,
public/draft/secret phases, bookmarks (one with a space in its name), and tags that are
added, moved (``-f``) and removed, with ``.hgtags`` differing between heads.

Mercurial is driven in a single process per build (its own virtualenv's Python runs
``dispatch`` for each step), so a build takes a few seconds. :func:`hg_facts` dumps what
Mercurial itself reads from a repository (every revlog revision, phases, bookmarks,
branch map, tags, heads) as JSON-compatible data, for interop assertions.

Generated repositories are shared and must be treated as read-only: copy one with
:func:`copy_repo` before changing it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import CORPUS, VECTORS, hg_env

HG_VERSIONS = ("6.0", "7.2.4")
PUBLIC_REPO_TARBALL = VECTORS / "repos" / "public-repo.tar.gz"
PUBLIC_REPO_FACTS = VECTORS / "repos" / "public-repo.json"
CORPUS_10K = CORPUS / "hg-history-10k.tar.gz"
CORPUS_41K = CORPUS / "hg-history-41k.tar.gz"

# Bumped whenever the generated history changes (part of cache directory names).
FULL_REPO_LAYOUT = 1

LONG_PATH = "/".join([f"DirectoryNumber{i:02d}" for i in range(10)]) + "/SomeLongFileName.txt"


@dataclass
class GeneratedRepo:
    """A repository produced by real Mercurial ``version`` (root holds ``.hg``)."""

    path: Path
    version: str
    hg: Path
    _facts: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def hgdir(self) -> Path:
        return self.path / ".hg"

    def facts(self) -> dict[str, Any]:
        """What Mercurial reads from this repository (see :func:`hg_facts`), cached."""
        if self._facts is None:
            self._facts = hg_facts(self.hg, self.path, cache=True)
        return self._facts


def hg_python(hg: Path) -> Path:
    """The Python interpreter of the virtualenv real Mercurial ``hg`` lives in."""
    return Path(hg).parent / "python"


# ---------------------------------------------------------------------------------------
# Driving Mercurial in one process

_DRIVER = r"""
import json, os, sys
from mercurial import dispatch
try:
    request = dispatch.request
except AttributeError:  # Mercurial >= 7.x moved it
    from mercurial.main_script import request

root = sys.argv[1]
steps = json.load(sys.stdin)
for step in steps:
    kind = step[0]
    if kind == "write":
        path = os.path.join(root, step[1])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(bytes.fromhex(step[2]))
        os.chmod(path, int(step[3], 8))
    elif kind == "symlink":
        path = os.path.join(root, step[1])
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(step[2], path)
    elif kind == "chmod":
        os.chmod(os.path.join(root, step[1]), int(step[2], 8))
    elif kind == "hg":
        args = [b"--cwd", root.encode()] + [a.encode("utf-8") for a in step[1]]
        status = dispatch.dispatch(request(args))
        if status not in (0, None):
            sys.stderr.write("hg %r failed with %r\n" % (step[1], status))
            sys.exit(1)
    else:
        raise SystemExit("unknown step %r" % (kind,))
"""

Step = list[Any]


def run_hg_steps(hg: Path, root: Path, steps: list[Step]) -> None:
    """Run ``steps`` (file writes and hg commands) in one Mercurial process in ``root``."""
    env = hg_env()
    env["HGENCODING"] = "utf-8"
    proc = subprocess.run(
        [str(hg_python(hg)), "-c", _DRIVER, str(root)],
        input=json.dumps(steps).encode(),
        capture_output=True,
        env=env,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"building {root} with {hg} failed:\n{proc.stdout.decode(errors='replace')}\n"
            f"{proc.stderr.decode(errors='replace')}"
        )


class _History:
    """Collects steps; every commit gets the next fixed date and a rotating user."""

    USERS = (
        "Alice <alice@example.com>",
        "Bob Builder <bob@example.org>",
        "Carol <carol@example.net>",
    )
    TZS = (0, -3600, 18000, 19800)

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.count = 0

    def write(self, path: str, data: bytes, mode: str = "644") -> None:
        self.steps.append(["write", path, data.hex(), mode])

    def hg(self, *args: str) -> None:
        self.steps.append(["hg", list(args)])

    def stamp(self) -> list[str]:
        n = self.count
        self.count += 1
        date = f"{1700000000 + 3600 * n} {self.TZS[n % len(self.TZS)]}"
        return ["-d", date, "-u", self.USERS[n % len(self.USERS)]]

    def commit(self, message: str, *extra: str) -> None:
        self.hg("commit", "-m", message, *self.stamp(), *extra)

    def tag(self, *args: str) -> None:
        self.hg("tag", *self.stamp(), *args)


#: Public name for scripting custom histories: ``h = History(); h.write(...); h.commit(...)``
#: then ``build_repo(hg, dest, h.steps)``.
History = _History


def _full_history() -> list[Step]:
    rnd = random.Random(20231114)
    h = _History()
    lines = [b"line %d of a text file\n" % i for i in range(40)]
    big = rnd.randbytes(1_200_000)
    binary = bytes(range(256)) * 8 + b"\0\0\xff\xfe"

    # r0: the initial tree with every awkward path.
    h.write("a.txt", b"".join(lines))
    h.write("README.txt", b"Read me.\n")
    h.write("Docs/Guide.TXT", b"A guide in capitals.\n")
    h.write("data.bin", binary)
    h.write("big.bin", big)
    for name in ("aux", "con.txt", "nul", "com1/x.txt", "lpt9/y", "prn.c", "AUX.txt"):
        h.write(name, f"reserved name {name}\n".encode())
    h.write("foo.i/bar.txt", b"directory named like a revlog\n")
    h.write("foo.d/baz.txt", b"another one\n")
    h.write(".hidden", b"dot file\n")
    h.write("with space.txt", b"space\n")
    h.write("trailing./file ", b"trailing dot dir and space\n")
    h.write("under_score.txt", b"underscore\n")
    h.write("café.txt", b"non-ascii name\n")
    h.write("a:b?c.txt", b"reserved characters\n")
    h.write(LONG_PATH, b"a path long enough to be hashed into dh/\n")
    h.write("x" * 130 + ".txt", b"a very long basename\n")
    h.write("exec.sh", b"#!/bin/sh\necho hi\n", "755")
    h.steps.append(["symlink", "link", "a.txt"])
    h.write("meta-escape.txt", b"\x01\nstarts like copy metadata\n")
    h.hg("add", "-q")
    h.commit("initial import\n\nwith every awkward path")

    # r1: copy, rename, edits of text and binary files.
    h.write("a.txt", b"".join(lines[:10]) + b"edited in r1\n" + b"".join(lines[10:]))
    h.hg("copy", "a.txt", "b.txt")
    h.hg("mv", "README.txt", "README.md")
    h.write("data.bin", binary[:1000] + b"\x00changed\x00" + binary[1000:])
    h.commit("copy a to b, rename README")

    # r2: remove a file, change the big file a little, drop an exec bit.
    h.hg("rm", "con.txt")
    h.write("big.bin", big[:500_000] + b"small change" + big[500_000:])
    h.steps.append(["chmod", "exec.sh", "644"])
    h.commit("remove con.txt, touch big.bin, exec.sh not executable")

    # r3, r4: named branch stable, with a tag on it.
    h.hg("branch", "stable")
    h.write("a.txt", b"stable top line\n" + b"".join(lines))
    h.commit("start stable")
    h.write("stable.txt", b"only on stable\n")
    h.hg("add", "stable.txt")
    h.commit("stable work")
    h.tag("-r", "3", "v0.1")  # r5 (stable): .hgtags on stable

    # r6: back on default, edit a.txt (both sides touch it, merge gets two parents).
    h.hg("update", "-q", "2")
    h.write("a.txt", b"".join(lines) + b"default bottom line\n")
    h.write("b.txt", b"b diverges\n")
    h.commit("default work")

    # r7: merge stable into default.
    h.hg("merge", "-q", "--tool", "internal:merge3", "stable")
    h.write("a.txt", b"stable top line\n" + b"".join(lines) + b"default bottom line\n")
    h.hg("resolve", "-q", "--mark", "--all")
    h.commit("merge stable into default")

    # r8..r10: tags on default: add, move, remove.
    h.tag("-r", "6", "v1.0")
    h.tag("-f", "-r", "7", "v1.0")
    h.tag("--remove", "v0.1")

    # r11: stable head gets another tag (its .hgtags still has v0.1).
    h.hg("update", "-q", "stable")
    h.tag("-r", "4", "stable-tag")

    # r12, r13: branch feature off default, then closed.
    h.hg("update", "-q", "10")
    h.hg("branch", "feature")
    h.write("feature.txt", b"feature work\n")
    h.hg("add", "feature.txt")
    h.commit("feature work")
    h.commit("close feature", "--close-branch")

    # r14, r15: a second head on default, then closed.
    h.hg("update", "-q", "7")
    h.write("b.txt", b"b on an anonymous head\n")
    h.commit("anonymous default head")
    h.commit("close that head", "--close-branch")

    # r16: re-add the removed file on the main default head; r17 secret.
    h.hg("update", "-q", "10")
    h.write("con.txt", b"con is back with new content\n")
    h.hg("add", "con.txt")
    h.hg("rm", "aux")
    h.write("big.bin", big[:700_000] + b"another change" + big[700_000:])
    h.commit("re-add con.txt, remove aux")
    h.write("secret.txt", b"not to be served\n")
    h.hg("add", "secret.txt")
    h.commit("secret work", "--secret")

    # Phases and bookmarks.
    h.hg("phase", "--public", "-r", "7")
    h.hg("bookmark", "-r", "16", "main")
    h.hg("bookmark", "-r", "11", "stable-book")
    h.hg("bookmark", "-r", "3", "with space")
    h.hg("bookmark", "-r", "17", "secret-book")
    return h.steps


def build_full_repo(hg: Path, dest: Path) -> Path:
    """Build the feature-rich test repository at ``dest`` with Mercurial ``hg``."""
    dest.mkdir(parents=True, exist_ok=True)
    run_hg_steps(hg, dest, [["hg", ["init", "-q"]], *_full_history()])
    return dest


def build_repo(hg: Path, dest: Path, steps: list[Step]) -> Path:
    """Init a repository at ``dest`` and run custom ``steps`` (see :class:`_History`)."""
    dest.mkdir(parents=True, exist_ok=True)
    run_hg_steps(hg, dest, [["hg", ["init", "-q"]], *steps])
    return dest


# ---------------------------------------------------------------------------------------
# Shared repositories


def extract_tarball(tarball: Path, dest: Path) -> Path:
    """Unpack a ``.hg``-only tarball into ``dest`` (which then holds ``.hg``)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    if not (dest / ".hg").is_dir():
        raise AssertionError(f"{tarball} holds no .hg directory")
    return dest


def public_repo_facts() -> dict[str, Any]:
    """The recorded facts of the conformance vector repository (``public-repo.json``)."""
    data: dict[str, Any] = json.loads(PUBLIC_REPO_FACTS.read_text())
    return data


def copy_repo(src: Path, dest: Path) -> Path:
    """A private copy of the repository at ``src`` (symlinks kept), safe to modify."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def cached_build(shared_root: Path, key: str, build: Callable[[Path], object]) -> Path:
    """Build once per test session into ``shared_root/key`` (safe across xdist workers).

    ``build`` receives a fresh directory; it is renamed into place only when complete, so
    a crashed build is simply redone.
    """
    final = shared_root / key
    with _locked(shared_root / f"{key}.lock"):
        if not final.is_dir():
            tmp = shared_root / f"{key}.building"
            if tmp.exists():
                shutil.rmtree(tmp)
            build(tmp)
            tmp.rename(final)
    return final


def shared_tmp_root(basetemp: Path) -> Path:
    """A directory shared by all xdist workers of this session (or basetemp without xdist)."""
    root = basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp
    return root / "hgwire-repos"


# ---------------------------------------------------------------------------------------
# What Mercurial reads: the reference for interop assertions

_FACTS = r"""
import hashlib, json, sys
from mercurial import hg, ui as uimod, node as nodemod, phases
from mercurial.utils import stringutil

hexl = lambda n: nodemod.hex(n).decode()
u = uimod.ui.load()
repo = hg.repository(u, sys.argv[1].encode()).unfiltered()
full = sys.argv[2] == "full"

def revlog_dump(rl, store_text):
    out = []
    for r in range(len(rl)):
        data = rl.rawdata(r)
        p1, p2 = rl.parents(rl.node(r))
        item = {"node": hexl(rl.node(r)), "p1": hexl(p1), "p2": hexl(p2),
                "linkrev": rl.linkrev(r), "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest()}
        if store_text:
            item["text"] = data.hex()
        out.append(item)
    return out

cl = repo.changelog
changesets = []
paths = set()
for r in range(len(cl)):
    ctx = repo[r]
    e = cl.changelogrevision(r)
    paths.update(e.files)
    changesets.append({
        "rev": r, "node": hexl(ctx.node()),
        "parents": [p.rev() for p in ctx.parents()],
        "manifest": hexl(e.manifest), "user": e.user.decode("utf-8", "surrogateescape"),
        "date": [e.date[0], e.date[1]],
        "files": [f.decode("utf-8", "surrogateescape") for f in e.files],
        "description": e.description.decode("utf-8", "surrogateescape"),
        "extra": {k.decode(): v.decode("utf-8", "surrogateescape")
                  for k, v in e.extra.items()},
        "branch": ctx.branch().decode(), "closed": ctx.closesbranch(),
        "phase": ctx.phase(),
    })
ml = repo.manifestlog.getstorage(b"")
filelogs = {}
for p in sorted(paths):
    fl = repo.file(p)
    if len(fl):
        filelogs[p.decode("utf-8", "surrogateescape")] = revlog_dump(fl, full)

def bmap(view):
    out = {}
    bm = view.branchmap()
    for branch in sorted({view[r].branch() for r in view}):
        heads = bm.branchheads(branch, closed=True)
        openheads = set(bm.branchheads(branch))
        out[branch.decode()] = {
            "heads": [hexl(n) for n in heads],
            "closed": [hexl(n) for n in heads if n not in openheads],
            "tip": hexl(bm.branchtip(branch)), "branch_closed": not openheads,
        }
    return out

def phaseroots():
    pc = repo._phasecache
    roots = getattr(pc, "phaseroots", None)
    if roots is None:
        roots = pc._phaseroots
    if not isinstance(roots, dict):
        roots = dict(enumerate(roots))
    out = {}
    for phase, items in roots.items():
        nodes = [cl.node(x) if isinstance(x, int) else x for x in items]
        if nodes:
            out[str(phase)] = sorted(hexl(n) for n in nodes)
    return out

served = repo.filtered(b"served")
facts = {
    "requires": sorted(r.decode() for r in repo.requirements),
    "changelog": revlog_dump(cl, full),
    "changesets": changesets,
    "manifestlog": revlog_dump(ml, full),
    "filelogs": filelogs,
    "phases": [repo[r].phase() for r in range(len(cl))],
    "phaseroots": phaseroots(),
    "bookmarks": {k.decode(): hexl(v) for k, v in repo._bookmarks.items()},
    "branchmap": bmap(repo),
    "served_branchmap": bmap(served),
    "tags": {k.decode(): hexl(v) for k, v in repo.filtered(b"visible").tags().items()},
    "heads": [hexl(cl.node(r)) for r in sorted(cl.headrevs())],
    "served_heads": [hexl(n) for n in sorted(served.heads(), key=cl.rev)],
}
json.dump(facts, sys.stdout)
"""


def hg_facts(
    hg: Path, repo: Path, *, full_text: bool = False, cache: bool = False
) -> dict[str, Any]:
    """Everything Mercurial reads from ``repo``, as JSON data, in one hg process.

    Keys: ``requires``; ``changelog``, ``manifestlog`` and ``filelogs`` (path -> list)
    with per-revision ``node``, ``p1``, ``p2``, ``linkrev``, ``size`` and ``sha256`` of
    the raw text (``text`` in hex too with ``full_text``); ``changesets`` (parsed
    entries with branch, closed flag and phase); ``phases`` (per rev), ``phaseroots``
    (phase number as text -> hex roots); ``bookmarks``; ``branchmap`` and
    ``served_branchmap`` (branch -> heads, closed heads, tip, branch_closed); ``tags``
    (with ``tip``); ``heads`` (all, in rev order) and ``served_heads``.

    ``cache=True`` reuses an earlier answer for the same repository (only for
    repositories nobody modifies, such as the shared fixtures).
    """
    key = (str(hg), str(repo), full_text)
    if key in _FACTS_CACHE and cache:
        return _FACTS_CACHE[key]
    env = hg_env()
    env["HGENCODING"] = "utf-8"
    proc = subprocess.run(
        [str(hg_python(hg)), "-c", _FACTS, str(repo), "full" if full_text else "digest"],
        capture_output=True,
        env=env,
    )
    if proc.returncode != 0:
        raise AssertionError(f"hg facts for {repo} failed:\n{proc.stderr.decode()}")
    data: dict[str, Any] = json.loads(proc.stdout)
    if cache:
        _FACTS_CACHE[key] = data
    return data


_FACTS_CACHE: dict[tuple[str, str, bool], dict[str, Any]] = {}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
