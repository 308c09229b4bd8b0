"""Frame protocol benchmark: hgwire against Mercurial 6.0's ``wireprotoframing``/``cborutil``.

One run, same inputs, interleaved rounds, medians. Cases:

* ``encode-<enc>``: a ~100 MB command response (many CBOR values plus large byte strings)
  turned into frames by a server reactor, for ``identity`` and ``zstd-8mb``;
* ``decode-<enc>``: the frames Mercurial's server produced for that response, fed to a
  client reactor (hgwire: in 64 KiB pieces) and decoded back into the objects;
* ``cbor-small``: 1,000,000 small CBOR values decoded from 4 KiB chunks;
* raw python-zstandard streaming compression/decompression of the same response bytes,
  the ceiling for the zstd-8mb cases.

Mercurial's side runs in its own virtualenv: this file re-runs itself there with
``--hg-worker`` (which imports only Mercurial and the standard library) and times itself
on the inputs written to a temporary directory by the main process.

Usage: ``.venv/bin/python bench/bench_wire.py [--rounds 5] [--size-mb 100]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import pickle
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: hg 6.0's virtualenv python (next to ``$HGWIRE_HG60`` if set, as in the tests).
HG60_PYTHON = (
    Path(os.environ["HGWIRE_HG60"]).parent / "python"
    if os.environ.get("HGWIRE_HG60")
    else Path(os.environ.get("HGWIRE_CACHE", Path.home() / ".cache" / "hgwire"))
    / "hg-6.0"
    / "bin"
    / "python"
)
ENCODINGS = ("identity", "zstd-8mb")
#: CPU seconds of this process: every measured operation is single-threaded, and on a
#: shared machine CPU time is far steadier than wall time (``--wall`` switches).
CLOCK = time.process_time
CHUNK_DECODE = 65536
CHUNK_CBOR = 4096
RAW_FEED = 1 << 20
FRAME = 32768


# --------------------------------------------------------------------------------------
# Inputs (generated once, by the main process, from a seed)
# --------------------------------------------------------------------------------------


def make_corpus(rng: random.Random, size: int) -> bytes:
    """Text-like bytes (source-code-ish lines) that compress roughly like revlog data."""
    letters = "abcdefghijklmnopqrstuvwxyz_"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(4000)]
    words += ["def", "return", "if", "else", "for", "in", "(", ")", ":", "=", "self", "0"]
    out: list[str] = []
    total = 0
    while total < size:
        line = " " * (4 * rng.randint(0, 3)) + " ".join(rng.choices(words, k=rng.randint(1, 12)))
        out.append(line)
        total += len(line) + 1
    return ("\n".join(out) + "\n").encode()[:size]


def make_response(seed: int, size: int) -> list[Any]:
    """Objects of one big command response, like a ``filesdata`` reply (~``size`` bytes)."""
    rng = random.Random(seed)
    corpus = make_corpus(rng, 16 << 20)
    objs: list[Any] = [{b"totalitems": 0, b"totalpaths": 1}]
    total = 0
    rev = 0
    while total < size:
        large = rng.random() < 0.002
        n = rng.randint(100_000, 2_000_000) if large else rng.randint(50, 4_000)
        n = min(n, len(corpus) - 1)
        off = rng.randrange(0, len(corpus) - n)
        data = corpus[off : off + n]
        objs.append(
            {
                b"node": rng.randbytes(20),
                b"parents": [rng.randbytes(20), b"\x00" * 20],
                b"linknode": rng.randbytes(20),
                b"revision": rev,
                b"fieldsfollowing": [[b"revision", n]],
            }
        )
        objs.append(data)
        rev += 1
        total += n + 110
    objs[0][b"totalitems"] = rev
    return objs


def make_small_values(seed: int, count: int) -> list[Any]:
    """``count`` small values: integers, short byte strings, tiny arrays/maps/sets, atoms."""
    rng = random.Random(seed + 1)
    out: list[Any] = []
    for i in range(count):
        k = i % 10
        if k in (0, 1):
            out.append(rng.randint(-(2**40), 2**40) if k else rng.randint(0, 1000))
        elif k in (2, 3):
            out.append(rng.randbytes(rng.randint(0, 40)))
        elif k == 4:
            out.append([rng.randbytes(20), rng.randint(0, 100000)])
        elif k == 5:
            out.append({b"node": rng.randbytes(20), b"rev": rng.randint(0, 100000)})
        elif k == 6:
            out.append(rng.choice([True, False, None]))
        elif k == 7:
            out.append({b"phase": b"public", b"bookmarks": [], b"revisionsize": rng.randint(0, 9)})
        elif k == 8:
            out.append({rng.randbytes(3), rng.randbytes(3)})
        else:
            out.append([b"revision", rng.randint(0, 2**20), [b"a", b"b"]])
    return out


# --------------------------------------------------------------------------------------
# Mercurial 6.0 side (runs in hg's virtualenv; imports mercurial lazily)
# --------------------------------------------------------------------------------------


def _hg_encode(objs: list[Any], encoding: str) -> list[bytes]:
    from mercurial import wireprotoframing as wf  # type: ignore[import-not-found]
    from mercurial.utils import cborutil  # type: ignore[import-not-found]

    server = wf.serverreactor(None, deferoutput=False)
    settings = b"".join(cborutil.streamencode({b"contentencodings": [encoding.encode()]}))
    request = b"".join(cborutil.streamencode({b"name": b"filesdata"}))
    server.onframerecv(wf.frame(1, 1, wf.STREAM_FLAG_BEGIN_STREAM, 8, 2, settings))
    action, meta = server.onframerecv(wf.frame(1, 1, 0, 1, 1, request))
    assert action == b"runcommand", (action, meta)
    stream = server.makeoutputstream()
    action, meta = server.oncommandresponsereadyobjects(stream, 1, iter(objs))
    assert action == b"sendframes"
    return [bytes(f) for f in meta[b"framegen"]]


def _hg_decode(data: bytes, encoding: str) -> list[Any]:
    import io

    from mercurial import wireprotoframing as wf
    from mercurial.utils import cborutil

    client = wf.clientreactor(None, clientcontentencoders=[encoding.encode()])
    client.callcommand(b"filesdata", {})
    for _ in client.flushcommands()[1][b"framegen"]:
        pass
    decoder = cborutil.bufferingdecoder()
    objs: list[Any] = []
    fh = io.BytesIO(data)
    while True:
        frame = wf.readframe(fh)
        if frame is None:
            break
        action, meta = client.onframerecv(frame)
        if action == b"responsedata":
            decoder.decode(meta[b"data"])
            objs.extend(decoder.getavailable())
        elif action != b"noop":
            raise RuntimeError(f"unexpected action {action!r} {meta!r}")
    return objs


def _hg_cbor_decode(data: bytes) -> list[Any]:
    from mercurial.utils import cborutil

    decoder = cborutil.bufferingdecoder()
    out: list[Any] = []
    for i in range(0, len(data), CHUNK_CBOR):
        decoder.decode(data[i : i + CHUNK_CBOR])
        out.extend(decoder.getavailable())
    return out


def hg_worker() -> None:
    """Serve timing requests from the main process (JSON lines on stdin/stdout)."""
    from mercurial.utils import cborutil

    state: dict[str, Any] = {}
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        reply: dict[str, Any] = {}
        if op == "load":
            tmp = Path(req["dir"])
            with open(tmp / "response.pickle", "rb") as fh:
                state["objs"] = pickle.load(fh)
            with open(tmp / "small.pickle", "rb") as fh:
                small = pickle.load(fh)
            # Inputs both sides decode: Mercurial's own encodings.
            state["small.cbor"] = b"".join(b"".join(cborutil.streamencode(v)) for v in small)
            (tmp / "small.cbor").write_bytes(state["small.cbor"])
            for enc in ENCODINGS:
                state[enc] = b"".join(_hg_encode(state["objs"], enc))
                (tmp / f"frames-{enc}.bin").write_bytes(state[enc])
        elif op == "encode":
            gc.collect()
            t0 = CLOCK()
            frames = _hg_encode(state["objs"], req["encoding"])
            reply["seconds"] = CLOCK() - t0
            reply["bytes"] = sum(len(f) for f in frames)
            reply["frames"] = len(frames)
        elif op == "decode":
            data = state[req["encoding"]]
            gc.collect()
            t0 = CLOCK()
            objs = _hg_decode(data, req["encoding"])
            reply["seconds"] = CLOCK() - t0
            reply["values"] = len(objs)
        elif op == "cbor":
            data = state["small.cbor"]
            gc.collect()
            t0 = CLOCK()
            values = _hg_cbor_decode(data)
            reply["seconds"] = CLOCK() - t0
            reply["values"] = len(values)
        elif op == "quit":
            return
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class HgWorker:
    """The Mercurial side, in a subprocess running this file under hg 6.0's python."""

    def __init__(self, wall: bool) -> None:
        if not HG60_PYTHON.is_file():
            raise SystemExit(f"Mercurial 6.0 not installed at {HG60_PYTHON}")
        env = dict(os.environ, HGRCPATH="", HGPLAIN="1")
        self.proc = subprocess.Popen(
            [str(HG60_PYTHON), __file__, "--hg-worker", *(["--wall"] if wall else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def call(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("Mercurial worker died")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# --------------------------------------------------------------------------------------
# python-zstandard raw streaming (ceiling for zstd-8mb)
# --------------------------------------------------------------------------------------


def payloads(frames: bytes) -> Iterator[memoryview]:
    """The payloads of the response frames in ``frames`` (identity stream: the CBOR bytes)."""
    view = memoryview(frames)
    offset = 0
    while offset < len(view):
        length = view[offset] | (view[offset + 1] << 8) | (view[offset + 2] << 16)
        if view[offset + 7] >> 4 == 3:
            yield view[offset + 8 : offset + 8 + length]
        offset += 8 + length


def raw_zstd_compress(data: bytes) -> tuple[float, bytes]:
    """Seconds to stream-compress ``data`` at level 3 (1 MiB feeds, one block flush)."""
    import zstandard

    gc.collect()
    t0 = CLOCK()
    cobj = zstandard.ZstdCompressor(level=3).compressobj()
    view = memoryview(data)
    out = [cobj.compress(view[i : i + RAW_FEED]) for i in range(0, len(view), RAW_FEED)]
    out.append(cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    seconds = CLOCK() - t0
    return seconds, b"".join(out)


def raw_zstd_decompress(compressed: bytes) -> tuple[float, int]:
    """Seconds to stream-decompress ``compressed`` fed in frame-sized (32 KiB) pieces."""
    import zstandard

    gc.collect()
    t0 = CLOCK()
    dobj = zstandard.ZstdDecompressor(max_window_size=8 << 20).decompressobj()
    view = memoryview(compressed)
    total = 0
    for i in range(0, len(view), FRAME):
        total += len(dobj.decompress(view[i : i + FRAME]))
    return CLOCK() - t0, total


# --------------------------------------------------------------------------------------
# hgwire side
# --------------------------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t0 = CLOCK()
    result = fn()
    return CLOCK() - t0, result


def ours_encode(objs: list[Any], encoding: str) -> list[bytes | memoryview]:
    """hgwire's server reactor turning ``objs`` into frames on a stream using ``encoding``.

    The result is what a transport writes: headers and (zero-copy) payloads.
    """
    from hgwire.wire import cbor
    from hgwire.wire.events import RunCommand, SendFrames
    from hgwire.wire.server import ServerReactor

    server = ServerReactor()
    settings = cbor.dumps({b"contentencodings": [encoding.encode()]})
    request = cbor.dumps({b"name": b"filesdata"})
    body = (
        _frame(1, 1, 1, 8, 2, settings) + _frame(1, 1, 0, 1, 1, request)  # settings, request
    )
    events = server.receive_data(body)
    assert isinstance(events[-1], RunCommand), events
    stream = server.output_stream()
    sent = server.on_command_response_objects(stream, 1, objs)
    assert isinstance(sent, SendFrames)
    return list(sent.iter_chunks())


def _frame(rid: int, sid: int, sflags: int, ftype: int, flags: int, payload: bytes) -> bytes:
    n = len(payload)
    return (
        bytes([n & 0xFF, (n >> 8) & 0xFF, n >> 16, rid & 0xFF, rid >> 8, sid, sflags])
        + bytes([(ftype << 4) | flags])
        + payload
    )


def ours_decode(data: bytes, encoding: str) -> list[Any]:
    """hgwire's client reactor decoding a response fed in 64 KiB pieces (objects after status)."""
    from hgwire.wire.client import ClientReactor
    from hgwire.wire.events import ProtocolErrorEvent

    client = ClientReactor(content_encodings=[encoding.encode()])
    response, _ = client.call_command(b"filesdata", {})
    client.flush_commands().to_bytes()  # type: ignore[union-attr]
    view = memoryview(data)
    for i in range(0, len(view), CHUNK_DECODE):
        for event in client.receive_data(view[i : i + CHUNK_DECODE]):
            if isinstance(event, ProtocolErrorEvent):
                raise RuntimeError(event.message)
    values = response.take()
    return values[1:]


def ours_cbor_decode(data: bytes) -> list[Any]:
    """hgwire's streaming CBOR decoder fed 4 KiB chunks."""
    from hgwire.wire.cbor import Decoder

    decoder = Decoder()
    out: list[Any] = []
    view = memoryview(data)
    for i in range(0, len(view), CHUNK_CBOR):
        out += decoder.feed(view[i : i + CHUNK_CBOR])
    decoder.finish()
    return out


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def _fmt_rate(mb: float, seconds: float) -> str:
    return f"{mb / seconds:,.1f}" if seconds else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mb", type=float, default=100.0)
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20181)
    parser.add_argument("--hg-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only", action="append", help="run only the named cases")
    parser.add_argument("--wall", action="store_true", help="time wall clock, not CPU time")
    args = parser.parse_args(argv)
    if args.wall:
        global CLOCK
        CLOCK = time.perf_counter
    if args.hg_worker:
        hg_worker()
        return 0

    print(f"generating inputs (seed {args.seed})...", file=sys.stderr)
    objs = make_response(args.seed, int(args.size_mb * 1_000_000))
    small = make_small_values(args.seed, args.values)
    worker = HgWorker(args.wall)
    with tempfile.TemporaryDirectory(prefix="hgwire-bench-") as tmpname:
        tmp = Path(tmpname)
        with open(tmp / "response.pickle", "wb") as fh:
            pickle.dump(objs, fh, protocol=pickle.HIGHEST_PROTOCOL)
        with open(tmp / "small.pickle", "wb") as fh:
            pickle.dump(small, fh, protocol=pickle.HIGHEST_PROTOCOL)
        worker.call(op="load", dir=str(tmp))
        frames = {enc: (tmp / f"frames-{enc}.bin").read_bytes() for enc in ENCODINGS}
        small_cbor = (tmp / "small.cbor").read_bytes()
    raw = b"".join(payloads(frames["identity"]))
    mb = len(raw) / 1e6
    print(
        f"response: {len(objs)} values, {mb:.1f} MB of CBOR; zstd-8mb frames "
        f"{len(frames['zstd-8mb']) / 1e6:.1f} MB; small: {len(small)} values, "
        f"{len(small_cbor) / 1e6:.1f} MB",
        file=sys.stderr,
    )

    def hg_case(**req: Any) -> Callable[[], dict[str, Any]]:
        return lambda: worker.call(**req)

    def our_case(fn: Callable[[], Any]) -> Callable[[], float]:
        return lambda: _timed(fn)[0]

    cases: list[tuple[str, float, Callable[[], dict[str, Any]], Callable[[], float]]] = []
    for enc in ENCODINGS:
        cases.append(
            (
                f"encode {enc}",
                mb,
                hg_case(op="encode", encoding=enc),
                our_case(functools.partial(ours_encode, objs, enc)),
            )
        )
    for enc in ENCODINGS:
        cases.append(
            (
                f"decode {enc}",
                mb,
                hg_case(op="decode", encoding=enc),
                our_case(functools.partial(ours_decode, frames[enc], enc)),
            )
        )
    cases.append(
        (
            f"cbor {len(small):,} small values",
            len(small_cbor) / 1e6,
            hg_case(op="cbor"),
            our_case(functools.partial(ours_cbor_decode, small_cbor)),
        )
    )
    if args.only:
        cases = [c for c in cases if any(o in c[0] for o in args.only)]

    # Correctness first (not timed): hgwire must produce what Mercurial produces.
    check_outputs(objs, small, frames, small_cbor, [c[0] for c in cases])

    hg_times: dict[str, list[float]] = {c[0]: [] for c in cases}
    our_times: dict[str, list[float]] = {c[0]: [] for c in cases}
    raw_c: list[float] = []
    raw_d: list[float] = []
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
        for name, _mb, hg_run, our_run in cases:
            hg_times[name].append(hg_run()["seconds"])
            our_times[name].append(our_run())
        secs, compressed = raw_zstd_compress(raw)
        raw_c.append(secs)
        raw_d.append(raw_zstd_decompress(compressed)[0])
    worker.close()

    raw_c_med = statistics.median(raw_c)
    raw_d_med = statistics.median(raw_d)
    print()
    print(
        f"Medians of {args.rounds} interleaved rounds ({'wall' if args.wall else 'CPU'} "
        "seconds); throughput in MB/s of uncompressed CBOR; speed-up = hg time / hgwire "
        "time (target >= 3x); hgwire / raw zstd = hgwire's throughput over python-zstandard's "
        "(target >= 0.5)."
    )
    print()
    print(
        "| case | MB | hg 6.0 s | hgwire s | hg 6.0 MB/s | hgwire MB/s | speed-up "
        "| raw zstd MB/s | hgwire / raw zstd |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, size, _h, _o in cases:
        hg_med = statistics.median(hg_times[name])
        our_med = statistics.median(our_times[name])
        raw_col = raw_ratio = "-"
        if "zstd" in name:
            raw_med = raw_c_med if name.startswith("encode") else raw_d_med
            raw_col = _fmt_rate(size, raw_med)
            raw_ratio = f"{raw_med / our_med:.2f}" if our_med else "-"
        print(
            f"| {name} | {size:.1f} | {hg_med:.3f} | {our_med:.3f} | {_fmt_rate(size, hg_med)} "
            f"| {_fmt_rate(size, our_med)} | {hg_med / our_med:.2f}x | {raw_col} | {raw_ratio} |"
        )
    print()
    print(
        f"raw python-zstandard (level 3, streaming): compress {_fmt_rate(mb, raw_c_med)} MB/s, "
        f"decompress {_fmt_rate(mb, raw_d_med)} MB/s"
    )
    return 0


def check_outputs(
    objs: list[Any], small: list[Any], frames: dict[str, bytes], small_cbor: bytes, names: list[str]
) -> None:
    """Check hgwire's results against the inputs before timing anything."""
    for enc in ENCODINGS:
        if f"decode {enc}" in names and ours_decode(frames[enc], enc) != objs:
            raise SystemExit(f"hgwire decoded the {enc} response wrongly")
        if f"encode {enc}" in names:
            data = b"".join(ours_encode(objs, enc))
            if ours_decode(data, enc) != objs:
                raise SystemExit(f"hgwire's {enc} frames do not decode back to the objects")
    if any(n.startswith("cbor") for n in names) and ours_cbor_decode(small_cbor) != small:
        raise SystemExit("hgwire decoded the small CBOR values wrongly")


if __name__ == "__main__":
    sys.exit(main())
