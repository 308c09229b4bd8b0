"""A push is all-or-nothing when the server is SIGKILLed at a random moment.

hg 7.2.4 pushes 37 changesets (38 new files, a merge, a bookmark, a phase change on
the publishing server) to hgwire, over HTTP (``hgwire serve``) or SSH (the ``hgwire-hg``
shim behind an ssh stand-in), and the server process is killed with SIGKILL either after
a random delay from the start of the push, or a random delay after the server's
``journal`` appears (so that many kills land inside the transaction). After each kill:

- opening the repository with hgwire rolls back any journal it left;
- the repository (every file of ``.hg`` except caches and the transaction's own
  ``journal*``/``undo*``/``lock`` files) equals byte for byte either its state before
  the push or, when the kill came after the commit, the state a complete push leaves;
  a live journal at the kill always means "before";
- for a sample (every ``VERIFY_EVERY``-th kill and the last), ``hg verify`` passes and
  ``hg log --debug`` equals the matching reference.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hgwire.repo.localrepo import Repository
from tests.conftest import HgRunner, hg_env
from tests.server.conftest import run_server

KILLS = int(os.environ.get("HGWIRE_PUSH_KILLS", "50"))
VERIFY_EVERY = int(os.environ.get("HGWIRE_PUSH_VERIFY_EVERY", "3"))
SEED = int(os.environ.get("HGWIRE_PUSH_SEED", "20261121"))
SHIM = Path(sys.executable).with_name("hgwire-hg")
SERVE_ARGS = ("--config", "web.allow-push=*", "--config", "web.push_ssl=false", "--quiet")

STANDIN = """#!/bin/sh
# ssh stand-in: record the remote command's pid, drop ssh options and the host, exec it.
while [ $# -gt 1 ]; do
    case $1 in
        -o|-p|-l|-i|-F) shift 2 ;;
        -*) shift ;;
        *) break ;;
    esac
done
shift
echo $$ > "$PUSH_CRASH_PIDFILE"
exec sh -c "exec $*"
"""

pytestmark = [pytest.mark.slow, pytest.mark.interop]

SKIP_NAMES = ("journal", "undo", "lock", "wlock")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of ``.hg`` but caches and transaction bookkeeping."""
    hgdir = root / ".hg"
    out = {}
    for p in sorted(hgdir.rglob("*")):
        rel = p.relative_to(hgdir)
        if rel.parts[0] in ("cache", "wcache") or p.name.startswith(SKIP_NAMES):
            continue
        if p.is_file() or p.is_symlink():
            out[str(rel)] = p.read_bytes()
    return out


def debug_log(hg: HgRunner, repo: Path) -> bytes:
    return hg("-R", repo, "log", "--debug", "-r", "all()").stdout


@dataclass
class Setup:
    client: Path
    server: Path  # pristine server repository (the state before the push)
    before: dict[str, bytes]
    after: dict[str, bytes]
    log_before: bytes
    log_after: bytes


@dataclass
class Push:
    """One push in flight and the server process to kill."""

    proc: subprocess.Popen[bytes]
    server_pid: int | None
    pidfile: Path | None = None

    def pid(self) -> int | None:
        if self.server_pid is not None:
            return self.server_pid
        assert self.pidfile is not None
        with contextlib.suppress(OSError, ValueError):
            return int(self.pidfile.read_text())
        return None

    def kill(self, repo: Path) -> bool:
        """SIGKILL the server; False if it is already gone. The stand-in's pid is only
        signalled while its command line still names ``repo`` (no reused pid)."""
        pid = self.pid()
        if pid is None:
            return False
        if self.server_pid is None:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return False
            if str(repo).encode() not in cmdline:
                return False
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True


