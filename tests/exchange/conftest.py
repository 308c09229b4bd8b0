"""Fixtures for exchange tests: the shared hg-built repositories and bundles made from them.

The repository fixtures come from ``tests/repo/conftest.py`` (re-exported here); bundles
are made once per session by real Mercurial and must be treated as read-only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_runner
from tests.repo import hgrepos
from tests.repo.conftest import full_repo60, full_repo72  # noqa: F401

#: ``hg bundle --type`` values exercised, per Mercurial version.
BUNDLE_TYPES = {
    "6.0": ("none-v1", "gzip-v1", "bzip2-v1", "none-v2", "zstd-v2", "gzip-v2", "bzip2-v2"),
    "7.2.4": (
        "none-v1",
        "bzip2-v1",
        "none-v2",
        "zstd-v2",
        "gzip-v2",
        "bzip2-v2",
        "none-v3",
        "zstd-v3",
    ),
}


#: The full repository has secret changesets; stream bundles need this to be made.
ALLOW_SECRET = ("--config", "server.uncompressedallowsecret=true")


def make_bundles(repo: hgrepos.GeneratedRepo, dest: Path) -> dict[str, Path]:
    """``hg bundle --all`` of ``repo`` in every type of :data:`BUNDLE_TYPES`, plus the
    stream bundles (``stream-v1`` = debugcreatestreamclonebundle, ``stream-v2``)."""
    hg = make_runner(repo.hg)
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for t in BUNDLE_TYPES[repo.version]:
        path = dest / f"{t}.hg"
        if not path.exists():
            hg("-R", repo.path, "bundle", "-q", "--all", "-t", t, path)
        out[t] = path
    s1 = dest / "stream-v1.hg"
    if not s1.exists():
        hg("-R", repo.path, "debugcreatestreamclonebundle", s1, extra=ALLOW_SECRET)
    out["stream-v1"] = s1
    s2 = dest / "stream-v2.hg"
    if not s2.exists():
        hg(
            "-R",
            repo.path,
            "bundle",
            "-q",
            "--all",
            "-t",
            "none-v2;stream=v2",
            s2,
            extra=ALLOW_SECRET,
        )
    out["stream-v2"] = s2
    return out


Bundles = tuple[hgrepos.GeneratedRepo, dict[str, Path]]

#: (hg version, bundle type) pairs for parametrizing tests over hg-made bundles.
ALL_BUNDLES = [(v, t) for v, types in BUNDLE_TYPES.items() for t in types]


def bundles_for(request: pytest.FixtureRequest, version: str) -> Bundles:
    """(repository, {bundle type: file}) for the full repository built by ``version``."""
    repo: hgrepos.GeneratedRepo = request.getfixturevalue(
        {"6.0": "full_repo60", "7.2.4": "full_repo72"}[version]
    )
    factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    root = hgrepos.shared_tmp_root(factory.getbasetemp())
    key = f"exchange-bundles-{version}-v{hgrepos.FULL_REPO_LAYOUT}"
    path = hgrepos.cached_build(root, key, lambda d: make_bundles(repo, d))
    return repo, {p.stem: p for p in path.glob("*.hg")}


@pytest.fixture(scope="session")
def nosecret_repo72(
    full_repo72: hgrepos.GeneratedRepo,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> hgrepos.GeneratedRepo:
    """The 7.2 full repository with its secret changeset made draft (stream clones refuse
    repositories with secret changesets). Read-only, shared."""
    root = hgrepos.shared_tmp_root(tmp_path_factory.getbasetemp())
    hg = make_runner(full_repo72.hg)

    def build(dest: Path) -> None:
        hgrepos.copy_repo(full_repo72.path, dest)
        hg("-R", dest, "phase", "-q", "--force", "--draft", "-r", "secret()")

    path = hgrepos.cached_build(root, f"exchange-nosecret-v{hgrepos.FULL_REPO_LAYOUT}", build)
    return hgrepos.GeneratedRepo(path=path, version="7.2.4", hg=full_repo72.hg)
