"""The v1 commands (``hgwire.commands.v1``), alone and against Mercurial 6.0's own
``hg serve --stdio`` answering the same requests on the same repository.

The differential tests send one session of string commands (every query command, with
secret, unknown, malformed-free arguments) to both servers and compare stdout byte for
byte; streams (getbundle…) are checked by applying them elsewhere.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from hgwire.commands import common, v1
from hgwire.commands.context import CommandContext, ServerConfig
from hgwire.commands.registry import (
    REGISTRY,
    BytesResponse,
    OutOfBandError,
    StreamResponse,
    V1Response,
)
from hgwire.exchange import bundle2
from hgwire.exchange import changegroup as cgmod
from hgwire.repo.localrepo import Repository
from hgwire.server.config import parse_hgrc, settings_from_items
from hgwire.server.sshserver import SshServer
from tests.conftest import HgRunner, hg_env
from tests.repo import hgrepos

NULLHEX = b"0" * 40
HANDSHAKE = b"hello\nbetween\npairs 81\n" + NULLHEX + b"-" + NULLHEX


def request(name: bytes, args: Mapping[bytes, bytes] | None = None) -> bytes:
    """One SSH v1 request as the hg client writes it (§6.2): blocks sorted by name,
    ``*`` first, its entries in the given order."""
    args = dict(args or {})
    spec = REGISTRY.v1[name].args.split() if name in REGISTRY.v1 else sorted(args)
    out = [name + b"\n"]
    star = {k: v for k, v in args.items() if k not in spec}
    for key in sorted(spec):
        if key == b"*":
            out.append(b"* %d\n" % len(star))
            out += [b"%s %d\n%s" % (k, len(v), v) for k, v in star.items()]
        else:
            out.append(b"%s %d\n%s" % (key, len(args[key]), args[key]))
    return b"".join(out)


def serve_hgwire(repo: Path, data: bytes, hgrc: str = "") -> tuple[bytes, bytes, int]:
    """Run hgwire's SSH server in-process on ``data``; (stdout, stderr, exit status)."""
    (repo / ".hg" / "hgrc").write_text(hgrc)
    items = parse_hgrc(repo / ".hg" / "hgrc")
    support = items.get(("experimental", "sshserver.support-v2"), "").lower() == "true"
    fout, ferr = io.BytesIO(), io.BytesIO()
    server = SshServer(
        Repository.open(repo), io.BytesIO(data), fout, ferr,  # type: ignore[arg-type]
        settings_from_items(items).config, support_v2=support,
    )  # fmt: skip
    code = server.serve()
    return fout.getvalue(), ferr.getvalue(), code


def serve_hg(hg: Path, repo: Path, data: bytes, hgrc: str = "") -> tuple[bytes, bytes, int]:
    """Run real ``hg -R repo serve --stdio`` on ``data``."""
    (repo / ".hg" / "hgrc").write_text(hgrc)
    proc = subprocess.run(
        [str(hg), "-R", str(repo), "serve", "--stdio"],
        input=data, capture_output=True, env=hg_env(), check=False,
    )  # fmt: skip
    return proc.stdout, proc.stderr, proc.returncode


def divergence(ours: bytes, theirs: bytes) -> str:
    i = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
    if i is None:
        i = min(len(ours), len(theirs))
    return (
        f"differ at {i}:\n ours   {ours[i - 80 : i + 120]!r}\n theirs {theirs[i - 80 : i + 120]!r}"
    )


def ctx_for(repo: Path, transport: str = "ssh-v1", **config: object) -> CommandContext:
    return CommandContext(Repository.open(repo), ServerConfig(**config), transport)  # type: ignore[arg-type]


def call(ctx: CommandContext, name: bytes, args: Mapping[bytes, bytes] | None = None) -> V1Response:
    return REGISTRY.v1[name].func(ctx, dict(args or {}), None)


def data(rsp: V1Response) -> bytes:
    assert isinstance(rsp, BytesResponse), rsp
    return rsp.data


# ---------------------------------------------------------------------------------------
# Differential: the same session against hg 6.0


