"""Fixtures for command tests: repositories (from ``tests/repo``) and a command runner.

``run_v2(repo_path, name, args, **config)`` checks ``args`` with the registry exactly as
a transport does and returns the response objects as the 6.0 decoder would hand them
out (``{status: ok}`` first; indefinite byte strings as their chunks), a command
error's status map, or ``("server", message)`` for an error that becomes an
``error-response`` frame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hgwire.commands import v2  # noqa: F401  (registers the v2 commands)
from hgwire.commands.context import CommandContext, ServerConfig
from hgwire.commands.registry import REGISTRY
from hgwire.errors import CommandError
from hgwire.repo.localrepo import Repository
from hgwire.wire.cbor import BytestringChunk, IndefiniteBytes
from tests.repo.conftest import corpus10k, full_repo60, public_repo, repo_copy  # noqa: F401

V2Runner = Callable[..., Any]


def run_command(
    repo: Repository,
    name: bytes,
    args: dict[bytes, Any],
    config: ServerConfig | None = None,
    progress: list[tuple[bytes, int, int | None]] | None = None,
) -> Any:
    """Run one v2 command the way a transport does (see the module docstring)."""

    def record(topic: bytes, pos: int, total: int | None) -> None:
        if progress is not None:
            progress.append((topic, pos, total))

    ctx = CommandContext(repo, config or ServerConfig(), "http-v2", progress=record)
    cmd = REGISTRY.v2[name]
    out: list[Any] = []
    try:
        checked = cmd.checkargs(args)
        for obj in cmd.func(ctx, **{k.decode(): v for k, v in checked.items()}):
            if len(out) == 0:
                out.append({b"status": b"ok"})
            if isinstance(obj, IndefiniteBytes):
                chunks = [bytes(c) for c in obj.chunks]
                for i, c in enumerate(chunks):
                    out.append(BytestringChunk(c, i == 0, False))
                out.append(BytestringChunk(b"", not chunks, True))
            else:
                out.append(obj)
    except CommandError as e:
        if out:
            raise AssertionError(f"command error after output: {e}") from e
        err: dict[bytes, Any] = {b"message": e.message}
        if e.msgargs:
            err[b"args"] = list(e.msgargs)
        return [{b"status": b"error", b"error": err}]
    except Exception as e:  # what the transport sends as an error-response frame
        return ("server", str(e))
    return out or [{b"status": b"ok"}]


@pytest.fixture
def run_v2() -> V2Runner:
    cache: dict[Path, Repository] = {}

    def run(path: Path, name: bytes, args: dict[bytes, Any] | None = None, **cfg: Any) -> Any:
        repo = cache.get(path)
        if repo is None:
            repo = cache[path] = Repository.open(path)
        repo.invalidate()
        return run_command(repo, name, args or {}, ServerConfig(**cfg))

    return run
