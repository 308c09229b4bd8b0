"""Long fuzz run of the frame protocol core: frame reader, CBOR decoder, both reactors.

Each case is a mutated seed (conformance vectors recorded from Mercurial 6.0 plus frames
from hgwire's own builders) or random bytes, fed in random fragments. Any exception that
does not derive from :class:`hgwire.errors.HgwireError` is a failure, as is a broken
invariant or a case running longer than ``--case-timeout``. Memory: each target also gets
"huge announcement" inputs (a frame header announcing 16 MiB with 10 bytes behind it, CBOR
heads announcing 2**63-byte strings or 2**32-item arrays) whose traced peak must stay
under 1 MiB, and the peak traced allocation of the whole run is reported per target.

Usage: ``.venv/bin/python fuzz/fuzz_wire.py --cases 100000 [--seed N] [--target NAME]``.
Exit status 1 on any failure; failing inputs are printed as hex.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import sys
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType as PyFrame
from typing import Any

from hgwire.errors import CBORDecodeError, HgwireError
from hgwire.wire import cbor, frames, streams
from hgwire.wire.client import ClientReactor
from hgwire.wire.events import (
    CommandFailed,
    ErrorResponse,
    NoOp,
    Progress,
    ProtocolErrorEvent,
    Redirect,
    ResponseComplete,
    ResponseData,
    ResponseObjects,
    RunCommand,
    SendFrames,
    TextOutput,
    WantFrame,
)
from hgwire.wire.server import ServerReactor

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT.parent / "shared" / "vectors"
BIG_ALLOC = 1 << 20

INTERESTING = [0x00, 0x01, 0x02, 0x04, 0x08, 0x0F, 0x10, 0x17, 0x18, 0x19, 0x1A, 0x1B]
INTERESTING += [0x1C, 0x1F, 0x3B, 0x40, 0x5B, 0x5F, 0x7F, 0x80, 0x9F, 0xA0, 0xBF, 0xC0]
INTERESTING += [0xD9, 0xF4, 0xF5, 0xF6, 0xF7, 0xF9, 0xFB, 0xFF]


#: What the reactor targets saw (event kinds), to show the fuzzing goes deep.
STATS: Counter[str] = Counter()


class CaseTimeout(Exception):
    """A single case ran longer than allowed."""


class InvariantError(AssertionError):
    """A target's output contradicts its input."""


# --------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------


def _load(name: str) -> dict[str, Any]:
    path = VECTORS / name
    if not path.is_file():
        return {"cases": []}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _hexes(obj: Any, keys: tuple[str, ...]) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in keys and isinstance(v, str):
                yield v
            else:
                yield from _hexes(v, keys)
    elif isinstance(obj, list):
        for v in obj:
            yield from _hexes(v, keys)


def _unhex(values: Iterator[str]) -> list[bytes]:
    out: list[bytes] = []
    for v in values:
        try:
            out.append(bytes.fromhex(v))
        except ValueError:
            continue
    return out


def frame_seeds() -> list[bytes]:
    """Every frame and frame sequence in the vectors."""
    seeds = _unhex(_hexes(_load("frames.json"), ("frame_hex", "input_hex", "header_hex", "hex")))
    seeds += client_to_server_seeds() + server_to_client_seeds()
    seeds += builder_client_seeds() + builder_server_seeds()
    return [s for s in dict.fromkeys(seeds) if s]


def cbor_seeds() -> list[bytes]:
    """Every CBOR encoding in the vectors, plus frame payloads that are CBOR."""
    seeds = _unhex(_hexes(_load("cbor.json"), ("encoded_hex", "input_hex")))
    return [s for s in dict.fromkeys(seeds) if s]


