"""Access control as hgweb applies it (spec §5.2, §5.6 step 3) and HTTP Basic auth.

:func:`check` applies ``[web]`` ``deny_read``/``allow_read``, ``allow-pull``,
``push_ssl``, ``deny_push`` and ``allow-push`` in hgweb's order and returns the refusal
(status, reason) or None. The user is the one authenticated by HTTP Basic against a
password file (:class:`PasswordFile`: ``user:<argon2 hash>`` lines, written by
``hgwire passwd``); without a password file nobody is authenticated (hgweb behind a web
server that does no authentication).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hgwire.errors import HgwireError

Operation = Literal["pull", "push"]

#: The realm named in ``WWW-Authenticate`` challenges.
REALM = "hgwire"


@dataclass
class AccessRules:
    """The ``[web]`` access settings of a repository (hgweb's names and defaults)."""

    allow_push: list[str] = field(default_factory=list)
    deny_push: list[str] = field(default_factory=list)
    allow_read: list[str] = field(default_factory=list)
    deny_read: list[str] = field(default_factory=list)
    allow_pull: bool = True
    push_ssl: bool = True


@dataclass(frozen=True, slots=True)
class Denied:
    """A refused request: HTTP status code and reason phrase (also the message)."""

    status: int
    reason: str


def _member(user: str | None, users: list[str]) -> bool:
    return users == ["*"] or (user is not None and user in users)


def check_read(rules: AccessRules, user: str | None) -> Denied | None:
    """``deny_read``/``allow_read`` alone (hgweb's check for its pages and listings)."""
    if rules.deny_read and (not user or _member(user, rules.deny_read)):
        return Denied(401, "read not authorized")
    if rules.allow_read and not _member(user, rules.allow_read):
        return Denied(401, "read not authorized")
    return None


def check(
    rules: AccessRules, op: Operation, user: str | None, method: str, scheme: str
) -> Denied | None:
    """hgweb's ``checkauthz`` (spec §5.2): None when ``op`` is allowed."""
    denied = check_read(rules, user)
    if denied is not None:
        return denied
    if op == "pull":
        if not rules.allow_pull:
            return Denied(401, "pull not authorized")
        return None
    if method != "POST":
        return Denied(405, "push requires POST request")
    if rules.push_ssl and scheme != "https":
        return Denied(403, "ssl required")
    if rules.deny_push and (not user or _member(user, rules.deny_push)):
        return Denied(401, "push not authorized")
    if not (rules.allow_push and _member(user, rules.allow_push)):
        return Denied(401, "push not authorized")
    return None


class AuthError(HgwireError):
    """Credentials that are malformed or wrong."""


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic`` header; None without one."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise AuthError("unsupported authorization scheme")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError("malformed credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise AuthError("malformed credentials")
    return user, password


class PasswordFile:
    """``user:hash`` lines (argon2id, salted); re-read when the file changes.

    Verifying an argon2 hash is deliberately slow, so credentials that verified are
    remembered (as a SHA-256 of user, password and hash) until the file changes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._hasher = PasswordHasher()
        self._stamp: tuple[int, int] | None = None
        self._hashes: dict[str, str] = {}
        self._good: set[bytes] = set()
        self._lock = threading.Lock()
        self._dummy_hash: str | None = None

    def _dummy(self) -> str:
        """A hash with this hasher's parameters, verified for unknown users."""
        with self._lock:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(os.urandom(16).hex())
            return self._dummy_hash

    def _load(self) -> dict[str, str]:
        try:
            st = self.path.stat()
        except OSError as exc:
            raise HgwireError(f"cannot read password file {self.path}: {exc}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._hashes = read_entries(self.path)
                self._good = set()
                self._stamp = stamp
            return self._hashes

    def verify(self, user: str, password: str) -> bool:
        """Whether ``password`` is ``user``'s (runs argon2; call it off the event loop)."""
        hashes = self._load()
        stored = hashes.get(user)
        if stored is None:
            # As slow as a wrong password: response times do not tell which users exist.
            with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
                self._hasher.verify(self._dummy(), password)
            return False
        key = hashlib.sha256(f"{user}\0{password}\0{stored}".encode()).digest()
        if key in self._good:
            return True
        try:
            self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        with self._lock:
            self._good.add(key)
        return True


def read_entries(path: Path) -> dict[str, str]:
    """The ``user -> hash`` entries of a password file (blank lines and ``#`` skipped)."""
    entries: dict[str, str] = {}
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return entries
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if sep and user:
            entries[user] = hashed
    return entries


def set_password(path: Path, user: str, password: str) -> None:
    """Add or replace ``user``'s entry (argon2id hash), writing the file atomically."""
    if not user or ":" in user or any(c.isspace() for c in user):
        raise HgwireError(f"invalid user name {user!r} (no ':' or whitespace)")
    entries = read_entries(path)
    entries[user] = PasswordHasher().hash(password)
    text = "".join(f"{u}:{h}\n" for u, h in entries.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".passwd-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