def _session(repo: Path) -> bytes:
    """Every string command with interesting arguments for the full test repository."""
    r = Repository.open(repo)
    cl = r.changelog
    nodes = [cl.node(i) for i in range(len(cl))]
    secret = nodes[-1]  # r17 is secret
    hexes = [n.hex().encode() for n in nodes]
    reqs = [
        HANDSHAKE,
        request(b"protocaps", {b"caps": b"comp=zstd,zlib,none,bzip2 partial-pull"}),
        request(b"capabilities"),
        request(b"heads"),
        request(b"known", {b"nodes": b" ".join([hexes[0], secret.hex().encode(), b"1" * 40])}),
        request(b"known", {b"nodes": b""}),
        request(b"branchmap"),
    ]
    for ns in (b"bookmarks", b"phases", b"namespaces", b"nope"):
        reqs.append(request(b"listkeys", {b"namespace": ns}))
    for key in (b"tip", b"0", b"-1", b"17", secret.hex().encode(), b"stable", b"main",
                b"v1.0", b"stable-tag", b"null", b"nope", hexes[3][:6], b"with space",
                b"feature", b"secret-book"):  # fmt: skip
        reqs.append(request(b"lookup", {b"key": key}))
    reqs.append(request(b"branches", {b"nodes": b" ".join([hexes[16], hexes[13], hexes[7]])}))
    reqs.append(request(b"between", {b"pairs": hexes[16] + b"-" + hexes[0]}))
    reqs.append(
        request(
            b"between", {b"pairs": hexes[13] + b"-" + hexes[2] + b" " + hexes[5] + b"-" + hexes[3]}
        )
    )
    reqs.append(
        request(
            b"batch",
            {b"cmds": b"heads ;known nodes=" + hexes[1] + b" " + secret.hex().encode()
             + b";listkeys namespace=bookmarks;lookup key=no:ssuch:erev;branchmap "},
        )
    )  # fmt: skip
    reqs.append(request(b"clonebundles"))
    reqs.append(request(b"debugwireargs", {b"one": b"1", b"two": b"2 2", b"four": b"4",
                                           b"five": b"5"}))  # fmt: skip
    reqs.append(request(b"nosuchcommand"))
    reqs.append(request(b"heads"))
    return b"".join(reqs)


@pytest.mark.interop
@pytest.mark.parametrize("hgrc", ["", "[phases]\npublish = false\n"], ids=["publishing", "draft"])
def test_string_commands_match_hg60(
    hg60_path: Path,
    full_repo60: hgrepos.GeneratedRepo,
    repo_copy: Callable[[Path], Path],
    hgrc: str,
) -> None:
    repo = repo_copy(full_repo60.path)
    session = _session(repo)
    theirs = serve_hg(hg60_path, repo, session, hgrc)
    ours = serve_hgwire(repo, session, hgrc)
    assert theirs[2] == 0
    assert theirs[1] == b"warning: debugwireargs ignored unexpected arguments five\n"
    assert ours[0] == theirs[0], divergence(ours[0], theirs[0])
    assert ours[1:] == theirs[1:]


@pytest.mark.interop
def test_capabilities_of_fresh_repositories(
    hg60_path: Path, hg72: HgRunner, hg60: HgRunner, tmp_path: Path
) -> None:
    """hgwire advertises 6.0's set: a fresh (zstd) 6.0 repository gives exactly the
    strings of spec §7.2 and of hg 6.0 itself; a fresh 7.2 repository the same (its
    ``share-safe`` is not a streamed requirement)."""
    spec_ssh = (
        b"batch branchmap bundle2=HG20%0Abookmarks%0Achangegroup%3D01%2C02%0Acheckheads%3D"
        b"related%0Adigests%3Dmd5%2Csha1%2Csha512%0Aerror%3Dabort%2Cunsupportedcontent%2C"
        b"pushraced%2Cpushkey%0Ahgtagsfnodes%0Alistkeys%0Aphases%3Dheads%0Apushkey%0A"
        b"remote-changegroup%3Dhttp%2Chttps%0Astream%3Dv2 changegroupsubset getbundle known "
        b"lookup protocaps pushkey streamreqs=generaldelta,revlogv1,sparserevlog "
        b"unbundle=HG10GZ,HG10BZ,HG10UN unbundlehash"
    )
    spec_http = spec_ssh.replace(b" protocaps", b"").replace(
        b"changegroupsubset getbundle",
        b"changegroupsubset compression=zstd,zlib getbundle httpheader=1024 "
        b"httpmediatype=0.1rx,0.1tx,0.2tx",
    )
    hg60("init", tmp_path / "r60")
    ours_ssh = data(call(ctx_for(tmp_path / "r60"), b"capabilities"))
    assert ours_ssh == spec_ssh and len(ours_ssh) == 429
    assert data(call(ctx_for(tmp_path / "r60", "http-v1"), b"capabilities")) == spec_http
    theirs = serve_hg(hg60_path, tmp_path / "r60", HANDSHAKE)[0]
    assert theirs == b"444\ncapabilities: " + ours_ssh + b"\n1\n\n"
    assert serve_hgwire(tmp_path / "r60", HANDSHAKE)[0] == theirs
    hg72("init", tmp_path / "r72")
    caps72 = data(call(ctx_for(tmp_path / "r72"), b"capabilities"))
    assert b"share-safe" in Repository.open(tmp_path / "r72").requirements
    assert caps72 == spec_ssh
    # after an upgrade (ssh-v2) neither batch nor protocaps (6.0's quirk, §6.4)
    v2 = data(call(ctx_for(tmp_path / "r60", "ssh-v2"), b"capabilities"))
    assert v2.split() == [t for t in ours_ssh.split() if t not in (b"batch", b"protocaps")]