def client_to_server_seeds() -> list[bytes]:
    """Client byte streams: frames fed to 6.0's server reactor, and 6.0 client output."""
    seeds: list[bytes] = []
    for case in _load("server_reactor.json")["cases"]:
        fed = [s["frame_hex"] for s in case.get("steps", []) if s.get("op") == "frame"]
        if fed:
            seeds.append(bytes.fromhex("".join(fed)))
    for case in _load("client_reactor.json")["cases"]:
        out = []
        for step in case.get("steps", []):
            if step.get("op") in ("callcommand", "flushcommands"):
                out += [f["hex"] for f in step.get("result", {}).get("frames", [])]
        if out:
            seeds.append(bytes.fromhex("".join(out)))
        if "request_body_hex" in case:
            seeds.append(bytes.fromhex(case["request_body_hex"]))
    for case in _load("http_v2_exchange.json")["cases"]:
        if case["request"].get("frames"):
            seeds.append(bytes.fromhex(case["request"]["body_hex"]))
    return seeds


def server_to_client_seeds() -> list[bytes]:
    """Server byte streams: 6.0 server reactor output and frames fed to its client reactor."""
    seeds: list[bytes] = []
    for case in _load("server_reactor.json")["cases"]:
        out = []
        for step in case.get("steps", []):
            if step.get("op") != "frame":
                out += [f["hex"] for f in step.get("result", {}).get("frames", [])]
        if out:
            seeds.append(bytes.fromhex("".join(out)))
    for case in _load("client_reactor.json")["cases"]:
        fed = [s["frame_hex"] for s in case.get("steps", []) if s.get("op") == "frame"]
        fed += [f["hex"] for f in case.get("response_frames", [])]
        if fed:
            seeds.append(bytes.fromhex("".join(fed)))
    for case in _load("http_v2_exchange.json")["cases"]:
        if case["response"].get("frames"):
            seeds.append(bytes.fromhex(case["response"]["body_hex"]))
    return seeds


def builder_client_seeds() -> list[bytes]:
    """Client byte streams made by hgwire's own frame builders."""
    rng = random.Random(7)
    seeds: list[bytes] = []
    for i in range(24):
        out = streams.OutputStream(1)
        parts: list[bytes] = []
        if i % 3:
            encs = [b"zstd-8mb", b"zlib", b"identity"][: 1 + i % 3]
            parts.append(frames.create_sender_protocol_settings_frame(out, 1, encs).to_bytes())
        for rid in range(1, 2 + 2 * (i % 3), 2):
            args = {b"key%d" % k: rng.randbytes(rng.randint(0, 30)) for k in range(i % 4)}
            data = None if i % 2 else rng.randbytes(rng.choice([0, 5, 32768, 40000]))
            if i % 5 == 0:
                args[b"big"] = rng.randbytes(40000)
            parts += [
                f.to_bytes()
                for f in frames.create_command_frames(out, rid, b"cmd%d" % i, args, data)
            ]
        seeds.append(b"".join(parts))
    return seeds


def builder_server_seeds() -> list[bytes]:
    """Server byte streams made by hgwire's server reactor (all three encodings)."""
    rng = random.Random(8)
    seeds: list[bytes] = []
    for i, enc in enumerate(["identity", "zlib", "zstd-8mb"] * 4):
        reactor = ServerReactor()
        reactor.client_encodings = [enc.encode()]
        stream = reactor.output_stream()
        parts: list[bytes] = []
        for rid in (1, 3, 5)[: 1 + i % 3]:
            reactor._active.add(rid)  # as if the request had been received
            objs: list[Any] = [
                {b"node": rng.randbytes(20), b"n": rng.randint(-5, 2**40)},
                rng.randbytes(rng.choice([3, 100, 40000])),
                [True, None, {b"a", b"b"}],
            ]
            if i % 4 == 3:
                objs.append(cbor.IndefiniteBytes([b"ab", b"cde"]))
            sent = reactor.on_command_response_objects(stream, rid, iter(objs))
            assert isinstance(sent, SendFrames)
            parts.append(sent.to_bytes())
        seeds.append(b"".join(parts))
    return seeds


# --------------------------------------------------------------------------------------
# Mutation
# --------------------------------------------------------------------------------------


#: Frame types weighted towards the ones each side handles.
CLIENT_SENDS = [1, 1, 1, 2, 2, 8, 8, 3, 9, 0, 4, 15]
SERVER_SENDS = [3, 3, 3, 5, 9, 9, 6, 7, 1, 8, 0, 4, 15]


