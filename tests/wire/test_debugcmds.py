"""``hgwire debugframes encode|decode`` through the CLI entry point."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from hgwire import cli
from hgwire.wire.frames import read_frames
from hgwire.wire.human import parse_human_frame

HEADS = "1 1 stream-begin command-request new cbor:{b'name': b'heads'}"
HEADS_HEX = "0c00000100010111a1446e616d65456865616473"
DATA = "1 1 0 command-data eos some\\x00bytes"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(["debugframes", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_encode_prints_one_hex_line_per_frame(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "encode", HEADS, DATA)
    assert status == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == HEADS_HEX
    (frame,) = read_frames(bytes.fromhex(lines[1]))
    assert frame.payload == b"some\x00bytes"
    assert frame.to_bytes() == parse_human_frame(DATA).to_bytes()


def test_decode_hex_prints_human_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    data_hex = parse_human_frame(DATA).to_bytes().hex()
    status, out, _ = run(capsys, "decode", HEADS_HEX + data_hex)
    assert status == 0
    assert out.splitlines() == [HEADS, DATA]


def test_decode_hex_split_over_arguments_and_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "decode", HEADS_HEX[:10], HEADS_HEX[10:20] + " " + HEADS_HEX[20:])
    assert status == 0
    assert out == HEADS + "\n"


def test_decode_raw_payloads(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "decode", "--raw-payloads", HEADS_HEX)
    assert status == 0
    line = out.strip()
    assert not line.split(" ", 5)[5].startswith("cbor:")
    assert parse_human_frame(line).to_bytes().hex() == HEADS_HEX


def test_decode_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    raw = bytes.fromhex(HEADS_HEX) * 2
    fake = io.TextIOWrapper(io.BytesIO(raw))
    monkeypatch.setattr(sys, "stdin", fake)
    status, out, _ = run(capsys, "decode", "-")
    assert status == 0
    assert out.splitlines() == [HEADS, HEADS]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["encode", "1 1 0 no-such-type 0 x"], "invalid frame type"),
        (["encode", "1 1"], "human frame needs"),
        (["encode", "70000 1 0 command-data 0 x"], "16 bits"),
        (["encode", "1 1 0 command-data eos cbor:{b'a': "], "invalid Python literal"),
        (["encode", "1 1 0 command-data eos cbor:__import__('os')"], "invalid Python literal"),
        (["encode", "1 1 0 command-data eos cbor:'text'"], "CBOR"),
        (["encode", "1 1 0 command-data eos bad\\x4"], "\\x escape"),
        (["decode", "zz"], "invalid hex"),
        (["decode", "0c0000"], "received incomplete frame: got 3 bytes"),
        (["decode", HEADS_HEX[:-4]], "frame length error: expected 12; got 10"),
        (["decode", "-", "00"], "cannot be combined"),
    ],
)
def test_bad_input_aborts_with_255(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, _, err = run(capsys, *argv)
    assert status == 255
    assert err.startswith("abort: ")
    assert message in err
    assert "Traceback" not in err


def test_decode_prints_frames_read_before_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "decode", HEADS_HEX + "0c00")
    assert status == 255
    assert out == HEADS + "\n"
    assert "received incomplete frame" in err


def test_subprocess_round_trip() -> None:
    enc = subprocess.run(
        [sys.executable, "-m", "hgwire", "debugframes", "encode", HEADS, DATA],
        capture_output=True,
        text=True,
        check=True,
    )
    dec = subprocess.run(
        [sys.executable, "-m", "hgwire", "debugframes", "decode", "-"],
        input=bytes.fromhex("".join(enc.stdout.split())),
        capture_output=True,
        check=True,
    )
    assert dec.stdout.decode().splitlines() == [HEADS, DATA]
    bad = subprocess.run(
        [sys.executable, "-m", "hgwire", "debugframes", "decode", "0c"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 255
    assert bad.stderr.startswith("abort: received incomplete frame")
    assert "Traceback" not in bad.stderr