# ---------------------------------------------------------------------------------------
# Units


def test_batch_escaping_round_trip() -> None:
    raw = b"a:b,c;d=e::,;=="
    assert v1.escapearg(raw) == b"a:cb:oc:sd:ee:c:c:o:s:e:e"
    assert v1.unescapearg(v1.escapearg(raw)) == raw


def test_batch_runs_subcommands(public_repo: Path, repo_copy: Callable[[Path], Path]) -> None:
    ctx = ctx_for(repo_copy(public_repo))
    view = common.served(ctx.repo)
    heads = b" ".join(n.hex().encode() for n in common.heads(view))
    out = data(call(ctx, b"batch", {b"cmds": b"heads ;known nodes=" + NULLHEX + b" " + b"a" * 40}))
    assert out == heads + b"\n;10"
    # unknown sub-command, sub-command failure: out-of-band error for the whole batch
    assert isinstance(call(ctx, b"batch", {b"cmds": b"heads ;nope "}), OutOfBandError)
    assert isinstance(call(ctx, b"batch", {b"cmds": b"known nodes=zz"}), OutOfBandError)
    assert isinstance(call(ctx, b"batch", {b"cmds": b"lookup "}), OutOfBandError)
    # push commands are refused inside an HTTP batch unless the transport says so
    push = b"pushkey namespace=bookmarks,key=x,old=,new="
    assert isinstance(
        call(ctx_for(ctx.repo.root, "http-v1"), b"batch", {b"cmds": push}), OutOfBandError
    )
    ok = data(call(ctx, b"batch", {b"cmds": push}))
    assert ok == b"1\n"


def test_lookup_and_known_hide_secret(full_repo60: hgrepos.GeneratedRepo) -> None:
    ctx = ctx_for(full_repo60.path)
    secret = ctx.repo.changelog.node(17)
    assert data(call(ctx, b"known", {b"nodes": secret.hex().encode()})) == b"0"
    out = data(call(ctx, b"lookup", {b"key": secret.hex().encode()}))
    assert out.startswith(b"0 ") and b"filtered" in out
    assert (
        data(call(ctx, b"lookup", {b"key": b"main"}))
        == b"1 %s\n" % ctx.repo.changelog.node(16).hex().encode()
    )


def test_protocaps_stored_on_ssh_v1_only(public_repo: Path) -> None:
    for transport, stored in (("ssh-v1", True), ("ssh-v2", False), ("http-v1", False)):
        ctx = ctx_for(public_repo, transport)
        assert data(call(ctx, b"protocaps", {b"caps": b"partial-pull comp=zlib"})) == b"OK"
        assert ("protocaps" in ctx.session) == stored
    assert ctx_for(public_repo).session == {}


