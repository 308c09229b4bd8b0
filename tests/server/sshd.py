"""A real OpenSSH ``sshd`` for tests: 127.0.0.1, a free port, throwaway keys.

:func:`start_sshd` generates a host key and a user key with ``ssh-keygen``, writes an
``sshd_config`` accepting only that user key (``AuthorizedKeysFile`` pointing at it,
``StrictModes no``, ``UsePAM no``, root allowed) and runs ``/usr/sbin/sshd -D`` as the
current user. :attr:`Sshd.ssh_command` is the ``ui.ssh`` value reaching it. The daemon
is stopped by its pid (:meth:`Sshd.stop`, the ``sshd`` fixture does it at teardown).
Under ``CI=true`` a missing OpenSSH fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"


@dataclass
class Sshd:
    """A running sshd and what a client needs to reach it."""

    proc: subprocess.Popen[bytes]
    port: int
    user: str
    userkey: Path
    known_hosts: Path
    log: Path

    @property
    def ssh_command(self) -> str:
        """The ``ui.ssh`` setting: the ssh client with the key and host-key options."""
        return " ".join(
            shlex.quote(a)
            for a in [
                "ssh", "-i", str(self.userkey),
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=no",
                "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes",
                "-o", "LogLevel=ERROR",
            ]
        )  # fmt: skip

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}/{path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _require(condition: bool, msg: str) -> None:
    if not condition:
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "hgwire-test", "-f", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip


def start_sshd(workdir: Path) -> Sshd:
    """Start sshd on 127.0.0.1 (a free port) with fresh keys below ``workdir``."""
    _require(SSHD.is_file(), "OpenSSH server missing (run scripts/install-system.sh)")
    workdir.mkdir(parents=True, exist_ok=True)
    hostkey, userkey = workdir / "host_ed25519", workdir / "user_ed25519"
    _keygen(hostkey)
    _keygen(userkey)
    authorized = workdir / "authorized_keys"
    authorized.write_bytes(userkey.with_suffix(".pub").read_bytes())
    authorized.chmod(0o600)
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    port = _free_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {hostkey}\n"
        f"PidFile {workdir / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\n"
        "StrictModes no\n"
        "UsePAM no\n"
        "PermitRootLogin yes\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "AllowTcpForwarding no\n"
        "X11Forwarding no\n"
        "PrintMotd no\n"
        "LogLevel VERBOSE\n"
    )
    check = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True)
    assert check.returncode == 0, check.stderr.decode(errors="replace")
    log = workdir / "sshd.log"
    proc = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )  # fmt: skip
    server = Sshd(proc, port, getpass.getuser(), userkey, workdir / "known_hosts", log)
    deadline = time.monotonic() + 30
    while True:  # wait until it accepts connections (not a timed assertion)
        if proc.poll() is not None:
            raise AssertionError(f"sshd exited: {log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"sshd did not start: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    return server


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A real sshd for one test, stopped by pid afterwards."""
    server = start_sshd(tmp_path / "sshd")
    try:
        yield server
    finally:
        server.stop()
