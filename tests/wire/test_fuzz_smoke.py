"""Hypothesis fuzzing of the frame protocol core (a few thousand cases per target).

The targets and their invariants live in ``fuzz/fuzz_wire.py`` (the long run); here
hypothesis drives them with mutated seeds and random bytes. Anything raised that is not an
:class:`~hgwire.errors.HgwireError` fails, as does a broken invariant. Huge length
announcements must not allocate more than 1 MiB.
"""

from __future__ import annotations

import importlib.util
import random
import sys
import tracemalloc
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hgwire.errors import HgwireError

FUZZ_SCRIPT = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_wire.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hgwire_fuzz_wire", FUZZ_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz_wire = _load()


@cache
def seeds(target: str) -> list[bytes]:
    found: list[bytes] = fuzz_wire.TARGETS[target].seeds()
    return found


@st.composite
def mutated(draw: st.DrawFn, target: str) -> bytes:
    """A seed of ``target`` with a few hypothesis-chosen edits."""
    pool = seeds(target)
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(0, 4))):
        n = len(data)
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice"]))
        pos = draw(st.integers(0, n))
        if kind == "flip" and pos < n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and pos < n:
            data[pos] = draw(st.sampled_from(fuzz_wire.INTERESTING) | st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "splice":
            other = draw(st.sampled_from(pool))
            data = data[:pos] + other[draw(st.integers(0, len(other))) :]
    return bytes(data)


def inputs(target: str) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), mutated(target), mutated(target))


def run(target: str, data: bytes, seed: int) -> str:
    """Run one case; returns ``accepted`` or the HgwireError subclass that rejected it."""
    try:
        fuzz_wire.TARGETS[target].run(data, random.Random(seed))
    except HgwireError as e:
        return type(e).__name__
    return "accepted"


FAST = settings(
    max_examples=2500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FAST
@given(data=inputs("frame-reader"), seed=st.integers(0, 2**16))
def test_fuzz_frame_reader(data: bytes, seed: int) -> None:
    assert run("frame-reader", data, seed) in {"accepted", "FrameError"}


@FAST
@given(data=inputs("cbor-decoder"), seed=st.integers(0, 2**16))
def test_fuzz_cbor_decoder(data: bytes, seed: int) -> None:
    assert run("cbor-decoder", data, seed) in {"accepted", "CBORDecodeError"}


@settings(FAST, max_examples=1500)
@given(data=inputs("server-reactor"), seed=st.integers(0, 2**16))
def test_fuzz_server_reactor(data: bytes, seed: int) -> None:
    # The server reactor reports violations as events; it never raises.
    assert run("server-reactor", data, seed) == "accepted"


@settings(FAST, max_examples=1500)
@given(data=inputs("client-reactor"), seed=st.integers(0, 2**16))
def test_fuzz_client_reactor(data: bytes, seed: int) -> None:
    # The client reactor reports violations as events; it never raises.
    assert run("client-reactor", data, seed) == "accepted"


#: Inputs the long fuzz run once failed on (kept as regressions).
FOUND = {
    # A status-error map whose message is b"%\xfb ..." with args: bytes formatting raised
    # OverflowError out of CommandError (errors.py).
    "client-reactor": [
        "7400000100020132a2456572726f72a244617267738247696e636c7564654a676c6f623a2a2e74"
        "7874476d657373616765583c25fb207061747465726e206d75737420626567696e207769746820"
        "60706174683a60206f722060726f6f7466696c6573696e3a603b20676f7420257346737461747573"
        "456572726f72"
    ],
}


@pytest.mark.parametrize(
    ("target", "hexdata"), [(t, h) for t, found in FOUND.items() for h in found]
)
def test_fuzz_regressions(target: str, hexdata: str) -> None:
    for seed in range(5):
        assert run(target, bytes.fromhex(hexdata), seed) == "accepted"


def test_seeds_are_accepted_unmutated() -> None:
    """The unmutated seeds are valid input: a sanity check of the targets themselves."""
    for data in seeds("cbor-decoder")[:50]:
        run("cbor-decoder", data, 0)
    results = {run("frame-reader", data, 0) for data in seeds("frame-reader")}
    assert "accepted" in results
    assert run("server-reactor", seeds("server-reactor")[0], 0) == "accepted"
    before = fuzz_wire.STATS["client ResponseComplete"]
    for data in seeds("client-reactor"):
        assert run("client-reactor", data, 0) == "accepted"
    assert fuzz_wire.STATS["client ResponseComplete"] > before


@pytest.mark.parametrize("target", sorted(fuzz_wire.TARGETS))
def test_huge_announcements_allocate_little(target: str) -> None:
    """Headers announcing 16 MiB (and CBOR heads announcing 2**63 bytes) allocate < 1 MiB."""
    big: list[bytes] = fuzz_wire.TARGETS[target].big_inputs
    assert big
    for data in big:
        tracemalloc.start()
        try:
            outcome = run(target, data, 0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < fuzz_wire.BIG_ALLOC, (data[:16].hex(), peak)
        assert outcome != "accepted" or target.endswith("reactor"), data[:16].hex()


def test_invariant_violation_is_caught() -> None:
    """The harness itself flags a non-HgwireError (guards against a vacuous fuzz run)."""

    def broken(data: bytes, rng: random.Random) -> Any:
        raise IndexError("boom")

    target = fuzz_wire.Target("broken", lambda: [b"x"], broken)
    report = fuzz_wire.fuzz(target, 5, 0, 5.0)
    assert len(report.failures) == 5
    assert report.accepted == report.rejected == 0