def test_clonebundles_manifest(public_repo: Path, repo_copy: Callable[[Path], Path]) -> None:
    repo = repo_copy(public_repo)
    ctx = ctx_for(repo)
    assert data(call(ctx, b"clonebundles")) == b""
    assert b"clonebundles" not in data(call(ctx, b"capabilities")).split()
    manifest = b"https://example.com/full.hg BUNDLESPEC=gzip-v2\n"
    (repo / ".hg" / "clonebundles.manifest").write_bytes(manifest)
    assert data(call(ctx, b"clonebundles")) == manifest
    assert data(call(ctx, b"clonebundles_manifest", {b"extra": b"x"})) == manifest
    assert b"clonebundles" in data(call(ctx, b"capabilities")).split()


def test_stream_capabilities_follow_config(public_repo: Path) -> None:
    caps = data(call(ctx_for(public_repo, preferuncompressed=True), b"capabilities")).split()
    assert b"stream-preferred" in caps
    caps = data(call(ctx_for(public_repo, uncompressed=False), b"capabilities")).split()
    assert not [c for c in caps if c.startswith(b"stream")]
    blob = next(c for c in caps if c.startswith(b"bundle2="))
    assert b"stream" not in bundle2.decodecaps(bundle2.urlunquote(blob[8:]))
    out = call(ctx_for(public_repo, uncompressed=False), b"stream_out")
    assert isinstance(out, StreamResponse) and b"".join(out.chunks) == b"1\n"


def test_stream_out_refused_with_secret(full_repo60: hgrepos.GeneratedRepo) -> None:
    rsp = call(ctx_for(full_repo60.path), b"stream_out")
    assert isinstance(rsp, StreamResponse) and not rsp.compressible
    assert b"".join(rsp.chunks) == b"1\n"
    # stricter than 6.0: never streamed, not even with uncompressedallowsecret
    ctx = ctx_for(full_repo60.path, uncompressedallowsecret=True)
    still = call(ctx, b"stream_out")
    assert isinstance(still, StreamResponse) and b"".join(still.chunks) == b"1\n"
    caps = data(call(ctx, b"capabilities")).split()
    assert not [c for c in caps if c.startswith(b"stream")]


def test_getbundle_bundle1_refused_by_config(public_repo: Path) -> None:
    ctx = ctx_for(public_repo)
    args = {b"common": NULLHEX, b"bundlecaps": b"HG10UN"}
    rsp = call(ctx, b"getbundle", args)
    assert isinstance(rsp, StreamResponse)
    first = cgmod.getchunk(io.BytesIO(b"".join(rsp.chunks)))  # a bare cg1: changeset 0 first
    assert first[:20] == ctx.repo.changelog.node(0)
    ctx.config.extra[(b"server", b"bundle1")] = b"false"
    refused = call(ctx, b"getbundle", args)
    assert refused == OutOfBandError(v1.BUNDLE2_REQUIRED)
    # a bundle2 request is still served
    caps = b"HG20,bundle2=" + bundle2.urlquote(bundle2.encodecaps(bundle2.client_capabilities()))
    ok = call(ctx, b"getbundle", {b"common": NULLHEX, b"bundlecaps": caps})
    assert isinstance(ok, StreamResponse) and b"".join(ok.chunks).startswith(b"HG20")


def test_getbundle_unknown_head_is_an_abort_part(public_repo: Path) -> None:
    caps = b"HG20,bundle2=" + bundle2.urlquote(bundle2.encodecaps(bundle2.client_capabilities()))
    rsp = call(ctx_for(public_repo), b"getbundle", {b"heads": b"1" * 40, b"bundlecaps": caps})
    assert isinstance(rsp, StreamResponse)
    parts = list(bundle2.Unbundler(io.BytesIO(b"".join(rsp.chunks))).iterparts())
    assert [p.type for p in parts] == [b"error:abort"]
    assert b"unknown revision" in parts[0].params[b"message"]


