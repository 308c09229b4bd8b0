"""The ASGI application: routing to repositories and transports, authentication, logging.

One application serves either a single repository at ``/`` or every repository below a
directory at its relative path (``hgwire serve --root``). A request is routed to the
repository whose path is the longest prefix of the URL path; what follows is hgweb's
``dispatchparts``. ``?cmd=`` requests go to the v1 transport (spec §5.1), ``/api/...``
to the API server (§5.5) when ``experimental.web.apiserver`` is on; anything else gets a
short plain-text page (hgwire has no web UI).

Every request is logged on the ``hgwire.access`` logger with the command(s) it ran.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread

from hgwire.commands.registry import REGISTRY, Registry
from hgwire.errors import HgwireError
from hgwire.repo.localrepo import Repository
from hgwire.server import auth, httpv1, httpv2
from hgwire.server.asgi import (
    ClientDisconnected,
    Message,
    Receive,
    Request,
    RequestTooLarge,
    Response,
    Scope,
    Send,
    install_reason_phrases,
    send_response,
    text,
)
from hgwire.server.config import ServedRepo, SettingsLoader

log = logging.getLogger("hgwire.server")
access_log = logging.getLogger("hgwire.access")


def load_commands() -> None:
    """Import the command modules so they register (v1 is optional until it exists)."""
    import importlib

    for name in ("hgwire.commands.v2", "hgwire.commands.v1"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def find_repositories(root: Path) -> dict[str, Path]:
    """Every repository below ``root``: URL path (``/``-separated, relative) -> root.

    Symbolic links are not followed, and a ``.hg`` that is a link to a directory outside
    ``root`` is not served (nothing outside the root is reachable)."""
    found: dict[str, Path] = {}
    root = root.resolve()
    for dirpath, dirnames, _files in os.walk(root):
        if ".hg" in dirnames:
            dirnames.clear()  # no nested repositories
            if not (Path(dirpath) / ".hg").resolve().is_relative_to(root):
                log.warning("not serving %s: its .hg is outside the root", dirpath)
                continue
            rel = Path(dirpath).relative_to(root).as_posix()
            found["" if rel == "." else rel] = Path(dirpath)
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return found


@dataclass
class ServerOptions:
    """What ``hgwire serve`` was asked to serve and how."""

    repo: Path | None = None
    root: Path | None = None
    config_files: Sequence[Path] = ()
    overrides: Sequence[str] = ()
    passwords: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)


class HgwireApp:
    """The ASGI callable."""

    def __init__(self, options: ServerOptions, registry: Registry | None = None) -> None:
        if (options.repo is None) == (options.root is None):
            raise HgwireError("serve either one repository or a --root directory")
        load_commands()
        install_reason_phrases()
        self.options = options
        self.registry = registry if registry is not None else REGISTRY
        self.passwords = auth.PasswordFile(options.passwords) if options.passwords else None
        self._repos: dict[str, ServedRepo] = {}
        self._last_scan = 0.0
        if options.repo is not None:
            root = Repository.open(options.repo, recover=False, search=False).root  # fails early
            self._repos[""] = self._served("", root)
        else:
            self._scan()

    # --- repositories --------------------------------------------------------------------------

    def _served(self, name: str, root: Path) -> ServedRepo:
        loader = SettingsLoader(root, self.options.config_files, self.options.overrides)
        return ServedRepo(name, root, loader)

    def _scan(self) -> None:
        assert self.options.root is not None
        found = find_repositories(self.options.root)
        repos = {}
        for name, path in found.items():
            repos[name] = self._repos.get(name) or self._served(name, path)
        self._repos = repos
        self._last_scan = time.monotonic()

    @property
    def repositories(self) -> dict[str, ServedRepo]:
        return dict(self._repos)

    async def route(self, path: str) -> tuple[ServedRepo, list[str]] | None:
        """The repository serving ``path`` and the remaining path segments. An unknown
        path under ``--root`` rescans the directory (at most once a second, in a worker
        thread: the walk never blocks the event loop)."""
        parts = [p for p in path.split("/") if p]
        for attempt in range(2):
            for n in range(len(parts), -1, -1):
                served = self._repos.get("/".join(parts[:n]))
                if served is not None:
                    return served, parts[n:]
            if attempt or self.options.root is None or time.monotonic() - self._last_scan < 1:
                break
            self._last_scan = time.monotonic()  # concurrent misses do not walk again
            await anyio.to_thread.run_sync(self._scan)
        return None

    # --- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        start = time.monotonic()
        routed = await self.route(scope.get("path", "/"))
        request = Request.from_scope(scope, receive, routed[1] if routed else [])
        status = 500
        sent = 0
        try:
            status, sent = await self._serve(request, send, routed)
        except ClientDisconnected:
            status = 499
        except Exception:
            log.exception("error serving %s %s", request.method, scope.get("path"))
            raise
        finally:
            self._log(request, status, sent, time.monotonic() - start)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _respond(self, send: Send, response: Response) -> tuple[int, int]:
        return response.status, await send_response(send, response)

    async def _authenticate(self, request: Request) -> Response | None:
        """Set ``request.user`` from HTTP Basic credentials; a 401 for bad ones."""
        header = request.headers.get("authorization")
        if self.passwords is None or not header:
            return None
        request.auth_enabled = True
        challenge = [("WWW-Authenticate", f'Basic realm="{auth.REALM}"')]
        try:
            creds = auth.parse_basic(header)
        except auth.AuthError:
            creds = None
        request.credentials = True
        if creds is None:
            return Response(401, b"0\nauthorization failed\n", None, "authorization failed",
                            challenge)  # fmt: skip
        ok = await anyio.to_thread.run_sync(self.passwords.verify, creds[0], creds[1])
        if not ok:
            return Response(401, b"0\nauthorization failed\n", None, "authorization failed",
                            challenge)  # fmt: skip
        request.user = creds[0]
        return None

    async def _serve(
        self, request: Request, send: Send, routed: tuple[ServedRepo, list[str]] | None
    ) -> tuple[int, int]:
        request.auth_enabled = self.passwords is not None
        refused = await self._authenticate(request)
        if refused is not None:
            return await self._respond(send, refused)
        if routed is None:
            if self.options.root is not None and not request.path_parts():
                return await self._respond(send, self._listing(request))
            return await self._respond(send, text(404, "Not Found\n"))
        served, parts = routed
        cmd = request.qs(b"cmd")
        status = [0]  # set when the response starts
        orig_send = send

        async def tracking_send(message: Message) -> None:
            if message.get("type") == "http.response.start":
                status[0] = int(message["status"])
            await orig_send(message)

        send = tracking_send
        try:
            settings = served.settings()
        except HgwireError as exc:
            log.error("configuration of %s: %s", served.root, exc)
            return await self._respond(send, text(500, "server configuration error\n"))
        request.max_body = settings.max_request_body
        try:
            if parts and parts[0] == "api" and settings.config.apiserver:
                sent = await httpv2.handle_api(request, send, served, self.registry)
                return status[0], sent
            if cmd is not None:
                sent = await httpv1.handle(request, send, served, self.registry, cmd)
                return status[0], sent
        except RequestTooLarge as exc:
            log.info("%s %s: %s", request.method, request.scope.get("path"), exc)
            if status[0] != 0:
                raise
            return await self._respond(send, text(413, f"{exc}\n"))
        except HgwireError as exc:
            # e.g. the repository vanished or is damaged; answer if nothing was sent yet.
            log.error("%s %s: %s", request.method, request.scope.get("path"), exc)
            if status[0] != 0:
                raise
            return await self._respond(send, text(500, f"{exc}\n"))
        # Pages other than commands: a repository hidden by deny_read/allow_read shows
        # nothing, as hgweb checks read access before rendering any page.
        denied = auth.check_read(settings.access, request.user)
        if denied is not None:
            return await self._respond(send, httpv1.refusal(request, denied, b""))
        if parts:
            name = parts[0]
            return await self._respond(send, text(400, f"no such method: {name}\n",
                                                  f"no such method: {name}"))  # fmt: skip
        return await self._respond(send, self._index(request, served))

    def _index(self, request: Request, served: ServedRepo) -> Response:
        """A plain-text page for browsers: what this is and how to clone it."""
        host = request.headers.get("host", "localhost")
        url = f"{request.scheme}://{host}/{served.name}"
        lines = [
            f"hgwire: Mercurial repository {served.name or served.root.name}",
            "",
            f"  hg clone {url}",
            f"  hg clone --config experimental.httppeer.advertise-v2=true {url}",
            "  (the second form: Mercurial 6.0 over the frame protocol)",
        ]
        if self.options.root is not None:
            lines += ["", "Repositories served here:"]
            lines += [f"  {request.scheme}://{host}/{n}" for n in self._readable(request)]
        return text(200, "\n".join(lines) + "\n")

    def _listing(self, request: Request) -> Response:
        """``--root`` without a repository at ``/``: the repositories served."""
        host = request.headers.get("host", "localhost")
        lines = ["hgwire: repositories served here:", ""]
        lines += [f"  {request.scheme}://{host}/{n}" for n in self._readable(request)]
        return text(200, "\n".join(lines) + "\n")

    def _readable(self, request: Request) -> list[str]:
        """The names of the repositories ``request.user`` may read (hgwebdir's listing
        leaves out the others; one with a broken configuration is left out too)."""
        names = []
        for name, served in sorted(self._repos.items()):
            try:
                rules = served.settings().access
            except HgwireError:
                continue
            if auth.check_read(rules, request.user) is None:
                names.append(name)
        return names

    def _log(self, request: Request, status: int, sent: int, elapsed: float) -> None:
        scope = request.scope
        target = scope.get("path", "/")
        qs = scope.get("query_string", b"")
        if qs:
            target += "?" + qs.decode("latin-1")
        cmds = ",".join(request.commands) or "-"
        access_log.info(
            '%s - %s "%s %s" %d %d cmd=%s %.3fs',
            request.client,
            request.user or "-",
            request.method,
            target,
            status,
            sent,
            cmds,
            elapsed,
        )


def make_app(options: ServerOptions, registry: Registry | None = None) -> HgwireApp:
    """The application for ``options``."""
    return HgwireApp(options, registry)
