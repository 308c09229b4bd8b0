"""Legacy-protocol server benchmark: ``hgwire serve`` / ``hgwire-hg`` against hg 7.2.4.

The client is always hg 7.2.4; the corpus is the real 10k corpus (``hg10k``). Driven
through the anchor harness (interleaved rounds, medians):

1. bundle2 clone over HTTP (zstd): ``hg72-http`` (``hg serve``) vs ``hgwire/hg72``.
   Targets: server CPU <= 0.5x hg's, wall <= 1.0x. The same run has the SSH rows:
   ``hg72-ssh`` (``hg serve --stdio`` through the harness's ssh stand-in) vs
   ``ssh72/hg72sshwire`` (same stand-in, ``--remotecmd hgwire-hg``).
2. stream clone: a copy of the corpus whose ``.hg/hgrc`` sets
   ``[server] preferuncompressed=true``; a plain ``hg clone -U`` from hgwire (which
   then streams) vs ``hg clone -U --stream`` from ``hg serve`` (``server.uncompressed``)
   and the ``floor-tar`` copy of the store. Targets: hgwire <= 1.0x hg's stream clone,
   <= 2x floor-tar.

Prints markdown on stdout; raw samples go to ``--out`` (default /tmp/hgwire-bench-v1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", "-n", type=int, default=5, help="counted rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-ssh", action="store_true", help="skip the SSH rows")
    ap.add_argument("--no-stream", action="store_true", help="skip part 2")
    ap.add_argument("--no-bundle", action="store_true", help="skip part 1")
    ap.add_argument("--bytes", action="store_true", help="one extra byte-counting run per row")
    ap.add_argument("--profile", action="store_true", help="py-spy profile of one HTTP clone")
    ap.add_argument("--out", type=Path, default=Path("/tmp/hgwire-bench-v1"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    out = sys.stdout
    hg10k = h.prepare_hg10k()
    out.write(f"## Legacy protocol: hgwire vs hg 7.2.4 ({time.strftime('%F %H:%M')})\n\n")
    out.write(f"Corpus `hg10k`: {h.corpus_facts(hg10k)}.\n\n")

    if not args.no_bundle:
        rows = ["hg72-http", "hgwire/hg72"]
        if not args.no_ssh:
            rows += ["hg72-ssh", "ssh72/hg72sshwire"]
        data = h.run_anchor(
            rows,
            [hg10k],
            args.out / "v1-bundle2",
            rounds=args.rounds,
            warmup=args.warmup,
            extra_clients=None if args.no_ssh else h.ssh_clients(),
            count_bytes=args.bytes,
        )
        out.write(f"### bundle2 clone -U, hg 7.2.4 client, {args.rounds} rounds, medians\n\n")
        out.write(
            h.comparison_table(
                data,
                "hg10k",
                [("hg72-http", "hg serve (HTTP)"), ("hgwire/hg72", "hgwire serve (HTTP)")],
                "hg72-http",
                targets={"hgwire/hg72": {"cpu": 0.5, "wall": 1.0}},
            )
        )
        if not args.no_ssh:
            out.write("\nSSH (server CPU includes the server process start-up):\n\n")
            out.write(
                h.comparison_table(
                    data,
                    "hg10k",
                    [("hg72-ssh", "hg serve --stdio"), ("ssh72/hg72sshwire", "hgwire-hg")],
                    "hg72-ssh",
                )
            )
        out.write(f"\n{h.load_note(data)}\n\n")

    if not args.no_stream:
        pref = h.copy_corpus(hg10k, "hg10kpref", "[server]\npreferuncompressed = true\n")
        data = h.run_anchor(
            ["hg72-stream", "hgwire/hg72", "floor-tar"],
            [pref],
            args.out / "v1-stream",
            rounds=args.rounds,
            warmup=args.warmup,
        )
        out.write(
            "### stream clone (served repo has `[server] preferuncompressed=true`), "
            f"{args.rounds} rounds, medians\n\n"
        )
        out.write(
            h.comparison_table(
                data,
                "hg10kpref",
                [
                    ("hg72-stream", "hg serve, hg clone --stream"),
                    ("hgwire/hg72", "hgwire serve, hg clone"),
                    ("floor-tar", "tar | tar of the store"),
                ],
                "hg72-stream",
                targets={"hgwire/hg72": {"wall": 1.0}},
            )
        )
        wire = h.cell(data, "hg10kpref", "hgwire/hg72")
        tar = h.cell(data, "hg10kpref", "floor-tar")
        if wire and tar:
            r = h.paired_ratio(wire, tar, "wall")
            verdict = "met" if r is not None and r <= 2.0 else "MISSED"
            out.write(f"* hgwire stream clone x floor-tar: {h.fmt(r)} (target <= 2): {verdict}\n")
        out.write(f"\n{h.load_note(data)}\n\n")
        out.write(f"The server's share: raw `?cmd=stream_out`, {args.rounds} rounds, medians\n\n")
        out.write(h.raw_stream(pref, args.rounds))
    if args.profile:
        out.write("\n### profile: hgwire serve during one hg 7.2.4 bundle2 clone of hg10k\n\n")
        out.write(h.profile_clone(hg10k, [h.HG72], args.out / "profile-v1"))
        if not args.no_stream:
            out.write("\n### profile: hgwire serve during 10 hg 7.2.4 stream clones\n\n")
            out.write(h.profile_clone(pref, [h.HG72], args.out / "profile-stream", 1000, 10))
    return 0


if __name__ == "__main__":
    sys.exit(main())