def structured(rng: random.Random, payloads: list[bytes], from_client: bool) -> bytes:
    """Well-formed frames with plausible but random ids, flags and types.

    Header mutation mostly trips the first checks; these frames get past them and reach
    the reactors' deeper states (interleaved requests, settings, encoded payloads).
    """
    own, other = (1, 2) if from_client else (2, 1)
    types = CLIENT_SENDS if from_client else SERVER_SENDS
    out: list[bytes] = []
    for i in range(rng.randint(1, 8)):
        rid = rng.choice([1, 1, 3, 5, 0, rng.randrange(1 << 16)])
        sid = rng.choice([own, own, own, own + 2, other, rng.randrange(256)])
        sflags = 1 if i == 0 and rng.random() < 0.8 else rng.choice([0, 0, 0, 4, 2, 1, 5, 7])
        ftype = rng.choice(types)
        flags = rng.choice([1, 2, 1, 2, 0, 4, 5, 8, 9, 3, 12, 15])
        roll = rng.random()
        if roll < 0.6 and payloads:
            payload = rng.choice(payloads)[: rng.choice([64, 4096, 32768])]
        elif roll < 0.8:
            payload = rng.choice([b"\x48identity", b"\x44zlib", b"\x48zstd-8mb", b"\xa0"])
        else:
            payload = rng.randbytes(rng.randint(0, 40))
        out.append(frames.make_frame(rid, sid, sflags, ftype, flags, payload).to_bytes())
    return b"".join(out)


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    """A random input: mostly a seed with 1-4 mutations, sometimes pure random bytes."""
    roll = rng.random()
    if roll < 0.08 or not seeds:
        return rng.randbytes(rng.randint(0, 300))
    data = bytearray(rng.choice(seeds))
    if roll < 0.12:
        return bytes(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        n = len(data)
        if op == 0 and n:
            i = rng.randrange(n)
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            data[rng.randrange(n)] = rng.choice(INTERESTING)
        elif op == 2:
            i = rng.randint(0, n)
            data[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and n:
            i = rng.randrange(n)
            del data[i : i + rng.randint(1, 16)]
        elif op == 4 and n:
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 64))
            k = rng.randint(0, n)
            data[k:k] = data[i:j]
        elif op == 5:
            other = rng.choice(seeds)
            i = rng.randint(0, n)
            j = rng.randint(0, len(other))
            data = data[:i] + other[j:]
        elif op == 6 and n:
            del data[rng.randrange(n) :]
        elif op == 7 and n >= 3:
            # A frame length field with extreme values (first header or a random offset).
            i = 0 if rng.random() < 0.5 else rng.randrange(n - 2)
            data[i : i + 3] = rng.choice([b"\xff\xff\xff", b"\x00\x80\x00", b"\x01\x00\x01"])
        elif op == 8 and n:
            # A CBOR-ish head with a huge argument.
            i = rng.randrange(n)
            head = rng.choice([0x1B, 0x3B, 0x5B, 0x9B, 0xBB, 0x5A, 0x9A, 0xBA])
            data[i : i + 1] = bytes([head]) + b"\xff" * (8 if head & 0x1F == 0x1B else 4)
        else:
            data += rng.randbytes(rng.randint(1, 8))
    return bytes(data)


def fragments(rng: random.Random, data: bytes) -> list[bytes]:
    """``data`` cut at random places (sometimes whole, sometimes byte by byte)."""
    roll = rng.random()
    if roll < 0.2:
        return [data]
    if roll < 0.3 and len(data) <= 2048:
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(1, 8))))
    pieces = []
    prev = 0
    for c in [*cuts, len(data)]:
        pieces.append(data[prev:c])
        prev = c
    return pieces


# --------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------


@dataclass
class Target:
    """One thing to fuzz: seed inputs, a runner and the memory probes."""

    name: str
    seeds: Callable[[], list[bytes]]
    run: Callable[[bytes, random.Random], None]
    big_inputs: list[bytes] = field(default_factory=list)
    #: Decompression bombs: bounded by the stream output limit (64 MiB), reported apart.
    bomb_inputs: Callable[[], list[bytes]] = lambda: []
    #: None, or which side's well-formed random frames to mix in (``structured``).
    frames_from_client: bool | None = None


