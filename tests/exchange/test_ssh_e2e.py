"""Real hg 6.0/7.2 clients cloning, pulling and pushing through hgwire's exchange layer.

The transport is a minimal SSH v1 stdio server written here for the test (the real one
lives in the server package): hg runs this file as its ``--ssh`` command, and
everything the client receives (getbundle replies, stream clones, push replies) comes
from :mod:`hgwire.exchange`. Run as a script, this module *is* that server.
"""

from __future__ import annotations

import io
import os
import shlex
import sys
from pathlib import Path
from typing import IO, Any

import pytest

from hgwire.exchange import bundle2, streamclone
from hgwire.repo.localrepo import Repository

NULLID = b"\0" * 20
LOG = "{node} {phase} {p1node} {p2node} {manifest} {files|json}\n"

# ---------------------------------------------------------------------------------------
# The stdio server (script mode)

_SPECS = {
    b"hello": b"",
    b"between": b"pairs",
    b"capabilities": b"",
    b"batch": b"cmds *",
    b"heads": b"",
    b"known": b"nodes *",
    b"listkeys": b"namespace",
    b"branchmap": b"",
    b"lookup": b"key",
    b"getbundle": b"*",
    b"unbundle": b"heads",
    b"stream_out": b"",
}


def _unescape(v: bytes) -> bytes:
    return v.replace(b":e", b"=").replace(b":s", b";").replace(b":o", b",").replace(b":c", b":")


def _escape(v: bytes) -> bytes:
    return v.replace(b":", b":c").replace(b",", b":o").replace(b";", b":s").replace(b"=", b":e")


def _decodelist(v: bytes) -> list[bytes]:
    return [bytes.fromhex(x.decode()) if x != b"force" else x for x in v.split()] if v else []


