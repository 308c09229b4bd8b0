"""Unit tests of the v2 commands on the feature-rich repository, the 10k corpus and
fresh repositories: capabilities bytes, the served view (secret changesets), errors,
delta policy, streaming and progress. Deliberate differences from 6.0 are named."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hgwire.commands import v2
from hgwire.commands.context import ServerConfig
from hgwire.commands.registry import REGISTRY
from hgwire.repo.localrepo import Repository
from hgwire.wire import cbor
from hgwire.wire.cbor import BytestringChunk, IndefiniteBytes
from tests.commands.conftest import V2Runner, run_command
from tests.conftest import SHARED
from tests.repo import hgrepos

NULLID = b"\0" * 20
SECRET_REV = 17  # "secret work" in hgrepos' full history


def _reference_caps() -> bytes:
    spec = (SHARED / "spec" / "wire-protocol.md").read_text()
    block = spec.split("byte-for-byte reference follows", 1)[1].split("```")[1]
    return bytes.fromhex(re.sub(r"\s", "", block))


def _ok(objs: Any) -> list[Any]:
    assert isinstance(objs, list) and objs[0] == {b"status": b"ok"}, objs
    return objs[1:]


def _cmderr(objs: Any) -> bytes:
    assert isinstance(objs, list) and objs[0][b"status"] == b"error", objs
    err = objs[0][b"error"]
    text: bytes = err[b"message"] % tuple(err.get(b"args", ()))
    return text


# -- capabilities (spec §7.3) -----------------------------------------------------------


def test_capabilities_fresh_repo_is_the_1622_reference_bytes(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "fresh", format="6.0")
    objs = _ok(run_command(repo, b"capabilities", {}))
    assert len(objs) == 1
    encoded = cbor.dumps(objs[0])
    assert len(encoded) == 1622
    assert encoded == _reference_caps()


def test_capabilities_follow_config(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "fresh", format="6.0")
    target = {b"name": b"cdn", b"protocol": b"https", b"uris": [b"https://cdn/"],
              b"tlsversions": [b"1.2"], b"ignored": b"x"}  # fmt: skip
    cfg = ServerConfig(uncompressed=False, manifestdata_batchsize=7, filesdata_batchsize=9,
                       redirect_targets=[target])  # fmt: skip
    (caps,) = _ok(run_command(repo, b"capabilities", {}, cfg))
    assert b"rawstorefiledata" not in caps[b"commands"]
    assert caps[b"commands"][b"manifestdata"][b"recommendedbatchsize"] == 7
    assert caps[b"commands"][b"filesdata"][b"recommendedbatchsize"] == 9
    assert caps[b"commands"][b"pushkey"][b"permissions"] == [b"push"]
    assert caps[b"redirect"] == {
        b"targets": [{b"name": b"cdn", b"protocol": b"https", b"uris": [b"https://cdn/"],
                      b"tlsversions": [b"1.2"]}],
        b"hashes": [b"sha256", b"sha1"],
    }  # fmt: skip
    (plain,) = _ok(run_command(repo, b"capabilities", {}))
    assert b"redirect" not in plain
    assert set(plain[b"commands"]) == set(REGISTRY.v2)


def test_capabilities_hide_stream_clones_with_secret_changesets(
    full_repo60: hgrepos.GeneratedRepo, run_v2: V2Runner
) -> None:
    (caps,) = _ok(run_v2(full_repo60.path, b"capabilities"))
    assert b"rawstorefiledata" not in caps[b"commands"]
    assert _cmderr(run_v2(full_repo60.path, b"rawstorefiledata", {b"files": [b"changelog"]})) == (
        b"stream clone is disabled"
    )
    (caps,) = _ok(run_v2(full_repo60.path, b"capabilities", uncompressedallowsecret=True))
    assert b"rawstorefiledata" in caps[b"commands"]
    assert caps[b"rawrepoformats"] == sorted(
        Repository.open(full_repo60.path).requirements & v2.SUPPORTED_FORMATS
    )


# -- the served view ----------------------------------------------------------------------


def test_secret_changesets_are_never_served(
    full_repo60: hgrepos.GeneratedRepo, run_v2: V2Runner
) -> None:
    path = full_repo60.path
    repo = Repository.open(path)
    secret = repo.changelog.node(SECRET_REV)
    parent = repo.changelog.node(SECRET_REV - 1)
    (heads,) = _ok(run_v2(path, b"heads"))
    assert secret not in heads and parent in heads
    assert _ok(run_v2(path, b"known", {b"nodes": [secret, parent, NULLID]})) == [b"011"]
    (bmap,) = _ok(run_v2(path, b"branchmap"))
    assert secret not in {n for ns in bmap.values() for n in ns}
    (marks,) = _ok(run_v2(path, b"listkeys", {b"namespace": b"bookmarks"}))
    assert b"secret-book" not in marks and marks[b"main"] == parent.hex().encode()
    # dagrange from every head: the secret one is not reachable
    dagrange = [{b"type": b"changesetdagrange", b"roots": [], b"heads": heads}]
    objs = _ok(run_v2(path, b"changesetdata", {b"revisions": dagrange}))
    assert objs[0] == {b"totalitems": SECRET_REV}
    assert secret not in [o[b"node"] for o in objs[1:]]
    # naming it is an error (6.0: a server error from its filtered changelog)
    for spec in (
        {b"type": b"changesetdagrange", b"roots": [], b"heads": [secret]},
        {b"type": b"changesetexplicitdepth", b"nodes": [secret], b"depth": 1},
    ):
        assert _cmderr(run_v2(path, b"changesetdata", {b"revisions": [spec]})) == (
            b"unknown node: " + secret.hex().encode()
        )
    explicit = [{b"type": b"changesetexplicit", b"nodes": [secret]}]
    assert (
        _cmderr(run_v2(path, b"changesetdata", {b"revisions": explicit, b"fields": {b"revision"}}))
        == b"unknown node: " + secret.hex().encode()
    )
    assert _cmderr(run_v2(path, b"filesdata", {b"revisions": explicit})).startswith(
        b"unknown node: "
    )
    for key in (b"17", secret.hex().encode()):
        assert run_v2(path, b"lookup", {b"key": key}) == (
            "server", f"filtered revision '{key.decode()}' (not in 'served' subset)"
        )  # fmt: skip
    # 6.0's served view has no bookmarks on secret changesets at all, so the name is
    # simply unknown (the v1 test_string_commands_match_hg60 checks this against hg 6.0).
    assert run_v2(path, b"lookup", {b"key": b"secret-book"}) == (
        "server", "unknown revision 'secret-book'"
    )  # fmt: skip
    assert _ok(run_v2(path, b"lookup", {b"key": b"tip"})) == [parent]


def test_lookup_symbols(full_repo60: hgrepos.GeneratedRepo, run_v2: V2Runner) -> None:
    path = full_repo60.path
    cl = Repository.open(path).changelog
    facts = {b"null": NULLID, b"0": cl.node(0), b"-2": cl.node(16), b"main": cl.node(16),
             b"with space": cl.node(3), b"v1.0": cl.node(7), b"stable": cl.node(11),
             b"feature": cl.node(13), cl.node(5).hex()[:12].encode(): cl.node(5)}  # fmt: skip
    for key, node in facts.items():
        assert _ok(run_v2(path, b"lookup", {b"key": key})) == [node], key
    assert run_v2(path, b"lookup", {b"key": b"nope"}) == ("server", "unknown revision 'nope'")
    assert _cmderr(run_v2(path, b"lookup", {b"key": [b"x"]})) == b"key must be a bytestring"


def test_heads_publiconly(full_repo60: hgrepos.GeneratedRepo, run_v2: V2Runner) -> None:
    cl = Repository.open(full_repo60.path).changelog
    # rev 7 was made public: the public changesets are ::7
    assert _ok(run_v2(full_repo60.path, b"heads", {b"publiconly": True})) == [[cl.node(7)]]


# -- argument errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        (b"changesetdata", {b"revisions": b"x"}, b"revisions must be defined as an array"),
        (b"changesetdata", {b"revisions": [b"x"]}, b"revision specifier must be a map"),
        (b"changesetdata", {b"revisions": [], b"fields": b"parents"}, b"fields must be a set"),
        (b"changesetdata", {b"revisions": [{b"type": b"changesetexplicit", b"nodes": b"ab"}]},
         b"nodes must be an array of nodes"),
        (b"changesetdata", {b"revisions": [{b"type": b"changesetexplicitdepth",
                                            b"nodes": [], b"depth": b"1"}]},
         b"depth must be an integer"),
        (b"changesetdata", {b"revisions": [{b"type": b"changesetexplicitdepth",
                                            b"nodes": []}]},
         b"depth key not present in changesetexplicitdepth revision specifier"),
        (b"changesetdata", {b"revisions": [{b"type": b"changesetdagrange", b"heads": []}]},
         b"roots key not present in changesetdagrange revision specifier"),
        (b"changesetdata", {b"revisions": [{b"nodes": []}]},
         b"type key not present in revision specifier"),
        (b"changesetdata", {b"revisions": [{b"type": b"changesetexplicit",
                                            b"nodes": [b"\x01" * 20]}],
                            b"fields": {b"parents"}},
         b"unknown node: " + b"01" * 20),
        (b"manifestdata", {b"nodes": [b"\x01" * 20], b"tree": b"dir/"},
         b"unknown node: " + b"\x01" * 20),
        (b"manifestdata", {b"nodes": [], b"tree": b"", b"haveparents": 1},
         b"haveparents must be a boolean"),
        (b"filedata", {b"path": b"a.txt", b"nodes": [b"\x02" * 20], b"fields": {b"revision"}},
         b"unknown file node: " + b"02" * 20),
        (b"filedata", {b"path": b"../x", b"nodes": []}, b"unknown file: ../x"),
        (b"filesdata", {b"revisions": [], b"pathfilter": [b"path:a"]},
         b"pathfilter must be a map"),
        (b"filesdata", {b"revisions": [], b"pathfilter": {b"exclude": [b"glob:*"]}},
         b"exclude pattern must begin with `path:` or `rootfilesin:`; got glob:*"),
        (b"heads", {b"publiconly": b"yes"}, b"publiconly must be a boolean"),
        (b"known", {b"nodes": b"ab"}, b"nodes must be an array of nodes"),
        (b"pushkey", {b"namespace": b"phases", b"key": 1, b"old": b"", b"new": b""},
         b"key must be a bytestring"),
        (b"rawstorefiledata", {b"files": [b"changelog", b"tags", b"x"]},
         b"unknown file type: tags, x"),
    ],
)  # fmt: skip
def test_argument_errors_are_command_errors(
    full_repo60: hgrepos.GeneratedRepo, run_v2: V2Runner, name: bytes, args: Any, message: bytes
) -> None:
    """6.0 has these messages for some; where it raised an internal error (wrong types,
    non-map specifiers, unknown nodes needing data) we give a clean command error."""
    assert _cmderr(run_v2(full_repo60.path, name, args, uncompressedallowsecret=True)) == message


def test_unknown_explicit_node_without_data_is_echoed(
    full_repo60: hgrepos.GeneratedRepo, run_v2: V2Runner
) -> None:
    """As 6.0 (spec §8.3): nothing to look up, the node comes back alone."""
    spec = [{b"type": b"changesetexplicit", b"nodes": [b"\x01" * 20]}]
    objs = _ok(run_v2(full_repo60.path, b"changesetdata", {b"revisions": spec}))
    assert objs == [{b"totalitems": 1}, {b"node": b"\x01" * 20}]


def test_null_changeset_in_changesetexplicit(
    full_repo60: hgrepos.GeneratedRepo, run_v2: V2Runner
) -> None:
    """As 6.0: the null changeset has null parents, is public, and an empty text."""
    spec = [{b"type": b"changesetexplicit", b"nodes": [NULLID]}]
    fields = {b"parents", b"phase", b"revision"}
    objs = _ok(run_v2(full_repo60.path, b"changesetdata", {b"revisions": spec, b"fields": fields}))
    assert objs == [
        {b"totalitems": 1},
        {b"node": NULLID, b"parents": [NULLID, NULLID], b"phase": b"public",
         b"fieldsfollowing": [[b"revision", 0]]},
        b"",
    ]  # fmt: skip
    assert _ok(run_v2(full_repo60.path, b"filesdata", {b"revisions": spec})) == [
        {b"totalitems": 0, b"totalpaths": 0}
    ]


# -- revision data -------------------------------------------------------------------------


def test_deltas_are_stored_deltas_against_sent_or_parent(corpus10k: Path) -> None:
    repo = Repository.open(corpus10k)
    ml = repo.manifestlog
    revs = list(range(3000, 3400))
    nodes = [ml.node(r) for r in revs]
    for haveparents in (False, True):
        args = {b"tree": b"", b"nodes": nodes, b"fields": {b"revision", b"parents"},
                b"haveparents": haveparents}  # fmt: skip
        objs = _ok(run_command(repo, b"manifestdata", args))
        sent: set[int] = set()
        deltas = 0
        for i in range(1, len(objs), 2):
            rec, data = objs[i], objs[i + 1]
            rev = ml.rev(rec[b"node"])
            kind, length = rec[b"fieldsfollowing"][0]
            assert length == len(data)
            if kind == b"delta":
                deltas += 1
                base = ml.rev(rec[b"deltabasenode"])
                assert base in sent or (haveparents and base in ml.parentrevs(rev))
                assert data == ml.storeddelta(rev)[1]
            else:
                assert data == ml.rawdata(rev)
            sent.add(rev)
        assert deltas > 300


def test_filesdata_reads_few_full_manifests(
    corpus10k: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """filesdata works from manifest deltas: full manifest texts are rebuilt only where
    a delta does not settle a touched path (6.0 rebuilds one per changeset)."""
    repo = Repository.open(corpus10k)
    ml = repo.manifestlog
    calls: list[int] = []
    real = ml.rawdata

    def counting(rev: Any) -> bytes:
        calls.append(rev)
        return real(rev)

    monkeypatch.setattr(ml, "rawdata", counting)
    nodes = [repo.changelog.node(r) for r in range(2000)]
    args = {b"revisions": [{b"type": b"changesetexplicit", b"nodes": nodes}],
            b"haveparents": True}  # fmt: skip
    objs = _ok(run_command(repo, b"filesdata", args))
    assert objs[0][b"totalitems"] > 3000
    assert len(calls) < 2000 // 20


def test_filesdata_pathfilter(full_repo60: hgrepos.GeneratedRepo, run_v2: V2Runner) -> None:
    repo = Repository.open(full_repo60.path)
    nodes = [repo.changelog.node(r) for r in range(SECRET_REV)]
    spec = [{b"type": b"changesetexplicit", b"nodes": nodes}]

    def paths(pathfilter: Any) -> list[bytes]:
        objs = _ok(run_v2(full_repo60.path, b"filesdata",
                          {b"revisions": spec, b"pathfilter": pathfilter}))  # fmt: skip
        return [o[b"path"] for o in objs[1:] if b"path" in o]

    every = paths(None)
    assert b"secret.txt" not in every and b"con.txt" in every and b"aux" in every
    assert paths({}) == every
    assert paths({b"include": [b"path:foo.i"]}) == [b"foo.i/bar.txt"]
    assert paths({b"include": [b"rootfilesin:com1", b"path:lpt9/y"]}) == [b"com1/x.txt",
                                                                          b"lpt9/y"]  # fmt: skip
    root = paths({b"include": [b"rootfilesin:"]})
    assert root and all(b"/" not in p for p in root)
    assert paths({b"exclude": [b"path:."]}) == []
    assert sorted(paths({b"exclude": [b"rootfilesin:."]})) == sorted(p for p in every if b"/" in p)


# -- streaming and progress --------------------------------------------------------------


def test_rawstorefiledata_streams_128k_chunks(corpus10k: Path) -> None:
    repo = Repository.open(corpus10k)
    ctxobjs = REGISTRY.v2[b"rawstorefiledata"]
    from hgwire.commands.context import CommandContext

    ctx = CommandContext(repo, ServerConfig(), "http-v2")
    gen = ctxobjs.func(ctx, files=[b"changelog", b"manifestlog"], pathfilter=None)
    header = next(gen)
    names = []
    total = 0
    for meta in gen:
        body = next(gen)
        assert isinstance(body, IndefiniteBytes)
        assert not isinstance(body.chunks, list)  # a generator: read as it is sent
        data = b""
        for chunk in body.chunks:
            assert 0 < len(chunk) <= v2.RAW_CHUNK
            data += chunk
        assert len(data) == meta[b"size"] > 0
        assert data == (corpus10k / ".hg" / "store" / meta[b"path"].decode()).read_bytes()
        names.append(meta[b"path"])
        total += meta[b"size"]
    assert header == {b"filecount": len(names), b"totalsize": total}
    # 6.0's topfiles order: data files before index files, manifest before changelog
    assert names == [b"00manifest.d", b"00changelog.d", b"00manifest.i", b"00changelog.i"]
    objs = _ok(run_command(repo, b"rawstorefiledata", {b"files": [b"manifestlog"]}))
    assert objs[1][b"path"] == b"00manifest.d"
    assert isinstance(objs[2], BytestringChunk) and objs[2].first


def test_progress_is_reported(corpus10k: Path) -> None:
    repo = Repository.open(corpus10k)
    heads = [repo.changelog.node(r) for r in repo.changelog.headrevs()]
    progress: list[tuple[bytes, int, int | None]] = []
    spec = [{b"type": b"changesetdagrange", b"roots": [], b"heads": heads}]
    objs = _ok(run_command(repo, b"changesetdata", {b"revisions": spec}, progress=progress))
    total = objs[0][b"totalitems"]
    assert total == len(repo.changelog)
    assert progress[-1] == (b"changesets", total, total)
    assert len(progress) == -(-total // v2.PROGRESS_STEP)
    assert [p[1] for p in progress] == sorted(p[1] for p in progress)
    progress.clear()
    nodes = [repo.changelog.node(r) for r in range(1500)]
    run_command(repo, b"filesdata", {b"revisions": [{b"type": b"changesetexplicit",
                                                     b"nodes": nodes}]},
                progress=progress)  # fmt: skip
    topics = {p[0] for p in progress}
    assert topics == {b"changesets", b"files"}
    assert (b"changesets", 1500, 1500) in progress


def test_filedata_never_names_a_secret_linknode(
    full_repo60: hgrepos.GeneratedRepo, run_v2: V2Runner
) -> None:
    """Deliberate difference: 6.0 answers with the secret changeset as ``linknode``.
    We refuse the node when its linknode is asked for; its data alone is addressed by
    hash and served as 6.0 does (knowing the hash means knowing the content)."""
    repo = Repository.open(full_repo60.path)
    fl = repo.file(b"secret.txt")
    assert repo.changelog.node(fl.linkrev(0)) == repo.changelog.node(SECRET_REV)
    args = {b"path": b"secret.txt", b"nodes": [fl.node(0)], b"fields": {b"revision"}}
    objs = _ok(run_v2(full_repo60.path, b"filedata", args))
    assert objs[2] == b"not to be served\n"
    args[b"fields"] = {b"revision", b"linknode"}
    assert _cmderr(run_v2(full_repo60.path, b"filedata", args)) == (
        b"unknown file node: " + fl.node(0).hex().encode()
    )