def run_frame_reader(data: bytes, rng: random.Random) -> None:
    """Feed the frame reader; re-serialising the frames must give back the bytes consumed."""
    max_payload = rng.choice([frames.MAX_PAYLOAD_LENGTH, frames.DEFAULT_MAX_FRAME_SIZE, 16])
    reader = frames.FrameReader(max_payload=max_payload)
    got: list[frames.Frame] = []
    try:
        for piece in fragments(rng, data):
            got += reader.feed(piece)
    finally:
        consumed = b"".join(f.to_bytes() for f in got)
        if not data.startswith(consumed):
            raise InvariantError("frames do not re-serialise to the input")
        for f in got:
            if len(f.payload) > max_payload:
                raise InvariantError("frame longer than max_payload accepted")
    if len(consumed) + reader.buffered != len(data):
        raise InvariantError("bytes lost or duplicated by the reader")
    reader.eof()
    if reader.buffered:
        raise InvariantError("eof() accepted a partial frame")


def _decode_pieces(pieces: list[bytes], fast: bool) -> tuple[list[Any], str | None]:
    decoder = cbor.Decoder()
    decoder._fast = fast
    values: list[Any] = []
    try:
        for piece in pieces:
            values += decoder.feed(piece)
        decoder.finish()
    except HgwireError as e:
        return values, type(e).__name__
    return values, None


def run_cbor(data: bytes, rng: random.Random) -> None:
    """Decode at once and in fragments, with the fast and the exact engine: all agree.

    Every decoded value must also survive an encode/decode round trip.
    """
    pieces = fragments(rng, data)
    fast = _decode_pieces(pieces, True)
    exact = _decode_pieces(pieces, False)
    whole = _decode_pieces([data], rng.random() < 0.5)
    if fast != exact or fast[1] != whole[1] or (fast[1] is None and fast != whole):
        raise InvariantError(f"engines disagree: fast {fast!r} exact {exact!r} whole {whole!r}")
    for value in fast[0]:
        if not isinstance(value, cbor.BytestringChunk):
            again = cbor.loads(cbor.dumps(value))
            if again != value:
                raise InvariantError(f"round trip changed {value!r} into {again!r}")
    if fast[1] is not None:
        raise CBORDecodeError(fast[1])


def _check_output(data: bytes) -> None:
    for f in frames.read_frames(data):
        if f.stream_id % 2 or len(f.payload) > frames.DEFAULT_MAX_FRAME_SIZE:
            raise InvariantError(f"server sent a bad frame: {f!r}")


def run_server_reactor(data: bytes, rng: random.Random) -> None:
    """Feed a server reactor client bytes; answer every command; check what it sends."""
    reactor = ServerReactor(
        defer_output=rng.random() < 0.5,
        max_request_size=rng.choice([1 << 20, 100_000, 1000]),
        max_in_flight=rng.choice([256, 2]),
    )
    stream = None
    out: list[bytes] = []
    errored = False
    for piece in fragments(rng, data):
        for event in reactor.receive_data(piece):
            STATS["server " + type(event).__name__] += 1
            if isinstance(event, RunCommand):
                if errored:
                    raise InvariantError("command dispatched after a protocol error")
                if stream is None:
                    stream = reactor.output_stream()
                objs = [event.command, event.args, event.data, b"x" * rng.choice([0, 40000])]
                sent = reactor.on_command_response_objects(stream, event.request_id, objs)
                if isinstance(sent, SendFrames):
                    out.append(sent.to_bytes())
            elif isinstance(event, ProtocolErrorEvent):
                errored = True
            elif not isinstance(event, WantFrame | NoOp | SendFrames):
                raise InvariantError(f"unexpected event {event!r}")
    final = reactor.on_input_eof()
    if isinstance(final, SendFrames):
        out.append(final.to_bytes())
    _check_output(b"".join(out))


