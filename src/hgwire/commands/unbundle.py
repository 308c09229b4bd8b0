"""The v1 ``unbundle`` command: serving a push (wire spec §9.5, storage §9.8).

The ``heads`` argument is checked before the payload is read (a bundle1 push race is
refused with a push error and the client never sends its bundle; over SSH reading the
payload is what sends the "go ahead"). A bundle2 payload is applied by
:func:`hgwire.exchange.bundle2.unbundle`: every part in one transaction under the
repository locks, all or nothing, with a bundle2 reply (``reply:changegroup``,
``reply:pushkey``, ``error:*``). Human output goes into ``output`` parts over HTTP and
to the text side channel (ssh stderr) otherwise. A bundle1 (``HG10``) payload is
applied while ``server.bundle1`` allows it and answered with the legacy integer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from hgwire.commands.registry import (
    OutOfBandError,
    PushError,
    PushResponse,
    StreamResponse,
    V1Response,
)
from hgwire.errors import CommandError, HgwireError
from hgwire.exchange import bundle2
from hgwire.exchange.changegroup import Readable

if TYPE_CHECKING:
    from hgwire.commands.context import CommandContext


def serve_unbundle(
    ctx: CommandContext, their_heads: list[bytes], payload: BinaryIO | None
) -> V1Response:
    """Apply the pushed bundle in ``payload`` if ``their_heads`` still holds."""
    from hgwire.commands.v1 import BUNDLE2_REQUIRED, bundle1allowed

    repo = ctx.repo
    repo.invalidate()
    try:
        bundle2.check_heads(repo, their_heads, b"preparing changes")
    except bundle2.PushRacedError as exc:
        return PushError(exc.message)
    if payload is None:
        raise CommandError(b"unbundle: no bundle was sent")
    magic, fh = bundle2.peekmagic(payload)
    if magic == bundle2.MAGIC:
        http = ctx.transport.startswith("http")
        reply = bundle2.unbundle(repo, fh, publishing=ctx.config.publishing, capture_output=http)
        if not http:
            for text in reply.output:
                ctx.output(text)
        return StreamResponse(reply.getchunks(), compressible=False)
    if not bundle1allowed(ctx, b"push"):
        _drain(fh)
        return OutOfBandError(BUNDLE2_REQUIRED)
    try:
        result, output = bundle2.unbundle_bundle1(repo, fh, publishing=ctx.config.publishing)
    except HgwireError as exc:
        # 6.0: the abort is printed on the server's stderr and the push answers 0.
        _drain(fh)
        return PushResponse(0, b"abort: %s\n" % str(exc).encode("utf-8", "replace"))
    finally:
        repo.invalidate()
    return PushResponse(result, output)


def _drain(fh: Readable) -> None:
    while fh.read(65536):
        pass
