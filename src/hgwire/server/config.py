"""Server configuration read the way hgweb reads it (Mercurial's hgrc syntax).

A repository's settings come from, in increasing priority: the server-wide config files
given to ``hgwire serve --config-file``, the repository's ``.hg/hgrc``, and
``--config section.name=value`` overrides. The result is a :class:`RepoSettings`: the
:class:`~hgwire.commands.context.ServerConfig` commands see, the access rules
(:class:`~hgwire.server.auth.AccessRules`, spec §5.2) and the ``/api/`` switches (§5.5).

Differences from Mercurial, deliberate: the frame protocol (``experimental.web.apiserver``
and ``experimental.web.api.http-v2``) is on by default; hgwire is a server for both
protocols, so switching one off is what needs configuration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hgwire.commands.context import ServerConfig
from hgwire.errors import HgwireError
from hgwire.server.auth import AccessRules
from hgwire.wire.server import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_REQUEST_SIZE

Items = dict[tuple[str, str], str]

#: Default ``hgwire.max-request-body`` (push bundles are spooled to disk above 1 MiB).
DEFAULT_MAX_REQUEST_BODY = 4 << 30

_SECTION = re.compile(r"\[([^\[]+)\]")
_ITEM = re.compile(r"([^=\s][^=]*?)\s*=\s*((.*\S)?)")
_CONT = re.compile(r"\s+(\S|\S.*\S)\s*$")
_SKIP = re.compile(r"(;|#|\s*$)")
_UNSET = re.compile(r"%unset\s+(\S+)")
_INCLUDE = re.compile(r"%include\s+(\S|\S.*\S)\s*$")

_TRUE = frozenset({"1", "yes", "true", "on", "always"})
_FALSE = frozenset({"0", "no", "false", "off", "never"})


class ConfigError(HgwireError):
    """An hgrc file or a ``--config`` value that cannot be parsed."""


def parse_hgrc(path: Path, items: Items | None = None, depth: int = 0) -> Items:
    """Read one hgrc file into ``items`` (later values win); ``%include`` is followed."""
    items = {} if items is None else items
    try:
        text = path.read_text("utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return items
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    section = ""
    last: tuple[str, str] | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if last is not None and (m := _CONT.match(line)):
            items[last] = items[last] + "\n" + m.group(1)
            continue
        last = None
        if _SKIP.match(line):
            continue
        if m := _SECTION.match(line):
            section = m.group(1).strip()
            continue
        if m := _INCLUDE.match(line):
            if depth > 10:
                raise ConfigError(f"{path}:{lineno}: %include nested too deeply")
            inc = Path(os.path.expanduser(m.group(1)))
            parse_hgrc(path.parent / inc if not inc.is_absolute() else inc, items, depth + 1)
            continue
        if m := _UNSET.match(line):
            items.pop((section, m.group(1)), None)
            continue
        if m := _ITEM.match(line):
            last = (section, m.group(1))
            items[last] = m.group(2) or ""
            continue
        raise ConfigError(f"{path}:{lineno}: parse error: {line.strip()!r}")
    return items


def parse_override(text: str) -> tuple[tuple[str, str], str]:
    """``section.name=value`` (the ``--config`` syntax)."""
    key, sep, value = text.partition("=")
    section, dot, name = key.partition(".")
    if not sep or not dot or not section or not name:
        raise ConfigError(f"malformed --config option: {text!r} (use section.name=value)")
    return (section.strip(), name.strip()), value.strip()


def parse_bool(value: str | None, default: bool) -> bool:
    """Mercurial's boolean values (``yes``/``no``, ``on``/``off``, ``1``/``0`` ...)."""
    if value is None:
        return default
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def parse_list(value: str | None) -> list[str]:
    """A list value: items separated by commas and/or whitespace, optionally quoted."""
    if not value:
        return []
    out: list[str] = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|([^,\s]+)', value):
        out.append(m.group(1).replace('\\"', '"') if m.group(1) is not None else m.group(2))
    return out


def parse_int(value: str | None, default: int, what: str) -> int:
    if value is None or not value.strip():
        return default
    try:
        return int(value.strip())
    except ValueError:
        raise ConfigError(f"{what} is not an integer: {value!r}") from None


@dataclass
class RepoSettings:
    """Everything the HTTP server needs to know about one served repository."""

    config: ServerConfig
    access: AccessRules
    #: ``experimental.web.api.debugreflect``.
    debugreflect: bool = False
    #: ``hgwire.max-request-body``: the largest request body accepted (413 above it).
    max_request_body: int = DEFAULT_MAX_REQUEST_BODY
    #: ``hgwire.max-frame-request-size``: one frame-protocol request's largest size.
    max_frame_request: int = DEFAULT_MAX_REQUEST_SIZE
    #: ``hgwire.max-requests-in-flight``: frame-protocol requests open at once.
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    #: The raw items, for anything else.
    items: Items = field(default_factory=dict)


