"""The legacy (version 1) wire commands, served over HTTP ``?cmd=`` and SSH stdio.

Every command Mercurial 6.0/7.2 serves on v1 transports is registered here with
Mercurial's name and argument spec (wire spec §9.2). Handlers return
:mod:`hgwire.commands.registry` response objects; transports render them (HTTP §5.2,
SSH §6.2). Repository queries go through :mod:`hgwire.commands.common` (the served
view: secret changesets are never shown) and data streams through
:mod:`hgwire.exchange`.

Capabilities (§7.1, §7.2): hgwire advertises 6.0's set, so a fresh repository answers
exactly 6.0's strings (``changegroup=01,02`` in the bundle2 blob, no
``delta-compression``, no ``revlog-compression-zstd`` in ``streamreqs``); the
``streamreqs`` list is built from the streamed requirements as 7.2 does (so a 7.2
repository's ``share-safe`` is not listed, unlike 6.0).

Deliberate differences: a malformed argument or an unknown node in ``between`` or
``branches`` is an out-of-band error instead of 6.0's traceback; ``clonebundles`` is
advertised when ``.hg/clonebundles.manifest`` exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from hgwire.commands import common
from hgwire.commands.registry import (
    REGISTRY,
    BytesResponse,
    OutOfBandError,
    StreamResponse,
    V1Response,
)
from hgwire.errors import CommandError, HgwireError
from hgwire.exchange import bundle2, streamclone
from hgwire.exchange import changegroup as cgmod

if TYPE_CHECKING:
    from hgwire.commands.context import CommandContext

NULLID = b"\0" * 20

#: The message 6.0 sends when a bundle1 exchange is refused (wire §9.4).
BUNDLE2_REQUIRED_MAIN = b"incompatible Mercurial client; bundle2 required"
BUNDLE2_REQUIRED_HINT = b"see https://www.mercurial-scm.org/wiki/IncompatibleClient"
BUNDLE2_REQUIRED = b"%s\n(%s)\n" % (BUNDLE2_REQUIRED_MAIN, BUNDLE2_REQUIRED_HINT)

#: ``getbundle`` arguments and their wire types (wire §9.4).
GETBUNDLE_ARGUMENTS: dict[bytes, str] = {
    b"heads": "nodes",
    b"bookmarks": "boolean",
    b"common": "nodes",
    b"obsmarkers": "boolean",
    b"phases": "boolean",
    b"bundlecaps": "scsv",
    b"listkeys": "csv",
    b"cg": "boolean",
    b"cbattempted": "boolean",
    b"stream": "boolean",
    b"includepats": "csv",
    b"excludepats": "csv",
}

CLONEBUNDLES_MANIFEST = "clonebundles.manifest"
ZSTD_REQUIREMENT = b"revlog-compression-zstd"


# ---------------------------------------------------------------------------------------
# Encodings (wire §9.1, §9.3)


def decodelist(value: bytes) -> list[bytes]:
    """A space-separated list of hex nodes (any length: ``force`` travels hex too)."""
    out = []
    for item in value.split():
        try:
            out.append(bytes.fromhex(item.decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            raise CommandError(b"invalid hex node: %s" % item) from None
    return out


def decodenodes(value: bytes) -> list[bytes]:
    """Like :func:`decodelist` but every item must be a 20-byte node."""
    nodes = decodelist(value)
    for n in nodes:
        if len(n) != 20:
            raise CommandError(b"invalid node: %s" % n.hex().encode())
    return nodes


def encodelist(nodes: list[bytes]) -> bytes:
    return b" ".join(n.hex().encode() for n in nodes)


def escapearg(value: bytes) -> bytes:
    """Batch escaping (wire §9.3): ``:`` first, then ``,``, ``;`` and ``=``."""
    return value.replace(b":", b":c").replace(b",", b":o").replace(b";", b":s").replace(b"=", b":e")


def unescapearg(value: bytes) -> bytes:
    """The inverse of :func:`escapearg` (``:e``, ``:s``, ``:o``, then ``:c``)."""
    return value.replace(b":e", b"=").replace(b":s", b";").replace(b":o", b",").replace(b":c", b":")


def _configbool(ctx: CommandContext, section: bytes, name: bytes) -> bool | None:
    """A boolean from the hgrc items kept in ``config.extra`` (None when unset)."""
    value = ctx.config.extra.get((section, name))
    if value is None:
        return None
    v = value.strip().lower()
    if v in (b"1", b"yes", b"true", b"on", b"always"):
        return True
    if v in (b"0", b"no", b"false", b"off", b"never"):
        return False
    return None


def _flag(ctx: CommandContext, section: bytes, name: bytes, default: bool) -> bool:
    value = _configbool(ctx, section, name)
    return default if value is None else value


def bundle1allowed(ctx: CommandContext, action: bytes) -> bool:
    """``server.bundle1gd.<action>``, ``server.bundle1.<action>``, ``server.bundle1gd``,
    ``server.bundle1`` in that order (6.0's rule; allowed by default)."""
    gd = b"generaldelta" in ctx.repo.requirements
    keys = []
    if gd:
        keys.append(b"bundle1gd." + action)
    keys.append(b"bundle1." + action)
    if gd:
        keys.append(b"bundle1gd")
    keys.append(b"bundle1")
    for key in keys:
        value = _configbool(ctx, b"server", key)
        if value is not None:
            return value
    return True


# ---------------------------------------------------------------------------------------
# Capabilities (wire §7.1, §7.2)


def stream_allowed(ctx: CommandContext, view: common.ServedView | None = None) -> bool:
    """Whether stream clones may be generated: ``server.uncompressed`` and no secret
    changesets. Deliberately stricter than 6.0: ``server.uncompressedallowsecret`` is
    not honoured, as hgwire's stream generators never copy a store with secrets."""
    if not ctx.config.uncompressed:
        return False
    view = view if view is not None else common.served(ctx.repo)
    return not view.hassecret()


def bundle2_capabilities(ctx: CommandContext) -> dict[bytes, list[bytes]]:
    """The server's bundle2 capabilities as 6.0 advertises them (§7.2 blob)."""
    caps: dict[bytes, list[bytes]] = {
        b"HG20": [],
        b"bookmarks": [],
        b"changegroup": [b"01", b"02"],
        b"digests": [b"md5", b"sha1", b"sha512"],
        b"error": [b"abort", b"unsupportedcontent", b"pushraced", b"pushkey"],
        b"hgtagsfnodes": [],
        b"listkeys": [],
        b"phases": [b"heads"],
        b"pushkey": [],
        b"remote-changegroup": [b"http", b"https"],
        b"stream": [b"v2"],
    }
    if b"treemanifest" in ctx.repo.requirements:
        caps[b"changegroup"].append(b"03")
    if ctx.config.concurrent_push_mode == b"check-related":
        caps[b"checkheads"] = [b"related"]
    if not ctx.config.uncompressed or not _flag(ctx, b"server", b"bundle2.stream", True):
        del caps[b"stream"]
    return caps


def capabilities_tokens(ctx: CommandContext, transport: str | None = None) -> list[bytes]:
    """The sorted v1 capability tokens for ``transport`` (``http-v1``, ``ssh-v1``, or
    ``ssh-v2`` after an upgrade, which adds neither ``batch`` nor ``protocaps``)."""
    transport = transport or ctx.transport
    caps = [b"lookup", b"branchmap", b"pushkey", b"known", b"getbundle", b"unbundlehash"]
    caps.append(b"changegroupsubset")
    if stream_allowed(ctx):
        if ctx.config.preferuncompressed:
            caps.append(b"stream-preferred")
        # 6.0 never names the revlog compression here (spec §7.1, Appendix B.20);
        # readers pick the decompressor from each chunk's header anyway.
        caps.append(streamclone.stream_capability(ctx.repo.requirements - {ZSTD_REQUIREMENT}))
    if _flag(ctx, b"experimental", b"bundle2-advertise", True):
        blob = bundle2.encodecaps(bundle2_capabilities(ctx))
        caps.append(b"bundle2=" + bundle2.urlquote(blob))
    caps.append(b"unbundle=HG10GZ,HG10BZ,HG10UN")
    if ctx.repo.vfs.exists(CLONEBUNDLES_MANIFEST):
        caps.append(b"clonebundles")
    if transport == "ssh-v1":
        caps += [b"protocaps", b"batch"]
    elif transport == "http-v1":
        caps.append(b"batch")
        caps.append(b"httpheader=%d" % ctx.config.maxhttpheaderlen)
        if ctx.config.httppostargs:
            caps.append(b"httppostargs")
        caps.append(b"httpmediatype=0.1rx,0.1tx,0.2tx")
        engines = [e for e in ctx.config.compressionengines if e != b"none"]
        if engines:
            caps.append(b"compression=" + b",".join(bundle2.urlquote(e) for e in engines))
    return sorted(caps)


@REGISTRY.v1command(b"capabilities")
def capabilities(
    ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None
) -> V1Response:
    return BytesResponse(b" ".join(capabilities_tokens(ctx)))


@REGISTRY.v1command(b"hello")
def hello(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    """``capabilities: <tokens>\\n`` (the SSH handshake, §6.3)."""
    return BytesResponse(b"capabilities: %s\n" % b" ".join(capabilities_tokens(ctx)))


@REGISTRY.v1command(b"protocaps", b"caps")
def protocaps(
    ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None
) -> V1Response:
    """Remember the client's protocol capabilities (SSH v1 only; ``OK`` everywhere)."""
    if ctx.transport == "ssh-v1":
        ctx.session["protocaps"] = frozenset(args[b"caps"].split(b" ")) - {b""}
    return BytesResponse(b"OK")


# ---------------------------------------------------------------------------------------
# Discovery and queries


@REGISTRY.v1command(b"heads")
def heads(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    view = common.served(ctx.repo)
    return BytesResponse(encodelist(common.heads(view)) + b"\n")


@REGISTRY.v1command(b"known", b"nodes *")
def known(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    nodes = decodelist(args[b"nodes"])
    view = common.served(ctx.repo)
    return BytesResponse(b"".join(b"1" if k else b"0" for k in common.known(view, nodes)))


@REGISTRY.v1command(b"branchmap")
def branchmap(
    ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None
) -> V1Response:
    view = common.served(ctx.repo)
    lines = [
        bundle2.urlquote(name) + b" " + encodelist(nodes)
        for name, nodes in common.branchmap(view).items()
    ]
    return BytesResponse(b"\n".join(lines))


def _servedrev(view: common.ServedView, node: bytes) -> int:
    rev = view.rev(node)
    if rev is None:
        raise CommandError(b"unknown revision %s" % node.hex().encode())
    return rev


@REGISTRY.v1command(b"between", b"pairs")
def between(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    """Nodes at first-parent distances 1, 2, 4… from top towards bottom, per pair."""
    view = common.served(ctx.repo)
    out = []
    for item in args[b"pairs"].split(b" ") if args[b"pairs"] else []:
        top, sep, bottom = item.partition(b"-")
        if not sep:
            raise CommandError(b"invalid between pair: %s" % item)
        topn, bottomn = decodenodes(top + b" " + bottom)
        found: list[bytes] = []
        n, i, f = topn, 0, 1
        while n != bottomn and n != NULLID:
            rev = _servedrev(view, n)
            p1 = view.node(view.cl.parentrevs(rev)[0])
            if i == f:
                found.append(n)
                f *= 2
            n = p1
            i += 1
        out.append(encodelist(found) + b"\n")
    return BytesResponse(b"".join(out))


@REGISTRY.v1command(b"branches", b"nodes")
def branches(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    """Per node: the node, the first merge or root down its first-parent line, and that
    changeset's parents."""
    view = common.served(ctx.repo)
    nodes = decodenodes(args[b"nodes"])
    if not nodes:
        nodes = [view.node(view.tiprev())]
    out = []
    for top in nodes:
        n = top
        while True:
            rev = _servedrev(view, n)
            p1r, p2r = view.cl.parentrevs(rev) if rev >= 0 else (-1, -1)
            p1, p2 = view.node(p1r), view.node(p2r)
            if p2 != NULLID or p1 == NULLID:
                out.append(encodelist([top, n, p1, p2]) + b"\n")
                break
            n = p1
    return BytesResponse(b"".join(out))


@REGISTRY.v1command(b"listkeys", b"namespace")
def listkeys(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    view = common.served(ctx.repo)
    keys = common.listkeys(view, args[b"namespace"], ctx.config.publishing)
    return BytesResponse(bundle2.encodekeys(sorted(keys.items())))


@REGISTRY.v1command(b"lookup", b"key")
def lookup(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    """``1 <hex>\\n``, or ``0 <message>\\n`` when the symbol names no served changeset."""
    view = common.served(ctx.repo)
    key = args[b"key"]
    try:
        node = common.lookup(view, key)
    except HgwireError as exc:
        message = getattr(exc, "message", None)
        if not isinstance(message, bytes):
            message = str(exc).encode("utf-8", "replace")
        return BytesResponse(b"0 %s\n" % message)
    return BytesResponse(b"1 %s\n" % node.hex().encode())


@REGISTRY.v1command(b"debugwireargs", b"one two *")
def debugwireargs(
    ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None
) -> V1Response:
    """Echo ``one two three four five`` (``None`` for absent ones; only ``three`` and
    ``four`` are taken from the other arguments, the rest is warned about)."""
    others = [k for k in args if k not in (b"one", b"two", b"three", b"four")]
    if others:
        ctx.output(b"warning: debugwireargs ignored unexpected arguments %s\n" % b",".join(others))
    values = [args.get(k, b"None") for k in (b"one", b"two", b"three", b"four")]
    return BytesResponse(b" ".join([*values, b"None"]))


@REGISTRY.v1command(b"clonebundles")
def clonebundles(
    ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None
) -> V1Response:
    """The clone bundles manifest (``.hg/clonebundles.manifest``), empty without one."""
    return BytesResponse(ctx.repo.vfs.tryread(CLONEBUNDLES_MANIFEST))


@REGISTRY.v1command(b"clonebundles_manifest", b"*")
def clonebundles_manifest(
    ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None
) -> V1Response:
    """7.2's name for :func:`clonebundles` (not advertised: clients use it only when a
    server lists ``clonebundles_manifest``)."""
    return BytesResponse(ctx.repo.vfs.tryread(CLONEBUNDLES_MANIFEST))


@REGISTRY.v1command(b"pushkey", b"namespace key old new", permission="push")
def pushkey(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    """``<0|1>\\n`` (hgwire prints nothing while updating a key, so no output follows)."""
    ok = common.pushkey(ctx.repo, args[b"namespace"], args[b"key"], args[b"old"], args[b"new"])
    ctx.repo.invalidate()
    return BytesResponse(b"%d\n" % int(ok))


# ---------------------------------------------------------------------------------------
# batch (wire §9.3)


@REGISTRY.v1command(b"batch", b"cmds *")
def batch(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    """Run ``op args;op args…`` and join the escaped string results with ``;``. A
    sub-command's out-of-band error (or failure) is the whole batch's answer."""
    held = ctx.permissions
    if held is None and ctx.transport.startswith("http"):
        held = frozenset({"pull"})
    results = []
    for item in args[b"cmds"].split(b";"):
        op, sep, rest = item.partition(b" ")
        if not sep:
            return OutOfBandError(b"malformed batch request: %s" % item)
        cmd = REGISTRY.v1.get(op)
        if cmd is None or op == b"batch":
            return OutOfBandError(b"unknown command in batch: %s" % op)
        if held is not None and cmd.permission not in held:
            return OutOfBandError(b"permission denied for %s" % op)
        vals: dict[bytes, bytes] = {}
        for a in rest.split(b","):
            if a:
                k, eq, v = a.partition(b"=")
                if not eq or b"=" in v:
                    return OutOfBandError(b"malformed batch argument: %s" % a)
                vals[unescapearg(k)] = unescapearg(v)
        names = cmd.args.split()
        subargs: dict[bytes, bytes] = {}
        for name in names:
            if name == b"*":
                subargs.update((k, v) for k, v in vals.items() if k not in names)
            elif name not in vals:
                return OutOfBandError(b"missing argument for %s: %s" % (op, name))
            else:
                subargs[name] = vals[name]
        try:
            rsp = cmd.func(ctx, subargs, None)
        except HgwireError as exc:
            return OutOfBandError(str(exc).encode("utf-8", "replace"))
        if isinstance(rsp, OutOfBandError):
            return rsp
        if not isinstance(rsp, BytesResponse):
            return OutOfBandError(b"%s cannot be batched" % op)
        results.append(escapearg(rsp.data))
    return BytesResponse(b";".join(results))


# ---------------------------------------------------------------------------------------
# Pulls: getbundle (wire §9.4, storage §9.7), legacy changegroups, stream_out


def _getbundle_options(
    ctx: CommandContext, args: dict[bytes, bytes]
) -> dict[bytes, bytes | list[bytes] | set[bytes] | bool]:
    opts: dict[bytes, bytes | list[bytes] | set[bytes] | bool] = {}
    unknown = []
    for key, value in args.items():
        kind = GETBUNDLE_ARGUMENTS.get(key)
        if kind is None:
            unknown.append(key)
        elif kind == "nodes":
            opts[key] = decodenodes(value)
        elif kind == "csv":
            opts[key] = value.split(b",")
        elif kind == "scsv":
            opts[key] = set(value.split(b","))
        else:
            opts[key] = value != b"0" and bool(value)
    if unknown:
        ctx.output(b"warning: getbundle ignored unexpected arguments %s\n" % b",".join(unknown))
    return opts


@REGISTRY.v1command(b"getbundle", b"*")
def getbundle(
    ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None
) -> V1Response:
    """A bundle2 (``HG20`` in ``bundlecaps``) or bare cg1 stream of what the client
    lacks; bundle1 only while ``server.bundle1`` allows it."""
    opts = _getbundle_options(ctx, args)
    bundlecaps = opts.get(b"bundlecaps", set())
    assert isinstance(bundlecaps, set)
    wants2 = bundle2.bundle2_requested(bundlecaps)
    if not wants2 and not bundle1allowed(ctx, b"pull"):
        return OutOfBandError(BUNDLE2_REQUIRED)

    def nodes(key: bytes) -> list[bytes]:
        value = opts.get(key, [])
        assert isinstance(value, list)
        return value

    def flag(key: bytes, default: bool) -> bool:
        value = opts.get(key, default)
        return bool(value)

    view = common.served(ctx.repo)
    heads = nodes(b"heads") or None  # absent or empty: every served head (as 6.0)
    common_ = [n for n in nodes(b"common") if n != NULLID]
    stream = flag(b"stream", False)
    if _flag(ctx, b"server", b"disablefullbundle", False) and flag(b"cg", True) and not stream:
        served_heads = set(common.heads(view))
        if not common_ and heads is not None and set(heads) == served_heads:
            msg = b"server has pull-based clones disabled"
            hint = b"remove --pull if specified or upgrade Mercurial"
            return _abort_reply(ctx, wants2, msg, hint)
    listkeys_ns = [ns for ns in nodes_csv(opts.get(b"listkeys")) if ns]
    try:
        chunks = bundle2.getbundle(
            ctx.repo,
            heads=heads,
            common=common_,
            bundlecaps=sorted(bundlecaps),
            cg=flag(b"cg", True),
            phases=flag(b"phases", False),
            bookmarks=flag(b"bookmarks", False),
            listkeys=listkeys_ns,
            stream=stream,
            publishing=ctx.config.publishing,
            allow_stream=stream_allowed(ctx, view),
        )
    except HgwireError as exc:
        if wants2:
            return _abort_reply(ctx, True, str(exc).encode("utf-8", "replace"), None)
        return OutOfBandError(str(exc).encode("utf-8", "replace") + b"\n")
    return StreamResponse(iter(chunks), compressible=True, prefer_uncompressed=stream)


def nodes_csv(value: object) -> list[bytes]:
    return list(value) if isinstance(value, list) else []


def _abort_reply(ctx: CommandContext, wants2: bool, msg: bytes, hint: bytes | None) -> V1Response:
    if not wants2:
        text = msg + b"\n" + (b"(%s)\n" % hint if hint else b"")
        return OutOfBandError(text)
    bundler = bundle2.Bundler()
    bundler.addpart(bundle2.error_abort_part(msg, hint))
    return StreamResponse(bundler.getchunks(), compressible=True, prefer_uncompressed=True)


def _changegroup(
    ctx: CommandContext, roots: list[bytes], heads: list[bytes] | None
) -> Iterator[bytes]:
    """cg1 of ``::heads - ::parents(roots)`` (Mercurial's ``missingroots``)."""
    view = common.served(ctx.repo)
    bases: list[bytes] = []
    for n in roots:
        rev = _servedrev(view, n)
        if rev >= 0:
            bases += [view.node(p) for p in view.cl.parentrevs(rev) if p >= 0]
    outgoing = cgmod.findoutgoing(ctx.repo, bases, heads, served=view.served)
    return cgmod.makechangegroup(ctx.repo, outgoing, b"01")


@REGISTRY.v1command(b"changegroup", b"roots")
def changegroup(
    ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None
) -> V1Response:
    roots = decodenodes(args[b"roots"])
    return StreamResponse(_changegroup(ctx, roots, None))


@REGISTRY.v1command(b"changegroupsubset", b"bases heads")
def changegroupsubset(
    ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None
) -> V1Response:
    bases = decodenodes(args[b"bases"])
    heads = decodenodes(args[b"heads"])
    return StreamResponse(_changegroup(ctx, bases, heads))


@REGISTRY.v1command(b"stream_out")
def stream_out(
    ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None
) -> V1Response:
    """The v1 stream clone (storage §10.1): ``1\\n`` when not allowed."""
    allowed = stream_allowed(ctx)
    return StreamResponse(streamclone.generate_v1(ctx.repo, allowed), compressible=False)


# ---------------------------------------------------------------------------------------
# Pushes (wire §9.5, storage §9.8)


@REGISTRY.v1command(b"unbundle", b"heads", permission="push")
def unbundle(ctx: CommandContext, args: dict[bytes, bytes], payload: BinaryIO | None) -> V1Response:
    from hgwire.commands import unbundle as unbundlemod

    return unbundlemod.serve_unbundle(ctx, decodelist(args[b"heads"]), payload)