class Transport:
    """How the client reaches the server under test."""

    def __init__(self, name: str, hg72_path: Path, tmp: Path) -> None:
        self.name = name
        self.hg72 = str(hg72_path)
        self.tmp = tmp
        self.standin = tmp / "ssh-standin"
        self.standin.write_text(STANDIN)
        self.standin.chmod(0o755)

    @contextlib.contextmanager
    def push(self, client: Path, server: Path) -> Iterator[Push]:
        argv = [self.hg72, "-R", str(client), "push", "-B", "feature"]
        env = hg_env()
        if self.name == "http":
            with run_server([*SERVE_ARGS, str(server)], self.tmp) as srv:
                proc = subprocess.Popen(
                    [*argv, srv.url], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
                try:
                    yield Push(proc, srv.proc.pid)
                finally:
                    stop_client(proc)
        else:
            assert SHIM.is_file(), f"{SHIM} missing"
            pidfile = self.tmp / "server.pid"
            pidfile.unlink(missing_ok=True)
            env["PUSH_CRASH_PIDFILE"] = str(pidfile)
            ssh = ["--config", f"ui.ssh={self.standin}", "--config", f"ui.remotecmd={SHIM}"]
            proc = subprocess.Popen(
                [*argv, *ssh, f"ssh://user@localhost/{server}"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            try:
                yield Push(proc, None, pidfile)
            finally:
                stop_client(proc)


def cpu_seconds() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def stop_client(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


class JournalWatch(threading.Thread):
    """Polls for the server's ``store/journal``; records when it appears and goes."""

    def __init__(self, store: Path) -> None:
        super().__init__(daemon=True)
        self.path = store / "journal"
        self.appeared = threading.Event()
        self.t_on: float | None = None
        self.t_off: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            exists = self.path.exists()
            now = time.perf_counter()
            if exists and self.t_on is None:
                self.t_on = now
                self.appeared.set()
            elif not exists and self.t_on is not None and self.t_off is None:
                self.t_off = now
            time.sleep(0.0005)


def build(hg72: HgRunner, tmp: Path) -> tuple[Path, Path]:
    """Client with 57 draft changesets (a merge, a bookmark), server with the first 20."""
    client, server = tmp / "client", tmp / "server0"
    hg72("init", client)
    hg72("-R", client, "debugbuilddag", "-m", "-n", "+20:base +15:left *base +15 /left +5")
    hg72("-R", client, "bookmark", "-r", "tip", "feature")
    hg72("clone", "-q", "-U", "-r", "base", client, server)
    return client, server


@pytest.fixture(scope="module")
def setup(hg72: HgRunner, hg72_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    tmp = tmp_path_factory.mktemp("push-crash")
    client, server = build(hg72, tmp)
    before, log_before = snapshot(server), debug_log(hg72, server)
    ref, ref_client = tmp / "reference", tmp / "reference-client"
    shutil.copytree(server, ref, symlinks=True)
    shutil.copytree(client, ref_client, symlinks=True)
    complete_push(Transport("http", hg72_path, tmp), ref_client, ref)
    hg72("-R", ref, "verify", "-q")
    after, log_after = snapshot(ref), debug_log(hg72, ref)
    assert after != before and log_after != log_before
    return Setup(client, server, before, after, log_before, log_after)


def complete_push(tr: Transport, client: Path, server: Path) -> tuple[float, float]:
    """Push without a kill; (wall time of the push, how long the journal existed)."""
    watch = JournalWatch(server / ".hg" / "store")
    watch.start()
    t0 = time.perf_counter()
    with tr.push(client, server) as push:
        out = push.proc.communicate(timeout=120)[0]
        wall = time.perf_counter() - t0
        assert push.proc.returncode == 0, out.decode(errors="replace")
    watch.stop.set()
    watch.join()
    assert b"added 37 changesets" in out
    assert watch.t_on is not None and watch.t_off is not None
    return wall, watch.t_off - watch.t_on


@pytest.mark.parametrize("transport", ["http", "ssh"])
def test_kill_server_mid_push(
    setup: Setup, transport: str, hg72: HgRunner, hg72_path: Path, tmp_path: Path
) -> None:
    rnd = random.Random(f"{SEED}-{transport}")
    tr = Transport(transport, hg72_path, tmp_path)
    server, client = tmp_path / "calibration", tmp_path / "calibration-client"
    shutil.copytree(setup.server, server, symlinks=True)
    shutil.copytree(setup.client, client, symlinks=True)
    push_wall, tr_wall = complete_push(tr, client, server)
    assert snapshot(server) == setup.after  # same result over either transport
    t_start = time.perf_counter()
    cpu_start = cpu_seconds()
    outcomes: Counter[str] = Counter()
    verified = kills = i = 0
    while kills < KILLS:
        assert i < 2 * KILLS, f"only {kills} kills in {i} pushes: {dict(outcomes)}"
        server, client = tmp_path / f"server-{i}", tmp_path / f"client-{i}"
        shutil.copytree(setup.server, server, symlinks=True)
        shutil.copytree(setup.client, client, symlinks=True)
        watch = JournalWatch(server / ".hg" / "store")
        watch.start()
        on_journal = i % 2 == 1
        if on_journal:
            delay = rnd.uniform(0, max(tr_wall, 0.005))
        else:
            delay = rnd.uniform(0, 0.9 * push_wall)
        killed = False
        with tr.push(client, server) as push:
            t0 = time.perf_counter()
            while push.proc.poll() is None:
                if on_journal:
                    if not watch.appeared.is_set():
                        watch.appeared.wait(0.005)
                        continue
                    assert watch.t_on is not None
                    start = watch.t_on
                else:
                    start = t0
                if time.perf_counter() - start >= delay and push.pid() is not None:
                    killed = push.kill(server)
                    break
                time.sleep(0.0005)
        watch.stop.set()
        watch.join()
        journal_left = (server / ".hg" / "store" / "journal").exists()
        Repository.open(server)  # rolls the abandoned transaction back
        assert not (server / ".hg" / "store" / "journal").exists()
        state = snapshot(server)
        if state == setup.before:
            outcome, want_log = "before", setup.log_before
        elif state == setup.after:
            outcome, want_log = "after", setup.log_after
        else:
            diff = sorted(
                k
                for k in set(state) | set(setup.before)
                if state.get(k) != setup.before.get(k) and state.get(k) != setup.after.get(k)
            )
            raise AssertionError(f"kill {i}: repository is neither before nor after: {diff}")
        if journal_left:
            assert outcome == "before", f"kill {i}: a live journal must roll back"
        outcomes[f"{outcome}{' (journal rolled back)' if journal_left else ''}"] += 1
        if killed:
            outcomes["killed"] += 1
        else:
            outcomes[f"push ended first ({'journal' if on_journal else 'uniform'} delay)"] += 1
            if not on_journal:  # the calibration push was slow: aim within this one
                push_wall = min(push_wall, time.perf_counter() - t0)
        kills += killed
        if i % VERIFY_EVERY == 0 or kills == KILLS:
            hg72("-R", server, "verify", "-q")
            assert debug_log(hg72, server) == want_log
            verified += 1
        shutil.rmtree(server)
        shutil.rmtree(client)
        i += 1
    print(
        f"\n{transport}: {i} pushes, {dict(outcomes)}, hg verify + log on {verified}; "
        f"complete push {push_wall:.2f}s, journal {tr_wall:.3f}s, "
        f"loop {time.perf_counter() - t_start:.0f}s wall, {cpu_seconds() - cpu_start:.0f}s CPU "
        f"(this process and its children), load {os.getloadavg()[0]:.1f}"
    )
    assert outcomes["before (journal rolled back)"] > 0
