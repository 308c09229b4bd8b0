"""Storage benchmark: hgwire's revlog engine against Mercurial 6.0's (the anchor).

Workloads (each measured in a fresh interpreter per round, hgwire and hg interleaved,
medians reported):

1. full reads of the 10k corpus: every changelog, manifest and file revision
   (``/work/shared/corpus/hg-history-10k.tar.gz`` extracted to a temporary directory);
2. resolving one revision at the end of a delta chain of 250/500/1000/2000 deltas
   (a synthesized generaldelta revlog, ~100 KB text, 3 lines edited per revision),
   cold caches, to show the cost grows linearly with the chain length;
3. opening a synthesized 1,000,000-revision index, computing its heads and looking a
   node up, with the peak RSS of the process.

Run: ``.venv/bin/python bench/bench_storage.py [--rounds N]``. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import zlib
from itertools import accumulate
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from hgwire.repo import mdiff  # noqa: E402
from hgwire.repo.revlog import INDEX_ENTRY, hashrevision, nullid  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "hg-history-10k.tar.gz"
HG60 = Path(os.environ.get("HGWIRE_HG60", Path.home() / ".cache/hgwire/hg-6.0/bin/hg"))
OURS_PY = ROOT / ".venv" / "bin" / "python"
HG_PY = HG60.parent / "python"
# (radix, text lines of 47 bytes, chain lengths measured)
CHAINS = (("small", 2000, (250, 500, 1000, 2000)), ("big", 22000, (250, 500, 1000)))

# ---------------------------------------------------------------- worker programs

OURS = r"""
import json, resource, statistics, sys, time
sys.path.insert(0, %(src)r)
from hgwire.repo.store import StoreVFS
from hgwire.repo.vfs import VFS
from hgwire.repo.revlog import Revlog
from hgwire.repo.changelog import Changelog
from hgwire.repo.manifest import ManifestRevlog
from hgwire.repo.filelog import Filelog
mode, path = sys.argv[1], sys.argv[2]
out = {}
if mode == "full":
    store = StoreVFS(path + "/.hg/store")
    t0 = time.perf_counter()
    cl = Changelog(store, compression="zstd")
    for r in cl:
        cl.revision(r)
    t1 = time.perf_counter()
    ml = ManifestRevlog(store, compression="zstd")
    for r in ml:
        ml.revision(r)
    t2 = time.perf_counter()
    n = 0
    for line in store.rawvfs.read("fncache").split(b"\n"):
        if line.endswith(b".i"):
            fl = Filelog(store, line[5:-2], compression="zstd")
            for r in fl:
                fl.revision(r)
                n += 1
    t3 = time.perf_counter()
    out = {"changelog": t1 - t0, "manifest": t2 - t1, "files": t3 - t2, "total": t3 - t0,
           "filerevs": n}
elif mode == "chain":
    vfs = VFS(path)
    for radix, _lines, lengths in json.loads(sys.argv[3]):
        for n in lengths:
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                rl = Revlog(vfs, radix)
                rl.revision(n - 1)
                times.append(time.perf_counter() - t0)
            out[f"{radix}-{n}"] = statistics.median(times)
elif mode == "index":
    vfs = VFS(path)
    node = bytes.fromhex(sys.argv[3])
    t0 = time.perf_counter()
    rl = Revlog(vfs, "big")
    t1 = time.perf_counter()
    heads = rl.headrevs()
    t2 = time.perf_counter()
    rev = rl.rev(node)
    t3 = time.perf_counter()
    out = {"open": t1 - t0, "heads": t2 - t1, "lookup": t3 - t2, "len": len(rl),
           "nheads": len(heads), "rev": rev}
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""