CLIENT_EVENTS = (
    ProtocolErrorEvent,
    NoOp,
    ResponseData,
    ResponseObjects,
    ResponseComplete,
    CommandFailed,
    ErrorResponse,
    Redirect,
    TextOutput,
    Progress,
)


def run_client_reactor(data: bytes, rng: random.Random) -> None:
    """Issue 1-3 commands, feed server bytes; every event is typed, values match the data."""
    encodings = rng.choice([None, [b"identity"], [b"zstd-8mb", b"zlib", b"identity"]])
    reactor = ClientReactor(content_encodings=encodings)
    responses = [reactor.call_command(b"cmd%d" % i, {b"a": i})[0] for i in range(rng.randint(1, 3))]
    flushed = reactor.flush_commands()
    if not isinstance(flushed, SendFrames):
        raise InvariantError(f"flush gave {flushed!r}")
    flushed.to_bytes()
    got: dict[int, list[Any]] = {r.request_id: [] for r in responses}
    for piece in fragments(rng, data):
        for event in reactor.receive_data(piece):
            STATS["client " + type(event).__name__] += 1
            if not isinstance(event, CLIENT_EVENTS):
                raise InvariantError(f"unexpected event {event!r}")
            if isinstance(event, ResponseObjects):
                got[event.request_id] += event.objects
    for event in reactor.on_input_eof():
        if not isinstance(event, ProtocolErrorEvent):
            raise InvariantError(f"unexpected event at eof {event!r}")
    for r in responses:
        if list(r) != got[r.request_id]:
            raise InvariantError("response values differ from the events' values")


def _zstd_bomb() -> bytes:
    """A server stream whose one encoded frame inflates 8 KiB into 64 MiB + 1 zeros."""
    import zstandard

    bomb = zstandard.ZstdCompressor(level=3).compress(b"\0" * ((64 << 20) + 1))
    settings = cbor.dumps(b"zstd-8mb")
    out = frames.make_frame(1, 2, 1, 9, 2, settings).to_bytes()
    for i in range(0, len(bomb), 32768):
        out += frames.make_frame(1, 2, 4, 3, 1, bomb[i : i + 32768]).to_bytes()
    return out


def _big_frame_header() -> bytes:
    # 16 MiB - 1 announced, 10 bytes present.
    return b"\xff\xff\xff\x01\x00\x01\x01\x11" + b"\xa1" * 10


BIG_CBOR = [
    b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff" + b"x" * 10,  # 2**63-byte string
    b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00" + b"\x00" * 10,  # 2**32-item array
    b"\xbb\x00\x00\x00\x01\x00\x00\x00\x00" + b"\x00" * 10,  # 2**32-pair map
    b"\xd9\x01\x02\x9a\xff\xff\xff\xff" + b"\x00" * 10,  # set of 2**32-1 items
    b"\x5a\x01\x00\x00\x00" + b"x" * 10,  # 16 MiB string
    b"\x81" * 100_000,  # deep nesting
    b"\x5f" + b"\x5a\x01\x00\x00\x00" + b"x" * 10,  # chunk announcing 16 MiB
]


TARGETS: dict[str, Target] = {
    "frame-reader": Target(
        "frame-reader", frame_seeds, run_frame_reader, [_big_frame_header(), b"\xff" * 8]
    ),
    "cbor-decoder": Target("cbor-decoder", cbor_seeds, run_cbor, BIG_CBOR),
    "server-reactor": Target(
        "server-reactor",
        lambda: client_to_server_seeds() + builder_client_seeds(),
        run_server_reactor,
        frames_from_client=True,
        big_inputs=[
            _big_frame_header(),
            b"\x0a\x00\x00\x01\x00\x01\x01\x11\xa1\x44name\x5a\x01\x00\x00\x00",
            b"\x0a\x00\x00\x01\x00\x01\x01\x14\xa1\x44name\x5a\x01\x00\x00\x00",
        ],
    ),
    "client-reactor": Target(
        "client-reactor",
        lambda: server_to_client_seeds() + builder_server_seeds(),
        run_client_reactor,
        frames_from_client=False,
        bomb_inputs=lambda: [_zstd_bomb()],
        big_inputs=[
            b"\xff\xff\xff\x01\x00\x02\x01\x31" + b"\xa1" * 10,
            # stream-settings identity, then a response announcing a 2**62-byte string.
            b"\x09\x00\x00\x01\x00\x02\x01\x92\x48identity"
            b"\x0b\x00\x00\x01\x00\x02\x04\x31\xa1\x46status\x42ok"
            b"\x0a\x00\x00\x01\x00\x02\x04\x31\x5b\x3f" + b"\xff" * 7 + b"x",
        ],
    ),
}


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def _on_alarm(signum: int, frame: PyFrame | None) -> None:
    raise CaseTimeout("case timed out")


