"""HTTP v2 (frame protocol) server benchmark: ``hgwire serve`` against hg 6.0's server.

The client is always hg 6.0 with ``experimental.httppeer.advertise-v2=true`` (the
anchor harness's ``hg60v2`` client). Three parts, all driven through the anchor harness
except the last:

1. ``hg60-v2`` (hg 6.0's ``hg serve`` with the v2 API, plus ``hg60v2_compat.py``)
   against ``hgwire/hg60v2`` on a generated ~10k-changeset corpus without file removals
   (``make_corpus_v2.py``; 6.0's v2 server cannot serve a removal), interleaved rounds,
   medians. Targets: server CPU <= 0.5x hg 6.0's, clone wall <= 0.7x.
2. ``hgwire/hg60v2`` alone on the real 10k corpus (``hg10k``).
3. N concurrent v2 clones of the generated corpus from one ``hgwire serve``: all must
   succeed and be complete; a sample passes ``hg verify``; total wall and server peak RSS.

Prints markdown on stdout; raw samples go to ``--out`` (default /tmp/hgwire-bench-v2).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

V2_COMPAT = ["--config", f"extensions.hg60v2_compat={h.ANCHOR / 'hg60v2_compat.py'}"]
V2_CLIENT = [h.HG60, "--config", "experimental.httppeer.advertise-v2=true", *V2_COMPAT]


def generated_corpus(changesets: int, seed: int) -> Path:
    """The generated corpus below CORPUS_DIR (built once; caches warmed with hg 6.0)."""
    dest = h.CORPUS_DIR / f"gen{changesets // 1000}k-{seed}"
    if (dest / ".hg" / "store" / "00changelog.i").is_file():
        return dest
    tmp = h.CORPUS_DIR / (dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    h.CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    python = str(Path(h.HG60).with_name("python"))
    gen = Path(__file__).resolve().with_name("make_corpus_v2.py")
    h.log(f"generating {changesets} changesets into {tmp}")
    subprocess.run(
        [python, str(gen), str(tmp), "--changesets", str(changesets), "--seed", str(seed)],
        check=True,
        env=h.hg_env(),
    )
    h.hg(h.HG60, "-R", tmp, "debugupdatecaches")
    tmp.rename(dest)
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", "-n", type=int, default=5, help="counted rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--changesets", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--hg10k-rounds", type=int, default=3, help="0 skips part 2")
    ap.add_argument("--concurrent", type=int, default=20, help="0 skips part 3")
    ap.add_argument("--verify-sample", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="py-spy profile of one v2 clone")
    ap.add_argument("--out", type=Path, default=Path("/tmp/hgwire-bench-v2"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    out = sys.stdout
    corpus = generated_corpus(args.changesets, args.seed)
    out.write(f"## HTTP v2 server: hgwire serve vs hg 6.0 serve ({time.strftime('%F %H:%M')})\n\n")
    out.write(f"Corpus `{corpus.name}`: {h.corpus_facts(corpus)}.\n\n")

    data = h.run_anchor(
        ["hg60-v2", "hgwire/hg60v2"],
        [corpus],
        args.out / "v2-generated",
        rounds=args.rounds,
        warmup=args.warmup,
    )
    out.write(f"### clone -U, hg 6.0 v2 client, {args.rounds} interleaved rounds, medians\n\n")
    out.write(
        h.comparison_table(
            data,
            corpus.name,
            [("hg60-v2", "hg 6.0 serve (v2)"), ("hgwire/hg60v2", "hgwire serve")],
            "hg60-v2",
            targets={"hgwire/hg60v2": {"cpu": 0.5, "wall": 0.7}},
        )
    )
    out.write(f"\n{h.load_note(data)}\n\n")

    if args.hg10k_rounds:
        hg10k = h.prepare_hg10k()
        data = h.run_anchor(
            ["hgwire/hg60v2"], [hg10k], args.out / "v2-hg10k", rounds=args.hg10k_rounds
        )
        out.write(f"### hgwire alone, real 10k corpus ({h.corpus_facts(hg10k)})\n\n")
        out.write(h.comparison_table(data, "hg10k", [("hgwire/hg60v2", "hgwire serve")], ""))
        out.write(f"\n{h.load_note(data)}\n\n")

    if args.concurrent:
        h.log(f"{args.concurrent} concurrent clones")
        res = h.concurrent_clones(corpus, V2_CLIENT, args.concurrent, args.verify_sample, "v2")
        (args.out / "v2-concurrent.json").write_text(json.dumps(res, indent=1))
        out.write(f"### {args.concurrent} concurrent hg 6.0 v2 clones from one hgwire serve\n\n")
        out.write(h.concurrent_table(res))
        out.write(f"\nload average (1 min) at the end: {res['load']}\n")
    if args.profile:
        out.write("\n### profile: hgwire serve during one hg 6.0 v2 clone\n\n")
        out.write(h.profile_clone(corpus, V2_CLIENT, args.out / "profile-v2"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
