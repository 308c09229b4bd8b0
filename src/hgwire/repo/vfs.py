"""A tiny virtual file system rooted at a directory (Mercurial calls this a vfs).

Revlogs and the store open files through a vfs so that path encoding, auditing and
atomic replacement live in one place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _strpath(path: str | bytes) -> str:
    """A vfs path as ``str``; bytes paths are decoded losslessly (surrogateescape)."""
    return path if isinstance(path, str) else path.decode("utf-8", "surrogateescape")


class VFS:
    """Files below ``base``; paths are ``/``-separated strings (or bytes) relative to it."""

    def __init__(self, base: str | os.PathLike[str]) -> None:
        self.base = Path(base)

    def join(self, path: str | bytes) -> Path:
        """The filesystem path of ``path`` (no encoding in the plain vfs)."""
        return self.base / _strpath(path) if path else self.base

    def __call__(self, path: str | bytes, mode: str = "rb") -> IO[bytes]:
        """Open ``path``; writing modes create missing parent directories."""
        full = self.join(path)
        if any(m in mode for m in "wax+"):
            full.parent.mkdir(parents=True, exist_ok=True)
        return open(full, mode)

    def exists(self, path: str | bytes) -> bool:
        return self.join(path).exists()

    def size(self, path: str | bytes) -> int:
        """Size in bytes, 0 when the file does not exist."""
        try:
            return self.join(path).stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, path: str | bytes) -> bytes:
        with self(path) as fh:
            return fh.read()

    def tryread(self, path: str | bytes) -> bytes:
        """The file's content, or ``b''`` when it does not exist."""
        try:
            return self.read(path)
        except FileNotFoundError:
            return b""

    @staticmethod
    def temp_prefix(name: str) -> str:
        """Prefix of the temporary files :meth:`atomic_write` makes for file ``name``.

        Mercurial's atomic-temp files use the same prefix; a rollback sweeps them.
        """
        return f".{name}-"

    def atomic_write(self, path: str | bytes, data: bytes) -> None:
        """Replace ``path`` with ``data`` so readers see the old or the new file, never half."""
        full = self.join(path)
        full.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.temp_prefix(full.name), dir=full.parent)
        try:
            # mkstemp makes 0600 files: keep the replaced file's mode, else the usual one
            try:
                mode = full.stat().st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o666 & ~_UMASK
            os.chmod(fd, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, full)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def unlink(self, path: str | bytes) -> None:
        self.join(path).unlink(missing_ok=True)

    def makedirs(self, path: str | bytes) -> None:
        self.join(path).mkdir(parents=True, exist_ok=True)