def test_changegroupsubset_applies_in_hg(hg72: HgRunner, public_repo: Path, tmp_path: Path) -> None:
    """cg1 of ``bases::heads`` (as ``changegroupsubset``) and of ``roots::`` is what hg
    bundles for the same range (applied through an HG10UN file)."""
    ctx = ctx_for(public_repo)
    cl = ctx.repo.changelog
    for name, args, revset in (
        (b"changegroup", {b"roots": cl.node(0).hex().encode()}, "0:"),
        (b"changegroupsubset",
         {b"bases": cl.node(2).hex().encode(), b"heads": cl.node(5).hex().encode()}, "2::5"),
    ):  # fmt: skip
        rsp = call(ctx, name, args)
        assert isinstance(rsp, StreamResponse)
        body = b"HG10UN" + b"".join(rsp.chunks)
        dest = tmp_path / name.decode()
        hg72("clone", "-q", "-U", "-r", "0" if name == b"changegroupsubset" else "null",
             public_repo, dest)  # fmt: skip
        if name == b"changegroupsubset":
            hg72("-R", dest, "pull", "-q", "-r", "1", public_repo)
        (tmp_path / "b.hg").write_bytes(body)
        hg72("-R", dest, "unbundle", "-q", tmp_path / "b.hg")
        hg72("-R", dest, "verify", "-q")
        got = hg72("-R", dest, "log", "-r", revset, "-T", "{node}\n").stdout
        want = hg72("-R", public_repo, "log", "-r", revset, "-T", "{node}\n").stdout
        assert got == want


CLIENTCAPS = b"HG20,bundle2=" + bundle2.urlquote(bundle2.encodecaps(bundle2.client_capabilities()))


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        ({}, [b"changegroup"]),
        ({b"cg": b"0"}, []),
        ({b"bookmarks": b"1", b"phases": b"1", b"listkeys": b"bookmarks,phases"},
         [b"changegroup", b"bookmarks", b"listkeys", b"listkeys", b"phase-heads"]),
        ({b"stream": b"1", b"cg": b"0", b"listkeys": b"bookmarks"}, [b"stream2", b"listkeys"]),
        ({b"common": b"<heads>", b"phases": b"1"}, [b"phase-heads"]),
        ({b"heads": b""}, [b"changegroup"]),
    ],
    ids=["default", "no-cg", "everything", "stream", "nothing-missing", "empty-heads"],
)  # fmt: skip
def test_getbundle_parts_follow_arguments(
    public_repo: Path, args: dict[bytes, bytes], parts: list[bytes]
) -> None:
    ctx = ctx_for(public_repo)
    heads = b" ".join(n.hex().encode() for n in common.heads(common.served(ctx.repo)))
    given = {b"bundlecaps": CLIENTCAPS, b"common": NULLHEX, b"heads": heads}
    given.update({k: heads if v == b"<heads>" else v for k, v in args.items()})
    rsp = call(ctx, b"getbundle", given)
    assert isinstance(rsp, StreamResponse)
    assert rsp.prefer_uncompressed == (args.get(b"stream") == b"1")
    got = [
        (p.type, p.params, p.read())
        for p in bundle2.Unbundler(io.BytesIO(b"".join(rsp.chunks))).iterparts()
    ]
    # hgtagsfnodes is advisory and depends on .hgtags (not on the arguments)
    assert [t for t, _p, _d in got if t != b"hgtagsfnodes"] == parts
    for ptype, params, payload in got:
        if ptype == b"changegroup":
            assert params[b"nbchanges"] == b"%d" % len(ctx.repo.changelog)
        if ptype == b"listkeys":
            want = common.listkeys(common.served(ctx.repo), params[b"namespace"], True)
            assert bundle2.decodekeys(payload) == want and want


def test_getbundle_warns_about_unknown_arguments(public_repo: Path) -> None:
    said: list[bytes] = []
    ctx = ctx_for(public_repo)
    ctx.output = said.append
    rsp = call(ctx, b"getbundle", {b"bundlecaps": CLIENTCAPS, b"frobnicate": b"1"})
    assert isinstance(rsp, StreamResponse)
    assert said == [b"warning: getbundle ignored unexpected arguments frobnicate\n"]


def test_disablefullbundle_refuses_full_pulls_only(public_repo: Path) -> None:
    ctx = ctx_for(public_repo)
    ctx.config.extra[(b"server", b"disablefullbundle")] = b"true"
    heads = b" ".join(n.hex().encode() for n in common.heads(common.served(ctx.repo)))
    args = {b"bundlecaps": CLIENTCAPS, b"common": NULLHEX, b"heads": heads}
    rsp = call(ctx, b"getbundle", args)
    assert isinstance(rsp, StreamResponse)
    parts = [(p.type, p.params) for p in bundle2.Unbundler(io.BytesIO(b"".join(rsp.chunks)))]
    assert parts == [
        (b"error:abort", {b"message": b"server has pull-based clones disabled",
                          b"hint": b"remove --pull if specified or upgrade Mercurial"})
    ]  # fmt: skip
    partial = call(
        ctx, b"getbundle", {**args, b"common": ctx.repo.changelog.node(0).hex().encode()}
    )
    assert isinstance(partial, StreamResponse)
    assert b"".join(partial.chunks).count(b"CHANGEGROUP") == 1


