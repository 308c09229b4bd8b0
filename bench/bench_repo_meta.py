"""Repository metadata benchmark: hgwire's DAG, phases, branch map, tags, verify and log
against Mercurial 6.0 on the 10k and 41k corpora (real history).

Each case opens the repository afresh (so index parsing is included on both sides) and
runs one operation; rounds alternate hgwire / Mercurial, and the table gives medians and
the ratio hgwire/Mercurial (below 1 = hgwire faster). Mercurial runs in a persistent
worker process inside its own virtualenv (one ``import mercurial``); its ``.hg/cache`` is
deleted before every run, because hgwire never reads caches: both compute from the
store. Mercurial uses its C extensions (index, ancestors, heads, manifest parsing).

Usage: ``.venv/bin/python bench/bench_repo_meta.py [--rounds 3] [--corpus 10k,41k]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from hgwire.repo import branchmap, dagops, phases, tags  # noqa: E402
from hgwire.repo.commands import LogPrinter, RepoView  # noqa: E402
from hgwire.repo.dagops import DAG  # noqa: E402
from hgwire.repo.localrepo import Repository  # noqa: E402
from hgwire.repo.verify import verify  # noqa: E402

CACHE = Path(os.environ.get("HGWIRE_CACHE", Path.home() / ".cache" / "hgwire"))
HG_PYTHON = CACHE / "hg-6.0" / "bin" / "python"
CORPORA = {
    "10k": ROOT.parent / "shared" / "corpus" / "hg-history-10k.tar.gz",
    "41k": ROOT.parent / "shared" / "corpus" / "hg-history-41k.tar.gz",
}

WORKER = r"""
import json, os, shutil, sys, time
from mercurial import hg, ui as uimod, verify as verifymod, commands, phases
u = uimod.ui.load()
u.fout = open(os.devnull, "wb")  # output is produced (not quiet), then discarded
for line in sys.stdin:
    req = json.loads(line)
    path = req["repo"]
    shutil.rmtree(os.path.join(path, ".hg", "cache"), ignore_errors=True)
    case = req["case"]
    t0 = time.perf_counter()
    repo = hg.repository(u, path.encode()).unfiltered()
    cl = repo.changelog
    tip = len(cl) - 1
    if case == "heads":
        cl.headrevs()
    elif case == "ancestors":
        sum(1 for _ in cl.ancestors([tip], inclusive=True))
    elif case == "missing":
        cl.findmissingrevs([tip // 2], [tip])
    elif case == "descendants":
        sum(1 for _ in cl.descendants([tip // 2]))
    elif case == "phases":
        pc = repo._phasecache
        [pc.phase(repo, r) for r in range(len(cl))]
    elif case == "branchmap":
        repo.branchmap()
    elif case == "tags":
        repo.tags()
    elif case == "verify":
        verifymod.verify(repo)
    elif case == "log":
        commands.log(u, repo, rev=[], date=None, user=[], keyword=[], limit=None)
    else:
        raise SystemExit("unknown case " + case)
    print(json.dumps(time.perf_counter() - t0), flush=True)
"""


def hgwire_case(case: str, path: Path) -> float:
    t0 = time.perf_counter()
    repo = Repository.open(path)
    cl = repo.changelog
    dag = DAG.from_storage(cl)
    tip = len(dag) - 1
    if case == "heads":
        dagops.headrevs(dag)
    elif case == "ancestors":
        len(dagops.ancestors(dag, [tip], inclusive=True))
    elif case == "missing":
        dagops.findmissingrevs(dag, [tip // 2], [tip])
    elif case == "descendants":
        len(dagops.descendants(dag, [tip // 2]))
    elif case == "phases":
        phases.PhaseCache.load(repo, dag)
    elif case == "branchmap":
        branchmap.for_repo(repo, dag)
    elif case == "tags":
        tags.tags(repo, dag)
    elif case == "verify":
        verify(repo)
    elif case == "log":
        printer = LogPrinter(RepoView(repo))
        with open(os.devnull, "wb") as out:
            for rev in range(tip, -1, -1):
                out.write(printer.format(rev))
    else:
        raise ValueError(case)
    return time.perf_counter() - t0


class HgWorker:
    def __init__(self) -> None:
        env = dict(os.environ, HGRCPATH="", HGPLAIN="1")
        self.proc = subprocess.Popen(
            [str(HG_PYTHON), "-c", WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def run(self, case: str, path: Path) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"case": case, "repo": str(path)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"hg worker died on {case}")
        value: float = json.loads(line)
        return value

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--corpus", default="10k,41k")
    ap.add_argument(
        "--cases",
        default="heads,ancestors,missing,descendants,phases,branchmap,tags,log,verify",
    )
    args = ap.parse_args()
    cases = args.cases.split(",")
    worker = HgWorker()
    rows: list[tuple[str, str, float, float]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="hgwire-bench-") as tmp:
            for name in args.corpus.split(","):
                path = Path(tmp) / name
                with tarfile.open(CORPORA[name]) as tar:
                    tar.extractall(path, filter="data")
                for case in cases:
                    if case in ("verify", "log") and name != "10k":
                        continue  # minutes per round on 41k; 10k shows the ratio
                    ours: list[float] = []
                    theirs: list[float] = []
                    runs: list[tuple[list[float], Callable[[], float]]] = [
                        (ours, lambda c=case, p=path: hgwire_case(c, p)),
                        (theirs, lambda c=case, p=path: worker.run(c, p)),
                    ]
                    for _ in range(args.rounds):
                        for bucket, fn in runs:
                            bucket.append(fn())
                        shutil.rmtree(path / ".hg" / "cache", ignore_errors=True)
                    rows.append((name, case, statistics.median(ours), statistics.median(theirs)))
                    print(f"  {name} {case}: done", file=sys.stderr)
    finally:
        worker.close()
    print(f"\nMedians of {args.rounds} interleaved rounds (repository opened in each run).\n")
    print("| corpus | case | hgwire | Mercurial 6.0 | ratio |")
    print("|---|---|---:|---:|---:|")
    for name, case, ours_s, theirs_s in rows:
        print(f"| {name} | {case} | {fmt(ours_s)} | {fmt(theirs_s)} | {ours_s / theirs_s:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