class _Server:
    def __init__(self, path: str, fin: IO[bytes], fout: IO[bytes], ferr: IO[bytes]) -> None:
        self.repo = Repository.open(path)
        self.fin, self.fout, self.ferr = fin, fout, ferr

    def caps(self) -> bytes:
        stream2 = not os.environ.get("HGWIRE_TEST_NO_STREAM2")
        blob = bundle2.urlquote(bundle2.encodecaps(bundle2.server_capabilities(stream2)))
        caps = [b"batch", b"branchmap", b"bundle2=" + blob, b"getbundle", b"known", b"lookup",
                b"pushkey", b"unbundle=HG10GZ,HG10BZ,HG10UN", b"unbundlehash"]  # fmt: skip
        caps.append(streamclone.stream_capability(self.repo.requirements))
        return b" ".join(caps)

    def served(self) -> tuple[Any, Any]:
        return bundle2._served(self.repo)

    def run_command(self, cmd: bytes, args: dict[bytes, bytes]) -> bytes:
        repo = self.repo
        repo.invalidate()
        cl = repo.changelog
        _dag, pc = self.served()
        if cmd == b"hello":
            return b"capabilities: " + self.caps() + b"\n"
        if cmd == b"capabilities":
            return self.caps()
        if cmd == b"between":
            return b"\n"
        if cmd == b"heads":
            heads = [cl.node(r) for r in pc.served_heads()] or [NULLID]
            return b" ".join(h.hex().encode() for h in heads) + b"\n"
        if cmd == b"known":
            servable = pc.servable()
            out = []
            for n in _decodelist(args[b"nodes"]):
                try:
                    out.append(b"1" if servable[cl.rev(n)] else b"0")
                except Exception:
                    out.append(b"0")
            return b"".join(out)
        if cmd == b"listkeys":
            keys = bundle2.listkeys(repo, args[b"namespace"])
            return bundle2.encodekeys(sorted(keys.items()))
        if cmd == b"branchmap":
            from hgwire.repo import branchmap

            dag, pc = self.served()
            bmap = branchmap.for_repo(repo, dag, pc.servable())
            lines = [
                bundle2.urlquote(name) + b" " + b" ".join(cl.node(r).hex().encode() for r in revs)
                for name, revs in bmap.items()
            ]
            return b"\n".join(lines)
        if cmd == b"lookup":
            key = args[b"key"]
            try:
                node = bytes.fromhex(key.decode()) if len(key) == 40 else cl.node(int(key))
                cl.rev(node)
            except Exception:
                return b"0 unknown revision\n"
            return b"1 " + node.hex().encode() + b"\n"
        if cmd == b"batch":
            res = []
            for item in args[b"cmds"].split(b";"):
                op, _, rest = item.partition(b" ")
                vals = {}
                for a in rest.split(b","):
                    if a:
                        k, v = a.split(b"=")
                        vals[_unescape(k)] = _unescape(v)
                res.append(_escape(self.run_command(op, vals)))
            return b";".join(res)
        raise ValueError(f"unsupported command {cmd!r}")

    def readargs(self, spec: bytes) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for _ in spec.split():
            name, size = self.fin.readline()[:-1].split()
            if name == b"*":
                for _ in range(int(size)):
                    k, n = self.fin.readline()[:-1].split()
                    out[k] = self.fin.read(int(n))
            else:
                out[name] = self.fin.read(int(size))
        return out

    def respond(self, data: bytes) -> None:
        self.fout.write(b"%d\n" % len(data))
        self.fout.write(data)
        self.fout.flush()

    def serve(self) -> None:
        while True:
            line = self.fin.readline()
            if not line or line == b"\n":
                return
            cmd = line[:-1]
            if cmd not in _SPECS:
                self.respond(b"")
                continue
            args = self.readargs(_SPECS[cmd])
            if cmd == b"getbundle":
                self.getbundle(args)
            elif cmd == b"unbundle":
                self.unbundle(args)
            elif cmd == b"stream_out":
                self.ferr.write(b"serving stream_out\n")
                self.ferr.flush()
                for chunk in streamclone.generate_v1(self.repo):
                    self.fout.write(chunk)
                self.fout.flush()
            else:
                self.respond(self.run_command(cmd, args))

    def getbundle(self, args: dict[bytes, bytes]) -> None:
        def flag(name: bytes, default: bool) -> bool:
            return args[name] != b"0" if name in args else default

        heads = _decodelist(args[b"heads"]) if b"heads" in args else None
        chunks = bundle2.getbundle(
            self.repo,
            heads=heads,
            common=[n for n in _decodelist(args.get(b"common", b"")) if n != NULLID],
            bundlecaps=args.get(b"bundlecaps", b"").split(b","),
            cg=flag(b"cg", True),
            phases=flag(b"phases", False),
            bookmarks=flag(b"bookmarks", False),
            listkeys=[k for k in args.get(b"listkeys", b"").split(b",") if k],
            stream=flag(b"stream", False),
        )
        for chunk in chunks:
            self.fout.write(chunk)
        self.fout.flush()

    def unbundle(self, args: dict[bytes, bytes]) -> None:
        bundle2.check_heads(self.repo, _decodelist(args[b"heads"]))
        self.respond(b"")  # go ahead
        payload = io.BytesIO()
        while True:
            size = int(self.fin.readline())
            if not size:
                break
            payload.write(self.fin.read(size))
        payload.seek(0)
        reply = bundle2.unbundle(self.repo, payload, capture_output=False)
        for text in reply.output:
            self.ferr.write(text)
        self.ferr.flush()
        for chunk in reply.getchunks():
            self.fout.write(chunk)
        self.fout.flush()


def main(argv: list[str]) -> None:
    """``<this file> [ssh options] host 'hg -R <path> serve --stdio'``."""
    words = shlex.split(argv[-1])
    path = words[words.index("-R") + 1]
    _Server(path, sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer).serve()


# ---------------------------------------------------------------------------------------
# Tests

if __name__ != "__main__":
    from tests.conftest import HgRunner, make_runner
    from tests.repo import hgrepos


def _ssh(hg: Any) -> list[str]:
    return ["--config", f"ui.ssh={sys.executable} {Path(__file__).resolve()}"]


def url(path: Path) -> str:
    return f"ssh://fakehost/{path}"


