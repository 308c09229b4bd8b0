"""``hgwire serve``, ``hgwire passwd`` and ``hgwire debugwireproto``.

``serve`` runs the ASGI application (:mod:`hgwire.server.app`) on uvicorn, bound to
127.0.0.1 unless told otherwise; without a repository it serves the embedded demo
repository (:mod:`hgwire.server.demo`). ``debugwireproto`` posts frames written in the
human-readable syntax (spec §1.7) to a server's v2 API and prints the frames of the
answer, decoded.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hgwire.errors import HgwireError

OPTIONS_ENV = "HGWIRE_SERVE_OPTIONS"
#: Largest request line plus headers accepted.
MAX_REQUEST_HEAD = 1 << 20


def register(subparsers: Any) -> None:
    """Add ``serve``, ``passwd`` and ``debugwireproto`` to the CLI."""
    p = subparsers.add_parser(
        "serve",
        help="serve repositories over HTTP (v1 ?cmd= and the v2 frame protocol)",
        description=(
            "Serve REPO (or every repository below --root DIR) over HTTP with both of "
            "Mercurial's wire protocols. Without either, serve a small demo repository."
        ),
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help="the repository to serve")
    p.add_argument("--root", metavar="DIR", help="serve every repository below DIR")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--config-file",
        action="append",
        default=[],
        metavar="FILE",
        help="server-wide hgrc file (read before each repository's .hg/hgrc)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="SECTION.NAME=VALUE",
        help="set a configuration value for every repository (overrides hgrc files)",
    )
    p.add_argument("--passwords", metavar="FILE", help="HTTP Basic users (see hgwire passwd)")
    p.add_argument("--certfile", help="TLS certificate (serve https)")
    p.add_argument("--keyfile", help="TLS private key")
    p.add_argument("--quiet", action="store_true", help="no access log")
    p.add_argument(
        "--stdio",
        action="store_true",
        help="serve REPO over stdin/stdout (the SSH transport: ssh host hgwire serve --stdio REPO)",
    )
    p.set_defaults(func=_serve)

    pw = subparsers.add_parser(
        "passwd",
        help="add or change a user in a password file for hgwire serve --passwords",
    )
    pw.add_argument("file", metavar="FILE")
    pw.add_argument("user", metavar="USER")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    pw.set_defaults(func=_passwd)

    d = subparsers.add_parser(
        "debugwireproto",
        help="send frames to a server's HTTP v2 API and print the response frames",
        description=(
            "Each FRAME is '<requestid> <streamid> <streamflags> <type> <flags> <payload>' "
            "(a payload 'cbor:<python literal>' is CBOR-encoded). The command is the "
            "first command-request frame's name, or multirequest when there are several."
        ),
    )
    d.add_argument("url", metavar="URL", help="repository URL, e.g. http://127.0.0.1:8000/")
    d.add_argument("frames", nargs="*", metavar="FRAME")
    d.add_argument("--frames", dest="frames_file", metavar="FILE", help="frames, one per line")
    d.add_argument("--rw", action="store_true", help="use the rw/ URL (push permission)")
    d.add_argument("--command", help="command name in the URL (default: from the frames)")
    d.add_argument(
        "--raw", action="store_true", help="print payloads as received (no stream decoding)"
    )
    d.set_defaults(func=_debugwireproto)


# --- serve -----------------------------------------------------------------------------------


def _log_config(quiet: bool) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "hgwire.server": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "hgwire.access": {
                "handlers": ["stderr"],
                "level": "WARNING" if quiet else "INFO",
                "propagate": False,
            },
        },
    }


def _options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "repo": str(Path(args.repo).absolute()) if args.repo else None,
        "root": str(Path(args.root).absolute()) if args.root else None,
        "config_files": [str(Path(f).absolute()) for f in args.config_file],
        "overrides": list(args.config),
        "passwords": str(Path(args.passwords).absolute()) if args.passwords else None,
    }


def app_from_env() -> Any:
    """The application factory of worker processes (``--workers`` > 1)."""
    from hgwire.server.app import ServerOptions, make_app

    raw = json.loads(os.environ[OPTIONS_ENV])
    return make_app(
        ServerOptions(
            repo=Path(raw["repo"]) if raw["repo"] else None,
            root=Path(raw["root"]) if raw["root"] else None,
            config_files=[Path(f) for f in raw["config_files"]],
            overrides=raw["overrides"],
            passwords=Path(raw["passwords"]) if raw["passwords"] else None,
        )
    )


def _serve(args: argparse.Namespace) -> int:
    if args.stdio:
        from hgwire.server.sshserver import main_stdio

        if not args.repo or args.root:
            raise HgwireError("serve --stdio needs exactly one REPO")
        return main_stdio(args.repo, args.config, args.config_file)
    import uvicorn

    from hgwire.server import demo
    from hgwire.server.config import parse_override

    if args.repo and args.root:
        raise HgwireError("give either REPO or --root, not both")
    for o in args.config:
        parse_override(o)
    is_demo = False
    if not args.repo and not args.root:
        args.repo = str(demo.ensure_demo_repo())
        is_demo = True
    raw = _options_from_args(args)
    os.environ[OPTIONS_ENV] = json.dumps(raw)
    app = app_from_env()  # validates the options (and the repository) up front
    scheme = "https" if args.certfile else "http"
    host = args.host if ":" not in args.host else f"[{args.host}]"
    url = f"{scheme}://{host}:{args.port}/"
    out = sys.stdout
    if is_demo:
        out.write(f"serving the hgwire demo repository {args.repo}\n")
    elif args.root:
        out.write(f"serving {len(app.repositories)} repositories below {args.root}\n")
    else:
        out.write(f"serving {args.repo}\n")
    out.write(f"listening at {url}\n")
    if not args.root:
        out.write(
            "clone it with (any Mercurial):\n"
            f"  hg clone {url} demo\n"
            "or over the frame protocol (Mercurial 6.0):\n"
            "  hg clone --config experimental.httppeer.advertise-v2=true "
            f"{url} demo-v2\n"
        )
    out.flush()
    common: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "http": "h11",
        "proxy_headers": False,
        "access_log": False,
        "log_config": _log_config(args.quiet),
        "timeout_graceful_shutdown": 5,
        # X-HgArg-<N> headers carry long argument lists (many nodes): allow 1 MiB of
        # request head instead of h11's 16 KiB default.
        "h11_max_incomplete_event_size": MAX_REQUEST_HEAD,
    }
    if args.certfile:
        common["ssl_certfile"] = args.certfile
        common["ssl_keyfile"] = args.keyfile
    if args.workers > 1:
        uvicorn.run("hgwire.server.cli:app_from_env", factory=True, workers=args.workers, **common)
    else:
        uvicorn.run(app, **common)
    return 0


# --- passwd ----------------------------------------------------------------------------------


def _passwd(args: argparse.Namespace) -> int:
    from hgwire.server.auth import set_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.user}: ")
        if getpass.getpass("again: ") != password:
            raise HgwireError("passwords do not match")
    if not password:
        raise HgwireError("empty password")
    set_password(Path(args.file), args.user, password)
    return 0


# --- debugwireproto --------------------------------------------------------------------------


def _read_frames(args: argparse.Namespace) -> list[str]:
    lines = list(args.frames)
    if args.frames_file:
        fh = sys.stdin if args.frames_file == "-" else open(args.frames_file, encoding="utf-8")  # noqa: SIM115
        with fh:
            for line in fh:
                line = line.rstrip("\n")
                if line.strip() and not line.lstrip().startswith("#"):
                    lines.append(line.strip())
    if not lines:
        raise HgwireError("no frames given")
    return lines


def _command_of(frames: list[Any]) -> str:
    from hgwire.wire import cbor
    from hgwire.wire.frames import CommandRequestFlag, FrameType

    names = []
    for frame in frames:
        if frame.type_id == FrameType.COMMAND_REQUEST and frame.flags & CommandRequestFlag.NEW:
            try:
                values = cbor.Decoder().feed(bytes(frame.payload))
            except HgwireError:
                values = []
            if values and isinstance(values[0], dict):
                name = values[0].get(b"name")
                if isinstance(name, bytes):
                    names.append(name.decode("latin-1"))
    if len(names) == 1:
        return names[0]
    return "multirequest"


def _debugwireproto(args: argparse.Namespace) -> int:
    import httpx

    from hgwire.server.httpv2 import FRAMINGTYPE
    from hgwire.wire import cbor, streams
    from hgwire.wire.frames import (
        MAX_PAYLOAD_LENGTH,
        CommandResponseFlag,
        Frame,
        FrameReader,
        FrameType,
        StreamFlag,
    )
    from hgwire.wire.human import format_human_frame, parse_human_frame

    frames = []
    for text in _read_frames(args):
        try:
            frames.append(parse_human_frame(text))
        except HgwireError as exc:
            raise HgwireError(f"cannot parse frame {text!r}: {exc}") from None
    body = b"".join(f.to_bytes() for f in frames)
    command = args.command or _command_of(frames)
    base = args.url.rstrip("/")
    url = f"{base}/api/exp-http-v2-0003/{'rw' if args.rw else 'ro'}/{command}"
    out = sys.stdout
    for f in frames:
        out.write(f"sending: {format_human_frame(f)}\n")
    headers = {"Accept": FRAMINGTYPE, "Content-Type": FRAMINGTYPE}
    inputs: dict[int, streams.InputStream] = {}
    data: dict[int, bytearray] = {}
    with (
        httpx.Client(timeout=None) as client,
        client.stream("POST", url, content=body, headers=headers) as rsp,
    ):
        out.write(f"{rsp.http_version} {rsp.status_code} {rsp.reason_phrase}\n")
        ctype = rsp.headers.get("content-type", "")
        out.write(f"content-type: {ctype}\n")
        if ctype != FRAMINGTYPE:
            out.write(rsp.read().decode("utf-8", "replace"))
            out.flush()
            return 1 if rsp.status_code >= 400 else 0
        reader = FrameReader(MAX_PAYLOAD_LENGTH)
        for chunk in rsp.iter_bytes():
            for frame in reader.feed(chunk):
                sid = frame.stream_id
                stream = inputs.get(sid)
                if stream is None:
                    stream = inputs[sid] = streams.InputStream(sid)
                shown = frame
                if not args.raw:
                    if frame.type_id == FrameType.STREAM_SETTINGS:
                        values = cbor.Decoder().feed(bytes(frame.payload))
                        if values and isinstance(values[0], bytes):
                            stream.set_decoder(values[0], values[1:])
                    elif frame.stream_flags & StreamFlag.ENCODED:
                        decoded = stream.decode(frame.payload)
                        shown = Frame(
                            frame.request_id,
                            sid,
                            frame.stream_flags & ~StreamFlag.ENCODED,
                            frame.type_id,
                            frame.flags,
                            decoded,
                        )
                out.write(f"received: {format_human_frame(shown)}\n")
                if not args.raw and frame.type_id == FrameType.COMMAND_RESPONSE:
                    rid = frame.request_id
                    data.setdefault(rid, bytearray()).extend(shown.payload)
                    if frame.flags & CommandResponseFlag.EOS:
                        values = cbor.Decoder().feed(bytes(data.pop(rid)))
                        out.write(f"response {rid}: {values!r}\n")
        reader.eof()
    out.flush()
    return 0


logging.getLogger("httpx").setLevel(logging.WARNING)