def _parts(stream: bytes) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """(type, parameters, payload) of each part; changegroup payloads left out (delta
    choices may differ) and ``version`` too (hg 6.0 never produces 03); listkeys
    entries sorted (6.0 writes them in set order); ``hgtagsfnodes`` (advisory cache
    data, produced by the exchange layer with its own choice of entries) left out."""
    out = []
    for p in bundle2.Unbundler(io.BytesIO(stream)).iterparts():
        data = p.read()
        params = {k: v for k, v in p.params.items() if k != b"version"}
        if p.type == b"hgtagsfnodes":
            continue
        if p.type == b"changegroup":
            data = b""
        if p.type == b"listkeys":
            data = bundle2.encodekeys(sorted(bundle2.decodekeys(data).items()))
        out.append((p.type, params, data))
    return out


@pytest.mark.interop
@pytest.mark.parametrize("hgrc", ["", "[phases]\npublish = false\n"], ids=["publishing", "draft"])
@pytest.mark.parametrize(
    "args",
    [
        {b"common": b"null", b"heads": b"<heads>", b"cg": b"1", b"phases": b"1",
         b"bookmarks": b"1", b"listkeys": b"bookmarks"},
        {b"common": b"<rev:4> <rev:12>", b"heads": b"<heads>", b"cg": b"1", b"phases": b"1",
         b"bookmarks": b"1", b"listkeys": b"bookmarks,phases"},
        {b"common": b"<heads>", b"heads": b"<heads>", b"cg": b"1", b"phases": b"1"},
        {b"common": b"null", b"heads": b"<rev:13>", b"cg": b"0", b"phases": b"1"},
        {b"common": b"null", b"heads": b"<rev:17>"},
    ],
    ids=["clone", "pull", "nothing-new", "no-cg", "secret-head"],
)  # fmt: skip
def test_getbundle_parts_match_hg60(
    hg60_path: Path,
    full_repo60: hgrepos.GeneratedRepo,
    repo_copy: Callable[[Path], Path],
    hgrc: str,
    args: dict[bytes, bytes],
) -> None:
    """The same ``getbundle`` (6.0 client capabilities) to hg 6.0 and to hgwire on the
    full test repository: the same parts with the same parameters and payloads."""
    repo = repo_copy(full_repo60.path)
    r = Repository.open(repo)
    heads = b" ".join(n.hex().encode() for n in common.heads(common.served(r)))

    def expand(value: bytes) -> bytes:
        value = value.replace(b"<heads>", heads).replace(b"null", NULLHEX)
        for rev in range(len(r.changelog)):
            value = value.replace(b"<rev:%d>" % rev, r.changelog.node(rev).hex().encode())
        return value

    caps60 = {k: list(v) for k, v in bundle2.client_capabilities().items()}
    caps60[b"changegroup"] = [b"01", b"02"]
    bundlecaps = b"HG20,bundle2=" + bundle2.urlquote(bundle2.encodecaps(caps60))
    given = {b"bundlecaps": bundlecaps, **{k: expand(v) for k, v in args.items()}}
    session = request(b"getbundle", given)
    theirs = serve_hg(hg60_path, repo, session, hgrc)
    ours = serve_hgwire(repo, session, hgrc)
    if b"<rev:17>" in args[b"heads"]:
        # a secret head: 6.0 dies with "filtered node", hgwire sends an abort part
        assert theirs[2] == 255 and b"filtered node" in theirs[1]
        assert [(t, p[b"message"][-12:]) for t, p, _d in _parts(ours[0])] == [
            (b"error:abort", b"(not served)")
        ]
        return
    assert theirs[2] == ours[2] == 0
    assert _parts(ours[0]) == _parts(theirs[0])