def settings_from_items(items: Items) -> RepoSettings:
    """Interpret hgrc items (spec §5.2, §5.4, §5.5, §7.1)."""

    def get(section: str, name: str, *aliases: tuple[str, str]) -> str | None:
        for key in ((section, name), *aliases):
            if key in items:
                return items[key]
        return None

    def flag(section: str, name: str, default: bool, *aliases: tuple[str, str]) -> bool:
        value = get(section, name, *aliases)
        try:
            return parse_bool(value, default)
        except ConfigError:
            raise ConfigError(f"{section}.{name} is not a boolean: {value!r}") from None

    def limit(name: str, default: int) -> int:
        value = parse_int(get("hgwire", name), default, f"hgwire.{name}")
        if value <= 0:
            raise ConfigError(f"hgwire.{name} must be positive: {value}")
        return value

    engines = parse_list(get("server", "compressionengines"))
    known_engines = [e for e in engines if e in ("zstd", "zlib", "none")]
    cfg = ServerConfig(
        uncompressed=flag("server", "uncompressed", True),
        uncompressedallowsecret=flag("server", "uncompressedallowsecret", False),
        preferuncompressed=flag("server", "preferuncompressed", False),
        publishing=flag("phases", "publish", True),
        compressionengines=(
            tuple(e.encode() for e in known_engines) if engines else (b"zstd", b"zlib")
        ),
        zstdlevel=parse_int(get("server", "zstdlevel"), 3, "server.zstdlevel"),
        zliblevel=parse_int(get("server", "zliblevel"), -1, "server.zliblevel"),
        maxhttpheaderlen=parse_int(
            get("server", "maxhttpheaderlen"), 1024, "server.maxhttpheaderlen"
        ),
        httppostargs=flag("experimental", "httppostargs", False),
        concurrent_push_mode=(get("server", "concurrent-push-mode") or "check-related").encode(),
        manifestdata_batchsize=parse_int(
            get("experimental", "server.manifestdata.recommended-batch-size"),
            100000,
            "experimental.server.manifestdata.recommended-batch-size",
        ),
        filesdata_batchsize=parse_int(
            get("experimental", "server.filesdata.recommended-batch-size"),
            50000,
            "experimental.server.filesdata.recommended-batch-size",
        ),
        apiserver=flag("experimental", "web.apiserver", True),
        api_http_v2=flag("experimental", "web.api.http-v2", True),
        sshserver_v2=flag("experimental", "sshserver.support-v2", False),
        extra={(s.encode(), n.encode()): v.encode() for (s, n), v in items.items()},
    )
    access = AccessRules(
        allow_push=parse_list(get("web", "allow-push", ("web", "allow_push"))),
        deny_push=parse_list(get("web", "deny_push", ("web", "deny-push"))),
        allow_read=parse_list(get("web", "allow_read", ("web", "allow-read"))),
        deny_read=parse_list(get("web", "deny_read", ("web", "deny-read"))),
        allow_pull=flag("web", "allow-pull", True, ("web", "allowpull"), ("web", "allow_pull")),
        push_ssl=flag("web", "push_ssl", True, ("web", "push-ssl")),
    )
    return RepoSettings(
        config=cfg,
        access=access,
        debugreflect=flag("experimental", "web.api.debugreflect", False),
        max_request_body=limit("max-request-body", DEFAULT_MAX_REQUEST_BODY),
        max_frame_request=limit("max-frame-request-size", DEFAULT_MAX_REQUEST_SIZE),
        max_in_flight=limit("max-requests-in-flight", DEFAULT_MAX_IN_FLIGHT),
        items=dict(items),
    )


class SettingsLoader:
    """Settings of one repository, re-read when one of its config files changes.

    hgweb re-reads a repository's configuration while serving; so does this (one
    ``stat`` per file per request).
    """

    def __init__(
        self,
        repo_root: Path,
        global_files: Sequence[Path] = (),
        overrides: Iterable[str] = (),
    ) -> None:
        self.files = [*global_files, repo_root / ".hg" / "hgrc"]
        self.overrides = [parse_override(o) for o in overrides]
        self._stamp: tuple[tuple[int, int] | None, ...] | None = None
        self._settings: RepoSettings | None = None

    def _stat(self) -> tuple[tuple[int, int] | None, ...]:
        out: list[tuple[int, int] | None] = []
        for f in self.files:
            try:
                st = f.stat()
            except OSError:
                out.append(None)
            else:
                out.append((st.st_mtime_ns, st.st_size))
        return tuple(out)

    def get(self) -> RepoSettings:
        """The current settings (cached until a config file changes)."""
        stamp = self._stat()
        if self._settings is None or stamp != self._stamp:
            items: Items = {}
            for f in self.files:
                parse_hgrc(f, items)
            for key, value in self.overrides:
                items[key] = value
            self._settings = settings_from_items(items)
            self._stamp = stamp
        return self._settings


@dataclass
class ServedRepo:
    """One repository the server exposes: where it lives and how to read its settings."""

    #: URL path of the repository below the server root (``""`` at the root).
    name: str
    root: Path
    loader: SettingsLoader

    def settings(self) -> RepoSettings:
        return self.loader.get()
