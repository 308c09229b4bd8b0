"""Repository fixtures for storage tests (built by real Mercurial, see ``hgrepos``).

All session fixtures are shared and read-only: use ``repo_copy`` before modifying one.

- ``full_repo60`` / ``full_repo72``: the feature-rich repository built by hg 6.0 / 7.2.4
  (each in its default format) as a :class:`~tests.repo.hgrepos.GeneratedRepo`;
  ``full_repo`` is the same, parametrized over both versions.
- ``public_repo``: the conformance vector repository (directory holding ``.hg``);
  ``public_repo_facts``: its recorded JSON facts.
- ``corpus10k``: the 10k-changeset corpus of real history, unpacked once per session.
- ``repo_copy(path)``: a private copy of a repository below ``tmp_path``.
- ``hgrepo_factory(version, steps)``: a new repository below ``tmp_path`` built by real
  Mercurial ``version`` from ``steps`` (see ``hgrepos.History``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_hg
from tests.repo import hgrepos


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hgrepos.shared_tmp_root(tmp_path_factory.getbasetemp())


def _full(tmp_path_factory: pytest.TempPathFactory, version: str) -> hgrepos.GeneratedRepo:
    hg = require_hg(version)
    key = f"full-{version}-v{hgrepos.FULL_REPO_LAYOUT}"
    path = hgrepos.cached_build(
        _shared_root(tmp_path_factory), key, lambda d: hgrepos.build_full_repo(hg, d)
    )
    return hgrepos.GeneratedRepo(path=path, version=version, hg=hg)


@pytest.fixture(scope="session")
def full_repo60(tmp_path_factory: pytest.TempPathFactory) -> hgrepos.GeneratedRepo:
    return _full(tmp_path_factory, "6.0")


@pytest.fixture(scope="session")
def full_repo72(tmp_path_factory: pytest.TempPathFactory) -> hgrepos.GeneratedRepo:
    return _full(tmp_path_factory, "7.2.4")


@pytest.fixture(scope="session", params=hgrepos.HG_VERSIONS, ids=lambda v: f"hg{v}")
def full_repo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> hgrepos.GeneratedRepo:
    return _full(tmp_path_factory, request.param)


@pytest.fixture(scope="session")
def public_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not hgrepos.PUBLIC_REPO_TARBALL.is_file():
        pytest.fail(f"vector repository missing: {hgrepos.PUBLIC_REPO_TARBALL}")
    return hgrepos.cached_build(
        _shared_root(tmp_path_factory),
        "public-repo",
        lambda d: hgrepos.extract_tarball(hgrepos.PUBLIC_REPO_TARBALL, d),
    )


@pytest.fixture(scope="session")
def public_repo_facts() -> dict[str, Any]:
    return hgrepos.public_repo_facts()


@pytest.fixture(scope="session")
def corpus10k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not hgrepos.CORPUS_10K.is_file():
        pytest.fail(f"corpus missing: {hgrepos.CORPUS_10K}")
    return hgrepos.cached_build(
        _shared_root(tmp_path_factory),
        "corpus-10k",
        lambda d: hgrepos.extract_tarball(hgrepos.CORPUS_10K, d),
    )


@pytest.fixture
def repo_copy(tmp_path: Path) -> Callable[[Path], Path]:
    """Copy a repository (directory holding ``.hg``) below ``tmp_path``; returns the copy."""
    counter = [0]

    def copy(src: Path) -> Path:
        counter[0] += 1
        return hgrepos.copy_repo(Path(src), tmp_path / f"repo-copy-{counter[0]}")

    return copy


@pytest.fixture
def hgrepo_factory(tmp_path: Path) -> Callable[..., hgrepos.GeneratedRepo]:
    """Build a custom repository with real Mercurial: ``factory("7.2.4", steps)``."""
    counter = [0]

    def build(
        version: str, steps: list[hgrepos.Step], init_args: tuple[str, ...] = ()
    ) -> hgrepos.GeneratedRepo:
        hg = require_hg(version)
        counter[0] += 1
        dest = tmp_path / f"hgrepo-{counter[0]}"
        dest.mkdir()
        hgrepos.run_hg_steps(hg, dest, [["hg", ["init", "-q", *init_args]], *steps])
        return hgrepos.GeneratedRepo(path=dest, version=version, hg=hg)

    return build
