"""``hgwire debugframes``: build and inspect frames of the frame protocol (spec §1).

``encode`` turns human-readable frame lines (spec §1.7) into their bytes, printed as hex,
one line per frame; ``decode`` reads frames from hex arguments (or raw bytes on stdin with
``-``) and prints each in the human syntax, CBOR payloads decoded. Bad input is an
:class:`~hgwire.errors.HgwireError`, which the CLI reports as ``abort: ...`` (exit 255).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hgwire.errors import FrameError, HgwireError
from hgwire.wire.frames import MAX_PAYLOAD_LENGTH, FrameReader
from hgwire.wire.human import format_human_frame, parse_human_frame


def register(subparsers: Any) -> None:
    """Add the ``debugframes`` command to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "debugframes",
        help="encode or decode frames of the frame-based wire protocol",
        description=(
            "Encode frames written in the human-readable syntax of Mercurial's debug tools "
            "to bytes, or decode frame bytes to that syntax."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    enc = actions.add_parser(
        "encode",
        help="print the bytes (hex) of human-readable frames",
        description=(
            "Each FRAME is '<requestid> <streamid> <streamflags> <type> <flags> <payload>'; "
            "a payload 'cbor:<python literal>' is CBOR-encoded, any other is a bytes "
            "literal body with backslash escapes."
        ),
    )
    enc.add_argument("frames", nargs="+", metavar="FRAME", help="a frame in human syntax")
    enc.set_defaults(func=_encode)
    dec = actions.add_parser(
        "decode",
        help="print frames given as hex (or raw bytes on stdin with '-') in human syntax",
    )
    dec.add_argument(
        "data", nargs="+", metavar="HEX", help="frame bytes in hex (joined), or '-' for stdin"
    )
    dec.add_argument(
        "--raw-payloads",
        action="store_true",
        help="print every payload as escaped bytes, without decoding CBOR",
    )
    dec.set_defaults(func=_decode)


def _encode(args: argparse.Namespace) -> int:
    lines = []
    for text in args.frames:
        try:
            frame = parse_human_frame(text)
        except FrameError as exc:
            raise HgwireError(f"cannot encode frame {text!r}: {exc}") from None
        lines.append(frame.to_bytes().hex())
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def _read_input(items: list[str]) -> bytes:
    if items == ["-"]:
        return sys.stdin.buffer.read()
    if "-" in items:
        raise HgwireError("'-' (stdin) cannot be combined with hex arguments")
    text = "".join(items)
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise HgwireError(f"invalid hex input: {exc}") from None


def _decode(args: argparse.Namespace) -> int:
    data = _read_input(list(args.data))
    reader = FrameReader(MAX_PAYLOAD_LENGTH)
    out = sys.stdout
    for frame in reader.feed(data):
        out.write(format_human_frame(frame, decode_cbor=not args.raw_payloads) + "\n")
    out.flush()
    reader.eof()
    return 0