@pytest.mark.interop
@pytest.mark.parametrize("client", ["hg60", "hg72"])
def test_real_client_clones_and_pulls(
    request: pytest.FixtureRequest, full_repo72: hgrepos.GeneratedRepo, tmp_path: Path,
    client: str,
) -> None:  # fmt: skip
    hg: HgRunner = request.getfixturevalue(client)
    hg72: HgRunner = request.getfixturevalue("hg72")
    server = tmp_path / "server"
    hgrepos.copy_repo(full_repo72.path, server)
    dest = tmp_path / "clone"
    hg("clone", "-q", "-U", url(server), dest, extra=_ssh(hg))
    hg("-R", dest, "verify", "-q")
    want = hg72("-R", server, "log", "-r", "reverse(not secret())", "-T", LOG).stdout
    assert hg72("-R", dest, "log", "-T", LOG).stdout == want.replace(b" draft ", b" public ")
    books = hg72("-R", dest, "bookmarks", "-T", "{bookmark} {node}\n").stdout
    srcbooks = hg72("-R", server, "bookmarks", "-T", "{bookmark} {node}\n").stdout
    assert books.splitlines() == [b for b in srcbooks.splitlines() if b"secret" not in b]
    # incremental pull: a partial clone catches up
    part = tmp_path / "partial"
    hg72("clone", "-q", "-U", "-r", "4", full_repo72.path, part)
    out = hg("-R", part, "pull", url(server), extra=_ssh(hg)).stdout
    assert b"added 12 changesets" in out
    hg("-R", part, "verify", "-q")
    assert hg72("-R", part, "log", "-T", "{node}\n").stdout.split() == (
        hg72("-R", dest, "log", "-T", "{node}\n").stdout.split()
    )


@pytest.mark.interop
@pytest.mark.parametrize("stream2", [True, False], ids=["v2", "v1"])
def test_real_client_stream_clone(
    hg72: HgRunner,
    nosecret_repo72: hgrepos.GeneratedRepo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stream2: bool,
) -> None:
    """``hg clone --stream``: bundle2 ``stream2`` part, or ``stream_out`` (v1) when the
    server does not offer ``stream=v2``."""
    if not stream2:
        monkeypatch.setenv("HGWIRE_TEST_NO_STREAM2", "1")
    server = tmp_path / "server"
    hgrepos.copy_repo(nosecret_repo72.path, server)
    dest = tmp_path / "clone"
    proc = hg72("clone", "-U", "--stream", url(server), dest, extra=_ssh(hg72))
    out = proc.stdout + proc.stderr
    assert b"streaming all changes" in out
    assert (b"remote: serving stream_out" in out) == (not stream2)
    hg72("-R", dest, "verify", "-q")
    assert hg72("-R", dest, "log", "-T", "{node}\n").stdout == (
        hg72("-R", server, "log", "-T", "{node}\n").stdout
    )


@pytest.mark.interop
@pytest.mark.parametrize("client", ["hg60", "hg72"])
def test_real_client_pushes(
    request: pytest.FixtureRequest, full_repo72: hgrepos.GeneratedRepo, tmp_path: Path,
    client: str,
) -> None:  # fmt: skip
    hg: HgRunner = request.getfixturevalue(client)
    hg72: HgRunner = request.getfixturevalue("hg72")
    server = tmp_path / "server"
    hg72("clone", "-q", "-U", "-r", "7", full_repo72.path, server)
    local = tmp_path / "local"
    hgrepos.copy_repo(full_repo72.path, local)
    out = hg("-R", local, "push", "-r", "16", "-B", "main", url(server), extra=_ssh(hg))
    text = out.stdout + out.stderr
    assert b"remote: added 4 changesets with 5 changes to 3 files" in text, text
    hg72("-R", server, "verify", "-q")
    got = hg72("-R", server, "log", "-T", "{node} {phase}\n").stdout.split(b"\n")
    assert all(line.endswith(b" public") for line in got if line)
    assert hg72("-R", server, "log", "-r", "tip", "-T", "{node}").stdout == (
        hg72("-R", local, "log", "-r", "16", "-T", "{node}").stdout
    )
    books = hg72("-R", server, "bookmarks", "-T", "{bookmark} {node}\n").stdout
    assert b"main " + hg72("-R", local, "log", "-r", "16", "-T", "{node}").stdout in books
    # pushing again: nothing to do
    again = hg("-R", local, "push", "-r", "16", url(server), extra=_ssh(hg), check=False)
    assert again.returncode == 1 and b"no changes found" in again.stdout
    _ = make_runner


if __name__ == "__main__":
    main(sys.argv)
