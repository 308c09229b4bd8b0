"""What a command sees of the server: the repository, the configuration, side channels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hgwire.repo.localrepo import Repository


@dataclass
class ServerConfig:
    """Server settings commands depend on (read from ``.hg/hgrc`` and the command line).

    Names follow Mercurial's configuration keys.
    """

    #: ``server.uncompressed``: stream clones allowed.
    uncompressed: bool = True
    #: ``server.uncompressedallowsecret``: stream clones even with secret changesets.
    uncompressedallowsecret: bool = False
    #: ``server.preferuncompressed``: advertise ``stream-preferred``.
    preferuncompressed: bool = False
    #: ``phases.publish``: pushed changesets become public.
    publishing: bool = True
    #: ``server.compressionengines``: wire compression engines in server preference order.
    compressionengines: tuple[bytes, ...] = (b"zstd", b"zlib")
    #: ``server.zstdlevel`` / ``server.zliblevel``.
    zstdlevel: int = 3
    zliblevel: int = -1
    #: ``server.maxhttpheaderlen``: advertised ``httpheader=`` value.
    maxhttpheaderlen: int = 1024
    #: ``experimental.httppostargs``.
    httppostargs: bool = False
    #: ``server.concurrent-push-mode``: ``check-related`` or ``strict``.
    concurrent_push_mode: bytes = b"check-related"
    #: ``experimental.server.manifestdata.recommended-batch-size`` and filesdata's.
    manifestdata_batchsize: int = 100000
    filesdata_batchsize: int = 50000
    #: ``experimental.web.apiserver`` and ``experimental.web.api.http-v2``.
    apiserver: bool = True
    api_http_v2: bool = True
    #: ``experimental.sshserver.support-v2`` (off by default, as in 6.0).
    sshserver_v2: bool = False
    #: Content-redirect targets to advertise (v2 capabilities ``redirect``, spec §3.6,
    #: §7.3): maps with ``name``, ``protocol``, ``uris`` and optionally ``snirequired``,
    #: ``tlsversions``. Empty (the default): no ``redirect`` key is advertised.
    redirect_targets: list[dict[bytes, Any]] = field(default_factory=list)
    #: Anything else from the hgrc, ``(section, name) -> value``.
    extra: dict[tuple[bytes, bytes], bytes] = field(default_factory=dict)


@dataclass
class CommandContext:
    """Everything one command invocation may use."""

    repo: Repository
    config: ServerConfig
    #: ``http-v1``, ``ssh-v1``, ``http-v2`` or ``ssh-v2``.
    transport: str
    #: Capabilities the client announced (``protocaps`` / ``X-HgProto``), e.g. ``partial-pull``.
    protocaps: frozenset[bytes] = frozenset()
    #: Progress side channel (topic, position, total); a no-op where the peer has none.
    progress: Callable[[bytes, int, int | None], None] = lambda topic, pos, total: None
    #: Text side channel (ssh stderr, v2 text-output for peers that accept it).
    output: Callable[[bytes], None] = lambda text: None
    #: Permissions the requester holds (``pull``/``push``), checked by ``batch`` for its
    #: sub-commands; None: the transport does not check (ssh), except that HTTP
    #: transports then get ``pull`` only inside a batch.
    permissions: frozenset[str] | None = None
    #: State kept for the whole connection (ssh: one per process), e.g. the client's
    #: ``protocaps``; HTTP gives each request a fresh one.
    session: dict[str, Any] = field(default_factory=dict)