@dataclass
class Report:
    """Counts for one target."""

    name: str
    cases: int = 0
    accepted: int = 0
    rejected: int = 0
    failures: list[tuple[bytes, str]] = field(default_factory=list)
    peak: int = 0
    big_peak: int = 0
    bomb_peak: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


def _one(target: Target, data: bytes, rng: random.Random, report: Report, timeout: float) -> None:
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        target.run(data, rng)
        report.accepted += 1
    except HgwireError as e:
        report.rejected += 1
        key = type(e).__name__
        report.errors[key] = report.errors.get(key, 0) + 1
    except (Exception, RecursionError) as e:  # any other exception is a finding
        report.failures.append((data, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def fuzz(target: Target, cases: int, seed: int, timeout: float) -> Report:
    """Run ``cases`` cases of ``target``."""
    rng = random.Random(seed)
    seeds = target.seeds()
    payloads = cbor_seeds() if target.frames_from_client is not None else []
    report = Report(target.name)
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        for data in target.big_inputs:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            _one(target, data, random.Random(0), report, timeout)
            report.big_peak = max(report.big_peak, tracemalloc.get_traced_memory()[1] - base)
            report.cases += 1
        if report.big_peak > BIG_ALLOC:
            report.failures.append((b"", f"huge announcement allocated {report.big_peak} bytes"))
        for data in target.bomb_inputs():
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            _one(target, data, random.Random(0), report, timeout)
            report.bomb_peak = max(report.bomb_peak, tracemalloc.get_traced_memory()[1] - base)
            report.cases += 1
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for i in range(cases):
            if target.frames_from_client is not None and rng.random() < 0.3:
                data = structured(rng, payloads, target.frames_from_client)
            else:
                data = mutate(rng, seeds)
            _one(target, data, rng, report, timeout)
            report.cases += 1
            if i % 20000 == 19999:
                print(f"  {target.name}: {i + 1} cases", file=sys.stderr, flush=True)
        report.peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    report.seconds = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("--case-timeout", type=float, default=5.0)
    parser.add_argument("--show", type=int, default=3, help="failing inputs shown per target")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.setrecursionlimit(10_000)

    reports = []
    for name in args.target or list(TARGETS):
        print(f"fuzzing {name}...", file=sys.stderr, flush=True)
        reports.append(fuzz(TARGETS[name], args.cases, args.seed, args.case_timeout))

    maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        "| target | cases | accepted | rejected (HgwireError) | failures | peak traced "
        "| huge-header peak | bomb peak | seconds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in reports:
        print(
            f"| {r.name} | {r.cases} | {r.accepted} | {r.rejected} | {len(r.failures)} "
            f"| {r.peak / 1024:.0f} KiB | {r.big_peak / 1024:.0f} KiB "
            f"| {f'{r.bomb_peak / 1048576:.1f} MiB' if r.bomb_peak else '-'} | {r.seconds:.0f} |"
        )
    print(f"\nprocess max RSS: {maxrss_kib / 1024:.0f} MiB")
    print(f"reactor events seen: {dict(sorted(STATS.items()))}")
    failed = False
    for r in reports:
        if r.errors:
            print(f"{r.name} rejections: {dict(sorted(r.errors.items()))}")
        for data, msg in r.failures[: args.show]:
            failed = True
            print(f"\nFAIL {r.name}: input {data[:512].hex()}\n{msg}")
        if r.failures:
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