HG = r"""
import json, resource, statistics, sys, time
from mercurial import hg, revlog, ui as uimod, vfs as vfsmod
from mercurial.revlogutils import constants
mode, path = sys.argv[1], sys.argv[2]
out = {}
def standalone(path, radix):
    v = vfsmod.vfs(path.encode())
    v.options = {b"revlogv1": True, b"generaldelta": True}
    return revlog.revlog(v, target=(constants.KIND_OTHER, b"bench"), radix=radix)
if mode == "full":
    t0 = time.perf_counter()
    repo = hg.repository(uimod.ui.load(), path.encode()).unfiltered()
    cl = repo.changelog
    for r in cl:
        cl.revision(r)
    t1 = time.perf_counter()
    ml = repo.manifestlog.getstorage(b"")
    for r in ml:
        ml.revision(r)
    t2 = time.perf_counter()
    n = 0
    for line in repo.svfs.read(b"fncache").split(b"\n"):
        if line.endswith(b".i"):
            fl = repo.file(line[5:-2])
            for r in fl:
                fl.revision(r)
                n += 1
    t3 = time.perf_counter()
    out = {"changelog": t1 - t0, "manifest": t2 - t1, "files": t3 - t2, "total": t3 - t0,
           "filerevs": n}
elif mode == "chain":
    for radix, _lines, lengths in json.loads(sys.argv[3]):
        for n in lengths:
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                rl = standalone(path, radix.encode())
                rl.revision(n - 1)
                times.append(time.perf_counter() - t0)
            out[f"{radix}-{n}"] = statistics.median(times)
elif mode == "index":
    node = bytes.fromhex(sys.argv[3])
    t0 = time.perf_counter()
    rl = standalone(path, b"big")
    len(rl)
    t1 = time.perf_counter()
    heads = rl.headrevs()
    t2 = time.perf_counter()
    rev = rl.rev(node)
    t3 = time.perf_counter()
    out = {"open": t1 - t0, "heads": t2 - t1, "lookup": t3 - t2, "len": len(rl),
           "nheads": len(heads), "rev": rev}
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run(py: Path, program: str, *args: str) -> dict[str, float]:
    proc = subprocess.run(
        [str(py), "-c", program, *args],
        capture_output=True,
        env={**os.environ, "HGRCPATH": "", "HGPLAIN": "1"},
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"{py} failed:\n{proc.stderr.decode(errors='replace')}")
    result: dict[str, float] = json.loads(proc.stdout)
    return result


# ---------------------------------------------------------------- fixtures


def build_chain(path: Path, radix: str, length: int, nlines: int) -> None:
    """A generaldelta revlog where revision r is a delta against r-1 (chain length r+1).

    The text has ``nlines`` lines of 47 bytes; each revision replaces 3 of them.
    """
    rnd = random.Random(1)
    lines = [b"%05d %s\n" % (i % 100000, rnd.randbytes(20).hex().encode()) for i in range(nlines)]
    text = b"".join(lines)
    entries = []
    data = bytearray()
    p1 = nullid
    for rev in range(length):
        if rev == 0:
            chunk = zlib.compress(text)
            base = 0
        else:
            offsets = [0, *accumulate(map(len, lines))]
            edits = sorted({(rev * 7 + k * 613) % nlines for k in range(3)})
            hunks = []
            for k in edits:
                new = b"edit %d %d\n" % (rev, k)
                hunks.append(mdiff.HUNK.pack(offsets[k], offsets[k + 1], len(new)) + new)
                lines[k] = new
            delta = b"".join(hunks)
            text = mdiff.patch(text, delta)
            chunk = delta if delta[:1] == b"\0" else b"u" + delta
            base = rev - 1
        node = hashrevision(text, p1, nullid)
        entries.append(
            INDEX_ENTRY.pack(len(data) << 16, len(chunk), len(text), base, rev, rev - 1, -1, node)
        )
        data += chunk
        p1 = node
    index = bytearray(b"".join(entries))
    index[0:4] = (0x00020001).to_bytes(4, "big")
    (path / f"{radix}.i").write_bytes(bytes(index))
    (path / f"{radix}.d").write_bytes(bytes(data))


def build_index(path: Path, count: int) -> bytes:
    """A non-inline index of ``count`` empty full-text revisions in one linear line."""
    rnd = random.Random(2)
    nodes = rnd.randbytes(20 * count)
    entry = INDEX_ENTRY.pack
    with open(path / "big.i", "wb") as fh:
        for start in range(0, count, 100_000):
            buf = bytearray()
            for rev in range(start, min(count, start + 100_000)):
                buf += entry(0, 0, 0, rev, rev, rev - 1, -1, nodes[20 * rev : 20 * rev + 20])
            if start == 0:
                buf[0:4] = (0x00020001).to_bytes(4, "big")
            fh.write(buf)
    return nodes[20 * (count // 3) : 20 * (count // 3) + 20]


# ---------------------------------------------------------------- main


def rounds(n: int, mode: str, *args: str) -> tuple[dict[str, float], dict[str, float]]:
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    for _ in range(n):
        ours.append(run(OURS_PY, OURS % {"src": str(ROOT / "src")}, mode, *args))
        theirs.append(run(HG_PY, HG, mode, *args))

    def med(rs: list[dict[str, float]]) -> dict[str, float]:
        return {k: statistics.median(r[k] for r in rs) for k in rs[0]}

    return med(ours), med(theirs)


def row(name: str, ours: float, theirs: float, unit: str = "s") -> str:
    scale = 1000 if unit == "ms" else 1
    return (
        f"| {name} | {ours * scale:.3f} {unit} | {theirs * scale:.3f} {unit} "
        f"| {ours / theirs:.2f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--index-revs", type=int, default=1_000_000)
    parser.add_argument(
        "--only-index", action="store_true", help="only the big-index rows (open, heads, lookup)"
    )
    opts = parser.parse_args()
    if not HG_PY.exists():
        raise SystemExit(f"Mercurial 6.0 not installed at {HG60}")
    with tempfile.TemporaryDirectory(prefix="hgwire-bench-") as tmp:
        tmpdir = Path(tmp)
        index = tmpdir / "index"
        index.mkdir()
        node = build_index(index, opts.index_revs)

        lines = [
            f"Storage benchmark: hgwire vs Mercurial 6.0 (C extensions), medians of "
            f"{opts.rounds} interleaved rounds, fresh process per round",
            "",
            "| workload | hgwire | hg 6.0 | ratio |",
            "|---|---|---|---|",
        ]
        ours_chain: dict[str, float] = {}
        if not opts.only_index:
            corpus = tmpdir / "corpus"
            corpus.mkdir()
            with tarfile.open(CORPUS) as tar:
                tar.extractall(corpus, filter="data")
            chain = tmpdir / "chain"
            chain.mkdir()
            for radix, nlines, lengths in CHAINS:
                build_chain(chain, radix, max(lengths), nlines)
            ours, theirs = rounds(opts.rounds, "full", str(corpus))
            assert ours["filerevs"] == theirs["filerevs"]
            for key, label in (
                ("changelog", "read all 10,000 changelog revisions"),
                ("manifest", "read all manifest revisions"),
                ("files", f"read all {int(ours['filerevs']):,} file revisions"),
                ("total", "full read, total"),
            ):
                lines.append(row(label, ours[key], theirs[key]))
            ours, theirs = rounds(opts.rounds, "chain", str(chain), json.dumps(list(CHAINS)))
            ours_chain = ours
            for radix, nlines, lengths in CHAINS:
                size = f"{nlines * 47 // 1000} KB"
                for n in lengths:
                    key = f"{radix}-{n}"
                    label = f"rebuild a {size} revision at chain length {n} (cold)"
                    lines.append(row(label, ours[key], theirs[key], "ms"))
        ours, theirs = rounds(opts.rounds, "index", str(index), node.hex())
        assert ours["rev"] == theirs["rev"] == opts.index_revs // 3
        assert ours["nheads"] == theirs["nheads"] == 1
        count = f"{opts.index_revs:,}"
        lines.append(row(f"open a {count}-revision index", ours["open"], theirs["open"], "ms"))
        lines.append(row("... then compute its heads", ours["heads"], theirs["heads"], "ms"))
        lines.append(row("... then look up one node", ours["lookup"], theirs["lookup"], "ms"))
        lines.append(
            f"| peak RSS of that process | {ours['maxrss_mb']:.0f} MB | "
            f"{theirs['maxrss_mb']:.0f} MB | {ours['maxrss_mb'] / theirs['maxrss_mb']:.2f}x |"
        )
        if not opts.only_index:
            lines.append("")
            lines.append(
                "Chain cost per delta (hgwire): "
                + ", ".join(
                    f"{radix} {n}: {ours_chain[f'{radix}-{n}'] / n * 1e6:.0f} us"
                    for radix, _, lengths in CHAINS
                    for n in lengths
                )
            )
        print("\n".join(lines))


if __name__ == "__main__":
    main()
