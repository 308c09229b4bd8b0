"""The SSH transport: ``hg -R REPO serve --stdio`` on stdin/stdout/stderr (spec §6).

Version 1 line protocol (§6.2): a command line, then the command's declared arguments
as ``name len\\nvalue`` blocks (``* count`` then pairs for ``*``); replies are length-
prefixed strings, raw streams, push results or out-of-band errors (a lone ``\\n`` on
stdout, the message and ``-`` on stderr). The ``upgrade <token> proto=exp-ssh-v2-0003``
handshake is answered as 6.0 does when ``experimental.sshserver.support-v2`` is set
(§6.4; default off, as in 6.0), after which the protocol is v1 again. An empty line or
EOF ends the session.

Deliberate differences from 6.0: a failing command (bad hex, unknown node, a bundle1
pull refused…) gets an out-of-band error and the session continues, where 6.0 prints a
traceback and exits; a malformed argument block gets an out-of-band error before the
server stops (6.0 only prints the abort on stderr).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import BinaryIO
from urllib.parse import parse_qs

from hgwire.commands.context import CommandContext, ServerConfig
from hgwire.commands.registry import (
    REGISTRY,
    BytesResponse,
    OutOfBandError,
    PushError,
    PushResponse,
    Registry,
    StreamResponse,
    V1Command,
    V1Response,
)
from hgwire.errors import HgwireError, ProtocolError
from hgwire.repo.localrepo import Repository

SSHV2 = b"exp-ssh-v2-0003"
NULLPAIR = b"%s-%s" % (b"0" * 40, b"0" * 40)
#: Longest command or argument line accepted (hg's lines are short).
MAX_LINE = 65536
#: Largest argument value or push data chunk accepted (hg pushes 4 KiB chunks); a larger
#: announced size ends the session with an error instead of allocating it.
MAX_VALUE = 64 << 20


def load_commands() -> None:
    """Import the v1 command module so it registers its commands."""
    import hgwire.commands.v1  # noqa: F401


class _Shutdown(Exception):
    """Stop serving (the session ends after a protocol violation)."""


class PushPayload:
    """The chunked push payload (§6.5), read lazily: the first read sends the empty
    "go ahead" reply, then ``<len>\\n<data>`` chunks are read until ``0\\n``."""

    def __init__(self, server: SshServer) -> None:
        self._server = server
        self.started = False
        self.done = False
        self._buf = b""

    def _next_chunk(self) -> bytes:
        line = self._server.fin.readline(MAX_LINE)
        if not line:
            self.done = True
            raise ProtocolError("unexpected end of push data")
        try:
            size = int(line)
        except ValueError:
            self.done = True
            raise ProtocolError(f"malformed push data chunk header {line!r}") from None
        if size <= 0:
            self.done = True
            return b""
        if size > MAX_VALUE:
            self.done = True
            raise ProtocolError(f"push data chunk of {size} bytes exceeds {MAX_VALUE}")
        data = self._server.fin.read(size)
        if len(data) < size:
            self.done = True
            raise ProtocolError("unexpected end of push data")
        return data

    def read(self, n: int = -1, /) -> bytes:
        if not self.started:
            self.started = True
            self._server.respond_bytes(b"")
        while not self.done and (n < 0 or len(self._buf) < n):
            chunk = self._next_chunk()
            if not chunk:
                break
            self._buf += chunk
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def finish(self) -> None:
        """Consume what the handler left unread (the connection stays usable)."""
        self._buf = b""
        while self.started and not self.done:
            self._next_chunk()


class SshServer:
    """One stdio session serving ``repo``."""

    def __init__(
        self,
        repo: Repository,
        fin: BinaryIO,
        fout: BinaryIO,
        ferr: BinaryIO,
        config: ServerConfig | None = None,
        registry: Registry = REGISTRY,
        support_v2: bool | None = None,
    ) -> None:
        """``support_v2`` (the upgrade to ``exp-ssh-v2-0003``) defaults to the
        configuration's ``experimental.sshserver.support-v2``."""
        self.repo = repo
        self.fin = fin
        self.fout = fout
        self.ferr = ferr
        self.config = config if config is not None else ServerConfig()
        self.registry = registry
        self.support_v2 = self.config.sshserver_v2 if support_v2 is None else support_v2
        self.transport = "ssh-v1"
        self.session: dict[str, object] = {}

    # -- output ----------------------------------------------------------------------

    def respond_bytes(self, value: bytes) -> None:
        self.fout.write(b"%d\n" % len(value))
        self.fout.write(value)
        self.fout.flush()

    def respond_ooberror(self, message: bytes) -> None:
        self.ferr.write(b"%s\n-\n" % message)
        self.ferr.flush()
        self.fout.write(b"\n")
        self.fout.flush()

    def write_err(self, text: bytes) -> None:
        self.ferr.write(text)
        self.ferr.flush()

    # -- input -----------------------------------------------------------------------

    def readline(self) -> bytes:
        return self.fin.readline(MAX_LINE)

    def readargs(self, spec: bytes) -> dict[bytes, bytes]:
        """The argument blocks of a command declared with ``spec`` (§6.2), flattened:
        ``*`` entries are merged with the named ones."""
        keys = spec.split()
        named: dict[bytes, bytes] = {}
        star: dict[bytes, bytes] = {}
        for _ in keys:
            name, size = self._argheader()
            if name not in keys:
                raise _Shutdown(b"unexpected parameter %r" % name)
            if name == b"*":
                for _ in range(size):
                    k, n = self._argheader()
                    star[k] = self._readexactly(n)
            else:
                named[name] = self._readexactly(size)
        missing = [k for k in keys if k != b"*" and k not in named]
        if missing:
            raise _Shutdown(b"missing argument %r" % missing[0])
        out = dict(star)
        out.update(named)
        return out

    def _argheader(self) -> tuple[bytes, int]:
        line = self.readline()
        if not line.endswith(b"\n"):
            raise _Shutdown(b"unexpected end of input while reading arguments")
        parts = line[:-1].split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise _Shutdown(b"malformed argument line %r" % line[:-1])
        return parts[0], int(parts[1])

    def _readexactly(self, n: int) -> bytes:
        if n > MAX_VALUE:
            raise _Shutdown(b"argument of %d bytes exceeds %d" % (n, MAX_VALUE))
        data = self.fin.read(n)
        if len(data) < n:
            raise _Shutdown(b"unexpected end of input while reading arguments")
        return data

    # -- dispatch --------------------------------------------------------------------

    def context(self) -> CommandContext:
        caps = self.session.get("protocaps", frozenset())
        assert isinstance(caps, frozenset)
        return CommandContext(
            self.repo,
            self.config,
            self.transport,
            caps,
            output=self.write_err,
            session=self.session,
        )

    def command_available(self, name: bytes) -> V1Command | None:
        cmd = self.registry.v1.get(name)
        if cmd is None or "ssh-v1" not in cmd.transports:
            return None
        return cmd

    def dispatch(self, cmd: V1Command) -> None:
        args = self.readargs(cmd.args)
        payload = PushPayload(self) if cmd.name == b"unbundle" else None
        self.repo.invalidate()
        ctx = self.context()
        if self.transport != "ssh-v1" and cmd.name == b"protocaps":
            ctx.session = {}  # accepted but ignored after an upgrade (§6.4)
        try:
            rsp = cmd.func(ctx, args, payload)  # type: ignore[arg-type]
        except Exception as exc:
            if payload is not None:
                self._finish_payload(payload)
            message = str(exc).encode("utf-8", "replace")
            if not isinstance(exc, HgwireError):  # a bug: show where, keep serving
                self.write_err(traceback.format_exc().encode("utf-8", "replace"))
                message = b"internal error: " + message
            self.respond_ooberror(message)
            return
        if payload is not None:
            self._finish_payload(payload)
        self.render(rsp)

    def _finish_payload(self, payload: PushPayload) -> None:
        try:
            payload.finish()
        except ProtocolError as exc:
            raise _Shutdown(str(exc).encode()) from None

    def render(self, rsp: V1Response) -> None:
        """Write a response as the SSH v1 transport does (§6.2 table)."""
        if isinstance(rsp, BytesResponse):
            self.respond_bytes(rsp.data)
        elif isinstance(rsp, StreamResponse):
            write = self.fout.write
            try:
                for chunk in rsp.chunks:
                    write(chunk)
            finally:
                close: Callable[[], object] | None = getattr(rsp.chunks, "close", None)
                if close is not None:
                    close()
            self.fout.flush()
        elif isinstance(rsp, PushResponse):
            if rsp.output:
                self.write_err(rsp.output)
            self.respond_bytes(b"")
            self.respond_bytes(b"%d" % rsp.result)
        elif isinstance(rsp, PushError):
            self.respond_bytes(rsp.message)
        elif isinstance(rsp, OutOfBandError):
            self.respond_ooberror(rsp.message.rstrip(b"\n"))
        else:  # pragma: no cover - the registry's types are exhaustive
            raise TypeError(f"unknown v1 response {rsp!r}")

    # -- the session -----------------------------------------------------------------

    def _upgrade(self, request: bytes) -> bool:
        """Handle an ``upgrade`` line (§6.4); True when the session continues."""
        fields = request.split(b" ")
        if len(fields) != 3 or not self.support_v2:
            self.respond_bytes(b"")
            return True
        token, caps = fields[1], fields[2]
        try:
            parsed = parse_qs(caps, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            self.respond_bytes(b"")
            return True
        wanted = parsed.get(b"proto", [b""])[0]
        if SSHV2 not in wanted:
            self.respond_bytes(b"")
            return True
        for line in (b"hello", b"between", b"pairs 81"):
            got = self.readline()
            if got[:-1] != line:
                self.respond_ooberror(b"malformed handshake protocol: missing %s" % line)
                return False
        if self.fin.read(81) != NULLPAIR:
            self.respond_ooberror(b"malformed handshake protocol: missing between argument value")
            return False
        from hgwire.commands.v1 import capabilities_tokens

        self.repo.invalidate()
        caps_line = b"capabilities: " + b" ".join(capabilities_tokens(self.context(), "ssh-v1"))
        self.fout.write(b"upgraded %s %s\n" % (token, SSHV2))
        self.fout.write(b"%d\n%s\n" % (len(caps_line), caps_line))
        self.fout.flush()
        self.transport = "ssh-v2"
        return True

    def serve(self) -> int:
        """Serve until an empty line, EOF or a protocol violation; the exit status."""
        upgraded = False
        while True:
            line = self.readline()
            request = line[:-1] if line.endswith(b"\n") else line
            if not request:
                return 0
            try:
                if request.startswith(b"upgrade "):
                    if upgraded:
                        self.respond_ooberror(b"cannot upgrade protocols multiple times")
                        return 0
                    if not self._upgrade(request):
                        return 0
                    upgraded = self.transport == "ssh-v2"
                    continue
                cmd = self.command_available(request)
                if cmd is None:
                    self.respond_bytes(b"")
                    continue
                self.dispatch(cmd)
            except _Shutdown as exc:
                message = exc.args[0] if exc.args else b"protocol error"
                self.respond_ooberror(b"abort: " + message)
                return 255
            except BrokenPipeError:
                return 0
            except Exception:
                # A failure after a stream started cannot be reported in band.
                self.write_err(traceback.format_exc().encode("utf-8", "replace"))
                return 1


def serve_stdio(
    path: str,
    fin: BinaryIO | None = None,
    fout: BinaryIO | None = None,
    ferr: BinaryIO | None = None,
    overrides: list[str] | None = None,
    config_files: list[str] | None = None,
) -> int:
    """Serve the repository at ``path`` on stdio (what ``hg -R path serve --stdio``
    does); the configuration comes from ``config_files``, its ``.hg/hgrc``, then
    ``overrides`` (``section.name=value``)."""
    from pathlib import Path

    from hgwire.errors import RepositoryError
    from hgwire.server.config import ConfigError, SettingsLoader

    ferr = ferr if ferr is not None else sys.stderr.buffer
    fin = fin if fin is not None else sys.stdin.buffer
    fout = fout if fout is not None else sys.stdout.buffer
    try:
        if not (Path(path) / ".hg").is_dir():  # -R names the root itself, as in hg
            raise RepositoryError(f"no .hg directory in {path}")
        repo = Repository.open(path, recover=False)
    except (RepositoryError, OSError) as exc:
        ferr.write(b"abort: repository %s not found\n" % path.encode("utf-8", "replace"))
        ferr.write(b"(%s)\n" % str(exc).encode("utf-8", "replace"))
        ferr.flush()
        return 255
    try:
        files = [Path(f) for f in config_files or []]
        settings = SettingsLoader(Path(repo.root), files, overrides or []).get()
    except ConfigError as exc:
        ferr.write(b"abort: %s\n" % str(exc).encode("utf-8", "replace"))
        ferr.flush()
        return 255
    load_commands()
    server = SshServer(repo, fin, fout, ferr, settings.config)
    return server.serve()


def main_stdio(
    path: str, overrides: list[str] | None = None, config_files: list[str] | None = None
) -> int:
    """Entry point for a process: protects stdout (the protocol channel) from stray
    prints by pointing ``sys.stdout`` at stderr, then serves."""
    import io
    import os

    sys.stdout.flush()
    fout = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=io.DEFAULT_BUFFER_SIZE)
    sys.stdout = sys.stderr
    fin = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=io.DEFAULT_BUFFER_SIZE)
    try:
        return serve_stdio(path, fin, fout, sys.stderr.buffer, overrides, config_files)
    finally:
        fout.close()
        fin.close()
